"""Statistics for leaders: received, accepted, resolved (化解率), satisfaction, overdue, days to resolve.

Definitions (the export has a column for each; the tests recompute every
figure from an exported CSV):

* **received** (受理登记): cases that came in during the period (by
  ``created_at``, local dates, both ends included). Test calls never count.
* **accepted** (受理): of those, the ones accepted (受理时间 set).
* **resolved** (化解): currently 已办结/已回访/已销号 with the outcome 已化解;
  **partly** (部分化解) is counted beside it, not in it.
* **化解率** = resolved ÷ accepted.
* **satisfaction rate** (满意率) = (满意 + 基本满意) ÷ every follow-up answer
  (a reopened case keeps its 不满意 until it is asked again).
* **overdue** (超期): over a deadline now (受理 or 办理), or decided/resolved
  late at some point (the ``late`` mark stays).
* **average days to resolve**: from registration to resolution, over the
  cases resolved (办结时间 set).

Sealed cases (违纪举报) are counted fully for inspectors; for everyone else
they are left out of every figure and shown only as one anonymous count per
period — so nobody can narrow a report down to a village and a month.

Every figure is computed for the period and for the same dates a year
earlier, in one grouped query per period (township × village × category ×
channel × month), rolled up here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Float,
    Label,
    Select,
    String,
    and_,
    case,
    cast,
    func,
    literal_column,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.principal import Principal
from cases.clocks import Deadlines, HolidayTable
from cases.ledger import OPEN, overdue_clause
from cases.rollups import rollup_zone
from cases.sealed import READ_ROLES
from common.clock import Clock
from common.errors import InvalidInput
from storage.models import (
    CASE_CATEGORIES,
    CASE_CHANNEL_LABELS,
    Case,
    CaseLedger,
    CaseRollup,
    OpenCase,
    Township,
    Village,
)

DIMENSIONS = {"township": "乡镇", "village": "村（社区）", "category": "类别", "channel": "来源渠道", "month": "月份"}
MAX_PERIOD_DAYS = 3 * 366
# IANA zone names (Asia/Shanghai): safe to write into SQL as a literal.
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+/-]+")


@dataclass
class Figures:
    received: int = 0
    accepted: int = 0
    resolved: int = 0
    partly: int = 0
    satisfied: int = 0
    basically: int = 0
    unsatisfied: int = 0
    overdue: int = 0
    days_sum: float = 0.0
    days_count: int = 0

    def add(self, other: Figures) -> None:
        # Spelled out: a loop of getattr/setattr over the fields was a third of a county view's time.
        self.received += other.received
        self.accepted += other.accepted
        self.resolved += other.resolved
        self.partly += other.partly
        self.satisfied += other.satisfied
        self.basically += other.basically
        self.unsatisfied += other.unsatisfied
        self.overdue += other.overdue
        self.days_sum += other.days_sum
        self.days_count += other.days_count

    @property
    def resolution_rate(self) -> float | None:
        return self.resolved / self.accepted if self.accepted else None

    @property
    def answered(self) -> int:
        return self.satisfied + self.basically + self.unsatisfied

    @property
    def satisfaction_rate(self) -> float | None:
        return (self.satisfied + self.basically) / self.answered if self.answered else None

    @property
    def average_days(self) -> float | None:
        return self.days_sum / self.days_count if self.days_count else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "accepted": self.accepted,
            "resolved": self.resolved,
            "partly_resolved": self.partly,
            "resolution_rate": _rounded(self.resolution_rate, 4),
            "satisfied": self.satisfied,
            "basically_satisfied": self.basically,
            "unsatisfied": self.unsatisfied,
            "satisfaction_rate": _rounded(self.satisfaction_rate, 4),
            "overdue": self.overdue,
            "average_days_to_resolve": _rounded(self.average_days, 2),
        }


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class Group:
    key: str
    label: str
    current: Figures
    last_year: Figures


@dataclass
class Report:
    date_from: date
    date_to: date
    last_from: date
    last_to: date
    total: Figures
    last_total: Figures
    groups: dict[str, list[Group]] = field(default_factory=dict)
    includes_sealed: bool = False
    # Sealed cases left out of every figure above (0 for inspectors, whose figures include them).
    sealed_hidden: int = 0
    sealed_hidden_last_year: int = 0
    computed_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.date_from,
            "to": self.date_to,
            "last_year_from": self.last_from,
            "last_year_to": self.last_to,
            "computed_at": self.computed_at,
            "includes_sealed": self.includes_sealed,
            "sealed_hidden": self.sealed_hidden,
            "sealed_hidden_last_year": self.sealed_hidden_last_year,
            "total": self.total.as_dict(),
            "last_year_total": self.last_total.as_dict(),
            "by": {
                dimension: [
                    {"key": g.key, "label": g.label, "current": g.current.as_dict(), "last_year": g.last_year.as_dict()}
                    for g in groups
                ]
                for dimension, groups in self.groups.items()
            },
        }


def year_before(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


# (first key, second key) of a group, as text: a township id, (township id, village id), a category…
_Key = tuple[str | None, str | None]


class Statistics:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock, holidays: HolidayTable) -> None:
        self._sessions = sessions
        self._clock = clock
        self.holidays = holidays

    def default_period(self) -> tuple[date, date]:
        """This year so far."""
        today = self._clock.now().astimezone(self.holidays.policy.zone).date()
        return date(today.year, 1, 1), today

    async def report(self, principal: Principal, date_from: date | None = None, date_to: date | None = None) -> Report:
        principal.require_role(*READ_ROLES)
        default_from, default_to = self.default_period()
        date_from, date_to = date_from or default_from, date_to or default_to
        if date_to < date_from:
            raise InvalidInput("结束日期不能早于开始日期", fields={"date_to": "早于开始日期"})
        if (date_to - date_from).days > MAX_PERIOD_DAYS:
            raise InvalidInput("统计区间最长三年", fields={"date_to": "区间太长"})
        last_from, last_to = year_before(date_from), year_before(date_to)
        now = self._clock.now()
        inspector = principal.has_role("inspector")
        async with self._sessions() as session:
            deadlines = await self.holidays.deadlines(session)
            # The daily roll-ups when they count days in this service's zone (cases/rollups.py), else the cases.
            rolled = await rollup_zone(session) == deadlines.policy.zone.key
            current = await self._grouped(session, principal, deadlines, now, date_from, date_to, rolled=rolled)
            previous = await self._grouped(session, principal, deadlines, now, last_from, last_to, rolled=rolled)
            townships = dict((await session.execute(select(Township.id, Township.name))).all())
            villages = {
                village_id: (township_id, name)
                for village_id, township_id, name in (
                    await session.execute(select(Village.id, Village.township_id, Village.name))
                )
            }
            hidden = hidden_last = 0
            if not inspector:
                hidden = await self._sealed(session, principal, deadlines, date_from, date_to, rolled=rolled)
                hidden_last = await self._sealed(session, principal, deadlines, last_from, last_to, rolled=rolled)
        report = Report(
            date_from, date_to, last_from, last_to, Figures(), Figures(), includes_sealed=inspector,
            sealed_hidden=hidden, sealed_hidden_last_year=hidden_last, computed_at=now,
        )  # fmt: skip
        # Every case is in exactly one channel group: their sum is the total.
        for figures in current.get("channel", {}).values():
            report.total.add(figures)
        for figures in previous.get("channel", {}).values():
            report.last_total.add(figures)

        def township_label(key: _Key) -> tuple[str, str]:
            township_id = int(key[0]) if key[0] else None
            name = townships.get(township_id, "（未定乡镇）") if township_id else "（未定乡镇）"
            return key[0] or "", name

        def village_label(key: _Key) -> tuple[str, str]:
            if key[1] is None:
                return f"t{key[0] or ''}", f"{township_label(key)[1]}·（未定村）"
            township_id, name = villages.get(int(key[1]), (None, "?"))
            return key[1], f"{townships.get(township_id, '') if township_id else ''}·{name}"

        def category_label(key: _Key) -> tuple[str, str]:
            return key[0] or "", CASE_CATEGORIES.get(key[0] or "", key[0] or "")

        def channel_label(key: _Key) -> tuple[str, str]:
            return key[0] or "", CASE_CHANNEL_LABELS.get(key[0] or "", key[0] or "")

        roll: dict[str, Callable[[_Key], tuple[str, str]]] = {
            "township": township_label,
            "village": village_label,
            "category": category_label,
            "channel": channel_label,
        }
        for dimension, labeller in roll.items():
            report.groups[dimension] = _roll_up(current.get(dimension, {}), previous.get(dimension, {}), labeller)
        report.groups["month"] = _roll_up_months(
            current.get("month", {}), previous.get("month", {}), months_between(date_from, date_to)
        )
        return report

    async def _grouped(
        self,
        session: AsyncSession,
        principal: Principal,
        deadlines: Deadlines,
        now: datetime,
        date_from: date,
        date_to: date,
        *,
        rolled: bool = False,
    ) -> dict[str, dict[_Key, Figures]]:
        """One statement: the period's cases read once (a materialised CTE), grouped five ways (UNION ALL).

        ``rolled``: the period's daily roll-ups instead of its cases, plus the cases over a deadline now
        and not yet marked late (the only figure that changes with the clock), counted live.
        """
        dialect = session.get_bind().dialect.name
        month = self._month(dialect, deadlines, date_from)
        if rolled:
            return await self._from_rollups(session, principal, deadlines, now, date_from, date_to)
        if dialect == "sqlite":
            days: ColumnElement[Any] = func.julianday(CaseLedger.resolved_at) - func.julianday(Case.created_at)
        else:
            days = func.extract("epoch", CaseLedger.resolved_at - Case.created_at) / 86400.0

        def count_if(condition: ColumnElement[bool], name: str) -> Label[Any]:
            return func.sum(case((condition, 1), else_=0)).label(name)

        # The finest grouping first (one pass over the period's cases), rolled up five ways from there.
        keys = (Case.township_id, Case.village_id, Case.category, Case.channel, month)
        rows = (
            select(
                Case.township_id.label("township_id"),
                Case.village_id.label("village_id"),
                Case.category.label("category"),
                Case.channel.label("channel"),
                month.label("month"),
                func.count().label("received"),
                count_if(CaseLedger.accepted_at.is_not(None), "accepted"),
                count_if(CaseLedger.outcome == "resolved", "resolved"),
                count_if(CaseLedger.outcome == "partly_resolved", "partly"),
                count_if(CaseLedger.satisfaction == "satisfied", "satisfied"),
                count_if(CaseLedger.satisfaction == "basically_satisfied", "basically"),
                count_if(CaseLedger.satisfaction == "unsatisfied", "unsatisfied"),
                count_if(overdue_clause(deadlines, now), "overdue"),
                func.sum(cast(days, Float)).label("days"),
                func.count(CaseLedger.resolved_at).label("resolved_any"),
            )
            .select_from(Case)
            .outerjoin(CaseLedger, CaseLedger.case_id == Case.id)
            .where(
                Case.created_at >= deadlines.start_of(date_from),
                Case.created_at < deadlines.start_of(date_to + timedelta(days=1)),
                Case.test_call.is_(False),
            )
            .group_by(*keys)
        )
        scope = principal.township_filter()
        if scope is not None:
            rows = rows.where(Case.township_id.in_(scope))
        if not principal.has_role("inspector"):
            rows = rows.where(Case.sealed.is_(False))
        period = rows.cte("period").prefix_with("MATERIALIZED")
        c = period.c
        figures = [
            func.sum(c.received),
            func.sum(c.accepted),
            func.sum(c.resolved),
            func.sum(c.partly),
            func.sum(c.satisfied),
            func.sum(c.basically),
            func.sum(c.unsatisfied),
            func.sum(c.overdue),
            func.sum(c.days),
            func.sum(c.resolved_any),
        ]
        nothing = cast(null(), String)

        def grouped(dimension: str, first: Any, second: Any = None) -> Select[*tuple[Any, ...]]:
            group_keys = [first] if second is None else [first, second]
            return select(
                literal_column(f"'{dimension}'").label("dimension"),
                cast(first, String).label("key_1"),
                (cast(second, String) if second is not None else nothing).label("key_2"),
                *figures,
            ).group_by(*group_keys)

        statement = union_all(
            grouped("township", c.township_id),
            grouped("village", c.township_id, c.village_id),
            grouped("category", c.category),
            grouped("channel", c.channel),
            grouped("month", c.month),
        )
        result: dict[str, dict[_Key, Figures]] = {}
        for row in await session.execute(statement):
            result.setdefault(str(row[0]), {})[(row[1], row[2])] = Figures(
                received=int(row[3]),
                accepted=int(row[4] or 0),
                resolved=int(row[5] or 0),
                partly=int(row[6] or 0),
                satisfied=int(row[7] or 0),
                basically=int(row[8] or 0),
                unsatisfied=int(row[9] or 0),
                overdue=int(row[10] or 0),
                days_sum=float(row[11] or 0.0),
                days_count=int(row[12] or 0),
            )
        return result

    async def _from_rollups(
        self,
        session: AsyncSession,
        principal: Principal,
        deadlines: Deadlines,
        now: datetime,
        date_from: date,
        date_to: date,
    ) -> dict[str, dict[_Key, Figures]]:
        """The period from the roll-ups (whole months from the month rows, the rest from the day rows),
        plus the cases over a deadline now and not yet marked late (the one figure that moves with the clock)."""
        r = CaseRollup
        if session.get_bind().dialect.name == "sqlite":
            rolled_month: ColumnElement[Any] = func.strftime(literal_column("'%Y-%m'"), r.day)
        else:
            rolled_month = func.to_char(r.day, literal_column("'YYYY-MM'"))
        sums = [
            func.sum(column)
            for column in (r.received, r.accepted, r.resolved, r.partly, r.satisfied, r.basically, r.unsatisfied,
                           r.late, r.days_sum, r.days_count)
        ]  # fmt: skip
        # Months are read from the channel rows only (villages and categories are shown for the whole period):
        # a few hundred rows for a year instead of thousands to add up here.
        channel_month = case((r.dimension == "channel", rolled_month), else_=null())
        statement = (
            select(r.dimension, r.township_id, r.key, channel_month, *sums)
            .where(_rollup_spans(date_from, date_to))
            .group_by(r.dimension, r.township_id, r.key, channel_month)
        )
        scope = principal.township_filter()
        if scope is not None:
            statement = statement.where(r.township_id.in_(scope))
        if not principal.has_role("inspector"):
            statement = statement.where(r.sealed.is_(False))
        result: dict[str, dict[_Key, Figures]] = {name: {} for name in ("township", "village", "category", "channel",
                                                                          "month")}  # fmt: skip

        def add(dimension: str, key: _Key, figures: Figures) -> None:
            result[dimension].setdefault(key, Figures()).add(figures)

        for dimension, township, key, in_month, *values in await session.execute(statement):
            figures = Figures(
                received=int(values[0] or 0), accepted=int(values[1] or 0), resolved=int(values[2] or 0),
                partly=int(values[3] or 0), satisfied=int(values[4] or 0), basically=int(values[5] or 0),
                unsatisfied=int(values[6] or 0), overdue=int(values[7] or 0), days_sum=float(values[8] or 0.0),
                days_count=int(values[9] or 0),
            )  # fmt: skip
            township_key = str(township) if township else None
            if dimension == "village":
                add("village", (township_key, key if key != "0" else None), figures)
            elif dimension == "category":
                add("category", (key, None), figures)
            else:  # every case has exactly one channel: these rows give the townships and the months too
                add("channel", (key, None), figures)
                add("township", (township_key, None), figures)
                add("month", (str(in_month), None), figures)

        overdue_now = _overdue_now(session.get_bind().dialect.name, principal, deadlines, now, date_from, date_to)
        for dimension, keys, count in await session.execute(overdue_now):
            figures = Figures(overdue=int(count))
            if dimension == "village":
                township, village = keys.split(":")
                add("village", (township or None, village or None), figures)
            else:
                add(dimension, (keys or None, None), figures)
        return result

    @staticmethod
    def _month(dialect: str, deadlines: Deadlines, around: date, created_at: Any = None) -> ColumnElement[Any]:
        created = Case.created_at if created_at is None else created_at
        zone = deadlines.policy.zone
        if dialect == "sqlite":
            # SQLite has no time zones: the zone's offset at the start of the period (China has no DST).
            offset = datetime.combine(around, datetime.min.time(), zone).utcoffset() or timedelta(0)
            minutes = int(offset.total_seconds() // 60)
            # Literal SQL, not bound parameters: GROUP BY must see the very same expression as SELECT.
            return func.strftime(literal_column("'%Y-%m'"), created, literal_column(f"'{minutes:+d} minutes'"))
        if not _ZONE_NAME.fullmatch(zone.key):
            raise ValueError(f"unexpected time zone name {zone.key!r}")
        return func.to_char(func.timezone(literal_column(f"'{zone.key}'"), created), literal_column("'YYYY-MM'"))

    async def _sealed(
        self,
        session: AsyncSession,
        principal: Principal,
        deadlines: Deadlines,
        date_from: date,
        date_to: date,
        *,
        rolled: bool = False,
    ) -> int:
        if rolled:  # the sealed roll-ups' channel rows: one per case (counted from the cases, 2 % of a year's)
            r = CaseRollup
            rolled_count = select(func.sum(r.received)).where(
                _rollup_spans(date_from, date_to), r.sealed.is_(True), r.dimension == "channel"
            )
            scope = principal.township_filter()
            if scope is not None:
                rolled_count = rolled_count.where(r.township_id.in_(scope))
            return int(await session.scalar(rolled_count) or 0)
        statement = (
            select(func.count())
            .select_from(Case)
            .where(
                Case.sealed.is_(True),
                Case.test_call.is_(False),
                Case.created_at >= deadlines.start_of(date_from),
                Case.created_at < deadlines.start_of(date_to + timedelta(days=1)),
            )
        )
        scope = principal.township_filter()
        if scope is not None:
            statement = statement.where(Case.township_id.in_(scope))
        return int(await session.scalar(statement) or 0)


def _overdue_now(
    dialect: str, principal: Principal, deadlines: Deadlines, now: datetime, date_from: date, date_to: date
) -> CompoundSelect[*tuple[Any, ...]]:
    """The period's cases over a deadline now and not yet marked late, counted five ways, from ``open_cases``.

    The one figure that moves with the clock: read from the open cases only (a few per cent of all, see
    cases/rollups.py), the same rule as :func:`cases.ledger.overdue_clause` — 受理 overdue by the new cases'
    cutoff, 办理 overdue by the ledger's deadline. Rows: (dimension, key as text, count); a village's key is
    "township:village", an empty part for none.
    """
    o = OpenCase
    cutoff = deadlines.created_cutoff(now, deadlines.policy.acceptance_days)
    month = Statistics._month(dialect, deadlines, date_from, o.created_at)
    overdue = select(o.township_id, o.village_id, o.category, o.channel, month.label("month")).where(
        o.created_at >= deadlines.start_of(date_from),
        o.created_at < deadlines.start_of(date_to + timedelta(days=1)),
        o.late.is_(False),
        or_(
            and_(o.status == "new", o.created_at < cutoff),
            and_(o.status.in_(OPEN), o.resolution_due <= now),
        ),
    )
    scope = principal.township_filter()
    if scope is not None:
        overdue = overdue.where(o.township_id.in_(scope))
    if not principal.has_role("inspector"):
        overdue = overdue.where(o.sealed.is_(False))
    c = overdue.cte("overdue_now").prefix_with("MATERIALIZED").c

    def text_of(column: Any) -> ColumnElement[str]:
        return func.coalesce(cast(column, String), literal_column("''"))

    def grouped(dimension: str, key: ColumnElement[str], *by: Any) -> Select[*tuple[Any, ...]]:
        return select(literal_column(f"'{dimension}'"), key, func.count()).group_by(*by)

    village = text_of(c.township_id).concat(literal_column("':'")).concat(text_of(c.village_id))
    return union_all(
        grouped("township", text_of(c.township_id), c.township_id),
        grouped("village", village, c.township_id, c.village_id),
        grouped("category", text_of(c.category), c.category),
        grouped("channel", text_of(c.channel), c.channel),
        grouped("month", text_of(c.month), c.month),
    )


def _roll_up(
    current: dict[_Key, Figures], previous: dict[_Key, Figures], labeller: Callable[[_Key], tuple[str, str]]
) -> list[Group]:
    groups: dict[str, Group] = {}
    for source, attribute in ((current, "current"), (previous, "last_year")):
        for key, figures in source.items():
            group_key, label = labeller(key)
            group = groups.setdefault(group_key, Group(group_key, label, Figures(), Figures()))
            getattr(group, attribute).add(figures)
    return sorted(groups.values(), key=lambda group: (-group.current.received, group.label))


def _rollup_spans(first: date, last: date) -> ColumnElement[bool]:
    """The roll-up rows that add up to the period: its whole months' month rows, its ends' day rows."""
    r = CaseRollup
    whole, partial = _spans(first, last)
    spans = [and_(r.grain == "day", r.day >= start, r.day <= end) for start, end in partial]
    if whole:
        spans.append(and_(r.grain == "month", r.day.in_(whole)))
    return or_(*spans)


def _spans(first: date, last: date) -> tuple[list[date], list[tuple[date, date]]]:
    """The period as whole months (their first days) and the day ranges left at its ends."""
    whole: list[date] = []
    partial: list[tuple[date, date]] = []
    start = first
    while start <= last:
        following = date(start.year + 1, 1, 1) if start.month == 12 else date(start.year, start.month + 1, 1)
        end = min(last, following - timedelta(days=1))
        if start.day == 1 and end == following - timedelta(days=1):
            whole.append(start)
        else:
            partial.append((start, end))
        start = following
    return whole, partial


def months_between(first: date, last: date) -> list[str]:
    months, year, month = [], first.year, first.month
    while (year, month) <= (last.year, last.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _roll_up_months(current: dict[_Key, Figures], previous: dict[_Key, Figures], period: list[str]) -> list[Group]:
    """Each month of the period (empty ones too: a chart needs them) beside the same month a year earlier."""
    groups: dict[str, Group] = {month: Group(month, month, Figures(), Figures()) for month in period}
    for key, figures in current.items():
        month = str(key[0])
        groups.setdefault(month, Group(month, month, Figures(), Figures())).current.add(figures)
    for key, figures in previous.items():
        month = str(key[0])
        month = f"{int(month[:4]) + 1:04d}{month[4:]}"
        groups.setdefault(month, Group(month, month, Figures(), Figures())).last_year.add(figures)
    return [groups[month] for month in sorted(groups)]
