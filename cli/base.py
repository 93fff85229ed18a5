"""What every command module shares: the command signature, its one-line error, and printing helpers."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime
from typing import TypeAlias

from sqlalchemy.engine import make_url

from settings import Settings

Command = Callable[[Settings, argparse.Namespace], int]
# The parser's table of sub-commands, which each command module adds its commands to.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CommandError(Exception):
    """A command was used wrongly or could not do its job; the message is one line."""


def reason(exc: BaseException) -> str:
    """The first line of what went wrong (a driver's own error, without SQLAlchemy's statement and link)."""
    cause = getattr(exc, "orig", None) or exc
    text = str(getattr(cause, "strerror", None) or cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__


def safe_url(settings: Settings) -> str:
    """The database URL without its password, for printing."""
    return make_url(settings.database_url).render_as_string(hide_password=True)


def json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
