"""The hotline as a part of the service: its configuration from the settings, its pieces built and wired.

``HotlineConfig.from_settings`` reads everything the hotline needs once — how
to reach and configure Asterisk (sandbox or a site's own), the shared
directories as each side sees them, the IVR's timings, the secrets (generated
once into the data directory when the settings give none) — and
:func:`build_hotline` builds from it. Where the Asterisk sandbox lives is
asked of ``deploy/asterisk/sandbox.sh`` by :func:`find_sandbox_root`, off the
event loop and before the runtime is built (the composition root hands the
answer in); building never runs a program.

Which parts run where:

* every process: the villager phone registry, the case intake (reads), the
  recording store — the web pages and the CLI need them;
* only the elected worker (``worker_services``, started in this order, stopped
  in reverse): the FastAGI server, the call tracker, reconciliation, the
  prompt installer, and last the AMI link (so the first connection already
  finds the tracker and reconciliation listening).

With ``asterisk = none`` there is no telephony at all: no link, no FastAGI,
nothing started; the registry and the case data still work.

What others get from here, handed over by ``server.py`` (this package imports
no other domain): broadcasting's SIP paging (``pager``, a
``broadcast.transports.PageOriginator``), and the case workflow's calls,
recordings and spoken sentences (``outbound``, ``store``, ``sentences``, for
the protocols ``cases/`` defines). In return the intake opens cases through
the workflow (``IntakeService.use_case_desk``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.clock import Clock
from common.health import ComponentHealth, HealthRegistry
from common.keyfiles import generated_once
from common.lifecycle import Service
from hotline.ami import AmiConfig, AmiLink
from hotline.asterisk import (
    AsteriskPaths,
    AsteriskUnavailable,
    IvrTimings,
    RenderConfig,
    Sandbox,
    SharedDir,
    Trunk,
    render_configuration,
)
from hotline.call_files import CallFiles
from hotline.calls import CallTracker
from hotline.dialtest import SimulatedVillager
from hotline.fastagi import FastAgiServer
from hotline.intake import CallFacts, IntakeService
from hotline.ivr import HotlineAgi
from hotline.live_rooms import ConferenceRooms
from hotline.paging import AUTO_ANSWER_HEADERS, Pager
from hotline.phonecast import PhonecastDesk
from hotline.phonecast_line import PhonecastLine, PhonecastLineConfig
from hotline.phones import PhoneRegistry
from hotline.placing import OutboundCalls
from hotline.prompts import PromptInstaller, SpeechRenderer
from hotline.reconcile import Reconciler
from hotline.recordings import RecordingStore
from settings import Settings
from tts.audio import AudioTools, Profile
from tts.engines import VoiceRequest
from tts.part import Speech

log = logging.getLogger(__name__)

SentenceMaker = Callable[[str], Awaitable[PurePosixPath]]

ASTERISK_DIR = Path(__file__).resolve().parent.parent / "deploy" / "asterisk"
SANDBOX_SCRIPT = ASTERISK_DIR / "sandbox.sh"


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
    # Cases and recordings of calls ending together written in one transaction (hotline/group_commit.py), on
    # both databases: SQLite's one write lock makes separate ones take turns, and on PostgreSQL each case's
    # transaction updated the same day's roll-up rows, so they queued on those rows' locks instead (20 calls
    # at once, case visible p95: PostgreSQL side by side 501 ms, together 327 ms).
    write_together: bool = True
    retention_days: int = 0
    county_name: str = "示例县"
    digit_pause_ms: int = 250
    lead_in_ms: int = 300
    record_warning_s: int = 10
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    # The phone-broadcast line (手机喊话): its number (empty: none) and how its questions wait.
    phonecast_did: str = ""
    phonecast_max_recording_s: int = 180
    phonecast_record_silence_s: int = 5
    phonecast_key_timeout_s: float = 15.0
    phonecast_attempts: int = 3
    phonecast_live_max_s: int = 300
    prompt_voice: VoiceRequest = field(default_factory=VoiceRequest)
    # SIP headers that make speakers answer a page by themselves (broadcast.sip_auto_answer).
    page_headers: tuple[tuple[str, str], ...] = ()
    telephony: TelephonyConfig | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, sandbox_root: Path | None = None) -> HotlineConfig:
        """The hotline's configuration; ``sandbox_root`` is :func:`find_sandbox_root`'s answer (sandbox mode)."""
        config = settings.hotline
        return cls(
            recordings_dir=recordings_directory(settings),
            min_speech_s=config.min_speech_s,
            mixmonitor_wait_s=config.mixmonitor_wait_s,
            retention_days=config.retention_days,
            county_name=settings.county_name,
            digit_pause_ms=settings.ivr.digit_pause_ms,
            lead_in_ms=settings.ivr.lead_in_ms,
            record_warning_s=settings.ivr.record_warning_s,
            timezone=settings.zone,
            phonecast_did=config.phonecast_did,
            phonecast_max_recording_s=config.phonecast_max_recording_s,
            phonecast_record_silence_s=config.phonecast_record_silence_s,
            phonecast_key_timeout_s=config.phonecast_key_timeout_s,
            phonecast_attempts=config.phonecast_attempts,
            phonecast_live_max_s=config.phonecast_live_max_s,
            prompt_voice=VoiceRequest(voice=settings.ivr.prompt_voice or None, rate=settings.ivr.prompt_rate),
            page_headers=AUTO_ANSWER_HEADERS[settings.broadcast.sip_auto_answer],
            telephony=telephony_config(settings, sandbox_root=sandbox_root),
        )


def recordings_directory(settings: Settings) -> Path:
    """Where recordings live once a call is over (also what a backup copies)."""
    configured = settings.hotline.recordings_dir
    return Path(configured) if configured else settings.data_dir / "recordings"


def _generated_secret(settings: Settings, value: str, filename: str) -> str:
    """A secret from the settings, else generated once into the data directory (mode 0600)."""
    if value:
        return value
    return generated_once(settings.data_dir / filename, lambda: secrets.token_urlsafe(24))


def _ivr_timings(settings: Settings) -> IvrTimings:
    ivr = settings.ivr
    return IvrTimings(
        menu_timeout_s=ivr.menu_timeout_s,
        menu_attempts=ivr.menu_attempts,
        digit_timeout_s=ivr.digit_timeout_s,
        number_attempts=ivr.number_attempts,
        record_max_s=ivr.record_max_s,
        record_silence_s=ivr.record_silence_s,
        record_warning_s=ivr.record_warning_s,
        record_attempts=ivr.record_attempts,
        operator_dial=ivr.operator_dial,
        operator_ring_s=ivr.operator_ring_s,
        call_limit_s=ivr.call_limit_s,
        survey_timeout_s=ivr.survey_timeout_s,
        survey_attempts=ivr.survey_attempts,
        callback_ring_s=ivr.callback_ring_s,
    )


def _external_paths(settings: Settings) -> tuple[AsteriskPaths, str | None]:
    config = settings.hotline
    missing = [
        f"CUNXIANG_HOTLINE_{name.upper()}"
        for name in ("spool_dir", "spool_dir_in_asterisk", "prompts_dir", "prompts_dir_in_asterisk")
        if not getattr(config, name)
    ]
    fallback = settings.data_dir / "asterisk-external"
    paths = AsteriskPaths(
        spool=SharedDir(
            Path(config.spool_dir or fallback / "spool"), PurePosixPath(config.spool_dir_in_asterisk or "/")
        ),
        prompts=SharedDir(
            Path(config.prompts_dir or fallback / "prompts"), PurePosixPath(config.prompts_dir_in_asterisk or "/")
        ),
        media=SharedDir(
            Path(config.prompts_dir or fallback / "prompts") / "media",
            PurePosixPath(config.prompts_dir_in_asterisk or "/") / "media",
        ),
        cdr_csv=Path(config.cdr_csv) if config.cdr_csv else None,
        outgoing=Path(config.outgoing_dir) if config.outgoing_dir else None,
    )
    problem = f"asterisk = external needs {', '.join(missing)}" if missing else None
    return paths, problem


def telephony_config(settings: Settings, *, sandbox_root: Path | None = None) -> TelephonyConfig | None:
    """How to reach and configure Asterisk; None with ``asterisk = none``.

    In sandbox mode the root is ``settings.sandbox.root``, else ``sandbox_root``
    (:func:`find_sandbox_root`); with neither, telephony carries the problem
    "not provisioned" (shown on /healthz) instead of failing.
    """
    if settings.asterisk == "none":
        return None
    ami_secret = _generated_secret(settings, settings.ami.secret, "ami.secret")
    softphone_password = _generated_secret(settings, settings.sandbox.softphone_password, "softphone.secret")
    problem = None
    sandbox = None
    if settings.asterisk == "sandbox":
        root = Path(settings.sandbox.root) if settings.sandbox.root else sandbox_root
        if root is None:
            problem = f"the Asterisk sandbox is not provisioned: run {SANDBOX_SCRIPT} provision"
            root = settings.data_dir / "asterisk-unprovisioned"
        sandbox = Sandbox(SANDBOX_SCRIPT, root, settings.sandbox.instance)
        paths = sandbox.paths
        instance_dir = str(sandbox.inner_dir)
    else:
        paths, problem = _external_paths(settings)
        instance_dir = "/var/lib/asterisk"
    fastagi_host = settings.fastagi.public_host or settings.fastagi.host
    render = RenderConfig(
        instance_dir=instance_dir,
        system_name=settings.sandbox.instance,
        ami_bind=settings.ami.host,
        ami_port=settings.ami.port,
        ami_user=settings.ami.username,
        ami_secret=ami_secret,
        sip_bind=settings.sandbox.sip_bind,
        sip_port=settings.sandbox.sip_port,
        fastagi_url=f"agi://{fastagi_host}:{settings.fastagi.port}",
        spool_dir=str(paths.spool.asterisk),
        prompts_dir=str(paths.prompts.asterisk),
        media_dir=str(paths.media.asterisk),
        case_number_length=settings.hotline.case_number_length,
        pin_length=settings.hotline.pin_length,
        ivr=_ivr_timings(settings),
        phonecast_did=settings.hotline.phonecast_did,
        softphone_user=settings.sandbox.softphone_user,
        softphone_password=softphone_password,
        trunk=Trunk(
            host=settings.sandbox.trunk_host,
            username=settings.sandbox.trunk_username,
            password=settings.sandbox.trunk_password,
            register=settings.sandbox.trunk_register,
        ),
    )
    ami = settings.ami
    return TelephonyConfig(
        mode=settings.asterisk,
        ami=AmiConfig(
            host=ami.host,
            port=ami.port,
            username=ami.username,
            secret=ami_secret,
            connect_timeout_s=ami.connect_timeout_s,
            login_timeout_s=ami.login_timeout_s,
            action_timeout_s=ami.action_timeout_s,
            ping_interval_s=ami.ping_interval_s,
            ping_timeout_s=ami.ping_timeout_s,
            reconnect_min_s=ami.reconnect_min_s,
            reconnect_max_s=ami.reconnect_max_s,
            event_list_timeout_s=ami.event_list_timeout_s,
            boot_timeout_s=ami.boot_timeout_s,
        ),
        fastagi_host=settings.fastagi.host,
        fastagi_port=settings.fastagi.port,
        fastagi_request_timeout_s=settings.fastagi.request_timeout_s,
        paths=paths,
        render=render,
        templates=ASTERISK_DIR / "templates",
        sandbox=sandbox,
        reconcile_interval_s=settings.hotline.reconcile_interval_s,
        problem=problem,
    )


# -- the Asterisk sandbox -------------------------------------------------------------------------


async def find_sandbox_root(settings: Settings) -> Path | None:
    """The provisioned sandbox root (``sandbox.root``, else ``sandbox.sh root``); None without one.

    Only sandbox mode has one. Asked of the script asynchronously, so never blocking the event loop.
    """
    if settings.asterisk != "sandbox":
        return None
    if settings.sandbox.root:
        return Path(settings.sandbox.root)
    try:
        return await Sandbox.find_root(SANDBOX_SCRIPT)
    except AsteriskUnavailable:
        return None


async def sandbox_up(
    settings: Settings, *, provision: bool, sandbox_root: Path | None = None
) -> tuple[Sandbox, TelephonyConfig]:
    """Render our configuration into the sandbox instance and start it (or reload what changed).

    Without a provisioned root: provision one when asked (debootstrap of Debian sid, about a
    minute), else :class:`~hotline.asterisk.AsteriskUnavailable`.
    """
    root = sandbox_root or await find_sandbox_root(settings)
    if root is None:
        if not provision:
            raise AsteriskUnavailable(f"the Asterisk sandbox is not provisioned: run {SANDBOX_SCRIPT} provision")
        root = await Sandbox.provision(SANDBOX_SCRIPT)
    telephony = telephony_config(settings, sandbox_root=root)
    assert telephony is not None and telephony.sandbox is not None
    sandbox = telephony.sandbox
    changed = sandbox.install(render_configuration(telephony.templates, telephony.render))
    status = await sandbox.status()
    if status.running:
        await sandbox.reload(changed)
    else:
        await sandbox.start()
    return sandbox, telephony


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
    # The phone-broadcast line (手机喊话); its desk is phonecast/'s, connected by server.py.
    phonecast: PhonecastLine
    # Live calls' conferences (实时喊话): broadcasting's LiveRooms, adapted by server.py.
    rooms: ConferenceRooms

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
    worker_services: list[Service] = field(default_factory=list)

    @property
    def pager(self) -> Pager | None:
        return self.telephony.pager if self.telephony is not None else None

    def use_phonecast_desk(self, desk: PhonecastDesk | None) -> None:
        """Who the phone-broadcast line asks (server.py); with None every caller hears the polite refusal."""
        if self.telephony is not None:
            self.telephony.phonecast.use_desk(desk)

    @property
    def live_rooms(self) -> ConferenceRooms | None:
        return self.telephony.rooms if self.telephony is not None else None

    @property
    def outbound(self) -> OutboundCalls | None:
        return self.telephony.outbound if self.telephony is not None else None

    @property
    def media(self) -> MediaLibrary | None:
        return self.telephony.media if self.telephony is not None else None

    @property
    def call_files(self) -> CallFiles | None:
        """Asterisk's call-file spool (calls placed without AMI); None without telephony or a known spool."""
        if self.telephony is None or self.telephony.paths.outgoing is None:
            return None
        return CallFiles(self.telephony.paths.outgoing, self.telephony.paths)

    @property
    def sentences(self) -> SentenceMaker | None:
        """Our TTS speaking a sentence as a file Asterisk plays (the case workflow's follow-up calls)."""
        media = self.media
        return media.sentence if media is not None else None


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
        if not await asyncio.to_thread(_spoken_from, dest, marker, text):
            await asyncio.to_thread(self._paths.prepare)
            await self._renderer.render(text, dest, lead_in_ms=200, tail_ms=200)
            await asyncio.to_thread(marker.write_text, text, encoding="utf-8")
            await asyncio.to_thread(self._paths.give_to_asterisk, dest)
        return self._paths.media.to_asterisk(dest.with_suffix(""))

    async def upload(self, source: Path) -> PurePosixPath:
        """Any audio file ffmpeg reads, converted to 8 kHz WAV in the media directory."""
        # Read and hashed in a thread: an upload may be tens of megabytes, and the loop paces calls and RTP.
        digest = (await asyncio.to_thread(lambda: hashlib.sha256(source.read_bytes()).hexdigest()))[:16]
        dest = self._paths.media.host / f"upload-{digest}.wav"
        if not await asyncio.to_thread(dest.exists):
            await asyncio.to_thread(self._paths.prepare)
            measured = await self._tools.decode(source)
            await self._tools.encode(measured.pcm, {Profile.ASTERISK: dest})
            await asyncio.to_thread(self._paths.give_to_asterisk, dest)
        return self._paths.media.to_asterisk(dest.with_suffix(""))


def _spoken_from(dest: Path, marker: Path, text: str) -> bool:
    """Whether ``dest`` holds ``text`` spoken: the marker beside it says which text it was made from."""
    return dest.exists() and marker.exists() and marker.read_text(encoding="utf-8") == text


def build_hotline(
    config: HotlineConfig,
    *,
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    health: HealthRegistry,
    speech: Speech | None,
) -> Hotline:
    """The hotline part; ``speech`` renders the prompts and the media (without it: neither is installed)."""
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
        write_together=config.write_together,
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
    prompts = media = None
    if speech is not None:
        renderer = SpeechRenderer(speech.chain, speech.tools, voice=config.prompt_voice)
        tools = speech.tools
        prompts = PromptInstaller(
            renderer,
            telephony_config.paths.prompts.host,
            county=config.county_name,
            clock=clock,
            record_warning_s=config.record_warning_s,
            phonecast_max_s=config.phonecast_max_recording_s,
            digit_pause_ms=config.digit_pause_ms,
            lead_in_ms=config.lead_in_ms,
            give_to_asterisk=telephony_config.paths.give_to_asterisk,
        )
        media = MediaLibrary(renderer, tools, telephony_config.paths)
    phonecast = PhonecastLine(
        PhonecastLineConfig(
            prompts_dir=telephony_config.paths.prompts.asterisk,
            spool_host=telephony_config.paths.spool.host,
            spool_asterisk=telephony_config.paths.spool.asterisk,
            timezone=config.timezone,
            max_recording_s=config.phonecast_max_recording_s,
            record_silence_s=config.phonecast_record_silence_s,
            key_timeout_s=config.phonecast_key_timeout_s,
            attempts=config.phonecast_attempts,
            min_speech_s=config.min_speech_s,
            live_max_s=config.phonecast_live_max_s,
            mixmonitor_wait_s=config.mixmonitor_wait_s,
        ),
        clock=clock,
        # Names and outcomes are spoken at call time through the same TTS path as the dial test's sentence.
        sentences=media.sentence if media is not None else None,
    )
    fastagi = FastAgiServer(
        telephony_config.fastagi_host,
        telephony_config.fastagi_port,
        {**agi.handlers(), **phonecast.handlers()},
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
    pager = Pager(link, telephony_config.paths, headers=config.page_headers)
    # 实时喊话: the line's conference per live call, and the speakers brought into it (broadcast's LiveRooms,
    # through server.py); the line empties a room when an emergency takes its zones.
    rooms = ConferenceRooms(link, clock=clock, headers=config.page_headers)
    phonecast.use_rooms(rooms)
    telephony = Telephony(
        telephony_config,
        link,
        tracker,
        fastagi,
        reconciler,
        SimulatedVillager(
            link,
            phonecast=f"Local/{config.phonecast_did}@from-trunk" if config.phonecast_did else None,
        ),
        agi,
        prompts,
        media,
        pager,
        OutboundCalls(link),
        phonecast,
        rooms,
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
