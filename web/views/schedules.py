"""Schedules: the API, the editor with its preview (next times, quiet-hour refusal, overlaps), the zone's week.

A refused save shows the editor again with what was chosen (notice, mode, times, days, targets) and why.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import Field

from common.errors import InvalidInput, UserError
from schedules.rules import WEEKDAY_LABELS, day_label, end_label, moment_label
from schedules.service import LEVEL_LABELS, ScheduleInput, schedule_json
from storage.models import KIND_LABELS, PRIORITY_LABELS, Schedule, ZoneBroadcastSettings
from web import keys
from web.api import Routes, json_response
from web.domains import NOTICES, SCHEDULES
from web.middleware import status_for
from web.render import flash, redirect, render
from web.validation import ApiModel, read_form, read_post
from web.zone_picker import Selection, zone_tree

WRITERS = ("staff", "admin")
READERS = ("staff", "approver", "admin", "leader")


class TargetIn(ApiModel):
    level: Literal["township", "village", "zone"]
    id: int


class ScheduleIn(ApiModel):
    notice_id: int
    kind: Literal["once", "daily", "weekly"]
    once_at: datetime | None = Field(None, description="单次播出的时间；不带时区时按北京时间")
    times: list[str] = Field(default_factory=list, description='每天的播出时间，如 ["07:00", "18:30"]')
    weekdays: list[int] = Field(default_factory=list, description="每周：1=周一 … 7=周日")
    start_date: date | None = None
    end_date: date | None = None
    targets: list[TargetIn] = Field(default_factory=list)


class PreviewIn(ScheduleIn):
    count: int = Field(10, ge=1, le=100)
    schedule_id: int | None = Field(None, description="修改已有的安排时：它自己不算重叠")


class ScheduleQuery(ApiModel):
    count: int = Field(5, ge=1, le=100, description="列出接下来几次播出（next）")


class WeekQuery(ApiModel):
    start: date | None = None


def _input(body: ScheduleIn) -> ScheduleInput:
    return ScheduleInput(
        notice_id=body.notice_id,
        kind=body.kind,
        once_at=body.once_at,
        times=tuple(body.times),
        weekdays=tuple(body.weekdays),
        start_date=body.start_date,
        end_date=body.end_date,
        targets=tuple((target.level, target.id) for target in body.targets),
    )


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])


async def list_schedules(request: web.Request) -> web.Response:
    service = request.app[SCHEDULES]
    found = await service.list_schedules(keys.principal(request))
    return json_response([schedule_json(schedule, service, notice) for schedule, notice in found])


async def create_schedule(request: web.Request, body: ScheduleIn) -> web.Response:
    """Saved (an overlap with other schedules is allowed: ``warnings`` names each one)."""
    service = request.app[SCHEDULES]
    me = keys.principal(request)
    schedule = await service.create(me, _input(body))
    overlaps = await service.overlaps_of(me, schedule.id)
    warnings = [overlap.message(service.zone) for overlap in overlaps]
    return json_response({**schedule_json(schedule, service), "warnings": warnings}, status=201)


async def get_schedule(request: web.Request, query: ScheduleQuery) -> web.Response:
    service = request.app[SCHEDULES]
    schedule = await service.get(keys.principal(request), _id(request))
    return json_response(schedule_json(schedule, service, upcoming=query.count))


async def update_schedule(request: web.Request, body: ScheduleIn) -> web.Response:
    service = request.app[SCHEDULES]
    me = keys.principal(request)
    schedule = await service.update(me, _id(request), _input(body))
    warnings = [overlap.message(service.zone) for overlap in await service.overlaps_of(me, schedule.id)]
    return json_response({**schedule_json(schedule, service), "warnings": warnings})


def _enabler(enabled: bool) -> Any:
    async def handler(request: web.Request) -> web.Response:
        service = request.app[SCHEDULES]
        schedule = await service.set_enabled(keys.principal(request), _id(request), enabled)
        return json_response(schedule_json(schedule, service))

    handler.__name__ = "enable_schedule" if enabled else "disable_schedule"
    return handler


async def preview_schedule(request: web.Request, body: PreviewIn) -> web.Response:
    """A schedule being written (nothing is saved): its next times, and — with a notice and targets — the
    quiet-hour refusal saving would meet and the schedules it would overlap. Bad input gets its Chinese error."""
    service = request.app[SCHEDULES]
    me = keys.principal(request)
    me.require_role(*WRITERS)
    check = await service.check(me, _input(body), schedule_id=body.schedule_id, count=body.count)
    zone = request.app[keys.CONFIG].zone
    return json_response(
        {
            "occurrences": [instant.astimezone(zone).strftime("%Y-%m-%d %H:%M") for instant in check.occurrences],
            "labels": [moment_label(instant, zone) for instant in check.occurrences],
            "quiet": check.quiet,
            "warnings": [overlap.message(zone) for overlap in check.overlaps],
        }
    )


async def zone_week(request: web.Request, query: WeekQuery) -> web.Response:
    service = request.app[SCHEDULES]
    zone_config = request.app[keys.CONFIG].zone
    start = datetime.combine(query.start, datetime.min.time(), zone_config) if query.start else None
    zone, village, township, items = await service.week_ahead(keys.principal(request), _id(request), start)
    return json_response(
        {
            "zone_id": zone.id,
            "zone": zone.name,
            "village": village.name,
            "township": township.name,
            "items": [
                {
                    "at": item.at.astimezone(zone_config).isoformat(),
                    "ends_at": item.ends_at.astimezone(zone_config).isoformat(),
                    "schedule_id": item.schedule_id,
                    "notice_id": item.notice_id,
                    "title": item.title,
                    "kind": item.kind,
                    "priority": item.priority,
                    "quiet": item.quiet,
                    "conflicts_with": list(item.conflicts_with),
                }
                for item in items
            ],
        }
    )


# -- pages ----------------------------------------------------------------------------------------


class ScheduleForm(ApiModel):
    notice_id: int
    kind: Literal["once", "daily", "weekly"]
    once_at: datetime | None = None
    times: str = ""
    weekdays: list[int] = Field(default_factory=list)
    start_date: date | None = None
    end_date: date | None = None
    township_ids: list[int] = Field(default_factory=list)
    village_ids: list[int] = Field(default_factory=list)
    zone_ids: list[int] = Field(default_factory=list)


def _split_times(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.replace("，", ",").replace("、", ",").split(",") if part.strip())


async def _form_input(request: web.Request, form: ScheduleForm) -> ScheduleInput:
    """The form as a schedule; the picker's ticks become targets at the highest level ticked."""
    selection = Selection(frozenset(form.township_ids), frozenset(form.village_ids), frozenset(form.zone_ids))
    targets = (await zone_tree(request, keys.principal(request))).targets_of(selection)
    once = form.kind == "once"
    return ScheduleInput(
        notice_id=form.notice_id,
        kind=form.kind,
        # Fields of another mode may still hold what was typed before the mode changed: they do not count.
        once_at=form.once_at if once else None,
        times=() if once else _split_times(form.times),
        weekdays=tuple(form.weekdays) if form.kind == "weekly" else (),
        start_date=None if once else form.start_date,
        end_date=None if once else form.end_date,
        targets=tuple(targets),
    )


async def _editor_context(request: web.Request) -> dict[str, Any]:
    """What the schedule editor's fields choose from: approved notices and the zones in scope, grouped."""
    me = keys.principal(request)
    return {
        "notices": await request.app[NOTICES].list_notices(me, state="approved"),
        "tree": await zone_tree(request, me),
        "WEEKDAY_LABELS": WEEKDAY_LABELS,
        "KIND_LABELS": KIND_LABELS,
        "PRIORITY_LABELS": PRIORITY_LABELS,
    }


def _form_values(schedule: Schedule | None, zone: ZoneInfo, notice_id: int | None = None) -> dict[str, Any]:
    """The editor's fields filled from a saved schedule (or empty for a new one)."""
    if schedule is None:
        return {
            "notice_id": notice_id, "kind": "daily", "times": "", "weekdays": [], "once_at": "", "start_date": "",
            "end_date": "", "selection": Selection(),
        }  # fmt: skip
    return {
        "notice_id": schedule.notice_id,
        "kind": schedule.kind,
        "times": ",".join(schedule.times),
        "weekdays": list(schedule.weekdays),
        "once_at": schedule.once_at.astimezone(zone).strftime("%Y-%m-%dT%H:%M") if schedule.once_at else "",
        "start_date": schedule.start_date.isoformat() if schedule.start_date else "",
        "end_date": schedule.end_date.isoformat() if schedule.end_date else "",
        "selection": Selection.of_targets((target.level, target.target_id) for target in schedule.targets),
    }


def _posted_values(posted: Any) -> dict[str, Any]:
    """What was chosen in a refused form, read leniently (whatever made it wrong), to show it again."""

    def text(name: str) -> str:
        return str(posted.get(name, "")).strip()

    notice = text("notice_id")
    return {
        "notice_id": int(notice) if notice.isdigit() else None,
        "kind": text("kind") if text("kind") in ("once", "daily", "weekly") else "daily",
        "times": text("times"),
        "weekdays": [int(day) for day in posted.getall("weekdays", []) if str(day).isdigit()],
        "once_at": text("once_at"),
        "start_date": text("start_date"),
        "end_date": text("end_date"),
        "selection": Selection.from_form(posted),
    }


async def _schedules_page(
    request: web.Request, *, status: int = 200, current: dict[str, Any] | None = None, error: str | None = None
) -> web.Response:
    me = keys.principal(request)
    service = request.app[SCHEDULES]
    found = await service.list_schedules(me)
    wanted = request.query.get("notice_id", "")
    selected = int(wanted) if wanted.isascii() and wanted.isdigit() and len(wanted) < 10 else None
    context = {
        **await _editor_context(request),
        "schedules": [
            (schedule, notice, service.describe(schedule), service.next_of(schedule, 3)) for schedule, notice in found
        ],
        "blank": current or _form_values(None, service.zone, selected),
        "error": error,
    }
    return await render(request, "schedules/schedules.html", context, status=status)


async def schedules_page(request: web.Request) -> web.Response:
    return await _schedules_page(request)


async def _schedule_page(
    request: web.Request, *, status: int = 200, current: dict[str, Any] | None = None, error: str | None = None
) -> web.Response:
    """One schedule: what it is, its next occurrences, and (for writers) the same editor, filled in."""
    me = keys.principal(request)
    service = request.app[SCHEDULES]
    schedule = await service.get(me, _id(request))
    context = await _editor_context(request)
    notice = await request.app[NOTICES].get(me, schedule.notice_id)
    if all(candidate.id != notice.id for candidate in context["notices"]):
        context["notices"] = [notice, *context["notices"]]  # shown even if no longer approved (saving then says so)
    areas = request.app[keys.AREAS]
    names = {("township", t.id): t.name for t in await areas.list_townships(me)}
    names.update({("village", v.id): v.name for v in await areas.list_villages(me)})
    names.update({("zone", z.id): f"{v.name} · {z.name}" for z, v in await areas.list_zones(me)})
    labels = [f"{LEVEL_LABELS[t.level]} {names.get((t.level, t.target_id), t.target_id)}" for t in schedule.targets]
    context.update(
        schedule=schedule,
        notice=notice,
        description=service.describe(schedule),
        upcoming=service.next_of(schedule, 10) if schedule.enabled else [],
        target_labels=labels,
        current=current or _form_values(schedule, service.zone),
        error=error,
    )
    return await render(request, "schedules/schedule.html", context, status=status)


async def schedule_page(request: web.Request) -> web.Response:
    return await _schedule_page(request)


async def _saved(request: web.Request, schedule_id: int, done: str) -> None:
    """The flash after a save: done, and each overlap it makes (allowed, but the clerk should know)."""
    service = request.app[SCHEDULES]
    await flash(request, done)
    for overlap in await service.overlaps_of(keys.principal(request), schedule_id):
        await flash(request, f"注意：{overlap.message(service.zone)}。同时到点时优先级高的先播，另一条等待。", "warn")


async def update_schedule_form(request: web.Request) -> web.StreamResponse:
    posted = await read_post(request)
    try:
        form = await read_form(request, ScheduleForm)
        await request.app[SCHEDULES].update(keys.principal(request), _id(request), await _form_input(request, form))
    except UserError as exc:
        current = _posted_values(posted)
        return await _schedule_page(request, status=status_for(exc), current=current, error=exc.message)
    await _saved(request, _id(request), "播出安排已修改，立即生效")
    raise redirect(f"/broadcast/schedules/{_id(request)}")


async def create_schedule_form(request: web.Request) -> web.StreamResponse:
    posted = await read_post(request)
    try:
        if not str(posted.get("notice_id", "")).strip():
            raise InvalidInput("请选择要播出的通知（只有审核通过的通知才能安排）", fields={"notice_id": "必填"})
        form = await read_form(request, ScheduleForm)
        schedule = await request.app[SCHEDULES].create(keys.principal(request), await _form_input(request, form))
    except UserError as exc:
        current = _posted_values(posted)
        return await _schedules_page(request, status=status_for(exc), current=current, error=exc.message)
    await _saved(request, schedule.id, "播出安排已保存，立即生效")
    raise redirect(f"/broadcast/schedules/{schedule.id}")


def _enable_form(enabled: bool) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            await request.app[SCHEDULES].set_enabled(keys.principal(request), _id(request), enabled)
            await flash(request, "已恢复" if enabled else "已停用")
        except UserError as exc:
            await flash(request, exc.message, "error")
        raise redirect(
            f"/broadcast/schedules/{_id(request)}" if request.query.get("back") == "page" else "/broadcast/schedules"
        )

    handler.__name__ = "form_enable_schedule" if enabled else "form_disable_schedule"
    return handler


async def week_page(request: web.Request) -> web.Response:
    return await render_week_page(request)


async def render_week_page(
    request: web.Request, *, status: int = 200, rtp_values: dict[str, str] | None = None, error: str | None = None
) -> web.Response:
    """A zone's week; after a refused RTP setting, with what the admin typed and why (its form posts elsewhere)."""
    service = request.app[SCHEDULES]
    zone, village, township, items = await service.week_ahead(keys.principal(request), _id(request))
    async with request.app[keys.SESSIONS]() as session:
        zone_settings = await session.get(ZoneBroadcastSettings, zone.id)
    days: dict[str, list[Any]] = {}
    zone_config = request.app[keys.CONFIG].zone
    for item in items:
        days.setdefault(day_label(item.at.astimezone(zone_config).date()), []).append(item)
    return await render(
        request,
        "schedules/week.html",
        {
            "zone": zone,
            "village": village,
            "township": township,
            "days": days,
            "end_label": lambda instant: end_label(instant, zone_config),
            "KIND_LABELS": KIND_LABELS,
            "PRIORITY_LABELS": PRIORITY_LABELS,
            "rtp_values": rtp_values
            or {
                "rtp_group": zone_settings.rtp_group or "" if zone_settings else "",
                "rtp_ttl": "" if zone_settings is None or zone_settings.rtp_ttl is None else str(zone_settings.rtp_ttl),
            },
            "error": error,
        },
        status=status,
    )


def add_routes(routes: Routes) -> None:
    tag = "播出安排"
    item = r"{id:\d+}"
    routes.api("GET", "/api/v1/schedules", list_schedules, summary="播出安排列表", tag=tag, roles=READERS)
    routes.api(
        "POST", "/api/v1/schedules", create_schedule, summary="新建播出安排（立即生效）", tag=tag, body=ScheduleIn,
        roles=WRITERS, status=201,
    )  # fmt: skip
    routes.api(
        "GET", f"/api/v1/schedules/{item}", get_schedule, summary="播出安排详情（含接下来的 count 次播出）", tag=tag,
        query=ScheduleQuery, roles=READERS,
    )  # fmt: skip
    routes.api(
        "PUT", f"/api/v1/schedules/{item}", update_schedule, summary="修改播出安排", tag=tag, body=ScheduleIn,
        roles=WRITERS,
    )  # fmt: skip
    routes.api("POST", f"/api/v1/schedules/{item}/enable", _enabler(True), summary="恢复", tag=tag, roles=WRITERS)
    routes.api("POST", f"/api/v1/schedules/{item}/disable", _enabler(False), summary="停用", tag=tag, roles=WRITERS)
    routes.api(
        "POST", "/api/v1/schedules/preview", preview_schedule, summary="预览接下来的播出时间（不保存）", tag=tag,
        body=PreviewIn, roles=WRITERS,
    )  # fmt: skip
    routes.api(
        "GET", f"/api/v1/zones/{item}/week", zone_week, summary="分区未来一周的播出（标出冲突和静默时段）", tag=tag,
        query=WeekQuery, roles=READERS,
    )  # fmt: skip
    routes.page("GET", "/broadcast/schedules", schedules_page, roles=READERS)
    routes.page("POST", "/broadcast/schedules", create_schedule_form, roles=WRITERS)
    routes.page("GET", f"/broadcast/schedules/{item}", schedule_page, roles=READERS)
    routes.page("POST", f"/broadcast/schedules/{item}", update_schedule_form, roles=WRITERS)
    routes.page("POST", f"/broadcast/schedules/{item}/enable", _enable_form(True), roles=WRITERS)
    routes.page("POST", f"/broadcast/schedules/{item}/disable", _enable_form(False), roles=WRITERS)
    routes.page("GET", f"/broadcast/zones/{item}/week", week_page, roles=READERS)
