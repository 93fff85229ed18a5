"""村响's composition root: every part built from the settings, in dependency order, and handed down explicitly.

settings → database → accounts and areas → speech → hotline → cases →
broadcasting → schedules → alerts → web app. One pattern for every part: it reads its
own section of the settings once (``XConfig.from_settings``, next to the
part's code; a config keeps a settings section whole where the part uses it as
it is, and adds what is derived, such as paths), and its ``build_x(config,
*, deps)`` returns the part with its ``services`` (run in every process) and
``worker_services`` (run only by the elected worker, in the order the part
gives). Nothing here copies settings field by field.

What one domain needs of another crosses here, as an object typed by a small
Protocol the receiving domain defines: the hotline's pager for broadcasting's
SIP paging, the hotline's outbound calls, recording store and sentence maker
for the case workflow, the dispatcher for the scheduler, the workflow for the
hotline's intake. The hotline is built before the cases (they need its
telephony), so the intake gets its case desk once both exist — the one
connection made after building.

Long-lived parts are aiohttp cleanup contexts, started in order and stopped in
reverse. Nothing below this module reads the environment or a global; the
commands (``cli/``) build the same runtime and call the same services.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from accounts.principal import Principal
from accounts.service import AccountService
from alerts.part import Alerts, build_alerts
from alerts.service import SYSTEM_DISPLAY_NAME, SYSTEM_USERNAME, AlertsConfig
from areas.addresses import AddressPolicy
from areas.demo import DEMO_COUNTY_CODE
from areas.service import AreaService
from broadcast.part import BroadcastConfig, Broadcasting, build_broadcasting
from broadcast.production import ItemTooLong
from broadcast.transports import LiveLeg, SpeakerResult, SpeakerTarget
from cases.part import Cases, CasesConfig, build_cases
from common.clock import Clock, SystemClock
from common.errors import CunxiangError, InsufficientStorage, InvalidInput, ServiceUnavailable, StartupError
from common.health import HealthRegistry
from common.lifecycle import Service, ServiceGroup
from hotline.live_rooms import ConferenceRooms, RoomLeg
from hotline.part import Hotline, HotlineConfig, build_hotline, find_sandbox_root, sandbox_up
from ops.part import Ops, OpsConfig, build_ops
from phonecast.desk import PhoneAirRefused
from phonecast.part import Phonecast, PhonecastConfig, build_phonecast
from schedules.part import Schedules, SchedulesConfig, build_schedules
from settings import Settings
from storage import migrate
from storage.audit import Actor
from storage.db import DatabaseConfig, check_connection, database_health, make_session_factory
from storage.models import RUN_FAILED, RUN_SUCCESS, County
from storage.worker_lock import WorkerElection, worker_lock
from tts.part import Speech, SpeechConfig, build_speech
from web import domains, keys
from web.app import build_app
from web.keys import WebConfig
from web.views import alerts as alerts_views
from web.views import broadcast as broadcast_views
from web.views import cases as cases_views
from web.views import hotline as hotline_views
from web.views import notice_pages
from web.views import ops as ops_views
from web.views import phonecast as phonecast_views
from web.views import schedules as schedules_views

log = logging.getLogger("cunxiang")


def version() -> str:
    try:
        return metadata.version("cunxiang")
    except metadata.PackageNotFoundError:
        return "0+unknown"


# -- the runtime: every part built from the settings, nothing started yet -----------------------


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    database: DatabaseConfig
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    accounts: AccountService
    areas: AreaService
    health: HealthRegistry
    speech: Speech
    hotline: Hotline
    cases: Cases
    broadcasting: Broadcasting
    schedules: Schedules
    ops: Ops
    alerts: Alerts
    # 手机喊话: ``phonecast.line_desk`` is the line's :class:`hotline.phonecast.PhonecastDesk`.
    phonecast: Phonecast

    @property
    def services(self) -> list[Service]:
        """Run in every process while the app runs (the disk and clock watches first, the speech engines' prober,
        the cases' own: the sealed-denials queue and the live pages' change feed)."""
        return [*self.ops.services, *self.speech.services, *self.cases.services]

    @property
    def worker_services(self) -> list[Service]:
        """Started in this order by the elected worker, stopped in reverse.

        The hotline's AMI link goes before the dispatcher (SIP paging uses it), the
        dispatcher before the scheduler that feeds it, and the replays of what a stop cut
        or left queued after the scheduler's catch-up (a slot of the same notice caught up
        makes an older one's replay needless).
        """
        return [
            *self.hotline.worker_services,
            *self.cases.worker_services,
            *self.broadcasting.worker_services,
            *self.schedules.worker_services,
            *self.broadcasting.after_catch_up_services,
            *self.alerts.worker_services,
            *self.ops.worker_services,
            *self.phonecast.worker_services,
        ]


def build_runtime(settings: Settings, *, clock: Clock | None = None, sandbox_root: Path | None = None) -> Runtime:
    """Every part, built in dependency order from its own configuration; nothing runs yet.

    ``sandbox_root`` is where the Asterisk sandbox was found (``hotline.part.find_sandbox_root``,
    asked before this, off the event loop): building runs no program.
    """
    clock = clock or SystemClock()
    database = DatabaseConfig.from_settings(settings)
    engine = database.create_engine()
    sessions = make_session_factory(engine)
    health = HealthRegistry()
    health.register("database", partial(database_health, engine))
    speech = build_speech(SpeechConfig.from_settings(settings), clock=clock, health=health)
    hotline = build_hotline(
        HotlineConfig.from_settings(settings, sandbox_root=sandbox_root),
        sessions=sessions,
        clock=clock,
        health=health,
        speech=speech,
    )
    cases = build_cases(
        CasesConfig.from_settings(settings),
        sessions=sessions,
        clock=clock,
        health=health,
        recordings=hotline.store,
        line=hotline.outbound,
        sentences=hotline.sentences,
    )
    # A hotline call becomes a case through the workflow (the intake's CaseDesk protocol), and what the
    # intake commits (a call's case, a missed call, a recording) shows on the operators' screens at once.
    hotline.intake.use_case_desk(cases.workflow)
    hotline.intake.on_commit(cases.changes.poke)
    broadcasting = build_broadcasting(
        BroadcastConfig.from_settings(settings),
        sessions=sessions,
        clock=clock,
        health=health,
        speech=speech,
        pager=hotline.pager,
    )
    schedules = build_schedules(
        SchedulesConfig.from_settings(settings),
        sessions=sessions,
        clock=clock,
        health=health,
        occurrences=broadcasting.dispatcher,
    )
    # A notice changed in this process re-plans its schedules at once (other processes: the resync).
    broadcasting.notices.on_schedule_change(schedules.scheduler.schedule_changed)
    ops = build_ops(
        OpsConfig.from_settings(settings),
        watched={
            "recordings": hotline.store.root,
            "spool": hotline.store.spool,
            "uploads": broadcasting.notices.recordings_dir,
            "audio": speech.cache.root,
        },
        sessions=sessions,
        clock=clock,
        health=health,
        cache_bytes=speech.cache.total_bytes,
        version=version(),
        # Alarms phone the duty list through the hotline's line and speak through its TTS; without the link
        # or without the worker, by Asterisk call files; the worker's sign of life is the dispatcher's heartbeat.
        line=hotline.outbound,
        speak=hotline.sentences,
        spool=hotline.call_files,
        worker_heartbeat=broadcasting.dispatcher.name,
    )
    # Uploads and approvals wait for disk space (the hotline, which records whatever happens, does not ask).
    broadcasting.notices.use_disk_space(ops.disk)
    alerts = build_alerts(
        AlertsConfig.from_settings(settings),
        sessions=sessions,
        clock=clock,
        health=health,
        broadcaster=EmergencyAirer(broadcasting),
    )
    # A cadre's recording from the phone becomes an item and goes on the air through broadcasting.
    phonecast = build_phonecast(
        PhonecastConfig.from_settings(settings),
        sessions=sessions,
        clock=clock,
        airer=PhoneAirer(broadcasting),
    )
    # 实时喊话: a live call's speakers are legs of the hotline's conference for that call.
    if hotline.live_rooms is not None:
        broadcasting.dispatcher.use_live_rooms(LiveRoomsOverAsterisk(hotline.live_rooms))
    # 手机喊话: the phone-broadcast line (hotline/) asks this desk who may broadcast and airs what they record
    # (hotline.phonecast.PhonecastDesk); without one every caller would hear the polite refusal.
    hotline.use_phonecast_desk(phonecast.line_desk)
    return Runtime(
        settings=settings,
        clock=clock,
        database=database,
        engine=engine,
        sessions=sessions,
        accounts=AccountService.from_settings(settings.security, settings.server, sessions, clock),
        areas=AreaService(sessions, clock, AddressPolicy.from_settings(settings.broadcast)),
        health=health,
        speech=speech,
        hotline=hotline,
        cases=cases,
        broadcasting=broadcasting,
        schedules=schedules,
        ops=ops,
        alerts=alerts,
        phonecast=phonecast,
    )


class LiveRoomsOverAsterisk:
    """Broadcasting's :class:`broadcast.transports.LiveRooms`, satisfied by the hotline's conference rooms.

    The hotline speaks in legs and their outcomes (it may not import broadcasting); here each leg's outcome
    becomes one :class:`SpeakerResult` per speaker it reaches (a multicast leg reaches a whole zone group).
    """

    def __init__(self, rooms: ConferenceRooms) -> None:
        self._rooms = rooms

    async def connect(
        self,
        room: str,
        legs: Sequence[LiveLeg],
        stop: asyncio.Event,
        *,
        on_leg: Callable[[LiveLeg, str | None], None] | None = None,
    ) -> list[SpeakerResult]:
        room_legs = [
            RoomLeg(leg.kind, leg.address, ttl=leg.ttl, interface=leg.interface, loop=leg.loop) for leg in legs
        ]

        def told(index: int, error: str | None) -> None:
            if on_leg is not None:
                on_leg(legs[index], error)

        outcomes = await self._rooms.connect(room, room_legs, stop, on_leg=told)
        results = []
        for leg, outcome in zip(legs, outcomes, strict=True):
            transport = "sip" if leg.kind == "sip" else "rtp"
            joined = outcome.answered_at is not None
            for speaker_id in leg.speaker_ids:
                results.append(
                    SpeakerResult(
                        SpeakerTarget(transport, leg.address, speaker_id=speaker_id),
                        RUN_SUCCESS if joined else RUN_FAILED,
                        started_at=outcome.answered_at,
                        ended_at=outcome.ended_at,
                        error=None if joined else outcome.error or "未接入",
                    )
                )
        return results


class EmergencyAirer:
    """Alerts' :class:`alerts.service.AlertBroadcaster`, satisfied by the emergency path.

    An alert that airs becomes an approved emergency notice written by the alerts' system account (official
    text: the personal-number guard shows, never blocks), queued at emergency priority; stopping it is the
    dispatcher's cancel (out of every queue, stopped where it plays).
    """

    def __init__(self, broadcasting: Broadcasting) -> None:
        self._notices = broadcasting.notices
        self._dispatcher = broadcasting.dispatcher

    async def air(self, *, author_id: int, title: str, text: str, zone_ids: Sequence[int]) -> tuple[int, int]:
        system = Principal(
            user_id=author_id,
            username=SYSTEM_USERNAME,
            display_name=SYSTEM_DISPLAY_NAME,
            roles=frozenset(),
            county_wide=True,
            township_ids=frozenset(),
            can_emergency=True,
        )
        notice = await self._notices.create_emergency(system, title=title, body=text, township_id=None, official=True)
        broadcast_id = await self._dispatcher.request(
            notice_id=notice.id, zone_ids=zone_ids, origin="emergency", requested_by=author_id
        )
        return notice.id, broadcast_id

    async def stop(self, broadcast_id: int, reason: str) -> None:
        await self._dispatcher.cancel(broadcast_id, reason)

    async def replay(self, *, notice_id: int, zone_ids: Sequence[int], author_id: int) -> int:
        return await self._dispatcher.request(
            notice_id=notice_id, zone_ids=zone_ids, origin="emergency", requested_by=author_id
        )


class PhoneAirer:
    """手机喊话's :class:`phonecast.desk.PhoneAirer`, satisfied by broadcasting.

    A recording becomes an approved item of the phone's kind (chime, loudness, repeats, the length cap, the disk
    watch), queued at the phone's priority class; broadcasting's refusals become the reasons the line knows.
    """

    def __init__(self, broadcasting: Broadcasting) -> None:
        self._notices = broadcasting.notices
        self._dispatcher = broadcasting.dispatcher

    async def make_item(
        self, author: Actor, *, title: str, township_id: int | None, recording: Path, repeats: int
    ) -> int:
        try:
            notice = await self._notices.create_phone_recording(
                author, title=title, township_id=township_id, recording=recording, repeats=repeats
            )
        except ItemTooLong as exc:
            raise PhoneAirRefused("too_long", exc.detail or exc.message) from exc
        except InsufficientStorage as exc:
            raise PhoneAirRefused("disk_full", exc.detail or exc.message) from exc
        except InvalidInput as exc:
            # Not audio, or past the recording limit (audio.max_recording_s).
            reason = "too_long" if "太长" in exc.message else "failed"
            raise PhoneAirRefused(reason, exc.detail or exc.message) from exc
        return notice.id

    async def air(
        self, *, item_id: int, zone_ids: Sequence[int], requested_by: int, quiet_exempt: bool, after_live: bool = False
    ) -> int:
        return await self._dispatcher.request(
            notice_id=item_id,
            zone_ids=zone_ids,
            origin="manual",
            requested_by=requested_by,
            quiet_exempt=quiet_exempt,
            after_live=after_live,
        )

    async def go_live(
        self,
        *,
        zone_ids: Sequence[int],
        room: str,
        title: str,
        requested_by: int,
        quiet_exempt: bool,
        preempted: asyncio.Event,
    ) -> tuple[str, int | None]:
        decided = await self._dispatcher.go_live(
            zone_ids=zone_ids,
            room=room,
            title=title,
            requested_by=requested_by,
            quiet_exempt=quiet_exempt,
            preempted=preempted,
        )
        return decided.status, decided.broadcast_id

    async def end_live(self, broadcast_id: int) -> None:
        await self._dispatcher.end_live(broadcast_id)


@contextlib.asynccontextmanager
async def opened_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """A runtime for one job outside the web app (a command): its database engine is disposed after."""
    runtime = build_runtime(settings, sandbox_root=await find_sandbox_root(settings))
    try:
        yield runtime
    finally:
        # What a command queued (an audit entry) is written before the database goes.
        await ServiceGroup(runtime.services).stop()
        await runtime.engine.dispose()


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


# -- the web application and its lifecycle ------------------------------------------------------


def _database_context(runtime: Runtime) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(_app: web.Application) -> AsyncIterator[None]:
        yield
        await runtime.engine.dispose()

    return context


def _services_context(runtime: Runtime) -> Callable[[web.Application], AsyncIterator[None]]:
    """What every process runs while the app runs (all of them render speech)."""
    services = ServiceGroup(runtime.services)

    async def context(_app: web.Application) -> AsyncIterator[None]:
        await services.start()
        yield
        await services.stop()

    return context


def _worker_context(
    runtime: Runtime, election_holder: list[WorkerElection], *, elect_at_startup: bool
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Elect the one active worker; only it starts the worker services, in order, and stops them in reverse.

    Without ``elect_at_startup`` the election is made but not started: ``serve`` starts it once
    its port is bound (:func:`start_election`), so a process that cannot listen never claims work.
    """
    services = ServiceGroup(runtime.worker_services)

    async def context(_app: web.Application) -> AsyncIterator[None]:
        election = WorkerElection(
            worker_lock(runtime.database),
            on_elected=services.start,
            on_demoted=services.stop,
            interval_s=runtime.settings.worker.election_interval_s,
        )
        election_holder.append(election)

        async def probe() -> dict[str, Any]:
            return election.health()

        runtime.health.register("worker", probe)
        if elect_at_startup:
            await election.start()
        yield
        await election.stop()

    return context


async def start_election(app: web.Application) -> WorkerElection:
    """Start the worker election of an app made with ``elect_at_startup=False`` (``serve``, once it listens)."""
    election = app[ELECTION][0]
    await election.start()
    return election


def create_app(settings: Settings, *, runtime: Runtime | None = None, elect_at_startup: bool = True) -> web.Application:
    """The whole service as an aiohttp application (``serve`` runs it; tests drive it over HTTP).

    ``elect_at_startup``: the worker election starts with the app (tests, benchmarks). ``serve``
    passes False and starts it only after its port is bound: two ``serve`` started at once on one
    port must not let the one that then fails to listen claim a due slot and take it down with it.
    """
    runtime = runtime or build_runtime(settings)
    app = build_app(
        WebConfig.from_settings(settings),
        route_adders=(
            hotline_views.add_routes,
            cases_views.add_routes,
            broadcast_views.add_routes,
            notice_pages.add_routes,
            schedules_views.add_routes,
            ops_views.add_routes,
            alerts_views.add_routes,
            phonecast_views.add_routes,
        ),
        nav=(
            *broadcast_views.NAV,
            *alerts_views.NAV,
            *cases_views.NAV,
            *hotline_views.NAV,
            *phonecast_views.NAV,
            *ops_views.NAV,
        ),
        todo=(ops_views.todo, broadcast_views.todo, cases_views.todo, alerts_views.todo, phonecast_views.todo),
        version=version(),
    )
    app[keys.CLOCK] = runtime.clock
    app[keys.HEALTH] = runtime.health
    app[keys.SESSIONS] = runtime.sessions
    app[keys.ACCOUNTS] = runtime.accounts
    app[keys.AREAS] = runtime.areas
    app[keys.LIVE_MARK] = runtime.cases.changes.mark
    app[domains.PHONES] = runtime.hotline.phones
    app[domains.INTAKE] = runtime.hotline.intake
    app[domains.CASES] = runtime.cases
    broadcasting = runtime.broadcasting
    app[domains.NOTICES] = broadcasting.notices
    app[domains.DISPATCHER] = broadcasting.dispatcher
    app[domains.ASRUN] = broadcasting.asrun
    app[domains.TERMINALS] = broadcasting.terminals
    app[domains.SPEAKER_TESTER] = broadcasting.speaker_tester
    app[domains.SCHEDULES] = runtime.schedules.service
    app[domains.OPS] = runtime.ops
    app[domains.ALERTS] = runtime.alerts.service
    app[domains.PHONECAST] = runtime.phonecast
    app[RUNTIME] = runtime
    elections: list[WorkerElection] = []
    app[ELECTION] = elections
    app.cleanup_ctx.append(_database_context(runtime))
    app.cleanup_ctx.append(_services_context(runtime))
    # Live pages' event streams end when the app shuts down, not after the shutdown timeout.
    app.on_shutdown.append(_stream_closer(runtime))
    app.on_startup.append(_mark_demo)
    app.cleanup_ctx.append(_worker_context(runtime, elections, elect_at_startup=elect_at_startup))
    return app


def _stream_closer(runtime: Runtime) -> Callable[[web.Application], Awaitable[None]]:
    async def close(_app: web.Application) -> None:
        runtime.cases.changes.close_subscriptions()

    return close


RUNTIME = web.AppKey("runtime", Runtime)
ELECTION = web.AppKey("election", list[WorkerElection])


async def _mark_demo(app: web.Application) -> None:
    """A deployment holding the demo county says so on every page."""
    async with app[RUNTIME].sessions() as session:
        is_demo = await session.scalar(select(County.id).where(County.code == DEMO_COUNTY_CODE)) is not None
    if is_demo:
        config = app[keys.CONFIG]
        app[keys.CONFIG] = keys.WebConfig(**{**config.__dict__, "demo_banner": True})


def settle_heap() -> None:
    """Once the service is up: what start-up made (settings, the ORM's mappers, templates, prompts) lives as
    long as the process, so the garbage collector stops walking it. A full collection walked all of it, a
    pause of the one event loop that paces the loudspeakers and answers the operators' screens, at a
    moment nobody chose (during 20 hang-ups at once, the slowest calls' cases came that much later)."""
    gc.collect()
    gc.freeze()


async def serve(settings: Settings, host: str, port: int) -> None:
    """Build the runtime once, check the database, start the sandbox if ours, then serve until a signal."""
    root = await find_sandbox_root(settings)
    runtime = build_runtime(settings, sandbox_root=root)
    try:
        await ensure_ready(runtime)
    except BaseException:
        await runtime.engine.dispose()
        raise
    if settings.asterisk == "sandbox":
        await _sandbox_for_serve(settings, root)
    app = create_app(settings, runtime=runtime, elect_at_startup=False)
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=settings.server.shutdown_timeout_s
    )
    # From here on a signal stops the service cleanly (the worker, if elected, gives its work back).
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        # Only a process that is fully up (its port bound) may become the worker and claim work.
        election = await start_election(app)
        settle_heap()
        url = settings.server.public_url or f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
        print(
            f"村响 is running: open {url}/  (this process is the {election.role} worker; Ctrl+C stops it)", flush=True
        )
        logins = settings.data_dir / "demo-logins.txt"
        if logins.exists():
            print(f"Demo logins are in {logins.resolve()} (readable by its owner only)", flush=True)
        await stop.wait()
    finally:
        print("stopping…", flush=True)
        await runner.cleanup()


async def _sandbox_for_serve(settings: Settings, root: Path | None) -> None:
    """``serve`` in sandbox mode starts the instance unless it runs; if it cannot, the service starts anyway."""
    try:
        sandbox, _telephony = await sandbox_up(settings, provision=False, sandbox_root=root)
    except CunxiangError as exc:
        print(
            f"cunxiang: warning: Asterisk not started ({exc.detail or exc.message}); "
            "the hotline will connect when it runs",
            flush=True,
        )
        return
    print(f"Asterisk sandbox running: {sandbox.instance_dir}", flush=True)
