"""/metrics for Prometheus, the admins' 系统状态 and 值班告警 pages, and the disk, clock and alarm warnings in 待办."""

from __future__ import annotations

import hmac
import ipaddress
import logging
from datetime import time
from typing import Any, Literal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from accounts.principal import Principal
from common.errors import UserError
from ops.disk import human_bytes
from ops.metrics import scrape
from storage.models import ALARM_CALL_STATE_LABELS, ALARM_KIND_LABELS, ALARM_STATE_LABELS
from web import keys
from web.api import Routes
from web.domains import OPS
from web.middleware import status_for
from web.render import flash, redirect, render
from web.validation import read_form, read_post

log = logging.getLogger(__name__)

NAV = (
    keys.NavItem("系统状态", "/admin/status", ("admin",), menu=keys.ADMIN_MENU),
    keys.NavItem("值班告警", "/admin/alarms", ("admin",), menu=keys.ADMIN_MENU),
)
STATUS_PAGE = "/admin/status"
ALARMS_PAGE = "/admin/alarms"


class DutyOfficerIn(BaseModel):
    """One person on the duty list, as the admin types it."""

    name: str = Field(min_length=1, max_length=32, title="姓名")
    # A number the trunk dials, or a dial string (PJSIP/op1, Local/…) for an extension.
    phone: str = Field(
        min_length=3, max_length=64, pattern=r"^(\+?[0-9]{3,20}|[A-Za-z]+/[A-Za-z0-9@._/-]+)$", title="电话"
    )
    on_from: time = Field(title="值班开始")
    on_until: time = Field(title="值班结束")


class MoveIn(BaseModel):
    direction: Literal["up", "down"] = Field(title="方向")


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
    open_alarms = await ops.alarms.open_count()
    if open_alarms:
        items.append(keys.TodoItem("告警未确认，正在电话通知值班人员", open_alarms, ALARMS_PAGE, urgent=True))
    return items


async def _alarms_page(
    request: web.Request, *, status: int = 200, values: dict[str, Any] | None = None, error: str | None = None
) -> web.Response:
    alarms = request.app[OPS].alarms
    return await render(
        request,
        "admin/alarms.html",
        {
            "alarms": await alarms.alarms(),
            "officers": await alarms.officers(),
            "on_duty_ids": {officer.id for officer in await alarms.on_duty_now()},
            "can_call": alarms.can_call,
            "KIND_LABELS": ALARM_KIND_LABELS,
            "STATE_LABELS": ALARM_STATE_LABELS,
            "CALL_LABELS": ALARM_CALL_STATE_LABELS,
            "values": values or {},
            "error": error,
        },
        status=status,
    )


async def alarms_page(request: web.Request) -> web.Response:
    return await _alarms_page(request)


async def add_officer_form(request: web.Request) -> web.StreamResponse:
    me = keys.principal(request)
    posted = {key: value for key, value in (await read_post(request)).items() if key != "csrf_token"}
    try:
        form = await read_form(request, DutyOfficerIn)
        officer = await request.app[OPS].alarms.add_officer(me.actor, **form.model_dump())
    except UserError as exc:
        # Refused: the page again, with what was typed and why.
        return await _alarms_page(request, status=status_for(exc), values=posted, error=exc.message)
    await flash(request, f"已把{officer.name}加入值班名单")
    raise redirect(ALARMS_PAGE)


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])


async def remove_officer_form(request: web.Request) -> web.StreamResponse:
    me = keys.principal(request)
    if await request.app[OPS].alarms.remove_officer(me.actor, _id(request)):
        await flash(request, "已从值班名单删除")
    else:
        await flash(request, "值班名单里没有这个人（可能已被删除）", "error")
    raise redirect(ALARMS_PAGE)


async def _officer_page(
    request: web.Request, officer_id: int, values: dict[str, Any], *, status: int = 200, error: str | None = None
) -> web.Response:
    return await render(
        request,
        "admin/duty_officer.html",
        {"officer_id": officer_id, "values": values, "error": error},
        status=status,
    )


async def edit_officer_page(request: web.Request) -> web.StreamResponse:
    officer = await request.app[OPS].alarms.officer(_id(request))
    if officer is None:
        await flash(request, "值班名单里没有这个人（可能已被删除）", "error")
        raise redirect(ALARMS_PAGE)
    values = {
        "name": officer.name,
        "phone": officer.phone,
        "on_from": officer.on_from.strftime("%H:%M"),
        "on_until": officer.on_until.strftime("%H:%M"),
    }
    return await _officer_page(request, officer.id, values)


async def edit_officer_form(request: web.Request) -> web.StreamResponse:
    me = keys.principal(request)
    officer_id = _id(request)
    posted = {key: value for key, value in (await read_post(request)).items() if key != "csrf_token"}
    try:
        form = await read_form(request, DutyOfficerIn)
    except UserError as exc:
        # Refused: the form again, with what was typed and why; nothing changed.
        return await _officer_page(request, officer_id, posted, status=status_for(exc), error=exc.message)
    officer = await request.app[OPS].alarms.change_officer(me.actor, officer_id, **form.model_dump())
    if officer is None:
        await flash(request, "值班名单里没有这个人（可能已被删除）", "error")
    else:
        await flash(request, f"已保存{officer.name}的值班信息")
    raise redirect(ALARMS_PAGE)


async def move_officer_form(request: web.Request) -> web.StreamResponse:
    me = keys.principal(request)
    try:
        form = await read_form(request, MoveIn)
    except UserError as exc:
        await flash(request, f"没有调整顺序：{exc.message}", "error")
        raise redirect(ALARMS_PAGE) from None
    if await request.app[OPS].alarms.move_officer(me.actor, _id(request), form.direction):
        await flash(request, "已调整值班名单的顺序")
    else:
        await flash(request, "没有调整顺序：已经在最前（或最后），或这个人已被删除", "error")
    raise redirect(ALARMS_PAGE)


async def acknowledge_form(request: web.Request) -> web.StreamResponse:
    me = keys.principal(request)
    if await request.app[OPS].alarms.acknowledge(_id(request), me.actor) is not None:
        await flash(request, "已确认告警，不再打电话")
    else:
        await flash(request, "这条告警已经不在呼叫中（已确认、已恢复或无人确认）", "error")
    raise redirect(ALARMS_PAGE)


def add_routes(routes: Routes) -> None:
    routes.page("GET", "/metrics", metrics, auth="self")
    routes.page("GET", STATUS_PAGE, status_page, roles=("admin",))
    routes.page("GET", ALARMS_PAGE, alarms_page, roles=("admin",))
    routes.page("POST", f"{ALARMS_PAGE}/officers", add_officer_form, roles=("admin",))
    routes.page("POST", f"{ALARMS_PAGE}/officers/{{id:\\d+}}/delete", remove_officer_form, roles=("admin",))
    routes.page("GET", f"{ALARMS_PAGE}/officers/{{id:\\d+}}/edit", edit_officer_page, roles=("admin",))
    routes.page("POST", f"{ALARMS_PAGE}/officers/{{id:\\d+}}/edit", edit_officer_form, roles=("admin",))
    routes.page("POST", f"{ALARMS_PAGE}/officers/{{id:\\d+}}/move", move_officer_form, roles=("admin",))
    routes.page("POST", f"{ALARMS_PAGE}/{{id:\\d+}}/acknowledge", acknowledge_form, roles=("admin",))
