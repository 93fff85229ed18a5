"""The hotline's parts, built from their configuration and wired together (``server.py`` supplies the config).

Which parts run where:

* every process: the villager phone registry, the case intake (reads), the
  recording store — the web pages and the CLI need them;
* only the elected worker (``worker_services``, started in this order, stopped
  in reverse): the FastAGI server, the call tracker, reconciliation, the
  prompt installer, and last the AMI link (so the first connection already
  finds the tracker and reconciliation listening).

With ``asterisk = none`` there is no telephony at all: no link, no FastAGI,
nothing started; the registry and the case data still work.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.clock import Clock
from common.health import ComponentHealth, HealthRegistry
from common.lifecycle import WorkerService
from hotline.ami import AmiConfig, AmiLink
from hotline.asterisk import AsteriskPaths, RenderConfig, Sandbox
from hotline.calls import CallTracker
from hotline.dialtest import SimulatedVillager
from hotline.fastagi import FastAgiServer
from hotline.intake import CallFacts, IntakeService
from hotline.ivr import HotlineAgi
from hotline.paging import Pager
from hotline.phones import PhoneRegistry
from hotline.placing import OutboundCalls
from hotline.prompts import PromptInstaller, SpeechRenderer
from hotline.reconcile import Reconciler
from hotline.recordings import RecordingStore
from tts.audio import AudioTools, Profile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TelephonyConfig:
    mode: Literal["sandbox", "external"]
    ami: AmiConfig
    fastagi_host: str
    fastagi_port: int
    fastagi_request_timeout_s: float
    paths: AsteriskPaths
    render: RenderConfig
    templates: Path
    sandbox: Sandbox | None = None
    reconcile_interval_s: float = 600.0
    # Why telephony could not be set up (e.g. the sandbox is not provisioned); shown on /healthz.
    problem: str | None = None


@dataclass(frozen=True)
class HotlineConfig:
    recordings_dir: Path
    min_speech_s: float = 0.4
    mixmonitor_wait_s: float = 10.0
    retention_days: int = 0
    county_name: str = "示例县"
    digit_pause_ms: int = 250
    lead_in_ms: int = 300
    telephony: TelephonyConfig | None = None


@dataclass
class Telephony:
    config: TelephonyConfig
    link: AmiLink
    tracker: CallTracker
    fastagi: FastAgiServer
    reconciler: Reconciler
    villager: SimulatedVillager
    agi: HotlineAgi
    prompts: PromptInstaller | None
    media: MediaLibrary | None
    # SIP paging for broadcasting (its SipPagingTransport takes this as its PageOriginator).
    pager: Pager
    # Calls the case workflow places (its CallLine: callbacks, follow-ups).
    outbound: OutboundCalls

    @property
    def paths(self) -> AsteriskPaths:
        return self.config.paths


@dataclass
class Hotline:
    config: HotlineConfig
    phones: PhoneRegistry
    store: RecordingStore
    intake: IntakeService
    telephony: Telephony | None
    worker_services: list[WorkerService] = field(default_factory=list)

    @property
    def pager(self) -> Pager | None:
        return self.telephony.pager if self.telephony is not None else None

    @property
    def outbound(self) -> OutboundCalls | None:
        return self.telephony.outbound if self.telephony is not None else None

    @property
    def media(self) -> MediaLibrary | None:
        return self.telephony.media if self.telephony is not None else None


class MediaLibrary:
    """Audio Asterisk plays for us besides prompts: the dial test's sentence, test stand-ins, uploads."""

    def __init__(self, renderer: SpeechRenderer, tools: AudioTools, paths: AsteriskPaths) -> None:
        self._renderer = renderer
        self._tools = tools
        self._paths = paths

    async def sentence(self, text: str, name: str | None = None) -> PurePosixPath:
        """``text`` spoken by our TTS as a file Asterisk can play; its path as Asterisk sees it (no ``.wav``)."""
        key = hashlib.sha256(text.encode()).hexdigest()[:16]
        stem = name or f"speech-{key}"
        dest = self._paths.media.host / f"{stem}.wav"
        marker = dest.with_suffix(".txt")
        if not dest.exists() or not marker.exists() or marker.read_text(encoding="utf-8") != text:
            self._paths.prepare()
            await self._renderer.render(text, dest, lead_in_ms=200, tail_ms=200)
            marker.write_text(text, encoding="utf-8")
            self._paths.give_to_asterisk(dest)
        return self._paths.media.to_asterisk(dest.with_suffix(""))

    async def upload(self, source: Path) -> PurePosixPath:
        """Any audio file ffmpeg reads, converted to 8 kHz WAV in the media directory."""
        digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
        dest = self._paths.media.host / f"upload-{digest}.wav"
        if not dest.exists():
            self._paths.prepare()
            measured = await self._tools.decode(source)
            await self._tools.encode(measured.pcm, {Profile.ASTERISK: dest})
            self._paths.give_to_asterisk(dest)
        return self._paths.media.to_asterisk(dest.with_suffix(""))


def build_hotline(
    config: HotlineConfig,
    *,
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    health: HealthRegistry,
    renderer: SpeechRenderer | None,
    tools: AudioTools | None,
    page_headers: Sequence[tuple[str, str]] = (),
) -> Hotline:
    phones = PhoneRegistry(sessions, clock)
    telephony_config = config.telephony
    spool = telephony_config.paths.spool.host if telephony_config else config.recordings_dir / ".no-spool"
    store = RecordingStore(config.recordings_dir, spool)
    intake = IntakeService(
        sessions,
        clock,
        store,
        phones,
        min_speech_s=config.min_speech_s,
        mixmonitor_wait_s=config.mixmonitor_wait_s,
    )
    hotline = Hotline(config, phones, store, intake, None)
    if telephony_config is None:
        disabled = ComponentHealth("asterisk", status="disabled", detail="asterisk = none: no telephony")
        health.register_component(disabled)
        return hotline
    link = AmiLink(telephony_config.ami, clock=clock)
    if telephony_config.problem:
        link.health.set("down", telephony_config.problem, at=clock.now())

    async def finished(facts: CallFacts) -> None:
        await intake.settle(facts, via="tracker")
        await intake.attach(facts.linkedid)

    tracker = CallTracker(finished, clock=clock)
    link.add_listener(tracker.handle)
    agi = HotlineAgi(intake, telephony_config.paths.prompts.asterisk, clock=clock)
    fastagi = FastAgiServer(
        telephony_config.fastagi_host,
        telephony_config.fastagi_port,
        agi.handlers(),
        clock=clock,
        request_timeout_s=telephony_config.fastagi_request_timeout_s,
    )
    reconciler = Reconciler(
        link,
        tracker,
        intake,
        sessions,
        clock=clock,
        cdr_csv=telephony_config.paths.cdr_csv,
        interval_s=telephony_config.reconcile_interval_s,
        retention_days=config.retention_days,
    )
    prompts = media = None
    if renderer is not None and tools is not None:
        prompts = PromptInstaller(
            renderer,
            telephony_config.paths.prompts.host,
            county=config.county_name,
            clock=clock,
            digit_pause_ms=config.digit_pause_ms,
            lead_in_ms=config.lead_in_ms,
            give_to_asterisk=telephony_config.paths.give_to_asterisk,
        )
        media = MediaLibrary(renderer, tools, telephony_config.paths)
    pager = Pager(link, telephony_config.paths, headers=page_headers)
    telephony = Telephony(
        telephony_config,
        link,
        tracker,
        fastagi,
        reconciler,
        SimulatedVillager(link),
        agi,
        prompts,
        media,
        pager,
        OutboundCalls(link),
    )
    hotline.telephony = telephony
    for component in (link.health, fastagi.health, reconciler.health):
        health.register_component(component)
    if prompts is not None:
        health.register_component(prompts.health)

    async def asterisk_probe() -> dict[str, Any]:
        state = "ok" if link.connected else "standby" if link.health.status == "standby" else "down"
        report: dict[str, Any] = {
            "status": state,
            "mode": telephony_config.mode,
            "ami": f"{telephony_config.ami.host}:{telephony_config.ami.port}",
            "fastagi": f"{telephony_config.fastagi_host}:{telephony_config.fastagi_port}",
        }
        if telephony_config.sandbox is not None:
            report["instance"] = str(telephony_config.sandbox.instance_dir)
        if telephony_config.problem:
            report["detail"] = telephony_config.problem
        elif not link.connected:
            report["detail"] = link.health.last_error or link.health.detail
        return report

    health.register("asterisk", asterisk_probe)
    hotline.worker_services = [fastagi, tracker, reconciler, *([prompts] if prompts else []), link]
    return hotline
