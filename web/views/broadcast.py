"""The broadcasting API (notices, approval, emergency, the as-run log, coverage, speakers, the 4G terminal
protocol) and the as-run, coverage and speaker pages; the notice pages are :mod:`web.views.notice_pages`.

Handlers translate HTTP to calls on the broadcasting services (handed over by
``server.py`` under the keys of :mod:`web.domains`) and nothing more: the rules live in
``broadcast/``.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any, Literal

from aiohttp import BodyPartReader, web
from pydantic import Field
from sqlalchemy import select

from accounts.principal import Principal
from areas.addresses import check_rtp_destination, check_ttl
from broadcast.asrun import DISCLOSURE_KINDS, AsRunFilter
from broadcast.notices import STATE_LABELS, NoticeInput, notice_json
from broadcast.production import notice_text
from broadcast.review import review_text
from broadcast.speaker_test import DEFAULT_TEST_TEXT
from broadcast.transports import SpeakerTarget
from common.errors import InvalidInput, NotFound, PermissionDenied, UserError
from storage.models import (
    KIND_LABELS,
    NOTICE_KINDS,
    PRIORITY_OF_KIND,
    RUN_FAILED,
    RUN_STATE_LABELS,
    RUN_STATES,
    ZoneBroadcastSettings,
    transport_label,
)
from tts import privacy
from tts.audio import Profile
from web import keys
from web.api import Routes, json_response
from web.domains import ASRUN, DISPATCHER, NOTICES, SPEAKER_TESTER, TERMINALS
from web.middleware import status_for
from web.render import flash, redirect, render
from web.validation import ApiModel, multiline, read_form, read_post, read_query
from web.views import speakers
from web.views.schedules import render_week_page

NAV = (
    keys.NavItem("通知", "/broadcast/notices", ("staff", "approver", "admin")),
    keys.NavItem("审核", "/broadcast/approvals", ("approver",)),
    keys.NavItem("播出安排", "/broadcast/schedules", ("staff", "approver", "admin")),
    keys.NavItem("播出记录", "/broadcast/asrun", ("staff", "approver", "admin", "leader")),
    keys.NavItem("公开覆盖", "/broadcast/coverage", ("staff", "approver", "admin", "leader")),
    keys.NavItem("终端", "/broadcast/speakers", ("staff", "admin")),
    keys.NavItem("应急广播", "/broadcast/emergency", needs_emergency=True),
)
WRITERS = ("staff", "admin")
READERS = ("staff", "approver", "admin", "leader")
Kind = Literal[
    "emergency", "disclosure_party", "disclosure_village", "disclosure_finance", "service", "policy", "civility"
]


class NoticeIn(ApiModel):
    kind: Kind
    title: str = Field(min_length=1, max_length=200)
    body: str = Field("", max_length=20000, json_schema_extra=multiline())
    township_id: int | None = None
    voice_engine: Literal["edge", "espeak"] | None = None
    voice_name: str | None = Field(None, max_length=96)
    voice_rate: str | None = Field(None, max_length=8, description="语速，如 -15%")
    repeats: int | None = Field(None, ge=1, le=10)


class NoticeQuery(ApiModel):
    state: Literal["draft", "pending", "approved", "rejected", "archived"] | None = None
    kind: Kind | None = None


class TextIn(ApiModel):
    title: str = Field("", max_length=200)
    body: str = Field("", max_length=20000, json_schema_extra=multiline())
    notice_id: int | None = Field(None, description="这条通知（作者对手机号码的决定随之生效）")


class ApproveIn(ApiModel):
    revision: int | None = Field(None, description="审核人看过的版本号；通知已改成新版本时拒绝（409）")


class RejectIn(ApiModel):
    reason: str = Field(min_length=1, max_length=500, json_schema_extra=multiline())
    revision: int | None = None


class NumberIn(ApiModel):
    number: str | None = Field(None, max_length=32, description="手机号码；不填时隐去全部身份证号和银行卡号")


class AudioQuery(ApiModel):
    revision: int | None = Field(None, description="页面上的版本号：通知已修改时返回404，不会播放旧的试听")


class PlayIn(ApiModel):
    zone_ids: list[int] = Field(min_length=1)


class EmergencyIn(ApiModel):
    title: str = Field(min_length=1, max_length=200)
    body: str = Field("", max_length=5000, json_schema_extra=multiline())
    zone_ids: list[int] = Field(min_length=1, description="播出分区")
    township_id: int | None = None
    confirm: bool = Field(description="必须为 true：确认立即向所选分区播出")


class AsRunQuery(ApiModel):
    township_id: int | None = None
    village_id: int | None = None
    zone_id: int | None = None
    kind: Kind | None = None
    state: int | None = Field(None, ge=0, le=len(RUN_STATES) - 1)
    since: date | None = Field(None, description="起始日期（含，北京时间）")
    until: date | None = Field(None, description="截止日期（含，北京时间）")
    limit: int = Field(200, ge=1, le=5000)
    offset: int = Field(0, ge=0)


class CoverageQuery(ApiModel):
    since: date | None = None
    until: date | None = None
    township_id: int | None = None


class SpeakerTestIn(ApiModel):
    text: str = Field(DEFAULT_TEST_TEXT, min_length=1, max_length=200)


class ZoneBroadcastIn(ApiModel):
    rtp_group: str | None = Field(None, max_length=64, description="组播组 IP:端口（只能在 239.0.0.0/8 内），空为单播")
    rtp_ttl: int | None = Field(None, ge=0, le=255, description="组播TTL，不能超过设置 broadcast.rtp_max_ttl（默认8）")


class ReportIn(ApiModel):
    play_id: int
    event: Literal["started", "finished", "failed"]
    error: str | None = Field(None, max_length=500)


class HeartbeatIn(ApiModel):
    status: dict[str, Any] = Field(
        default_factory=dict, description="终端自报状态（音量、信号等），只写入调试日志，不保存"
    )


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])


def notice_input(body: NoticeIn) -> NoticeInput:
    return NoticeInput(**body.model_dump())


# -- notices ------------------------------------------------------------------------------------


async def list_notices(request: web.Request, query: NoticeQuery) -> web.Response:
    found = await request.app[NOTICES].list_notices(
        keys.principal(request), state=query.state, kinds=[query.kind] if query.kind else []
    )
    return json_response([notice_json(notice) for notice in found])


async def create_notice(request: web.Request, body: NoticeIn) -> web.Response:
    notice = await request.app[NOTICES].create(keys.principal(request), notice_input(body))
    return json_response(notice_json(notice), status=201)


async def get_notice(request: web.Request) -> web.Response:
    return json_response(notice_json(await request.app[NOTICES].get(keys.principal(request), _id(request))))


async def update_notice(request: web.Request, body: NoticeIn) -> web.Response:
    notice = await request.app[NOTICES].update(keys.principal(request), _id(request), notice_input(body))
    return json_response(notice_json(notice))


def _transition(name: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        service = request.app[NOTICES]
        notice = await getattr(service, name)(keys.principal(request), _id(request))
        return json_response(notice_json(notice))

    handler.__name__ = f"{name}_notice"
    return handler


async def approve_notice(request: web.Request, body: ApproveIn) -> web.Response:
    notice = await request.app[NOTICES].approve(keys.principal(request), _id(request), body.revision)
    return json_response(notice_json(notice))


async def reject_notice(request: web.Request, body: RejectIn) -> web.Response:
    notice = await request.app[NOTICES].reject(
        keys.principal(request), _id(request), body.reason, revision=body.revision
    )
    return json_response(notice_json(notice))


async def mask_notice_numbers(request: web.Request, body: NumberIn) -> web.Response:
    notice = await request.app[NOTICES].mask_numbers(keys.principal(request), _id(request), body.number)
    return json_response(notice_json(notice))


async def keep_notice_number(request: web.Request, body: NumberIn) -> web.Response:
    if not body.number:
        raise InvalidInput("请写明要保留的手机号码", fields={"number": "必填"})
    notice = await request.app[NOTICES].keep_number(keys.principal(request), _id(request), body.number)
    return json_response(notice_json(notice))


async def check_notice_text(request: web.Request, body: TextIn) -> web.Response:
    """What the editor shows as the clerk types: the spoken form, and every personal number, in place."""
    service = request.app[NOTICES]
    decisions: dict[str, Any] = {}
    if body.notice_id is not None:
        decisions = (await service.get(keys.principal(request), body.notice_id)).number_decisions or {}
    # In a thread: normalising a 5,000-character notice is tens of milliseconds of CPU.
    review = await asyncio.to_thread(
        review_text, body.title, body.body, decisions=decisions, max_chars=service.max_chars
    )
    return json_response(
        {
            "spoken": review.spoken,
            "spoken_error": review.spoken_error,
            "findings": [finding.as_json() for finding in review.findings],
            "blocking": bool(review.blocking),
            "undecided": [finding.key for finding in review.undecided],
            "ready": review.ready,
            "refusal": review.refusal(),
            "masked_text": privacy.mask(notice_text({"title": body.title, "body": body.body})),
        }
    )


async def upload_recording(request: web.Request) -> web.Response:
    """multipart/form-data with a ``recording`` file (an upload, or the browser's MediaRecorder output)."""
    service = request.app[NOTICES]
    if not request.content_type.startswith("multipart/"):
        raise InvalidInput("请用 multipart/form-data 上传录音（字段名 recording）", fields={"recording": "缺少文件"})
    try:
        reader = await request.multipart()
    except ValueError:  # multipart/form-data without its boundary
        raise InvalidInput("上传的内容格式不正确，请重新选择录音文件", fields={"recording": "格式不正确"}) from None
    data = b""
    filename = ""
    async for part in reader:
        if isinstance(part, BodyPartReader) and part.name == "recording":
            filename = part.filename or "recording.webm"
            chunks = []
            size = 0
            while chunk := await part.read_chunk():
                size += len(chunk)
                if size > service.recording_max_bytes:
                    raise InvalidInput("录音文件太大", fields={"recording": "太大"})
                chunks.append(chunk)
            data = b"".join(chunks)
    notice = await service.set_recording(keys.principal(request), _id(request), data, filename)
    return json_response(notice_json(notice))


async def notice_audio(request: web.Request, query: AudioQuery) -> web.StreamResponse:
    """This revision's audio: the preview a writer or approver listens to is the file that will air."""
    path = await request.app[NOTICES].audio_path(
        keys.principal(request), _id(request), Profile.MP3, revision=query.revision
    )
    # Content-addressed (its name is its key): a newer revision is another URL, so caching cannot mislead.
    return web.FileResponse(path, headers={"Content-Type": "audio/mpeg", "Cache-Control": "private, max-age=3600"})


async def preview_notice(request: web.Request) -> web.Response:
    notice = await request.app[NOTICES].preview(keys.principal(request), _id(request))
    return json_response(notice_json(notice))


async def broadcast_result(request: web.Request) -> web.Response:
    """One broadcast's result per speaker, and its status derived from them (全部成功 / 部分成功 / 失败)."""
    log = request.app[ASRUN]
    result = await log.result(keys.principal(request), _id(request))
    return json_response(result.as_json(log.zone))


async def play_notice(request: web.Request, body: PlayIn) -> web.Response:
    me = keys.principal(request)
    notice = await request.app[NOTICES].get(me, _id(request))
    _check_notice_township(notice.township_id, await _check_zones(request, body.zone_ids))
    broadcast_id = await request.app[DISPATCHER].request(
        notice_id=notice.id, zone_ids=body.zone_ids, origin="manual", requested_by=me.user_id
    )
    return json_response({"broadcast_id": broadcast_id}, status=202)


async def _check_zones(request: web.Request, zone_ids: list[int]) -> set[int]:
    """Every zone exists and is in the user's scope; returns the townships they lie in."""
    areas = request.app[keys.AREAS]
    townships: set[int] = set()
    for zone_id in zone_ids:
        try:
            _zone, village = await areas.get_zone(keys.principal(request), zone_id)
        except NotFound:
            raise InvalidInput(f"播出分区 {zone_id} 不存在", fields={"zone_ids": "分区不存在"}) from None
        townships.add(village.township_id)
    return townships


def _check_notice_township(township_id: int | None, townships: set[int]) -> None:
    """A township's notice plays in that township's zones only (as its schedules do); a county notice anywhere."""
    if township_id is not None and townships - {township_id}:
        raise InvalidInput("所选分区不属于这条通知所在的乡镇", fields={"zone_ids": "不属于本乡镇"})


def emergency_township(me: Principal, given: int | None, townships: set[int]) -> int | None:
    """An emergency belongs to the township of its zones (a county-wide sender may reach several: county level)."""
    if given is not None:
        if townships - {given}:
            raise InvalidInput("所选分区不都在这个乡镇内", fields={"zone_ids": "不属于所选乡镇"})
        return given
    if len(townships) == 1:
        return next(iter(townships))
    if me.county_wide:
        return None
    raise InvalidInput("一次应急广播只能发往一个乡镇的分区，请分乡镇发送", fields={"zone_ids": "分区属于多个乡镇"})


async def send_emergency(request: web.Request, body: EmergencyIn) -> web.Response:
    """Written, approved, rendered (fastest engine first) and queued at once; preempts everything."""
    me = keys.principal(request)
    if not me.can_emergency:
        raise PermissionDenied("您没有应急广播权限", code="emergency.forbidden")
    if not body.confirm:
        raise InvalidInput("请确认立即播出（confirm 必须为 true）", fields={"confirm": "请确认"})
    townships = await _check_zones(request, body.zone_ids)
    notice = await request.app[NOTICES].create_emergency(
        me, title=body.title, body=body.body, township_id=emergency_township(me, body.township_id, townships)
    )
    broadcast_id = await request.app[DISPATCHER].request(
        notice_id=notice.id, zone_ids=body.zone_ids, origin="emergency", requested_by=me.user_id
    )
    return json_response({"broadcast_id": broadcast_id, "notice": notice_json(notice)}, status=202)


# -- as-run, coverage -------------------------------------------------------------------------


def _filter(query: AsRunQuery) -> AsRunFilter:
    return AsRunFilter(**query.model_dump())


async def list_asrun(request: web.Request, query: AsRunQuery) -> web.Response:
    log = request.app[ASRUN]
    lines = await log.lines(keys.principal(request), _filter(query))
    return json_response([line.as_json(log.zone) for line in lines])


async def asrun_csv(request: web.Request, query: AsRunQuery) -> web.Response:
    text = await request.app[ASRUN].csv(keys.principal(request), _filter(query))
    return web.Response(
        body=text.encode("utf-8"),
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            # 播出记录.csv for browsers that read RFC 5987, asrun.csv for the rest.
            "Content-Disposition": 'attachment; filename="asrun.csv"; '
            "filename*=UTF-8''%E6%92%AD%E5%87%BA%E8%AE%B0%E5%BD%95.csv",
        },
    )


def _coverage_window(request: web.Request, query: CoverageQuery) -> tuple[date, date]:
    today = request.app[keys.CLOCK].now().astimezone(request.app[keys.CONFIG].zone).date()
    until = query.until or today
    since = query.since or until.replace(day=1) - timedelta(days=62)
    since = since.replace(day=1)
    if until < since:
        raise InvalidInput("截止日期早于起始日期", fields={"until": "早于起始日期"})
    return since, until


async def coverage(request: web.Request, query: CoverageQuery) -> web.Response:
    since, until = _coverage_window(request, query)
    report = await request.app[ASRUN].coverage(
        keys.principal(request), since=since, until=until, township_id=query.township_id
    )
    return json_response({"since": since, "until": until, "kinds": list(DISCLOSURE_KINDS), "rows": report})


# -- speakers -----------------------------------------------------------------------------------


async def _speaker_rows(request: web.Request) -> list[dict[str, Any]]:
    me = keys.principal(request)
    speakers = await request.app[keys.AREAS].list_speakers(me)
    last = await request.app[ASRUN].last_results([speaker.id for speaker, _z, _v in speakers])
    terminals = request.app[TERMINALS]
    rows = []
    for speaker, zone, village in speakers:
        result = last.get(speaker.id)
        rows.append(
            {
                "id": speaker.id,
                "name": speaker.name,
                "transport": speaker.transport,
                "transport_label": transport_label(speaker.transport, speaker.address),
                "address": speaker.address,
                "enabled": speaker.enabled,
                "zone_id": zone.id,
                "zone": zone.name,
                "village": village.name,
                "township_id": village.township_id,
                "last_seen_at": speaker.last_seen_at,
                "online": terminals.online(speaker) if speaker.transport == "http" else None,
                "last_state": RUN_STATE_LABELS[result.state] if result else None,
                "last_failed": bool(result and result.state == RUN_FAILED),
                "last_error": result.error if result else None,
                "last_at": (result.ended_at or result.started_at) if result else None,
            }
        )
    return rows


async def speakers_status(request: web.Request) -> web.Response:
    return json_response(await _speaker_rows(request))


async def _test_speaker(request: web.Request, speaker_id: int, text: str) -> dict[str, Any]:
    speaker, _zone, _village = await request.app[keys.AREAS].get_speaker(keys.principal(request), speaker_id)
    target = SpeakerTarget(speaker.transport, speaker.address, speaker.id, speaker.name)
    result = await request.app[SPEAKER_TESTER].test(text, target)
    return result.as_json()


async def test_speaker(request: web.Request, body: SpeakerTestIn) -> web.Response:
    return json_response(await _test_speaker(request, _id(request), body.text))


async def zone_broadcast_settings(request: web.Request, body: ZoneBroadcastIn) -> web.Response:
    return json_response(await _save_zone_settings(request, body))


async def zone_settings_form(request: web.Request) -> web.StreamResponse:
    posted = await read_post(request)
    try:
        form = await read_form(request, ZoneBroadcastIn)
        saved = await _save_zone_settings(request, form)
    except UserError as exc:
        # Shown again on the zone's week with what was typed (the week page is the schedules views').
        typed = {"rtp_group": str(posted.get("rtp_group", "")), "rtp_ttl": str(posted.get("rtp_ttl", ""))}
        return await render_week_page(request, status=status_for(exc), rtp_values=typed, error=exc.message)
    shown = f"组播 {saved['rtp_group']}" if saved["rtp_group"] else "单播（每个终端各自一路）"
    await flash(request, f"已保存：{shown}")
    raise redirect(f"/broadcast/zones/{_id(request)}/week")


async def _save_zone_settings(request: web.Request, body: ZoneBroadcastIn) -> dict[str, Any]:
    me = keys.principal(request)
    me.require_role("admin")
    zone, _village = await request.app[keys.AREAS].get_zone(me, _id(request))
    group = None
    policy = request.app[keys.AREAS].address_policy
    if body.rtp_group:
        host, port = check_rtp_destination(
            body.rtp_group, policy, field="rtp_group", multicast_only=True, default_port=5004
        )
        group = f"{host}:{port}"
    check_ttl(body.rtp_ttl, policy)
    async with request.app[keys.SESSIONS].begin() as session:
        row = await session.get(ZoneBroadcastSettings, zone.id)
        if row is None:
            row = ZoneBroadcastSettings(zone_id=zone.id, updated_at=request.app[keys.CLOCK].now())
            session.add(row)
        row.rtp_group, row.rtp_ttl = group, body.rtp_ttl
        row.updated_at = request.app[keys.CLOCK].now()
    return {"zone_id": zone.id, "rtp_group": group, "rtp_ttl": body.rtp_ttl}


# -- the 4G terminal protocol (authenticated by the terminal's own token) -----------------------


async def terminal_now(request: web.Request) -> web.Response:
    return json_response(await request.app[TERMINALS].now(request.headers.get("Authorization")))


async def terminal_audio(request: web.Request) -> web.StreamResponse:
    path = await request.app[TERMINALS].audio(request.headers.get("Authorization"), _id(request))
    return web.FileResponse(path, headers={"Content-Type": "audio/mpeg"})


async def terminal_report(request: web.Request, body: ReportIn) -> web.Response:
    result = await request.app[TERMINALS].report(
        request.headers.get("Authorization"), body.play_id, body.event, body.error
    )
    return json_response(result)


async def terminal_heartbeat(request: web.Request, body: HeartbeatIn) -> web.Response:
    return json_response(await request.app[TERMINALS].heartbeat(request.headers.get("Authorization"), body.status))


# -- pages ----------------------------------------------------------------------------------------


def _labels() -> dict[str, Any]:
    return {
        "KIND_LABELS": KIND_LABELS,
        "STATE_LABELS": STATE_LABELS,
        "RUN_STATE_LABELS": RUN_STATE_LABELS,
        "PRIORITY_OF_KIND": PRIORITY_OF_KIND,
        "NOTICE_KINDS": NOTICE_KINDS,
    }


async def asrun_page(request: web.Request) -> web.Response:
    me = keys.principal(request)
    error = None
    try:
        query = read_query(request, AsRunQuery)
    except UserError as exc:
        query, error = AsRunQuery(), exc.message
    log = request.app[ASRUN]
    lines = await log.lines(me, _filter(query))
    townships = await request.app[keys.AREAS].list_townships(me)
    villages = await request.app[keys.AREAS].list_villages(me)
    zones = await request.app[keys.AREAS].list_zones(me)
    return await render(
        request,
        "broadcast/asrun.html",
        {
            "lines": [line.as_json(log.zone) for line in lines],
            "query": query,
            "error": error,
            "townships": townships,
            "villages": villages,
            "zones": zones,
            "csv_query": request.query_string,
            **_labels(),
        },
    )


async def coverage_page(request: web.Request) -> web.Response:
    me = keys.principal(request)
    try:
        query = read_query(request, CoverageQuery)
        since, until = _coverage_window(request, query)
        error = None
    except UserError as exc:
        query, error = CoverageQuery(), exc.message
        since, until = _coverage_window(request, query)
    rows = await request.app[ASRUN].coverage(me, since=since, until=until, township_id=query.township_id)
    townships = await request.app[keys.AREAS].list_townships(me)
    return await render(
        request,
        "broadcast/coverage.html",
        {
            "rows": rows,
            "since": since,
            "until": until,
            "query": query,
            "error": error,
            "townships": townships,
            "kinds": DISCLOSURE_KINDS,
            **_labels(),
        },
    )


async def speakers_page(request: web.Request) -> web.Response:
    return await speakers.page(request, await _speaker_rows(request))


async def test_speaker_form(request: web.Request) -> web.StreamResponse:
    try:
        form = await read_form(request, SpeakerTestIn)
        result = await _test_speaker(request, _id(request), form.text)
        kind = "ok" if result["state"] == 3 else "error"
        await flash(
            request,
            f"拨测 {result['name']}：{result['state_label']}{('，' + result['error']) if result['error'] else ''}",
            kind,
        )
    except UserError as exc:
        await flash(request, exc.message, "error")
    raise redirect("/broadcast/speakers")


def add_routes(routes: Routes) -> None:
    tag = "通知与播出"
    item = r"{id:\d+}"
    routes.api("GET", "/api/v1/notices", list_notices, summary="通知列表", tag=tag, query=NoticeQuery, roles=READERS)
    routes.api(
        "POST", "/api/v1/notices", create_notice, summary="新建通知（草稿）", tag=tag, body=NoticeIn, roles=WRITERS,
        status=201,
    )  # fmt: skip
    routes.api("GET", f"/api/v1/notices/{item}", get_notice, summary="通知详情", tag=tag, roles=READERS)
    routes.api(
        "PUT", f"/api/v1/notices/{item}", update_notice, summary="修改通知（已通过的回到待审核）", tag=tag,
        body=NoticeIn, roles=WRITERS,
    )  # fmt: skip
    routes.api(
        "POST", f"/api/v1/notices/{item}/submit", _transition("submit"), summary="提交审核", tag=tag, roles=WRITERS
    )
    routes.api(
        "POST", f"/api/v1/notices/{item}/approve", approve_notice,
        summary="审核通过（作者和修改过的人不能审核；审核看过的版本；保留试听的音频，没有试听时生成）", tag=tag,
        body=ApproveIn, roles=("approver",),
    )  # fmt: skip
    routes.api(
        "POST", f"/api/v1/notices/{item}/reject", reject_notice, summary="驳回（写明理由）", tag=tag, body=RejectIn,
        roles=("approver",),
    )  # fmt: skip
    routes.api(
        "POST", f"/api/v1/notices/{item}/preview", preview_notice,
        summary="生成试听（本版本的音频，就是审核通过后播出的音频）", tag=tag, roles=(*WRITERS, "approver"),
    )  # fmt: skip
    routes.api(
        "POST", f"/api/v1/notices/{item}/mask", mask_notice_numbers,
        summary="一键隐去身份证号、银行卡号（或给出的手机号码）", tag=tag, body=NumberIn, roles=WRITERS,
    )  # fmt: skip
    routes.api(
        "POST", f"/api/v1/notices/{item}/keep-number", keep_notice_number,
        summary="保留手机号码（公开的联系电话，逐位读出；记录在案，审核人可见）", tag=tag, body=NumberIn,
        roles=WRITERS,
    )  # fmt: skip
    routes.api(
        "POST", f"/api/v1/notices/{item}/archive", _transition("archive"), summary="归档", tag=tag,
        roles=(*WRITERS, "approver"),
    )  # fmt: skip
    routes.api(
        "POST", f"/api/v1/notices/{item}/recording", upload_recording,
        summary="上传或录制人声（multipart，字段 recording）", tag=tag, roles=WRITERS, upload=True,
    )  # fmt: skip
    routes.api(
        "GET", f"/api/v1/notices/{item}/audio.mp3", notice_audio, summary="试听（本版本的MP3，播出的就是它）",
        tag=tag, query=AudioQuery, roles=READERS, content_type="audio/mpeg",
    )  # fmt: skip
    routes.api(
        "POST", f"/api/v1/notices/{item}/play", play_notice, summary="立即播出到所选分区", tag=tag, body=PlayIn,
        roles=WRITERS, status=202,
    )  # fmt: skip
    routes.api(
        "POST", "/api/v1/notices/check", check_notice_text, summary="边写边查：播报文字与个人号码提醒", tag=tag,
        body=TextIn, roles=WRITERS,
    )  # fmt: skip
    routes.api(
        "POST", "/api/v1/emergency", send_emergency, summary="应急广播：立即合成并插播到所选分区", tag=tag,
        body=EmergencyIn, status=202,
    )  # fmt: skip
    routes.api(
        "GET", f"/api/v1/broadcasts/{item}", broadcast_result,
        summary="一次播出的结果：每个喇叭的结果，及由此得出的状态（全部成功/部分成功/失败）", tag=tag, roles=READERS,
    )  # fmt: skip
    routes.api("GET", "/api/v1/asrun", list_asrun, summary="播出记录", tag=tag, query=AsRunQuery, roles=READERS)
    routes.api(
        "GET", "/api/v1/asrun.csv", asrun_csv, summary="播出记录导出CSV", tag=tag, query=AsRunQuery, roles=READERS,
        content_type="text/csv",
    )  # fmt: skip
    routes.api(
        "GET", "/api/v1/coverage", coverage, summary="三务公开覆盖（每村每月实际播出条数）", tag=tag,
        query=CoverageQuery, roles=READERS,
    )  # fmt: skip
    routes.api("GET", "/api/v1/speakers/status", speakers_status, summary="终端状态", tag=tag, roles=WRITERS)
    routes.api(
        "POST", f"/api/v1/speakers/{item}/test", test_speaker, summary="拨测：立即向这个终端播一段测试", tag=tag,
        body=SpeakerTestIn, roles=WRITERS,
    )  # fmt: skip
    routes.api(
        "PUT", f"/api/v1/zones/{item}/broadcast", zone_broadcast_settings, summary="分区RTP组播设置", tag=tag,
        body=ZoneBroadcastIn, roles=("admin",),
    )  # fmt: skip
    terminal = "4G终端（令牌认证）"
    routes.api(
        "GET", "/api/v1/terminal/now", terminal_now, summary="现在该播什么", tag=terminal, auth="self",
    )  # fmt: skip
    routes.api(
        "GET", f"/api/v1/terminal/audio/{item}", terminal_audio, summary="取音频（MP3）", tag=terminal, auth="self",
        content_type="audio/mpeg",
    )  # fmt: skip
    routes.api(
        "POST", "/api/v1/terminal/report", terminal_report, summary="报告开始/完成/失败", tag=terminal, body=ReportIn,
        auth="self",
    )  # fmt: skip
    routes.api(
        "POST", "/api/v1/terminal/heartbeat", terminal_heartbeat, summary="心跳", tag=terminal, body=HeartbeatIn,
        auth="self",
    )  # fmt: skip
    routes.page("GET", "/broadcast/asrun", asrun_page, roles=READERS)
    routes.page("GET", "/broadcast/coverage", coverage_page, roles=READERS)
    routes.page("GET", "/broadcast/speakers", speakers_page, roles=WRITERS)
    routes.page("POST", f"/broadcast/speakers/{item}/test", test_speaker_form, roles=WRITERS)
    routes.page("POST", f"/broadcast/zones/{item}/settings", zone_settings_form, roles=("admin",))


# Rejections listed one by one (title and reason) on the home page; beyond this many, one line counts the rest.
TODO_REJECTIONS_LISTED = 5


async def todo(request: web.Request, me: Principal) -> list[keys.TodoItem]:
    """The home page's 待办 for notices: what waits for this approver's decision; this author's rejections
    (each with its reason) and drafts not yet submitted."""
    notices = request.app[NOTICES]
    items = []
    if me.has_role("approver"):
        # Four eyes: a notice the approver wrote or edited is not theirs to decide, so it does not wait for them.
        waiting = [
            notice
            for notice in await notices.list_notices(me, state="pending")
            if notices.why_not_decider(me, notice) is None
        ]
        items.append(keys.TodoItem("待我审核的通知", len(waiting), "/broadcast/approvals"))
    if me.has_role("staff", "admin"):
        rejected = [n for n in await notices.list_notices(me, state="rejected") if n.author_id == me.user_id]
        for notice in rejected[:TODO_REJECTIONS_LISTED]:
            label = f"被驳回，待修改：{notice.title}（理由：{notice.reject_reason or '未写明'}）"
            items.append(keys.TodoItem(label, 1, f"/broadcast/notices/{notice.id}", urgent=True))
        if len(rejected) > TODO_REJECTIONS_LISTED:
            items.append(
                keys.TodoItem(
                    "其他被驳回的通知", len(rejected) - TODO_REJECTIONS_LISTED, "/broadcast/notices?state=rejected"
                )
            )
        drafts = [n for n in await notices.list_notices(me, state="draft") if n.author_id == me.user_id]
        items.append(keys.TodoItem("我写的、还没提交审核的通知", len(drafts), "/broadcast/notices?state=draft"))
    if me.has_role("admin"):
        cache = await notices.cache_health()
        if cache.get("full"):
            needed = cache.get("needed_mb") or cache.get("overflow_mb") or 0
            label = f"音频缓存已满（还需腾出约 {needed:g} MB），新通知无法审核通过：请归档不再播出的通知或调大缓存"
            items.append(keys.TodoItem(label, 1, "/broadcast/notices?state=approved", urgent=True))
    return items


__all__ = ["NAV", "add_routes", "select", "todo"]
