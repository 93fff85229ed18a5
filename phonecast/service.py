"""Managing 手机喊话: the permission with its scope and numbers (admins), PINs (their owner sets, an admin resets),
喊话编号 (admins), and the 喊话记录 with its review afterwards (approvers: 事后审核).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.limiter import LoginLimiter
from accounts.passwords import Passwords
from accounts.principal import Principal
from common import phone_numbers
from common.clock import Clock
from common.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from phonecast.codes import MAX_CODE_LENGTH, AreaModel, ensure_codes
from phonecast.desk import PIN_PATTERN, limiter_keys
from storage import audit
from storage.models import (
    RUN_SUCCESS,
    Broadcast,
    BroadcastSpeaker,
    BroadcastZone,
    LoginThrottle,
    PhoneBroadcast,
    PhonecastCadre,
    PhonecastNumber,
    PhonecastScope,
    Township,
    User,
    Village,
    Zone,
)

APPROVER_ROLES = ("approver", "admin")
MIN_NUMBER_DIGITS = 7
# Weak PINs refused on the user's page: all one digit, or a run up or down.
_WEAK_PINS = {d * 6 for d in "0123456789"} | {"123456", "234567", "345678", "456789", "654321", "987654", "012345"}
_CODE = re.compile(rf"[0-9]{{1,{MAX_CODE_LENGTH}}}")
AREA_MODELS: dict[str, AreaModel] = {
    "township": Township,
    "village": Village,
    "zone": Zone,
}


@dataclass(frozen=True)
class CadreEntry:
    user_id: int
    name: str
    username: str
    active: bool
    pin_set: bool
    numbers: tuple[str, ...]
    villages: tuple[tuple[int, str, str], ...]  # (id, name, 喊话编号)
    townships: tuple[tuple[int, str, str], ...]


class PhonecastAdmin:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        passwords: Passwords,
        limiter: LoginLimiter,
        recordings_dir: Path,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._passwords = passwords
        self._limiter = limiter
        self.recordings_dir = recordings_dir

    # -- the permission, its scope and numbers (admins) --------------------------------------------

    async def grant(
        self,
        principal: Principal,
        user_id: int,
        *,
        village_ids: Iterable[int],
        township_ids: Iterable[int],
        numbers: Iterable[str],
    ) -> CadreEntry:
        """Grant (or change) 可电话喊话 for ``user_id``: exactly these villages, townships and numbers."""
        principal.require_role("admin")
        villages, townships = sorted(set(village_ids)), sorted(set(township_ids))
        normalised: list[str] = []
        for raw in numbers:
            if not raw.strip():
                continue
            number = phone_numbers.normalise(raw)
            # A phone that calls in: at least a local landline's seven digits (a mobile has eleven).
            if number is None or len(number) < MIN_NUMBER_DIGITS:
                message = f"“{raw.strip()}”不是有效的电话号码"
                raise InvalidInput(message, code="phonecast.bad_number", fields={"numbers": message})
            if number not in normalised:
                normalised.append(number)
        if not villages and not townships:
            message = "请至少选择一个村或乡镇"
            raise InvalidInput(message, code="phonecast.no_scope", fields={"scope": message})
        if not normalised:
            message = "请至少登记一个手机号码"
            raise InvalidInput(message, code="phonecast.no_number", fields={"numbers": message})
        now = self._clock.now()
        try:
            async with self._sessions.begin() as session:
                user = await session.get(User, user_id)
                if user is None:
                    raise NotFound("用户不存在", code="not_found")
                found_villages = await session.scalar(select(func.count(Village.id)).where(Village.id.in_(villages)))
                found_townships = await session.scalar(
                    select(func.count(Township.id)).where(Township.id.in_(townships))
                )
                if found_villages != len(villages) or found_townships != len(townships):
                    raise InvalidInput("所选的村或乡镇不存在", code="phonecast.bad_scope", fields={"scope": "不存在"})
                taken = (
                    await session.execute(
                        select(PhonecastNumber.number, User.display_name)
                        .join(User, User.id == PhonecastNumber.user_id)
                        .where(PhonecastNumber.number.in_(normalised), PhonecastNumber.user_id != user_id)
                    )
                ).first()
                if taken is not None:
                    message = f"号码 {taken.number} 已登记给 {taken.display_name}"
                    raise Conflict(message, code="phonecast.number_taken", fields={"numbers": message})
                cadre = await session.get(PhonecastCadre, user_id)
                if cadre is None:
                    session.add(PhonecastCadre(user_id=user_id, granted_by=principal.user_id, granted_at=now))
                    await session.flush()
                await session.execute(delete(PhonecastScope).where(PhonecastScope.user_id == user_id))
                await session.execute(delete(PhonecastNumber).where(PhonecastNumber.user_id == user_id))
                session.add_all(PhonecastScope(user_id=user_id, village_id=v) for v in villages)
                session.add_all(PhonecastScope(user_id=user_id, township_id=t) for t in townships)
                session.add_all(PhonecastNumber(user_id=user_id, number=n, created_at=now) for n in normalised)
                audit.record(
                    session, principal.actor, at=now, action="phonecast.grant", object_type="user", object_id=user_id,
                    detail={"villages": villages, "townships": townships,
                            "numbers": [phone_numbers.mask(n) for n in normalised]},
                )  # fmt: skip
        except IntegrityError as exc:
            message = "号码已登记给其他用户"
            raise Conflict(message, code="phonecast.number_taken", fields={"numbers": message}) from exc
        return await self.cadre(principal, user_id)

    async def revoke(self, principal: Principal, user_id: int) -> None:
        principal.require_role("admin")
        async with self._sessions.begin() as session:
            cadre = await session.get(PhonecastCadre, user_id)
            if cadre is None:
                raise NotFound("该用户没有电话喊话权限", code="not_found")
            await session.delete(cadre)
            audit.record(
                session, principal.actor, at=self._clock.now(), action="phonecast.revoke", object_type="user",
                object_id=user_id,
            )  # fmt: skip

    async def cadre(self, principal: Principal, user_id: int) -> CadreEntry:
        if principal.user_id != user_id:
            principal.require_role("admin")
        entries = await self._entries([user_id])
        if not entries:
            raise NotFound("该用户没有电话喊话权限", code="not_found")
        return entries[0]

    async def cadre_or_none(self, user_id: int) -> CadreEntry | None:
        entries = await self._entries([user_id])
        return entries[0] if entries else None

    async def list_cadres(self, principal: Principal) -> list[CadreEntry]:
        principal.require_role("admin")
        return await self._entries(None)

    async def _entries(self, user_ids: Sequence[int] | None) -> list[CadreEntry]:
        await ensure_codes(self._sessions)
        async with self._sessions() as session:
            statement = select(PhonecastCadre, User).join(User, User.id == PhonecastCadre.user_id).order_by(User.id)
            if user_ids is not None:
                statement = statement.where(PhonecastCadre.user_id.in_(user_ids))
            pairs = (await session.execute(statement)).all()
            ids = [cadre.user_id for cadre, _ in pairs]
            numbers = (
                await session.execute(
                    select(PhonecastNumber.user_id, PhonecastNumber.number)
                    .where(PhonecastNumber.user_id.in_(ids))
                    .order_by(PhonecastNumber.id)
                )
            ).all()
            village_rows = (
                await session.execute(
                    select(PhonecastScope.user_id, Village.id, Village.name, Village.phonecast_code)
                    .join(Village, Village.id == PhonecastScope.village_id)
                    .where(PhonecastScope.user_id.in_(ids))
                    .order_by(Village.phonecast_code)
                )
            ).all()
            township_rows = (
                await session.execute(
                    select(PhonecastScope.user_id, Township.id, Township.name, Township.phonecast_code)
                    .join(Township, Township.id == PhonecastScope.township_id)
                    .where(PhonecastScope.user_id.in_(ids))
                    .order_by(Township.phonecast_code)
                )
            ).all()
        return [
            CadreEntry(
                user_id=user.id,
                name=user.display_name,
                username=user.username,
                active=user.active,
                pin_set=cadre.pin_hash is not None,
                numbers=tuple(n.number for n in numbers if n.user_id == user.id),
                villages=tuple((r.id, r.name, r.phonecast_code or "") for r in village_rows if r.user_id == user.id),
                townships=tuple((r.id, r.name, r.phonecast_code or "") for r in township_rows if r.user_id == user.id),
            )
            for cadre, user in pairs
        ]

    # -- the PIN --------------------------------------------------------------------------------

    async def set_own_pin(self, principal: Principal, pin: str, confirm: str) -> None:
        """The user sets their own 6-digit PIN (their own page); a weak one is refused with the reason."""
        problem = None
        if not PIN_PATTERN.fullmatch(pin):
            problem = "喊话密码必须是6位数字"
        elif pin in _WEAK_PINS:
            problem = "喊话密码太简单（相同或连续的数字），请换一个"
        elif pin != confirm:
            problem = "两次输入的喊话密码不一致"
        if problem:
            raise InvalidInput(problem, code="phonecast.pin_weak", fields={"pin": problem})
        pin_hash = await self._passwords.hash(pin)
        async with self._sessions.begin() as session:
            cadre = await session.get(PhonecastCadre, principal.user_id)
            if cadre is None:
                raise PermissionDenied("您没有电话喊话权限", code="phonecast.forbidden")
            cadre.pin_hash, cadre.pin_set_at = pin_hash, self._clock.now()
            audit.record(
                session, principal.actor, at=cadre.pin_set_at, action="phonecast.pin_set", object_type="user",
                object_id=principal.user_id,
            )  # fmt: skip

    async def reset_pin(self, principal: Principal, user_id: int) -> None:
        """An admin clears a cadre's PIN (they set a new one on their page) and lifts the lockout."""
        principal.require_role("admin")
        async with self._sessions.begin() as session:
            cadre = await session.get(PhonecastCadre, user_id)
            if cadre is None:
                raise NotFound("该用户没有电话喊话权限", code="not_found")
            cadre.pin_hash, cadre.pin_set_at = None, None
            _address, name = limiter_keys("", user_id)
            await session.execute(
                delete(LoginThrottle).where(
                    or_(LoginThrottle.key == name, LoginThrottle.key.endswith(f"\x1f{name}", autoescape=True))
                )
            )
            audit.record(
                session, principal.actor, at=self._clock.now(), action="phonecast.pin_reset", object_type="user",
                object_id=user_id,
            )  # fmt: skip

    # -- 喊话编号 ---------------------------------------------------------------------------------

    async def set_code(self, principal: Principal, kind: str, area_id: int, code: str) -> None:
        principal.require_role("admin")
        model = AREA_MODELS.get(kind)
        if model is None:
            raise NotFound("对象不存在", code="not_found")
        code = code.strip()
        if not _CODE.fullmatch(code):
            message = f"喊话编号只能是1到{MAX_CODE_LENGTH}位数字"
            raise InvalidInput(message, code="phonecast.bad_code", fields={"phonecast_code": message})
        try:
            async with self._sessions.begin() as session:
                area = cast("Township | Village | Zone | None", await session.get(model, area_id))
                if area is None:
                    raise NotFound("对象不存在", code="not_found")
                before, area.phonecast_code = area.phonecast_code, code
                await session.flush()
                audit.record(
                    session, principal.actor, at=self._clock.now(), action="phonecast.code", object_type=kind,
                    object_id=area_id, detail={"from": before, "to": code},
                )  # fmt: skip
        except IntegrityError as exc:
            message = f"喊话编号 {code} 已被使用"
            raise Conflict(message, code="phonecast.code_taken", fields={"phonecast_code": message}) from exc

    # -- 喊话记录 and 事后审核 ----------------------------------------------------------------------

    async def list_records(self, principal: Principal, *, review_state: str | None = None) -> list[PhoneBroadcast]:
        principal.require_role(*APPROVER_ROLES, "staff", "leader")
        statement = select(PhoneBroadcast).order_by(PhoneBroadcast.created_at.desc(), PhoneBroadcast.id.desc())
        scope = principal.township_filter()
        if scope is not None:
            statement = statement.where(PhoneBroadcast.township_id.in_(scope))
        if review_state:
            statement = statement.where(PhoneBroadcast.review_state == review_state)
        async with self._sessions() as session:
            return list((await session.scalars(statement.limit(500))).all())

    async def after_states(self, records: Sequence[PhoneBroadcast]) -> dict[int, tuple[int, int, int]]:
        """Live calls' recordings afterwards (4G terminals, sound cards): record id → (that broadcast's as-run state,
        speakers that played it, speakers it was given to so far), from the as-run log."""
        wanted = {row.after_broadcast_id: row.id for row in records if row.after_broadcast_id is not None}
        if not wanted:
            return {}
        async with self._sessions() as session:
            states = dict(
                (await session.execute(select(Broadcast.id, Broadcast.state).where(Broadcast.id.in_(wanted)))).all()
            )
            speakers = (
                await session.execute(
                    select(BroadcastZone.broadcast_id, BroadcastSpeaker.state)
                    .join(BroadcastZone, BroadcastZone.id == BroadcastSpeaker.zone_run_id)
                    .where(BroadcastZone.broadcast_id.in_(wanted))
                )
            ).all()
        played: dict[int, int] = {}
        given: dict[int, int] = {}
        for broadcast_id, state in speakers:
            given[broadcast_id] = given.get(broadcast_id, 0) + 1
            played[broadcast_id] = played.get(broadcast_id, 0) + (state == RUN_SUCCESS)
        return {
            record_id: (states[broadcast_id], played.get(broadcast_id, 0), given.get(broadcast_id, 0))
            for broadcast_id, record_id in wanted.items()
            if broadcast_id in states
        }

    async def record(self, principal: Principal, record_id: int) -> PhoneBroadcast:
        principal.require_role(*APPROVER_ROLES, "staff", "leader")
        async with self._sessions() as session:
            row = await session.get(PhoneBroadcast, record_id)
        if row is None or not (principal.county_wide or (row.township_id in principal.township_ids)):
            raise NotFound("喊话记录不存在", code="not_found")
        return row

    async def recording_path(self, principal: Principal, record_id: int) -> Path:
        row = await self.record(principal, record_id)
        path = self.recordings_dir / (row.recording_file or "")
        if not row.recording_file or not path.is_file():
            raise NotFound("这条喊话没有保存录音", code="phonecast.no_recording")
        async with self._sessions.begin() as session:
            audit.record(
                session, principal.actor, at=self._clock.now(), action="phonecast.listen",
                object_type="phone_broadcast", object_id=record_id,
            )  # fmt: skip
        return path

    async def review(self, principal: Principal, record_id: int, *, flag: bool, note: str = "") -> PhoneBroadcast:
        """事后审核: mark reviewed, or flag with a note (flagged ones reach the admins' 待办)."""
        principal.require_role(*APPROVER_ROLES)
        note = note.strip()
        if flag and not note:
            message = "标记有问题时请写明原因"
            raise InvalidInput(message, code="phonecast.note_required", fields={"note": message})
        if len(note) > 1000:
            raise InvalidInput("说明不能超过1000字", fields={"note": "太长"})
        await self.record(principal, record_id)
        async with self._sessions.begin() as session:
            row = await session.get(PhoneBroadcast, record_id)
            assert row is not None
            row.review_state = "flagged" if flag else "reviewed"
            row.review_note = note or None
            row.reviewed_by, row.reviewed_at = principal.user_id, self._clock.now()
            audit.record(
                session, principal.actor, at=row.reviewed_at, action="phonecast.review",
                object_type="phone_broadcast", object_id=record_id, detail={"state": row.review_state, "note": note},
            )  # fmt: skip
        return await self.record(principal, record_id)

    async def flagged_count(self) -> int:
        async with self._sessions() as session:
            return int(
                await session.scalar(
                    select(func.count(PhoneBroadcast.id)).where(PhoneBroadcast.review_state == "flagged")
                )
                or 0
            )

    async def unreviewed_count(self, principal: Principal) -> int:
        statement = select(func.count(PhoneBroadcast.id)).where(
            PhoneBroadcast.review_state == "pending", PhoneBroadcast.status != "received"
        )
        scope = principal.township_filter()
        if scope is not None:
            statement = statement.where(PhoneBroadcast.township_id.in_(scope))
        async with self._sessions() as session:
            return int(await session.scalar(statement) or 0)
