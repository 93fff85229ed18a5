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

On time (the pre-roll): the scheduler hands an occurrence over ``broadcast.preroll_s`` before its
instant. It is claimed *provisionally* (its rows at attempt -1, which the scheduler's catch-up does not
count), its rows written and the item prepared — audio read, RTP packetised, sockets and streams built —
and committed (attempt 0) a moment before the instant; on the instant one loop releases the first packet
of every stream of every play due then. A clean stop before the instant gives the slot back (its rows
renumbered below -1 and closed 未开始（服务停止）, so the restarted scheduler finds the slot unclaimed and plays
or misses it as for any slot it did not see); so does the next start for a provisional claim a dead
process left. An emergency, a cancel, or an archive or edit of the notice (checked at the commit) during
the pre-roll wins as it would a moment later.

A live call (手机喊话 实时, :meth:`Dispatcher.go_live`) is a play without an item: it holds its zones at
手机喊话's priority while the speakers sit in the call's Asterisk room (:class:`broadcast.transports.LiveRooms`),
until :meth:`Dispatcher.end_live`; an emergency takes a zone back and tells the call. It is never requeued
or replayed. Its recording reaches the speakers that cannot play live afterwards (``live_part = "after"``).

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
from broadcast.transports import LiveLeg, LiveRooms, PlayItem, SpeakerResult, SpeakerTarget, StartGate, Transport
from common.clock import Clock
from common.errors import Conflict, CunxiangError
from common.tasks import BackgroundTasks
from storage.models import (
    EMERGENCY_PRIORITY,
    FINAL_RUN_STATES,
    LIVE_AFTER,
    LIVE_CALL,
    LIVE_TRANSPORTS,
    PHONECAST_KIND,
    PHONECAST_PRIORITY,
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

# A pre-rolled occurrence's rows before their commit: the scheduler's catch-up counts attempt 0 only, so a
# claim given back (renumbered below this) leaves its slot unclaimed.
PROVISIONAL_ATTEMPT = -1
# How long before its instant a pre-rolled claim is committed (a database write with the notice's re-check):
# late, so that a stop just before the instant still gives the slot back; early enough that the write is done
# by the instant on a loaded machine (a SQLite write takes milliseconds, rarely a hundred).
COMMIT_LEAD_S = 0.3
# asyncio's timers wake about a millisecond late, more under load: the release sleeps until this long before
# the instant and then yields to the loop until it comes (other callbacks keep running meanwhile).
SPIN_S = 0.005
GIVEN_BACK_AT_STOP = "服务在播出时刻前停止，此时段已交还：重启后在补播时限内播出，否则记为错过"
GIVEN_BACK_AFTER_DEATH = "服务在播出时刻前意外停止，此时段已交还：重启后在补播时限内播出，否则记为错过"


@dataclass(eq=False)
class _Claim:
    """A scheduled occurrence claimed before its instant (the pre-roll): provisional until committed."""

    broadcast_id: int
    notice_id: int
    due_at: datetime
    due_loop: float  # the instant on the event loop's clock
    plays: list[Play] = field(default_factory=list)
    committed: bool = False
    # Some play of it started (its first packets went), or one was decided otherwise (preempted, cancelled):
    # from then on the claim is the slot's for good.
    settled: bool = False
    given_back: bool = False
    commit: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class _Instant:
    """Every pre-rolled play due at one instant, released together by one task."""

    due_at: datetime
    due_loop: float
    gates: list[tuple[Play, StartGate]] = field(default_factory=list)


@dataclass(eq=False)
class LiveHold:
    """A live call (手机喊话 实时) holding zones: its conference room, and the event the line waits on."""

    room: str
    # Set when an emergency takes one of the zones: the line ends the call and tells the caller why.
    preempted: asyncio.Event


@dataclass(frozen=True)
class LiveAir:
    """What :meth:`Dispatcher.go_live` decided: ``on_air`` (broadcast_id set), ``busy``, ``emergency`` or ``failed``."""

    status: str
    broadcast_id: int | None = None
    detail: str = ""


LIVE_PREEMPTED = "紧急广播插播，喊话结束"


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
    # A live call's hold on the zone (no item: the speakers join the call's room), or None.
    live: LiveHold | None = None
    # A live call's recording afterwards: only the speakers that could not play it live.
    after_live: bool = False
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: int | None = None
    stop_error: str | None = None
    interrupted_by: int | None = None
    # Stopped because the service stops (not preempted): its row is left for the next worker to replay.
    by_service: bool = False
    task: asyncio.Task[Any] | None = None
    # The wait limit of a queued play; for a pre-rolled play queued behind a lower priority, its preemption at
    # its instant (never before it).
    expiry: asyncio.TimerHandle | None = None
    # Set for a scheduled occurrence claimed before its instant.
    claim: _Claim | None = None


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


def _mark_on_air(row: BroadcastZone, broadcast: Broadcast, at: datetime) -> None:
    """A zone's play is on air from ``at``, and so is its broadcast (from its first zone's start)."""
    row.state, row.started_at = RUN_PLAYING, at
    if broadcast.started_at is None:
        broadcast.started_at = at
    broadcast.state = RUN_PLAYING


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
        live_rooms: LiveRooms | None = None,
        multicast_interface: str = "",
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
        self._live_rooms = live_rooms
        self._multicast_interface = multicast_interface
        self._process = f"{socket.gethostname()}:{os.getpid()}"[:128]
        self._slots: dict[int, _ZoneSlot] = {}
        self._tasks: BackgroundTasks | None = None
        self._pending = asyncio.Event()
        self._pending_task: asyncio.Task[Any] | None = None
        self._stopping = False
        self._changed = asyncio.Condition()
        self._claims: dict[int, _Claim] = {}
        # Pre-rolled plays released after their instant because their preparation or commit was not done by then
        # (a loaded machine), and how late the latest of them was: for health and the benchmark.
        self.late_releases = 0
        self.latest_release_s = 0.0
        self._instants: dict[datetime, _Instant] = {}

    def use_live_rooms(self, rooms: LiveRooms | None) -> None:
        """The conference rooms live calls reach the speakers through (the hotline's, handed in by server.py)."""
        self._live_rooms = rooms

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
        # A slot claimed ahead whose instant has not come is given back, not cut: the next start plays it then.
        now_loop = asyncio.get_running_loop().time()
        given_back = [
            claim
            for claim in self._claims.values()
            if not claim.settled and not claim.given_back and claim.due_loop > now_loop
        ]
        for claim in given_back:
            claim.given_back = True
            if claim.timer is not None:
                claim.timer.cancel()
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
            await self._close_queued([play for play in waiting if play.claim is None or not play.claim.given_back])
            await self._give_back(given_back)
            await self._beat(stopped=True)
        except Exception:
            # The database is gone: the rows stay waiting, and the next start closes them as a crash's.
            log.exception("recording the queued plays at stop failed; the next start will")
        tasks, self._tasks = self._tasks, None
        await tasks.close()
        await self._rtp.stop()
        self._slots.clear()
        self._claims.clear()
        self._instants.clear()

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

    async def _give_back(self, claims: Sequence[_Claim]) -> None:
        if not claims:
            return
        for claim in claims:
            if claim.commit is not None and not claim.commit.done():
                with contextlib.suppress(Exception):
                    await asyncio.shield(claim.commit)  # a commit in flight lands first: then it is renumbered
        now = self._clock.now()
        async with self._sessions.begin() as session:
            for claim in claims:
                await self._give_back_rows(session, claim.broadcast_id, now, GIVEN_BACK_AT_STOP)
        log.info("gave back %d slot(s) claimed ahead of their instant", len(claims))

    async def _give_back_rows(self, session: AsyncSession, broadcast_id: int, ended: datetime, error: str) -> None:
        """A claim made before its instant that nobody heard: the slot is left unclaimed for the next start.

        Rows are never deleted: its rows are renumbered below the provisional attempt (the UNIQUE slot key is
        free again, and the scheduler's catch-up, which counts attempt 0, finds the slot not handled) and closed.
        """
        rows = (
            await session.scalars(
                select(BroadcastZone).where(
                    BroadcastZone.broadcast_id == broadcast_id,
                    BroadcastZone.attempt.in_((PROVISIONAL_ATTEMPT, 0)),
                    BroadcastZone.replay_of.is_(None),
                )
            )
        ).all()
        for row in rows:
            lowest = await session.scalar(
                select(func.min(BroadcastZone.attempt)).where(
                    BroadcastZone.schedule_id == row.schedule_id,
                    BroadcastZone.occurrence_at == row.occurrence_at,
                    BroadcastZone.zone_id == row.zone_id,
                )
            )
            row.attempt = min(lowest if lowest is not None else 0, PROVISIONAL_ATTEMPT) - 1
            row.replay_pending = False
            if row.state in (RUN_WAITING, RUN_PLAYING):
                row.state, row.error, row.ended_at = RUN_STOPPED_BEFORE_START, error, ended
            await session.execute(
                update(BroadcastSpeaker)
                .where(
                    BroadcastSpeaker.zone_run_id == row.id,
                    BroadcastSpeaker.state.in_((RUN_WAITING, RUN_PLAYING)),
                )
                .values(state=RUN_STOPPED_BEFORE_START, error=error, ended_at=ended)
            )
            await session.flush()
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
        # A claim still provisional was never heard (its first packets go only after the commit): given back.
        provisional = (
            await session.scalars(
                select(BroadcastZone.broadcast_id).where(BroadcastZone.attempt == PROVISIONAL_ATTEMPT).distinct()
            )
        ).all()
        for broadcast_id in provisional:
            await self._give_back_rows(session, broadcast_id, min(last_seen or now, now), GIVEN_BACK_AFTER_DEATH)
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
        if broadcast is not None and broadcast.live_part == LIVE_CALL:
            return RUN_CANCELLED, "实时喊话随通话结束，不重播"
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
        """Claim the occurrence and queue its plays; one handed over ahead of its instant is pre-rolled."""
        ahead_s = (occurrence_at - self._clock.now()).total_seconds()
        claimed = await self._claim_occurrence(
            schedule_id=schedule_id,
            notice_id=notice_id,
            occurrence_at=occurrence_at,
            zone_ids=zone_ids,
            priority=priority,
            state=RUN_WAITING,
            error=None,
            provisional=ahead_s > 0,
        )
        if claimed is None:
            return False
        provisional_id, plays = claimed
        if provisional_id is not None:
            loop = asyncio.get_running_loop()
            due_loop = self._on_loop_clock(occurrence_at)
            claim = _Claim(provisional_id, notice_id, occurrence_at, due_loop, plays=list(plays))
            for play in plays:
                play.claim = claim
            self._forget_old_claims(loop.time())
            self._claims[provisional_id] = claim
            claim.timer = loop.call_at(due_loop - COMMIT_LEAD_S, self._commit_soon, claim)
        for play in plays:
            self._submit(play)
        await self._notify()
        return True

    async def occurrence_missed(
        self, *, schedule_id: int, notice_id: int, occurrence_at: datetime, zone_ids: Sequence[int], priority: int
    ) -> bool:
        claimed = await self._claim_occurrence(
            schedule_id=schedule_id,
            notice_id=notice_id,
            occurrence_at=occurrence_at,
            zone_ids=zone_ids,
            priority=priority,
            state=RUN_MISSED,
            error="服务停机超过补播时限，未播出",
        )
        await self._notify()
        return claimed is not None

    # -- the pre-roll: claims committed before their instant, released on it ------------------

    def _on_loop_clock(self, at: datetime) -> float:
        """``at`` on the event loop's clock, from two adjacent readings of both clocks.

        A process descheduled between reading one clock and the other (a loaded machine) would shift the
        instant by that pause, early as easily as late: the pair read closest together is used.
        """
        loop = asyncio.get_running_loop()
        best: tuple[float, float] | None = None
        for _ in range(5):
            before = self._clock.now()
            mono = loop.time()
            after = self._clock.now()
            gap = (after - before).total_seconds()
            ahead = (at - before).total_seconds() - gap / 2
            if best is None or gap < best[0]:
                best = (gap, mono + ahead)
            if gap < 0.0002:
                break
        assert best is not None
        return best[1]

    def _forget_old_claims(self, now_loop: float) -> None:
        for broadcast_id, claim in list(self._claims.items()):
            if claim.due_loop < now_loop - 60 and (claim.committed or claim.given_back):
                del self._claims[broadcast_id]

    def _commit_soon(self, claim: _Claim) -> None:
        if self._tasks is not None and not self._stopping and not claim.given_back:
            self._tasks.spawn(self._commit_logged(claim), f"commit-broadcast{claim.broadcast_id}")

    async def _commit_logged(self, claim: _Claim) -> None:
        try:
            await self._commit(claim)
        except Exception:
            log.exception("committing broadcast %s before its instant failed", claim.broadcast_id)

    async def _commit(self, claim: _Claim) -> None:
        """Make a provisional claim the slot's for good (once, whoever asks first), re-checking its notice."""
        if claim.given_back:
            return
        if claim.commit is None:
            if self._tasks is None:
                raise RuntimeError("the dispatcher is not running")
            claim.commit = self._tasks.spawn(self._write_commit(claim), f"commit-broadcast{claim.broadcast_id}")
        await asyncio.shield(claim.commit)

    async def _write_commit(self, claim: _Claim) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(BroadcastZone)
                .where(BroadcastZone.broadcast_id == claim.broadcast_id, BroadcastZone.attempt == PROVISIONAL_ATTEMPT)
                .values(attempt=0)
            )
            notice = await session.get(Notice, claim.notice_id)
            why_not = None
            if notice is None or notice.state == "archived":
                why_not = "通知在播出前已归档，未播出"
            elif notice.state != "approved":
                why_not = "通知在播出前被修改、尚未重新审核，未播出"
        claim.committed = True
        for play in claim.plays:
            play.attempt = 0
        if why_not is not None:
            # Archived or edited during the pre-roll: it wins, as it would have at the claim a moment later.
            self._cancel_held(claim.broadcast_id, why_not)
            await self._notify()

    def _instant(self, claim: _Claim) -> _Instant:
        instant = self._instants.get(claim.due_at)
        if instant is None:
            instant = self._instants[claim.due_at] = _Instant(claim.due_at, claim.due_loop)
            assert self._tasks is not None
            self._tasks.spawn(self._release_at(instant), f"release-{claim.due_at.isoformat()}")
        return instant

    async def _release_at(self, instant: _Instant) -> None:
        """On the instant, open the gate of every play due then: one loop, nothing awaited in it."""
        loop = asyncio.get_running_loop()
        try:
            early = instant.due_loop - SPIN_S - loop.time()
            if early > 0:
                await asyncio.sleep(early)
            # Yielding, not an event: nothing sets one at an instant more precisely than this loop reads its clock.
            while loop.time() < instant.due_loop:  # noqa: ASYNC110
                await asyncio.sleep(0)
        finally:
            if self._instants.get(instant.due_at) is instant:
                del self._instants[instant.due_at]
        for play, gate in instant.gates:
            if not play.stop.is_set() and play.claim is not None and play.claim.committed:
                play.claim.settled = True
                gate.open(instant.due_at)

    async def _release_on_time(self, play: Play, claim: _Claim, gate: StartGate) -> bool:
        """Wait for the commit and the instant; True when the play's gate opened (its first packets went)."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, claim.due_loop - COMMIT_LEAD_S - loop.time())):
                await play.stop.wait()
        if play.stop.is_set():
            return False
        await self._commit(claim)
        if play.stop.is_set():
            return False
        if loop.time() >= claim.due_loop:
            # Prepared or committed after the instant (a slow machine): it starts now, late.
            self.late_releases += 1
            self.latest_release_s = max(self.latest_release_s, loop.time() - claim.due_loop)
            log.warning("broadcast %s released %.0f ms after its instant", claim.broadcast_id, self.latest_release_s)
            claim.settled = True
            gate.open(self._clock.now())
            return True
        instant = self._instant(claim)
        instant.gates.append((play, gate))
        opened = await gate.ready(None, play.stop)
        return opened and gate.opened

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
        provisional: bool = False,
    ) -> tuple[int | None, list[Play]] | None:
        """Insert the occurrence's as-run rows (the claim); None if they exist already.

        Returns the broadcast's id when its rows were written provisionally (a claim ahead of its instant),
        and the plays to queue.
        """
        if not zone_ids:
            # The as-run log is per zone, so there is no row to write: say it where an operator looks.
            log.warning(
                "schedule %s at %s: its targets have no broadcast zone (deleted villages or zones?); nothing played",
                schedule_id,
                occurrence_at.isoformat(),
            )
            return None, []
        now = self._clock.now()
        attempt = 0
        try:
            async with self._sessions.begin() as session:
                # Claimed already, provisionally (a pre-roll under way) or for good: never play it twice.
                taken = await session.scalar(
                    select(BroadcastZone.id)
                    .where(
                        BroadcastZone.schedule_id == schedule_id,
                        BroadcastZone.occurrence_at == occurrence_at,
                        BroadcastZone.attempt.in_((PROVISIONAL_ATTEMPT, 0)),
                    )
                    .limit(1)
                )
                if taken is not None:
                    return None
                notice = await session.get(Notice, notice_id)
                if notice is None:
                    return None, []
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
                attempt = PROVISIONAL_ATTEMPT if provisional and state == RUN_WAITING else 0
                rows = await self._zone_rows(
                    session, broadcast, zone_ids, state=state, error=error, scheduled_at=occurrence_at, attempt=attempt
                )
                if state == RUN_WAITING:
                    await self._cancel_quiet(session, rows, occurrence_at, exempt=broadcast.quiet_exempt)
                    broadcast.state = aggregate_state([row.state for row in rows])
        except IntegrityError:
            return None  # this slot was claimed before: never play it twice
        plays = [self._play_of(broadcast, row) for row in rows if row.state == RUN_WAITING]
        return (broadcast.id if attempt == PROVISIONAL_ATTEMPT and rows else None), plays

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
    def _play_of(broadcast: Broadcast, row: BroadcastZone, live: LiveHold | None = None) -> Play:
        assert broadcast.notice_id is not None or live is not None
        return Play(
            zone_run_id=row.id,
            broadcast_id=broadcast.id,
            zone_id=row.zone_id,
            notice_id=broadcast.notice_id or 0,  # 0: a live call's hold has no item
            priority=row.priority,
            attempt=row.attempt,
            schedule_id=row.schedule_id,
            occurrence_at=row.occurrence_at,
            origin=broadcast.origin,
            quiet_exempt=bool(broadcast.quiet_exempt),
            live=live,
            after_live=broadcast.live_part == LIVE_AFTER,
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
        after_live: bool = False,
    ) -> int:
        """Ask the active worker to play an approved notice in ``zone_ids`` now; returns the broadcast id.

        ``quiet_exempt``: it may start in quiet hours though not an emergency (a phone broadcast by a user with the
        emergency permission, 手机喊话); its priority is always its notice's kind's. ``after_live``: a live call's
        recording, for the speakers that could not play it live only (4G terminals, sound cards).
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
                live_part=LIVE_AFTER if after_live else None,
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
        if play.priority == EMERGENCY_PRIORITY:
            self._drop_waiting_live(slot)
        if current is None:
            self._start(slot, play)
            return
        if play.live is not None:
            # A live call never waits behind anything: it goes first, and what plays below it is cut now.
            slot.waiting.insert(0, play)
            if current.stop_reason is None and play.priority < current.priority:
                current.stop_reason = RUN_INTERRUPTED
                current.interrupted_by = play.zone_run_id
                current.stop.set()
            return
        if play.priority < current.priority:
            # Higher priority: it goes next (after any earlier item of its class); the current one stops everywhere.
            slot.waiting.append(play)
            slot.waiting.sort(key=lambda queued: queued.priority)  # stable: first come, first served within a class
            loop = asyncio.get_running_loop()
            if play.claim is not None and play.claim.due_loop > loop.time():
                # Handed over ahead of its instant: it preempts on the instant, not before (the current item plays
                # on until then, and if the zone is free by then the pre-rolled play starts on time).
                play.expiry = loop.call_at(play.claim.due_loop, self._preempt_for, slot, play)
                return
            if current.stop_reason is None:
                current.stop_reason = RUN_INTERRUPTED
                current.interrupted_by = play.zone_run_id
                if current.live is not None:
                    current.stop_error = LIVE_PREEMPTED
                    current.live.preempted.set()
                current.stop.set()
            return
        slot.waiting.append(play)
        slot.waiting.sort(key=lambda queued: queued.priority)  # stable: equal priorities keep their order
        loop = asyncio.get_running_loop()
        play.expiry = loop.call_later(self._wait_limit_s, self._expire, play)

    def _preempt_for(self, slot: _ZoneSlot, play: Play) -> None:
        current = slot.playing
        if play not in slot.waiting or current is None or play.priority >= current.priority:
            return
        if current.stop_reason is None:
            current.stop_reason = RUN_INTERRUPTED
            current.interrupted_by = play.zone_run_id
            current.stop.set()

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
        self, session: AsyncSession, play: Play, *, held: bool = False
    ) -> tuple[list[SpeakerTarget], ZoneBroadcastSettings | None]:
        """One as-run row per enabled speaker; ``held``: a pre-rolled play's, all waiting until its instant."""
        speakers = (
            await session.scalars(
                select(Speaker).where(Speaker.zone_id == play.zone_id, Speaker.enabled.is_(True)).order_by(Speaker.id)
            )
        ).all()
        if play.after_live:
            # The live call reached the others; these hear its recording now.
            speakers = [speaker for speaker in speakers if not self._reaches_live(speaker.transport)]
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
                state=RUN_WAITING if held or self._waits_for_speaker(speaker.transport) else RUN_PLAYING,
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
            if play.live is not None:
                await self._run_live(play, play.live)
                return
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
        claim = play.claim
        # Pre-rolled: its instant is still ahead (one that waited for its zone past the instant plays at once).
        gate = StartGate() if claim is not None and claim.due_loop > asyncio.get_running_loop().time() else None
        if claim is not None and gate is None and not play.stop.is_set():
            await self._commit(claim)
        if play.stop.is_set():
            # Preempted (or the service stopped) before a single speaker was asked to play it.
            await self._end_unstarted(play, [])
            return
        now = self._clock.now()
        async with self._sessions.begin() as session:
            row = await session.get(BroadcastZone, play.zone_run_id)
            assert row is not None
            broadcast = await session.get(Broadcast, play.broadcast_id)
            assert broadcast is not None
            broadcast.audio_keys = notice.audio_keys
            broadcast.duration_s = duration
            if gate is None:
                _mark_on_air(row, broadcast, now)
            targets, zone_settings = await self._targets(session, play, held=gate is not None)
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
            start_gate=gate,
        )
        if claim is None or gate is None:
            results = await self._play_everywhere(item, targets, play)
            await self._record(play, results)
            return
        # The transports prepare now (RTP: payload read, streams built) and start when the gate opens.
        job = asyncio.ensure_future(self._play_everywhere(item, targets, play))
        try:
            released = await self._release_on_time(play, claim, gate)
        except BaseException:
            play.stop.set()
            with contextlib.suppress(BaseException):
                await job
            raise
        if released:
            assert gate.opened_at is not None
            await self._mark_started(play, targets, gate.opened_at)
        results = await job
        if not released:
            await self._end_unstarted(play, targets)  # nobody heard it: what the transports said does not matter
            return
        await self._record(play, results)

    async def _mark_started(self, play: Play, targets: Sequence[SpeakerTarget], at: datetime) -> None:
        """A pre-rolled play's first packets went at ``at``: its rows say so (after the release, not before)."""
        live = [
            target.run_id
            for target in targets
            if target.run_id is not None and not self._waits_for_speaker(target.transport)
        ]
        async with self._sessions.begin() as session:
            row = await session.get(BroadcastZone, play.zone_run_id)
            broadcast = await session.get(Broadcast, play.broadcast_id)
            assert row is not None and broadcast is not None
            _mark_on_air(row, broadcast, at)
            if live:
                await session.execute(
                    update(BroadcastSpeaker)
                    .where(BroadcastSpeaker.id.in_(live), BroadcastSpeaker.state == RUN_WAITING)
                    .values(state=RUN_PLAYING, started_at=at)
                )
        await self._notify()

    async def _end_unstarted(self, play: Play, targets: Sequence[SpeakerTarget]) -> None:
        """A play stopped before any speaker started it: given back with its claim, else recorded as before."""
        claim = play.claim
        if claim is not None:
            if claim.given_back:
                return  # the stop writes the give-back of the whole claim
            await self._commit(claim)  # the slot is decided for good: its attempts count from 0
            claim.settled = True
        state = RUN_CANCELLED if play.stop_reason == RUN_CANCELLED else RUN_INTERRUPTED
        error = play.stop_error if state == RUN_CANCELLED else None
        await self._record(play, [SpeakerResult(target, state, error=error) for target in targets])

    async def _close_cancelled(self, play: Play) -> None:
        """The play's task was cancelled (the dispatcher closing in a hurry): cut, left for the next worker."""
        if play.claim is not None and (play.claim.given_back or not play.claim.committed):
            return  # given back by the stop, or still provisional: the next start gives it back
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
            (pull_jobs if transport.pull else live_jobs).append(self._gated(transport, item, group, play.stop))

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

    @staticmethod
    async def _gated(
        transport: Transport, item: PlayItem, targets: list[SpeakerTarget], stop: asyncio.Event
    ) -> list[SpeakerResult]:
        """A pre-rolled item starts on its gate: RTP prepares and releases itself, the others start when it opens.

        (SIP paging and 4G terminals are not frame-accurate anyway: a page is answered some hundred milliseconds
        after it is originated, a terminal hears of the item on its next poll; neither starts before the instant.)
        """
        gate = item.start_gate
        if gate is not None and not getattr(transport, "starts_on_gate", False):
            if not await gate.ready(None, stop):
                return [SpeakerResult(target, RUN_INTERRUPTED) for target in targets]
        return await transport.play(item, targets, stop)

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
                row.replay_pending = play.by_service and play.live is None  # a live call is never replayed
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
                and play.live is None
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
                if requeued is not None:
                    # Cut during its pre-roll (an emergency): if the zone is free again before its instant, it
                    # still starts on the instant, never before.
                    requeued.claim = play.claim
            await self._aggregate(session, play.broadcast_id)
        if requeued is not None:
            self._submit(requeued)
        await self._notify()

    # -- 手机喊话 实时: a live call holds zones ---------------------------------------------------

    async def go_live(
        self,
        *,
        zone_ids: Sequence[int],
        room: str,
        title: str,
        requested_by: int,
        quiet_exempt: bool,
        preempted: asyncio.Event,
    ) -> LiveAir:
        """Hold ``zone_ids`` for a live call whose voice is in the Asterisk conference ``room``.

        Runs in the active worker (the line's process). Refused while an emergency plays, waits or is asked
        for in a target zone (``emergency``), or while another phone broadcast, live or recorded, plays or is
        about to in one (``busy``: 该区域正在喊话). Otherwise its zone rows are written and each zone's hold
        goes first in its queue: what plays below 手机喊话's class is cut (and queued again), what comes
        later waits; an emergency takes the zone back and sets ``preempted``. The hold ends with
        :meth:`end_live`. Its speakers' rows say 播放中 as their legs answer.
        """
        if self._tasks is None or self._stopping:
            return LiveAir("failed", detail="dispatcher not running in this process")
        if self._live_rooms is None:
            return LiveAir("failed", detail="no live rooms: the service runs without Asterisk")
        wanted = sorted(set(zone_ids))
        verdict = self._held_verdict(wanted) or await self._asked_emergency(wanted)
        if verdict is not None:
            return LiveAir(verdict)
        hold = LiveHold(room=room, preempted=preempted)
        now = self._clock.now()
        async with self._sessions.begin() as session:
            broadcast = Broadcast(
                notice_id=None,
                origin="manual",
                kind=PHONECAST_KIND,
                priority=PHONECAST_PRIORITY,
                title=title,
                requested_by=requested_by,
                zone_ids=wanted,
                quiet_exempt=quiet_exempt,
                live_part=LIVE_CALL,
                state=RUN_WAITING,
                created_at=now,
            )
            session.add(broadcast)
            await session.flush()
            rows = await self._zone_rows(session, broadcast, wanted, state=RUN_WAITING, error=None, scheduled_at=now)
            if not rows:
                broadcast.state, broadcast.error, broadcast.ended_at = RUN_FAILED, "没有可播出的分区", now
            plays = [self._play_of(broadcast, row, hold) for row in rows]
            broadcast_id = broadcast.id
        if not plays:
            return LiveAir("failed", broadcast_id, "no zones")
        # Checked again after the awaits above: nothing may have slipped in between on this loop.
        verdict = self._held_verdict(wanted)
        if verdict is not None:
            for play in plays:
                await self._close_play(play, RUN_CANCELLED, "该区域正在喊话" if verdict == "busy" else LIVE_PREEMPTED)
            return LiveAir(verdict, broadcast_id)
        for play in plays:
            self._submit(play)
        await self._notify()
        return LiveAir("on_air", broadcast_id)

    def _held_verdict(self, zone_ids: Sequence[int]) -> str | None:
        """``emergency`` / ``busy`` when what this worker holds in a zone forbids a live call there, else None."""
        busy = False
        for zone_id in zone_ids:
            slot = self._slots.get(zone_id)
            if slot is None:
                continue
            held = [play for play in (slot.playing, *slot.waiting) if play is not None and play.stop_reason is None]
            if any(play.priority == EMERGENCY_PRIORITY for play in held):
                return "emergency"
            # Another live call, or a recorded phone broadcast playing (or next): 该区域正在喊话.
            if slot.playing is not None and slot.playing.priority <= PHONECAST_PRIORITY and slot.playing in held:
                busy = True
            if any(play.live is not None for play in slot.waiting):
                busy = True
        return "busy" if busy else None

    async def _asked_emergency(self, zone_ids: Sequence[int]) -> str | None:
        """``emergency`` when an emergency for one of the zones was asked and not yet taken (any process)."""
        async with self._sessions() as session:
            asked = (
                await session.scalars(
                    select(Broadcast.zone_ids).where(
                        Broadcast.state == RUN_UNPROCESSED, Broadcast.priority == EMERGENCY_PRIORITY
                    )
                )
            ).all()
        wanted = set(zone_ids)
        return "emergency" if any(wanted & set(ids or ()) for ids in asked) else None

    async def end_live(self, broadcast_id: int) -> None:
        """The call ended: its holds stop (a hold still waiting is closed unstarted); returns once all are recorded."""
        running: list[asyncio.Task[Any]] = []
        for slot in self._slots.values():
            for play in [play for play in slot.waiting if play.broadcast_id == broadcast_id and play.live]:
                slot.waiting.remove(play)
                await self._close_play(play, RUN_CANCELLED, "喊话已结束，本分区未接入")
            playing = slot.playing
            if playing is not None and playing.broadcast_id == broadcast_id and playing.live is not None:
                playing.stop.set()
                if playing.task is not None:
                    running.append(playing.task)
        if running:
            await asyncio.wait(running)
        await self._notify()

    def _drop_waiting_live(self, slot: _ZoneSlot) -> None:
        """An emergency arrived in a zone a live call was about to take: the call never starts over it."""
        for play in [play for play in slot.waiting if play.live is not None]:
            slot.waiting.remove(play)
            assert play.live is not None
            play.live.preempted.set()
            if self._tasks is not None:
                self._tasks.spawn(
                    self._close_play(play, RUN_PREEMPTED_BEFORE_START, LIVE_PREEMPTED), f"live-run{play.zone_run_id}"
                )

    def _reaches_live(self, transport_name: str) -> bool:
        """Whether a speaker of this transport hears a live call (SIP paging, RTP, when enabled here)."""
        return transport_name in LIVE_TRANSPORTS and transport_name in self._transports

    async def _run_live(self, play: Play, hold: LiveHold) -> None:
        assert self._live_rooms is not None
        if play.stop.is_set():
            await self._record(play, [])
            return
        now = self._clock.now()
        async with self._sessions.begin() as session:
            row = await session.get(BroadcastZone, play.zone_run_id)
            broadcast = await session.get(Broadcast, play.broadcast_id)
            assert row is not None and broadcast is not None
            _mark_on_air(row, broadcast, now)
            targets, legs = await self._live_targets(session, play)
        await self._notify()
        if not targets:
            await self._record(play, [])
            return
        by_speaker = {target.speaker_id: target for target in targets}
        reports: set[asyncio.Task[None]] = set()

        def on_leg(leg: LiveLeg, error: str | None) -> None:
            # Each leg's answer is when its speakers start hearing the caller: told to the as-run log at once.
            at = self._clock.now()
            for speaker_id in leg.speaker_ids:
                target = by_speaker.get(speaker_id)
                if target is not None:
                    reports.add(asyncio.ensure_future(self._live_leg_known(target, at, error)))

        try:
            raw = await self._live_rooms.connect(hold.room, legs, play.stop, on_leg=on_leg)
        except Exception as exc:
            log.exception("live room %s failed in zone %s", hold.room, play.zone_id)
            raw = [
                SpeakerResult(target, RUN_FAILED, error=f"实时喊话接入失败：{type(exc).__name__}") for target in targets
            ]
        for report in await asyncio.gather(*reports, return_exceptions=True):
            if isinstance(report, BaseException):
                log.error("live room %s: a leg could not be recorded: %r", hold.room, report)
        await self._record(play, self._live_results(play, targets, raw))

    async def _live_leg_known(self, target: SpeakerTarget, at: datetime, error: str | None) -> None:
        if error is None:
            await self._speaker_answered(target, at)
            return
        if target.run_id is None:
            return
        async with self._sessions.begin() as session:
            run = await session.get(BroadcastSpeaker, target.run_id)
            if run is None or run.state != RUN_WAITING:
                return
            run.state, run.ended_at, run.error = RUN_FAILED, at, error
        await self._notify()

    async def _live_targets(self, session: AsyncSession, play: Play) -> tuple[list[SpeakerTarget], list[LiveLeg]]:
        """The zone's speakers a live call reaches (rows 等待 until their leg answers), and its legs."""
        speakers = [
            speaker
            for speaker in (
                await session.scalars(
                    select(Speaker)
                    .where(Speaker.zone_id == play.zone_id, Speaker.enabled.is_(True))
                    .order_by(Speaker.id)
                )
            ).all()
            if self._reaches_live(speaker.transport)
        ]
        settings = await session.get(ZoneBroadcastSettings, play.zone_id)
        targets: list[SpeakerTarget] = []
        legs: list[LiveLeg] = []
        multicast: list[int] = []
        for speaker in speakers:
            run = BroadcastSpeaker(
                zone_run_id=play.zone_run_id,
                speaker_id=speaker.id,
                transport=speaker.transport,
                address=speaker.address,
                state=RUN_WAITING,
                acknowledged=False,
            )
            session.add(run)
            await session.flush()
            targets.append(SpeakerTarget(speaker.transport, speaker.address, speaker.id, speaker.name, run.id))
            if speaker.transport == "sip":
                address = speaker.address if "/" in speaker.address else f"PJSIP/{speaker.address}"
                legs.append(LiveLeg("sip", (speaker.id,), address))
            elif settings is not None and settings.rtp_group:
                multicast.append(speaker.id)  # the zone's group serves every RTP speaker of it, as for items
            else:
                try:
                    host, port = parse_destination(speaker.address, default_port=self._default_port)
                except CunxiangError:
                    legs.append(LiveLeg("unicast", (speaker.id,), speaker.address))  # the leg reports it failed
                    continue
                legs.append(LiveLeg("unicast", (speaker.id,), f"{host}:{port}"))
        if multicast and settings is not None and settings.rtp_group:
            group, port = parse_destination(settings.rtp_group, default_port=self._default_port)
            legs.append(
                LiveLeg(
                    "multicast",
                    tuple(multicast),
                    f"{group}:{port}",
                    ttl=settings.rtp_ttl if settings.rtp_ttl is not None else self._default_ttl,
                    interface=self._multicast_interface or None,
                    # A sender that also listens on the group (a test, a monitoring PC) hears it, as for items.
                    loop=True,
                )
            )
        return targets, legs

    def _live_results(self, play: Play, targets: list[SpeakerTarget], raw: list[SpeakerResult]) -> list[SpeakerResult]:
        """The rooms' results, per speaker, as the as-run log tells them: heard live for as long as its leg was in."""
        by_speaker = {result.target.speaker_id: result for result in raw}
        results = []
        for target in targets:
            result = by_speaker.get(target.speaker_id)
            if result is None:
                results.append(SpeakerResult(target, RUN_FAILED, error="未接入实时喊话"))
                continue
            if result.started_at is None:
                results.append(replace(result, target=target, state=RUN_FAILED, error=result.error or "未接入实时喊话"))
                continue
            ended = result.ended_at or self._clock.now()
            played = round(max(0.0, (ended - result.started_at).total_seconds()), 3)
            cut = play.stop_reason == RUN_INTERRUPTED
            why = STOPPED_BY_SERVICE if play.by_service else play.stop_error or LIVE_PREEMPTED
            results.append(
                replace(
                    result,
                    target=target,
                    state=RUN_INTERRUPTED if cut else RUN_SUCCESS,
                    ended_at=ended,
                    played_s=played,
                    error=why if cut else None,
                )
            )
        return results

    # -- health -------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        if not self.running:
            return {"status": "standby", "detail": "runs only in the active worker"}
        playing = sum(1 for slot in self._slots.values() if slot.playing is not None)
        waiting = sum(len(slot.waiting) for slot in self._slots.values())
        return {
            "status": "ok",
            "zones_playing": playing,
            "waiting": waiting,
            "rtp_streams": self._rtp.active,
            "late_releases": self.late_releases,
        }


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
