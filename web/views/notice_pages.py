"""The notice pages: write, check, listen, submit; review and decide; 立即播出; 应急广播; a broadcast's result.

What each person sees is what the services decide (``broadcast/``): the full text and
its spoken form with every personal number marked in place (:mod:`broadcast.review`),
this revision's audio to listen to (the very files that will air), who may decide,
and a broadcast's status derived from its speakers (:mod:`broadcast.outcome`).

A refused form is never emptied by a redirect: the page is shown again, with the
reason (HTTP 4xx) and everything that was typed or ticked.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy import select

from broadcast.notices import STATE_LABELS
from broadcast.review import DECISION_LABELS
from common.errors import CunxiangError, InvalidInput, PermissionDenied, UserError
from storage.models import (
    KIND_LABELS,
    NOTICE_KINDS,
    PRIORITY_OF_KIND,
    RUN_STATE_LABELS,
    Notice,
    User,
)
from web import keys
from web.api import Routes
from web.domains import ASRUN, DISPATCHER, NOTICES, SCHEDULES
from web.middleware import status_for
from web.render import flash, redirect, render
from web.validation import read_form, read_post
from web.views.broadcast import WRITERS, NoticeIn, emergency_township, notice_input
from web.zone_picker import PickerTownship, Selection, zone_tree

READERS = ("staff", "approver", "admin", "leader")
# Who spoke a notice's audio, as its users call it (never the engine's name).
ENGINE_LABELS = {"edge": "在线语音", "espeak": "离线语音", "recording": "人声录音"}
EDITOR_FIELDS = ("kind", "township_id", "title", "body", "repeats", "voice_engine", "voice_rate")


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])


def _labels() -> dict[str, Any]:
    return {
        "KIND_LABELS": KIND_LABELS,
        "STATE_LABELS": STATE_LABELS,
        "RUN_STATE_LABELS": RUN_STATE_LABELS,
        "PRIORITY_OF_KIND": PRIORITY_OF_KIND,
        "NOTICE_KINDS": NOTICE_KINDS,
        "DECISION_LABELS": DECISION_LABELS,
        "ENGINE_LABELS": ENGINE_LABELS,
    }


def _editor_values(notice: Notice | None = None, form: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The editor's fields: from a notice, from what was typed (a refused save), or empty."""
    if form is not None:
        values: dict[str, Any] = {name: str(form.get(name, "")) for name in EDITOR_FIELDS}
        township = values["township_id"]
        values["township_id"] = int(township) if township.isdigit() else None
        return values
    if notice is not None:
        return {
            "kind": notice.kind,
            "township_id": notice.township_id,
            "title": notice.title,
            "body": notice.body,
            "repeats": str(notice.repeats),
            "voice_engine": notice.voice_engine or "",
            "voice_rate": notice.voice_rate or "",
        }
    return {
        "kind": "",
        "township_id": None,
        "title": "",
        "body": "",
        "repeats": "2",
        "voice_engine": "",
        "voice_rate": "",
    }


def _instant(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


async def _names(request: web.Request, user_ids: set[int]) -> dict[int, str]:
    if not user_ids:
        return {}
    async with request.app[keys.SESSIONS]() as session:
        rows = await session.execute(select(User.id, User.display_name).where(User.id.in_(user_ids)))
        return {user_id: name for user_id, name in rows.all()}


# -- the list, and writing a new notice ------------------------------------------------------------


async def _notices_page(
    request: web.Request, *, status: int = 200, values: dict[str, Any] | None = None, error: str | None = None
) -> web.Response:
    me = keys.principal(request)
    state = request.query.get("state") or None
    found = await request.app[NOTICES].list_notices(me, state=state if state in STATE_LABELS else None)
    townships = await request.app[keys.AREAS].list_townships(me)
    context = {
        "notices": found,
        "townships": townships,
        "state": state,
        "values": values or _editor_values(),
        "error": error,
        **_labels(),
    }
    return await render(request, "broadcast/notices.html", context, status=status)


async def notices_page(request: web.Request) -> web.Response:
    return await _notices_page(request)


async def create_notice_form(request: web.Request) -> web.StreamResponse:
    posted = await read_post(request)
    try:
        form = await read_form(request, NoticeIn)
        notice = await request.app[NOTICES].create(keys.principal(request), notice_input(form))
    except UserError as exc:
        return await _notices_page(
            request, status=status_for(exc), values=_editor_values(form=posted), error=exc.message
        )
    await flash(request, "已保存为草稿：请试听、检查后提交审核")
    raise redirect(f"/broadcast/notices/{notice.id}#check")


async def approvals_page(request: web.Request) -> web.Response:
    me = keys.principal(request)
    service = request.app[NOTICES]
    found = await service.list_notices(me, state="pending")
    rows = [(notice, service.why_not_decider(me, notice)) for notice in found]
    authors = await _names(request, {notice.author_id for notice in found})
    return await render(request, "broadcast/approvals.html", {"rows": rows, "authors": authors, **_labels()})


# -- one notice ------------------------------------------------------------------------------------


async def _notice_page(
    request: web.Request,
    *,
    status: int = 200,
    error: str | None = None,
    values: dict[str, Any] | None = None,
    reason: str = "",
    selection: Selection | None = None,
) -> web.Response:
    """The notice page; after a refused form, with the reason and what was typed (editor, 驳回理由, 立即播出)."""
    me = keys.principal(request)
    service = request.app[NOTICES]
    notice = await service.get(me, _id(request))
    planner = request.app[SCHEDULES]
    schedules = [
        (schedule, planner.describe(schedule))
        for schedule, _notice in await planner.list_schedules(me, notice_id=notice.id)
    ]
    decisions = notice.number_decisions or {}
    names = await _names(request, {notice.author_id, *(notice.editor_ids or [])})
    can_play = notice.state == "approved" and me.has_role(*WRITERS)
    context = {
        "notice": notice,
        "review": service.review(notice),
        "decisions": [
            (number, decision, _instant(decision.get("at")))
            for number, decision in sorted(decisions.items(), key=lambda item: str(item[1].get("at", "")))
        ],
        "preview_ready": service.has_preview(notice),
        "why_not_decider": service.why_not_decider(me, notice),
        "author": names.get(notice.author_id, ""),
        "editors": [names.get(user_id, "") for user_id in notice.editor_ids or []],
        "schedules": schedules,
        "townships": await request.app[keys.AREAS].list_townships(me),
        "values": values or _editor_values(notice),
        "reason": reason,
        "error": error,
        "tree": await zone_tree(request, me, township_id=notice.township_id) if can_play else None,
        "selection": selection or Selection(),
        **_labels(),
    }
    return await render(request, "broadcast/notice.html", context, status=status)


async def notice_page(request: web.Request) -> web.Response:
    return await _notice_page(request)


async def _back(request: web.Request, message: str, anchor: str = "#top") -> web.HTTPSeeOther:
    await flash(request, message)
    return redirect(f"/broadcast/notices/{_id(request)}{anchor}")


async def update_notice_form(request: web.Request) -> web.StreamResponse:
    posted = await read_post(request)
    try:
        form = await read_form(request, NoticeIn)
        notice = await request.app[NOTICES].update(keys.principal(request), _id(request), notice_input(form))
    except UserError as exc:
        return await _notice_page(
            request, status=status_for(exc), error=exc.message, values=_editor_values(form=posted)
        )
    if notice.state == "draft" and form.title:
        review = request.app[NOTICES].review(notice)
        if (refusal := review.refusal()) is not None:
            raise await _back(request, f"已保存为草稿（第 {notice.revision} 版）。提交前还要处理：{refusal}", "#check")
    raise await _back(request, f"已保存（第 {notice.revision} 版，{STATE_LABELS[notice.state]}）", "#check")


async def submit_form(request: web.Request) -> web.StreamResponse:
    try:
        await request.app[NOTICES].submit(keys.principal(request), _id(request))
    except UserError as exc:
        return await _notice_page(request, status=status_for(exc), error=f"不能提交审核：{exc.message}")
    raise await _back(request, "已提交审核")


async def preview_form(request: web.Request) -> web.StreamResponse:
    try:
        notice = await request.app[NOTICES].preview(keys.principal(request), _id(request))
    except CunxiangError as exc:  # an engine that fails is a 503 with its Chinese message, on this page
        return await _notice_page(request, status=status_for(exc), error=f"试听生成失败：{exc.message}")
    raise await _back(
        request, f"试听已生成（第 {notice.revision} 版，{notice.audio_duration_s or 0:.1f} 秒）", "#listen"
    )


async def mask_form(request: web.Request) -> web.StreamResponse:
    posted = await read_post(request)
    number = str(posted.get("number", "")).strip() or None
    try:
        notice = await request.app[NOTICES].mask_numbers(keys.principal(request), _id(request), number)
    except UserError as exc:
        return await _notice_page(request, status=status_for(exc), error=exc.message)
    what = f"手机号码 {number}" if number else "身份证号、银行卡号"
    raise await _back(request, f"已隐去{what}（第 {notice.revision} 版）：请再看一遍、试听后提交", "#check")


async def keep_form(request: web.Request) -> web.StreamResponse:
    posted = await read_post(request)
    number = str(posted.get("number", "")).strip()
    try:
        await request.app[NOTICES].keep_number(keys.principal(request), _id(request), number)
    except UserError as exc:
        return await _notice_page(request, status=status_for(exc), error=exc.message)
    raise await _back(request, f"已保留手机号码 {number}：作为公开的联系电话逐位读出，审核人会看到这个决定", "#check")


def _revision(posted: MultiDictProxy[Any]) -> int | None:
    value = str(posted.get("revision", "")).strip()
    return int(value) if value.isdigit() else None


async def approve_form(request: web.Request) -> web.StreamResponse:
    posted = await read_post(request)
    try:
        notice = await request.app[NOTICES].approve(keys.principal(request), _id(request), _revision(posted))
    except UserError as exc:
        return await _notice_page(request, status=status_for(exc), error=f"未能通过：{exc.message}")
    except CunxiangError as exc:
        return await _notice_page(request, status=status_for(exc), error=f"音频生成失败，未能通过：{exc.message}")
    raise await _back(request, f"已审核通过第 {notice.revision} 版：播出的就是试听的音频")


async def reject_form(request: web.Request) -> web.StreamResponse:
    posted = await read_post(request)
    reason = str(posted.get("reason", ""))
    try:
        await request.app[NOTICES].reject(keys.principal(request), _id(request), reason, revision=_revision(posted))
    except UserError as exc:
        return await _notice_page(request, status=status_for(exc), error=exc.message, reason=reason)
    raise await _back(request, "已驳回：通知已退回作者，理由会出现在作者的待办里")


async def archive_form(request: web.Request) -> web.StreamResponse:
    try:
        await request.app[NOTICES].archive(keys.principal(request), _id(request))
    except UserError as exc:
        return await _notice_page(request, status=status_for(exc), error=exc.message)
    raise await _back(request, "已归档")


async def play_form(request: web.Request) -> web.StreamResponse:
    """立即播出 to the zones ticked in the picker (the notice's township only), after one confirmation."""
    me = keys.principal(request)
    posted = await read_post(request)
    selection = Selection.from_form(posted)
    try:
        notice = await request.app[NOTICES].get(me, _id(request))
        zone_ids = (await zone_tree(request, me, township_id=notice.township_id)).zones_of(selection)
        if not zone_ids:
            raise InvalidInput("请在下面选择要播出的村或分区", fields={"zone_ids": "请选择"})
        if "confirm" not in posted:
            raise InvalidInput("请勾选“确认立即播出”后再播出", fields={"confirm": "请确认"})
        broadcast_id = await request.app[DISPATCHER].request(
            notice_id=notice.id, zone_ids=zone_ids, origin="manual", requested_by=me.user_id
        )
    except UserError as exc:
        return await _notice_page(request, status=status_for(exc), error=exc.message, selection=selection)
    await flash(request, "已安排立即播出，下面是每个喇叭的播出结果")
    raise redirect(f"/broadcast/runs/{broadcast_id}")


# -- 应急广播 ------------------------------------------------------------------------------------------


async def _emergency_page(
    request: web.Request,
    *,
    status: int = 200,
    values: Mapping[str, str] | None = None,
    selection: Selection | None = None,
    error: str | None = None,
) -> web.Response:
    me = keys.principal(request)
    if not me.can_emergency:
        raise PermissionDenied("您没有应急广播权限", code="emergency.forbidden")
    context = {
        "tree": await zone_tree(request, me),
        "selection": selection or Selection(),
        "values": values or {"title": "", "body": ""},
        "error": error,
    }
    return await render(request, "broadcast/emergency.html", context, status=status)


async def emergency_page(request: web.Request) -> web.Response:
    return await _emergency_page(request)


async def emergency_form(request: web.Request) -> web.StreamResponse:
    """Written, approved, rendered (fastest engine first) and queued at once — after its one confirmation."""
    me = keys.principal(request)
    posted = await read_post(request)
    values = {"title": str(posted.get("title", "")), "body": str(posted.get("body", ""))}
    selection = Selection.from_form(posted)
    try:
        if not me.can_emergency:
            raise PermissionDenied("您没有应急广播权限", code="emergency.forbidden")
        if not values["title"].strip():
            raise InvalidInput("请填写应急广播的标题", fields={"title": "不能为空"})
        tree = await zone_tree(request, me)
        zone_ids = tree.zones_of(selection)
        if not zone_ids:
            raise InvalidInput("请选择要播出的乡镇、村或分区", fields={"zone_ids": "请选择"})
        if "confirm" not in posted:
            raise InvalidInput("请勾选“确认立即播出”后再发送", fields={"confirm": "请确认"})
        townships = {township.id for township in tree.townships if _has_zone(township, zone_ids)}
        notice = await request.app[NOTICES].create_emergency(
            me,
            title=values["title"],
            body=values["body"],
            township_id=emergency_township(me, None, townships),
        )
        broadcast_id = await request.app[DISPATCHER].request(
            notice_id=notice.id, zone_ids=zone_ids, origin="emergency", requested_by=me.user_id
        )
    except CunxiangError as exc:
        status = status_for(exc)
        return await _emergency_page(request, status=status, values=values, selection=selection, error=exc.message)
    await flash(request, "应急广播已发出：下面是每个喇叭的播出结果")
    raise redirect(f"/broadcast/runs/{broadcast_id}")


def _has_zone(township: PickerTownship, zone_ids: list[int]) -> bool:
    wanted = set(zone_ids)
    return any(zone.id in wanted for village in township.villages for zone in village.zones)


# -- a broadcast's result --------------------------------------------------------------------------


async def run_page(request: web.Request) -> web.Response:
    """One broadcast on every speaker: what played, what did not and why; it refreshes itself until done."""
    result = await request.app[ASRUN].result(keys.principal(request), _id(request))
    return await render(request, "broadcast/run.html", {"result": result, **_labels()})


def add_routes(routes: Routes) -> None:
    item = r"{id:\d+}"
    routes.page("GET", "/broadcast/notices", notices_page, roles=READERS)
    routes.page("POST", "/broadcast/notices", create_notice_form, roles=WRITERS)
    routes.page("GET", f"/broadcast/notices/{item}", notice_page, roles=READERS)
    routes.page("POST", f"/broadcast/notices/{item}", update_notice_form, roles=WRITERS)
    routes.page("POST", f"/broadcast/notices/{item}/submit", submit_form, roles=WRITERS)
    routes.page("POST", f"/broadcast/notices/{item}/preview", preview_form, roles=(*WRITERS, "approver"))
    routes.page("POST", f"/broadcast/notices/{item}/mask", mask_form, roles=WRITERS)
    routes.page("POST", f"/broadcast/notices/{item}/keep", keep_form, roles=WRITERS)
    routes.page("POST", f"/broadcast/notices/{item}/approve", approve_form, roles=("approver",))
    routes.page("POST", f"/broadcast/notices/{item}/reject", reject_form, roles=("approver",))
    routes.page("POST", f"/broadcast/notices/{item}/archive", archive_form, roles=(*WRITERS, "approver"))
    routes.page("POST", f"/broadcast/notices/{item}/play", play_form, roles=WRITERS)
    routes.page("GET", "/broadcast/approvals", approvals_page, roles=("approver",))
    routes.page("GET", "/broadcast/emergency", emergency_page)
    routes.page("POST", "/broadcast/emergency", emergency_form)
    routes.page("GET", f"/broadcast/runs/{item}", run_page, roles=READERS)
