"""Helpers for the 手机喊话 desk tests: a cadre with the permission, a recording to speak, the records."""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

from sqlalchemy import select

from accounts.principal import Principal
from hotline.phonecast import Cadre
from server import Runtime
from storage.models import AuditEntry, PhoneBroadcast, User, Village
from tests.support.broadcasting import make_principal, principal


def tone_wav(path: Path, seconds: float = 1.5, *, frequency: float = 440.0, rate: int = 8000) -> Path:
    """What a caller says, as the line records it: 8 kHz mono 16-bit (a tone is enough to follow it through)."""
    frames = int(seconds * rate)
    samples = (int(8000 * math.sin(2 * math.pi * frequency * n / rate)) for n in range(frames))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", sample) for sample in samples))
    return path


async def make_cadre(
    runtime: Runtime,
    admin: Principal,
    username: str,
    number: str,
    *,
    villages: list[int] | None = None,
    townships: list[int] | None = None,
    pin: str | None = "258036",
    can_emergency: bool = False,
) -> Cadre:
    """A staff user granted 可电话喊话 over ``villages``/``townships`` with ``number`` registered and ``pin`` set."""
    async with runtime.sessions() as session:
        village_townships = (
            await session.scalars(select(Village.township_id).where(Village.id.in_(villages or [])))
        ).all()
    home = sorted({*village_townships, *(townships or [])})
    user = await make_principal(runtime, username, "staff", township_ids=home, can_emergency=can_emergency)
    entry = await runtime.phonecast.admin.grant(
        admin, user.user_id, village_ids=villages or [], township_ids=townships or [], numbers=[number]
    )
    if pin is not None:
        await runtime.phonecast.admin.set_own_pin(user, pin, pin)
    return Cadre(user_id=entry.user_id, name=entry.name)


async def record_of(runtime: Runtime, record_id: int) -> PhoneBroadcast:
    async with runtime.sessions() as session:
        row = await session.get(PhoneBroadcast, record_id)
        assert row is not None
        return row


async def audit_actions(runtime: Runtime, prefix: str = "phonecast.") -> list[str]:
    async with runtime.sessions() as session:
        statement = select(AuditEntry.action).where(AuditEntry.action.startswith(prefix)).order_by(AuditEntry.id)
        return list((await session.scalars(statement)).all())


async def principal_of_cadre(runtime: Runtime, cadre: Cadre) -> Principal:
    async with runtime.sessions() as session:
        user = await session.get(User, cadre.user_id)
        assert user is not None
        return await principal(runtime, user.username)
