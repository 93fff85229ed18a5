"""The hotline's web side: the villager phone registry (API and page) and what became of a call.

The registry is kept by township staff and operators for their own townships
(404 outside them). ``GET /api/v1/hotline/calls/{linkedid}`` answers the dial
test's question over HTTP — a case (number, status, recordings) or a missed
call — with the case rules: not-yet-placed calls are for county-wide users,
sealed ones for discipline inspectors only (every look and every refused try
audited), the caller's number masked as on the case pages.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field

from cases.sealed import CaseAccess, mask_number
from common.errors import NotFound, UserError
from hotline.phones import PhoneEntry
from web import keys
from web.api import Routes, json_response
from web.domains import CASES, INTAKE, PHONES
from web.render import flash, redirect, render
from web.validation import ApiModel, multiline, read_form

EDITORS = ("staff", "operator", "admin")
CALL_READERS = ("operator", "admin", "inspector", "leader")
NAV = (keys.NavItem("村民电话", "/hotline/phones", EDITORS),)

LINKEDID = r"{linkedid:[A-Za-z0-9._-]+}"
CALL_NOT_FOUND = "没有这通电话的记录"


class PhoneIn(ApiModel):
    number: str = Field(min_length=3, max_length=32, description="电话号码（会去掉空格、横线和+86）")
    village_id: int
    name: str | None = Field(None, max_length=64, description="机主称呼")
    note: str | None = Field(None, max_length=255, json_schema_extra=multiline())


class PhonePatch(ApiModel):
    number: str | None = Field(None, min_length=3, max_length=32)
    village_id: int | None = None
    name: str | None = Field(None, max_length=64)
    note: str | None = Field(None, max_length=255, json_schema_extra=multiline())


class PhoneQuery(ApiModel):
    township_id: int | None = None
    village_id: int | None = None
    q: str | None = Field(None, max_length=32, description="按号码或称呼查找")
    limit: int = Field(100, ge=1, le=500)
    offset: int = Field(0, ge=0)


class PhoneOut(ApiModel):
    id: int
    number: str
    village_id: int
    village_name: str
    township_id: int
    name: str | None
    note: str | None


class PhoneList(ApiModel):
    items: list[PhoneOut]
    total: int


def phone_json(entry: PhoneEntry) -> dict[str, Any]:
    return {
        "id": entry.phone.id,
        "number": entry.phone.number,
        "village_id": entry.village.id,
        "village_name": entry.village.name,
        "township_id": entry.village.township_id,
        "name": entry.phone.name,
        "note": entry.phone.note,
    }


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])


# -- API ----------------------------------------------------------------------------------------------


async def list_phones(request: web.Request, query: PhoneQuery) -> web.Response:
    entries, total = await request.app[PHONES].list(
        keys.principal(request),
        township_id=query.township_id,
        village_id=query.village_id,
        query=query.q,
        limit=query.limit,
        offset=query.offset,
    )
    return json_response({"items": [phone_json(entry) for entry in entries], "total": total})


async def get_phone(request: web.Request) -> web.Response:
    return json_response(phone_json(await request.app[PHONES].get(keys.principal(request), _id(request))))


async def create_phone(request: web.Request, body: PhoneIn) -> web.Response:
    entry = await request.app[PHONES].create(keys.principal(request), **body.model_dump())
    return json_response(phone_json(entry), status=201)


async def patch_phone(request: web.Request, body: PhonePatch) -> web.Response:
    changes = body.model_dump(exclude_unset=True)
    entry = await request.app[PHONES].update(keys.principal(request), _id(request), changes)
    return json_response(phone_json(entry))


async def delete_phone(request: web.Request) -> web.Response:
    await request.app[PHONES].delete(keys.principal(request), _id(request))
    return web.Response(status=204)


async def call_outcome(request: web.Request) -> web.Response:
    """What became of one call (by Linkedid): its case with recordings, or its missed-call record.

    The case pages' rules (``hotline/sealed.py``): outside the user's townships, or sealed for a
    non-inspector, the call does not exist — the same 404 as an unknown Linkedid, and a try at a
    sealed one is audit-logged, as is every inspector's look. The caller's number is shown in full
    only to inspectors and, on unsealed calls, to operators; everyone else sees ``138****1111``.
    """
    me = keys.principal(request)
    linkedid = request.match_info["linkedid"]
    outcome = await request.app[INTAKE].outcome(linkedid) if len(linkedid) <= 150 else None
    if outcome is None:
        raise NotFound(CALL_NOT_FOUND, code="call.not_found")
    records = [outcome[part] for part in ("case", "missed_call") if part in outcome]
    sealed = any(record.get("sealed") for record in records)
    township_id = records[0].get("township_id") if records else None
    visible = CaseAccess.may_see(me, sealed=sealed, township_id=township_id)
    if sealed:
        access = request.app[CASES].access
        what = ("case" if "case" in outcome else "missed_call", records[0].get("id"))
        detail = {"via": "api/hotline/calls", "linkedid": linkedid}
        if visible:
            await access.log(me, "case.view_sealed", *what, detail)
        else:  # queued: the refusal answers as fast as an unknown call
            access.deny(me, "case.sealed_denied", *what, detail)
    if not visible:
        raise NotFound(CALL_NOT_FOUND, code="call.not_found")
    if not CaseAccess.shows_full_number(me, sealed=sealed):
        for record in records:
            record["caller_number"] = mask_number(record.get("caller_number"))
    return json_response(outcome)


# -- the registry page ------------------------------------------------------------------------------


async def phones_page(request: web.Request) -> web.Response:
    me = keys.principal(request)
    query = request.query.get("q", "")[:32] or None
    entries, total = await request.app[PHONES].list(me, query=query, limit=500)
    villages = await request.app[keys.AREAS].list_villages(me)
    townships = {township.id: township.name for township in await request.app[keys.AREAS].list_townships(me)}
    return await render(
        request,
        "hotline/phones.html",
        {"entries": entries, "total": total, "villages": villages, "townships": townships, "q": query or ""},
    )


async def phones_form_create(request: web.Request) -> web.StreamResponse:
    try:
        form = await read_form(request, PhoneIn)
        await request.app[PHONES].create(keys.principal(request), **form.model_dump())
        await flash(request, "已登记")
    except UserError as exc:
        await flash(request, exc.message, "error")
    raise redirect("/hotline/phones")


async def phones_form_delete(request: web.Request) -> web.StreamResponse:
    try:
        await request.app[PHONES].delete(keys.principal(request), _id(request))
        await flash(request, "已删除")
    except UserError as exc:
        await flash(request, exc.message, "error")
    raise redirect("/hotline/phones")


def add_routes(routes: Routes) -> None:
    tag = "群众诉求热线"
    item = r"{id:\d+}"
    base = "/api/v1/villager-phones"
    routes.api(
        "GET", base, list_phones, summary="村民电话登记列表（按权限范围）", tag=tag, query=PhoneQuery,
        response=PhoneList, roles=EDITORS,
    )  # fmt: skip
    routes.api(
        "POST", base, create_phone, summary="登记村民电话", tag=tag, body=PhoneIn, response=PhoneOut, roles=EDITORS,
        status=201,
        description="来电号码在登记表里的，新案件自动归到这个村和乡镇；号码全县唯一。",
    )  # fmt: skip
    routes.api(
        "GET", f"{base}/{item}", get_phone, summary="村民电话登记详情", tag=tag, response=PhoneOut, roles=EDITORS
    )
    routes.api(
        "PATCH", f"{base}/{item}", patch_phone, summary="修改村民电话登记", tag=tag, body=PhonePatch,
        response=PhoneOut, roles=EDITORS,
    )  # fmt: skip
    routes.api("DELETE", f"{base}/{item}", delete_phone, summary="删除村民电话登记", tag=tag, roles=EDITORS, status=204)
    routes.api(
        "GET", f"/api/v1/hotline/calls/{LINKEDID}", call_outcome, summary="一通热线电话的结果（案件或未接来电）",
        tag=tag, roles=CALL_READERS,
        description="按 Asterisk 的 Linkedid 查：生成的案件（编号、状态、录音）或未接来电记录。"
        "尚未归属乡镇的只对全县范围的用户可见；违纪举报只对纪检监察可见，每次查看和每次被拒都记审计日志。"
        "来电号码只对纪检监察（以及非违纪举报的接线员）显示完整，其他角色看到的是 138****1111 这样的号码。",
    )  # fmt: skip
    routes.page("GET", "/hotline/phones", phones_page, roles=EDITORS)
    routes.page("POST", "/hotline/phones", phones_form_create, roles=EDITORS)
    routes.page("POST", f"/hotline/phones/{item}/delete", phones_form_delete, roles=EDITORS)
