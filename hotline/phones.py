"""Caller numbers, and the villager phone registry that ties a number to a village.

A caller id arrives as whatever the carrier sends: ``+86 138-0000-1111``,
``008613800001111``, ``04711234567``, ``anonymous``, or nothing. It is stored as
digits only (:func:`common.phone_numbers.normalise`, the one owner of that
rule), so the same phone always gives the same string; a withheld number
(presentation ``prohib*``, or a placeholder such as ``anonymous``) is stored as
*no* number, flagged withheld, and never matched to anybody.

Staff keep the registry (number → village, name) for the villagers of their
own townships; a number found there places a new case in its village and
township by itself, otherwise the operator places it. The registry follows the
404 rule: outside one's townships a registered number does not exist.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.principal import Principal
from common.clock import Clock
from common.errors import Conflict, InvalidInput, NotFound
from common.phone_numbers import WITHHELD_PLACEHOLDERS, normalise
from storage import audit
from storage.models import Village, VillagerPhone


@dataclass(frozen=True)
class CallerNumber:
    """A caller id made comparable: ``number`` is None when withheld or unusable."""

    number: str | None
    withheld: bool


def caller_number(raw: str | None, presentation: str | None = None) -> CallerNumber:
    """The caller as we keep them: withheld when the network says so or the id is a placeholder."""
    prohibited = _prohibited(presentation)
    text = (raw or "").strip()
    if prohibited or text.lower() in WITHHELD_PLACEHOLDERS:
        return CallerNumber(None, withheld=True)
    number = normalise(text)
    return CallerNumber(number, withheld=number is None)


def _prohibited(presentation: str | None) -> bool:
    """``prohib_*`` from CALLERID(pres), or AGI's numeric agi_callingpres with the restricted bit (0x20)."""
    text = (presentation or "").strip().lower()
    if text.isdigit():
        return int(text) & 0x60 == 0x20
    return text.startswith("prohib")


@dataclass(frozen=True)
class PhoneEntry:
    phone: VillagerPhone
    village: Village


@dataclass(frozen=True)
class Placement:
    """Where a known caller lives."""

    village_id: int
    township_id: int
    name: str | None


def _clean_optional(value: str | None, field: str, max_length: int) -> str | None:
    if value is None:
        return None
    value = unicodedata.normalize("NFC", value).strip()
    if not value:
        return None
    if len(value) > max_length:
        raise InvalidInput(f"最多{max_length}个字", fields={field: f"最多{max_length}个字"})
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value):
        raise InvalidInput("有不可见的控制字符", fields={field: "含有控制字符"})
    return value


def registry_number(raw: str) -> str:
    number = normalise(raw)
    if number is None:
        raise InvalidInput("电话号码不对：请填3到20位数字", fields={"number": "应为3到20位数字"})
    return number


class PhoneRegistry:
    """The villager phone registry, scoped by the signed-in user's townships."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def place(self, session: AsyncSession, number: str | None) -> Placement | None:
        """The village and township of a registered number (inside the caller's transaction)."""
        return (await self.place_all(session, [number])).get(number) if number else None

    async def place_all(self, session: AsyncSession, numbers: Iterable[str | None]) -> dict[str, Placement]:
        """Where many numbers are registered, in one statement (the intake's cases written together)."""
        wanted = {number for number in numbers if number}
        if not wanted:
            return {}
        rows = await session.execute(
            select(VillagerPhone, Village)
            .join(Village, VillagerPhone.village_id == Village.id)
            .where(VillagerPhone.number.in_(wanted))
        )
        places: dict[str, Placement] = {}
        for phone, village in rows:
            places.setdefault(phone.number, Placement(village.id, village.township_id, phone.name))
        return places

    async def list(
        self,
        principal: Principal,
        *,
        township_id: int | None = None,
        village_id: int | None = None,
        query: str | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> tuple[Sequence[PhoneEntry], int]:
        statement = select(VillagerPhone, Village).join(Village, VillagerPhone.village_id == Village.id)
        scope = principal.township_filter()
        if scope is not None:
            statement = statement.where(Village.township_id.in_(scope))
        if township_id is not None:
            statement = statement.where(Village.township_id == township_id)
        if village_id is not None:
            statement = statement.where(VillagerPhone.village_id == village_id)
        if query:
            pattern = f"%{query.strip()}%"
            statement = statement.where(or_(VillagerPhone.number.like(pattern), VillagerPhone.name.like(pattern)))
        async with self._sessions() as session:
            total = await session.scalar(select(func.count()).select_from(statement.subquery())) or 0
            rows = (
                await session.execute(
                    statement.order_by(Village.township_id, Village.id, VillagerPhone.id).limit(limit).offset(offset)
                )
            ).all()
        return [PhoneEntry(phone, village) for phone, village in rows], total

    async def get(self, principal: Principal, phone_id: int) -> PhoneEntry:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(VillagerPhone, Village)
                    .join(Village, VillagerPhone.village_id == Village.id)
                    .where(VillagerPhone.id == phone_id)
                )
            ).first()
        if row is None or not principal.sees_township(row[1].township_id):
            raise NotFound("电话登记不存在")
        return PhoneEntry(row[0], row[1])

    async def _village(self, session: AsyncSession, principal: Principal, village_id: int) -> Village:
        village = await session.get(Village, village_id)
        if village is None or not principal.sees_township(village.township_id):
            raise NotFound("村不存在", fields={"village_id": "不存在"})
        return village

    async def create(
        self, principal: Principal, *, number: str, village_id: int, name: str | None = None, note: str | None = None
    ) -> PhoneEntry:
        digits = registry_number(number)
        now = self._clock.now()
        async with self._sessions() as session:
            village = await self._village(session, principal, village_id)
            phone = VillagerPhone(
                number=digits,
                village_id=village.id,
                name=_clean_optional(name, "name", 64),
                note=_clean_optional(note, "note", 255),
                created_at=now,
                updated_at=now,
            )
            session.add(phone)
            try:
                await session.flush()
            except IntegrityError:
                raise Conflict("这个电话号码已经登记过了", code="phone.exists", fields={"number": "已登记"}) from None
            audit.record(
                session,
                principal.actor,
                at=now,
                action="villager_phone.create",
                object_type="villager_phone",
                object_id=phone.id,
                detail={"village_id": village.id},
            )
            await session.commit()
        return PhoneEntry(phone, village)

    async def update(self, principal: Principal, phone_id: int, changes: dict[str, object]) -> PhoneEntry:
        now = self._clock.now()
        async with self._sessions() as session:
            phone = await session.get(VillagerPhone, phone_id)
            village = await session.get(Village, phone.village_id) if phone is not None else None
            if phone is None or village is None or not principal.sees_township(village.township_id):
                raise NotFound("电话登记不存在")
            if "number" in changes and changes["number"] is not None:
                phone.number = registry_number(str(changes["number"]))
            if "village_id" in changes and changes["village_id"] is not None:
                village = await self._village(session, principal, int(str(changes["village_id"])))
                phone.village_id = village.id
            if "name" in changes:
                phone.name = _clean_optional(_optional_text(changes["name"]), "name", 64)
            if "note" in changes:
                phone.note = _clean_optional(_optional_text(changes["note"]), "note", 255)
            phone.updated_at = now
            try:
                await session.flush()
            except IntegrityError:
                raise Conflict("这个电话号码已经登记过了", code="phone.exists", fields={"number": "已登记"}) from None
            audit.record(
                session,
                principal.actor,
                at=now,
                action="villager_phone.update",
                object_type="villager_phone",
                object_id=phone.id,
                detail={"fields": sorted(changes)},
            )
            await session.commit()
        return PhoneEntry(phone, village)

    async def delete(self, principal: Principal, phone_id: int) -> None:
        async with self._sessions() as session:
            phone = await session.get(VillagerPhone, phone_id)
            village = await session.get(Village, phone.village_id) if phone is not None else None
            if phone is None or village is None or not principal.sees_township(village.township_id):
                raise NotFound("电话登记不存在")
            await session.delete(phone)
            audit.record(
                session,
                principal.actor,
                at=self._clock.now(),
                action="villager_phone.delete",
                object_type="villager_phone",
                object_id=phone_id,
                detail={"village_id": village.id},
            )
            await session.commit()


def _optional_text(value: object) -> str | None:
    return None if value is None else str(value)
