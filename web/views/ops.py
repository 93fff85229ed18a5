"""/metrics for Prometheus, the admins' 系统状态 page, and the disk and clock warnings in their 待办."""

from __future__ import annotations

import hmac
import ipaddress
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from accounts.principal import Principal
from ops.disk import human_bytes
from ops.metrics import scrape
from web import keys
from web.api import Routes
from web.domains import OPS
from web.render import render

log = logging.getLogger(__name__)

NAV = (keys.NavItem("系统状态", "/admin/status", ("admin",), menu=keys.ADMIN_MENU),)
STATUS_PAGE = "/admin/status"


def _metrics_refusal(request: web.Request) -> web.Response | None:
    """None when the caller may scrape: the bearer token when one is set, else an address allowed by the setting."""
    config = request.app[OPS].config
    token = config.ops.metrics_token
    if token:
        given = request.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return None
        return web.Response(
            status=401, text="metrics: a bearer token is required\n", headers={"WWW-Authenticate": "Bearer"}
        )
    try:
        address = ipaddress.ip_address(request.remote or "")
    except ValueError:
        address = None
    if address is not None and any(address in network for network in config.metrics_networks):
        return None
    return web.Response(status=403, text="metrics: not allowed from this address (ops.metrics_allow_from)\n")


async def metrics(request: web.Request) -> web.Response:
    """Prometheus scrapes this (text format); never a 500: a failing source is marked, the rest answered."""
    refused = _metrics_refusal(request)
    if refused is not None:
        return refused
    try:
        body = await scrape(request.app[OPS].metrics)
    except Exception:  # sources fail one by one inside: this is a bug, and still no 500
        log.exception("/metrics could not be rendered")
        return web.Response(status=503, text="metrics: could not be rendered; see the service log\n")
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})


async def status_page(request: web.Request) -> web.Response:
    ops = request.app[OPS]
    clock_state = ops.clock_watch.state
    return await render(
        request,
        "admin/status.html",
        {
            "readings": ops.disk.readings,
            "disk_level": ops.disk.level,
            "clock": clock_state,
            "clock_trouble": ops.clock_watch.trouble,
            "max_offset_ms": ops.clock_watch.max_offset_s * 1000,
            "human_bytes": human_bytes,
        },
    )


async def todo(request: web.Request, me: Principal) -> list[keys.TodoItem]:
    """For admins: a disk below its warning level, a clock not synchronised — before a village notices."""
    if not me.has_role("admin"):
        return []
    ops = request.app[OPS]
    items = []
    worst = ops.disk.worst
    if worst is not None and worst.level != "ok":
        refused = "，已暂停上传录音和审核通过通知" if worst.level == "refuse" else ""
        items.append(keys.TodoItem(f"磁盘空间不足：{worst.shown()}{refused}", 1, STATUS_PAGE, urgent=True))
    trouble = ops.clock_watch.trouble
    if trouble is not None:
        items.append(keys.TodoItem(f"时钟未同步：{trouble}", 1, STATUS_PAGE, urgent=True))
    return items


def add_routes(routes: Routes) -> None:
    routes.page("GET", "/metrics", metrics, auth="self")
    routes.page("GET", STATUS_PAGE, status_page, roles=("admin",))
