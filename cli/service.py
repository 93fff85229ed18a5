"""Running the service and setting it up: ``serve``, ``init``, ``demo``."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from accounts.service import AccountService
from areas.demo import load_demo
from broadcast.demo import load_demo_notices
from cases.demo import load_demo as load_demo_cases
from cli.base import CommandError, Commands, reason, safe_url
from common.errors import ServiceUnavailable, StartupError
from schedules.demo import load_demo_schedules
from server import Runtime, ensure_ready, opened_runtime, serve
from settings import Settings
from storage import migrate
from storage.audit import Actor
from storage.db import check_connection
from web.keys import session_key


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    host = args.host or settings.server.host
    port = args.port or settings.server.port
    asyncio.run(serve(settings, host, port))
    return 0


async def create_first_admin(accounts: AccountService, username: str, password: str | None) -> str | None:
    """Create the first admin unless an active one exists; returns the generated password, if any."""
    if await accounts.count_admins() > 0:
        return None
    _user, generated = await accounts.create_user(
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
        try:
            password = Path(args.admin_password_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            source = args.admin_password_file
            raise CommandError(f"cannot read the admin password from {source}: {reason(exc)}") from None

    async def run() -> str | None:
        async with opened_runtime(settings) as runtime:
            try:
                await check_connection(runtime.engine)
            except ServiceUnavailable as exc:
                raise StartupError(exc.detail or exc.message) from None
            await migrate.upgrade(settings.database_url)
            session_key(settings)
            return await create_first_admin(runtime.accounts, args.admin_username, password)

    generated = asyncio.run(run())
    print(f"database ready at revision {migrate.head_revision()} ({safe_url(settings)})")
    if generated is None:
        print("an active admin exists already; no account created")
    elif generated:
        print(f"created admin '{args.admin_username}' with password: {generated}")
        print("(shown once: write it down, then change it under 修改密码)")
    else:
        print(f"created admin '{args.admin_username}' with the password from {args.admin_password_file}")
    return 0


async def load_demo_broadcasting(runtime: Runtime) -> str:
    """The sample notices (broadcasting's demo), then their schedules (the schedules part's demo)."""
    notices = await load_demo_notices(runtime.sessions, runtime.broadcasting.notices)
    if notices.skipped is not None or notices.township_id is None:
        return notices.skipped or "no demo county: demo notices not loaded"
    scheduled = await load_demo_schedules(
        runtime.sessions,
        runtime.schedules.service,
        township_id=notices.township_id,
        notices=notices.approved,
        today=runtime.clock.now().astimezone(runtime.settings.zone).date(),
    )
    held = f"{notices.held} held back as drafts by the privacy guard"
    return f"demo notices: {len(notices.approved)} approved, {held}, {scheduled} schedules"


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> None:
        async with opened_runtime(settings) as runtime:
            await ensure_ready(runtime)  # before init: one line saying so, not the driver's traceback
            result = await load_demo(
                runtime.sessions, runtime.accounts, runtime.clock, settings.data_dir / "demo-logins.txt"
            )
            broadcasts = await load_demo_broadcasting(runtime)
            cases = await load_demo_cases(runtime.sessions, runtime.cases.workflow, clock=runtime.clock)
        print("demo county 示例县 " + ("created" if result.created_places else "already present, kept as it is"))
        if result.new_logins:
            print(f"new demo accounts: {', '.join(result.new_logins)}")
        print(f"demo logins: {result.logins_file.resolve()} (mode 0600)")
        print(broadcasts)
        print(cases)

    asyncio.run(run())
    return 0


def add_commands(commands: Commands) -> None:
    serve_command = commands.add_parser("serve", help="run the web service (and, if elected, the worker)")
    serve_command.add_argument("--host", help="address to listen on (default: server.host, 127.0.0.1)")
    serve_command.add_argument("--port", type=int, help="port to listen on (default: server.port, 8080)")
    serve_command.set_defaults(func=cmd_serve)

    init = commands.add_parser("init", help="create or upgrade the database and create the first admin")
    init.add_argument("--admin-username", default="admin", help="name of the first admin (default: admin)")
    init.add_argument(
        "--admin-password-file", help="read the first admin's password from this file instead of generating one"
    )
    init.set_defaults(func=cmd_init)

    demo = commands.add_parser("demo", help="load the demo county (invented places and one account per role)")
    demo.set_defaults(func=cmd_demo)
