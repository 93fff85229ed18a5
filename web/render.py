"""Rendering pages: the shared context every template gets, flash messages, error pages."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import Session, get_session

from accounts.principal import ROLE_LABELS
from cases.clocks import last_day
from storage.models import CODEC_LABELS, TRANSPORT_LABELS
from tts.engines import ENGINE_LABELS
from web import keys

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"


def local_time(value: datetime | None, zone: ZoneInfo, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return ""
    return value.astimezone(zone).strftime(fmt)


def due_day(value: datetime | None, zone: ZoneInfo, fmt: str = "%Y-%m-%d") -> str:
    """A deadline as the day it falls on (the last day to act), the one way every page shows a deadline."""
    return last_day(value, zone).strftime(fmt) if value is not None else ""


def setup_templates(app: web.Application, zone: ZoneInfo) -> None:
    environment = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["local"] = lambda value, fmt="%Y-%m-%d %H:%M": local_time(value, zone, fmt)
    environment.filters["due_day"] = lambda value, fmt="%Y-%m-%d": due_day(value, zone, fmt)
    environment.globals["ROLE_LABELS"] = ROLE_LABELS
    environment.globals["ENGINE_LABELS"] = ENGINE_LABELS
    environment.globals["TRANSPORT_LABELS"] = TRANSPORT_LABELS
    environment.globals["CODEC_LABELS"] = CODEC_LABELS


def csrf_token(session: Session) -> str:
    """The session's CSRF token, created on first use; forms carry it in ``csrf_token``."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


async def flash(request: web.Request, message: str, kind: str = "ok") -> None:
    """A one-time message shown on the next page (after a redirect)."""
    session = await get_session(request)
    session["flash"] = [*session.get("flash", []), [kind, message]][-5:]


@dataclass(frozen=True)
class NavMenu:
    """A drop-down of the header: its heading and its links."""

    label: str
    items: list[keys.NavItem]


def nav_bar(items: list[keys.NavItem]) -> list[keys.NavItem | NavMenu]:
    """The header's entries in order, each menu's items gathered where its first item stands."""
    bar: list[keys.NavItem | NavMenu] = []
    menus: dict[str, NavMenu] = {}
    for item in items:
        if item.menu is None:
            bar.append(item)
        elif item.menu in menus:
            menus[item.menu].items.append(item)
        else:
            menus[item.menu] = NavMenu(item.menu, [item])
            bar.append(menus[item.menu])
    return bar


async def page_context(request: web.Request) -> dict[str, Any]:
    session = await get_session(request)
    # A live page reloading its parts in the background must not take the message meant for the next page.
    messages = [] if request.headers.get("X-Live-Refresh") else session.pop("flash", [])
    me = request.get(keys.PRINCIPAL)
    nav = [item for item in request.app[keys.NAV] if item.visible_to(me)]
    return {
        "me": me,
        "nav": nav,
        "nav_bar": nav_bar(nav),
        "csrf_token": csrf_token(session),
        "config": request.app[keys.CONFIG],
        "flashes": messages,
        "path": request.path,
    }


async def live_mark(request: web.Request) -> dict[str, str]:
    """The ``live_since`` of a live page's context (``data-live-since`` on its body; see ``static/live.js``).

    Taken before the page reads what it shows: a change committed after this is newer than the mark, so the
    page's stream reports it even if it was published before the stream was listening.
    """
    mark = request.app.get(keys.LIVE_MARK)
    return {"live_since": await mark()} if mark is not None else {}


async def render(
    request: web.Request, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> web.Response:
    full = await page_context(request)
    full.update(context or {})
    return aiohttp_jinja2.render_template(template, request, full, status=status)


async def render_error_page(request: web.Request, status: int, message: str) -> web.Response:
    return await render(request, "error.html", {"status": status, "message": message}, status=status)


def redirect(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)
