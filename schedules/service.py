"""Creating and reading schedules, scoped by township; previews, the week ahead of a zone, conflicts.

A schedule plays one approved notice. Its targets are townships, villages or
zones; they all lie in the notice's township (a county-level notice may reach
any). Nothing but 应急 may start in a township's quiet hours (refused, with the
times and the window named). A schedule that overlaps others in the same zones
is allowed, with a warning naming them (:meth:`ScheduleService.check`, in the
editor's preview and again on save): the dispatcher plays the higher priority
first and the other waits. Every change is audited and announced to the
listeners (the scheduler rebuilds its wake-ups), so a new schedule takes effect
without a restart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.principal import Principal
from common.clock import Clock
from common.errors import Conflict, InvalidInput, NotFound
from common.listeners import ChangeListener, ChangeListeners
from schedules.rules import (
    Rule,
    describe,
    end_label,
    format_clock,
    in_quiet_hours,
    make_rule,
    moment_label,
    next_occurrences,
    occurrences_between,
    parse_clock,
    quiet_clocks,
)
from storage import audit
from storage.models import (
    EMERGENCY_PRIORITY,
    PHONECAST_KIND,
    PRIORITY_OF_KIND,
    Notice,
    Schedule,
    ScheduleTarget,
    Township,
    Village,
    Zone,
)

WRITER_ROLES = ("staff", "admin")
LEVEL_LABELS = {"township": "乡镇", "village": "村", "zone": "播出分区"}


@dataclass(frozen=True)
class ScheduleInput:
    notice_id: int
    kind: str
    once_at: datetime | None = None
    times: tuple[str, ...] = ()
    weekdays: tuple[int, ...] = ()
    start_date: date | None = None
    end_date: date | None = None
    targets: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class PlannedItem:
    """One occurrence in a zone's plan, with what it collides with."""

    at: datetime
    ends_at: datetime
    schedule_id: int
    notice_id: int
    title: str
    kind: str
    priority: int
    quiet: bool
    conflicts_with: tuple[int, ...]


@dataclass(frozen=True)
class Overlap:
    """Another schedule that would be playing in some of the same zones at the same time."""

    schedule_id: int
    title: str
    description: str
    first_at: datetime  # the first of this schedule's occurrences that collides
    other_at: datetime  # when the other one starts then
    other_ends_at: datetime
    count: int  # collisions in the planning window
    zone_names: tuple[str, ...]

    def message(self, zone: ZoneInfo) -> str:
        where = "、".join(self.zone_names[:3]) + (
            f" 等 {len(self.zone_names)} 个分区" if len(self.zone_names) > 3 else ""
        )
        span = f"{self.other_at.astimezone(zone):%H:%M}–{end_label(self.other_ends_at, zone)}"
        times = f"共 {self.count} 次" if self.count > 1 else "1 次"
        return (
            f"与《{self.title}》（{self.description}）时间重叠：{moment_label(self.first_at, zone)} 起{times}，"
            f"它在 {span} 播出，地点 {where}"
        )


@dataclass(frozen=True)
class ScheduleCheck:
    """What the editor shows before saving: the next times, the refusal saving would meet, the overlaps."""

    occurrences: list[datetime]
    quiet: str | None
    overlaps: list[Overlap]


def rule_of(schedule: Schedule) -> Rule:
    return Rule(
        kind=schedule.kind,
        once_at=schedule.once_at,
        times=tuple(parse_clock(text) for text in schedule.times),
        weekdays=frozenset(schedule.weekdays),
        start_date=schedule.start_date,
        end_date=schedule.end_date,
    )


class ScheduleService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        zone: ZoneInfo,
        *,
        plan_days: int = 7,
        preview_limit: int = 50,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self.zone = zone
        self._plan_days = plan_days
        self._preview_limit = preview_limit
        self._listeners = ChangeListeners("schedule")

    def on_change(self, listener: ChangeListener) -> None:
        """Call ``listener(schedule_id)`` after every committed change (the scheduler re-plans)."""
        self._listeners.add(listener)

    # -- validation ---------------------------------------------------------------------------

    async def _notice(self, session: AsyncSession, principal: Principal, notice_id: int) -> Notice:
        notice = await session.get(Notice, notice_id)
        # A phone broadcast's item (手机喊话) is the desk's, played once when its cadre asked: not schedulable.
        if notice is None or notice.kind == PHONECAST_KIND or not principal.sees_township(notice.township_id):
            raise InvalidInput("通知不存在", fields={"notice_id": "通知不存在"})
        if notice.state != "approved":
            raise Conflict("只有审核通过的通知才能安排播出", code="schedule.notice_not_approved")
        return notice

    async def _target_townships(
        self, session: AsyncSession, principal: Principal, notice: Notice, targets: Sequence[tuple[str, int]]
    ) -> dict[int, Township]:
        """The townships the targets lie in; every target must exist, be in scope and in the notice's township."""
        if not targets:
            raise InvalidInput("请至少选择一个播出对象（乡镇、村或播出分区）", fields={"targets": "不能为空"})
        townships: dict[int, Township] = {}
        for level, target_id in targets:
            if level not in LEVEL_LABELS:
                raise InvalidInput("播出对象只能是乡镇、村或播出分区", fields={"targets": "层级不对"})
            township_id: int | None = None
            name = ""
            if level == "township":
                township = await session.get(Township, target_id)
                township_id, name = (township.id, township.name) if township else (None, "")
            elif level == "village":
                village = await session.get(Village, target_id)
                township_id, name = (village.township_id, village.name) if village else (None, "")
            else:
                row = (await session.execute(select(Zone, Village).join(Village).where(Zone.id == target_id))).first()
                township_id, name = (row[1].township_id, f"{row[1].name}·{row[0].name}") if row else (None, "")
            if township_id is None or not principal.sees_township(township_id):
                raise InvalidInput(f"{LEVEL_LABELS[level]}不存在", fields={"targets": f"{level} {target_id} 不存在"})
            if notice.township_id is not None and township_id != notice.township_id:
                raise InvalidInput(
                    f"{LEVEL_LABELS[level]}“{name}”不属于这条通知所在的乡镇",
                    code="schedule.other_township",
                    fields={"targets": "不属于本乡镇"},
                )
            if township_id not in townships:
                found = await session.get(Township, township_id)
                assert found is not None
                townships[township_id] = found
        return townships

    def _quiet_message(self, rule: Rule, priority: int, townships: Iterable[Township]) -> str | None:
        """Why saving this rule will be refused (a start in a township's quiet hours), or None."""
        if priority == EMERGENCY_PRIORITY:
            return None  # 应急 may start at any hour
        for township in townships:
            clashes = quiet_clocks(rule, self.zone, township.quiet_start, township.quiet_end)
            if clashes:
                window = f"{format_clock(township.quiet_start)}–{format_clock(township.quiet_end)}"
                shown = "、".join(format_clock(clock) for clock in clashes)
                return f"{shown} 在{township.name}的静默时段（{window}）内，只有应急广播可以在这时播出"
        return None

    def _check_quiet(self, rule: Rule, priority: int, townships: Iterable[Township]) -> None:
        message = self._quiet_message(rule, priority, townships)
        if message is not None:
            raise InvalidInput(
                message,
                code="schedule.quiet_hours",
                fields={"times" if rule.kind != "once" else "once_at": "在静默时段内"},
            )

    def _rule(self, data: ScheduleInput) -> Rule:
        return make_rule(
            kind=data.kind,
            once_at=data.once_at,
            times=data.times,
            weekdays=data.weekdays,
            start_date=data.start_date,
            end_date=data.end_date,
            zone=self.zone,
            now=self._clock.now(),
        )

    # -- changes ------------------------------------------------------------------------------

    async def create(self, principal: Principal, data: ScheduleInput) -> Schedule:
        principal.require_role(*WRITER_ROLES)
        rule = self._rule(data)
        now = self._clock.now()
        async with self._sessions.begin() as session:
            notice = await self._notice(session, principal, data.notice_id)
            priority = PRIORITY_OF_KIND[notice.kind]
            townships = await self._target_townships(session, principal, notice, data.targets)
            self._check_quiet(rule, priority, townships.values())
            schedule = Schedule(
                notice_id=notice.id,
                township_id=notice.township_id,
                priority=priority,
                enabled=True,
                created_by=principal.user_id,
                created_at=now,
                updated_at=now,
            )
            self._apply(schedule, rule, data.targets)
            session.add(schedule)
            await session.flush()
            audit.record(
                session,
                principal.actor,
                at=now,
                action="schedule.create",
                object_type="schedule",
                object_id=schedule.id,
                detail={"notice_id": notice.id, "rule": describe(rule, self.zone), "targets": list(data.targets)},
            )
            schedule_id = schedule.id
        await self._listeners.notify(schedule_id)
        return await self.get(principal, schedule_id)

    async def update(self, principal: Principal, schedule_id: int, data: ScheduleInput) -> Schedule:
        principal.require_role(*WRITER_ROLES)
        rule = self._rule(data)
        now = self._clock.now()
        async with self._sessions.begin() as session:
            schedule = await self._load(session, principal, schedule_id)
            notice = await self._notice(session, principal, data.notice_id)
            priority = PRIORITY_OF_KIND[notice.kind]
            townships = await self._target_townships(session, principal, notice, data.targets)
            self._check_quiet(rule, priority, townships.values())
            schedule.notice_id = notice.id
            schedule.township_id = notice.township_id
            schedule.priority = priority
            schedule.updated_at = now
            self._apply(schedule, rule, data.targets)
            audit.record(
                session,
                principal.actor,
                at=now,
                action="schedule.update",
                object_type="schedule",
                object_id=schedule.id,
                detail={"rule": describe(rule, self.zone), "targets": list(data.targets)},
            )
        await self._listeners.notify(schedule_id)
        return await self.get(principal, schedule_id)

    async def set_enabled(self, principal: Principal, schedule_id: int, enabled: bool) -> Schedule:
        """Schedules are stopped, never deleted: the as-run log keeps pointing at them."""
        principal.require_role(*WRITER_ROLES)
        async with self._sessions.begin() as session:
            schedule = await self._load(session, principal, schedule_id)
            if schedule.enabled != enabled:
                schedule.enabled = enabled
                schedule.updated_at = self._clock.now()
                audit.record(
                    session,
                    principal.actor,
                    at=schedule.updated_at,
                    action="schedule.enable" if enabled else "schedule.disable",
                    object_type="schedule",
                    object_id=schedule.id,
                )
        await self._listeners.notify(schedule_id)
        return await self.get(principal, schedule_id)

    @staticmethod
    def _apply(schedule: Schedule, rule: Rule, targets: Sequence[tuple[str, int]]) -> None:
        schedule.kind = rule.kind
        schedule.once_at = rule.once_at
        schedule.times = [format_clock(clock) for clock in rule.times]
        schedule.weekdays = sorted(rule.weekdays)
        schedule.start_date = rule.start_date
        schedule.end_date = rule.end_date
        schedule.targets = [
            ScheduleTarget(level=level, target_id=target_id) for level, target_id in sorted(set(targets))
        ]

    # -- reads --------------------------------------------------------------------------------

    async def _load(self, session: AsyncSession, principal: Principal, schedule_id: int) -> Schedule:
        schedule = await session.get(Schedule, schedule_id)
        if schedule is None or not principal.sees_township(schedule.township_id):
            raise NotFound("播出安排不存在")
        return schedule

    async def get(self, principal: Principal, schedule_id: int) -> Schedule:
        async with self._sessions() as session:
            return await self._load(session, principal, schedule_id)

    async def list_schedules(
        self, principal: Principal, *, notice_id: int | None = None
    ) -> list[tuple[Schedule, Notice]]:
        statement = select(Schedule, Notice).join(Notice, Schedule.notice_id == Notice.id).order_by(Schedule.id.desc())
        scope = principal.township_filter()
        if scope is not None:
            statement = statement.where(Schedule.township_id.in_(scope))
        if notice_id is not None:
            statement = statement.where(Schedule.notice_id == notice_id)
        async with self._sessions() as session:
            return [(schedule, notice) for schedule, notice in (await session.execute(statement)).all()]

    def describe(self, schedule: Schedule) -> str:
        return describe(rule_of(schedule), self.zone)

    async def check(
        self, principal: Principal, data: ScheduleInput, *, schedule_id: int | None = None, count: int = 10
    ) -> ScheduleCheck:
        """The editor's preview: next times (InvalidInput when the rule itself is wrong, as on save) and, once
        a notice and targets are chosen, the quiet-hour refusal saving would meet and the overlaps it would make."""
        rule = self._rule(data)
        occurrences = next_occurrences(rule, self._clock.now(), self.zone, min(count, self._preview_limit))
        if not data.targets:
            return ScheduleCheck(occurrences, None, [])
        async with self._sessions() as session:
            notice = await self._notice(session, principal, data.notice_id)
            townships = await self._target_townships(session, principal, notice, data.targets)
            quiet = self._quiet_message(rule, PRIORITY_OF_KIND[notice.kind], townships.values())
            overlaps = await self._overlaps(session, rule, notice, data.targets, exclude=schedule_id)
        return ScheduleCheck(occurrences, quiet, overlaps)

    async def overlaps_of(self, principal: Principal, schedule_id: int) -> list[Overlap]:
        """The overlaps a saved schedule makes (the warning shown after saving it)."""
        async with self._sessions() as session:
            schedule = await self._load(session, principal, schedule_id)
            notice = await session.get(Notice, schedule.notice_id)
            assert notice is not None
            targets = [(target.level, target.target_id) for target in schedule.targets]
            return await self._overlaps(session, rule_of(schedule), notice, targets, exclude=schedule.id)

    async def _overlaps(
        self,
        session: AsyncSession,
        rule: Rule,
        notice: Notice,
        targets: Sequence[tuple[str, int]],
        *,
        exclude: int | None,
    ) -> list[Overlap]:
        """Other enabled schedules that would be playing in the same zones at the same time, in the plan window.

        Lengths come from the rendered audio (an approved notice always has it; a minute if not).
        """
        zones = set(await self.zones_of(session, targets))
        begin = self._clock.now()
        end = begin + timedelta(days=self._plan_days)
        length = timedelta(seconds=notice.audio_duration_s or 60.0)
        mine = list(occurrences_between(rule, begin, end, self.zone))
        if not zones or not mine:
            return []
        statement = (
            select(Schedule, Notice)
            .join(Notice, Schedule.notice_id == Notice.id)
            .where(Schedule.enabled.is_(True))
            .order_by(Schedule.id)
        )
        if exclude is not None:
            statement = statement.where(Schedule.id != exclude)
        found: list[Overlap] = []
        for other, other_notice in (await session.execute(statement)).all():
            shared = zones & set(await self.zones_of(session, [(t.level, t.target_id) for t in other.targets]))
            if not shared:
                continue
            other_length = timedelta(seconds=other_notice.audio_duration_s or 60.0)
            theirs = list(occurrences_between(rule_of(other), begin - other_length, end, self.zone))
            hits = [(at, their) for at in mine for their in theirs if at < their + other_length and their < at + length]
            if not hits:
                continue
            names = (
                await session.execute(
                    select(Village.name, Zone.name).join(Village).where(Zone.id.in_(shared)).order_by(Zone.id)
                )
            ).all()
            found.append(
                Overlap(
                    schedule_id=other.id,
                    title=other_notice.title,
                    description=describe(rule_of(other), self.zone),
                    first_at=hits[0][0],
                    other_at=hits[0][1],
                    other_ends_at=hits[0][1] + other_length,
                    count=len(hits),
                    zone_names=tuple(f"{village}·{zone}" for village, zone in names),
                )
            )
        return found

    def preview(self, data: ScheduleInput, count: int | None = None) -> list[datetime]:
        """The next occurrences of an unsaved schedule (for the editor); raises InvalidInput like create."""
        rule = self._rule(data)
        return next_occurrences(rule, self._clock.now(), self.zone, min(count or 10, self._preview_limit))

    def next_of(self, schedule: Schedule, count: int) -> list[datetime]:
        return next_occurrences(rule_of(schedule), self._clock.now(), self.zone, min(count, self._preview_limit))

    async def zones_of(self, session: AsyncSession, targets: Iterable[tuple[str, int]]) -> list[int]:
        """The zones a set of targets covers, now (the tree may have changed since the schedule was made)."""
        zone_ids: set[int] = set()
        for level, target_id in targets:
            if level == "zone":
                zone_ids.add(target_id)
            elif level == "village":
                zone_ids.update((await session.scalars(select(Zone.id).where(Zone.village_id == target_id))).all())
            else:
                zone_ids.update(
                    (await session.scalars(select(Zone.id).join(Village).where(Village.township_id == target_id))).all()
                )
        return sorted(zone_ids)

    async def week_ahead(
        self, principal: Principal, zone_id: int, start: datetime | None = None, days: int | None = None
    ) -> tuple[Zone, Village, Township, list[PlannedItem]]:
        """Every planned occurrence in one zone for the coming days, conflicts and quiet hours marked.

        Two items conflict when one would still be playing when the other starts
        (durations from the rendered audio); the dispatcher then lets the higher
        priority play first and the lower one wait (or be skipped).
        """
        begin = start or self._clock.now()
        end = begin + timedelta(days=days or self._plan_days)
        async with self._sessions() as session:
            row = (await session.execute(select(Zone, Village).join(Village).where(Zone.id == zone_id))).first()
            if row is None or not principal.sees_township(row[1].township_id):
                raise NotFound("播出分区不存在")
            zone, village = row[0], row[1]
            township = await session.get(Township, village.township_id)
            assert township is not None
            candidates = (
                await session.execute(
                    select(Schedule, Notice)
                    .join(Notice, Schedule.notice_id == Notice.id)
                    .where(Schedule.enabled.is_(True))
                    .where((Schedule.township_id == township.id) | Schedule.township_id.is_(None))
                )
            ).all()
            planned: list[tuple[datetime, datetime, Schedule, Notice]] = []
            for schedule, notice in candidates:
                if zone.id not in await self.zones_of(session, ((t.level, t.target_id) for t in schedule.targets)):
                    continue
                length = timedelta(seconds=notice.audio_duration_s or 60.0)
                for instant in occurrences_between(rule_of(schedule), begin, end, self.zone):
                    planned.append((instant, instant + length, schedule, notice))
        planned.sort(key=lambda item: (item[0], item[2].priority))
        items: list[PlannedItem] = []
        for index, (at, ends_at, schedule, notice) in enumerate(planned):
            clashes = tuple(
                other.id
                for j, (other_at, other_end, other, _n) in enumerate(planned)
                if j != index and other_at < ends_at and at < other_end and other.id != schedule.id
            )
            local: time = at.astimezone(self.zone).time()
            items.append(
                PlannedItem(
                    at=at,
                    ends_at=ends_at,
                    schedule_id=schedule.id,
                    notice_id=notice.id,
                    title=notice.title,
                    kind=notice.kind,
                    priority=schedule.priority,
                    quiet=in_quiet_hours(local, township.quiet_start, township.quiet_end),
                    conflicts_with=clashes,
                )
            )
        return zone, village, township, items


def schedule_json(
    schedule: Schedule, service: ScheduleService, notice: Notice | None = None, *, upcoming: int = 5
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "id": schedule.id,
        "notice_id": schedule.notice_id,
        "township_id": schedule.township_id,
        "kind": schedule.kind,
        "once_at": schedule.once_at,
        "times": schedule.times,
        "weekdays": schedule.weekdays,
        "start_date": schedule.start_date,
        "end_date": schedule.end_date,
        "priority": schedule.priority,
        "enabled": schedule.enabled,
        "targets": [{"level": t.level, "id": t.target_id} for t in schedule.targets],
        "description": service.describe(schedule),
        "next": service.next_of(schedule, upcoming) if schedule.enabled else [],
    }
    if notice is not None:
        result["notice_title"] = notice.title
    return result
