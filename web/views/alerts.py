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
from alerts.service import PolicyRuleInput, Receipt, receipt_json
from areas.demo import DEMO_COUNTY_CODE
from common.errors import InvalidInput, NotFound, UserError
from storage.models import ALERT_ACTION_LABELS, ALERT_STATE_LABELS, AlertMessage, AlertPolicyRule, AlertSource
from web import keys
from web.api import Routes, json_response
from web.domains import ALERTS, ASRUN
from web.middleware import status_for
from web.render import flash, redirect, render
from web.validation import ApiModel, multiline, read_body, read_form, read_post

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


class SourcePatch(ApiModel):
    """A source changed (its kind and token stay): the add form's fields and whether it is in use."""

    name: str = Field(min_length=1, max_length=64, description="来源名称")
    active: bool = Field(True, description="停用的来源不再接收（推送返回 401，订阅和文件夹不再读取）")
    url: str | None = Field(None, max_length=1024, description="订阅拉取：Atom/RSS 或 CAP 消息的网址")
    folder: str | None = Field(None, max_length=1024, description="文件夹：服务器上的目录")
    poll_interval_s: int = Field(60, ge=10, le=86_400, description="订阅拉取的间隔（秒）")
    silent_after_s: int | None = Field(None, ge=60, le=30 * 86_400, description="超过这么久没有任何消息即告警（秒）")
    certificate_pem: str | None = Field(
        None, max_length=20_000, description="发送方证书（PEM）；清空即不再检查签名", json_schema_extra=multiline()
    )


Severity = Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"]
Urgency = Literal["Immediate", "Expected", "Future", "Past", "Unknown"]
Certainty = Literal["Observed", "Likely", "Possible", "Unlikely", "Unknown"]


class PolicyRuleIn(ApiModel):
    """One row of the policy table; empty lists match anything, the first matching row (by 顺序) decides."""

    position: int = Field(ge=0, le=100_000, description="顺序：数字小的先比对")
    action: Literal["auto", "review", "record"] = Field(description="自动播出、待审核或仅记录")
    event: str | None = Field(None, max_length=64, description="事件（包含即匹配，如“寒潮”）；空：任何事件")
    severities: list[Severity] = Field(default_factory=list, description="严重程度；空：任何")
    urgencies: list[Urgency] = Field(default_factory=list, description="紧急程度；空：任何")
    certainties: list[Certainty] = Field(default_factory=list, description="确定性；空：任何")
    repeat_every_min: int | None = Field(None, ge=5, le=1440, description="重复间隔（分钟）；空：不重复")
    max_plays: int = Field(1, ge=1, le=20, description="最多播出次数（含第一次）")
    repeats_in_quiet_hours: bool = Field(False, description="重复播出也在静默时段播（第一次总是播）")
    note: str = Field("", max_length=255, description="备注")

    def as_input(self) -> PolicyRuleInput:
        many = {"severities": tuple(self.severities), "urgencies": tuple(self.urgencies)}
        return PolicyRuleInput(**{**self.model_dump(), **many, "certainties": tuple(self.certainties)})


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


def source_json(source: AlertSource) -> dict[str, Any]:
    return {
        "id": source.id, "name": source.name, "kind": source.kind, "active": source.active, "url": source.url,
        "folder": source.folder, "poll_interval_s": source.poll_interval_s, "silent_after_s": source.silent_after_s,
        "signed": bool(source.certificate_pem), "last_message_at": _iso(source.last_message_at),
        "last_heartbeat_at": _iso(source.last_heartbeat_at), "last_error": source.last_error,
    }  # fmt: skip


def rule_json(rule: AlertPolicyRule) -> dict[str, Any]:
    return {"id": rule.id, **PolicyRuleInput.of(rule).values(), "action_label": ALERT_ACTION_LABELS[rule.action]}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def list_sources(request: web.Request) -> web.Response:
    sources = await request.app[ALERTS].list_sources()
    return json_response({"items": [source_json(source) for source in sources if source.kind != "manual"]})


async def patch_source(request: web.Request, body: SourcePatch) -> web.Response:
    source = await request.app[ALERTS].update_source(keys.principal(request).actor, _id(request), **body.model_dump())
    return json_response(source_json(source))


async def list_policy(request: web.Request) -> web.Response:
    return json_response({"items": [rule_json(rule) for rule in await request.app[ALERTS].policy_rules()]})


async def create_rule(request: web.Request, body: PolicyRuleIn) -> web.Response:
    rule = await request.app[ALERTS].save_policy_rule(keys.principal(request).actor, None, body.as_input())
    return json_response(rule_json(rule), status=201)


async def put_rule(request: web.Request, body: PolicyRuleIn) -> web.Response:
    rule = await request.app[ALERTS].save_policy_rule(keys.principal(request).actor, _id(request), body.as_input())
    return json_response(rule_json(rule))


async def delete_rule(request: web.Request) -> web.Response:
    await request.app[ALERTS].delete_policy_rule(keys.principal(request).actor, _id(request))
    return web.Response(status=204)


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


async def alerts_page(
    request: web.Request,
    *,
    status: int = 200,
    values: dict[str, Any] | None = None,
    error: str | None = None,
    new_token: tuple[str, str] | None = None,
) -> web.Response:
    """The list; after a refused 添加来源, with the reason and what was typed."""
    service = request.app[ALERTS]
    response = await render(
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
            "new_token": new_token,
            "values": values or {},
            "error": error,
        },
    )
    response.set_status(status)
    return response


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
    posted = await read_post(request)
    try:
        form = await read_form(request, SourceIn)
        source, token = await service.create_source(me.actor, **form.model_dump())
    except UserError as exc:
        return await alerts_page(request, status=status_for(exc), values=_typed(posted), error=exc.message)
    if token is None:
        await flash(request, f"已添加预警来源“{source.name}”")
        raise redirect("/alerts")
    # The token is shown this once (only its hash is kept): rendered, not redirected.
    return await alerts_page(request, new_token=(source.name, token))


def _typed(posted: Any) -> dict[str, Any]:
    """What a refused form held, to show it again (several values for ticked boxes)."""
    return {key: (posted.getall(key) if len(posted.getall(key)) > 1 else posted.get(key)) for key in posted}


async def source_page(
    request: web.Request, *, status: int = 200, values: dict[str, Any] | None = None, error: str | None = None
) -> web.Response:
    """One source: its state and the form to change it or switch it off (the typed values after a refusal)."""
    service = request.app[ALERTS]
    source = await service.get_source(_id(request))
    shown = values if values is not None else {
        "name": source.name, "active": "on" if source.active else None, "url": source.url or "",
        "folder": source.folder or "", "poll_interval_s": source.poll_interval_s,
        "silent_after_s": source.silent_after_s or "", "certificate_pem": source.certificate_pem or "",
    }  # fmt: skip
    response = await render(
        request,
        "alerts/source.html",
        {"source": source, "values": shown, "error": error, "SOURCE_KIND_LABELS": SOURCE_KIND_LABELS},
    )
    response.set_status(status)
    return response


async def source_update_form(request: web.Request) -> web.StreamResponse:
    posted = await read_post(request)
    try:
        form = await read_form(request, SourcePatch, checkboxes=("active",))
        source = await request.app[ALERTS].update_source(
            keys.principal(request).actor, _id(request), **form.model_dump()
        )
    except UserError as exc:
        return await source_page(request, status=status_for(exc), values=_typed(posted), error=exc.message)
    await flash(request, f"已保存预警来源“{source.name}”" + ("" if source.active else "（已停用）"))
    raise redirect(f"/alerts/sources/{source.id}")


async def policy_page(
    request: web.Request,
    *,
    status: int = 200,
    typed_rule: int | None = None,
    values: dict[str, Any] | None = None,
    error: str | None = None,
) -> web.Response:
    """The policy table, one form per row and one to add a row; after a refusal, that form with what was typed
    (``typed_rule``: the row's id, 0 for the new row)."""
    rules = await request.app[ALERTS].policy_rules()
    forms = []
    for rule in rules:
        shown = values if typed_rule == rule.id and values is not None else _rule_values(rule)
        forms.append({"id": rule.id, "fields": shown, "error": error if typed_rule == rule.id else None})
    new_position = max((rule.position for rule in rules), default=0) + 10
    new = values if typed_rule == 0 and values is not None else {"position": new_position, "action": "review",
                                                                   "max_plays": 1}  # fmt: skip
    response = await render(
        request,
        "alerts/policy.html",
        {
            "forms": forms,
            "new": {"fields": new, "error": error if typed_rule == 0 else None},
            "ACTION_LABELS": ALERT_ACTION_LABELS,
            "SEVERITY_LABELS": SEVERITY_LABELS,
            "URGENCY_LABELS": URGENCY_LABELS,
            "CERTAINTY_LABELS": CERTAINTY_LABELS,
        },
    )
    response.set_status(status)
    return response


def _rule_values(rule: AlertPolicyRule) -> dict[str, Any]:
    return {
        "position": rule.position, "action": rule.action, "event": rule.event or "",
        "severities": list(rule.severities or []), "urgencies": list(rule.urgencies or []),
        "certainties": list(rule.certainties or []), "repeat_every_min": rule.repeat_every_min or "",
        "max_plays": rule.max_plays, "repeats_in_quiet_hours": "on" if rule.repeats_in_quiet_hours else None,
        "note": rule.note,
    }  # fmt: skip


def _typed_rule(posted: Any) -> dict[str, Any]:
    typed = {key: posted.get(key) for key in posted if key not in ("severities", "urgencies", "certainties")}
    for many in ("severities", "urgencies", "certainties"):
        typed[many] = posted.getall(many, [])
    return typed


def _rule_form(existing: bool) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        rule_id = _id(request) if existing else None
        posted = await read_post(request)
        try:
            form = await read_form(request, PolicyRuleIn, checkboxes=("repeats_in_quiet_hours",))
            await request.app[ALERTS].save_policy_rule(keys.principal(request).actor, rule_id, form.as_input())
        except UserError as exc:
            return await policy_page(
                request, status=status_for(exc), typed_rule=rule_id or 0, values=_typed_rule(posted), error=exc.message
            )
        await flash(request, "已保存策略" if existing else "已添加策略行")
        raise redirect("/alerts/policy")

    handler.__name__ = "policy_rule_form" if existing else "policy_new_rule_form"
    return handler


async def rule_delete_form(request: web.Request) -> web.StreamResponse:
    try:
        await request.app[ALERTS].delete_policy_rule(keys.principal(request).actor, _id(request))
        await flash(request, "已删除策略行")
    except UserError as exc:
        await flash(request, exc.message, "error")
    raise redirect("/alerts/policy")


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
    routes.api("GET", "/api/v1/alert-sources", list_sources, summary="预警来源列表", tag=tag, roles=("admin",))
    routes.api(
        "PATCH", f"/api/v1/alert-sources/{item}", patch_source, summary="修改或停用预警来源（方式和令牌不变）",
        tag=tag, body=SourcePatch, roles=("admin",),
    )  # fmt: skip
    routes.api("GET", "/api/v1/alert-policy", list_policy, summary="预警策略表", tag=tag, roles=READERS)
    routes.api(
        "POST", "/api/v1/alert-policy", create_rule, summary="添加策略行", tag=tag, body=PolicyRuleIn,
        roles=("admin",), status=201,
    )  # fmt: skip
    routes.api(
        "PUT", f"/api/v1/alert-policy/{item}", put_rule, summary="修改策略行", tag=tag, body=PolicyRuleIn,
        roles=("admin",),
    )  # fmt: skip
    routes.api(
        "DELETE", f"/api/v1/alert-policy/{item}", delete_rule, summary="删除策略行", tag=tag, roles=("admin",),
        status=204,
    )  # fmt: skip
    routes.page("GET", "/alerts", alerts_page, roles=READERS)
    routes.page("GET", "/alerts/policy", policy_page, roles=("admin",))
    routes.page("POST", "/alerts/policy", _rule_form(existing=False), roles=("admin",))
    routes.page("POST", f"/alerts/policy/{item}", _rule_form(existing=True), roles=("admin",))
    routes.page("POST", f"/alerts/policy/{item}/delete", rule_delete_form, roles=("admin",))
    routes.page("GET", f"/alerts/sources/{item}", source_page, roles=("admin",))
    routes.page("POST", f"/alerts/sources/{item}", source_update_form, roles=("admin",))
    routes.page("GET", f"/alerts/{item}", alert_page, roles=READERS)
    routes.page("POST", f"/alerts/{item}/release", _decision_form("release", "已放行，正在播出"), roles=DECIDERS)
    routes.page("POST", f"/alerts/{item}/reject", _decision_form("reject", "已决定不播出"), roles=DECIDERS)
    routes.page("POST", f"/alerts/{item}/cancel", _decision_form("cancel", "已撤销"), roles=("admin",))
    routes.page("POST", f"/alerts/{item}/replay", _decision_form("replay_by_hand", "已重播"), roles=("admin",))
    routes.page("POST", "/alerts/sources", source_form, roles=("admin",))
    routes.page("POST", "/alerts/test", test_alert_form, roles=("admin",))


__all__ = ["NAV", "add_routes", "message_json", "test_alert_xml", "todo"]
