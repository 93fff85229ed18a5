"""Reading and changing the area tree and the units, scoped by the caller's townships."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import time
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.principal import Principal
from areas.addresses import AddressPolicy, new_terminal_token, normalise_speaker
from common.clock import Clock
from common.errors import Conflict, InvalidInput, NotFound
from storage import audit
from storage.models import County, Speaker, Township, Unit, Village, Zone

SelectT = TypeVar("SelectT", bound="Select[*tuple[Any, ...]]")

MODELS: dict[str, type[Any]] = {
    "county": County,
    "township": Township,
    "village": Village,
    "zone": Zone,
    "speaker": Speaker,
    "unit": Unit,
}
LEVEL_LABELS = {
    "county": "县",
    "township": "乡镇",
    "village": "村",
    "zone": "播出分区",
    "speaker": "终端",
    "unit": "单位",
}


def clean_name(value: str, field: str = "name", max_length: int = 64) -> str:
    """Names are shown everywhere and read aloud: no control characters, no surrounding space."""
    value = unicodedata.normalize("NFC", value).strip()
    if not value:
        raise InvalidInput("名称不能为空", fields={field: "不能为空"})
    if len(value) > max_length:
        raise InvalidInput(f"名称不能超过{max_length}个字", fields={field: f"最多{max_length}个字"})
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value):
        raise InvalidInput("名称里有不可见的控制字符", fields={field: "含有控制字符"})
    return value


def _duplicate(level: str) -> Conflict:
    return Conflict(f"同级已有同名的{LEVEL_LABELS[level]}", code=f"{level}.exists", fields={"name": "已存在"})


def _in_use(level: str) -> Conflict:
    return Conflict(f"这个{LEVEL_LABELS[level]}下面还有内容或仍被使用，请先删除或移走", code=f"{level}.in_use")


class AreaService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Clock, address_policy: AddressPolicy | None = None
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        # Where RTP speakers and zone groups may point (the county's network unless the site allows more).
        self.address_policy = address_policy or AddressPolicy()

    # -- scoped reads ---------------------------------------------------------------------

    @staticmethod
    def _scoped(statement: SelectT, principal: Principal, township_column: Any) -> SelectT:
        scope = principal.township_filter()
        if scope is None:
            return statement
        return statement.where(township_column.in_(scope))

    async def list_counties(self) -> Sequence[County]:
        async with self._sessions() as session:
            return (await session.scalars(select(County).order_by(County.id))).all()

    async def list_townships(self, principal: Principal) -> Sequence[Township]:
        statement = self._scoped(select(Township).order_by(Township.id), principal, Township.id)
        async with self._sessions() as session:
            return (await session.scalars(statement)).all()

    async def get_township(self, principal: Principal, township_id: int) -> Township:
        principal.require_township(township_id, "乡镇")
        async with self._sessions() as session:
            township = await session.get(Township, township_id)
        if township is None:
            raise NotFound("乡镇不存在")
        return township

    async def list_villages(self, principal: Principal, township_id: int | None = None) -> Sequence[Village]:
        statement = self._scoped(
            select(Village).order_by(Village.township_id, Village.id), principal, Village.township_id
        )
        if township_id is not None:
            statement = statement.where(Village.township_id == township_id)
        async with self._sessions() as session:
            return (await session.scalars(statement)).all()

    async def get_village(self, principal: Principal, village_id: int) -> Village:
        async with self._sessions() as session:
            village = await session.get(Village, village_id)
        if village is None or not principal.sees_township(village.township_id):
            raise NotFound("村不存在")
        return village

    async def list_zones(self, principal: Principal, village_id: int | None = None) -> Sequence[tuple[Zone, Village]]:
        statement = self._scoped(
            select(Zone, Village).join(Village).order_by(Village.township_id, Village.id, Zone.id),
            principal,
            Village.township_id,
        )
        if village_id is not None:
            statement = statement.where(Zone.village_id == village_id)
        async with self._sessions() as session:
            return [(zone, village) for zone, village in (await session.execute(statement)).all()]

    async def get_zone(self, principal: Principal, zone_id: int) -> tuple[Zone, Village]:
        async with self._sessions() as session:
            row = (await session.execute(select(Zone, Village).join(Village).where(Zone.id == zone_id))).first()
        if row is None or not principal.sees_township(row[1].township_id):
            raise NotFound("播出分区不存在")
        return row[0], row[1]

    async def list_speakers(
        self, principal: Principal, *, zone_id: int | None = None, township_id: int | None = None
    ) -> Sequence[tuple[Speaker, Zone, Village]]:
        statement = self._scoped(
            select(Speaker, Zone, Village).join(Zone, Speaker.zone_id == Zone.id).join(Village).order_by(Speaker.id),
            principal,
            Village.township_id,
        )
        if zone_id is not None:
            statement = statement.where(Speaker.zone_id == zone_id)
        if township_id is not None:
            statement = statement.where(Village.township_id == township_id)
        async with self._sessions() as session:
            return [(s, z, v) for s, z, v in (await session.execute(statement)).all()]

    async def get_speaker(self, principal: Principal, speaker_id: int) -> tuple[Speaker, Zone, Village]:
        statement = (
            select(Speaker, Zone, Village)
            .join(Zone, Speaker.zone_id == Zone.id)
            .join(Village)
            .where(Speaker.id == speaker_id)
        )
        async with self._sessions() as session:
            row = (await session.execute(statement)).first()
        if row is None or not principal.sees_township(row[2].township_id):
            raise NotFound("终端不存在")
        return row[0], row[1], row[2]

    async def list_units(self, principal: Principal) -> Sequence[Unit]:
        # Every signed-in user may see the list of units: cases are assigned across townships.
        async with self._sessions() as session:
            return (await session.scalars(select(Unit).order_by(Unit.kind.desc(), Unit.id))).all()

    async def speaker_counts(self, principal: Principal) -> dict[int, int]:
        """Enabled speakers per zone in the caller's scope: what a zone picker counts as it is ticked."""
        statement = self._scoped(
            select(Speaker.zone_id, func.count(Speaker.id))
            .join(Zone, Speaker.zone_id == Zone.id)
            .join(Village)
            .where(Speaker.enabled.is_(True))
            .group_by(Speaker.zone_id),
            principal,
            Village.township_id,
        )
        async with self._sessions() as session:
            return {zone_id: int(count) for zone_id, count in (await session.execute(statement)).all()}

    async def tree_counts(self) -> dict[str, int]:
        async with self._sessions() as session:
            counts = {}
            for label, model in (
                ("townships", Township),
                ("villages", Village),
                ("zones", Zone),
                ("speakers", Speaker),
            ):
                counts[label] = int(await session.scalar(select(func.count()).select_from(model)) or 0)
            return counts

    # -- changes (admins) ------------------------------------------------------------------

    async def _commit_new(self, principal: Principal, level: str, obj: Any, detail: dict[str, Any]) -> Any:
        now = self._clock.now()
        obj.created_at = now
        try:
            async with self._sessions.begin() as session:
                session.add(obj)
                await session.flush()
                audit.record(
                    session,
                    principal.actor,
                    at=now,
                    action=f"{level}.create",
                    object_type=level,
                    object_id=obj.id,
                    detail=detail,
                )
        except IntegrityError as exc:
            raise _duplicate(level) from exc
        return obj

    async def create_county(self, principal: Principal, *, name: str, code: str | None = None) -> County:
        principal.require_role("admin")
        name = clean_name(name)
        result: County = await self._commit_new(
            principal, "county", County(name=name, code=code or None), {"name": name}
        )
        return result

    async def create_township(
        self,
        principal: Principal,
        *,
        county_id: int,
        name: str,
        code: str | None = None,
        quiet_start: time = time(21, 30),
        quiet_end: time = time(6, 30),
    ) -> Township:
        principal.require_role("admin")
        name = clean_name(name)
        async with self._sessions() as session:
            if await session.get(County, county_id) is None:
                raise InvalidInput("县不存在", fields={"county_id": "县不存在"})
        township = Township(
            county_id=county_id, name=name, code=code or None, quiet_start=quiet_start, quiet_end=quiet_end
        )
        result: Township = await self._commit_new(principal, "township", township, {"name": name})
        return result

    async def create_village(
        self, principal: Principal, *, township_id: int, name: str, kind: str = "village"
    ) -> Village:
        principal.require_role("admin")
        name = clean_name(name)
        async with self._sessions() as session:
            if await session.get(Township, township_id) is None:
                raise InvalidInput("乡镇不存在", fields={"township_id": "乡镇不存在"})
        result: Village = await self._commit_new(
            principal, "village", Village(township_id=township_id, name=name, kind=kind), {"name": name}
        )
        return result

    async def create_zone(self, principal: Principal, *, village_id: int, name: str) -> Zone:
        principal.require_role("admin")
        name = clean_name(name)
        async with self._sessions() as session:
            if await session.get(Village, village_id) is None:
                raise InvalidInput("村不存在", fields={"village_id": "村不存在"})
        result: Zone = await self._commit_new(principal, "zone", Zone(village_id=village_id, name=name), {"name": name})
        return result

    async def create_speaker(
        self,
        principal: Principal,
        *,
        zone_id: int,
        name: str,
        transport: str,
        address: str,
        codec: str | None = None,
        enabled: bool = True,
    ) -> tuple[Speaker, str | None]:
        """Returns the speaker and, for an HTTP-pull terminal, its token (shown once, kept only hashed)."""
        principal.require_role("admin")
        name = clean_name(name)
        address, codec = normalise_speaker(transport, address, codec, self.address_policy)
        async with self._sessions() as session:
            if await session.get(Zone, zone_id) is None:
                raise InvalidInput("播出分区不存在", fields={"zone_id": "播出分区不存在"})
        token, token_hash = new_terminal_token() if transport == "http" else (None, None)
        speaker = Speaker(
            zone_id=zone_id,
            name=name,
            transport=transport,
            address=address,
            codec=codec,
            enabled=enabled,
            token_hash=token_hash,
        )
        try:
            result: Speaker = await self._commit_new(
                principal, "speaker", speaker, {"name": name, "transport": transport, "address": address}
            )
        except Conflict as exc:
            raise Conflict("已有终端使用这个地址", code="speaker.exists", fields={"address": "已被使用"}) from exc
        return result, token

    async def create_unit(
        self, principal: Principal, *, name: str, kind: str, township_id: int | None = None, phone: str | None = None
    ) -> Unit:
        principal.require_role("admin")
        name = clean_name(name)
        if kind == "township" and township_id is None:
            raise InvalidInput("乡镇单位需要选择所属乡镇", fields={"township_id": "请选择乡镇"})
        if township_id is not None:
            async with self._sessions() as session:
                if await session.get(Township, township_id) is None:
                    raise InvalidInput("乡镇不存在", fields={"township_id": "乡镇不存在"})
        unit = Unit(name=name, kind=kind, township_id=township_id, phone=phone or None, active=True)
        result: Unit = await self._commit_new(principal, "unit", unit, {"name": name, "kind": kind})
        return result

    async def update(self, principal: Principal, level: str, object_id: int, changes: dict[str, Any]) -> Any:
        """Apply field changes to one object of the tree (admins only), audited with before/after."""
        principal.require_role("admin")
        model = {
            "county": County,
            "township": Township,
            "village": Village,
            "zone": Zone,
            "speaker": Speaker,
            "unit": Unit,
        }[level]
        # A field sent as null that the table cannot hold empty: say which, rather than fail in the database.
        emptied = {
            field: "不能为空"
            for field, value in changes.items()
            if value is None and field in model.__table__.columns and not model.__table__.columns[field].nullable
        }
        if emptied:
            raise InvalidInput("输入有误：" + "、".join(emptied) + " 不能为空", fields=emptied)
        if "name" in changes:
            changes["name"] = clean_name(changes["name"])
        try:
            async with self._sessions.begin() as session:
                obj: Any = await session.get(model, object_id)
                if obj is None:
                    raise NotFound(f"{LEVEL_LABELS[level]}不存在")
                if level == "village" and {"code", "latitude", "longitude"} & changes.keys():
                    await _check_village_place(session, obj, changes)
                if level == "speaker" and {"address", "codec"} & changes.keys():
                    changes["address"], changes["codec"] = normalise_speaker(
                        obj.transport,
                        changes.get("address", obj.address),
                        changes.get("codec", obj.codec),
                        self.address_policy,
                    )
                diff = {}
                for field, value in changes.items():
                    before = getattr(obj, field)
                    if before != value:
                        diff[field] = {"before": _plain(before), "after": _plain(value)}
                        setattr(obj, field, value)
                if diff:
                    await session.flush()
                    audit.record(
                        session,
                        principal.actor,
                        at=self._clock.now(),
                        action=f"{level}.update",
                        object_type=level,
                        object_id=object_id,
                        detail=diff,
                    )
                return obj
        except IntegrityError as exc:
            raise _duplicate(level) from exc

    async def delete(self, principal: Principal, level: str, object_id: int) -> None:
        """Delete an empty, unused object; anything still referenced is a Conflict, and nothing changes."""
        principal.require_role("admin")
        model = {
            "county": County,
            "township": Township,
            "village": Village,
            "zone": Zone,
            "speaker": Speaker,
            "unit": Unit,
        }[level]
        try:
            async with self._sessions.begin() as session:
                obj = await session.get(model, object_id)
                if obj is None:
                    raise NotFound(f"{LEVEL_LABELS[level]}不存在")
                name = getattr(obj, "name", "")
                await session.delete(obj)
                await session.flush()
                audit.record(
                    session,
                    principal.actor,
                    at=self._clock.now(),
                    action=f"{level}.delete",
                    object_type=level,
                    object_id=object_id,
                    detail={"name": name},
                )
        except IntegrityError as exc:
            raise _in_use(level) from exc

    async def regenerate_token(self, principal: Principal, speaker_id: int) -> str:
        principal.require_role("admin")
        async with self._sessions.begin() as session:
            speaker = await session.get(Speaker, speaker_id)
            if speaker is None:
                raise NotFound("终端不存在")
            if speaker.transport != "http":
                raise Conflict("只有4G拉取终端使用令牌", code="speaker.no_token")
            token, speaker.token_hash = new_terminal_token()
            audit.record(
                session,
                principal.actor,
                at=self._clock.now(),
                action="speaker.token",
                object_type="speaker",
                object_id=speaker_id,
            )
        return token


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, time) else value


async def _check_village_place(session: AsyncSession, village: Village, changes: dict[str, Any]) -> None:
    """A village's official code and coordinates, as CAP alerts find villages by them: the code is the twelve-digit
    statistical code beginning with its township's (when the township has one); latitude and longitude come
    together (one without the other places the village nowhere)."""
    code = changes.get("code", village.code)
    fields: dict[str, str] = {}
    if code is not None:
        township = await session.get(Township, village.township_id)
        if not (len(code) == 12 and code.isascii() and code.isdigit()):
            fields["code"] = "村的统计用区划代码是12位数字"
        elif township is not None and township.code and not code.startswith(township.code):
            fields["code"] = f"应以所属乡镇的代码 {township.code} 开头"
    latitude = changes.get("latitude", village.latitude)
    longitude = changes.get("longitude", village.longitude)
    if (latitude is None) != (longitude is None):
        fields["latitude" if latitude is None else "longitude"] = "纬度和经度要一起填写"
    if fields:
        raise InvalidInput("输入有误：" + "；".join(fields.values()), fields=fields)
