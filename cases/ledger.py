"""The case ledger (台账): filtered lists, the overdue and due-soon lists, the daily 催办 list, saved views, exports.

Every query here is scoped the same way: the caller's townships (county-wide
users see everything, including cases not yet placed), and sealed cases only
for discipline inspectors — everyone else gets a count of them and nothing
more. Test calls (拨测) are left out unless asked for.

The export columns are the ones a county office keeps in its 台账, and they
are enough to recompute every figure of the statistics page: ``cases.statistics``
and the export read the same columns with the same definitions (the tests
recompute the figures from an exported CSV independently).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select, union_all
from sqlalchemy import case as case_when
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from accounts.principal import Principal
from cases import numbers
from cases.clocks import Deadlines, HolidayTable
from cases.sealed import READ_ROLES, CaseAccess, mask_number
from common.clock import Clock
from common.errors import Conflict, InvalidInput, NotFound
from storage import audit
from storage.models import (
    CASE_CATEGORIES,
    CASE_CHANNEL_LABELS,
    CASE_STATUS_LABELS,
    FOLLOWUP_METHODS,
    OUTCOME_LABELS,
    REPLY_METHODS,
    SATISFACTION_LABELS,
    Case,
    CaseLedger,
    CaseView,
    MissedCall,
    OpenCase,
    Recording,
    Township,
    Unit,
    Village,
)

DeadlineFilter = Literal["overdue", "due_soon", "followup_due", "extension_pending"]
# Test calls (拨测) in a list: left out (the default), shown among the others, or shown alone.
TestCalls = Literal["without", "with", "only"]
Sort = Literal["newest", "oldest", "due"]
OPEN = ("accepted", "in_progress")
COUNT_LIMIT = 10_000
SelectT = TypeVar("SelectT", bound="Select[*tuple[Any, ...]]")


@dataclass(frozen=True)
class CaseFilters:
    statuses: tuple[str, ...] = ()
    township_id: int | None = None
    village_id: int | None = None
    unit_id: int | None = None
    category: str | None = None
    channel: str | None = None
    deadline: DeadlineFilter | None = None
    # Case number, caller number or name, or words of the summary. A number typed finds its case whatever
    # ``test_calls`` says: a dial test's case is found by the number the dial test reported.
    q: str | None = None
    created_from: date | None = None
    created_to: date | None = None
    sealed_only: bool = False
    test_calls: TestCalls = "without"
    sort: Sort = "newest"

    def as_dict(self) -> dict[str, Any]:
        """The filters as a saved view keeps them (dates as ISO strings, empty values left out)."""
        data: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value in (None, (), False) or (name, value) in (("sort", "newest"), ("test_calls", "without")):
                continue
            key = "status" if name == "statuses" else name  # the name the list's query string uses
            data[key] = (
                list(value) if isinstance(value, tuple) else value.isoformat() if isinstance(value, date) else value
            )
        return data


@dataclass
class LedgerRow:
    """One case as the list and the export show it."""

    case: Case
    ledger: CaseLedger | None
    township: str | None
    village: str | None
    unit: str | None
    caller: str | None
    deadline: datetime | None
    overdue: bool
    deadline_kind: str | None  # 受理 / 办理 / 回访
    # The case's recordings on disk (not purged): the list shows which calls can be replayed yet — a phone
    # case is listed at the hang-up, its message a moment later.
    recordings: int = 0

    @property
    def days_to_resolve(self) -> float | None:
        if self.ledger is None or self.ledger.resolved_at is None:
            return None
        return (self.ledger.resolved_at - self.case.created_at).total_seconds() / 86400


@dataclass
class CasePage:
    rows: list[LedgerRow]
    total: int
    # Sealed cases within the caller's scope that the caller may not see (anonymous count).
    sealed_hidden: int
    limit: int
    offset: int
    # True when more than ``total`` cases match (the count stops at COUNT_LIMIT).
    capped: bool = False


# The 催办 list's first screen: every unit's counts and this many rows (the rest a unit at a time).
REMINDER_FIRST_ROWS = 50
# The 催办 list's key for the cases not assigned to a unit yet (未交办).
UNASSIGNED = "none"


@dataclass
class ReminderUnit:
    """One unit on the 催办 list: its counts, and the rows of it shown (the first ones, or none)."""

    key: str  # the unit's id, or UNASSIGNED
    name: str
    overdue: int
    total: int
    rows: list[LedgerRow] = field(default_factory=list)


@dataclass
class Reminders:
    units: list[ReminderUnit]
    total: int
    overdue: int

    @property
    def shown(self) -> int:
        return sum(len(unit.rows) for unit in self.units)


@dataclass
class Names:
    townships: dict[int, str] = field(default_factory=dict)
    villages: dict[int, str] = field(default_factory=dict)
    units: dict[int, str] = field(default_factory=dict)


def _typed_number(q: str | None) -> str | None:
    """The digits of ``q`` when it is a number as people write one ("2925 7328", "2925-7328"), else None."""
    text = (q or "").strip()
    if not text or any(not ("0" <= char <= "9" or char in " -") for char in text):
        return None
    digits = numbers.clean_typed(text)
    return digits or None


def overdue_clause(deadlines: Deadlines, now: datetime) -> ColumnElement[bool]:
    """Overdue now, or decided or resolved late once (``case_ledger.late``): the statistics' definition too."""
    cutoff = deadlines.created_cutoff(now, deadlines.policy.acceptance_days)
    return or_(
        and_(Case.status == "new", Case.created_at < cutoff),
        and_(Case.status.in_(OPEN), CaseLedger.resolution_due <= now),
        CaseLedger.late.is_(True),
    )


async def _recording_counts(session: AsyncSession, case_ids: list[int]) -> dict[int, int]:
    """How many recordings each of ``case_ids`` has on disk (one grouped query for a page's rows)."""
    if not case_ids:
        return {}
    statement = (
        select(Recording.case_id, func.count())
        .where(Recording.case_id.in_(case_ids), Recording.purged_at.is_(None))
        .group_by(Recording.case_id)
    )
    return {case_id: int(count) for case_id, count in (await session.execute(statement)).all() if case_id is not None}


def _id_in(parts: list[Select[int]]) -> ColumnElement[bool]:
    """``cases.id IN`` the union of the parts (flat: SQLite refuses a parenthesised union inside another)."""
    return Case.id.in_(union_all(*parts) if len(parts) > 1 else parts[0])


def _deadline_ids(kind: DeadlineFilter, deadlines: Deadlines, now: datetime) -> list[Select[int]]:
    """The ids of the cases on one deadline list, each part from the index that makes it small.

    New cases through ``(status, created_at)`` (one cutoff: see cases.clocks); open cases through their
    state (a few per cent of all cases) checked against their own ledger row — every deadline that ever
    passed is most of the ledger — or, for a narrow window, through the ledger's deadline index. Put as an
    OR across the list's outer join instead, SQLite reads the whole table.
    """
    acceptance_days = deadlines.policy.acceptance_days
    if kind == "overdue":
        cutoff = deadlines.created_cutoff(now, acceptance_days)
        return [
            select(Case.id).where(Case.status == "new", Case.created_at < cutoff),
            _open_cases(CaseLedger.resolution_due <= now),
        ]
    if kind == "due_soon":
        soon = deadlines.due_soon_until(now)
        overdue_cutoff = deadlines.created_cutoff(now, acceptance_days)
        soon_cutoff = deadlines.created_cutoff(soon, acceptance_days)
        return [
            select(Case.id).where(
                Case.status == "new", Case.created_at >= overdue_cutoff, Case.created_at < soon_cutoff
            ),
            _open_cases(CaseLedger.resolution_due > now, CaseLedger.resolution_due <= soon),
        ]
    if kind == "followup_due":
        return [select(Case.id).where(Case.status == "resolved", _ledger_has(lambda row: row.followup_due <= now))]
    return [select(CaseLedger.case_id).where(CaseLedger.extension_state == "requested")]


def _open_cases(*deadline: ColumnElement[bool]) -> Select[int]:
    """Open cases (受理 or 办理中) by their resolution deadline, through the ledger's index of open deadlines.

    An open case is one accepted and not (or no longer) resolved: the predicate of
    ``ix_case_ledger_open_due``, a partial index holding only those rows, a few per cent of the ledger.
    """
    return (
        select(CaseLedger.case_id)
        .join(Case, Case.id == CaseLedger.case_id)
        .where(CaseLedger.accepted_at.is_not(None), CaseLedger.resolved_at.is_(None), *deadline)
        .where(Case.status.in_(OPEN))
    )


def _ledger_has(condition: Callable[[type[CaseLedger]], ColumnElement[bool]]) -> ColumnElement[bool]:
    """The case's own ledger row meets ``condition`` (looked up by key, case by case).

    Its own alias of the ledger: the list's outer join already names ``case_ledger``.
    """
    row = aliased(CaseLedger)
    return exists().where(row.case_id == Case.id, condition(row)).correlate(Case)


def is_overdue(case: Case, ledger: CaseLedger | None, deadlines: Deadlines, now: datetime) -> bool:
    """The same rule as :func:`overdue_clause`, for one case already in memory."""
    if ledger is not None and ledger.late:
        return True
    if case.status == "new":
        return now >= deadlines.acceptance_deadline(case.created_at)
    if case.status in OPEN and ledger is not None and ledger.resolution_due is not None:
        return now >= ledger.resolution_due
    return False


def current_deadline(case: Case, ledger: CaseLedger | None, deadlines: Deadlines) -> tuple[str | None, datetime | None]:
    """The clock that runs now: 受理 (new), 办理 (accepted, in progress) or 回访 (resolved)."""
    if case.status == "new":
        return "受理", deadlines.acceptance_deadline(case.created_at)
    if case.status in OPEN and ledger is not None:
        return "办理", ledger.resolution_due
    if case.status == "resolved" and ledger is not None and ledger.followup_due is not None:
        return "回访", deadlines.end_of(deadlines.local_date(ledger.followup_due))
    return None, None


class Ledger:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        holidays: HolidayTable,
        access: CaseAccess,
        *,
        page_size: int = 50,
        export_max_rows: int = 1_000_000,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self.holidays = holidays
        self.access = access
        self.page_size = page_size
        self.export_max_rows = export_max_rows

    # -- the filtered query -----------------------------------------------------------------

    def _scoped(self, principal: Principal, statement: SelectT, *, test_calls: TestCalls) -> SelectT:
        principal.require_role(*READ_ROLES)
        scope = principal.township_filter()
        if scope is not None:
            statement = statement.where(Case.township_id.in_(scope))
        if not principal.has_role("inspector"):
            statement = statement.where(Case.sealed.is_(False))
        if test_calls != "with":
            statement = statement.where(Case.test_call.is_(test_calls == "only"))
        return statement

    def _filtered(
        self, principal: Principal, statement: SelectT, filters: CaseFilters, deadlines: Deadlines, now: datetime
    ) -> SelectT:
        typed_number = _typed_number(filters.q)
        # A typed number finds its case, test call or not (scope and sealing still apply).
        test_calls = "with" if typed_number is not None else filters.test_calls
        statement = self._scoped(principal, statement, test_calls=test_calls)
        zone_start = deadlines.start_of
        if filters.statuses:
            statement = statement.where(Case.status.in_(filters.statuses))
        if filters.township_id is not None:
            statement = statement.where(Case.township_id == filters.township_id)
        if filters.village_id is not None:
            statement = statement.where(Case.village_id == filters.village_id)
        if filters.unit_id is not None:
            statement = statement.where(Case.unit_id == filters.unit_id)
        if filters.category:
            statement = statement.where(Case.category == filters.category)
        if filters.channel:
            statement = statement.where(Case.channel == filters.channel)
        if filters.created_from is not None:
            statement = statement.where(Case.created_at >= zone_start(filters.created_from))
        if filters.created_to is not None:
            statement = statement.where(Case.created_at < zone_start(filters.created_to + timedelta(days=1)))
        if filters.sealed_only:
            statement = statement.where(Case.sealed.is_(True))
        if typed_number is not None:
            # A case number or a phone number: exact, through their indexes (a LIKE would read every row).
            statement = statement.where(or_(Case.number == typed_number, Case.caller_number == typed_number))
        elif filters.q and filters.q.strip():
            text = filters.q.strip()
            escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = f"%{escaped}%"
            statement = statement.where(
                or_(Case.summary.like(pattern, escape="\\"), Case.caller_name.like(pattern, escape="\\"))
            )
        if filters.deadline is not None:
            statement = statement.where(self._deadline_clause(filters.deadline, deadlines, now))
        return statement

    @staticmethod
    def _deadline_clause(kind: DeadlineFilter, deadlines: Deadlines, now: datetime) -> ColumnElement[bool]:
        return _id_in(_deadline_ids(kind, deadlines, now))

    @staticmethod
    def _ordered(statement: SelectT, sort: Sort) -> SelectT:
        if sort == "oldest":
            return statement.order_by(Case.created_at, Case.id)
        if sort == "due":
            return statement.order_by(CaseLedger.resolution_due.is_(None), CaseLedger.resolution_due, Case.created_at)
        return statement.order_by(Case.created_at.desc(), Case.id.desc())

    async def names(self, session: AsyncSession) -> Names:
        """Township, village and unit names (a county has a few hundred of them at most)."""
        names = Names()
        names.townships = dict((await session.execute(select(Township.id, Township.name))).all())
        names.villages = dict((await session.execute(select(Village.id, Village.name))).all())
        names.units = dict((await session.execute(select(Unit.id, Unit.name))).all())
        return names

    def _row(
        self,
        principal: Principal,
        case: Case,
        ledger: CaseLedger | None,
        names: Names,
        deadlines: Deadlines,
        *,
        recordings: int = 0,
    ) -> LedgerRow:
        now = self._clock.now()
        kind, deadline = current_deadline(case, ledger, deadlines)
        return LedgerRow(
            case=case,
            ledger=ledger,
            township=names.townships.get(case.township_id) if case.township_id else None,
            village=names.villages.get(case.village_id) if case.village_id else None,
            unit=names.units.get(case.unit_id) if case.unit_id else None,
            caller=self.access.caller_display(principal, case),
            deadline=deadline,
            overdue=is_overdue(case, ledger, deadlines, now),
            deadline_kind=kind,
            recordings=recordings,
        )

    # -- the list ---------------------------------------------------------------------------

    async def page(
        self, principal: Principal, filters: CaseFilters, *, limit: int | None = None, offset: int = 0
    ) -> CasePage:
        limit = limit or self.page_size
        now = self._clock.now()
        async with self._sessions() as session:
            deadlines = await self.holidays.deadlines(session)
            base = select(Case, CaseLedger).outerjoin(CaseLedger, CaseLedger.case_id == Case.id)
            statement = self._ordered(self._filtered(principal, base, filters, deadlines, now), filters.sort)
            result = await session.execute(statement.limit(limit).offset(offset))
            pairs = result.all()
            # Counted exactly up to COUNT_LIMIT (a page says "more than 10,000" beyond): an exact count of a
            # million rows costs a full scan on every page view, and nobody pages that far.
            matching = self._filtered(principal, select(Case.id), filters, deadlines, now).limit(COUNT_LIMIT + 1)
            total = int(await session.scalar(select(func.count()).select_from(matching.subquery())) or 0)
            sealed_hidden = 0
            if not principal.has_role("inspector"):
                sealed_hidden = await self._sealed_count(session, principal)
            names = await self.names(session)
            recorded = await _recording_counts(session, [case.id for case, _ in pairs])
        rows = [
            self._row(principal, case, ledger, names, deadlines, recordings=recorded.get(case.id, 0))
            for case, ledger in pairs
        ]
        await self._log_sealed_rows(principal, rows)
        capped = total > COUNT_LIMIT
        return CasePage(rows, min(total, COUNT_LIMIT), sealed_hidden, limit, offset, capped)

    async def counts(self, principal: Principal, filters: Sequence[CaseFilters]) -> list[int]:
        """How many cases ``principal`` would see under each of ``filters`` (up to COUNT_LIMIT); none is shown."""
        now = self._clock.now()
        found = []
        async with self._sessions() as session:
            deadlines = await self.holidays.deadlines(session)
            for one in filters:
                matching = self._filtered(principal, select(Case.id), one, deadlines, now).limit(COUNT_LIMIT)
                found.append(int(await session.scalar(select(func.count()).select_from(matching.subquery())) or 0))
        return found

    async def _log_sealed_rows(self, principal: Principal, rows: Sequence[LedgerRow], via: str | None = None) -> None:
        """An inspector shown sealed cases in a list: which ones, in the audit log (as for opening one)."""
        sealed = [row.case.id for row in rows if row.case.sealed]
        if sealed and principal.has_role("inspector"):
            await self.access.log(
                principal, "case.list_sealed", "case", None, {"case_ids": sealed, **({"via": via} if via else {})}
            )

    async def _sealed_count(self, session: AsyncSession, principal: Principal) -> int:
        statement = select(func.count()).select_from(Case).where(Case.sealed.is_(True), Case.test_call.is_(False))
        scope = principal.township_filter()
        if scope is not None:
            statement = statement.where(Case.township_id.in_(scope))
        return int(await session.scalar(statement) or 0)

    async def by_number(self, typed: str, *, viewer: audit.Actor, via: str) -> Case | None:
        """A case by its number as a person writes it down ("2925 7328", "2925-7328"): only the digits count.

        For the command line, where nobody signs in (whoever runs it holds the data
        directory): every case is found, and a look at a sealed one is on record.
        """
        async with self._sessions() as session:
            case = await session.scalar(select(Case).where(Case.number == numbers.clean_typed(typed)))
        if case is not None and case.sealed:
            await self.access.record(viewer, "case.view_sealed", "case", case.id, {"via": via})
        return case

    async def row(self, principal: Principal, case: Case) -> LedgerRow:
        """One case (already checked visible) as a list row: names, deadline, overdue."""
        async with self._sessions() as session:
            ledger = await session.get(CaseLedger, case.id)
            deadlines = await self.holidays.deadlines(session)
            names = await self.names(session)
        return self._row(principal, case, ledger, names, deadlines)

    # -- 催办: the daily list per unit ---------------------------------------------------------

    async def reminders(
        self, principal: Principal, *, limit: int = REMINDER_FIRST_ROWS, unit: str | None = None
    ) -> Reminders:
        """Cases overdue or due within the due-soon window, by unit (未交办 for those not yet assigned).

        Every unit's counts, and the first ``limit`` rows in the list's order (units with the most overdue
        first; in a unit, overdue first, then by deadline) — or, with ``unit`` (a unit id, or
        :data:`UNASSIGNED`), that unit's first ``limit`` rows. Read from ``open_cases`` (cases/rollups.py),
        the few per cent of cases whose clock runs: the counts are one grouped query, the rows two ordered
        ones per unit shown, and only the rows shown are loaded whole.
        """
        principal.require_role(*READ_ROLES)
        now = self._clock.now()
        o = OpenCase
        async with self._sessions() as session:
            deadlines = await self.holidays.deadlines(session)
            names = await self.names(session)
            acceptance_days = deadlines.policy.acceptance_days
            overdue_cutoff = deadlines.created_cutoff(now, acceptance_days)
            soon = deadlines.due_soon_until(now)
            soon_cutoff = deadlines.created_cutoff(soon, acceptance_days)
            new_overdue = and_(o.status == "new", o.created_at < overdue_cutoff)
            open_overdue = and_(o.status.in_(OPEN), o.resolution_due <= now)
            overdue = or_(o.late.is_(True), new_overdue, open_overdue)
            listed = [
                or_(
                    and_(o.status == "new", o.created_at < soon_cutoff),
                    and_(o.status.in_(OPEN), o.resolution_due <= soon),
                )
            ]
            scope = principal.township_filter()
            if scope is not None:
                listed.append(o.township_id.in_(scope))
            if not principal.has_role("inspector"):
                listed.append(o.sealed.is_(False))
            counted = select(o.unit_id, func.sum(case_when((overdue, 1), else_=0)), func.count()).where(*listed)
            units = [
                ReminderUnit(
                    str(unit_id) if unit_id is not None else UNASSIGNED,
                    names.units.get(unit_id, "?") if unit_id is not None else "（未交办）",
                    int(overdue_count or 0),
                    int(total),
                )
                for unit_id, overdue_count, total in await session.execute(counted.group_by(o.unit_id))
            ]
            units.sort(key=lambda group: (-group.overdue, group.name))
            if unit is not None:
                units = [group for group in units if group.key == unit]
            left = limit
            chosen: list[tuple[ReminderUnit, list[int]]] = []
            for group in units:
                if left <= 0:
                    break
                in_unit = o.unit_id.is_(None) if group.key == UNASSIGNED else o.unit_id == int(group.key)
                # Each kind in its own deadline order (a new case's 受理 deadline grows with its registration
                # time), overdue first; merged below by the deadline itself.
                firsts: list[tuple[bool, datetime, int]] = []
                for kind, order in ((o.status == "new", o.created_at), (o.status.in_(OPEN), o.resolution_due)):
                    overdue_first = case_when((overdue, 0), else_=1)
                    statement = (
                        select(o.case_id, o.status, o.created_at, o.resolution_due, overdue_first)
                        .where(*listed, in_unit, kind)
                        .order_by(overdue_first, order, o.case_id)
                        .limit(left)
                    )
                    for case_id, status, created_at, resolution_due, later in await session.execute(statement):
                        due = deadlines.acceptance_deadline(created_at) if status == "new" else resolution_due
                        firsts.append((bool(later), due or now, case_id))
                firsts.sort()
                ids = [case_id for _later, _due, case_id in firsts[:left]]
                chosen.append((group, ids))
                left -= len(ids)
            wanted = [case_id for _group, ids in chosen for case_id in ids]
            loaded = {
                found.id: (found, ledger)
                for found, ledger in await session.execute(
                    select(Case, CaseLedger)
                    .outerjoin(CaseLedger, CaseLedger.case_id == Case.id)
                    .where(Case.id.in_(wanted))
                )
            }
        for group, ids in chosen:
            group.rows = [
                self._row(principal, *loaded[case_id], names, deadlines) for case_id in ids if case_id in loaded
            ]
        await self._log_sealed_rows(principal, [row for group, _ids in chosen for row in group.rows], via="reminders")
        return Reminders(units, sum(group.total for group in units), sum(group.overdue for group in units))

    # -- exports ----------------------------------------------------------------------------

    async def export_rows(self, principal: Principal, filters: CaseFilters) -> AsyncIterator[LedgerRow]:
        """Every matching case, oldest first, fetched in pages (an export may hold a million rows)."""
        now = self._clock.now()
        sealed_ids: list[int] = []
        async with self._sessions() as session:
            deadlines = await self.holidays.deadlines(session)
            names = await self.names(session)
        last: tuple[datetime, int] | None = None
        sent = 0
        while sent < self.export_max_rows:
            async with self._sessions() as session:
                base = select(Case, CaseLedger).outerjoin(CaseLedger, CaseLedger.case_id == Case.id)
                statement = self._filtered(principal, base, filters, deadlines, now)
                if last is not None:
                    statement = statement.where(
                        or_(Case.created_at > last[0], and_(Case.created_at == last[0], Case.id > last[1]))
                    )
                batch = min(2000, self.export_max_rows - sent)
                statement = statement.order_by(Case.created_at, Case.id).limit(batch)
                pairs = (await session.execute(statement)).all()
            if not pairs:
                break
            for case, ledger in pairs:
                if case.sealed:
                    sealed_ids.append(case.id)
                yield self._row(principal, case, ledger, names, deadlines)
            sent += len(pairs)
            last = (pairs[-1][0].created_at, pairs[-1][0].id)
            if len(pairs) < batch:
                break
        await self.access.log(
            principal,
            "case.export",
            "case",
            None,
            {"filters": filters.as_dict(), "rows": sent, **({"sealed_case_ids": sealed_ids} if sealed_ids else {})},
        )

    # -- saved views ------------------------------------------------------------------------

    async def views(self, principal: Principal) -> Sequence[CaseView]:
        async with self._sessions() as session:
            statement = (
                select(CaseView)
                .where(or_(CaseView.user_id == principal.user_id, CaseView.shared.is_(True)))
                .order_by(CaseView.shared, CaseView.name)
            )
            return (await session.scalars(statement)).all()

    async def view(self, principal: Principal, view_id: int) -> CaseView:
        async with self._sessions() as session:
            view = await session.get(CaseView, view_id)
        if view is None or not (view.shared or view.user_id == principal.user_id):
            raise NotFound("视图不存在", code="case_view.not_found")
        return view

    async def save_view(self, principal: Principal, name: str, filters: CaseFilters, *, shared: bool) -> CaseView:
        principal.require_role(*READ_ROLES)
        name = name.strip()
        if not 1 <= len(name) <= 64 or any(ord(ch) < 32 for ch in name):
            raise InvalidInput("视图名称应为1到64个字", fields={"name": "1到64个字"})
        async with self._sessions() as session:
            view = CaseView(
                user_id=principal.user_id, name=name, filters=filters.as_dict(), shared=shared,
                created_at=self._clock.now(),
            )  # fmt: skip
            session.add(view)
            try:
                await session.commit()
            except IntegrityError:
                raise Conflict("已有同名的视图", code="case_view.exists", fields={"name": "已存在"}) from None
            return view

    async def delete_view(self, principal: Principal, view_id: int) -> None:
        async with self._sessions() as session:
            view = await session.get(CaseView, view_id)
            if view is None or view.user_id != principal.user_id:
                raise NotFound("视图不存在", code="case_view.not_found")
            await session.delete(view)
            await session.commit()

    # -- missed calls (未接来电待回拨) ------------------------------------------------------------

    async def missed_calls(
        self, principal: Principal, *, state: str | None = "pending", limit: int = 100, offset: int = 0
    ) -> tuple[list[tuple[MissedCall, str | None]], int]:
        principal.require_role(*READ_ROLES)
        statement = select(MissedCall).where(MissedCall.test_call.is_(False))
        scope = principal.township_filter()
        if scope is not None:
            statement = statement.where(MissedCall.township_id.in_(scope))
        if not principal.has_role("inspector"):
            statement = statement.where(MissedCall.sealed.is_(False))
        if state:
            statement = statement.where(MissedCall.callback_state == state)
        async with self._sessions() as session:
            total = int(await session.scalar(select(func.count()).select_from(statement.subquery())) or 0)
            rows = (await session.scalars(statement.order_by(MissedCall.at.desc()).limit(limit).offset(offset))).all()
        shown = []
        for missed in rows:
            full = self.access.shows_full_number(principal, sealed=missed.sealed)
            number = missed.caller_number if full else mask_number(missed.caller_number)
            shown.append((missed, number))
        return shown, total

    async def dismiss_missed(self, principal: Principal, missed_id: int, reason: str) -> MissedCall:
        """无需回拨: a missed call nobody needs to return (a wrong number, already called back another way)."""
        reason = reason.strip()
        if not reason or len(reason) > 255:
            raise InvalidInput("请写明不需要回拨的原因（最多255个字）", fields={"reason": "1到255个字"})
        async with self._sessions() as session:
            missed = await session.get(MissedCall, missed_id)
            if missed is None or not self.access.may_see(
                principal, sealed=missed.sealed, township_id=missed.township_id
            ):
                if missed is not None and missed.sealed:
                    self.access.deny(principal, "missed_call.sealed_denied", "missed_call", missed_id, {})
                raise NotFound("未接来电不存在", code="missed_call.not_found")
            self.access.require(principal, "callback", sealed=missed.sealed)
            if missed.callback_state != "pending":
                raise Conflict("这通未接来电已经处理过了", code="missed_call.done")
            missed.callback_state = "not_needed"
            audit.record(
                session,
                principal.actor,
                at=self._clock.now(),
                action="missed_call.dismiss",
                object_type="missed_call",
                object_id=missed.id,
                detail={"reason": reason},
            )
            await session.commit()
            return missed


# -- the export format -------------------------------------------------------------------------------

EXPORT_COLUMNS = (
    "受理编号",
    "来源渠道",
    "登记时间",
    "来电号码",
    "姓名",
    "乡镇",
    "村（社区）",
    "类别",
    "诉求摘要",
    "状态",
    "受理时间",
    "受理期限",
    "承办单位",
    "包案领导",
    "交办时间",
    "办理期限",
    "延期天数",
    "办结时间",
    "办结结果",
    "办理结果",
    "告知方式",
    "回访时间",
    "回访方式",
    "满意度",
    "重办次数",
    "销号时间",
    "是否超期",
    "办理天数",
    "密封",
)


def export_values(row: LedgerRow, deadlines: Deadlines) -> list[str]:
    case, ledger = row.case, row.ledger

    def when(value: datetime | None) -> str:
        return value.astimezone(deadlines.policy.zone).strftime("%Y-%m-%d %H:%M") if value else ""

    def due(value: datetime | None) -> str:
        return deadlines.last_day(value).isoformat() if value else ""

    acceptance_due = ledger.acceptance_due if ledger and ledger.acceptance_due else None
    if acceptance_due is None and case.status == "new":
        acceptance_due = deadlines.acceptance_deadline(case.created_at)
    days = row.days_to_resolve
    return [
        case.number,
        CASE_CHANNEL_LABELS.get(case.channel, case.channel),
        when(case.created_at),
        row.caller or "",
        case.caller_name or "",
        row.township or "",
        row.village or "",
        CASE_CATEGORIES.get(case.category, case.category),
        (case.summary or "").replace("\r", " "),
        CASE_STATUS_LABELS.get(case.status, case.status),
        when(ledger.accepted_at) if ledger else "",
        due(acceptance_due),
        row.unit or "",
        (ledger.leader_name or "") if ledger else "",
        when(ledger.assigned_at) if ledger else "",
        due(ledger.resolution_due) if ledger else "",
        str(ledger.extension_days) if ledger and ledger.extension_days else "",
        when(ledger.resolved_at) if ledger else "",
        OUTCOME_LABELS.get(ledger.outcome or "", "") if ledger else "",
        (ledger.result or "") if ledger else "",
        REPLY_METHODS.get(ledger.result_told_via or "", "") if ledger else "",
        when(ledger.followed_up_at) if ledger else "",
        FOLLOWUP_METHODS.get(ledger.followup_method or "", "") if ledger else "",
        SATISFACTION_LABELS.get(ledger.satisfaction or "", "") if ledger else "",
        str(ledger.reopen_count) if ledger and ledger.reopen_count else "",
        when(ledger.closed_at) if ledger else "",
        "是" if row.overdue else "否",
        f"{days:.4f}" if days is not None else "",
        "是" if case.sealed else "",
    ]


# A cell starting with one of these is taken for a formula by Excel and WPS (CSV injection): a summary
# typed as "=HYPERLINK(…)" must reach the county office as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: str) -> str:
    """A CSV cell Excel shows as the text it is: one that would start a formula gets a leading apostrophe."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


async def csv_chunks(rows: AsyncIterator[LedgerRow], deadlines: Deadlines) -> AsyncIterator[bytes]:
    """The export as UTF-8 CSV with a byte-order mark (Excel on a county office PC opens it as Chinese)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    yield ("\ufeff" + buffer.getvalue()).encode("utf-8")
    buffer.seek(0)
    buffer.truncate()
    count = 0
    async for row in rows:
        writer.writerow([csv_safe(value) for value in export_values(row, deadlines)])
        count += 1
        if count % 500 == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")


class XlsxExport:
    """The export as an Excel workbook, written row by row to a file (openpyxl's write-only mode).

    Blocking: call :meth:`append` and :meth:`save` through ``asyncio.to_thread``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._book = Workbook(write_only=True)
        self._sheet = self._book.create_sheet("台账")
        self._sheet.append(list(EXPORT_COLUMNS))

    def append(self, rows: Sequence[Sequence[str]]) -> None:
        for values in rows:
            cells = []
            for value in values:
                cell = WriteOnlyCell(self._sheet, value=value)
                # Text stays text: openpyxl would store "=…" as a formula that Excel runs on opening.
                cell.data_type = "s"
                cells.append(cell)
            self._sheet.append(cells)

    def save(self) -> None:
        self._book.save(self.path)
