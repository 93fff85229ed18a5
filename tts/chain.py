"""The engine chain: try engines in order, remember which ones are failing, say who spoke.

For each request the chain walks its engines in the configured order (by
default ``edge`` then ``espeak``):

1. audio already rendered for (text, engine, voice, prosody) is used at once;
2. an engine whose circuit breaker is open is skipped, so a machine without
   internet renders on espeak-ng immediately instead of waiting out a
   timeout on every notice;
3. otherwise the engine is asked; a failure (:class:`EngineFailure`) opens
   its breaker for ``open_period_s`` and the next engine is tried.

While a breaker is open, an owned background task (started by :meth:`start`,
never at construction) probes the engine once the period is over and closes
the breaker when it speaks again. Without the prober (a one-shot CLI run) an
engine whose period is over is simply tried again by the next request. If
every engine is skipped or fails, skipped ones are tried once more anyway
before :class:`NoEngineAvailable` is raised: skipping is an optimisation,
never a reason to stay silent.

A request naming an engine (``VoiceRequest(engine="edge")``) uses only that
engine, breaker or not. A voice only one engine knows (``zh-CN-YunxiNeural``)
applies to that engine; the others speak with their default voice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from common.clock import Clock
from common.health import ComponentHealth, Status
from common.tasks import BackgroundTasks
from tts.cache import AudioCache, CacheEntry, cache_key
from tts.engine_errors import BadVoice, EngineFailure, NoEngineAvailable
from tts.engines import DEFAULT_REQUEST, SpeechEngine, Voice, VoiceRequest

log = logging.getLogger(__name__)

# Part of every speech cache key: bump it when the same text and voice would now sound different.
SPEECH_PIPELINE_VERSION: Final = "speech-1"

BreakerState = Literal["closed", "open", "half-open"]


@dataclass(frozen=True)
class SpokenAudio:
    """Speech for one text, on disk in the cache; ``voice.engine`` is the engine that actually spoke."""

    entry: CacheEntry
    voice: Voice
    cached: bool

    @property
    def engine(self) -> str:
        return self.voice.engine

    @property
    def key(self) -> str:
        return self.entry.key


@dataclass
class _Slot:
    engine: SpeechEngine
    health: ComponentHealth
    open_until: float | None = None  # monotonic seconds; None: the breaker is closed
    consecutive_failures: int = 0
    spoken: int = 0
    last_spoke_at: datetime | None = None
    worked: bool = False  # a probe or a synthesis succeeded since this process started
    probe_lock: asyncio.Lock | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.engine.name


class SpeechChain:
    name = "speech"

    def __init__(
        self,
        engines: Sequence[SpeechEngine],
        cache: AudioCache,
        *,
        clock: Clock,
        open_period_s: float = 300.0,
        probe_interval_s: float = 30.0,
        probe_timeout_s: float = 20.0,
    ) -> None:
        if not engines:
            raise ValueError("the chain needs at least one engine")
        names = [engine.name for engine in engines]
        if len(set(names)) != len(names):
            raise ValueError(f"engine named twice in {names}")
        self._cache = cache
        self._clock = clock
        self._open_period_s = open_period_s
        self._probe_interval_s = probe_interval_s
        self._probe_timeout_s = probe_timeout_s
        self._slots = [
            _Slot(engine, ComponentHealth(f"tts.{engine.name}", status="ok", detail="no failure seen"))
            for engine in engines
        ]
        self._tasks: BackgroundTasks | None = None
        self._startup_probed = asyncio.Event()

    @property
    def engine_names(self) -> list[str]:
        return [slot.name for slot in self._slots]

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background prober: one probe of every engine now, then the open ones when due."""
        if self._tasks is not None:
            return
        self._tasks = BackgroundTasks("tts-chain")
        self._tasks.spawn(self._probe_loop(), "engine-probe")

    async def stop(self) -> None:
        if self._tasks is not None:
            await self._tasks.close()
            self._tasks = None

    async def _probe_loop(self) -> None:
        await asyncio.gather(*(self._probe(slot) for slot in self._slots))
        self._startup_probed.set()
        while True:
            await asyncio.sleep(self._probe_interval_s)
            await self.probe_due()

    async def startup_probe_finished(self) -> None:
        """Return once every engine has been probed once after start (at once if the prober is not running)."""
        if self._tasks is not None:
            await self._startup_probed.wait()

    async def probe_due(self) -> None:
        """Probe every engine whose breaker is open and whose skip period is over."""
        now = self._clock.monotonic()
        due = [slot for slot in self._slots if slot.open_until is not None and now >= slot.open_until]
        await asyncio.gather(*(self._probe(slot) for slot in due))

    async def _probe(self, slot: _Slot) -> None:
        if slot.probe_lock is None:
            slot.probe_lock = asyncio.Lock()
        if slot.probe_lock.locked():
            return
        async with slot.probe_lock:
            try:
                async with asyncio.timeout(self._probe_timeout_s):
                    await slot.engine.probe()
            except EngineFailure as failure:
                self._failed(slot, failure)
            except TimeoutError:
                self._failed(
                    slot,
                    EngineFailure(
                        f"语音引擎 {slot.name} 探测超时。",
                        engine=slot.name,
                        detail=f"probe took longer than {self._probe_timeout_s:g} s",
                    ),
                )
            else:
                self._succeeded(slot)

    # -- breaker bookkeeping ------------------------------------------------------------------

    def _is_skipped(self, slot: _Slot) -> bool:
        return slot.open_until is not None and self._clock.monotonic() < slot.open_until

    def _failed(self, slot: _Slot, failure: EngineFailure) -> None:
        slot.consecutive_failures += 1
        slot.open_until = self._clock.monotonic() + self._open_period_s
        retry_at = self._clock.now() + timedelta(seconds=self._open_period_s)
        slot.health.set(
            "down",
            f"skipped until {retry_at.isoformat(timespec='seconds')}",
            at=self._clock.now(),
            error=failure.detail or failure.message,
        )
        slot.health.extra["retry_at"] = retry_at.isoformat(timespec="seconds")

    def _succeeded(self, slot: _Slot) -> None:
        slot.worked = True
        slot.consecutive_failures = 0
        slot.open_until = None
        slot.health.set("ok", "speaking", at=self._clock.now())
        slot.health.extra.pop("retry_at", None)

    def breaker_open(self, engine: str) -> bool:
        """Whether ``engine`` is currently being skipped."""
        return self._is_skipped(self._slot(engine))

    def known_working(self, engine: str) -> bool:
        """Whether ``engine`` has answered since start-up and is not being skipped now.

        A closed breaker alone says nothing on a fresh start (no failure seen yet); what was spoken
        by a fallback engine is only worth redoing once the preferred one has really answered.
        """
        slot = self._slot(engine)
        return slot.worked and not self._is_skipped(slot)

    def breaker_state(self, engine: str) -> BreakerState:
        """``closed`` (in use), ``open`` (skipped), ``half-open`` (period over; the next probe or request decides)."""
        return self._state(self._slot(engine))

    def _state(self, slot: _Slot) -> BreakerState:
        if slot.open_until is None:
            return "closed"
        return "open" if self._is_skipped(slot) else "half-open"

    def _slot(self, engine: str) -> _Slot:
        for slot in self._slots:
            if slot.name == engine:
                return slot
        message = f"没有叫“{engine}”的语音引擎。可用的有：{'、'.join(self.engine_names)}。"
        raise BadVoice(message, code="tts.bad_engine", detail=f"no engine {engine!r}", fields={"engine": message})

    # -- speaking -----------------------------------------------------------------------------

    def plan(self, request: VoiceRequest = DEFAULT_REQUEST) -> list[tuple[_Slot, Voice]]:
        """Validate ``request`` against every engine it may reach; return them with their voices, in order."""
        slots = [self._slot(request.engine)] if request.engine is not None else list(self._slots)
        if request.voice is not None and not any(slot.engine.knows_voice(request.voice) for slot in slots):
            # Let the first engine word the error: it lists the voices it has.
            slots[0].engine.resolve(request)
        plan = []
        for slot in slots:
            own_voice = request.voice if request.voice is not None and slot.engine.knows_voice(request.voice) else None
            plan.append((slot, slot.engine.resolve(replace(request, engine=None, voice=own_voice))))
        return plan

    def voices(self, request: VoiceRequest = DEFAULT_REQUEST) -> list[Voice]:
        return [voice for _slot, voice in self.plan(request)]

    @staticmethod
    def speech_key(text: str, voice: Voice) -> str:
        return cache_key("speech", {"text": text, "voice": voice.as_dict(), "version": SPEECH_PIPELINE_VERSION})

    async def speak(self, text: str, request: VoiceRequest = DEFAULT_REQUEST) -> SpokenAudio:
        """Speech for ``text`` (already normalised) from the first engine that can give it."""
        plan = self.plan(request)
        explicit = request.engine is not None
        failures: list[EngineFailure] = []
        skipped: list[tuple[_Slot, Voice]] = []
        for slot, voice in plan:
            if not explicit and self._is_skipped(slot) and self._cache.get(self.speech_key(text, voice)) is None:
                skipped.append((slot, voice))
                continue
            try:
                return await self._speak_with(slot, voice, text)
            except EngineFailure as failure:
                failures.append(failure)
        for slot, voice in skipped:
            try:
                return await self._speak_with(slot, voice, text)
            except EngineFailure as failure:
                failures.append(failure)
        raise NoEngineAvailable(failures)

    async def _speak_with(self, slot: _Slot, voice: Voice, text: str) -> SpokenAudio:
        key = self.speech_key(text, voice)
        entry = self._cache.get(key)
        if entry is not None:
            return SpokenAudio(entry, voice, cached=True)
        async with self._cache.lock(key):
            entry = self._cache.get(key)
            if entry is not None:
                return SpokenAudio(entry, voice, cached=True)
            try:
                speech = await slot.engine.synthesize(text, voice)
            except EngineFailure as failure:
                log.warning("engine %s failed: %s", slot.name, failure.detail or failure.message)
                self._failed(slot, failure)
                raise
            self._succeeded(slot)
            slot.spoken += 1
            slot.last_spoke_at = self._clock.now()
            async with self._cache.staging() as staging:
                path = staging.audio_path(speech.format)
                path.write_bytes(speech.audio)
                entry = await self._cache.commit(
                    key,
                    staging,
                    path,
                    {"kind": "speech", "format": speech.format, "voice": voice.as_dict(), "text": text},
                )
        return SpokenAudio(entry, voice, cached=False)

    # -- health -------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Each engine's state for /healthz; the chain is degraded when any engine is skipped."""
        engines: dict[str, Any] = {}
        for slot in self._slots:
            report = slot.health.as_dict()
            report["breaker"] = self._state(slot)
            report["spoken"] = slot.spoken
            if slot.last_spoke_at is not None:
                report["last_spoke_at"] = slot.last_spoke_at.isoformat(timespec="seconds")
            engines[slot.name] = report
        available = [slot for slot in self._slots if not self._is_skipped(slot)]
        status: Status = "ok" if len(available) == len(self._slots) else "degraded" if available else "down"
        return {"status": status, "order": self.engine_names, "engines": engines}

    async def health_probe(self) -> dict[str, Any]:
        return self.health()
