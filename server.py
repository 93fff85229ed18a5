"""村响's composition root and command line.

Everything is built here, from the settings, in dependency order, and handed
down explicitly: settings → database → accounts and areas → (speech, audio,
scheduler, Asterisk link, as later parts arrive) → web app. Long-lived parts
are aiohttp cleanup contexts, started in that order and stopped in reverse.
Nothing below this module reads the environment or a global.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from aiohttp import web
from alembic.script import ScriptDirectory
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from accounts.passwords import Passwords
from accounts.service import AccountService, ThrottlePolicy
from areas.demo import DEMO_COUNTY_CODE, load_demo
from areas.service import AreaService
from broadcast.asrun import AsRunLog
from broadcast.dispatcher import Dispatcher
from broadcast.notices import NoticeService
from broadcast.production import BroadcastProducer, ProductionResult, ProductionSettings, notice_text
from broadcast.rtp import RtpSender
from broadcast.speaker_test import SpeakerTester
from broadcast.terminals import HttpPullTransport, TerminalEvents, TerminalService
from broadcast.transports import (
    AUTO_ANSWER_HEADERS,
    PageOriginator,
    RtpTransport,
    SinkTransport,
    SipPagingTransport,
    Transport,
)
from cases.callback import CallbackConfig
from cases.clocks import ClockPolicy
from cases.part import Cases, CasesConfig, build_cases
from cases.survey import SurveyConfig
from common.clock import Clock, SystemClock
from common.errors import CunxiangError, ServiceUnavailable
from common.health import HealthRegistry
from common.keyfiles import generated_once
from common.lifecycle import ServiceGroup, WorkerService
from hotline.ami import AmiConfig
from hotline.asterisk import AsteriskPaths, IvrTimings, RenderConfig, Sandbox, SharedDir, Trunk, render_configuration
from hotline.dialtest import VillagerScript
from hotline.intake import case_json
from hotline.prompts import DIAL_TEST_SENTENCE, SpeechRenderer
from hotline.runtime import Hotline, HotlineConfig, TelephonyConfig, build_hotline
from schedules.scheduler import Scheduler
from schedules.service import ScheduleService
from settings import Settings, SettingsError, load_settings, unknown_environment_names
from storage import backup, migrate
from storage.audit import Actor
from storage.db import check_connection, create_engine, database_health, make_session_factory
from storage.models import Case, CaseLedger, County
from storage.worker_lock import FileWorkerLock, PostgresWorkerLock, WorkerElection, WorkerLock
from tts import privacy
from tts.audio import PROFILES, AudioTools, Profile, atomic_copy
from tts.cache import AudioCache
from tts.chain import SpeechChain
from tts.engine_errors import BadVoice
from tts.engines import EdgeEngine, EspeakEngine, SpeechEngine, VoiceRequest
from tts.normalize import normalize
from tts.render import AudioRenderer, LoudnessPolicy
from web import keys
from web.app import build_app
from web.views import broadcast as broadcast_views
from web.views import cases as cases_views
from web.views import hotline as hotline_views
from web.views import schedules as schedules_views

log = logging.getLogger("cunxiang")

# Environment variables read by our scripts rather than by the settings object.
SCRIPT_VARIABLES = (
    "CUNXIANG_ASTERISK_CACHE",
    "CUNXIANG_ASTERISK_BOOT_TIMEOUT",
    "CUNXIANG_ASTERISK_STOP_TIMEOUT",
    "CUNXIANG_TEST_",
)


class StartupError(Exception):
    """Start-up cannot go on; the message is one line for the operator."""


class CommandError(Exception):
    """A command was used wrongly or could not do its job; the message is one line."""


def version() -> str:
    try:
        return metadata.version("cunxiang")
    except metadata.PackageNotFoundError:
        return "0+unknown"


# -- the runtime: everything built from the settings, nothing started yet ------------------


@dataclass
class Speech:
    """Text to speech and audio production: engines → chain → cache → renderer → broadcast producer."""

    tools: AudioTools
    cache: AudioCache
    chain: SpeechChain
    renderer: AudioRenderer
    producer: BroadcastProducer


def build_speech(settings: Settings, clock: Clock) -> Speech:
    tts, audio = settings.tts, settings.audio
    engines: list[SpeechEngine] = []
    for name in tts.engines:
        try:
            if name == "edge":
                engines.append(
                    EdgeEngine(
                        voice=tts.edge_voice,
                        rate=tts.edge_rate,
                        volume=tts.edge_volume,
                        pitch=tts.edge_pitch,
                        proxy=tts.edge_proxy,
                        connect_timeout_s=tts.edge_connect_timeout_s,
                        receive_timeout_s=tts.edge_receive_timeout_s,
                        timeout_s=tts.synthesis_timeout_s,
                        max_connections=tts.edge_max_connections,
                    )
                )
            else:
                engines.append(
                    EspeakEngine(
                        binary=tts.espeak_binary,
                        voice=tts.espeak_voice,
                        speed_wpm=tts.espeak_speed_wpm,
                        timeout_s=min(tts.espeak_timeout_s, tts.synthesis_timeout_s),
                    )
                )
        except BadVoice as exc:
            raise StartupError(f"bad setting CUNXIANG_TTS_{name.upper()}_VOICE: {exc.detail}") from None
    cache = AudioCache(settings.data_dir / "audio", max_bytes=audio.cache_max_mb * 1024 * 1024)
    chain = SpeechChain(
        engines,
        cache,
        clock=clock,
        open_period_s=tts.breaker_open_s,
        probe_interval_s=tts.probe_interval_s,
        probe_timeout_s=tts.probe_timeout_s,
    )
    tools = AudioTools(ffmpeg=audio.ffmpeg_binary, ffprobe=audio.ffprobe_binary, timeout_s=audio.ffmpeg_timeout_s)
    loudness = LoudnessPolicy(
        target_lufs=audio.loudness_target_lufs,
        ceiling_dbtp=audio.true_peak_ceiling_dbtp,
        headroom_db=audio.limiter_headroom_db,
    )
    renderer = AudioRenderer(cache, tools, loudness)
    production = ProductionSettings(
        chime=audio.chime,
        lead_in_ms=audio.lead_in_ms,
        chime_gap_ms=audio.chime_gap_ms,
        gap_ms=audio.gap_ms,
        tail_ms=audio.tail_ms,
        default_repeats=audio.default_repeats,
        max_chars=tts.max_chars,
        max_recording_s=audio.max_recording_s,
    )
    return Speech(tools, cache, chain, renderer, BroadcastProducer(chain, renderer, production))


@dataclass
class Broadcasting:
    """Notices, schedules, the scheduler, the dispatcher and its transports, the as-run log."""

    notices: NoticeService
    schedules: ScheduleService
    scheduler: Scheduler
    dispatcher: Dispatcher
    rtp_sender: RtpSender
    transports: dict[str, Transport]
    terminals: TerminalService
    asrun: AsRunLog
    speaker_tester: SpeakerTester


def build_broadcasting(
    settings: Settings,
    clock: Clock,
    sessions: async_sessionmaker[AsyncSession],
    speech: Speech,
    *,
    page_originator: PageOriginator | None = None,
) -> Broadcasting:
    """Everything that puts notices on air. ``page_originator`` is the hotline's AMI link (SIP paging)."""
    config, timing = settings.broadcast, settings.scheduler
    notices = NoticeService(
        sessions,
        clock,
        speech.producer,
        speech.cache,
        settings.data_dir / "recordings",
        default_repeats=settings.audio.default_repeats,
        emergency_engine=config.emergency_engine,
        max_chars=settings.tts.max_chars,
        recording_max_bytes=config.recording_max_bytes,
    )
    # Approved notices' audio must survive cache eviction until they are archived.
    speech.cache.set_referenced(notices.referenced_keys)
    schedules = ScheduleService(
        sessions, clock, settings.zone, plan_days=timing.plan_days, preview_limit=timing.preview_limit
    )
    sender = RtpSender(packet_ms=config.rtp_packet_ms, multicast_interface=config.rtp_multicast_interface)
    events = TerminalEvents()
    transports: dict[str, Transport] = {
        "rtp": RtpTransport(sender, clock, default_port=config.rtp_port, default_ttl=config.rtp_ttl),
        "sip": SipPagingTransport(page_originator, clock, timeout_s=config.sip_page_timeout_s),
        "http": HttpPullTransport(
            sessions,
            clock,
            events,
            poll_interval_s=config.http_poll_interval_s,
            start_timeout_s=config.terminal_start_timeout_s,
            finish_grace_s=config.terminal_finish_grace_s,
        ),
        "sink": SinkTransport(settings.data_dir / "sink", clock, player=config.alsa_player),
    }
    dispatcher = Dispatcher(
        sessions,
        clock,
        settings.zone,
        notices,
        transports,
        sender,
        wait_limit_s=config.lower_priority_wait_s,
        requeue_interrupted=config.requeue_interrupted,
        pending_poll_s=config.pending_poll_s,
        default_rtp_port=config.rtp_port,
        default_rtp_ttl=config.rtp_ttl,
    )
    scheduler = Scheduler(
        sessions,
        clock,
        settings.zone,
        dispatcher,
        schedules,
        catch_up_grace_s=timing.catch_up_grace_s,
        missed_lookback_h=timing.missed_lookback_h,
        misfire_grace_s=timing.misfire_grace_s,
        resync_s=timing.resync_s,
    )
    # A schedule saved in this process takes effect at once (other processes: the scheduler's resync).
    schedules.on_change(scheduler.schedule_changed)
    notices.on_schedule_change(scheduler.schedule_changed)
    terminals = TerminalService(
        sessions,
        clock,
        speech.cache,
        events,
        poll_interval_s=config.http_poll_interval_s,
        heartbeat_timeout_s=config.terminal_heartbeat_timeout_s,
    )
    tester = SpeakerTester(
        speech.producer, transports, engine=config.emergency_engine, timeout_s=config.speaker_test_timeout_s
    )
    return Broadcasting(
        notices=notices,
        schedules=schedules,
        scheduler=scheduler,
        dispatcher=dispatcher,
        rtp_sender=sender,
        transports=transports,
        terminals=terminals,
        asrun=AsRunLog(sessions, settings.zone),
        speaker_tester=tester,
    )


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    passwords: Passwords
    accounts: AccountService
    areas: AreaService
    health: HealthRegistry
    speech: Speech
    broadcasting: Broadcasting
    hotline: Hotline
    cases: Cases
    worker_services: list[WorkerService] = field(default_factory=list)


def build_runtime(settings: Settings, *, clock: Clock | None = None) -> Runtime:
    clock = clock or SystemClock()
    engine = create_engine(
        settings.database_url,
        busy_timeout_ms=settings.database.busy_timeout_ms,
        connect_timeout_s=settings.database.connect_timeout_s,
        echo=settings.database.echo,
    )
    sessions = make_session_factory(engine)
    security = settings.security
    passwords = Passwords(
        time_cost=security.password_time_cost,
        memory_kib=security.password_memory_kib,
        parallelism=security.password_parallelism,
        min_length=security.password_min_length,
    )
    throttle = ThrottlePolicy(security.login_free_attempts, security.login_base_delay_s, security.login_max_delay_s)
    health = HealthRegistry()

    async def database_probe() -> dict[str, Any]:
        return await database_health(engine)

    health.register("database", database_probe)
    speech = build_speech(settings, clock)
    health.register("tts", speech.chain.health_probe)
    hotline = build_hotline_part(settings, clock, sessions, health, speech)
    cases = build_cases_part(settings, clock, sessions, health, hotline)
    broadcasting = build_broadcasting(settings, clock, sessions, speech, page_originator=hotline.pager)
    health.register("dispatcher", broadcasting.dispatcher.health)
    health.register("scheduler", broadcasting.scheduler.health)
    return Runtime(
        settings=settings,
        clock=clock,
        engine=engine,
        sessions=sessions,
        passwords=passwords,
        accounts=AccountService(sessions, passwords, clock, throttle),
        areas=AreaService(sessions, clock),
        health=health,
        speech=speech,
        hotline=hotline,
        cases=cases,
        broadcasting=broadcasting,
        # Started in this order by the elected worker, stopped in reverse: the dispatcher before
        # the scheduler that feeds it. (The hotline's AMI link goes before both: SIP paging uses it.)
        worker_services=[
            *hotline.worker_services,
            *cases.worker_services,
            broadcasting.dispatcher,
            broadcasting.scheduler,
        ],
    )


def session_key(settings: Settings) -> bytes:
    """The cookie encryption key: from settings, else generated once into the data directory (0600)."""
    if settings.security.session_key:
        text = settings.security.session_key
    else:
        text = generated_once(
            settings.data_dir / "session.key", lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        )
    try:
        key = base64.urlsafe_b64decode(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise StartupError("bad setting CUNXIANG_SECURITY_SESSION_KEY: must be 32 bytes, URL-safe base64")
    return key


def worker_lock(settings: Settings) -> WorkerLock:
    if settings.is_sqlite:
        return FileWorkerLock(settings.data_dir / "worker.lock")
    return PostgresWorkerLock(settings.database_url, connect_timeout_s=settings.database.connect_timeout_s)


# -- the web application and its lifecycle ------------------------------------------------------


def _database_context(runtime: Runtime) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(_app: web.Application) -> AsyncIterator[None]:
        yield
        await runtime.engine.dispose()

    return context


def _speech_context(runtime: Runtime) -> Callable[[web.Application], AsyncIterator[None]]:
    """The engine chain's background prober runs while the app runs (every process: all of them render)."""

    async def context(_app: web.Application) -> AsyncIterator[None]:
        await runtime.speech.chain.start()
        yield
        await runtime.speech.chain.stop()

    return context


def _worker_context(
    runtime: Runtime, election_holder: list[WorkerElection]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Elect the one active worker; only it starts the worker services, in order, and stops them in reverse."""

    services = ServiceGroup(runtime.worker_services)

    async def context(_app: web.Application) -> AsyncIterator[None]:
        election = WorkerElection(
            worker_lock(runtime.settings),
            on_elected=services.start,
            on_demoted=services.stop,
            interval_s=runtime.settings.worker.election_interval_s,
        )
        election_holder.append(election)

        async def probe() -> dict[str, Any]:
            return election.health()

        runtime.health.register("worker", probe)
        await election.start()
        yield
        await election.stop()

    return context


def create_app(settings: Settings, *, runtime: Runtime | None = None) -> web.Application:
    """The whole service as an aiohttp application (``serve`` runs it; tests drive it over HTTP)."""
    runtime = runtime or build_runtime(settings)
    config = keys.WebConfig(
        county_name=settings.county_name,
        public_url=settings.public_url,
        zone=settings.zone,
        session_key=session_key(settings),
        cookie_secure=settings.server.cookie_secure,
        session_max_age_s=settings.server.session_max_age_s,
        max_json_bytes=settings.server.max_json_bytes,
        max_upload_bytes=settings.server.max_upload_bytes,
        demo_banner=False,
    )
    app = build_app(
        config,
        route_adders=(
            hotline_views.add_routes,
            cases_views.add_routes,
            broadcast_views.add_routes,
            schedules_views.add_routes,
        ),
        nav=(*broadcast_views.NAV, *cases_views.NAV, *hotline_views.NAV),
        todo=(broadcast_views.todo, cases_views.todo),
        version=version(),
    )
    app[keys.CLOCK] = runtime.clock
    app[keys.HEALTH] = runtime.health
    app[keys.SESSIONS] = runtime.sessions
    app[keys.ACCOUNTS] = runtime.accounts
    app[keys.AREAS] = runtime.areas
    app[hotline_views.PHONES] = runtime.hotline.phones
    app[hotline_views.INTAKE] = runtime.hotline.intake
    app[cases_views.CASES] = runtime.cases
    broadcasting = runtime.broadcasting
    app[broadcast_views.NOTICES] = broadcasting.notices
    app[broadcast_views.DISPATCHER] = broadcasting.dispatcher
    app[broadcast_views.ASRUN] = broadcasting.asrun
    app[broadcast_views.TERMINALS] = broadcasting.terminals
    app[broadcast_views.SPEAKER_TESTER] = broadcasting.speaker_tester
    app[schedules_views.SCHEDULES] = broadcasting.schedules
    app[RUNTIME] = runtime
    elections: list[WorkerElection] = []
    app[ELECTION] = elections
    app.cleanup_ctx.append(_database_context(runtime))
    app.cleanup_ctx.append(_speech_context(runtime))
    app.on_startup.append(_mark_demo)
    app.cleanup_ctx.append(_worker_context(runtime, elections))
    return app


RUNTIME = web.AppKey("runtime", Runtime)
ELECTION = web.AppKey("election", list[WorkerElection])


async def _mark_demo(app: web.Application) -> None:
    """A deployment holding the demo county says so on every page."""
    async with app[RUNTIME].sessions() as session:
        is_demo = await session.scalar(select(County.id).where(County.code == DEMO_COUNTY_CODE)) is not None
    if is_demo:
        config = app[keys.CONFIG]
        app[keys.CONFIG] = keys.WebConfig(**{**config.__dict__, "demo_banner": True})


async def ensure_ready(runtime: Runtime) -> None:
    """The database answers and is migrated to this version; else one clear line."""
    try:
        await check_connection(runtime.engine)
    except ServiceUnavailable as exc:
        raise StartupError(exc.detail or exc.message) from None
    current = await migrate.current_revision(runtime.engine)
    head = migrate.head_revision()
    if current != head:
        state = "is empty" if current is None else f"is at revision {current}, this version needs {head}"
        raise StartupError(f"the database {state}: run `cunxiang init` first")


async def _serve(settings: Settings, host: str, port: int) -> None:
    runtime = build_runtime(settings)
    try:
        await ensure_ready(runtime)
    finally:
        await runtime.engine.dispose()
    if settings.asterisk == "sandbox":
        await _sandbox_for_serve(settings)
    runtime = build_runtime(settings)
    app = create_app(settings, runtime=runtime)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, shutdown_timeout=settings.server.shutdown_timeout_s)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    url = settings.server.public_url or f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    role = app[ELECTION][0].role if app[ELECTION] else "standby"
    print(f"村响 is running: open {url}/  (this process is the {role} worker; Ctrl+C stops it)", flush=True)
    logins = settings.data_dir / "demo-logins.txt"
    if logins.exists():
        print(f"Demo logins are in {logins.resolve()} (readable by its owner only)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        print("stopping…", flush=True)
        await runner.cleanup()


# -- commands -------------------------------------------------------------------------------------


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    host = args.host or settings.server.host
    port = args.port or settings.server.port
    asyncio.run(_serve(settings, host, port))
    return 0


async def _create_first_admin(runtime: Runtime, username: str, password: str | None) -> str | None:
    """Create the first admin unless an active one exists; returns the generated password, if any."""
    if await runtime.accounts.count_admins() > 0:
        return None
    _user, generated = await runtime.accounts.create_user(
        Actor(user_id=None, username="system:init"),
        username=username,
        display_name="系统管理员",
        password=password,
        roles=["admin"],
        county_wide=True,
        can_emergency=True,
    )
    return generated or ""


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    password = None
    if args.admin_password_file:
        password = Path(args.admin_password_file).read_text(encoding="utf-8").strip()
    runtime = build_runtime(settings)

    async def reachable() -> None:
        try:
            await check_connection(runtime.engine)
        finally:
            await runtime.engine.dispose()

    try:
        asyncio.run(reachable())
    except ServiceUnavailable as exc:
        raise StartupError(exc.detail or exc.message) from None
    migrate.upgrade_sync(settings.database_url)
    session_key(settings)

    async def admin() -> str | None:
        try:
            return await _create_first_admin(runtime, args.admin_username, password)
        finally:
            await runtime.engine.dispose()

    generated = asyncio.run(admin())
    print(f"database ready at revision {migrate.head_revision()} ({_safe_url(settings)})")
    if generated is None:
        print("an active admin exists already; no account created")
    elif generated:
        print(f"created admin '{args.admin_username}' with password: {generated}")
        print("(shown once: write it down, then change it under 修改密码)")
    else:
        print(f"created admin '{args.admin_username}' with the password from {args.admin_password_file}")
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    migrate.upgrade_sync(settings.database_url)

    async def run() -> None:
        runtime = build_runtime(settings)
        try:
            result = await load_demo(
                runtime.sessions, runtime.accounts, runtime.clock, settings.data_dir / "demo-logins.txt"
            )
            broadcasts = await load_demo_broadcasting(runtime)
            cases = await _load_demo_cases(runtime)
        finally:
            await runtime.engine.dispose()
        print("demo county 示例县 " + ("created" if result.created_places else "already present, kept as it is"))
        if result.new_logins:
            print(f"new demo accounts: {', '.join(result.new_logins)}")
        print(f"demo logins: {result.logins_file.resolve()} (mode 0600)")
        print(broadcasts)
        print(cases)

    asyncio.run(run())
    return 0


DEMO_NOTICES = Path(__file__).resolve().parent / "broadcast" / "demo_notices.json"


async def _load_demo_cases(runtime: Runtime) -> str:
    """Invented cases in every state, entered and worked by the demo accounts (see cases/demo.py)."""
    from accounts.service import principal_of
    from cases.demo import load_demo_cases
    from storage.models import User

    async with runtime.sessions() as session:
        users = {user.username: user for user in (await session.scalars(select(User))).all()}
    if not {"demo.operator", "demo.inspector", "demo.staff", "demo.staff2"} <= users.keys():
        return "demo cases: no demo accounts, none added"
    staff = [principal_of(users[name]) for name in ("demo.staff", "demo.staff2")]
    return await load_demo_cases(
        runtime.sessions,
        runtime.cases.workflow,
        operator=principal_of(users["demo.operator"]),
        staff_by_township={township: principal for principal in staff for township in principal.township_ids},
        inspector=principal_of(users["demo.inspector"]),
    )


async def load_demo_broadcasting(runtime: Runtime) -> str:
    """The six sample notices in the first demo township: most approved and scheduled, one left for review.

    The 低保 notice still carries an ID number, so the privacy guard keeps it in
    the approval queue (as it should); the emergency sample stays a draft for the
    emergency form. Loading twice adds nothing.
    """
    from datetime import timedelta

    from accounts.service import principal_of
    from broadcast.notices import NoticeInput
    from schedules.service import ScheduleInput
    from storage.models import Notice, Township, User, Village

    async with runtime.sessions() as session:
        if await session.scalar(select(Notice.id).limit(1)) is not None:
            return "demo notices already present, kept as they are"
        users = {user.username: user for user in (await session.scalars(select(User))).all()}
        township = await session.scalar(select(Township).order_by(Township.id).limit(1))
        if township is None or not {"demo.staff", "demo.approver", "demo.admin"} <= users.keys():
            return "no demo county: demo notices not loaded"
        villages = (await session.scalars(select(Village.id).where(Village.township_id == township.id))).all()
    staff, approver, admin = (principal_of(users[name]) for name in ("demo.staff", "demo.approver", "demo.admin"))
    notices = runtime.broadcasting.notices
    samples = json.loads(DEMO_NOTICES.read_text(encoding="utf-8"))
    plans: dict[str, ScheduleInput] = {}
    today = runtime.clock.now().astimezone(runtime.settings.zone).date()
    everywhere = tuple(("village", village) for village in villages)
    approved = pending = 0
    for sample in samples:
        if sample["kind"] == "emergency":
            await notices.create(admin, NoticeInput(sample["kind"], sample["title"], sample["body"], township.id))
            continue
        notice = await notices.create(
            staff, NoticeInput(sample["kind"], sample["title"], sample["body"], township.id, repeats=2)
        )
        await notices.submit(staff, notice.id)
        try:
            await notices.approve(approver, notice.id)
        except CunxiangError as exc:
            log.info("demo notice %s stays pending: %s", notice.id, exc.message)
            pending += 1
            continue
        approved += 1
        plans[sample["kind"]] = ScheduleInput(notice_id=notice.id, kind="daily", targets=everywhere)
    shapes = {
        "disclosure_finance": {"times": ("07:00", "12:00", "18:30")},
        "disclosure_party": {"times": ("07:30",), "end_date": today + timedelta(days=7)},
        "civility": {"kind": "weekly", "times": ("08:00",), "weekdays": (1, 3, 5)},
        "service": {"times": ("12:00",), "start_date": today, "end_date": today + timedelta(days=30)},
    }
    scheduled = 0
    for kind, shape in shapes.items():
        if kind in plans:
            plan = plans[kind]
            await runtime.broadcasting.schedules.create(staff, replace(plan, **shape))  # type: ignore[arg-type]
            scheduled += 1
    return f"demo notices: {approved} approved, {pending} waiting for review, {scheduled} schedules"


def cmd_broadcast_test(settings: Settings, args: argparse.Namespace) -> int:
    """拨测: render a short item and play it through one transport to one destination now; print the result."""
    from broadcast.transports import SpeakerTarget
    from storage.models import RUN_SUCCESS, Speaker

    async def run() -> int:
        runtime = build_runtime(settings)
        try:
            if args.rtp:
                target = SpeakerTarget("rtp", args.rtp, name=args.rtp)
            elif args.page:
                target = SpeakerTarget("sip", args.page, name=args.page)
            else:
                async with runtime.sessions() as session:
                    speaker = await session.get(Speaker, args.speaker)
                if speaker is None:
                    raise CommandError(f"no speaker with id {args.speaker}")
                target = SpeakerTarget(speaker.transport, speaker.address, speaker.id, speaker.name)
            # A SIP page needs the AMI link; this command starts its own for the one page it sends.
            link = None
            if target.transport == "sip":
                telephony = runtime.hotline.telephony
                if telephony is None:
                    raise CommandError("asterisk = none: there is no Asterisk to page through")
                link = telephony.link
                await link.start()
            await runtime.broadcasting.rtp_sender.start()
            try:
                if link is not None:
                    await link.wait_connected(settings.broadcast.speaker_test_timeout_s)
                result = await runtime.broadcasting.speaker_tester.test(args.text, target)
            finally:
                await runtime.broadcasting.rtp_sender.stop()
                if link is not None:
                    await link.stop()
        except CunxiangError as exc:
            raise CommandError(exc.message) from None
        finally:
            await runtime.engine.dispose()
        print(json.dumps(result.as_json(), ensure_ascii=False, indent=2))
        return 0 if result.state == RUN_SUCCESS else 1

    return asyncio.run(run())


def _safe_url(settings: Settings) -> str:
    return make_url(settings.database_url).render_as_string(hide_password=True)


# -- speech commands ------------------------------------------------------------------------------


def cmd_tts_normalize(settings: Settings, args: argparse.Namespace) -> int:
    try:
        print(normalize(args.text, max_chars=settings.tts.max_chars))
    except CunxiangError as exc:
        raise CommandError(exc.message) from None
    return 0


def cmd_tts_check(settings: Settings, args: argparse.Namespace) -> int:
    result = privacy.check(args.text)
    blocking = [finding for finding in result.findings if finding.blocking]
    if blocking:
        print(f"发现 {len(blocking)} 处不能播报或公开的个人号码，不能播出：")
    for finding in result.findings:
        label = "不能播报" if finding.blocking else "提醒"
        masked = result.masked_text[finding.start : finding.end]
        print(f"  [{label}] {finding.message}（{masked}）")
    if result.findings:
        print("隐去后的文字：")
        print(result.masked_text)
    else:
        print("未发现身份证号、银行卡号或手机号。")
    return 1 if blocking else 0


def _speakable(text: str, *, mask: bool, label: str, progress: _Progress | None = None) -> str:
    """Refuse text carrying personal numbers unless asked to mask them (then mask them all)."""
    result = privacy.check(text)
    if result.blocking and not mask:
        reasons = "；".join(finding.message for finding in result.findings if finding.blocking)
        raise CommandError(f"{label}含有不能播报的个人号码：{reasons} 请先修改，或加 --mask 按隐去后的文字合成。")
    for finding in result.warnings:
        if not mask:
            if progress is not None:
                progress.clear()
            print(f"cunxiang: 提醒（{label}）：{finding.message}", file=sys.stderr)
    return result.masked_text if mask else text


def _render_report(out: Path, result: ProductionResult) -> str:
    voice = f" ({result.voice['name']})" if result.voice else ""
    return (
        f"{out}: {result.duration_s:.1f} s, {result.integrated_lufs:.1f} LUFS, "
        f"true peak {result.true_peak_dbtp:.1f} dBTP, engine {result.engine}{voice}"
        f"{', from cache' if result.cached else ''}"
    )


def _load_notices(path: Path, *, many: bool) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CommandError(f"{path} is not valid JSON: {exc}") from None
    notices = data if many else [data]
    if many and not isinstance(data, list):
        raise CommandError(f"{path} must hold a JSON list of notices")
    for index, notice in enumerate(notices, start=1):
        if not isinstance(notice, dict) or not notice_text(notice):
            raise CommandError(f"{path}: notice {index} has neither a title nor a body")
    return notices


class _Progress:
    """A progress bar on stderr when it is a terminal; one plain line per step when it is not (CI logs)."""

    WIDTH = 24

    def __init__(self, total: int) -> None:
        self.total = total
        self.interactive = sys.stderr.isatty()

    def step(self, done: int, label: str) -> None:
        if not self.interactive:
            print(f"[{done + 1}/{self.total}] {label}", file=sys.stderr, flush=True)
            return
        filled = round(self.WIDTH * done / self.total) if self.total else self.WIDTH
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        print(f"\r\033[K[{bar}] {done}/{self.total} {label[:30]}", end="", file=sys.stderr, flush=True)

    def clear(self) -> None:
        """Wipe the bar so a result line printed next is not mixed into it."""
        if self.interactive:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


def cmd_render(settings: Settings, args: argparse.Namespace) -> int:
    if args.batch is not None:
        if args.out_dir is None:
            raise CommandError("render --batch needs --out-dir")
    elif args.out is None:
        raise CommandError("render needs --out PATH")
    if args.repeat is not None and args.repeat < 1:
        raise CommandError("--repeat must be at least 1")
    profile = Profile(args.profile) if args.profile else _profile_for(args.out)
    if settings.log_level != "DEBUG":
        # A fallback shows in the report ("engine espeak"); the chain's warnings would only add noise here.
        for name in ("tts", "common.health"):
            logging.getLogger(name).setLevel(logging.ERROR)
    request = VoiceRequest(engine=args.engine, voice=args.voice, rate=args.rate, volume=args.volume, pitch=args.pitch)
    speech = build_speech(settings, SystemClock())
    options: dict[str, Any] = {
        "repeats": args.repeat,
        "chime": False if args.no_chime else None,
        "profiles": (profile,),
    }

    async def one(text: str) -> ProductionResult:
        return await speech.producer.render_text(text, voice=request, closing_text=args.closing, **options)

    async def run() -> int:
        if args.recording is not None:
            if not args.recording.exists():
                raise CommandError(f"no such recording: {args.recording}")
            result = await speech.producer.render_recording(args.recording, **options)
            return _deliver(result, profile, args.out)
        if args.batch is None:
            text = args.text if args.text is not None else notice_text(_load_notices(args.notice, many=False)[0])
            return _deliver(await one(_speakable(text, mask=args.mask, label="文字")), profile, args.out)
        notices = _load_notices(args.batch, many=True)
        progress = _Progress(len(notices))
        failed = 0
        for index, notice in enumerate(notices, start=1):
            label = str(notice.get("title") or f"notice {index}")
            progress.step(index - 1, label)
            out = args.out_dir / f"{index:03d}-{notice.get('kind') or 'notice'}.{PROFILES[profile].suffix}"
            try:
                text = _speakable(notice_text(notice), mask=args.mask, label=f"第{index}条通知", progress=progress)
                line = _deliver_line(await one(text), profile, out)
            except (CunxiangError, CommandError) as exc:
                failed += 1
                message = exc.message if isinstance(exc, CunxiangError) else str(exc)
                progress.clear()
                print(f"cunxiang: notice {index} ({label}): {message}", file=sys.stderr)
                continue
            progress.clear()
            print(line, flush=True)
        progress.clear()
        print(f"{len(notices) - failed} of {len(notices)} notices rendered into {args.out_dir}", file=sys.stderr)
        return 1 if failed else 0

    try:
        return asyncio.run(run())
    except CunxiangError as exc:
        raise CommandError(str(exc)) from None


def _profile_for(out: Path | None) -> Profile:
    """The profile an output name suggests (.wav is the Asterisk profile, .ulaw RTP); MP3 otherwise."""
    suffix = out.suffix.lower() if out is not None else ""
    return {".wav": Profile.ASTERISK, ".ulaw": Profile.RTP}.get(suffix, Profile.MP3)


def _deliver_line(result: ProductionResult, profile: Profile, out: Path) -> str:
    try:
        atomic_copy(result.files[profile], out)
    except OSError as exc:
        raise CommandError(f"cannot write {out}: {exc.strerror or exc}") from None
    return _render_report(out, result)


def _deliver(result: ProductionResult, profile: Profile, out: Path) -> int:
    print(_deliver_line(result, profile, out))
    return 0


# -- the hotline -----------------------------------------------------------------------------------

ASTERISK_DIR = Path(__file__).resolve().parent / "deploy" / "asterisk"
SANDBOX_SCRIPT = ASTERISK_DIR / "sandbox.sh"


def _generated_secret(settings: Settings, value: str, filename: str) -> str:
    """A secret from the settings, else generated once into the data directory (mode 0600)."""
    if value:
        return value
    return generated_once(settings.data_dir / filename, lambda: secrets.token_urlsafe(24))


def sandbox_root(settings: Settings) -> Path | None:
    """The provisioned sandbox root (settings, else ``sandbox.sh root``); None when there is none."""
    if settings.sandbox.root:
        return Path(settings.sandbox.root)
    try:
        done = subprocess.run([str(SANDBOX_SCRIPT), "root"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    root = done.stdout.strip()
    return Path(root) if done.returncode == 0 and root else None


def _ivr_timings(settings: Settings) -> IvrTimings:
    ivr = settings.ivr
    return IvrTimings(
        menu_timeout_s=ivr.menu_timeout_s,
        menu_attempts=ivr.menu_attempts,
        digit_timeout_s=ivr.digit_timeout_s,
        number_attempts=ivr.number_attempts,
        record_max_s=ivr.record_max_s,
        record_silence_s=ivr.record_silence_s,
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
    )
    problem = f"asterisk = external needs {', '.join(missing)}" if missing else None
    return paths, problem


def telephony_config(settings: Settings, *, root: Path | None = None) -> TelephonyConfig | None:
    """How to reach and configure Asterisk; None with ``asterisk = none``."""
    if settings.asterisk == "none":
        return None
    ami_secret = _generated_secret(settings, settings.ami.secret, "ami.secret")
    softphone_password = _generated_secret(settings, settings.sandbox.softphone_password, "softphone.secret")
    problem = None
    sandbox = None
    if settings.asterisk == "sandbox":
        root = root or sandbox_root(settings)
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


def hotline_config(settings: Settings, telephony: TelephonyConfig | None) -> HotlineConfig:
    config = settings.hotline
    return HotlineConfig(
        recordings_dir=Path(config.recordings_dir) if config.recordings_dir else settings.data_dir / "recordings",
        min_speech_s=config.min_speech_s,
        mixmonitor_wait_s=config.mixmonitor_wait_s,
        retention_days=config.retention_days,
        county_name=settings.county_name,
        digit_pause_ms=settings.ivr.digit_pause_ms,
        lead_in_ms=settings.ivr.lead_in_ms,
        telephony=telephony,
    )


def build_hotline_part(
    settings: Settings,
    clock: Clock,
    sessions: async_sessionmaker[AsyncSession],
    health: HealthRegistry,
    speech: Speech,
    *,
    root: Path | None = None,
) -> Hotline:
    voice = VoiceRequest(voice=settings.ivr.prompt_voice or None, rate=settings.ivr.prompt_rate)
    return build_hotline(
        hotline_config(settings, telephony_config(settings, root=root)),
        sessions=sessions,
        clock=clock,
        health=health,
        renderer=SpeechRenderer(speech.chain, speech.tools, voice=voice),
        tools=speech.tools,
        page_headers=AUTO_ANSWER_HEADERS[settings.broadcast.sip_auto_answer],
    )


def cases_config(settings: Settings) -> CasesConfig:
    config = settings.cases
    return CasesConfig(
        clocks=ClockPolicy(
            zone=settings.zone,
            acceptance_days=config.acceptance_days,
            resolution_days=config.resolution_days,
            max_extension_days=config.max_extension_days,
            followup_after_days=config.followup_after_days,
            reopen_min_days=config.reopen_min_days,
            counting=config.day_counting,
            shift_off_rest_days=config.shift_off_rest_days,
            due_soon_days=config.due_soon_days,
        ),
        callbacks=CallbackConfig(
            dial_template=config.dial_template,
            operator_ring_s=config.callback_operator_ring_s,
            request_ttl_s=config.callback_request_ttl_s,
            poll_s=config.callback_poll_s,
            result_timeout_s=config.callback_result_timeout_s,
        ),
        surveys=SurveyConfig(
            enabled=config.followup_calls,
            call_start=config.followup_call_start,
            call_end=config.followup_call_end,
            attempts=config.followup_attempts,
            retry_interval_s=config.followup_retry_interval_s,
            ring_s=config.followup_ring_s,
            poll_s=config.followup_poll_s,
            concurrent_calls=config.followup_concurrent_calls,
            result_timeout_s=config.followup_result_timeout_s,
            dial_template=config.dial_template,
        ),
        note_max_chars=config.note_max_chars,
        page_size=config.page_size,
        export_max_rows=config.export_max_rows,
        case_number_length=settings.hotline.case_number_length,
        pin_length=settings.hotline.pin_length,
    )


def build_cases_part(
    settings: Settings,
    clock: Clock,
    sessions: async_sessionmaker[AsyncSession],
    health: HealthRegistry,
    hotline: Hotline,
) -> Cases:
    """The case ledger on top of the hotline: its recordings, and its line for callbacks and follow-ups."""
    media = hotline.media
    cases = build_cases(
        cases_config(settings),
        sessions=sessions,
        clock=clock,
        health=health,
        recordings=hotline.store,
        line=hotline.outbound,
        sentences=media.sentence if media is not None else None,
    )
    # A hotline call becomes a case through the workflow (the intake's CaseDesk protocol).
    hotline.intake.use_case_desk(cases.workflow)
    return cases


async def sandbox_up(settings: Settings, *, provision: bool) -> tuple[Sandbox, TelephonyConfig]:
    """Render our configuration into the sandbox instance and start it (or reload what changed)."""
    root = sandbox_root(settings)
    if root is None:
        if not provision:
            raise CommandError(f"the Asterisk sandbox is not provisioned: run {SANDBOX_SCRIPT} provision")
        print("provisioning the Asterisk sandbox (debootstrap of Debian sid; about a minute)…", flush=True)
        root = await Sandbox.provision(SANDBOX_SCRIPT)
    telephony = telephony_config(settings, root=root)
    assert telephony is not None and telephony.sandbox is not None
    sandbox = telephony.sandbox
    changed = sandbox.install(render_configuration(telephony.templates, telephony.render))
    status = await sandbox.status()
    if status.running:
        await sandbox.reload(changed)
    else:
        await sandbox.start()
    return sandbox, telephony


async def _sandbox_for_serve(settings: Settings) -> None:
    """``serve`` in sandbox mode starts the instance unless it runs; if it cannot, the service starts anyway."""
    try:
        sandbox, _telephony = await sandbox_up(settings, provision=False)
    except (CommandError, CunxiangError) as exc:
        detail = exc.detail if isinstance(exc, CunxiangError) and exc.detail else str(exc)
        print(f"cunxiang: warning: Asterisk not started ({detail}); the hotline will connect when it runs", flush=True)
        return
    print(f"Asterisk sandbox running: {sandbox.instance_dir}", flush=True)


def cmd_asterisk(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "render":
        telephony = telephony_config(settings)
        if telephony is None:
            raise CommandError("asterisk = none: there is no Asterisk configuration to render")
        files = render_configuration(telephony.templates, telephony.render)
        args.out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (args.out / name).write_text(text, encoding="utf-8")
        print(f"rendered {len(files)} files into {args.out} (manager.conf holds the AMI secret: keep it private)")
        return 0
    if settings.asterisk != "sandbox":
        raise CommandError(
            f"asterisk = {settings.asterisk}: this service does not run Asterisk itself "
            "(see the README: connecting a site's own Asterisk)"
        )

    async def run() -> int:
        if args.action == "up":
            sandbox, telephony = await sandbox_up(settings, provision=True)
            print(f"Asterisk sandbox running: {sandbox.instance_dir}")
            print(f"  AMI      {telephony.ami.host}:{telephony.ami.port} user {telephony.ami.username}")
            print(f"  FastAGI  {telephony.render.fastagi_url} (served by `cunxiang serve`)")
            print(
                f"  SIP      udp {telephony.render.sip_bind}:{telephony.render.sip_port}, softphone user "
                f"{telephony.render.softphone_user}, password in {settings.data_dir / 'softphone.secret'}"
                if not settings.sandbox.softphone_password
                else f"  SIP      udp {telephony.render.sip_bind}:{telephony.render.sip_port}, "
                f"softphone user {telephony.render.softphone_user}"
            )
            return 0
        root = sandbox_root(settings)
        if root is None:
            print("the Asterisk sandbox is not provisioned")
            return 3 if args.action == "status" else 0
        sandbox = Sandbox(SANDBOX_SCRIPT, root, settings.sandbox.instance)
        if args.action == "down":
            await sandbox.stop()
            print(f"Asterisk sandbox stopped: {sandbox.instance_dir}")
            return 0
        status = await sandbox.status()
        print(f"{'running' if status.running else 'stopped'}: {sandbox.instance_dir} ({status.detail})")
        return 0 if status.running else 3

    try:
        return asyncio.run(run())
    except CunxiangError as exc:
        raise CommandError(exc.detail or exc.message) from None


def cmd_prompts_install(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> int:
        runtime = build_runtime(settings)
        try:
            telephony = runtime.hotline.telephony
            if telephony is None or telephony.prompts is None:
                raise CommandError("asterisk = none: there is nowhere to install prompts")
            if telephony.config.problem:
                raise CommandError(telephony.config.problem)
            telephony.paths.prepare()
            report = await telephony.prompts.install(force=args.force)
        finally:
            await runtime.engine.dispose()
        for prompt_id in sorted(report.rendered):
            print(f"rendered {prompt_id}")
        for prompt_id, error in sorted(report.failed.items()):
            print(f"FAILED  {prompt_id}: {error}", file=sys.stderr)
        print(
            f"{len(report.rendered)} rendered, {len(report.kept)} unchanged, {len(report.failed)} failed, "
            f"in {telephony.prompts.target}"
        )
        return 1 if report.failed else 0

    return asyncio.run(run())


def _keys(text: str) -> list[str]:
    if text and not all(char in "0123456789*#," for char in text):
        raise CommandError("--keys: only 0-9, * and #, groups separated by commas (e.g. 2,12345678#)")
    return [group for group in text.split(",") if group] if text else []


async def _dial_test(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    runtime = build_runtime(settings)
    await ensure_ready(runtime)
    telephony = runtime.hotline.telephony
    if telephony is None or telephony.media is None:
        raise CommandError("asterisk = none: there is no hotline to call")
    if telephony.config.problem:
        raise CommandError(telephony.config.problem)
    # With no `serve` running this process stands in as the worker (FastAGI, tracker) for the call.
    lock = worker_lock(settings)
    own_worker = await lock.try_acquire()
    services: list[WorkerService] = list(runtime.hotline.worker_services) if own_worker else [telephony.link]
    started: list[WorkerService] = []
    try:
        for service in services:
            if service is telephony.reconciler or service is telephony.prompts:
                continue
            await service.start()
            started.append(service)
        await telephony.link.wait_connected(args.timeout)
        if own_worker and telephony.prompts is not None:
            await telephony.prompts.install()
        if args.audio is not None:
            if not args.audio.exists():
                raise CommandError(f"no such audio file: {args.audio}")
            audio = await telephony.media.upload(args.audio)
        else:
            audio = await telephony.media.sentence(DIAL_TEST_SENTENCE)
        script = VillagerScript(
            caller=args.caller,
            caller_name=args.caller_name or "",
            keys=_keys(args.keys),
            audio=audio,
            hangup_at=args.hangup_at,
        )
        call = await telephony.villager.call(script, timeout_s=args.timeout)
        outcome = await _settled_outcome(runtime.hotline, call.linkedid, args.timeout)
        return {"villager": call.as_dict(), **(outcome or {"outcome": None, "error": "no record of the call yet"})}
    finally:
        for service in reversed(started):
            with contextlib.suppress(Exception):
                await service.stop()
        if own_worker:
            await lock.release()
        await runtime.engine.dispose()


async def _settled_outcome(hotline: Hotline, linkedid: str, timeout_s: float) -> dict[str, Any] | None:
    """Poll until the call is settled and its recordings have left the spool (the worker may be another process)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    outcome = None
    while time.monotonic() < deadline:
        outcome = await hotline.intake.outcome(linkedid)
        if outcome is not None and not hotline.store.spool_files(linkedid):
            return outcome
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)
    return outcome


def cmd_hotline_dial_test(settings: Settings, args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(_dial_test(settings, args))
    except CunxiangError as exc:
        raise CommandError(exc.detail or exc.message) from None
    print(json.dumps(result, ensure_ascii=False, indent=2, default=_json_default))
    return 0 if result.get("outcome") else 1


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def cmd_cases_show(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> dict[str, Any] | None:
        runtime = build_runtime(settings)
        try:
            # A look at a sealed case is on record, from the command line too (the ledger logs it).
            viewer = Actor(user_id=None, username=f"cli:{os.environ.get('USER', 'unknown')}")
            case = await runtime.cases.ledger.by_number(args.number, viewer=viewer, via="cunxiang cases show")
            if case is None:
                return None
            data = case_json(case, await runtime.cases.replay.recordings(case.id))
            for recording in data["recordings"]:
                recording["file"] = str(runtime.cases.replay.files.path_of(recording["path"]))
            data["workflow"] = await _workflow_json(runtime, case.id)
            return data
        finally:
            await runtime.engine.dispose()

    data = asyncio.run(run())
    if data is None:
        raise CommandError(f"no case numbered {args.number}")
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2, default=_json_default))
    else:
        print(f"case {data['number']}: {data['status']}, {data['category']}{' (sealed)' if data['sealed'] else ''}")
        for recording in data["recordings"]:
            print(f"  {recording['kind']}: {recording['duration_s']:.1f} s  {recording['file']}")
    return 0


async def _workflow_json(runtime: Runtime, case_id: int) -> dict[str, Any]:
    """The case ledger's side of a case for ``cases show``: its workflow state and its history."""
    async with runtime.sessions() as session:
        ledger = await session.get(CaseLedger, case_id)
    state: dict[str, Any] = {}
    if ledger is not None:
        state = {
            column.name: getattr(ledger, column.key)
            for column in CaseLedger.__table__.columns
            if column.name not in ("case_id", "updated_at")
        }
    history = [
        {"at": event.at, "kind": event.kind, "by": event.username, "from": event.from_status, "to": event.to_status,
         "after": event.after, "note": event.note}
        for event in await runtime.cases.workflow.history(case_id)
    ]  # fmt: skip
    return {**state, "history": history}


# -- backup and restore ---------------------------------------------------------------------------


def backup_directories(settings: Settings) -> dict[str, Path]:
    """What a backup copies besides the database: recordings (hotline and broadcast) and produced audio."""
    recordings = hotline_config(settings, None).recordings_dir
    directories = {"recordings": recordings}
    notice_recordings = settings.data_dir / "recordings"
    if notice_recordings.resolve() != recordings.resolve():
        directories["notice_recordings"] = notice_recordings
    if settings.cases.backup_audio:
        directories["audio"] = settings.data_dir / "audio"
    return directories


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def _backup_failed(exc: backup.BackupError) -> CommandError:
    """The Chinese sentence for the person at the console, and the technical detail after it."""
    return CommandError(f"{exc.message}（{exc.detail}）" if exc.detail else exc.message)


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return _backup(settings, args)
    except backup.BackupError as exc:
        raise _backup_failed(exc) from None


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return _restore(settings, args)
    except backup.BackupError as exc:
        raise _backup_failed(exc) from None


def _backup(settings: Settings, args: argparse.Namespace) -> int:
    async def revision() -> str | None:
        runtime = build_runtime(settings)
        try:
            await ensure_ready(runtime)
            return await migrate.current_revision(runtime.engine)
        finally:
            await runtime.engine.dispose()

    current = asyncio.run(revision())
    print(f"backing up {_safe_url(settings)} (revision {current}) into {args.directory}", file=sys.stderr)
    manifest = backup.backup(
        settings.database_url,
        args.directory,
        backup_directories(settings),
        revision=current,
        pg_dump=settings.cases.pg_dump,
        timeout_s=settings.cases.backup_timeout_s,
        progress=_progress,
    )
    size = manifest.database_file.bytes + sum(entry.bytes for entry in manifest.files)
    counts = ", ".join(f"{count} {table}" for table, count in manifest.counts.items())
    print(
        f"backup complete: {args.directory} — database ({manifest.database_kind}{', ' + counts if counts else ''}), "
        f"{len(manifest.files)} files, {size / 1e6:.1f} MB; manifest.json lists every file with its SHA-256"
    )
    return 0


def _restore(settings: Settings, args: argparse.Namespace) -> int:
    """Verify the whole backup, make sure no service runs here, then put it back and migrate to this version."""
    manifest = backup.verify(args.directory, progress=_progress)
    known = {script.revision for script in ScriptDirectory.from_config(migrate.alembic_config("")).walk_revisions()}
    if manifest.revision is not None and manifest.revision not in known:
        raise CommandError(
            f"the backup is at database revision {manifest.revision}, unknown to this version: restore it with the "
            "version of cunxiang that made it (or a newer one)"
        )

    async def run() -> int:
        lock = worker_lock(settings)
        if not await lock.try_acquire():
            raise CommandError("the service is running on this database: stop it first (systemctl stop cunxiang)")
        try:
            runtime = build_runtime(settings)
            try:
                existing = await _existing_cases(runtime)
            finally:
                await runtime.engine.dispose()
            if existing and not args.force:
                raise CommandError(
                    f"this installation already holds {existing} cases; restoring would replace them "
                    "(add --force to do it anyway: the current recordings are kept beside the restored ones)"
                )
            await asyncio.to_thread(
                backup.restore,
                args.directory,
                settings.database_url,
                backup_directories(settings),
                pg_restore=settings.cases.pg_restore,
                timeout_s=settings.cases.backup_timeout_s,
                progress=_progress,
            )
            await migrate.upgrade(settings.database_url)
        finally:
            await lock.release()
        return 0

    asyncio.run(run())
    print(
        f"restored {args.directory} (made {manifest.created_at}): database and {len(manifest.files)} files, "
        f"checksums verified; database now at revision {migrate.head_revision()}"
    )
    return 0


async def _existing_cases(runtime: Runtime) -> int:
    """How many cases the target already holds (0 for a fresh or empty database)."""
    try:
        if await migrate.current_revision(runtime.engine) is None:
            return 0
        async with runtime.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(Case)) or 0)
    except (OperationalError, DBAPIError):
        return 0


# -- argument parsing -----------------------------------------------------------------------------


Command = Callable[[Settings, argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cunxiang",
        description="村响: village loudspeakers and a petition hotline. "
        "Settings come from CUNXIANG_* environment variables and an optional TOML file.",
    )
    parser.add_argument("--config", type=Path, help="TOML settings file (also CUNXIANG_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the web service (and, if elected, the worker)")
    serve.add_argument("--host", help="address to listen on (default: server.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: server.port, 8080)")
    serve.set_defaults(func=cmd_serve)

    init = commands.add_parser("init", help="create or upgrade the database and create the first admin")
    init.add_argument("--admin-username", default="admin", help="name of the first admin (default: admin)")
    init.add_argument(
        "--admin-password-file", help="read the first admin's password from this file instead of generating one"
    )
    init.set_defaults(func=cmd_init)

    demo = commands.add_parser("demo", help="load the demo county (invented places and one account per role)")
    demo.set_defaults(func=cmd_demo)

    broadcast = commands.add_parser("broadcast", help="broadcasting tools: the speaker test (拨测)")
    broadcast_commands = broadcast.add_subparsers(dest="broadcast_command", required=True, metavar="BROADCAST_COMMAND")
    speaker_test = broadcast_commands.add_parser(
        "test", help="render a short item and play it now to one destination; print the per-speaker result as JSON"
    )
    speaker_test.add_argument("--text", default="村响广播测试，听到请回复。", help="what to say")
    destination = speaker_test.add_mutually_exclusive_group(required=True)
    destination.add_argument("--rtp", metavar="HOST:PORT", help="an RTP speaker or multicast group (PCMU, 20 ms)")
    destination.add_argument("--page", metavar="ENDPOINT", help="a SIP speaker (PJSIP endpoint) paged through Asterisk")
    destination.add_argument("--speaker", type=int, metavar="ID", help="a speaker of the area tree, by id")
    speaker_test.set_defaults(func=cmd_broadcast_test)

    tts = commands.add_parser("tts", help="speech text tools: spoken form, personal-number check")
    tts_commands = tts.add_subparsers(dest="tts_command", required=True, metavar="TTS_COMMAND")
    tts_normalize = tts_commands.add_parser("normalize", help="print TEXT as it will be spoken")
    tts_normalize.add_argument("text", metavar="TEXT")
    tts_normalize.set_defaults(func=cmd_tts_normalize)
    tts_check = tts_commands.add_parser(
        "check", help="look for ID, bank card and mobile numbers; exit 1 when one must not be broadcast"
    )
    tts_check.add_argument("text", metavar="TEXT")
    tts_check.set_defaults(func=cmd_tts_check)

    render = commands.add_parser("render", help="render a notice (or a batch, or a recording) to broadcast audio")
    source = render.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="notice text to speak")
    source.add_argument("--notice", type=Path, metavar="FILE.json", help='one notice: {"title": …, "body": …}')
    source.add_argument("--batch", type=Path, metavar="FILE.json", help="a JSON list of notices (needs --out-dir)")
    source.add_argument("--recording", type=Path, metavar="AUDIO", help="a person's recording (WAV/MP3/OGG/WebM)")
    render.add_argument("--engine", choices=["edge", "espeak"], help="use only this engine (default: the chain)")
    render.add_argument("--voice", help="voice name, e.g. zh-CN-liaoning-XiaobeiNeural")
    render.add_argument("--rate", help="signed percentage, e.g. -15%%")
    render.add_argument("--volume", help="signed percentage, e.g. +0%%")
    render.add_argument("--pitch", help="signed hertz, e.g. +0Hz")
    render.add_argument(
        "--repeat", type=int, metavar="N", help="times the message is read (default: audio.default_repeats)"
    )
    render.add_argument("--closing", metavar="TEXT", help="a closing line read once after the repeats")
    render.add_argument("--no-chime", action="store_true", help="leave out the attention chime")
    render.add_argument(
        "--profile",
        choices=[profile.value for profile in Profile],
        help="output format (default: from the --out suffix: .wav asterisk, .ulaw rtp, else mp3)",
    )
    render.add_argument("--mask", action="store_true", help="mask ID/card/mobile numbers instead of refusing the text")
    render.add_argument("--out", type=Path, metavar="PATH", help="where to write the audio")
    render.add_argument("--out-dir", type=Path, metavar="DIR", help="where --batch writes its files")
    render.set_defaults(func=cmd_render)

    asterisk = commands.add_parser(
        "asterisk", help="the Asterisk sandbox: up (provision, render, start or reload), down, status; render FILES"
    )
    asterisk.add_argument("action", choices=["up", "down", "status", "render"])
    asterisk.add_argument(
        "--out", type=Path, default=Path("asterisk-config"), help="render: directory for the configuration files"
    )
    asterisk.set_defaults(func=cmd_asterisk)

    prompts = commands.add_parser("prompts", help="the hotline's voice prompts")
    prompts_commands = prompts.add_subparsers(dest="prompts_command", required=True, metavar="PROMPTS_COMMAND")
    prompts_install = prompts_commands.add_parser(
        "install", help="render new or changed prompts with our TTS and install them where Asterisk plays them"
    )
    prompts_install.add_argument("--force", action="store_true", help="render every prompt again")
    prompts_install.set_defaults(func=cmd_prompts_install)

    hotline = commands.add_parser("hotline", help="the petition hotline")
    hotline_commands = hotline.add_subparsers(dest="hotline_command", required=True, metavar="HOTLINE_COMMAND")
    dial = hotline_commands.add_parser(
        "dial-test", help="拨测: a simulated villager calls the hotline through Asterisk; prints what became of it"
    )
    dial.add_argument("--caller", default="13800001111", help="the villager's number (default: 13800001111)")
    dial.add_argument("--caller-name", help="the caller name the network shows")
    dial.add_argument(
        "--keys",
        default="1",
        help="keys for each prompt that asks, comma-separated: 1, 3, 0, or 2,<case number># (empty: press nothing)",
    )
    dial.add_argument("--audio", type=Path, help="what the villager says (any audio file; default: a TTS sentence)")
    dial.add_argument("--hangup-at", choices=["welcome", "recording", "end"], default="end")
    dial.add_argument("--timeout", type=float, default=180.0, help="seconds the whole test may take (default: 180)")
    dial.set_defaults(func=cmd_hotline_dial_test)

    cases = commands.add_parser("cases", help="cases (诉求案件)")
    cases_commands = cases.add_subparsers(dest="cases_command", required=True, metavar="CASES_COMMAND")
    cases_show = cases_commands.add_parser("show", help="a case with its recordings")
    cases_show.add_argument("number", metavar="NUMBER")
    cases_show.add_argument("--json", action="store_true", help="print JSON")
    cases_show.set_defaults(func=cmd_cases_show)

    backup_command = commands.add_parser(
        "backup", help="copy the database (while the service runs), recordings and produced audio into DIR"
    )
    backup_command.add_argument("directory", type=Path, metavar="DIR", help="a new or empty directory")
    backup_command.set_defaults(func=cmd_backup)
    restore_command = commands.add_parser(
        "restore", help="check a backup's checksums and restore it (the service must be stopped)"
    )
    restore_command.add_argument("directory", type=Path, metavar="DIR", help="a directory made by cunxiang backup")
    restore_command.add_argument(
        "--force", action="store_true", help="replace an installation that already holds cases"
    )
    restore_command.set_defaults(func=cmd_restore)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"cunxiang: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    # Nothing we write (database, recordings, keys) is for other local users to read.
    os.umask(0o077)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.log_level != "DEBUG":
        logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    for name in unknown_environment_names(os.environ, SCRIPT_VARIABLES):
        log.warning("ignoring %s: no such setting", name)
    command: Command = args.func
    try:
        code = command(settings, args)
    except (StartupError, CommandError) as exc:
        print(f"cunxiang: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except CunxiangError as exc:
        print(f"cunxiang: {exc.detail or exc.message}", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(code)


if __name__ == "__main__":
    main()
