"""The area tree and the units: JSON API for everyone in scope, changes and pages for admins."""

from __future__ import annotations

from datetime import time
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from common.errors import UserError
from phonecast.codes import ensure_codes
from storage.models import County, Speaker, Township, Unit, Village, Zone
from web import keys
from web.api import Routes, json_response
from web.middleware import status_for
from web.render import flash, redirect, render
from web.validation import ApiModel, read_form, read_post

Name = Field(min_length=1, max_length=64)
Transport = Literal["sip", "rtp", "http", "sink"]


class CountyIn(ApiModel):
    name: str = Name
    code: str | None = Field(None, max_length=12)


class CountyPatch(ApiModel):
    name: str | None = Field(None, min_length=1, max_length=64)
    code: str | None = Field(None, max_length=12)


class TownshipIn(ApiModel):
    county_id: int
    name: str = Name
    code: str | None = Field(None, max_length=12)
    quiet_start: time = Field(time(21, 30), description="静默时段开始（北京时间），此后只允许应急广播")
    quiet_end: time = Field(time(6, 30), description="静默时段结束（北京时间）")


class TownshipPatch(ApiModel):
    name: str | None = Field(None, min_length=1, max_length=64)
    code: str | None = Field(None, max_length=12)
    quiet_start: time | None = None
    quiet_end: time | None = None


class VillageIn(ApiModel):
    township_id: int
    name: str = Name
    kind: Literal["village", "community"] = "village"


class VillagePatch(ApiModel):
    name: str | None = Field(None, min_length=1, max_length=64)
    kind: Literal["village", "community"] | None = None
    code: str | None = Field(
        None, pattern=r"^[0-9]{12}$", description="统计用区划代码（12位，以乡镇的9位代码开头）：预警按它匹配村"
    )
    latitude: float | None = Field(None, ge=-90, le=90, description="纬度（WGS 84）：预警的多边形、圆形区域按它匹配")
    longitude: float | None = Field(None, ge=-180, le=180, description="经度（WGS 84），与纬度一起填写")


class VillageQuery(ApiModel):
    township_id: int | None = None


class ZoneIn(ApiModel):
    village_id: int
    name: str = Name


class ZonePatch(ApiModel):
    name: str | None = Field(None, min_length=1, max_length=64)
    is_test: bool | None = Field(None, description="测试分区：测试、演练预警只在测试分区播出")


class ZoneQuery(ApiModel):
    village_id: int | None = None


class SpeakerIn(ApiModel):
    zone_id: int
    name: str = Name
    transport: Transport
    address: str = Field(min_length=1, max_length=255)
    codec: str | None = Field(None, max_length=8)
    enabled: bool = True


class SpeakerPatch(ApiModel):
    name: str | None = Field(None, min_length=1, max_length=64)
    address: str | None = Field(None, min_length=1, max_length=255)
    codec: str | None = Field(None, max_length=8)
    enabled: bool | None = None


class SpeakerQuery(ApiModel):
    zone_id: int | None = None
    township_id: int | None = None


class UnitIn(ApiModel):
    name: str = Name
    kind: Literal["township", "department"]
    township_id: int | None = None
    phone: str | None = Field(None, max_length=32)


class UnitPatch(ApiModel):
    name: str | None = Field(None, min_length=1, max_length=64)
    phone: str | None = Field(None, max_length=32)
    active: bool | None = None


def county_json(county: County) -> dict[str, Any]:
    return {"id": county.id, "name": county.name, "code": county.code}


def township_json(township: Township) -> dict[str, Any]:
    return {
        "id": township.id,
        "county_id": township.county_id,
        "name": township.name,
        "code": township.code,
        "quiet_start": township.quiet_start.strftime("%H:%M"),
        "quiet_end": township.quiet_end.strftime("%H:%M"),
    }


def village_json(village: Village) -> dict[str, Any]:
    return {"id": village.id, "township_id": village.township_id, "name": village.name, "kind": village.kind}


def zone_json(zone: Zone, village: Village) -> dict[str, Any]:
    return {"id": zone.id, "village_id": zone.village_id, "township_id": village.township_id, "name": zone.name}


def speaker_json(speaker: Speaker, zone: Zone, village: Village) -> dict[str, Any]:
    return {
        "id": speaker.id,
        "zone_id": speaker.zone_id,
        "village_id": zone.village_id,
        "township_id": village.township_id,
        "name": speaker.name,
        "transport": speaker.transport,
        "address": speaker.address,
        "codec": speaker.codec,
        "enabled": speaker.enabled,
        "last_seen_at": speaker.last_seen_at,
    }


def unit_json(unit: Unit) -> dict[str, Any]:
    return {
        "id": unit.id,
        "name": unit.name,
        "kind": unit.kind,
        "township_id": unit.township_id,
        "phone": unit.phone,
        "active": unit.active,
    }


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])


# -- JSON API ----------------------------------------------------------------------------


async def list_counties(request: web.Request) -> web.Response:
    return json_response([county_json(c) for c in await request.app[keys.AREAS].list_counties()])


async def create_county(request: web.Request, body: CountyIn) -> web.Response:
    county = await request.app[keys.AREAS].create_county(keys.principal(request), **body.model_dump())
    return json_response(county_json(county), status=201)


async def patch_county(request: web.Request, body: CountyPatch) -> web.Response:
    changes = body.model_dump(exclude_unset=True)
    county = await request.app[keys.AREAS].update(keys.principal(request), "county", _id(request), changes)
    return json_response(county_json(county))


async def list_townships(request: web.Request) -> web.Response:
    townships = await request.app[keys.AREAS].list_townships(keys.principal(request))
    return json_response([township_json(t) for t in townships])


async def get_township(request: web.Request) -> web.Response:
    return json_response(
        township_json(await request.app[keys.AREAS].get_township(keys.principal(request), _id(request)))
    )


async def create_township(request: web.Request, body: TownshipIn) -> web.Response:
    township = await request.app[keys.AREAS].create_township(keys.principal(request), **body.model_dump())
    return json_response(township_json(township), status=201)


async def patch_township(request: web.Request, body: TownshipPatch) -> web.Response:
    changes = body.model_dump(exclude_unset=True)
    township = await request.app[keys.AREAS].update(keys.principal(request), "township", _id(request), changes)
    return json_response(township_json(township))


async def list_villages(request: web.Request, query: VillageQuery) -> web.Response:
    villages = await request.app[keys.AREAS].list_villages(keys.principal(request), query.township_id)
    return json_response([village_json(v) for v in villages])


async def get_village(request: web.Request) -> web.Response:
    return json_response(village_json(await request.app[keys.AREAS].get_village(keys.principal(request), _id(request))))


async def create_village(request: web.Request, body: VillageIn) -> web.Response:
    village = await request.app[keys.AREAS].create_village(keys.principal(request), **body.model_dump())
    return json_response(village_json(village), status=201)


async def patch_village(request: web.Request, body: VillagePatch) -> web.Response:
    changes = body.model_dump(exclude_unset=True)
    village = await request.app[keys.AREAS].update(keys.principal(request), "village", _id(request), changes)
    return json_response(village_json(village))


async def list_zones(request: web.Request, query: ZoneQuery) -> web.Response:
    zones = await request.app[keys.AREAS].list_zones(keys.principal(request), query.village_id)
    return json_response([zone_json(z, v) for z, v in zones])


async def get_zone(request: web.Request) -> web.Response:
    return json_response(zone_json(*await request.app[keys.AREAS].get_zone(keys.principal(request), _id(request))))


async def create_zone(request: web.Request, body: ZoneIn) -> web.Response:
    areas = request.app[keys.AREAS]
    zone = await areas.create_zone(keys.principal(request), **body.model_dump())
    return json_response(zone_json(*await areas.get_zone(keys.principal(request), zone.id)), status=201)


async def patch_zone(request: web.Request, body: ZonePatch) -> web.Response:
    areas = request.app[keys.AREAS]
    await areas.update(keys.principal(request), "zone", _id(request), body.model_dump(exclude_unset=True))
    return json_response(zone_json(*await areas.get_zone(keys.principal(request), _id(request))))


async def list_speakers(request: web.Request, query: SpeakerQuery) -> web.Response:
    speakers = await request.app[keys.AREAS].list_speakers(
        keys.principal(request), zone_id=query.zone_id, township_id=query.township_id
    )
    return json_response([speaker_json(*row) for row in speakers])


async def get_speaker(request: web.Request) -> web.Response:
    return json_response(
        speaker_json(*await request.app[keys.AREAS].get_speaker(keys.principal(request), _id(request)))
    )


async def create_speaker(request: web.Request, body: SpeakerIn) -> web.Response:
    areas = request.app[keys.AREAS]
    speaker, token = await areas.create_speaker(keys.principal(request), **body.model_dump())
    result = speaker_json(*await areas.get_speaker(keys.principal(request), speaker.id))
    if token:
        result["token"] = token  # shown once; only its hash is kept
    return json_response(result, status=201)


async def patch_speaker(request: web.Request, body: SpeakerPatch) -> web.Response:
    areas = request.app[keys.AREAS]
    await areas.update(keys.principal(request), "speaker", _id(request), body.model_dump(exclude_unset=True))
    return json_response(speaker_json(*await areas.get_speaker(keys.principal(request), _id(request))))


async def new_speaker_token(request: web.Request) -> web.Response:
    token = await request.app[keys.AREAS].regenerate_token(keys.principal(request), _id(request))
    return json_response({"token": token})


async def list_units(request: web.Request) -> web.Response:
    return json_response([unit_json(u) for u in await request.app[keys.AREAS].list_units(keys.principal(request))])


async def create_unit(request: web.Request, body: UnitIn) -> web.Response:
    unit = await request.app[keys.AREAS].create_unit(keys.principal(request), **body.model_dump())
    return json_response(unit_json(unit), status=201)


async def patch_unit(request: web.Request, body: UnitPatch) -> web.Response:
    unit = await request.app[keys.AREAS].update(
        keys.principal(request), "unit", _id(request), body.model_dump(exclude_unset=True)
    )
    return json_response(unit_json(unit))


def _deleter(level: str) -> Any:
    async def delete(request: web.Request) -> web.Response:
        await request.app[keys.AREAS].delete(keys.principal(request), level, _id(request))
        return web.Response(status=204)

    delete.__name__ = f"delete_{level}"
    return delete


# -- pages (admins) --------------------------------------------------------------------------


async def areas_page(request: web.Request) -> web.Response:
    areas = request.app[keys.AREAS]
    me = keys.principal(request)
    return await render(
        request,
        "admin/areas.html",
        {"counties": await areas.list_counties(), "townships": await areas.list_townships(me)},
    )


async def township_page(request: web.Request) -> web.Response:
    areas = request.app[keys.AREAS]
    await ensure_codes(request.app[keys.SESSIONS])  # an area made since migration 0012 gets its 喊话编号
    me = keys.principal(request)
    township = await areas.get_township(me, _id(request))
    villages = await areas.list_villages(me, township.id)
    return await render(request, "admin/township.html", {"township": township, "villages": villages})


async def village_page(
    request: web.Request, *, status: int = 200, values: dict[str, Any] | None = None, error: str | None = None
) -> web.Response:
    """A village: its name, kind, official code and coordinates (what was typed, after a refusal), its zones."""
    areas = request.app[keys.AREAS]
    await ensure_codes(request.app[keys.SESSIONS])  # an area made since migration 0012 gets its 喊话编号
    me = keys.principal(request)
    village = await areas.get_village(me, _id(request))
    township = await areas.get_township(me, village.township_id)
    zones = [zone for zone, _ in await areas.list_zones(me, village.id)]
    shown = values if values is not None else {
        "name": village.name, "kind": village.kind, "code": village.code or "",
        "latitude": _coordinate(village.latitude), "longitude": _coordinate(village.longitude),
    }  # fmt: skip
    context = {"village": village, "township": township, "zones": zones, "values": shown, "error": error}
    response = await render(request, "admin/village.html", context)
    response.set_status(status)
    return response


def _coordinate(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}".rstrip("0").rstrip(".")


async def village_form(request: web.Request) -> web.StreamResponse:
    """Save a village; an emptied code or coordinate clears it. Refused: the page again with what was typed."""
    posted = await read_post(request)
    try:
        form = await read_form(request, VillagePatch)
        changes = form.model_dump(exclude_unset=True)
        for cleared in ("code", "latitude", "longitude"):
            if cleared in posted and not str(posted[cleared]).strip():
                changes[cleared] = None
        await request.app[keys.AREAS].update(keys.principal(request), "village", _id(request), changes)
    except UserError as exc:
        typed = {key: posted.get(key, "") for key in ("name", "kind", "code", "latitude", "longitude")}
        return await village_page(request, status=status_for(exc), values=typed, error=exc.message)
    await flash(request, "已保存")
    raise redirect(f"/admin/villages/{_id(request)}")


async def zone_page(request: web.Request) -> web.Response:
    areas = request.app[keys.AREAS]
    await ensure_codes(request.app[keys.SESSIONS])  # an area made since migration 0012 gets its 喊话编号
    me = keys.principal(request)
    zone, village = await areas.get_zone(me, _id(request))
    speakers = [speaker for speaker, _, _ in await areas.list_speakers(me, zone_id=zone.id)]
    return await render(request, "admin/zone.html", {"zone": zone, "village": village, "speakers": speakers})


async def units_page(request: web.Request) -> web.Response:
    areas = request.app[keys.AREAS]
    me = keys.principal(request)
    context = {"units": await areas.list_units(me), "townships": await areas.list_townships(me)}
    return await render(request, "admin/units.html", context)


def _form_action(level: str, model: type[ApiModel], back: str, checkboxes: tuple[str, ...] = ()) -> Any:
    """A create form post: create, flash the outcome, go back to the page it came from."""

    async def action(request: web.Request) -> web.StreamResponse:
        areas = request.app[keys.AREAS]
        me = keys.principal(request)
        try:
            form = await read_form(request, model, checkboxes=checkboxes)
            fields = form.model_dump()
            creator = getattr(areas, f"create_{level}")
            created = await creator(me, **fields)
            message = "已添加"
            if level == "speaker" and created[1]:
                message = f"已添加。终端令牌（只显示这一次，请抄到终端上）：{created[1]}"
            await flash(request, message)
        except UserError as exc:
            await flash(request, exc.message, "error")
            fields = {}
        target = back.format(
            **{key: fields.get(key, "") for key in ("county_id", "township_id", "village_id", "zone_id")}
        )
        if "{" in back and not fields:
            target = request.headers.get("Referer", "/admin/areas")
        raise redirect(target)

    action.__name__ = f"form_create_{level}"
    return action


def _form_update(level: str, model: type[ApiModel], checkboxes: tuple[str, ...] = ()) -> Any:
    async def action(request: web.Request) -> web.StreamResponse:
        try:
            form = await read_form(request, model, checkboxes=checkboxes)
            await request.app[keys.AREAS].update(
                keys.principal(request), level, _id(request), form.model_dump(exclude_unset=True)
            )
            await flash(request, "已保存")
        except UserError as exc:
            await flash(request, exc.message, "error")
        raise redirect(request.headers.get("Referer", "/admin/areas"))

    action.__name__ = f"form_update_{level}"
    return action


def _form_delete(level: str, back: str) -> Any:
    async def action(request: web.Request) -> web.StreamResponse:
        try:
            await request.app[keys.AREAS].delete(keys.principal(request), level, _id(request))
            await flash(request, "已删除")
            raise redirect(back)
        except UserError as exc:
            await flash(request, exc.message, "error")
            raise redirect(request.headers.get("Referer", back)) from None

    action.__name__ = f"form_delete_{level}"
    return action


def add_routes(routes: Routes) -> None:
    admin = ("admin",)
    tag = "区域与单位"
    item = r"{id:\d+}"
    routes.api("GET", "/api/v1/counties", list_counties, summary="县列表", tag=tag)
    routes.api(
        "POST", "/api/v1/counties", create_county, summary="新建县", tag=tag, body=CountyIn, roles=admin, status=201
    )
    routes.api(
        "PATCH", f"/api/v1/counties/{item}", patch_county, summary="修改县", tag=tag, body=CountyPatch, roles=admin
    )
    levels: list[tuple[str, str, Any, Any, Any, Any, Any, type[ApiModel], type[ApiModel], type[ApiModel] | None]] = [
        ("townships", "乡镇", list_townships, get_township, create_township, patch_township, "township",
         TownshipIn, TownshipPatch, None),
        ("villages", "村", list_villages, get_village, create_village, patch_village, "village",
         VillageIn, VillagePatch, VillageQuery),
        ("zones", "播出分区", list_zones, get_zone, create_zone, patch_zone, "zone", ZoneIn, ZonePatch, ZoneQuery),
        ("speakers", "终端", list_speakers, get_speaker, create_speaker, patch_speaker, "speaker",
         SpeakerIn, SpeakerPatch, SpeakerQuery),
    ]  # fmt: skip
    for plural, label, lister, getter, creator, patcher, level, body_in, body_patch, query in levels:
        base = f"/api/v1/{plural}"
        routes.api("GET", base, lister, summary=f"{label}列表（按权限范围）", tag=tag, query=query)
        routes.api("POST", base, creator, summary=f"新建{label}", tag=tag, body=body_in, roles=admin, status=201)
        routes.api("GET", f"{base}/{item}", getter, summary=f"{label}详情", tag=tag)
        routes.api("PATCH", f"{base}/{item}", patcher, summary=f"修改{label}", tag=tag, body=body_patch, roles=admin)
        routes.api(
            "DELETE",
            f"{base}/{item}",
            _deleter(level),
            summary=f"删除{label}（须为空）",
            tag=tag,
            roles=admin,
            status=204,
        )
    routes.api(
        "POST", f"/api/v1/speakers/{item}/token", new_speaker_token, summary="重新生成4G终端令牌", tag=tag, roles=admin
    )
    routes.api("GET", "/api/v1/units", list_units, summary="承办单位列表", tag=tag)
    routes.api(
        "POST", "/api/v1/units", create_unit, summary="新建承办单位", tag=tag, body=UnitIn, roles=admin, status=201
    )
    routes.api(
        "PATCH", f"/api/v1/units/{item}", patch_unit, summary="修改承办单位", tag=tag, body=UnitPatch, roles=admin
    )
    routes.api(
        "DELETE", f"/api/v1/units/{item}", _deleter("unit"), summary="删除承办单位", tag=tag, roles=admin, status=204
    )

    routes.page("GET", "/admin/areas", areas_page, roles=admin)
    routes.page("GET", f"/admin/townships/{item}", township_page, roles=admin)
    routes.page("GET", f"/admin/villages/{item}", village_page, roles=admin)
    routes.page("GET", f"/admin/zones/{item}", zone_page, roles=admin)
    routes.page("GET", "/admin/units", units_page, roles=admin)
    routes.page("POST", "/admin/counties", _form_action("county", CountyIn, "/admin/areas"), roles=admin)
    routes.page("POST", "/admin/townships", _form_action("township", TownshipIn, "/admin/areas"), roles=admin)
    routes.page(
        "POST", "/admin/villages", _form_action("village", VillageIn, "/admin/townships/{township_id}"), roles=admin
    )
    routes.page("POST", "/admin/zones", _form_action("zone", ZoneIn, "/admin/villages/{village_id}"), roles=admin)
    routes.page(
        "POST",
        "/admin/speakers",
        _form_action("speaker", SpeakerIn, "/admin/zones/{zone_id}", ("enabled",)),
        roles=admin,
    )
    routes.page("POST", "/admin/units", _form_action("unit", UnitIn, "/admin/units"), roles=admin)
    routes.page("POST", f"/admin/townships/{item}", _form_update("township", TownshipPatch), roles=admin)
    routes.page("POST", f"/admin/villages/{item}", village_form, roles=admin)
    routes.page("POST", f"/admin/zones/{item}", _form_update("zone", ZonePatch, ("is_test",)), roles=admin)
    routes.page("POST", f"/admin/speakers/{item}", _form_update("speaker", SpeakerPatch, ("enabled",)), roles=admin)
    routes.page("POST", f"/admin/units/{item}", _form_update("unit", UnitPatch, ("active",)), roles=admin)
    for level, back in (("township", "/admin/areas"), ("village", "/admin/areas"), ("zone", "/admin/areas"),
                        ("speaker", "/admin/areas"), ("unit", "/admin/units")):  # fmt: skip
        routes.page("POST", f"/admin/{level}s/{item}/delete", _form_delete(level, back), roles=admin)
