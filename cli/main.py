"""The ``cunxiang`` command: the parser (each command group adds its own commands) and ``main()``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from sqlalchemy.exc import SQLAlchemyError

from cli.base import Command, CommandError, reason, safe_url
from common.errors import CunxiangError, StartupError
from settings import SettingsError, load_settings, unknown_environment_names

log = logging.getLogger("cunxiang")

# Environment variables read by our scripts rather than by the settings object.
SCRIPT_VARIABLES = (
    "CUNXIANG_ASTERISK_CACHE",
    "CUNXIANG_ASTERISK_BOOT_TIMEOUT",
    "CUNXIANG_ASTERISK_STOP_TIMEOUT",
    "CUNXIANG_TEST_",
)


# Each command's group module, in the order of --help: serve, init, demo; broadcast; tts, render; asterisk,
# prompts, hotline; cases; backup, restore. A process imports only the group of the command it runs, by name
# from this table: importing every group pulls in the whole service (server.py and every part, ~1.5 s of CPU
# per start), which `tts normalize` or `render` never use. Everything else imports at the top as usual.
GROUPS = {
    "serve": "cli.service",
    "init": "cli.service",
    "demo": "cli.service",
    "broadcast": "cli.broadcast",
    "tts": "cli.tts",
    "render": "cli.render",
    "asterisk": "cli.hotline",
    "prompts": "cli.hotline",
    "hotline": "cli.hotline",
    "cases": "cli.cases",
    "backup": "cli.backup",
    "restore": "cli.backup",
}


def chosen_group(argv: Sequence[str]) -> str | None:
    """The group module of the command ``argv`` names, or None (no command, --help, a mistake: every group)."""
    tokens = iter(argv)
    for token in tokens:
        if token == "--config":
            next(tokens, None)
        elif not token.startswith("--config="):
            return None if token.startswith("-") else GROUPS.get(token)
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given the arguments it will parse, with only the commands of the group they name."""
    parser = argparse.ArgumentParser(
        prog="cunxiang",
        description="村响: village loudspeakers and a petition hotline. "
        "Settings come from CUNXIANG_* environment variables and an optional TOML file.",
    )
    parser.add_argument("--config", type=Path, help="TOML settings file (also CUNXIANG_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = None if argv is None else chosen_group(argv)
    for group in [chosen] if chosen else dict.fromkeys(GROUPS.values()):
        importlib.import_module(group).add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
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
    except (StartupError, CommandError, SettingsError) as exc:
        fail(str(exc))
    except CunxiangError as exc:
        fail(exc.detail or exc.message)
    except SQLAlchemyError as exc:
        # A database that is not ours, not set up, or not reachable: what the driver says, in one line.
        log.debug("database error", exc_info=True)
        fail(f"the database at {safe_url(settings)} cannot be used: {reason(exc)} (is it set up? `cunxiang init`)")
    except OSError as exc:
        log.debug("system error", exc_info=True)
        fail(f"{str(exc.filename) + ': ' if exc.filename else ''}{reason(exc)}")
    except KeyboardInterrupt:
        fail("interrupted")
    except Exception as exc:
        # A bug: one line for the console, the whole story in the log for whoever debugs it.
        log.debug("unexpected error", exc_info=True)
        fail(f"{args.command} failed: {type(exc).__name__}: {reason(exc)} (CUNXIANG_LOG_LEVEL=DEBUG shows where)")
    raise SystemExit(code)


def fail(line: str) -> NoReturn:
    """Every command's failure: one line on stderr, exit status 1."""
    print(f"cunxiang: {line}", file=sys.stderr)
    raise SystemExit(1)


if __name__ == "__main__":
    main()
