"""The scheduler: our tables are the source of truth; APScheduler only wakes us up.

Design, for a province as well as a county:

* At start (and on every change) the schedules are read from the database and
  each one's *next* occurrence goes into an in-memory heap. APScheduler holds
  exactly **one** job, a date trigger at the earliest fire time in the heap.
  50,000 schedules with three slots a day are 50,000 heap entries and one
  APScheduler job, not 150,000 jobs (docs/decisions/0002-the-scheduler-keeps-a-heap-and-one-job.md).
* When the job fires, every heap entry that is due is handed to the
  :class:`OccurrenceHandler` (the dispatcher, passed in by ``server.py``), the
  entry's following occurrence is pushed, and the job is re-armed. With a lead
  (``broadcast.preroll_s``) an entry is handed over that much before its instant:
  the handler prepares it and starts it on the instant.
* Catch-up is ours, over the as-run table, with the injected clock: on start,
  every occurrence in the look-back window that has no as-run row is either
  played (missed by less than the grace) or recorded as missed. The handler
  claims an occurrence by inserting its as-run rows under a UNIQUE key, so a
  slot can never play twice, whatever fires it and however often.
* Only the one active worker runs this (one of the ``worker_services``); changes
  made in this process re-plan at once, changes made by other processes are
  picked up by a periodic comparison (``resync_s``).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.clock import Clock
from common.tasks import BackgroundTasks
from schedules.rules import Rule, next_occurrence, occurrences_between, parse_clock
from schedules.service import ScheduleService
from storage.models import BroadcastZone, Schedule, ScheduleTarget

log = logging.getLogger(__name__)

WAKE_JOB = "cunxiang-wake"


class OccurrenceHandler(Protocol):
    """What the scheduler calls when an occurrence is due (implemented by the broadcast dispatcher).

    Both return True when they claimed the occurrence, False when its as-run
    rows already existed (it was handled before: never play it again).
    """

    async def occurrence_due(
        self, *, schedule_id: int, notice_id: int, occurrence_at: datetime, zone_ids: Sequence[int], priority: int
    ) -> bool: ...

    async def occurrence_missed(
        self, *, schedule_id: int, notice_id: int, occurrence_at: datetime, zone_ids: Sequence[int], priority: int
    ) -> bool: ...


# Rows read per partition when the plan is loaded: bounded memory whatever the number of schedules.
_LOAD_BATCH = 2000


@dataclass(frozen=True, slots=True)
class _Entry:
    schedule_id: int
    notice_id: int
    priority: int
    rule: Rule
    targets: tuple[tuple[str, int], ...]
    # Occurrences before the last change are not judged (they belonged to another rule).
    effective_from: datetime


@dataclass(frozen=True)
class Fired:
    schedule_id: int
    occurrence_at: datetime
    outcome: str  # "played", "missed", "duplicate", "error"


class Scheduler:
    name = "scheduler"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        zone: ZoneInfo,
        handler: OccurrenceHandler,
        service: ScheduleService,
        *,
        catch_up_grace_s: float = 600.0,
        missed_lookback_h: float = 24.0,
        misfire_grace_s: float = 3600.0,
        resync_s: float = 30.0,
        lead_s: float = 0.0,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._zone = zone
        self._handler = handler
        self._service = service
        self._grace = timedelta(seconds=catch_up_grace_s)
        self._lookback = timedelta(hours=missed_lookback_h)
        self._misfire_grace_s = misfire_grace_s
        self._resync_s = resync_s
        # Occurrences are handed over this early (the dispatcher's pre-roll: it claims and prepares the item,
        # then starts it on the due instant itself).
        self._lead = timedelta(seconds=lead_s)
        self._entries: dict[int, _Entry] = {}
        self._generation: dict[int, int] = {}
        self._heap: list[tuple[datetime, int, int]] = []  # (fire at, schedule id, generation)
        self._lock = asyncio.Lock()
        self._aps: AsyncIOScheduler | None = None
        self._tasks: BackgroundTasks | None = None
        self._signature: tuple[Any, ...] | None = None
        self.fired: list[Fired] = []  # the most recent outcomes (bounded), for health and tests
        self.fired_event = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._aps is not None

    async def start(self) -> None:
        """Plan every schedule (catching up what was missed), then arm the wake-up.

        ``running`` turns true only once the plan is made: a start that fails (the database
        did not answer) leaves nothing behind, and the next ``start`` tries it all again.
        """
        if self._aps is not None:
            return
        aps = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": int(self._misfire_grace_s)},
        )
        aps.start()
        try:
            await self.rebuild(aps)
        except BaseException:
            aps.shutdown(wait=False)
            self._heap.clear()
            self._entries.clear()
            raise
        self._aps = aps
        self._arm()
        self._tasks = BackgroundTasks("scheduler")
        self._tasks.spawn(self._resync_loop(), "resync")

    async def stop(self) -> None:
        if self._tasks is not None:
            await self._tasks.close()
            self._tasks = None
        if self._aps is not None:
            self._aps.shutdown(wait=False)
            self._aps = None
        self._heap.clear()
        self._entries.clear()

    # -- loading ------------------------------------------------------------------------------

    async def _load(self, session: AsyncSession, schedule_ids: Sequence[int] | None = None) -> dict[int, _Entry]:
        statement = select(
            Schedule.id,
            Schedule.notice_id,
            Schedule.priority,
            Schedule.kind,
            Schedule.once_at,
            Schedule.times,
            Schedule.weekdays,
            Schedule.start_date,
            Schedule.end_date,
            Schedule.updated_at,
        ).where(Schedule.enabled.is_(True))
        target_statement = select(ScheduleTarget.schedule_id, ScheduleTarget.level, ScheduleTarget.target_id)
        if schedule_ids is not None:
            statement = statement.where(Schedule.id.in_(schedule_ids))
            target_statement = target_statement.where(ScheduleTarget.schedule_id.in_(schedule_ids))
        # Streamed in partitions, never all rows at once (50,000 schedules' rows, their decoded JSON and the
        # entries built from them once took 320 MiB together); identical rules and target lists are shared:
        # a county's schedules mostly repeat a few timings (07:00, 12:00, 18:00) and a few targets.
        targets: dict[int, list[tuple[str, int]]] = defaultdict(list)
        target_stream = await session.stream(target_statement.execution_options(yield_per=_LOAD_BATCH))
        async for target_rows in target_stream.partitions():
            for schedule_id, level, target_id in target_rows:
                targets[schedule_id].append((level, target_id))
        clocks: dict[str, Any] = {}
        rules: dict[tuple[Any, ...], Rule] = {}
        target_tuples: dict[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]] = {}
        entries: dict[int, _Entry] = {}
        stream = await session.stream(statement.execution_options(yield_per=_LOAD_BATCH))
        async for partition in stream.partitions():
            for row in partition:
                times = tuple(clocks.setdefault(text, parse_clock(text)) for text in row.times)
                key = (row.kind, row.once_at, times, frozenset(row.weekdays), row.start_date, row.end_date)
                rule = rules.get(key)
                if rule is None:
                    rule = rules[key] = Rule(
                        kind=row.kind,
                        once_at=row.once_at,
                        times=times,
                        weekdays=key[3],
                        start_date=row.start_date,
                        end_date=row.end_date,
                    )
                updated = row.updated_at
                if updated.tzinfo is None:  # raw column read on SQLite
                    updated = updated.replace(tzinfo=UTC)
                own_targets = tuple(targets.pop(row.id, ()))
                shared_targets = target_tuples.setdefault(own_targets, own_targets)
                entries[row.id] = _Entry(row.id, row.notice_id, row.priority, rule, shared_targets, updated)
        return entries

    async def _table_signature(self) -> tuple[Any, ...]:
        async with self._sessions() as session:
            row = (await session.execute(select(func.count(Schedule.id), func.max(Schedule.updated_at)))).one()
        return tuple(row)

    async def rebuild(self, starting: AsyncIOScheduler | None = None) -> None:
        """Re-read every schedule, catch up on what was missed, plan the next fire of each.

        ``starting`` is the APScheduler of a :meth:`start` in progress (it becomes ours only
        once this succeeded); otherwise the running one is re-armed.
        """
        if starting is None and self._aps is None:
            return
        async with self._lock:
            async with self._sessions() as session:
                entries = await self._load(session)
            self._signature = await self._table_signature()
            now = self._clock.now()
            self._entries = entries
            self._generation = dict.fromkeys(entries, 0)
            await self._catch_up(now)
            self._heap = []
            for entry in entries.values():
                fire_at = next_occurrence(entry.rule, now, self._zone)
                if fire_at is not None:
                    self._heap.append((fire_at, entry.schedule_id, 0))
            heapq.heapify(self._heap)
            if starting is None:
                self._arm()
        log.info("scheduler planned %d schedules; next fire %s", len(self._entries), self.next_fire)

    async def schedule_changed(self, schedule_id: int) -> None:
        """A schedule was created, edited, stopped or restarted in this process: re-plan it now."""
        if not self.running:
            return
        async with self._lock:
            async with self._sessions() as session:
                loaded = await self._load(session, [schedule_id])
            self._signature = await self._table_signature()
            generation = self._generation.get(schedule_id, 0) + 1
            self._generation[schedule_id] = generation
            entry = loaded.get(schedule_id)
            if entry is None:
                self._entries.pop(schedule_id, None)
            else:
                self._entries[schedule_id] = entry
                fire_at = next_occurrence(entry.rule, self._clock.now(), self._zone)
                if fire_at is not None:
                    heapq.heappush(self._heap, (fire_at, schedule_id, generation))
            self._arm()

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self._resync_s)
            try:
                if await self._table_signature() != self._signature:
                    log.info("schedules changed in another process; re-planning")
                    await self.rebuild()
            except Exception:
                log.exception("scheduler resync failed; will retry")

    # -- catch-up -----------------------------------------------------------------------------

    async def _catch_up(self, now: datetime) -> None:
        since = now - self._lookback
        async with self._sessions() as session:
            rows = await session.execute(
                select(BroadcastZone.schedule_id, BroadcastZone.occurrence_at)
                .where(BroadcastZone.schedule_id.is_not(None))
                .where(BroadcastZone.occurrence_at >= since)
                .where(BroadcastZone.attempt == 0)
                .distinct()
            )
            handled = {(schedule_id, at) for schedule_id, at in rows.all()}
        pending: list[tuple[datetime, _Entry]] = []
        for entry in self._entries.values():
            start = max(since, entry.effective_from)
            for at in occurrences_between(entry.rule, start, now + timedelta(microseconds=1), self._zone):
                if (entry.schedule_id, at) not in handled:
                    pending.append((at, entry))
        pending.sort(key=lambda item: (item[0], item[1].priority))
        for at, entry in pending:
            await self._fire(entry, at, now)

    # -- firing -------------------------------------------------------------------------------

    def _arm(self) -> None:
        """Point the one APScheduler job at the earliest live heap entry."""
        if self._aps is None:
            return
        while self._heap and self._generation.get(self._heap[0][1], -1) != self._heap[0][2]:
            heapq.heappop(self._heap)
        if not self._heap:
            if self._aps.get_job(WAKE_JOB) is not None:
                self._aps.remove_job(WAKE_JOB)
            return
        delay = max(0.0, (self._heap[0][0] - self._lead - self._clock.now()).total_seconds())
        run_date = datetime.now(UTC) + timedelta(seconds=delay)
        # Two instances: a wake-up armed (by the end of the running one) for a moment that has already come may be
        # started before APScheduler has counted the running one finished; with one allowed it would be skipped and
        # the plan left asleep. The second waits for the lock and hands over what is due by then.
        self._aps.add_job(
            self._wake,
            trigger=DateTrigger(run_date=run_date, timezone=UTC),
            id=WAKE_JOB,
            replace_existing=True,
            max_instances=2,
        )

    async def poke(self) -> None:
        """Re-arm against the clock now (after a test moves a manual clock, or the system clock jumps)."""
        async with self._lock:
            self._arm()

    async def _wake(self) -> None:
        async with self._lock:
            # The clock is read again after every fire: handing over one slot can take long enough for the next
            # to fall due, and a wake-up armed in the past while this one runs is skipped by APScheduler
            # ("maximum number of running instances"), which would leave the plan asleep.
            while self._heap and self._heap[0][0] <= (now := self._clock.now()) + self._lead:
                at, schedule_id, generation = heapq.heappop(self._heap)
                if self._generation.get(schedule_id) != generation:
                    continue  # superseded by a change
                entry = self._entries.get(schedule_id)
                if entry is None:
                    continue
                await self._fire(entry, at, now)
                following = next_occurrence(entry.rule, at, self._zone)
                if following is not None:
                    heapq.heappush(self._heap, (following, schedule_id, generation))
            self._arm()

    async def _fire(self, entry: _Entry, at: datetime, now: datetime) -> None:
        try:
            async with self._sessions() as session:
                zone_ids = await self._service.zones_of(session, entry.targets)
            arguments: dict[str, Any] = {
                "schedule_id": entry.schedule_id,
                "notice_id": entry.notice_id,
                "occurrence_at": at,
                "zone_ids": zone_ids,
                "priority": entry.priority,
            }
            if now - at <= self._grace:
                claimed = await self._handler.occurrence_due(**arguments)
                outcome = "played" if claimed else "duplicate"
            else:
                claimed = await self._handler.occurrence_missed(**arguments)
                outcome = "missed" if claimed else "duplicate"
        except Exception:
            log.exception("schedule %s: handling the occurrence at %s failed", entry.schedule_id, at.isoformat())
            outcome = "error"
        self.fired.append(Fired(entry.schedule_id, at, outcome))
        del self.fired[:-200]
        self.fired_event.set()

    # -- health -------------------------------------------------------------------------------

    @property
    def next_fire(self) -> datetime | None:
        live = [at for at, schedule_id, gen in self._heap if self._generation.get(schedule_id) == gen]
        return min(live) if live else None

    async def health(self) -> dict[str, Any]:
        if not self.running:
            return {"status": "standby", "detail": "runs only in the active worker"}
        next_fire = self.next_fire
        job = self._aps.get_job(WAKE_JOB) if self._aps is not None else None
        return {
            "status": "ok",
            "schedules": len(self._entries),
            "jobs": 1 if job is not None else 0,
            "next_fire": next_fire.astimezone(self._zone).isoformat() if next_fire else None,
        }
