"""Transports to loudspeakers, each behind one interface, each reporting per speaker.

    Transport.play(item, targets, stop) -> [SpeakerResult, …]

``play`` returns when the item has played on every target, or when ``stop`` is
set (a higher priority preempts): then it stops the item cleanly on every
speaker it reaches and reports them as interrupted. A speaker that does not
answer is a failed result for that speaker alone; it never raises past here
and never stops the others.

* :class:`RtpTransport` — PCMU over RTP through the one :class:`RtpSender` loop;
* :class:`SipPagingTransport` — Asterisk ``Page()`` through a :class:`PageOriginator`
  (the hotline's AMI link implements it; ``server.py`` passes it in);
* :class:`SinkTransport` — a file, or a sound card through an ALSA player;
* HTTP pull for 4G terminals lives in :mod:`broadcast.terminals` (it needs the database).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from broadcast.rtp import RtpSender, StreamResult, is_multicast, parse_destination
from common.clock import Clock
from common.errors import CunxiangError
from storage.models import RUN_FAILED, RUN_INTERRUPTED, RUN_STATE_LABELS, RUN_SUCCESS
from tts.audio import Profile, atomic_copy
from tts.process import run_program

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeakerTarget:
    """One loudspeaker to reach; ``run_id`` is its as-run row (None for a speaker test outside the log)."""

    transport: str
    address: str
    speaker_id: int | None = None
    name: str = ""
    run_id: int | None = None


class StartGate:
    """The instant a pre-rolled item starts on every speaker of its play.

    A transport that can start on a frame (RTP) prepares everything first and hands
    :meth:`ready` a ``release`` callback; the others pass None and just wait. The
    dispatcher calls :meth:`open` at the due instant: every callback runs there, in one
    loop with nothing awaited between them, then the waiting transports go on. A party
    that becomes ready after the gate opened (its preparation was slow) starts at once.
    """

    def __init__(self) -> None:
        self._releases: list[Callable[[], None]] = []
        self._opened = asyncio.Event()
        self.opened_at: datetime | None = None
        # Loop time the gate opened (for the dispatcher's and benchmark's measurements).
        self.opened_loop: float | None = None

    @property
    def opened(self) -> bool:
        return self._opened.is_set()

    def open(self, at: datetime) -> None:
        """Release every prepared party now (synchronously), then wake the waiting ones."""
        if self.opened:
            return
        self.opened_loop = asyncio.get_running_loop().time()
        self.opened_at = at
        releases, self._releases = self._releases, []
        for release in releases:
            release()
        self._opened.set()

    async def ready(self, release: Callable[[], None] | None, stop: asyncio.Event) -> bool:
        """Wait for the gate (``release`` runs at its opening); False when ``stop`` came first (nothing released)."""
        if self.opened:
            if release is not None:
                release()
            return True
        if release is not None:
            self._releases.append(release)
        stopped = await _until(stop, asyncio.ensure_future(self._opened.wait()))
        if stopped and not self.opened:
            if release is not None and release in self._releases:
                self._releases.remove(release)
            return False
        return True


@dataclass(frozen=True)
class PlayItem:
    """A produced broadcast item: a file per profile, its length, and where its RTP goes."""

    title: str
    files: Mapping[Profile, Path]
    duration_s: float
    priority: int
    zone_run_id: int | None = None
    # A zone's multicast group: every RTP speaker of the zone listens to it (one stream instead of many).
    rtp_group: tuple[str, int] | None = None
    rtp_ttl: int | None = None
    # Set by the dispatcher when the zone's live speakers (RTP, SIP, sound card) have finished the item;
    # a pull terminal that has not started by then stops holding the zone (None: the zone has no live speaker).
    live_done: asyncio.Event | None = field(default=None, compare=False)
    # Set by the dispatcher: a transport whose speakers answer before they play (SIP paging) reports each answer
    # here, so that speaker's as-run row says 播放中 from when it really plays, not from when it was dialled.
    on_answered: Callable[[SpeakerTarget, datetime], Awaitable[None]] | None = field(default=None, compare=False)
    # Set by the dispatcher for a pre-rolled item: nothing is heard before it opens (RTP prepares its streams and
    # starts them on its opening; the other transports start playing when it opens).
    start_gate: StartGate | None = field(default=None, compare=False)


@dataclass
class SpeakerResult:
    target: SpeakerTarget
    state: int
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    # What the speaker was given of the item: RTP packets sent (RTP only), seconds played (None: unknown).
    packets_sent: int | None = None
    played_s: float | None = None

    @property
    def heard(self) -> bool:
        """Whether any of the item reached this speaker (a result with nothing played was never heard)."""
        return self.state == RUN_SUCCESS or bool(self.packets_sent) or bool(self.played_s)

    def as_json(self) -> dict[str, Any]:
        return {
            "speaker_id": self.target.speaker_id,
            "name": self.target.name,
            "transport": self.target.transport,
            "address": self.target.address,
            "state": self.state,
            "state_label": RUN_STATE_LABELS[self.state],
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "error": self.error,
            "packets_sent": self.packets_sent,
            "played_s": self.played_s,
            "detail": self.detail,
        }


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max(0.0, (end - start).total_seconds()), 3)


class Transport(Protocol):
    name: str
    # A pull transport (4G terminals) waits for the speaker to ask; the others (live) play when told.
    pull: bool
    # A live transport whose speakers must answer first (SIP paging): each one's row waits until it answers.
    answers_first: bool

    async def play(self, item: PlayItem, targets: Sequence[SpeakerTarget], stop: asyncio.Event) -> list[SpeakerResult]:
        """Play ``item`` on ``targets`` until it ends or ``stop`` is set; one result per target."""
        ...


async def _until(stop: asyncio.Event, awaitable: asyncio.Future[Any] | asyncio.Task[Any]) -> bool:
    """Wait for ``awaitable`` or ``stop``; True when stopped first."""
    stopper = asyncio.ensure_future(stop.wait())
    try:
        done, _pending = await asyncio.wait({stopper, awaitable}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopper
    return awaitable not in done


# -- RTP ----------------------------------------------------------------------------------------


class RtpTransport:
    name = "rtp"
    pull = False
    answers_first = False
    # Prepares its streams before a pre-rolled item's gate opens and sends every first packet on its opening.
    starts_on_gate = True

    def __init__(self, sender: RtpSender, clock: Clock, *, default_port: int = 5004, default_ttl: int = 8) -> None:
        self._sender = sender
        self._clock = clock
        self._default_port = default_port
        self._default_ttl = default_ttl

    async def play(self, item: PlayItem, targets: Sequence[SpeakerTarget], stop: asyncio.Event) -> list[SpeakerResult]:
        results: dict[int, SpeakerResult] = {}
        # destination → the targets it serves (a zone's group serves all; else each its own address)
        by_destination: dict[tuple[str, int], list[int]] = {}
        for index, target in enumerate(targets):
            try:
                destination = item.rtp_group or parse_destination(target.address, default_port=self._default_port)
            except CunxiangError as exc:
                results[index] = SpeakerResult(target, RUN_FAILED, error=exc.message)
                continue
            by_destination.setdefault(destination, []).append(index)
        if not by_destination:
            return [results[index] for index in range(len(targets))]
        payload = await asyncio.to_thread(item.files[Profile.RTP].read_bytes)
        ttl = item.rtp_ttl if item.rtp_ttl is not None else self._default_ttl
        gate = item.start_gate
        if gate is None:
            started = self._clock.now()
            streams = self._sender.play(payload, list(by_destination), ttl=ttl)
        else:
            streams = self._sender.prepare(payload, list(by_destination), ttl=ttl)

            def release() -> None:
                if not stop.is_set():  # stopped in the same instant: nothing goes out
                    self._sender.release(streams)

            await gate.ready(release, stop)
            started = gate.opened_at or self._clock.now()
        waiting = asyncio.ensure_future(asyncio.gather(*(stream.done for stream in streams)))
        stopped = await _until(stop, waiting)
        if stopped:
            for stream in streams:
                stream.stop()
        outcomes: list[StreamResult] = await waiting
        ended = self._clock.now()
        for destination, outcome in zip(by_destination, outcomes, strict=True):
            state = RUN_SUCCESS if outcome.completed else RUN_INTERRUPTED if outcome.stopped else RUN_FAILED
            detail = {
                "destination": f"{destination[0]}:{destination[1]}",
                "multicast": is_multicast(destination[0]),
                "packets": outcome.packets,
                "sent": outcome.sent,
                "dropped": outcome.dropped,
            }
            played = round(outcome.sent * self._sender.packet_s, 3)
            for index in by_destination[destination]:
                results[index] = SpeakerResult(
                    targets[index], state, started, ended, outcome.error, detail, outcome.sent, played
                )
        return [results[index] for index in range(len(targets))]


# -- SIP paging through Asterisk ----------------------------------------------------------------


@dataclass(frozen=True)
class PageResult:
    """What became of one page: which endpoints answered (and so heard it), and an error if it failed."""

    answered: Mapping[str, bool]
    error: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


class PageReport(Protocol):
    """What a page originator reports (read-only, so any result type with these attributes fits)."""

    @property
    def answered(self) -> Mapping[str, bool]: ...

    @property
    def error(self) -> str | None: ...

    @property
    def detail(self) -> Mapping[str, Any]: ...


class PageOriginator(Protocol):
    """Something that can originate a page: Asterisk ``Page()`` to SIP endpoints playing one file.

    Implemented by the hotline's AMI link; ``server.py`` passes it in. ``audio_path``
    is the item in Asterisk's format (8 kHz 16-bit WAV) on *this* host; the
    implementation makes it reachable by Asterisk (a shared directory inside
    the sandbox root). ``page`` returns when the page has ended (or timed out
    unanswered); ``hangup`` ends a running page early (preemption).
    """

    async def page(
        self,
        endpoints: Sequence[str],
        audio_path: Path,
        channel_id: str,
        timeout_s: float,
        *,
        on_answer: Callable[[str], None] | None = None,
    ) -> PageReport:
        """Pages ``endpoints``; ``on_answer(endpoint)`` is called on the loop, not awaited, as each one answers."""
        ...

    async def hangup(self, channel_id: str) -> None: ...


_CHANNEL_SAFE = re.compile(r"[^A-Za-z0-9_-]")


class SipPagingTransport:
    name = "sip"
    pull = False
    answers_first = True

    def __init__(self, originator: PageOriginator | None, clock: Clock, *, timeout_s: float = 30.0) -> None:
        self._originator = originator
        self._clock = clock
        self._timeout_s = timeout_s

    async def play(self, item: PlayItem, targets: Sequence[SpeakerTarget], stop: asyncio.Event) -> list[SpeakerResult]:
        if self._originator is None:
            return [
                SpeakerResult(
                    target,
                    RUN_FAILED,
                    error="没有连接电话交换机，不能SIP寻呼",
                    detail={"why": "no page originator: the service runs with asterisk = none"},
                )
                for target in targets
            ]
        originator = self._originator
        endpoints = [target.address for target in targets]
        channel_id = _CHANNEL_SAFE.sub("-", f"cx-page-{item.zone_run_id or 'test'}-{id(stop):x}")
        started = self._clock.now()
        by_address = {target.address: target for target in targets}
        answered_at: dict[str, datetime] = {}
        reports: set[asyncio.Task[None]] = set()

        def on_answer(endpoint: str) -> None:
            # Each speaker's answer is the moment it starts playing: told to the as-run log at once.
            if endpoint in answered_at or endpoint not in by_address:
                return
            answered_at[endpoint] = self._clock.now()
            if item.on_answered is not None:
                reports.add(asyncio.ensure_future(item.on_answered(by_address[endpoint], answered_at[endpoint])))

        paging = asyncio.ensure_future(
            originator.page(endpoints, item.files[Profile.ASTERISK], channel_id, self._timeout_s, on_answer=on_answer)
        )
        stopped = await _until(stop, paging)
        if stopped:
            with contextlib.suppress(Exception):
                await originator.hangup(channel_id)
        outcome: PageReport
        try:
            outcome = await paging
        except CunxiangError as exc:
            outcome = PageResult({}, error=exc.message)
        except Exception as exc:  # the link's own failure is this page's failure, not the dispatcher's
            log.exception("SIP page %s failed", channel_id)
            outcome = PageResult({}, error="SIP寻呼失败（内部错误，详见服务日志）", detail={"error": repr(exc)})
        ended = self._clock.now()
        # The answers' reports are this play's own work: finished (or failed, logged) before its results.
        for report in await asyncio.gather(*reports, return_exceptions=True):
            if isinstance(report, BaseException):
                log.error("SIP page %s: an answer could not be recorded: %r", channel_id, report)
        results = []
        for target in targets:
            answered = outcome.answered.get(target.address, False)
            if stopped and answered:
                state, error = RUN_INTERRUPTED, None
            elif answered:
                state, error = RUN_SUCCESS, None
            else:
                state, error = RUN_FAILED, outcome.error or "终端未应答"
            # An answered speaker played from its answer to the page's end; zero for one that never answered.
            began = answered_at.get(target.address, started)
            played = seconds_between(began, ended) if answered else 0.0
            results.append(SpeakerResult(target, state, began, ended, error, dict(outcome.detail), None, played))
        return results


# -- file / sound card --------------------------------------------------------------------------


class SinkTransport:
    """``file:NAME`` writes the item to ``<sink_dir>/NAME.wav``; ``alsa:DEVICE`` plays it on a sound card.

    A file sink holds the zone for the item's length, as a sound card would, so
    preemption and waiting behave the same in tests as in a broadcast room.
    """

    name = "sink"
    pull = False
    answers_first = False

    def __init__(self, sink_dir: Path, clock: Clock, *, player: str = "aplay") -> None:
        self._dir = sink_dir
        self._clock = clock
        self._player = player

    async def play(self, item: PlayItem, targets: Sequence[SpeakerTarget], stop: asyncio.Event) -> list[SpeakerResult]:
        return list(await asyncio.gather(*(self._one(item, target, stop) for target in targets)))

    async def _one(self, item: PlayItem, target: SpeakerTarget, stop: asyncio.Event) -> SpeakerResult:
        kind, _, name = target.address.partition(":")
        started = self._clock.now()
        source = item.files.get(Profile.WAV16K) or item.files[Profile.ASTERISK]
        try:
            if kind == "file":
                path = self._dir / f"{name}.wav"
                await asyncio.to_thread(atomic_copy, source, path)
                holding = asyncio.ensure_future(asyncio.sleep(item.duration_s))
                stopped = await _until(stop, holding)
                holding.cancel()
                state = RUN_INTERRUPTED if stopped else RUN_SUCCESS
                ended = self._clock.now()
                played = min(item.duration_s, seconds_between(started, ended) or 0.0)
                return SpeakerResult(target, state, started, ended, detail={"file": str(path)}, played_s=played)
            if kind == "alsa":
                return await self._alsa(name, source, target, stop, started)
        except OSError as exc:
            return SpeakerResult(target, RUN_FAILED, started, self._clock.now(), f"写入失败：{exc.strerror or exc}")
        return SpeakerResult(target, RUN_FAILED, started, self._clock.now(), "本地输出地址不对")

    async def _alsa(
        self, device: str, source: Path, target: SpeakerTarget, stop: asyncio.Event, started: datetime
    ) -> SpeakerResult:
        if shutil.which(self._player) is None:
            return SpeakerResult(target, RUN_FAILED, started, self._clock.now(), f"找不到播放程序 {self._player}")
        playing = asyncio.ensure_future(
            run_program([self._player, "-q", "-D", device, str(source)], program=self._player, timeout_s=3600)
        )
        stopped = await _until(stop, playing)
        if stopped:
            playing.cancel()  # run_program terminates the player and waits for it
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await playing
            ended = self._clock.now()
            return SpeakerResult(target, RUN_INTERRUPTED, started, ended, played_s=seconds_between(started, ended))
        completed = await playing
        if completed.returncode != 0:
            return SpeakerResult(
                target, RUN_FAILED, started, self._clock.now(), f"声卡播放失败：{completed.stderr_tail()}"
            )
        ended = self._clock.now()
        return SpeakerResult(target, RUN_SUCCESS, started, ended, played_s=seconds_between(started, ended))


@dataclass(frozen=True)
class LiveLeg:
    """One way the live room reaches loudspeakers: a SIP paging endpoint, a unicast RTP speaker,
    or a multicast group (one leg per zone group, TTL/interface/loop from the zone)."""

    kind: Literal["sip", "unicast", "multicast"]
    speaker_ids: tuple[int, ...]  # the speakers this leg reaches (one, except multicast)
    address: str  # "PJSIP/<endpoint>" | "<host>:<port>" | "<group>:<port>"
    ttl: int | None = None
    interface: str | None = None
    loop: bool | None = None


class LiveRooms(Protocol):
    async def connect(
        self,
        room: str,
        legs: Sequence[LiveLeg],
        stop: asyncio.Event,
        *,
        on_leg: Callable[[LiveLeg, str | None], None] | None = None,
    ) -> list[SpeakerResult]:
        """Brings each leg into the conference `room` as a listener (SIP through Page()/auto-answer,
        RTP through chan_rtp's UnicastRTP/MulticastRTP) and returns when `stop` is set or the room
        is gone; then hangs up every leg. One SpeakerResult per speaker: started/answered times
        from the leg's answer, ended when its leg ended, error text when it never joined.
        `on_leg(leg, error)` is called on the loop, not awaited, once per leg as soon as its fate is
        known: error None when it answered (its speakers hear the room from now), else why it did not
        join. An implementation without it is still correct, only slower to report (go_live then waits
        its bounded start time)."""
