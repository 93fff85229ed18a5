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
import logging
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from accounts.passwords import Passwords
from accounts.service import AccountService, ThrottlePolicy
from areas.demo import DEMO_COUNTY_CODE, load_demo
from areas.service import AreaService
from common.clock import Clock, SystemClock
from common.errors import CunxiangError, ServiceUnavailable
from common.health import HealthRegistry
from settings import Settings, SettingsError, load_settings, unknown_environment_names
from storage import migrate
from storage.audit import Actor
from storage.db import check_connection, create_engine, database_health, make_session_factory
from storage.models import County
from storage.worker_lock import FileWorkerLock, PostgresWorkerLock, WorkerElection, WorkerLock
from web import keys
from web.app import build_app

log = logging.getLogger("cunxiang")

# Environment variables read by our scripts rather than by the settings object.
SCRIPT_VARIABLES = ("CUNXIANG_ASTERISK_CACHE", "CUNXIANG_ASTERISK_BOOT_TIMEOUT", "CUNXIANG_TEST_")


class StartupError(Exception):
    """Start-up cannot go on; the message is one line for the operator."""


def version() -> str:
    try:
        return metadata.version("cunxiang")
    except metadata.PackageNotFoundError:
        return "0+unknown"


# -- the runtime: everything built from the settings, nothing started yet ------------------


class WorkerService(Protocol):
    """Something only the one active worker runs (scheduler, Asterisk link, FastAGI)."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


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
    return Runtime(
        settings=settings,
        clock=clock,
        engine=engine,
        sessions=sessions,
        passwords=passwords,
        accounts=AccountService(sessions, passwords, clock, throttle),
        areas=AreaService(sessions, clock),
        health=health,
    )


def session_key(settings: Settings) -> bytes:
    """The cookie encryption key: from settings, else generated once into the data directory (0600)."""
    if settings.security.session_key:
        text = settings.security.session_key
    else:
        path = settings.data_dir / "session.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
        text = path.read_text().strip()
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


def _worker_context(
    runtime: Runtime, election_holder: list[WorkerElection]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Elect the one active worker; only it starts the worker services, in order, and stops them in reverse."""

    async def start_services() -> None:
        for service in runtime.worker_services:
            log.info("starting %s", service.name)
            await service.start()

    async def stop_services() -> None:
        for service in reversed(runtime.worker_services):
            with contextlib.suppress(Exception):
                await service.stop()

    async def context(_app: web.Application) -> AsyncIterator[None]:
        election = WorkerElection(
            worker_lock(runtime.settings),
            on_elected=start_services,
            on_demoted=stop_services,
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
    app = build_app(config, version=version())
    app[keys.CLOCK] = runtime.clock
    app[keys.HEALTH] = runtime.health
    app[keys.SESSIONS] = runtime.sessions
    app[keys.ACCOUNTS] = runtime.accounts
    app[keys.AREAS] = runtime.areas
    app[RUNTIME] = runtime
    elections: list[WorkerElection] = []
    app[ELECTION] = elections
    app.cleanup_ctx.append(_database_context(runtime))
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
        finally:
            await runtime.engine.dispose()
        print("demo county 示例县 " + ("created" if result.created_places else "already present, kept as it is"))
        if result.new_logins:
            print(f"new demo accounts: {', '.join(result.new_logins)}")
        print(f"demo logins: {result.logins_file.resolve()} (mode 0600)")

    asyncio.run(run())
    return 0


def _safe_url(settings: Settings) -> str:
    return make_url(settings.database_url).render_as_string(hide_password=True)


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
    except StartupError as exc:
        print(f"cunxiang: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except CunxiangError as exc:
        print(f"cunxiang: {exc.detail or exc.message}", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(code)


if __name__ == "__main__":
    main()
