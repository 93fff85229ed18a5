"""Typed keys for what the composition root hands to the web layer, and the web layer's own configuration."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.principal import Principal
from accounts.service import AccountService
from areas.service import AreaService
from common.clock import Clock
from common.health import HealthRegistry
from common.keyfiles import generated_once
from settings import Settings, SettingsError


@dataclass(frozen=True)
class WebConfig:
    county_name: str
    public_url: str
    zone: ZoneInfo
    session_key: bytes
    cookie_secure: bool
    session_max_age_s: int
    max_json_bytes: int
    max_upload_bytes: int
    max_form_bytes: int = 256 * 1024
    # Reverse proxies whose X-Forwarded-For is believed (addresses or networks).
    trusted_proxies: tuple[str, ...] = ()
    # Demo deployments say so on every page: their places and people are invented.
    demo_banner: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> WebConfig:
        server = settings.server
        return cls(
            county_name=settings.county_name,
            public_url=settings.public_url,
            zone=settings.zone,
            session_key=session_key(settings),
            cookie_secure=server.cookie_secure,
            session_max_age_s=server.session_max_age_s,
            max_json_bytes=server.max_json_bytes,
            max_upload_bytes=server.max_upload_bytes,
            max_form_bytes=server.max_form_bytes,
            trusted_proxies=server.trusted_proxies,
        )


def session_key(settings: Settings) -> bytes:
    """The cookie encryption key: from settings, else generated once into the data directory (0600)."""
    text = settings.security.session_key or generated_once(
        settings.data_dir / "session.key", lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    )
    try:
        key = base64.urlsafe_b64decode(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise SettingsError("bad setting CUNXIANG_SECURITY_SESSION_KEY: must be 32 bytes, URL-safe base64")
    return key


@dataclass(frozen=True)
class NavItem:
    """A link in the page header, shown to users with one of ``roles`` (everyone when empty).

    Items with a ``menu`` are gathered under that one heading (a drop-down): an admin sees every part of
    the service, and fourteen links side by side do not fit a 1366-pixel screen on one line.
    """

    label: str
    href: str
    roles: tuple[str, ...] = ()
    needs_emergency: bool = False
    menu: str | None = None

    def visible_to(self, who: Principal | None) -> bool:
        if who is None:
            return False
        if self.needs_emergency and not who.can_emergency:
            return False
        return not self.roles or who.has_role(*self.roles)


# The header's drop-down for the administration's pages (areas, units, users, the audit log, holidays).
ADMIN_MENU = "系统管理"


@dataclass(frozen=True)
class TodoItem:
    """A line of the home page's 待办 panel: what waits for this user, how many, and where to deal with it."""

    label: str
    count: int
    href: str
    urgent: bool = False  # overdue work: shown first and marked


# Each domain's web module offers one: the items that wait for ``principal`` (none when nothing does).
TodoSource = Callable[[web.Request, Principal], Awaitable[list[TodoItem]]]


CONFIG = web.AppKey("config", WebConfig)
CLOCK = web.AppKey("clock", Clock)
NAV = web.AppKey("nav", list[NavItem])
TODO = web.AppKey("todo", list[TodoSource])
HEALTH = web.AppKey("health", HealthRegistry)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
ACCOUNTS = web.AppKey("accounts", AccountService)
AREAS = web.AppKey("areas", AreaService)
# Where the case ledger stands now (``cases.live.ChangeFeed.mark``): a live page carries it, so its stream can
# tell it of what changed between its rendering and its subscribing. Absent: the pages carry no mark.
LiveMark = Callable[[], Awaitable[str]]
LIVE_MARK: web.AppKey[LiveMark] = web.AppKey("live_mark")

PRINCIPAL = web.RequestKey("principal", Principal)
# The id of the signed-in session (a row of user_sessions), beside the principal.
SESSION_ID = web.RequestKey("session_id", int)


def principal(request: web.Request) -> Principal:
    """The signed-in user; the auth middleware guarantees it on every non-public route."""
    return request[PRINCIPAL]
