"""手机喊话's pages: who may (admins grant the permission with its scope and numbers, reset a PIN, print a cadre's
card), the user's own PIN, 喊话编号 on the area pages, and the 喊话记录 with its review afterwards (事后审核).

A refused form is shown again with what was typed and the reason (422), never a redirect that loses it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from accounts.principal import Principal
from common.errors import InvalidInput, UserError
from storage.models import (
    FINAL_RUN_STATES,
    LIVE_END_LABELS,
    PHONE_BROADCAST_STATUS_LABELS,
    REVIEW_LABELS,
    PhoneBroadcast,
)
from web import keys
from web.api import Routes
from web.domains import PHONECAST
from web.render import flash, redirect, render
from web.validation import read_post

MENU = "手机喊话"
RECORD_READERS = ("approver", "admin", "leader", "staff")
EVERYONE = ("staff", "approver", "admin", "leader", "operator", "inspector")
# Admins find it under 系统管理 (their header is full); everyone else under a 手机喊话 menu of its own.
NAV = (
    keys.NavItem("喊话记录", "/phonecast/records", ("approver", "leader", "staff"), menu=MENU),
    keys.NavItem("我的喊话密码", "/phonecast/pin", ("staff", "approver", "leader", "operator", "inspector"), menu=MENU),
    keys.NavItem("喊话人员", "/phonecast/cadres", ("admin",), menu=keys.ADMIN_MENU),
    keys.NavItem("喊话记录", "/phonecast/records", ("admin",), menu=keys.ADMIN_MENU),
)
REFUSAL_LABELS = {
    "quiet_hours": "静默时段内不能喊话",
    "too_long": "录音太长",
    "no_speakers": "没有可用的喇叭",
    "not_in_scope": "不在喊话范围内",
    "locked": "喊话已被锁定",
    "disk_full": "服务器磁盘空间不足",
    "failed": "未能开始播出",
    # A live call (实时喊话) only:
    "busy": "该区域正在喊话",
    "emergency": "紧急广播正在播出，不能实时喊话",
}


def _id(request: web.Request, name: str = "id") -> int:
    return int(request.match_info[name])


def _ids(values: list[str]) -> list[int]:
    try:
        return [int(value) for value in values if value]
    except ValueError:
        raise InvalidInput("表单内容不正确", code="invalid_form") from None


# -- 喊话人员 (admins) ----------------------------------------------------------------------------


async def _cadres_context(request: web.Request, me: Principal) -> dict[str, Any]:
    areas = request.app[keys.AREAS]
    townships = await areas.list_townships(me)
    return {
        "cadres": await request.app[PHONECAST].admin.list_cadres(me),
        "users": [user for user in await request.app[keys.ACCOUNTS].list_users() if user.active],
        "townships": townships,
        "township_names": {township.id: township.name for township in townships},
        "villages": await areas.list_villages(me),
    }


async def cadres_page(request: web.Request) -> web.Response:
    me = keys.principal(request)
    context = await _cadres_context(request, me)
    chosen = request.query.get("user", "")
    values: dict[str, Any] = {"user_id": "", "village_ids": [], "township_ids": [], "numbers": ""}
    if chosen.isascii() and chosen.isdigit():
        current = next((c for c in context["cadres"] if c.user_id == int(chosen)), None)
        values["user_id"] = int(chosen)
        if current is not None:
            values.update(
                village_ids=[v[0] for v in current.villages],
                township_ids=[t[0] for t in current.townships],
                numbers="\n".join(current.numbers),
            )
    return await render(request, "phonecast/cadres.html", {**context, "values": values, "error": None})


async def grant_form(request: web.Request) -> web.StreamResponse:
    me = keys.principal(request)
    form = await read_post(request)
    values: dict[str, Any] = {
        "user_id": form.get("user_id", ""),
        "village_ids": form.getall("village_ids", []),
        "township_ids": form.getall("township_ids", []),
        "numbers": str(form.get("numbers", ""))[:2000],
    }
    try:
        user_id = _ids([str(values["user_id"])])
        if not user_id:
            raise InvalidInput("请选择用户", fields={"user_id": "请选择"})
        values["user_id"] = user_id[0]
        values["village_ids"] = _ids([str(v) for v in values["village_ids"]])
        values["township_ids"] = _ids([str(v) for v in values["township_ids"]])
        entry = await request.app[PHONECAST].admin.grant(
            me,
            user_id[0],
            village_ids=values["village_ids"],
            township_ids=values["township_ids"],
            numbers=str(values["numbers"]).replace("，", "\n").replace(",", "\n").splitlines(),
        )
    except UserError as exc:
        context = await _cadres_context(request, me)
        return await render(
            request, "phonecast/cadres.html", {**context, "values": values, "error": exc.message}, status=422
        )
    await flash(request, f"已保存 {entry.name} 的电话喊话权限")
    raise redirect("/phonecast/cadres")


async def reset_pin_form(request: web.Request) -> web.StreamResponse:
    try:
        await request.app[PHONECAST].admin.reset_pin(keys.principal(request), _id(request))
        await flash(request, "喊话密码已重置：请本人登录后在“我的喊话密码”里设置新密码")
    except UserError as exc:
        await flash(request, exc.message, "error")
    raise redirect("/phonecast/cadres")


async def revoke_form(request: web.Request) -> web.StreamResponse:
    try:
        await request.app[PHONECAST].admin.revoke(keys.principal(request), _id(request))
        await flash(request, "已撤销电话喊话权限")
    except UserError as exc:
        await flash(request, exc.message, "error")
    raise redirect("/phonecast/cadres")


async def card_page(request: web.Request) -> web.Response:
    """A cadre's printable card: the line's number, what to press, their targets with 喊话编号."""
    me = keys.principal(request)
    phonecast = request.app[PHONECAST]
    cadre = await phonecast.admin.cadre(me, _id(request))
    zones = []
    areas = request.app[keys.AREAS]
    village_ids = {v[0] for v in cadre.villages}
    township_ids = {t[0] for t in cadre.townships}
    for zone, village in await areas.list_zones(_county_wide(me)):
        if village.id in village_ids or village.township_id in township_ids:
            zones.append((zone.phonecast_code or "", village.name, zone.name))
    return await render(
        request,
        "phonecast/card.html",
        {
            "cadre": cadre,
            "zones": sorted(zones),
            "line_number": phonecast.config.line_number,
            "county_name": request.app[keys.CONFIG].county_name,
        },
    )


def _county_wide(me: Principal) -> Principal:
    """The card lists the cadre's zones wherever they are, whatever the printing admin's own scope."""
    return Principal(
        user_id=me.user_id,
        username=me.username,
        display_name=me.display_name,
        roles=me.roles,
        county_wide=True,
        township_ids=me.township_ids,
        can_emergency=me.can_emergency,
    )


# -- the user's own PIN -----------------------------------------------------------------------------


async def pin_page(request: web.Request) -> web.Response:
    me = keys.principal(request)
    cadre = await request.app[PHONECAST].admin.cadre_or_none(me.user_id)
    return await render(request, "phonecast/pin.html", {"cadre": cadre, "error": None})


async def pin_form(request: web.Request) -> web.StreamResponse:
    me = keys.principal(request)
    form = await read_post(request)
    try:
        await request.app[PHONECAST].admin.set_own_pin(me, str(form.get("pin", "")), str(form.get("confirm", "")))
    except UserError as exc:
        cadre = await request.app[PHONECAST].admin.cadre_or_none(me.user_id)
        # A PIN is a secret: not shown again, the reason is.
        return await render(request, "phonecast/pin.html", {"cadre": cadre, "error": exc.message}, status=422)
    await flash(request, "喊话密码已设置")
    raise redirect("/phonecast/pin")


# -- 喊话编号 on the area pages (admins) ------------------------------------------------------------

AREA_PAGES = {"township": "/admin/townships/{}", "village": "/admin/villages/{}", "zone": "/admin/zones/{}"}


async def code_form(request: web.Request) -> web.StreamResponse:
    kind = request.match_info["kind"]
    back = AREA_PAGES[kind].format(_id(request))
    form = await read_post(request)
    try:
        code = str(form.get("phonecast_code", ""))
        await request.app[PHONECAST].admin.set_code(keys.principal(request), kind, _id(request), code)
        await flash(request, f"喊话编号已改为 {code.strip()}")
    except UserError as exc:
        await flash(request, exc.message, "error")
    raise redirect(back)


# -- 喊话记录 and 事后审核 --------------------------------------------------------------------------


async def _records_context(request: web.Request, me: Principal) -> dict[str, Any]:
    state = request.query.get("review", "")
    state = state if state in REVIEW_LABELS else ""
    admin = request.app[PHONECAST].admin
    records = await admin.list_records(me, review_state=state or None)
    return {
        "records": records,
        "durations": {row.id: _duration(row) for row in records},
        "after": {row_id: _after_text(*seen) for row_id, seen in (await admin.after_states(records)).items()},
        "LIVE_END_LABELS": LIVE_END_LABELS,
        "review": state,
        "REVIEW_LABELS": REVIEW_LABELS,
        "STATUS_LABELS": PHONE_BROADCAST_STATUS_LABELS,
        "REFUSAL_LABELS": REFUSAL_LABELS,
        "typed": {},
        "error": None,
    }


def _duration(row: PhoneBroadcast) -> str:
    """How long a live call was on the air (实时), or how long a recording is (录音): "1分05秒"; "" when unknown."""
    seconds: float | None = row.recording_s
    if row.live and row.started_at is not None and row.ended_at is not None:
        seconds = (row.ended_at - row.started_at).total_seconds()
    if seconds is None:
        return ""
    whole = max(0, round(seconds))
    return f"{whole // 60}分{whole % 60:02d}秒" if whole >= 60 else f"{whole}秒"


def _after_text(state: int, played: int, given: int) -> str:
    """What became of a live call's recording on the 4G terminals, per speaker, from the as-run log."""
    if state in FINAL_RUN_STATES:
        return f"{played}个已播放" if played == given else f"{played}个已播放，{given - played}个未播放"
    if given:
        return f"播放中，{played}个已播放"
    return "待播出"


async def records_page(request: web.Request) -> web.Response:
    return await render(request, "phonecast/records.html", await _records_context(request, keys.principal(request)))


async def review_form(request: web.Request) -> web.StreamResponse:
    me = keys.principal(request)
    form = await read_post(request)
    note = str(form.get("note", ""))
    flag = form.get("action") == "flag"
    try:
        await request.app[PHONECAST].admin.review(me, _id(request), flag=flag, note=note)
    except UserError as exc:
        context = await _records_context(request, me)
        context.update(typed={_id(request): note[:1000]}, error=exc.message)
        return await render(request, "phonecast/records.html", context, status=422)
    await flash(request, "已标记为有问题，管理员会在待办中看到" if flag else "已标记为已审核")
    raise redirect("/phonecast/records")


async def recording(request: web.Request) -> web.StreamResponse:
    path = await request.app[PHONECAST].admin.recording_path(keys.principal(request), _id(request))
    return web.FileResponse(path, headers={"Content-Type": "audio/wav", "Cache-Control": "private, no-store"})


async def todo(request: web.Request, me: Principal) -> list[keys.TodoItem]:
    """Flagged phone broadcasts wait for the admins; unreviewed ones for the approvers."""
    admin = request.app[PHONECAST].admin
    items = []
    if me.has_role("admin"):
        flagged = await admin.flagged_count()
        items.append(keys.TodoItem("被标记有问题的手机喊话", flagged, "/phonecast/records?review=flagged", urgent=True))
    if me.has_role("approver"):
        items.append(
            keys.TodoItem("待事后审核的手机喊话", await admin.unreviewed_count(me), "/phonecast/records?review=pending")
        )
    return [item for item in items if item.count]


def add_routes(routes: Routes) -> None:
    item = r"{id:\d+}"
    routes.page("GET", "/phonecast/cadres", cadres_page, roles=("admin",))
    routes.page("POST", "/phonecast/cadres", grant_form, roles=("admin",))
    routes.page("POST", f"/phonecast/cadres/{item}/reset-pin", reset_pin_form, roles=("admin",))
    routes.page("POST", f"/phonecast/cadres/{item}/revoke", revoke_form, roles=("admin",))
    routes.page("GET", f"/phonecast/cadres/{item}/card", card_page, roles=("admin",))
    routes.page("GET", "/phonecast/pin", pin_page, roles=EVERYONE)
    routes.page("POST", "/phonecast/pin", pin_form, roles=EVERYONE)
    routes.page("POST", r"/phonecast/codes/{kind:township|village|zone}/" + item, code_form, roles=("admin",))
    routes.page("GET", "/phonecast/records", records_page, roles=RECORD_READERS)
    routes.page("POST", f"/phonecast/records/{item}/review", review_form, roles=("approver", "admin"))
    routes.page("GET", f"/phonecast/records/{item}/audio", recording, roles=RECORD_READERS)
