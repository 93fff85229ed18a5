"""Daily roll-ups of the statistics (``case_rollups``), kept current in the transaction of every change.

The county dashboard grouped every case of a year twice (this year, last year) on each view: 1.3–2.8 s
at a million cases. It now reads roll-ups instead: for each township and sealed flag, the figures by
village, by category and by channel — each dimension summed on its own, as the dashboard shows them
(one row per combination of all of them would be about as many rows as cases) — once per day and
once per month. A period reads its whole months from the month rows and only its first and last
partial months from the day rows: a few thousand rows a year, whatever the number of cases.

How they stay equal to a recount: :class:`RollupKeeper` listens to the service's sessions. Before
a flush it reads the contribution of every case the flush touches (the case row or its ledger row is
new, changed or deleted) that this transaction has not touched before; as the transaction commits it
reads the contribution of every case touched since, and adds the difference to the roll-ups — in
the same transaction, so a rollback takes both back. Once per transaction, not per flush: the
hotline writes the cases of 20 calls that end together in one transaction, and per flush that was
nine statements per case (the roll-ups' six upserts among them); per commit it is a handful for
all of them. Within the transaction the roll-ups lag its own writes until it commits (nothing reads
them there). Every ORM write to a case passes through a flush; the two bulk ``UPDATE``\\ s the
workflow sends change only ``updated_at`` and ``number_told``, which no figure reads. Test calls
are never counted.

"Overdue now" is not rolled up (it changes with the clock, not with a write): the same hook keeps
``open_cases``, one row per case whose clock runs (新 / 受理 / 办理中), with what the dashboard groups
by and its deadlines; the statistics count "over a deadline now and not yet marked ``late``" there,
and the 催办 list reads its counts and first rows from it — a few per cent of all cases, indexed.
Migration 0016 back-fills it (:func:`open_cases_statement`).

Migration 0013 back-fills the table in Asia/Shanghai days and records that zone in
``case_rollup_state``; :func:`rebuild` does the same for another zone (or after data was loaded
around the service, as the benchmark does). The statistics use the roll-ups only when their zone
is the service's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, bindparam, delete, event, select, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction

from storage.models import Case, CaseLedger, CaseRollup, CaseRollupState, OpenCase

MEASURES = (
    "received", "accepted", "resolved", "partly", "satisfied", "basically", "unsatisfied", "late", "days_sum",
    "days_count",
)  # fmt: skip
_KEY_COLUMNS = ("grain", "day", "township_id", "sealed", "dimension", "key")
_Key = tuple[str, date, int, bool, str, str]
_PENDING = "case_rollups_before"
# The states whose clock runs (受理 for new cases, 办理 for accepted and in-progress ones): open_cases' rows.
OPEN_STATUSES = ("new", "accepted", "in_progress")
_OPEN_COLUMNS = (
    "case_id", "status", "created_at", "township_id", "village_id", "unit_id", "category", "channel", "sealed",
    "resolution_due", "late",
)  # fmt: skip


def contributions(connection: Connection, case_ids: Iterable[int], zone: ZoneInfo) -> dict[_Key, list[float]]:
    """What the given cases add to the roll-ups now, by key (summed when several share one)."""
    ids = sorted(set(case_ids))
    totals: dict[_Key, list[float]] = defaultdict(lambda: [0.0] * len(MEASURES))
    for start in range(0, len(ids), 500):
        statement = (
            select(
                Case.created_at, Case.township_id, Case.village_id, Case.category, Case.channel, Case.sealed,
                CaseLedger.accepted_at, CaseLedger.outcome, CaseLedger.satisfaction, CaseLedger.late,
                CaseLedger.resolved_at,
            )
            .select_from(Case)
            .outerjoin(CaseLedger, CaseLedger.case_id == Case.id)
            .where(Case.id.in_(ids[start : start + 500]), Case.test_call.is_(False))
        )  # fmt: skip
        for row in connection.execute(statement):
            created, township, village, category, channel, sealed, accepted, outcome, satisfaction, late, resolved = row
            figures = [1.0, float(accepted is not None), float(outcome == "resolved")]
            figures += [float(outcome == "partly_resolved"), float(satisfaction == "satisfied")]
            figures += [float(satisfaction == "basically_satisfied"), float(satisfaction == "unsatisfied")]
            figures += [float(bool(late))]
            figures += [(resolved - created).total_seconds() / 86400, 1.0] if resolved is not None else [0.0, 0.0]
            day = created.astimezone(zone).date()
            for grain, first_day in (("day", day), ("month", day.replace(day=1))):
                for dimension, key in (("village", str(village or 0)), ("category", category), ("channel", channel)):
                    total = totals[(grain, first_day, township or 0, bool(sealed), dimension, key)]
                    for index, value in enumerate(figures):
                        total[index] += value
    return dict(totals)


def _touched(session: Session) -> set[int]:
    ids: set[int] = set()
    for instance in (*session.new, *session.dirty, *session.deleted):
        if isinstance(instance, Case) and instance.id is not None:
            ids.add(instance.id)
        elif isinstance(instance, CaseLedger) and instance.case_id is not None:
            ids.add(instance.case_id)
    return ids


def apply(connection: Connection, changes: dict[_Key, list[float]]) -> None:
    """Add ``changes`` to the roll-ups (a row created where there was none)."""
    dialect = connection.dialect.name
    insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
    for (grain, day, township, sealed, dimension, key), figures in changes.items():
        if not any(figures):
            continue
        values = {
            name: (value if name == "days_sum" else int(value)) for name, value in zip(MEASURES, figures, strict=True)
        }
        statement = insert(CaseRollup).values(
            grain=grain, day=day, township_id=township, sealed=sealed, dimension=dimension, key=key, **values,
        )  # fmt: skip
        statement = statement.on_conflict_do_update(
            index_elements=list(_KEY_COLUMNS),
            set_={name: getattr(CaseRollup, name) + statement.excluded[name] for name in MEASURES},
        )
        connection.execute(statement)


@dataclass
class _Pending:
    """A transaction's cases whose figures may have changed, and what they gave before it changed them."""

    touched: set[int] = field(default_factory=set)
    before_read: set[int] = field(default_factory=set)
    before: dict[_Key, list[float]] = field(default_factory=dict)

    @staticmethod
    def add(totals: dict[_Key, list[float]], key: _Key, figures: list[float]) -> None:
        total = totals.setdefault(key, [0.0] * len(MEASURES))
        for index, value in enumerate(figures):
            total[index] += value


class RollupKeeper:
    """Keeps ``case_rollups`` current from the flushes of one session factory's sessions."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone

    def install(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """Listen to this factory's sessions only (a subclass of its session class, not every Session)."""
        base: type[Session] = sessions.kw.get("sync_session_class", Session)
        if getattr(base, "keeps_case_rollups", False):
            return  # installed already (one factory, one keeper: a second would count every change twice)
        keeping = type("CaseRollupSession", (base,), {"keeps_case_rollups": True})
        event.listen(keeping, "before_flush", self._before_flush)
        event.listen(keeping, "after_flush", self._after_flush)
        event.listen(keeping, "before_commit", self._before_commit)
        event.listen(keeping, "after_transaction_end", self._forget)
        sessions.configure(sync_session_class=keeping)

    def _before_flush(self, session: Session, _context: Any, _instances: Any) -> None:
        touched = _touched(session)
        if not touched:
            return
        pending = session.info.setdefault(_PENDING, _Pending())
        # What a case gave before this transaction first changed it (a case new here gave nothing).
        first_time = touched - pending.before_read
        if first_time:
            pending.before_read |= first_time
            for key, figures in contributions(session.connection(), first_time, self.zone).items():
                pending.add(pending.before, key, figures)

    def _after_flush(self, session: Session, _context: Any) -> None:
        touched = _touched(session)  # new cases have their ids now
        if touched:
            pending = session.info.setdefault(_PENDING, _Pending())
            pending.touched |= touched
            pending.before_read |= touched  # a case first seen new here gave nothing before

    def _before_commit(self, session: Session) -> None:
        session.flush()  # the last changes through the hooks above, before they are counted
        pending: _Pending | None = session.info.pop(_PENDING, None)
        if pending is None or not pending.touched:
            return
        connection = session.connection()
        after = contributions(connection, pending.touched, self.zone)
        changes: dict[_Key, list[float]] = {}
        for key in pending.before.keys() | after.keys():
            old = pending.before.get(key, [0.0] * len(MEASURES))
            new = after.get(key, [0.0] * len(MEASURES))
            changes[key] = [b - a for a, b in zip(old, new, strict=True)]
        apply(connection, changes)
        refresh_open(connection, pending.touched)

    @staticmethod
    def _forget(session: Session, transaction: SessionTransaction) -> None:
        # The transaction ended without counting (rolled back, or closed): what was pending went with it. A
        # savepoint's end keeps it: its rollback only undid changes whose "after" the commit reads anyway.
        if transaction.parent is None:
            session.info.pop(_PENDING, None)


def open_cases_statement(dialect: str, *, only_ids: bool = False) -> str:
    """``INSERT INTO open_cases`` the open cases (with ``only_ids``: of the expanding ``:ids`` parameter)."""
    false, not_test = ("0", "c.test_call = 0") if dialect == "sqlite" else ("false", "NOT c.test_call")
    statuses = ", ".join(f"'{status}'" for status in OPEN_STATUSES)
    return (
        f"INSERT INTO open_cases ({', '.join(_OPEN_COLUMNS)}) "
        "SELECT c.id, c.status, c.created_at, c.township_id, c.village_id, c.unit_id, c.category, c.channel, "
        f"c.sealed, l.resolution_due, COALESCE(l.late, {false}) "
        "FROM cases c LEFT JOIN case_ledger l ON l.case_id = c.id "
        f"WHERE c.status IN ({statuses}) AND {not_test}" + (" AND c.id IN :ids" if only_ids else "")
    )


def refresh_open(connection: Connection, case_ids: Iterable[int]) -> None:
    """Make the given cases' ``open_cases`` rows what their case and ledger rows say now."""
    ids = sorted(set(case_ids))
    insert = text(open_cases_statement(connection.dialect.name, only_ids=True)).bindparams(
        bindparam("ids", expanding=True)
    )
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        connection.execute(delete(OpenCase).where(OpenCase.case_id.in_(chunk)))
        connection.execute(insert, {"ids": chunk})


def rebuild_statement(dialect: str, zone: ZoneInfo) -> str:
    """One statement that fills an empty ``case_rollups`` from the cases (the migration's too)."""
    if dialect == "sqlite":
        # SQLite has no time zones: the zone's offset now (China has no daylight saving time).
        minutes = int((datetime.now(zone).utcoffset() or timedelta(0)).total_seconds() // 60)
        day = f"date(c.created_at, '{minutes:+d} minutes')"
        month = f"date(c.created_at, '{minutes:+d} minutes', 'start of month')"
        days = "julianday(l.resolved_at) - julianday(c.created_at)"
        not_test = "c.test_call = 0"
    else:
        day = f"CAST(c.created_at AT TIME ZONE '{zone.key}' AS DATE)"
        month = f"CAST(date_trunc('month', c.created_at AT TIME ZONE '{zone.key}') AS DATE)"
        days = "EXTRACT(EPOCH FROM (l.resolved_at - c.created_at)) / 86400.0"
        not_test = "NOT c.test_call"

    def case_when(condition: str) -> str:
        return f"CASE WHEN {condition} THEN 1 ELSE 0 END"

    per_case = ", ".join(
        f"{expression} AS {name}"
        for name, expression in zip(
            MEASURES,
            (
                "1", case_when("l.accepted_at IS NOT NULL"), case_when("l.outcome = 'resolved'"),
                case_when("l.outcome = 'partly_resolved'"), case_when("l.satisfaction = 'satisfied'"),
                case_when("l.satisfaction = 'basically_satisfied'"), case_when("l.satisfaction = 'unsatisfied'"),
                case_when("l.late"), f"COALESCE({days}, 0)", case_when("l.resolved_at IS NOT NULL"),
            ),
            strict=True,
        )
    )  # fmt: skip
    base = (
        f"SELECT {day} AS d, {month} AS m, COALESCE(c.township_id, 0) AS t, c.sealed AS s, "
        "CAST(COALESCE(c.village_id, 0) AS VARCHAR(32)) AS village, c.category AS category, c.channel AS channel, "
        f"{per_case} FROM cases c LEFT JOIN case_ledger l ON l.case_id = c.id WHERE {not_test}"
    )
    sums = ", ".join(f"SUM({name})" for name in MEASURES)
    parts = [
        f"SELECT '{grain}', {column}, t, s, '{dimension}', {dimension}, {sums} FROM base "
        f"GROUP BY {column}, t, s, {dimension}"
        for grain, column in (("day", "d"), ("month", "m"))
        for dimension in ("village", "category", "channel")
    ]
    return (
        f"WITH base AS ({base}) INSERT INTO case_rollups ({', '.join(_KEY_COLUMNS)}, {', '.join(MEASURES)}) "
        + " UNION ALL ".join(parts)
    )


async def rebuild(sessions: async_sessionmaker[AsyncSession], zone: ZoneInfo) -> None:
    """Recount every roll-up from the cases, in ``zone``'s days, and record the zone."""
    async with sessions.begin() as session:
        dialect = session.get_bind().dialect.name
        await session.execute(delete(CaseRollup))
        await session.execute(text(rebuild_statement(dialect, zone)))
        await session.execute(delete(CaseRollupState))
        session.add(CaseRollupState(id=1, zone=zone.key))
        await session.execute(delete(OpenCase))
        await session.execute(text(open_cases_statement(dialect)))


async def rollup_zone(session: AsyncSession) -> str | None:
    zone: str | None = await session.scalar(select(CaseRollupState.zone).where(CaseRollupState.id == 1))
    return zone
