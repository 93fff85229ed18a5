"""The dispatcher: one zone plays one thing at a time; higher priority preempts; the as-run log is written here.

Inputs, all ending in :meth:`Dispatcher._submit` of one *play* (a broadcast in one zone):

* the scheduler's occurrences (:meth:`occurrence_due` / :meth:`occurrence_missed`,
  the ``schedules.scheduler.OccurrenceHandler`` protocol, wired by ``server.py``);
  the occurrence is claimed by inserting its ``broadcast_zones`` rows (attempt 0)
  under a UNIQUE key, so a second fire of the same slot finds them and plays nothing;
* requests from any process (an emergency, a manual play): a ``broadcasts`` row in
  state 0 (未处理) that the active worker takes (an atomic 0 → 1 update) at once
  when it is this process, else within ``pending_poll_s``.

Per zone: when the zone is free a play starts at once. When it is busy, a play of
a *higher* priority class (lower number) preempts: the playing item's stop event is
set, every transport stops it on every speaker, it is recorded as interrupted and,
if configured, queued again as the next attempt; then the preemptor plays. A play
of equal or lower priority waits, at most ``wait_limit_s``, and is then recorded
as skipped. Each play is one owned task; the transports under it add no task per
speaker except where a speaker needs its own wait (SIP call, HTTP terminal).

Never lost, never twice, across stops and crashes:

* a play cut by a higher priority before any speaker played a sound of it is recorded
  未开始（被抢占）, not 被中断 (and queued again like any cut play);
* when the service stops (SIGTERM), the playing item is cut and recorded 被中断, the queued
  ones 未开始（服务停止）; a process that dies (SIGKILL) leaves its rows waiting or playing,
  and the next start closes them the same way. Either way the rows are marked
  ``replay_pending``, and the next worker to start decides each one once (UNIQUE
  ``replay_of``), after its scheduler has caught up (:class:`PendingReplays`): a 重播 row
  that plays the item again from its start, at its own priority (an emergency too), if the
  service is back within ``replay_grace_s`` (the scheduler's catch-up grace) and no newer
  play of the same notice in the zone (a slot just caught up, say), nor an archive, an edit
  or a stopped schedule, came since; otherwise the same row records why it was not
  replayed (错过, 已取消). A play that finished is never played again.
* When the service stopped is known from a heartbeat (``worker_heartbeats``) written every
  ``heartbeat_s`` and at a clean stop.

A zone's live speakers (RTP, SIP, sound card) set its pace; a 4G terminal (pull) that has not
started the item when they are done no longer holds the zone (``broadcast.terminals``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from broadcast.notices import NoticeService
from broadcast.rtp import RtpSender, parse_destination
from broadcast.transports import PlayItem, SpeakerResult, SpeakerTarget, Transport
from common.clock import Clock
from common.errors import Conflict, CunxiangError
from common.tasks import BackgroundTasks
from storage.models import (
    EMERGENCY_PRIORITY,
    FINAL_RUN_STATES,
    PRIORITY_OF_KIND,
    RUN_CANCELLED,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_MISSED,
    RUN_PLAYING,
    RUN_PREEMPTED_BEFORE_START,
    RUN_SKIPPED,
    RUN_STOPPED_BEFORE_START,
    RUN_SUCCESS,
    RUN_UNPROCESSED,
    RUN_WAITING,
    Broadcast,
    BroadcastSpeaker,
    BroadcastZone,
    Notice,
    Schedule,
    Speaker,
    Township,
    Village,
    WorkerHeartbeat,
    Zone,
    ZoneBroadcastSettings,
)
from tts.cache import KeepSet

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Play:
    """One broadcast in one zone, as the dispatcher queues and plays it."""

    zone_run_id: int
    broadcast_id: int
    zone_id: int
    notice_id: int
    priority: int
    attempt: int
    schedule_id: int | None
    occurrence_at: datetime | None
    origin: str
    # May start in quiet hours although not an emergency (a phone broadcast by a user with that permission).
    quiet_exempt: bool = False
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: int | None = None
    stop_error: str | None = None
    interrupted_by: int | None = None
    # Stopped because the service stops (not preempted): its row is left for the next worker to replay.
    by_service: bool = False
    task: asyncio.Task[Any] | None = None
    expiry: asyncio.TimerHandle | None = None


@dataclass
class _ZoneSlot:
    playing: Play | None = None
    waiting: list[Play] = field(default_factory=list)


# Among a broadcast's zone rows that all failed to play, the state that tells most of what happened.
_UNPLAYED_PRECEDENCE = (
    RUN_INTERRUPTED,
    RUN_FAILED,
    RUN_MISSED,
    RUN_SKIPPED,
    RUN_PREEMPTED_BEFORE_START,
    RUN_STOPPED_BEFORE_START,
    RUN_CANCELLED,
)
STOPPED_BY_SERVICE = "服务停止，播出中断"
QUEUED_AT_STOP = "服务停止时仍在排队，未开始"
DIED_WHILE_PLAYING = "服务意外停止（进程退出），播出中断"
DIED_WHILE_QUEUED = "服务意外停止（进程退出）时仍在排队，未开始"


def aggregate_state(states: Sequence[int]) -> int:
    """A broadcast's state from its zones' states (every attempt: a later one that succeeded makes it 成功)."""
    if not states:
        return RUN_FAILED
    if any(state == RUN_PLAYING for state in states):
        return RUN_PLAYING
    if any(state in (RUN_UNPROCESSED, RUN_WAITING) for state in states):
        return RUN_WAITING
    if any(state == RUN_SUCCESS for state in states):
        return RUN_SUCCESS
    for state in _UNPLAYED_PRECEDENCE:
        if state in states:
            return state
    return RUN_FAILED


def in_quiet_hours(clock: time, quiet_start: time, quiet_end: time) -> bool:
    """[quiet_start, quiet_end) in wall-clock time, wrapping past midnight (the scheduler's rule, re-checked here)."""
    if quiet_start == quiet_end:
        return False
    if quiet_start < quiet_end:
        return quiet_start <= clock < quiet_end
    return clock >= quiet_start or clock < quiet_end


class Dispatcher:
    name = "dispatcher"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        zone: ZoneInfo,
        notices: NoticeService,
        transports: Mapping[str, Transport],
        rtp_sender: RtpSender,
        *,
        wait_limit_s: float = 600.0,
        requeue_interrupted: bool = True,
        pending_poll_s: float = 1.0,
        default_rtp_port: int = 5004,
        default_rtp_ttl: int = 8,
        replay_grace_s: float = 600.0,
        heartbeat_s: float = 5.0,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._zone = zone
        self._notices = notices
        self._transports = dict(transports)
        self._rtp = rtp_sender
        self._wait_limit_s = wait_limit_s
        self._requeue = requeue_interrupted
        self._pending_poll_s = pending_poll_s
        self._default_port = default_rtp_port
        self._default_ttl = default_rtp_ttl
        self._replay_grace = timedelta(seconds=replay_grace_s)
        self._heartbeat_s = heartbeat_s
        self._process = f"{socket.gethostname()}:{os.getpid()}"[:128]
        self._slots: dict[int, _ZoneSlot] = {}
        self._tasks: BackgroundTasks | None = None
        self._pending = asyncio.Event()
        self._pending_task: asyncio.Task[Any] | None = None
        self._stopping = False
        self._changed = asyncio.Condition()

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._tasks is not None

    def stopping(self) -> bool:
        return self._stopping

    async def start(self) -> None:
        if self._tasks is not None:
            return
        await self._rtp.start()
        try:
            await self._recover()
            await self._beat()
        except BaseException:
            await self._rtp.stop()
            raise
        self._stopping = False
        self._tasks = BackgroundTasks("dispatcher")
        self._pending_task = self._tasks.spawn(self._pending_loop(), "pending-requests")
        self._tasks.spawn(self._heartbeat_loop(), "heartbeat")

    async def replay_pending(self) -> int:
        """Decide the replay of every row the service's stop cut or left queued; start those that play again.

        Called once the scheduler has caught up (:class:`PendingReplays`, after it in the worker
        services), so that a slot of the same notice caught up now counts as the newer play that
        makes an older one's replay needless. Returns how many replays were started.
        """
        if self._tasks is None:
            return 0
        now = self._clock.now()
        decided: list[tuple[tuple[int, int, int], Play]] = []
        for row_id in await self._pending_replays():
            try:
                replay = await self._decide_replay(row_id, now)
            except IntegrityError:
                continue  # decided by another worker a moment ago: never twice
            if replay is not None:
                decided.append(replay)
        # Emergencies first, then what was on air before what waited, then in order of arrival.
        plays = [play for _key, play in sorted(decided, key=lambda pair: pair[0])]
        for play in plays:
            self._submit(play)
        if plays:
            log.info("replaying %d item(s) the service's stop cut or left queued", len(plays))
        await self._notify()
        return len(plays)

    async def stop(self) -> None:
        """Cut what plays (被中断), close what waits (未开始（服务停止）): both left for the next worker to replay."""
        if self._tasks is None:
            return
        self._stopping = True
        self._pending.set()
        if self._pending_task is not None:
            await asyncio.wait([self._pending_task], timeout=10)
        for slot in self._slots.values():
            if slot.playing is not None:
                slot.playing.stop_reason = RUN_INTERRUPTED
                slot.playing.stop_error = STOPPED_BY_SERVICE
                slot.playing.by_service = True
                slot.playing.stop.set()
        playing = [slot.playing.task for slot in self._slots.values() if slot.playing and slot.playing.task]
        if playing:
            await asyncio.wait(playing, timeout=10)
        # Collected after the plays ended: a play cut just before may have queued its next attempt.
        waiting = [play for slot in self._slots.values() for play in slot.waiting]
        for play in waiting:
            if play.expiry is not None:
                play.expiry.cancel()
        try:
            await self._close_queued(waiting)
            await self._beat(stopped=True)
        except Exception:
            # The database is gone: the rows stay waiting, and the next start closes them as a crash's.
            log.exception("recording the queued plays at stop failed; the next start will")
        tasks, self._tasks = self._tasks, None
        await tasks.close()
        await self._rtp.stop()
        self._slots.clear()

    async def _close_queued(self, plays: Sequence[Play]) -> None:
        if not plays:
            return
        now = self._clock.now()
        async with self._sessions.begin() as session:
            for play in plays:
                row = await session.get(BroadcastZone, play.zone_run_id)
                if row is None or row.state != RUN_WAITING:
                    continue
                row.state, row.error, row.ended_at = RUN_STOPPED_BEFORE_START, QUEUED_AT_STOP, now
                row.replay_pending = True
            for broadcast_id in {play.broadcast_id for play in plays}:
                await self._aggregate(session, broadcast_id)

    # -- heartbeat and recovery ---------------------------------------------------------------

    async def _beat(self, *, stopped: bool = False) -> None:
        now = self._clock.now()
        async with self._sessions.begin() as session:
            beat = await session.get(WorkerHeartbeat, self.name)
            if beat is None:
                beat = WorkerHeartbeat(name=self.name, alive_at=now)
                session.add(beat)
            beat.alive_at, beat.process = now, self._process
            beat.stopped_at = now if stopped else None

    async def _heartbeat_loop(self) -> None:
        while not self.stopping():
            await asyncio.sleep(self._heartbeat_s)
            if self.stopping():
                return
            try:
                await self._beat()
            except Exception:
                log.exception("writing the dispatcher's heartbeat failed; will retry")

    async def _recover(self) -> None:
        """Close what a dead worker left waiting or playing (its replay is decided by :meth:`replay_pending`)."""
        now = self._clock.now()
        async with self._sessions.begin() as session:
            beat = await session.get(WorkerHeartbeat, self.name)
            # When the previous worker stopped: its clean stop, or its last sign of life.
            last_seen = None if beat is None else (beat.stopped_at or beat.alive_at)
            await self._close_leftovers(session, last_seen, now)

    async def _close_leftovers(self, session: AsyncSession, last_seen: datetime | None, now: datetime) -> None:
        """Rows a dead process left waiting or playing: closed as it would have closed them, replay pending."""
        rows = (
            await session.scalars(select(BroadcastZone).where(BroadcastZone.state.in_((RUN_WAITING, RUN_PLAYING))))
        ).all()
        for row in rows:
            ended = max(last_seen or now, row.started_at or row.scheduled_at)
            ended = min(ended, now)
            if row.state == RUN_PLAYING:
                row.state, row.error = RUN_INTERRUPTED, DIED_WHILE_PLAYING
            else:
                row.state, row.error = RUN_STOPPED_BEFORE_START, DIED_WHILE_QUEUED
            row.ended_at, row.replay_pending = ended, True
            speakers = (
                await session.scalars(
                    select(BroadcastSpeaker).where(
                        BroadcastSpeaker.zone_run_id == row.id,
                        BroadcastSpeaker.state.in_((RUN_WAITING, RUN_PLAYING)),
                    )
                )
            ).all()
            for speaker in speakers:
                # Live speakers are playing from the zone's start; a 4G terminal waits until it reports its start.
                speaker.state = RUN_INTERRUPTED if speaker.state == RUN_PLAYING else RUN_STOPPED_BEFORE_START
                speaker.ended_at, speaker.error = ended, row.error
        for broadcast_id in {row.broadcast_id for row in rows}:
            await self._aggregate(session, broadcast_id)
        # A request taken (state 1) whose zone rows were never written cannot be: both are one transaction.

    async def _pending_replays(self) -> list[int]:
        async with self._sessions() as session:
            return list(
                (
                    await session.scalars(
                        select(BroadcastZone.id)
                        .where(BroadcastZone.replay_pending.is_(True))
                        .order_by(BroadcastZone.id)
                    )
                ).all()
            )

    async def _decide_replay(self, row_id: int, now: datetime) -> tuple[tuple[int, int, int], Play] | None:
        """One row the service's stop cut or left queued: a 重播 row that plays it again, or says why not."""
        async with self._sessions.begin() as session:
            row = await session.get(BroadcastZone, row_id)
            if row is None or not row.replay_pending:
                return None
            row.replay_pending = False
            why_not = await self._why_not_replay(session, row, now)
            attempt = await session.scalar(
                select(func.max(BroadcastZone.attempt)).where(
                    BroadcastZone.broadcast_id == row.broadcast_id, BroadcastZone.zone_id == row.zone_id
                )
            )
            state, error = (RUN_WAITING, None) if why_not is None else why_not
            replay = BroadcastZone(
                broadcast_id=row.broadcast_id,
                schedule_id=row.schedule_id,
                occurrence_at=row.occurrence_at,
                zone_id=row.zone_id,
                village_id=row.village_id,
                township_id=row.township_id,
                notice_id=row.notice_id,
                kind=row.kind,
                priority=row.priority,
                attempt=(attempt or 0) + 1,
                replay_of=row.id,
                state=state,
                scheduled_at=row.scheduled_at,
                error=error,
                ended_at=now if state in FINAL_RUN_STATES else None,
            )
            session.add(replay)
            await session.flush()
            await self._aggregate(session, row.broadcast_id)
            broadcast = await session.get(Broadcast, row.broadcast_id)
            assert broadcast is not None
            if state != RUN_WAITING:
                log.info("zone run %s not replayed: %s", row.id, error)
                return None
            order = (replay.priority, 0 if row.state == RUN_INTERRUPTED else 1, row.id)
            return order, self._play_of(broadcast, replay)

    async def _why_not_replay(self, session: AsyncSession, row: BroadcastZone, now: datetime) -> tuple[int, str] | None:
        """(state, reason) when ``row`` must not be played again; None when its replay may go ahead."""
        stopped_at = row.ended_at or now
        if now - stopped_at > self._replay_grace:
            down = max(1, round((now - stopped_at).total_seconds() / 60))
            grace = self._replay_grace.total_seconds() / 60
            return RUN_MISSED, f"服务停机约{down}分钟，超过补播时限（{grace:g}分钟），未重播"
        broadcast = await session.get(Broadcast, row.broadcast_id)
        if broadcast is not None and broadcast.cancel_reason:
            return RUN_CANCELLED, broadcast.cancel_reason  # withdrawn while the service was down: never replayed
        notice = await session.get(Notice, row.notice_id) if row.notice_id is not None else None
        if notice is None or notice.state == "archived":
            return RUN_CANCELLED, "通知已归档，不再重播"
        if notice.state != "approved":
            return RUN_CANCELLED, "通知已被修改、尚未重新审核，不再重播"
        if row.schedule_id is not None:
            schedule = await session.get(Schedule, row.schedule_id)
            if schedule is None or not schedule.enabled:
                return RUN_CANCELLED, "播出安排已停用，不再重播"
        # A newer play of the same notice here that played, plays, waits, or is itself to be replayed:
        # the village hears the notice from that one, not twice.
        newer = await session.scalar(
            select(BroadcastZone.id)
            .where(
                BroadcastZone.zone_id == row.zone_id,
                BroadcastZone.notice_id == row.notice_id,
                BroadcastZone.broadcast_id != row.broadcast_id,
                BroadcastZone.id > row.id,
                BroadcastZone.replay_of.is_(None),
                or_(
                    BroadcastZone.state.in_((RUN_WAITING, RUN_PLAYING, RUN_SUCCESS)),
                    BroadcastZone.replay_pending.is_(True),
                ),
            )
            .order_by(BroadcastZone.id)
            .limit(1)
        )
        if newer is not None:
            return RUN_CANCELLED, f"本分区此后已有同一通知的播出（记录号{newer}），不再重播"
        return None

    # -- waiting for changes (tests, health) ---------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, re-checked at every state change (for tests and tools, which bound
        the wait with asyncio.timeout)."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def changed(self) -> None:
        """Return at the next state change (for tests and tools)."""
        async with self._changed:
            await self._changed.wait()

    def idle(self) -> bool:
        return all(slot.playing is None and not slot.waiting for slot in self._slots.values())

    # -- the scheduler's protocol --------------------------------------------------------------

    async def occurrence_due(
        self, *, schedule_id: int, notice_id: int, occurrence_at: datetime, zone_ids: Sequence[int], priority: int
    ) -> bool:
        plays = await self._claim_occurrence(
            schedule_id=schedule_id,
            notice_id=notice_id,
            occurrence_at=occurrence_at,
            zone_ids=zone_ids,
            priority=priority,
            state=RUN_WAITING,
            error=None,
        )
        if plays is None:
            return False
        for play in plays:
            self._submit(play)
        await self._notify()
        return True

    async def occurrence_missed(
        self, *, schedule_id: int, notice_id: int, occurrence_at: datetime, zone_ids: Sequence[int], priority: int
    ) -> bool:
        plays = await self._claim_occurrence(
            schedule_id=schedule_id,
            notice_id=notice_id,
            occurrence_at=occurrence_at,
            zone_ids=zone_ids,
            priority=priority,
            state=RUN_MISSED,
            error="服务停机超过补播时限，未播出",
        )
        await self._notify()
        return plays is not None

    async def _claim_occurrence(
        self,
        *,
        schedule_id: int,
        notice_id: int,
        occurrence_at: datetime,
        zone_ids: Sequence[int],
        priority: int,
        state: int,
        error: str | None,
    ) -> list[Play] | None:
        """Insert the occurrence's as-run rows (the claim); None if they exist already."""
        if not zone_ids:
            # The as-run log is per zone, so there is no row to write: say it where an operator looks.
            log.warning(
                "schedule %s at %s: its targets have no broadcast zone (deleted villages or zones?); nothing played",
                schedule_id,
                occurrence_at.isoformat(),
            )
            return []
        now = self._clock.now()
        try:
            async with self._sessions.begin() as session:
                notice = await session.get(Notice, notice_id)
                if notice is None:
                    return []
                if state == RUN_WAITING and notice.state == "archived":
                    state, error = RUN_CANCELLED, "通知已归档，未播出"
                elif state == RUN_WAITING and notice.state != "approved":
                    state, error = RUN_CANCELLED, "通知未通过审核（可能在审核后被修改），未播出"
                broadcast = Broadcast(
                    notice_id=notice_id,
                    schedule_id=schedule_id,
                    occurrence_at=occurrence_at,
                    origin="schedule",
                    kind=notice.kind,
                    priority=priority,
                    title=notice.title,
                    zone_ids=list(zone_ids),
                    state=state,
                    error=error,
                    created_at=now,
                    ended_at=now if state in FINAL_RUN_STATES else None,
                )
                session.add(broadcast)
                await session.flush()
                rows = await self._zone_rows(
                    session, broadcast, zone_ids, state=state, error=error, scheduled_at=occurrence_at
                )
                if state == RUN_WAITING:
                    await self._cancel_quiet(session, rows, occurrence_at, exempt=broadcast.quiet_exempt)
                    broadcast.state = aggregate_state([row.state for row in rows])
        except IntegrityError:
            return None  # this slot was claimed before: never play it twice
        return [self._play_of(broadcast, row) for row in rows if row.state == RUN_WAITING]

    async def _cancel_quiet(
        self, session: AsyncSession, rows: Sequence[BroadcastZone], at: datetime, *, exempt: bool
    ) -> None:
        """Quiet hours are re-checked at air time: a township may have changed them since the schedule was made."""
        clock = at.astimezone(self._zone).time()
        for row in rows:
            if row.priority == EMERGENCY_PRIORITY or exempt:
                continue
            township = await session.get(Township, row.township_id)
            if township is not None and in_quiet_hours(clock, township.quiet_start, township.quiet_end):
                row.state, row.ended_at = RUN_CANCELLED, at
                row.error = f"{clock:%H:%M} 在{township.name}的静默时段内，只有应急广播可以播出"

    async def _zone_rows(
        self,
        session: AsyncSession,
        broadcast: Broadcast,
        zone_ids: Sequence[int],
        *,
        state: int,
        error: str | None,
        scheduled_at: datetime,
        attempt: int = 0,
    ) -> list[BroadcastZone]:
        found = (await session.execute(select(Zone, Village).join(Village).where(Zone.id.in_(zone_ids)))).all()
        rows = []
        for zone, village in sorted(found, key=lambda pair: pair[0].id):
            row = BroadcastZone(
                broadcast_id=broadcast.id,
                schedule_id=broadcast.schedule_id,
                occurrence_at=broadcast.occurrence_at,
                zone_id=zone.id,
                village_id=village.id,
                township_id=village.township_id,
                notice_id=broadcast.notice_id,
                kind=broadcast.kind,
                priority=broadcast.priority,
                attempt=attempt,
                state=state,
                scheduled_at=scheduled_at,
                error=error,
                ended_at=scheduled_at if state in FINAL_RUN_STATES else None,
            )
            session.add(row)
            rows.append(row)
        await session.flush()
        return rows

    @staticmethod
    def _play_of(broadcast: Broadcast, row: BroadcastZone) -> Play:
        assert broadcast.notice_id is not None
        return Play(
            zone_run_id=row.id,
            broadcast_id=broadcast.id,
            zone_id=row.zone_id,
            notice_id=broadcast.notice_id,
            priority=row.priority,
            attempt=row.attempt,
            schedule_id=row.schedule_id,
            occurrence_at=row.occurrence_at,
            origin=broadcast.origin,
            quiet_exempt=bool(broadcast.quiet_exempt),
        )

    # -- requests from any process ---------------------------------------------------------------

    async def request(
        self,
        *,
        notice_id: int,
        zone_ids: Sequence[int],
        origin: str,
        requested_by: int | None,
        quiet_exempt: bool = False,
    ) -> int:
        """Ask the active worker to play an approved notice in ``zone_ids`` now; returns the broadcast id.

        ``quiet_exempt``: it may start in quiet hours though not an emergency (a phone broadcast by a user with the
        emergency permission, 手机喊话); its priority is always its notice's kind's.
        """
        async with self._sessions.begin() as session:
            notice = await session.get(Notice, notice_id)
            if notice is None or notice.state != "approved":
                raise Conflict("只有审核通过的通知才能播出", code="notice.not_approved")
            broadcast = Broadcast(
                notice_id=notice.id,
                origin=origin,
                kind=notice.kind,
                priority=PRIORITY_OF_KIND[notice.kind],
                title=notice.title,
                requested_by=requested_by,
                zone_ids=sorted(set(zone_ids)),
                quiet_exempt=quiet_exempt,
                state=RUN_UNPROCESSED,
                created_at=self._clock.now(),
            )
            session.add(broadcast)
            await session.flush()
            broadcast_id = broadcast.id
        self._pending.set()
        return broadcast_id

    async def cancel(self, broadcast_id: int, reason: str) -> None:
        """Withdraw a broadcast (an official warning cancelled): not yet taken, waiting, or playing, it stops.

        Any process may ask: the request is written on the broadcast (``cancel_reason``) and one no worker has
        taken yet is closed there and then. The plays this process holds are taken out of their queues or
        stopped on every speaker at once; the active worker, when it is another process, finds the written
        cancel on its next round (within ``pending_poll_s``, as it finds new requests) and does the same. Each
        play is recorded as cancelled with ``reason``.
        """
        now = self._clock.now()
        async with self._sessions.begin() as session:
            await session.execute(
                update(Broadcast)
                .where(Broadcast.id == broadcast_id, Broadcast.cancel_reason.is_(None))
                .values(cancel_reason=reason[:255])
            )
            await session.execute(
                update(Broadcast)
                .where(Broadcast.id == broadcast_id, Broadcast.state == RUN_UNPROCESSED)
                .values(state=RUN_CANCELLED, error=reason, ended_at=now)
            )
        self._cancel_held(broadcast_id, reason)
        await self._notify()

    def _cancel_held(self, broadcast_id: int, reason: str) -> bool:
        """Stop this process's plays of a broadcast (queued: closed; playing: stopped); whether there were any."""
        found = False
        for slot in self._slots.values():
            for play in [play for play in slot.waiting if play.broadcast_id == broadcast_id]:
                found = True
                slot.waiting.remove(play)
                if play.expiry is not None:
                    play.expiry.cancel()
                if self._tasks is not None:
                    self._tasks.spawn(self._close_play(play, RUN_CANCELLED, reason), f"cancel-run{play.zone_run_id}")
            playing = slot.playing
            if playing is not None and playing.broadcast_id == broadcast_id and not playing.stop.is_set():
                found = True
                playing.stop_reason, playing.stop_error = RUN_CANCELLED, reason
                playing.stop.set()
        return found

    async def take_cancels(self) -> int:
        """Stop the held plays of broadcasts another process asked to cancel (the pending loop's step)."""
        held = {play.broadcast_id for slot in self._slots.values() for play in (slot.playing, *slot.waiting) if play}
        if not held:
            return 0
        async with self._sessions() as session:
            asked = (
                await session.execute(
                    select(Broadcast.id, Broadcast.cancel_reason).where(
                        Broadcast.id.in_(sorted(held)), Broadcast.cancel_reason.is_not(None)
                    )
                )
            ).all()
        stopped = sum(self._cancel_held(broadcast_id, reason or "") for broadcast_id, reason in asked)
        if stopped:
            await self._notify()
        return stopped

    async def _pending_loop(self) -> None:
        # Ends by itself when stopping, rather than being cancelled in the middle of a database call
        # (a cancelled checkout can leave a connection behind the pool's back).
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._pending_poll_s):
                    await self._pending.wait()
            self._pending.clear()
            if self.stopping():
                return
            try:
                await self.take_pending()
                await self.take_cancels()
            except Exception:
                log.exception("taking pending broadcast requests failed; will retry")

    async def take_pending(self) -> None:
        async with self._sessions() as session:
            waiting = (
                await session.scalars(
                    select(Broadcast.id).where(Broadcast.state == RUN_UNPROCESSED).order_by(Broadcast.priority)
                )
            ).all()
        for broadcast_id in waiting:
            plays: list[Play] = []
            async with self._sessions.begin() as session:
                claimed = await session.execute(
                    update(Broadcast)
                    .where(Broadcast.id == broadcast_id, Broadcast.state == RUN_UNPROCESSED)
                    .values(state=RUN_WAITING)
                )
                if getattr(claimed, "rowcount", 0) != 1:
                    continue  # another worker (a moment ago the active one) took it
                broadcast = await session.get(Broadcast, broadcast_id)
                assert broadcast is not None
                now = self._clock.now()
                rows = await self._zone_rows(
                    session, broadcast, broadcast.zone_ids, state=RUN_WAITING, error=None, scheduled_at=now
                )
                if not rows:
                    broadcast.state, broadcast.error = RUN_FAILED, "没有可播出的分区"
                else:
                    # A manual play obeys quiet hours like a scheduled one; only 应急 may start in them.
                    await self._cancel_quiet(session, rows, now, exempt=broadcast.quiet_exempt)
                    broadcast.state = aggregate_state([row.state for row in rows])
                plays = [self._play_of(broadcast, row) for row in rows if row.state == RUN_WAITING]
            for play in plays:
                self._submit(play)
            await self._notify()

    # -- per zone: queue, preempt, play ----------------------------------------------------------

    def _submit(self, play: Play) -> None:
        if self._tasks is None:
            log.warning("dispatcher not running; play %s stays waiting", play.zone_run_id)
            return
        slot = self._slots.setdefault(play.zone_id, _ZoneSlot())
        if self._stopping:
            slot.waiting.append(play)  # closed as 未开始（服务停止） by stop(), for the next worker to replay
            return
        current = slot.playing
        if current is None:
            self._start(slot, play)
            return
        if play.priority < current.priority:
            # Higher priority: it goes next (after any earlier item of its class); the current one stops everywhere.
            slot.waiting.append(play)
            slot.waiting.sort(key=lambda queued: queued.priority)  # stable: first come, first served within a class
            if current.stop_reason is None:
                current.stop_reason = RUN_INTERRUPTED
                current.interrupted_by = play.zone_run_id
                current.stop.set()
            return
        slot.waiting.append(play)
        slot.waiting.sort(key=lambda queued: queued.priority)  # stable: equal priorities keep their order
        loop = asyncio.get_running_loop()
        play.expiry = loop.call_later(self._wait_limit_s, self._expire, play)

    def _start(self, slot: _ZoneSlot, play: Play) -> None:
        assert self._tasks is not None
        if play.expiry is not None:
            play.expiry.cancel()
            play.expiry = None
        slot.playing = play
        play.task = self._tasks.spawn(self._run(play), f"zone{play.zone_id}-run{play.zone_run_id}")
        play.task.add_done_callback(lambda _task: self._finished(slot, play))

    def _finished(self, slot: _ZoneSlot, play: Play) -> None:
        if slot.playing is play:
            slot.playing = None
        if slot.waiting and self._tasks is not None and not self._stopping:
            self._start(slot, slot.waiting.pop(0))
        if self._tasks is not None:
            self._tasks.spawn(self._notify(), "notify")

    def _expire(self, play: Play) -> None:
        slot = self._slots.get(play.zone_id)
        if slot is None or play not in slot.waiting or self._tasks is None:
            return
        slot.waiting.remove(play)
        error = f"分区正在播出其他内容，等待超过{self._wait_limit_s:g}秒，未播出"
        self._tasks.spawn(self._close_play(play, RUN_SKIPPED, error), f"skip-run{play.zone_run_id}")

    async def _close_play(self, play: Play, state: int, error: str | None) -> None:
        now = self._clock.now()
        async with self._sessions.begin() as session:
            row = await session.get(BroadcastZone, play.zone_run_id)
            assert row is not None
            row.state, row.error, row.ended_at = state, error, now
            await self._aggregate(session, play.broadcast_id)
        await self._notify()

    async def _aggregate(self, session: AsyncSession, broadcast_id: int) -> None:
        await session.flush()
        states = (
            await session.scalars(select(BroadcastZone.state).where(BroadcastZone.broadcast_id == broadcast_id))
        ).all()
        broadcast = await session.get(Broadcast, broadcast_id)
        assert broadcast is not None
        broadcast.state = aggregate_state(list(states))
        if broadcast.state in FINAL_RUN_STATES and broadcast.ended_at is None:
            broadcast.ended_at = self._clock.now()

    def _is_pull(self, transport_name: str) -> bool:
        transport = self._transports.get(transport_name)
        return bool(transport is not None and transport.pull)

    def _waits_for_speaker(self, transport_name: str) -> bool:
        """Whether a speaker of this transport plays only once it answers or asks (SIP paging, 4G terminals)."""
        transport = self._transports.get(transport_name)
        return bool(transport is not None and (transport.pull or transport.answers_first))

    async def _speaker_answered(self, target: SpeakerTarget, at: datetime) -> None:
        """A speaker that answers before it plays (SIP paging) has answered: its row says 播放中 from ``at``."""
        if target.run_id is None:
            return
        async with self._sessions.begin() as session:
            run = await session.get(BroadcastSpeaker, target.run_id)
            if run is None or run.state != RUN_WAITING:
                return
            run.state, run.started_at = RUN_PLAYING, at
        await self._notify()

    async def _targets(
        self, session: AsyncSession, play: Play
    ) -> tuple[list[SpeakerTarget], ZoneBroadcastSettings | None]:
        speakers = (
            await session.scalars(
                select(Speaker).where(Speaker.zone_id == play.zone_id, Speaker.enabled.is_(True)).order_by(Speaker.id)
            )
        ).all()
        settings = await session.get(ZoneBroadcastSettings, play.zone_id)
        targets = []
        for speaker in speakers:
            run = BroadcastSpeaker(
                zone_run_id=play.zone_run_id,
                speaker_id=speaker.id,
                transport=speaker.transport,
                address=speaker.address,
                # Live speakers play from now; a 4G terminal waits until it reports its start, a SIP speaker
                # until it answers (a row saying 播放中 for a speaker still ringing would be a guess).
                state=RUN_WAITING if self._waits_for_speaker(speaker.transport) else RUN_PLAYING,
                acknowledged=False,
            )
            session.add(run)
            await session.flush()
            targets.append(SpeakerTarget(speaker.transport, speaker.address, speaker.id, speaker.name, run.id))
        return targets, settings

    async def _quiet_now(self, session: AsyncSession, play: Play) -> str | None:
        """Why ``play`` may not start now (its zone's township is in quiet hours), or None.

        Checked again when a play gets its zone: one that waited (behind another, or
        requeued after an emergency) may reach it only after quiet hours began.
        """
        if play.priority == EMERGENCY_PRIORITY or play.quiet_exempt:
            return None
        township = await township_of_zone(session, play.zone_id)
        local = self._clock.now().astimezone(self._zone).time()
        if township is not None and in_quiet_hours(local, township.quiet_start, township.quiet_end):
            return f"{local:%H:%M} 在{township.name}的静默时段内，只有应急广播可以播出"
        return None

    async def _run(self, play: Play) -> None:
        try:
            async with self._sessions() as session:
                notice = await session.get(Notice, play.notice_id)
                assert notice is not None
                quiet = await self._quiet_now(session, play)
            if quiet is not None:
                await self._close_play(play, RUN_CANCELLED, quiet)
                return
            # Its audio stays in the cache while it plays, whatever happens to the notice meanwhile.
            with self._notices.keep_set(f"zone {play.zone_id} playing run {play.zone_run_id}") as keep:
                await self._play(play, notice, keep)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._close_cancelled(play))
            raise
        except CunxiangError as exc:
            log.warning("play %s in zone %s failed: %s", play.zone_run_id, play.zone_id, exc)
            await self._close_play(play, RUN_FAILED, exc.message)
        except Exception as exc:
            log.exception("play %s in zone %s failed", play.zone_run_id, play.zone_id)
            await self._close_play(play, RUN_FAILED, f"内部错误：{type(exc).__name__}")

    async def _play(self, play: Play, notice: Notice, keep: KeepSet) -> None:
        files, duration = await self._notices.audio_files(notice, keep)
        if play.stop.is_set():
            # Preempted (or the service stopped) before a single speaker was asked to play it.
            await self._record(play, [])
            return
        now = self._clock.now()
        async with self._sessions.begin() as session:
            row = await session.get(BroadcastZone, play.zone_run_id)
            assert row is not None
            row.state, row.started_at = RUN_PLAYING, now
            broadcast = await session.get(Broadcast, play.broadcast_id)
            assert broadcast is not None
            broadcast.audio_keys = notice.audio_keys
            broadcast.duration_s = duration
            if broadcast.started_at is None:
                broadcast.started_at = now
            broadcast.state = RUN_PLAYING
            targets, zone_settings = await self._targets(session, play)
        await self._notify()
        group = None
        ttl = None
        if zone_settings is not None and zone_settings.rtp_group:
            group = parse_destination(zone_settings.rtp_group, default_port=self._default_port)
            ttl = zone_settings.rtp_ttl
        item = PlayItem(
            title=notice.title,
            files=files,
            duration_s=duration,
            priority=play.priority,
            zone_run_id=play.zone_run_id,
            rtp_group=group,
            rtp_ttl=ttl,
            on_answered=self._speaker_answered,
        )
        results = await self._play_everywhere(item, targets, play)
        await self._record(play, results)

    async def _close_cancelled(self, play: Play) -> None:
        """The play's task was cancelled (the dispatcher closing in a hurry): cut, left for the next worker."""
        now = self._clock.now()
        async with self._sessions.begin() as session:
            row = await session.get(BroadcastZone, play.zone_run_id)
            if row is None or row.state not in (RUN_WAITING, RUN_PLAYING):
                return
            started = row.state == RUN_PLAYING
            row.state = RUN_INTERRUPTED if started else RUN_STOPPED_BEFORE_START
            row.error = STOPPED_BY_SERVICE if started else QUEUED_AT_STOP
            row.ended_at, row.replay_pending = now, True
            await self._aggregate(session, play.broadcast_id)

    async def _play_everywhere(self, item: PlayItem, targets: list[SpeakerTarget], play: Play) -> list[SpeakerResult]:
        """Every transport at once; the live ones' end is signalled to the pull ones (``PlayItem.live_done``)."""
        by_transport: dict[str, list[SpeakerTarget]] = {}
        for target in targets:
            by_transport.setdefault(target.transport, []).append(target)
        results: list[SpeakerResult] = []
        live_jobs: list[Awaitable[list[SpeakerResult]]] = []
        pull_jobs: list[Awaitable[list[SpeakerResult]]] = []
        has_live = any(not self._is_pull(name) for name in by_transport if name in self._transports)
        item = replace(item, live_done=asyncio.Event() if has_live else None)
        for transport_name, group in by_transport.items():
            transport = self._transports.get(transport_name)
            if transport is None:
                results += [
                    SpeakerResult(target, RUN_FAILED, error=f"未启用传输方式 {transport_name}") for target in group
                ]
                continue
            (pull_jobs if transport.pull else live_jobs).append(transport.play(item, group, play.stop))

        async def live() -> list[Any]:
            try:
                return await asyncio.gather(*live_jobs, return_exceptions=True)
            finally:
                if item.live_done is not None:
                    item.live_done.set()

        live_outcomes, pull_outcomes = await asyncio.gather(live(), asyncio.gather(*pull_jobs, return_exceptions=True))
        for outcome in [*live_outcomes, *pull_outcomes]:
            if isinstance(outcome, BaseException):
                if isinstance(outcome, asyncio.CancelledError):
                    raise outcome
                log.error("a transport failed in play %s", play.zone_run_id, exc_info=outcome)
                continue
            results += outcome
        return results

    def _unheard_state(self, play: Play) -> int:
        return RUN_STOPPED_BEFORE_START if play.by_service else RUN_PREEMPTED_BEFORE_START

    async def _record(self, play: Play, results: list[SpeakerResult]) -> None:
        """What each speaker and the zone did; a cut play that nobody heard is 未开始, not 被中断."""
        now = self._clock.now()
        requeued: Play | None = None
        heard = any(result.heard for result in results)
        finished_anyway = bool(results) and all(result.state == RUN_SUCCESS for result in results)
        async with self._sessions.begin() as session:
            for result in results:
                if result.target.run_id is None:
                    continue
                run = await session.get(BroadcastSpeaker, result.target.run_id)
                if run is None:
                    continue
                run.state = result.state
                if result.state == RUN_INTERRUPTED and not result.heard:
                    run.state = self._unheard_state(play)
                run.started_at = result.started_at or run.started_at
                run.ended_at = result.ended_at or now
                run.error = result.error
                run.detail = result.detail or None
                run.packets_sent = result.packets_sent
                run.played_s = result.played_s
            row = await session.get(BroadcastZone, play.zone_run_id)
            assert row is not None
            row.ended_at = now
            if play.stop_reason is not None and not finished_anyway:
                default = STOPPED_BY_SERVICE if play.by_service else "被更高优先级的广播插播中断"
                row.state, row.error = play.stop_reason, play.stop_error or default
                row.interrupted_by = play.interrupted_by
                if play.stop_reason == RUN_INTERRUPTED and not heard:
                    row.state = self._unheard_state(play)
                    row.error = QUEUED_AT_STOP if play.by_service else "尚未播出即被更高优先级的广播抢占"
                # The service's stop: the next worker to start decides its replay.
                row.replay_pending = play.by_service
            elif not results:
                row.state, row.error = RUN_FAILED, "分区没有启用的终端"
            else:
                succeeded = [result for result in results if result.state == RUN_SUCCESS]
                failed = [result for result in results if result.state != RUN_SUCCESS]
                row.state = RUN_SUCCESS if succeeded else RUN_FAILED
                row.error = (
                    "；".join(f"{result.target.name or result.target.address}：{result.error}" for result in failed)
                    or None
                )
            if (
                play.stop_reason == RUN_INTERRUPTED
                and not finished_anyway
                and play.interrupted_by is not None
                and self._requeue
                and play.priority != EMERGENCY_PRIORITY
            ):
                broadcast = await session.get(Broadcast, play.broadcast_id)
                assert broadcast is not None
                again = await self._zone_rows(
                    session,
                    broadcast,
                    [play.zone_id],
                    state=RUN_WAITING,
                    error=None,
                    scheduled_at=row.scheduled_at,
                    attempt=play.attempt + 1,
                )
                requeued = self._play_of(broadcast, again[0]) if again else None
            await self._aggregate(session, play.broadcast_id)
        if requeued is not None:
            self._submit(requeued)
        await self._notify()

    # -- health -------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        if not self.running:
            return {"status": "standby", "detail": "runs only in the active worker"}
        playing = sum(1 for slot in self._slots.values() if slot.playing is not None)
        waiting = sum(len(slot.waiting) for slot in self._slots.values())
        return {"status": "ok", "zones_playing": playing, "waiting": waiting, "rtp_streams": self._rtp.active}


async def township_of_zone(session: AsyncSession, zone_id: int) -> Township | None:
    row = (
        await session.execute(
            select(Township).join(Village, Village.township_id == Township.id).join(Zone).where(Zone.id == zone_id)
        )
    ).first()
    return row[0] if row else None


class PendingReplays:
    """A worker service that decides the replays once the scheduler has caught up (it starts after it)."""

    name = "replays"

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    async def start(self) -> None:
        await self._dispatcher.replay_pending()

    async def stop(self) -> None:
        """Nothing runs here: the replays play in the dispatcher, which stops them."""
