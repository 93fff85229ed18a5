"""HTTP pull for 4G loudspeakers: the terminal side of the protocol, and its transport.

A terminal holds a token (shown once when the speaker is added; ``areas`` keeps
only its SHA-256). Every ``poll_interval_s`` it asks what to play now; the
answer names one item (or none) by ``play_id``. The terminal fetches the MP3,
reports ``started`` and ``finished`` (or ``failed``), and stops whatever it
plays when the answer's ``play_id`` changes — so an emergency that preempts a
disclosure reaches it on its next poll. Details for vendors: docs/terminal-protocol.md.

The state lives in the database (``broadcast_speakers``), because a terminal's
request may reach any web process while the dispatcher runs in the active
worker. The worker's :class:`HttpPullTransport` waits for the reports: woken at
once when they arrive in its own process (:class:`TerminalEvents`), and
re-reading the rows at its deadlines otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from areas.addresses import hash_token
from broadcast.transports import PlayItem, SpeakerResult, SpeakerTarget, seconds_between
from common.clock import Clock
from common.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from storage.models import (
    EMERGENCY_PRIORITY,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_PLAYING,
    RUN_SUCCESS,
    RUN_WAITING,
    Broadcast,
    BroadcastSpeaker,
    BroadcastZone,
    Notice,
    Speaker,
)
from tts.audio import Profile
from tts.cache import AudioCache

log = logging.getLogger(__name__)

REPORT_EVENTS = ("started", "finished", "failed")


class TerminalEvents:
    """In-process wake-ups: a report handled here wakes the transport waiting for that speaker row."""

    def __init__(self) -> None:
        self._events: dict[int, asyncio.Event] = {}

    def event(self, run_id: int) -> asyncio.Event:
        return self._events.setdefault(run_id, asyncio.Event())

    def fire(self, run_id: int) -> None:
        event = self._events.get(run_id)
        if event is not None:
            event.set()

    def forget(self, run_id: int) -> None:
        self._events.pop(run_id, None)


@dataclass(frozen=True)
class NowPlaying:
    play_id: int
    title: str
    kind: str
    priority: int
    emergency: bool
    duration_s: float
    started_at: datetime | None
    audio_url: str

    def as_json(self) -> dict[str, Any]:
        return {
            "play_id": self.play_id,
            "title": self.title,
            "kind": self.kind,
            "priority": self.priority,
            "emergency": self.emergency,
            "duration_s": self.duration_s,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "audio_url": self.audio_url,
        }


class TerminalService:
    """What the /api/v1/terminal/* handlers call; every method authenticates the token first."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        cache: AudioCache,
        events: TerminalEvents,
        *,
        poll_interval_s: float = 5.0,
        heartbeat_timeout_s: float = 60.0,
        seen_write_interval_s: float | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._cache = cache
        self._events = events
        self.poll_interval_s = poll_interval_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        # Every poll is a heartbeat, but writing last_seen_at on each one would be a database
        # write per terminal every few seconds. It is written when it is this much out of date
        # (a quarter of the offline timeout), which is all the 在线/离线 display needs.
        interval = heartbeat_timeout_s / 4 if seen_write_interval_s is None else seen_write_interval_s
        self._seen_write_interval = timedelta(seconds=interval)

    async def authenticate(self, session: AsyncSession, authorization: str | None) -> Speaker:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("缺少终端令牌（Authorization: Bearer 令牌）", code="terminal.token_missing")
        digest = hash_token(token.strip())
        speaker = await session.scalar(select(Speaker).where(Speaker.transport == "http", Speaker.token_hash == digest))
        # compare_digest on the stored hash too: the lookup above is by equality, this keeps timing flat.
        if speaker is None or not hmac.compare_digest(speaker.token_hash or "", digest):
            raise Unauthenticated("终端令牌不正确", code="terminal.bad_token")
        if not speaker.enabled:
            raise Unauthenticated("终端已停用", code="terminal.disabled")
        now = self._clock.now()
        last = speaker.last_seen_at
        if last is None or not timedelta(0) <= now - last < self._seen_write_interval:
            speaker.last_seen_at = now
        return speaker

    async def _current(self, session: AsyncSession, speaker: Speaker) -> tuple[BroadcastSpeaker, BroadcastZone] | None:
        row = (
            await session.execute(
                select(BroadcastSpeaker, BroadcastZone)
                .join(BroadcastZone, BroadcastSpeaker.zone_run_id == BroadcastZone.id)
                .where(BroadcastSpeaker.speaker_id == speaker.id)
                .where(BroadcastSpeaker.state.in_((RUN_WAITING, RUN_PLAYING)))
                .where(BroadcastZone.state == RUN_PLAYING)
                .order_by(BroadcastZone.priority, BroadcastSpeaker.id.desc())
                .limit(1)
            )
        ).first()
        return (row[0], row[1]) if row else None

    async def now(self, authorization: str | None) -> dict[str, Any]:
        async with self._sessions.begin() as session:
            speaker = await self.authenticate(session, authorization)
            current = await self._current(session, speaker)
            play: NowPlaying | None = None
            if current is not None:
                run, zone_run = current
                broadcast = await session.get(Broadcast, zone_run.broadcast_id)
                assert broadcast is not None
                if not run.acknowledged:
                    run.acknowledged = True
                play = NowPlaying(
                    play_id=run.id,
                    title=broadcast.title,
                    kind=broadcast.kind,
                    priority=broadcast.priority,
                    emergency=broadcast.priority == EMERGENCY_PRIORITY,
                    duration_s=float(broadcast.duration_s or 0),
                    started_at=zone_run.started_at,
                    audio_url=f"/api/v1/terminal/audio/{run.id}",
                )
        return {
            "terminal": speaker.address,
            "server_time": self._clock.now().isoformat(),
            "poll_interval_s": self.poll_interval_s,
            "play": play.as_json() if play else None,
        }

    async def audio(self, authorization: str | None, play_id: int) -> Path:
        async with self._sessions.begin() as session:
            speaker = await self.authenticate(session, authorization)
            run = await session.get(BroadcastSpeaker, play_id)
            if run is None or run.speaker_id != speaker.id:
                raise NotFound("没有这条播出")
            zone_run = await session.get(BroadcastZone, run.zone_run_id)
            assert zone_run is not None
            notice = await session.get(Notice, zone_run.notice_id) if zone_run.notice_id else None
        key = (notice.audio_keys or {}).get(Profile.MP3.value) if notice else None
        entry = self._cache.get(key) if key else None
        if entry is None:
            raise NotFound("音频不存在或已过期")
        return entry.path

    async def report(self, authorization: str | None, play_id: int, event: str, error: str | None) -> dict[str, Any]:
        if event not in REPORT_EVENTS:
            raise InvalidInput("event 只能是 started、finished 或 failed", fields={"event": "取值不对"})
        now = self._clock.now()
        async with self._sessions.begin() as session:
            speaker = await self.authenticate(session, authorization)
            run = await session.get(BroadcastSpeaker, play_id)
            if run is None or run.speaker_id != speaker.id:
                raise NotFound("没有这条播出")
            if run.state not in (RUN_WAITING, RUN_PLAYING):
                raise Conflict("这条播出已经结束（可能被更高优先级的广播中断）", code="terminal.play_over")
            if event == "started":
                run.state, run.started_at, run.acknowledged = RUN_PLAYING, now, True
            elif event == "finished":
                run.state, run.ended_at = RUN_SUCCESS, now
                run.started_at = run.started_at or now
            else:
                run.state, run.ended_at, run.error = RUN_FAILED, now, (error or "终端报告播放失败")[:500]
        self._events.fire(play_id)
        return {"ok": True}

    async def heartbeat(self, authorization: str | None, status: dict[str, Any]) -> dict[str, Any]:
        async with self._sessions.begin() as session:
            speaker = await self.authenticate(session, authorization)
        if status:  # not stored (no column for it): kept in the log for whoever debugs a terminal
            log.debug("terminal %s reports %s", speaker.address, status)
        return {"ok": True, "poll_interval_s": self.poll_interval_s, "terminal": speaker.address}

    def online(self, speaker: Speaker) -> bool:
        if speaker.last_seen_at is None:
            return False
        return self._clock.now() - speaker.last_seen_at <= timedelta(seconds=self.heartbeat_timeout_s)


class HttpPullTransport:
    """The dispatcher's side: offer the item, then wait for each terminal's start and finish reports.

    A terminal is a pull speaker: it learns of the item on its next poll, downloads it, starts, so it
    runs behind the zone's live speakers (RTP, SIP, sound card) by up to a poll interval plus the
    download. The zone waits for a terminal that has started (so the lag never grows from item to
    item), but never for one that has not: once the live speakers are done (``PlayItem.live_done``)
    and the terminal has had two poll intervals to start, it is recorded as failed for this item and
    the zone goes on. Without live speakers in the zone it has ``start_timeout_s`` + one poll.
    """

    name = "http"
    pull = True
    answers_first = False

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        events: TerminalEvents,
        *,
        poll_interval_s: float = 5.0,
        start_timeout_s: float = 30.0,
        finish_grace_s: float = 30.0,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._events = events
        self._poll = poll_interval_s
        self._start_timeout = start_timeout_s
        self._finish_grace = finish_grace_s

    async def play(self, item: PlayItem, targets: Sequence[SpeakerTarget], stop: asyncio.Event) -> list[SpeakerResult]:
        return list(await asyncio.gather(*(self._one(item, target, stop) for target in targets)))

    async def _row(self, run_id: int) -> BroadcastSpeaker | None:
        async with self._sessions() as session:
            return await session.get(BroadcastSpeaker, run_id)

    async def _wait(
        self,
        run_id: int,
        stop: asyncio.Event,
        # A deadline, not a cancel scope: running out is an answer ("timeout"), and never cancels a database read.
        timeout: float,  # noqa: ASYNC109
        done: tuple[int, ...],
        *,
        give_up: asyncio.Event | None = None,
        give_up_after: float = 0.0,
    ) -> str:
        """Wait until the row reaches one of ``done`` or ``stop`` is set ("done"), or "timeout".

        With ``give_up``: "given_up" once that event is set and ``give_up_after`` seconds have passed.
        """
        loop = asyncio.get_running_loop()
        began = loop.time()
        deadline = began + timeout
        event = self._events.event(run_id)
        while True:
            row = await self._row(run_id)
            if row is None or row.state in done or stop.is_set():
                return "done"
            now = loop.time()
            if now >= deadline:
                return "timeout"
            events = [stop, event]
            limit = min(deadline - now, 2 * self._poll)  # re-read: the report may land in another process
            if give_up is not None:
                if give_up.is_set():
                    if now - began >= give_up_after:
                        return "given_up"
                    limit = min(limit, give_up_after - (now - began))
                else:
                    events.append(give_up)
            event.clear()
            futures = [asyncio.ensure_future(waited.wait()) for waited in events]
            try:
                await asyncio.wait(futures, timeout=limit, return_when="FIRST_COMPLETED")
            finally:
                for future in futures:
                    future.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await future

    async def _one(self, item: PlayItem, target: SpeakerTarget, stop: asyncio.Event) -> SpeakerResult:
        assert target.run_id is not None, "HTTP terminals are reached through the as-run log"
        run_id = target.run_id
        try:
            started = await self._wait(
                run_id,
                stop,
                self._start_timeout + self._poll,
                (RUN_PLAYING, RUN_SUCCESS, RUN_FAILED),
                give_up=item.live_done,
                give_up_after=2 * self._poll,
            )
            if stop.is_set():
                return await self._finish(target, RUN_INTERRUPTED, None)
            if started == "timeout":
                return await self._finish(target, RUN_FAILED, "终端未在规定时间内取走并开始播放（可能离线）")
            if started == "given_up":
                return await self._finish(
                    target, RUN_FAILED, "分区的其他喇叭已播完，终端仍未取走并开始播放（可能离线），分区不再等它"
                )
            finished = await self._wait(run_id, stop, item.duration_s + self._finish_grace, (RUN_SUCCESS, RUN_FAILED))
            if stop.is_set():
                return await self._finish(target, RUN_INTERRUPTED, None)
            if finished != "done":
                return await self._finish(target, RUN_FAILED, "终端未报告播放完成")
            return await self._finish(target, None, None)
        finally:
            self._events.forget(run_id)

    async def _finish(self, target: SpeakerTarget, state: int | None, error: str | None) -> SpeakerResult:
        row = await self._row(target.run_id or 0)
        final = state if state is not None else (row.state if row is not None else RUN_FAILED)
        started = row.started_at if row else None
        ended = row.ended_at if row and row.ended_at else self._clock.now()
        # What the terminal played, from its own reports: nothing if it never reported a start.
        played = seconds_between(started, ended) if started is not None else 0.0
        return SpeakerResult(
            target,
            final,
            started,
            ended,
            error if error is not None else (row.error if row else None),
            {"acknowledged": bool(row and row.acknowledged)},
            None,
            played,
        )
