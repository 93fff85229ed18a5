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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
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
    RUN_SKIPPED,
    RUN_SUCCESS,
    RUN_UNPROCESSED,
    RUN_WAITING,
    Broadcast,
    BroadcastSpeaker,
    BroadcastZone,
    Notice,
    Speaker,
    Township,
    Village,
    Zone,
    ZoneBroadcastSettings,
)

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
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: int | None = None
    stop_error: str | None = None
    interrupted_by: int | None = None
    task: asyncio.Task[Any] | None = None
    expiry: asyncio.TimerHandle | None = None


@dataclass
class _ZoneSlot:
    playing: Play | None = None
    waiting: list[Play] = field(default_factory=list)


def aggregate_state(states: Sequence[int]) -> int:
    """A broadcast's state from its zones' states."""
    if not states:
        return RUN_FAILED
    if any(state == RUN_PLAYING for state in states):
        return RUN_PLAYING
    if any(state in (RUN_UNPROCESSED, RUN_WAITING) for state in states):
        return RUN_WAITING
    if any(state == RUN_SUCCESS for state in states):
        return RUN_SUCCESS
    for only in (RUN_MISSED, RUN_SKIPPED, RUN_CANCELLED, RUN_INTERRUPTED):
        if all(state == only for state in states):
            return only
    return RUN_INTERRUPTED if RUN_INTERRUPTED in states else RUN_FAILED


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
        await self._close_leftovers()
        self._stopping = False
        self._tasks = BackgroundTasks("dispatcher")
        self._pending_task = self._tasks.spawn(self._pending_loop(), "pending-requests")

    async def stop(self) -> None:
        if self._tasks is None:
            return
        self._stopping = True
        self._pending.set()
        if self._pending_task is not None:
            await asyncio.wait([self._pending_task], timeout=10)
        for slot in self._slots.values():
            for play in slot.waiting:
                if play.expiry is not None:
                    play.expiry.cancel()
            if slot.playing is not None:
                slot.playing.stop_reason = RUN_INTERRUPTED
                slot.playing.stop_error = "服务停止，播出中断"
                slot.playing.stop.set()
        playing = [slot.playing.task for slot in self._slots.values() if slot.playing and slot.playing.task]
        if playing:
            await asyncio.wait(playing, timeout=10)
        tasks, self._tasks = self._tasks, None
        await tasks.close()
        await self._rtp.stop()
        self._slots.clear()

    async def _close_leftovers(self) -> None:
        """Rows a dead process left waiting or playing are closed as interrupted; they are never replayed."""
        now = self._clock.now()
        async with self._sessions.begin() as session:
            for model in (BroadcastZone, BroadcastSpeaker):
                await session.execute(
                    update(model)
                    .where(model.state.in_((RUN_WAITING, RUN_PLAYING)))
                    .values(state=RUN_INTERRUPTED, ended_at=now, error="服务重启，播出中断")
                )
            await session.execute(
                update(Broadcast)
                .where(Broadcast.state.in_((RUN_WAITING, RUN_PLAYING)))
                .values(state=RUN_INTERRUPTED, ended_at=now, error="服务重启，播出中断")
            )

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
                    await self._cancel_quiet(session, rows, occurrence_at)
                    broadcast.state = aggregate_state([row.state for row in rows])
        except IntegrityError:
            return None  # this slot was claimed before: never play it twice
        return [self._play_of(broadcast, row) for row in rows if row.state == RUN_WAITING]

    async def _cancel_quiet(self, session: AsyncSession, rows: Sequence[BroadcastZone], at: datetime) -> None:
        """Quiet hours are re-checked at air time: a township may have changed them since the schedule was made."""
        clock = at.astimezone(self._zone).time()
        for row in rows:
            if row.priority == EMERGENCY_PRIORITY:
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
        )

    # -- requests from any process ---------------------------------------------------------------

    async def request(self, *, notice_id: int, zone_ids: Sequence[int], origin: str, requested_by: int | None) -> int:
        """Ask the active worker to play an approved notice in ``zone_ids`` now; returns the broadcast id."""
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
                state=RUN_UNPROCESSED,
                created_at=self._clock.now(),
            )
            session.add(broadcast)
            await session.flush()
            broadcast_id = broadcast.id
        self._pending.set()
        return broadcast_id

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
                    await self._cancel_quiet(session, rows, now)
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
        if slot.waiting and self._tasks is not None:
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
                state=RUN_WAITING,
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
        if play.priority == EMERGENCY_PRIORITY:
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
            files, duration = await self._notices.audio_files(notice)
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
            )
            results = await self._play_everywhere(item, targets, play)
            await self._record(play, results)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._close_play(play, RUN_INTERRUPTED, "服务停止，播出中断"))
            raise
        except CunxiangError as exc:
            log.warning("play %s in zone %s failed: %s", play.zone_run_id, play.zone_id, exc)
            await self._close_play(play, RUN_FAILED, exc.message)
        except Exception as exc:
            log.exception("play %s in zone %s failed", play.zone_run_id, play.zone_id)
            await self._close_play(play, RUN_FAILED, f"内部错误：{type(exc).__name__}")

    async def _play_everywhere(self, item: PlayItem, targets: list[SpeakerTarget], play: Play) -> list[SpeakerResult]:
        by_transport: dict[str, list[SpeakerTarget]] = {}
        for target in targets:
            by_transport.setdefault(target.transport, []).append(target)
        results: list[SpeakerResult] = []
        jobs = []
        for transport_name, group in by_transport.items():
            transport = self._transports.get(transport_name)
            if transport is None:
                results += [
                    SpeakerResult(target, RUN_FAILED, error=f"未启用传输方式 {transport_name}") for target in group
                ]
                continue
            jobs.append(transport.play(item, group, play.stop))
        for outcome in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(outcome, BaseException):
                if isinstance(outcome, asyncio.CancelledError):
                    raise outcome
                log.error("a transport failed in play %s", play.zone_run_id, exc_info=outcome)
                continue
            results += outcome
        return results

    async def _record(self, play: Play, results: list[SpeakerResult]) -> None:
        now = self._clock.now()
        requeued: Play | None = None
        async with self._sessions.begin() as session:
            for result in results:
                if result.target.run_id is None:
                    continue
                run = await session.get(BroadcastSpeaker, result.target.run_id)
                if run is None:
                    continue
                run.state = result.state
                run.started_at = result.started_at or run.started_at
                run.ended_at = result.ended_at or now
                run.error = result.error
                run.detail = result.detail or None
            row = await session.get(BroadcastZone, play.zone_run_id)
            assert row is not None
            row.ended_at = now
            if play.stop_reason is not None:
                row.state, row.error = play.stop_reason, play.stop_error or "被更高优先级的广播插播中断"
                row.interrupted_by = play.interrupted_by
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
