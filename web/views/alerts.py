"""Official warnings on the web: the CAP push endpoint, the alerts API, and the 预警信息 page.

``POST /api/v1/alerts/cap`` is for the warning system's machines: a source's own token (``Authorization:
Bearer``), the body one CAP 1.2 message. A message that cannot be used is refused with 400 and its reason
(never half-used, never a 500); a repeat of one already received answers 200 with what became of the first.
People see and decide on the 预警信息 page: approvers release or decline what waits, admins cancel by hand,
inject a test alert, and add sources.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from xml.sax.saxutils import escape

from aiohttp import web
from pydantic import Field

from accounts.principal import Principal
from alerts.cap import CapRefused
from alerts.policy import CERTAINTY_LABELS, SEVERITY_LABELS, URGENCY_LABELS
from alerts.service import Receipt, receipt_json
from areas.demo import DEMO_COUNTY_CODE
from common.errors import InvalidInput, NotFound, UserError
from storage.models import ALERT_ACTION_LABELS, ALERT_STATE_LABELS, AlertMessage
from web import keys
from web.api import Routes, json_response
from web.domains import ALERTS, ASRUN
from web.render import flash, redirect, render
from web.validation import ApiModel, multiline, read_body, read_form

READERS = ("admin", "approver", "leader", "staff")
DECIDERS = ("approver", "admin")
NAV = (keys.NavItem("预警信息", "/alerts", READERS),)
CAP_CONTENT_TYPES = ("", "application/xml", "text/xml", "application/cap+xml", "application/octet-stream")
SOURCE_KIND_LABELS = {"push": "推送", "pull": "订阅拉取", "folder": "文件夹", "manual": "页面注入"}


class SourceIn(ApiModel):
    name: str = Field(min_length=1, max_length=64, description="来源名称，如“市气象局推送”")
    kind: Literal["push", "pull", "folder"] = Field("push", description="推送、订阅拉取或文件夹")
    url: str | None = Field(None, max_length=1024, description="订阅拉取：Atom/RSS 或 CAP 消息的网址")
    folder: str | None = Field(None, max_length=1024, description="文件夹：服务器上的目录（U盘、FTP 镜像）")
    poll_interval_s: int = Field(60, ge=10, le=86_400, description="订阅拉取的间隔（秒）")
    silent_after_s: int | None = Field(None, ge=60, le=30 * 86_400, description="超过这么久没有任何消息即告警（秒）")
    certificate_pem: str | None = Field(
        None,
        max_length=20_000,
        description="发送方证书（PEM）：填写后只接受由它签名的消息",
        json_schema_extra=multiline(),
    )


class TestAlertIn(ApiModel):
    headline: str = Field("测试预警，请忽略", min_length=1, max_length=200)
    area_code: str = Field(DEMO_COUNTY_CODE, min_length=6, max_length=12, pattern=r"^[0-9]+$")


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])


def message_json(row: AlertMessage) -> dict[str, Any]:
    return {
        "id": row.id,
        "identifier": row.identifier,
        "sender": row.sender,
        "sent": row.sent.isoformat(),
        "received_at": row.received_at.isoformat(),
        "status": row.status,
        "msg_type": row.msg_type,
        "event": row.event,
        "level": row.level,
        "severity": row.severity,
        "urgency": row.urgency,
        "certainty": row.certainty,
        "headline": row.headline,
        "expires": row.expires.isoformat() if row.expires else None,
        "state": row.state,
        "state_label": ALERT_STATE_LABELS.get(row.state, row.state),
        "state_reason": row.state_reason,
        "action": row.action,
        "action_label": ALERT_ACTION_LABELS.get(row.action or "", ""),
        "matched": row.matched,
        "zone_ids": row.zone_ids,
        "spoken": f"{row.spoken_lead}。{row.spoken_text}" if row.spoken_lead else None,
        "broadcast_ids": row.broadcast_ids,
    }


# -- the push endpoint (a source's own token) -------------------------------------------------------


async def push_cap(request: web.Request) -> web.Response:
    """One CAP 1.2 message from a push source: 202 when new, 200 for a repeat, 400 with the reason when refused."""
    service = request.app[ALERTS]
    source = await service.source_for_token(request.headers.get("Authorization"))
    if request.content_type not in CAP_CONTENT_TYPES:
        raise InvalidInput(
            "请求体应为 CAP 1.2 XML（Content-Type: application/xml）", code="cap.content_type",
            detail=f"Content-Type {request.content_type}",
        )  # fmt: skip
    data = await read_body(request, service.config.max_bytes)
    try:
        receipt = await service.receive(source.id, data, origin=f"推送 {request.remote or ''}".strip())
    except CapRefused as refused:
        raise InvalidInput(refused.reason, code=refused.code, detail=refused.detail) from None
    return json_response(receipt_json(receipt), status=200 if receipt.duplicate else 202)


# -- the API for people -----------------------------------------------------------------------------


async def list_alerts(request: web.Request) -> web.Response:
    return json_response({"items": [message_json(row) for row in await request.app[ALERTS].list_messages()]})


async def get_alert(request: web.Request) -> web.Response:
    return json_response(message_json(await request.app[ALERTS].get(_id(request))))


def _decision(name: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        service = request.app[ALERTS]
        row = await getattr(service, name)(keys.principal(request), _id(request))
        return json_response(message_json(row))

    handler.__name__ = f"{name}_alert"
    return handler


async def create_source(request: web.Request, body: SourceIn) -> web.Response:
    me = keys.principal(request)
    source, token = await request.app[ALERTS].create_source(me.actor, **body.model_dump())
    return json_response({"id": source.id, "name": source.name, "kind": source.kind, "token": token}, status=201)


# -- the page --------------------------------------------------------------------------------------


async def _outcomes(request: web.Request, me: Principal, row: AlertMessage) -> list[dict[str, Any]]:
    """Per broadcast: the outcome derived from the speakers (as-run log), and how fast after ``sent`` it began."""
    log = request.app[ASRUN]
    found = []
    for broadcast_id in row.broadcast_ids or []:
        try:
            result = await log.result(me, broadcast_id)
        except NotFound:
            continue
        started = [speaker.started_at for speaker in result.speakers if speaker.played and speaker.started_at]
        delay = (min(started) - row.sent).total_seconds() if started else None
        villages = {speaker.place.split(" · ")[0] for speaker in result.speakers if speaker.played}
        found.append({"result": result.as_json(log.zone), "delay_s": delay, "villages_heard": len(villages)})
    return found


async def alerts_page(request: web.Request) -> web.Response:
    service = request.app[ALERTS]
    return await render(
        request,
        "alerts/alerts.html",
        {
            "rows": await service.list_messages(),
            "refusals": await service.list_refusals(),
            "sources": await service.list_sources(),
            "silent_ids": {source.id for source in await service.silent_sources()},
            "STATE_LABELS": ALERT_STATE_LABELS,
            "ACTION_LABELS": ALERT_ACTION_LABELS,
            "SEVERITY_LABELS": SEVERITY_LABELS,
            "SOURCE_KIND_LABELS": SOURCE_KIND_LABELS,
            "new_token": None,
        },
    )


async def alert_page(request: web.Request) -> web.Response:
    me = keys.principal(request)
    row = await request.app[ALERTS].get(_id(request))
    return await render(
        request,
        "alerts/alert.html",
        {
            "row": row,
            "outcomes": await _outcomes(request, me, row),
            "STATE_LABELS": ALERT_STATE_LABELS,
            "ACTION_LABELS": ALERT_ACTION_LABELS,
            "SEVERITY_LABELS": SEVERITY_LABELS,
            "URGENCY_LABELS": URGENCY_LABELS,
            "CERTAINTY_LABELS": CERTAINTY_LABELS,
        },
    )


def _decision_form(name: str, done: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        service = request.app[ALERTS]
        try:
            await getattr(service, name)(keys.principal(request), _id(request))
            await flash(request, done)
        except UserError as exc:
            await flash(request, exc.message, "error")
        raise redirect(f"/alerts/{_id(request)}")

    handler.__name__ = f"{name}_alert_form"
    return handler


async def source_form(request: web.Request) -> web.StreamResponse:
    me = keys.principal(request)
    service = request.app[ALERTS]
    try:
        form = await read_form(request, SourceIn)
        source, token = await service.create_source(me.actor, **form.model_dump())
    except UserError as exc:
        await flash(request, exc.message, "error")
        raise redirect("/alerts") from None
    if token is None:
        await flash(request, f"已添加预警来源“{source.name}”")
        raise redirect("/alerts")
    # The token is shown this once (only its hash is kept): rendered, not redirected.
    return await render(
        request,
        "alerts/alerts.html",
        {
            "rows": await service.list_messages(),
            "refusals": await service.list_refusals(),
            "sources": await service.list_sources(),
            "silent_ids": {source.id for source in await service.silent_sources()},
            "STATE_LABELS": ALERT_STATE_LABELS,
            "ACTION_LABELS": ALERT_ACTION_LABELS,
            "SEVERITY_LABELS": SEVERITY_LABELS,
            "SOURCE_KIND_LABELS": SOURCE_KIND_LABELS,
            "new_token": (source.name, token) if token else None,
        },
    )


def test_alert_xml(headline: str, area_code: str, now: datetime) -> bytes:
    """A CAP 1.2 message with status Test, as an admin injects it to try the chain (only 测试分区 play it)."""
    sent = now.astimezone(UTC).replace(microsecond=0)
    expires = sent + timedelta(hours=1)
    identifier = f"TEST-{sent:%Y%m%d%H%M%S}-{now.microsecond:06d}"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>村响页面注入</sender>
  <sent>{sent.isoformat()}</sent>
  <status>Test</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>zh-CN</language>
    <category>Other</category>
    <event>测试预警</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Observed</certainty>
    <expires>{expires.isoformat()}</expires>
    <senderName>村响测试</senderName>
    <headline>{escape(headline)}</headline>
    <instruction>这是测试，请忽略。</instruction>
    <area>
      <areaDesc>测试</areaDesc>
      <geocode><valueName>GB/T 2260</valueName><value>{area_code}</value></geocode>
    </area>
  </info>
</alert>
""".encode()


async def test_alert_form(request: web.Request) -> web.StreamResponse:
    service = request.app[ALERTS]
    try:
        form = await read_form(request, TestAlertIn)
        data = test_alert_xml(form.headline, form.area_code, request.app[keys.CLOCK].now())
        receipt: Receipt = await service.receive(await service.manual_source(), data, origin="页面注入的测试预警")
        await service.audit_injection(keys.principal(request).actor, receipt.message_id)
        await flash(
            request, f"测试预警已注入：{ALERT_STATE_LABELS.get(receipt.state, receipt.state)}，{receipt.reason}"
        )
        raise redirect(f"/alerts/{receipt.message_id}")
    except CapRefused as refused:
        await flash(request, f"测试预警被拒收：{refused.reason}", "error")
    except UserError as exc:
        await flash(request, exc.message, "error")
    raise redirect("/alerts")


async def todo(request: web.Request, me: Principal) -> list[keys.TodoItem]:
    """Alerts waiting for an approver's release (urgent: a warning does not wait well); for admins, sources that
    have gone silent longer than their setting (warnings may be missed)."""
    if not me.has_role(*DECIDERS):
        return []
    service = request.app[ALERTS]
    items = []
    waiting = [row for row in await service.list_messages() if row.state == "pending"]
    if waiting:
        items.append(keys.TodoItem("待放行的预警信息", len(waiting), "/alerts", urgent=True))
    if me.has_role("admin"):
        for source in await service.silent_sources():
            items.append(keys.TodoItem(f"预警来源“{source.name}”长时间没有消息", 1, "/alerts", urgent=True))
    return items


def add_routes(routes: Routes) -> None:
    tag = "预警信息（CAP）"
    item = r"{id:\d+}"
    routes.api(
        "POST", "/api/v1/alerts/cap", push_cap, summary="推送一条 CAP 1.2 预警消息（来源令牌认证）", tag=tag,
        auth="self", status=202, content_type="application/xml",
        description="请求体为一条 CAP 1.2 XML 消息，Authorization: Bearer 来源令牌。不符合规范的消息返回 400 和原因，"
        "不会部分使用；同一发布者、同一标识的重复消息返回 200。",
    )  # fmt: skip
    routes.api("GET", "/api/v1/alerts", list_alerts, summary="预警信息列表", tag=tag, roles=READERS)
    routes.api("GET", f"/api/v1/alerts/{item}", get_alert, summary="一条预警信息", tag=tag, roles=READERS)
    routes.api(
        "POST", f"/api/v1/alerts/{item}/release", _decision("release"), summary="放行待审核的预警（立即播出）",
        tag=tag, roles=DECIDERS,
    )  # fmt: skip
    routes.api(
        "POST", f"/api/v1/alerts/{item}/reject", _decision("reject"), summary="不予放行", tag=tag, roles=DECIDERS
    )
    routes.api(
        "POST", f"/api/v1/alerts/{item}/replay", _decision("replay_by_hand"), summary="重播一条播出过的预警（记审计）",
        tag=tag, roles=("admin",),
    )  # fmt: skip
    routes.api(
        "POST", f"/api/v1/alerts/{item}/cancel", _decision("cancel"), summary="手动撤销（停止播出，记审计）",
        tag=tag, roles=("admin",),
    )  # fmt: skip
    routes.api(
        "POST", "/api/v1/alert-sources", create_source, summary="添加预警来源（推送来源的令牌只显示这一次）", tag=tag,
        body=SourceIn, roles=("admin",), status=201,
    )  # fmt: skip
    routes.page("GET", "/alerts", alerts_page, roles=READERS)
    routes.page("GET", f"/alerts/{item}", alert_page, roles=READERS)
    routes.page("POST", f"/alerts/{item}/release", _decision_form("release", "已放行，正在播出"), roles=DECIDERS)
    routes.page("POST", f"/alerts/{item}/reject", _decision_form("reject", "已决定不播出"), roles=DECIDERS)
    routes.page("POST", f"/alerts/{item}/cancel", _decision_form("cancel", "已撤销"), roles=("admin",))
    routes.page("POST", f"/alerts/{item}/replay", _decision_form("replay_by_hand", "已重播"), roles=("admin",))
    routes.page("POST", "/alerts/sources", source_form, roles=("admin",))
    routes.page("POST", "/alerts/test", test_alert_form, roles=("admin",))


__all__ = ["NAV", "add_routes", "message_json", "test_alert_xml", "todo"]
