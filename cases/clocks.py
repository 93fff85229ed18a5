"""Petition clocks: due dates counted in calendar or working days, from an editable holiday table.

How days are counted (configurable, ``settings.CasesSettings``):

* A period starts the day **after** the event (民法典 art. 201: the first day is
  not counted), in local time (Asia/Shanghai by default).
* ``calendar``: N days later; if that day is a rest day (a weekend not made a
  working day, or a holiday) the deadline moves to the next working day, as
  Chinese procedural law treats a period that ends on a holiday
  (``shift_off_rest_days``).
* ``working``: the N-th working day after the event, skipping weekends and
  holidays and counting make-up working days (调休上班).

A deadline is the **end** of its due day, local time: a case due on 3 March is
overdue from 4 March 00:00. Which days are holidays or make-up days comes from
``case_holidays`` (data, edited by admins), never from code.

Because a due date never moves backwards when the starting day moves forwards,
"which new cases are past their acceptance deadline" is one cutoff on
``cases.created_at`` (:meth:`Deadlines.created_cutoff`): the lists stay one
indexed range query at any size, however irregular the calendar.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.principal import Principal
from common.clock import Clock
from common.errors import InvalidInput, NotFound
from storage import audit
from storage.models import DAY_KINDS, CaseHoliday

Counting = Literal["calendar", "working"]
# Searching back for a cutoff never needs more than this many days (a year of holidays included).
_SEARCH_LIMIT_DAYS = 3 * 366


@dataclass(frozen=True)
class ClockPolicy:
    """How long each clock runs and how days are counted (from the settings)."""

    zone: ZoneInfo
    acceptance_days: int = 15
    resolution_days: int = 60
    max_extension_days: int = 30
    followup_after_days: int = 1
    reopen_min_days: int = 15
    counting: Counting = "calendar"
    shift_off_rest_days: bool = True
    due_soon_days: int = 3


class WorkCalendar:
    """Which days are working days: Monday to Friday, unless the holiday table says otherwise."""

    def __init__(self, exceptions: Mapping[date, str] | None = None) -> None:
        # day -> "holiday" (a day off) or "workday" (a make-up working day).
        self._exceptions = dict(exceptions or {})

    def is_working_day(self, day: date) -> bool:
        kind = self._exceptions.get(day)
        if kind is not None:
            return kind == "workday"
        return day.weekday() < 5

    def next_working_day(self, day: date) -> date:
        """``day`` itself if it is a working day, else the first working day after it."""
        for _ in range(_SEARCH_LIMIT_DAYS):
            if self.is_working_day(day):
                return day
            day += timedelta(days=1)
        raise ValueError("no working day within three years: the holiday table is wrong")


def last_day(deadline: datetime, zone: ZoneInfo) -> date:
    """The local day a deadline instant (the next day's 00:00) falls on; see :meth:`Deadlines.last_day`."""
    return (deadline - timedelta(microseconds=1)).astimezone(zone).date()


class Deadlines:
    """Due dates and deadline instants under one policy and one calendar."""

    def __init__(self, policy: ClockPolicy, calendar: WorkCalendar) -> None:
        self.policy = policy
        self.calendar = calendar

    # -- days and instants ------------------------------------------------------------------

    def local_date(self, instant: datetime) -> date:
        return instant.astimezone(self.policy.zone).date()

    def start_of(self, day: date) -> datetime:
        return datetime.combine(day, time(0), self.policy.zone).astimezone(UTC)

    def end_of(self, day: date) -> datetime:
        """The instant a deadline on ``day`` runs out: the next day's 00:00, local time."""
        return self.start_of(day + timedelta(days=1))

    def last_day(self, deadline: datetime) -> date:
        """The day a deadline falls on: the last day to act (it runs out at the next day's 00:00).

        The one rule for showing a deadline: the case page, its history, the lists and the export all give
        this day (a deadline stored as 2027-02-04 00:00 reads 2027-02-03).
        """
        return last_day(deadline, self.policy.zone)

    def due_day(self, start: date, days: int) -> date:
        """The due date ``days`` days after ``start`` (which itself is not counted)."""
        if days <= 0:
            return start
        if self.policy.counting == "working":
            day, counted = start, 0
            while counted < days:
                day += timedelta(days=1)
                if self.calendar.is_working_day(day):
                    counted += 1
            return day
        day = start + timedelta(days=days)
        return self.calendar.next_working_day(day) if self.policy.shift_off_rest_days else day

    def deadline(self, start: datetime, days: int) -> datetime:
        return self.end_of(self.due_day(self.local_date(start), days))

    def extend(self, deadline: datetime, days: int) -> datetime:
        """A deadline moved on by ``days`` (an extension), counted from its own due day."""
        return self.end_of(self.due_day(self.last_day(deadline), days))

    def days_left(self, now: datetime, deadline: datetime) -> int:
        """Days from today until the due day, counted the policy's way (0: due today; negative: overdue)."""
        today = self.local_date(now)
        due = self.last_day(deadline)
        if due < today:
            return -self._count(due, today)
        return self._count(today, due)

    def _count(self, first: date, last: date) -> int:
        """Days after ``first`` up to and including ``last``, in the policy's unit."""
        if self.policy.counting == "calendar":
            return (last - first).days
        counted, day = 0, first
        while day < last:
            day += timedelta(days=1)
            if self.calendar.is_working_day(day):
                counted += 1
        return counted

    # -- the clocks of a case ---------------------------------------------------------------

    def acceptance_deadline(self, created_at: datetime) -> datetime:
        return self.deadline(created_at, self.policy.acceptance_days)

    def resolution_deadline(self, accepted_at: datetime) -> datetime:
        return self.deadline(accepted_at, self.policy.resolution_days)

    def followup_day_start(self, resolved_at: datetime) -> datetime:
        """From when a follow-up may be made: the start of the day after resolution.

        Calendar days, weekends included: the follow-up is a phone call to a
        villager (at home at the weekend), not an office's working time.
        """
        return self.start_of(self.local_date(resolved_at) + timedelta(days=self.policy.followup_after_days))

    def reopened_deadline(self, resolved_at: datetime, old_deadline: datetime, reopened_at: datetime) -> datetime:
        """After 不满意: the days that were left at resolution, from the reopening, but at least reopen_min_days.

        The clock pauses while the case waits for its follow-up: that time is
        the villager's, not the unit's.
        """
        left = self.days_left(resolved_at, old_deadline)
        return self.deadline(reopened_at, max(left, self.policy.reopen_min_days))

    def created_cutoff(self, moment: datetime, days: int) -> datetime:
        """Cases created before this instant have a ``days``-day deadline at or before ``moment``."""
        day = self.local_date(moment)
        for _ in range(_SEARCH_LIMIT_DAYS):
            if self.end_of(self.due_day(day, days)) <= moment:
                return self.start_of(day + timedelta(days=1))
            day -= timedelta(days=1)
        return self.start_of(day)

    def due_soon_until(self, now: datetime) -> datetime:
        return now + timedelta(days=self.policy.due_soon_days)


# Days off for everybody under the 全国年节及纪念日放假办法 (as revised in 2024, from 2025 on): 元旦 1,
# 春节 4, 清明 1, 劳动节 2, 端午 1, 中秋 1, 国庆 3. From 2008 to 2024 it was 11 (春节 3, 劳动节 1).
STATUTORY_DAYS_OFF = 13


def statutory_days_off(year: int) -> int:
    return STATUTORY_DAYS_OFF if year >= 2025 else 11


@dataclass(frozen=True)
class YearCheck:
    """What a year of the table adds up to, so an admin can see at a glance whether it is complete.

    Every statutory day off that falls on a weekday is a weekday off; one that falls on a weekend is made
    up by a weekday off (补休); every other weekday off in a holiday period is paid back by a make-up
    working day (调休上班). So a complete national year has ``weekdays_off - make_up_days`` equal to
    :data:`STATUTORY_DAYS_OFF`; a local holiday makes it more, a missing day less.
    """

    year: int
    days_off: int
    weekdays_off: int
    make_up_days: int
    problems: tuple[str, ...]

    @property
    def net_days_off(self) -> int:
        return self.weekdays_off - self.make_up_days


def check_year(year: int, rows: Sequence[tuple[date, str]]) -> YearCheck:
    """Count a year's (day, kind) rows and say in Chinese what does not add up (empty: nothing found)."""
    days_off = [day for day, kind in rows if kind == "holiday"]
    make_up = [day for day, kind in rows if kind == "workday"]
    weekdays_off = sum(1 for day in days_off if day.weekday() < 5)
    problems: list[str] = []
    for day in make_up:
        if day.weekday() < 5:
            problems.append(f"{day.isoformat()} 是工作日，不应登记为调休上班")
    for day in days_off:
        if day.weekday() >= 5 and not any(abs((day - other).days) == 1 for other in days_off):
            problems.append(f"{day.isoformat()} 是周末，单独登记为放假没有作用，请核对")
    net = weekdays_off - len(make_up)
    statutory = statutory_days_off(year)
    if rows and net != statutory:
        problems.append(
            f"工作日放假 {weekdays_off} 天减去调休上班 {len(make_up)} 天为 {net} 天，"
            f"{year}年全国法定节假日是 {statutory} 天：请对照国务院办公厅的通知核对"
            f"（有地方性假日的会多于 {statutory} 天）"
        )
    return YearCheck(year, len(days_off), weekdays_off, len(make_up), tuple(problems))


class HolidayTable:
    """The holiday and make-up working day table: read by every clock, edited by admins."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock, policy: ClockPolicy) -> None:
        self._sessions = sessions
        self._clock = clock
        self.policy = policy

    async def calendar(self, session: AsyncSession | None = None) -> WorkCalendar:
        """The whole table (a few dozen rows a year): loaded fresh, so an edit in another process counts at once."""
        if session is not None:
            rows = (await session.execute(select(CaseHoliday.day, CaseHoliday.kind))).all()
        else:
            async with self._sessions() as own:
                rows = (await own.execute(select(CaseHoliday.day, CaseHoliday.kind))).all()
        return WorkCalendar({day: kind for day, kind in rows})

    async def deadlines(self, session: AsyncSession | None = None) -> Deadlines:
        return Deadlines(self.policy, await self.calendar(session))

    async def list_year(self, year: int) -> Sequence[CaseHoliday]:
        async with self._sessions() as session:
            statement = (
                select(CaseHoliday)
                .where(CaseHoliday.day >= date(year, 1, 1), CaseHoliday.day <= date(year, 12, 31))
                .order_by(CaseHoliday.day)
            )
            return (await session.scalars(statement)).all()

    async def check(self, year: int) -> YearCheck:
        return check_year(year, [(row.day, row.kind) for row in await self.list_year(year)])

    async def years(self) -> list[int]:
        async with self._sessions() as session:
            days = (await session.scalars(select(CaseHoliday.day))).all()
        return sorted({day.year for day in days})

    async def set_day(self, principal: Principal, day: date, kind: str, name: str) -> CaseHoliday:
        principal.require_role("admin")
        if kind not in DAY_KINDS:
            raise InvalidInput("类型只能是放假或调休上班", fields={"kind": "取值不正确"})
        name = name.strip()
        if not name or len(name) > 32:
            raise InvalidInput("名称不能为空，最多32个字", fields={"name": "1到32个字"})
        if kind == "workday" and day.weekday() < 5:
            raise InvalidInput("调休上班日应是周六或周日", fields={"kind": "工作日本来就上班"})
        now = self._clock.now()
        async with self._sessions() as session:
            row = await session.get(CaseHoliday, day)
            before = None if row is None else {"kind": row.kind, "name": row.name}
            if row is None:
                row = CaseHoliday(day=day, kind=kind, name=name, updated_at=now, updated_by=principal.username)
                session.add(row)
            else:
                row.kind, row.name, row.updated_at, row.updated_by = kind, name, now, principal.username
            audit.record(
                session,
                principal.actor,
                at=now,
                action="holiday.set",
                object_type="holiday",
                object_id=day.isoformat(),
                detail={"before": before, "after": {"kind": kind, "name": name}},
            )
            await session.commit()
            return row

    async def delete_day(self, principal: Principal, day: date) -> None:
        principal.require_role("admin")
        async with self._sessions() as session:
            row = await session.get(CaseHoliday, day)
            if row is None:
                raise NotFound("节假日表里没有这一天", code="holiday.not_found")
            audit.record(
                session,
                principal.actor,
                at=self._clock.now(),
                action="holiday.delete",
                object_type="holiday",
                object_id=day.isoformat(),
                detail={"before": {"kind": row.kind, "name": row.name}},
            )
            await session.execute(delete(CaseHoliday).where(CaseHoliday.day == day))
            await session.commit()
