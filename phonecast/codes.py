"""喊话编号: the short digit code of each township, village and zone, chosen on the phone's keypad.

Unique per kind (a unique index on each table). Migration 0012 numbered the areas that existed; an area made
since gets the next free number the first time a code is needed (the line asks for targets, a page shows
codes), and an admin may change any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Township, Village, Zone

AreaModel = type[Township] | type[Village] | type[Zone]
# Two digits for a township, three for a village, four for a zone (as migration 0012 numbered them).
CODE_WIDTHS: dict[AreaModel, int] = {Township: 2, Village: 3, Zone: 4}
MAX_CODE_LENGTH = 8


async def _assign(session: AsyncSession, model: AreaModel, width: int) -> int:
    statement = select(model).where(model.phonecast_code.is_(None)).order_by(model.id)
    missing = cast("Sequence[Township | Village | Zone]", (await session.scalars(statement)).all())
    if not missing:
        return 0
    taken = {code for code in (await session.scalars(select(model.phonecast_code))).all() if code}
    number = max((int(code) for code in taken if code.isdigit()), default=0)
    for area in missing:
        number += 1
        while f"{number:0{width}d}" in taken:
            number += 1
        area.phonecast_code = f"{number:0{width}d}"
    return len(missing)


async def ensure_codes(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Give every area without a 喊话编号 the next free one; how many were given (another process may race: retried)."""
    for _attempt in range(3):
        try:
            async with sessions.begin() as session:
                given = 0
                for model, width in CODE_WIDTHS.items():
                    given += await _assign(session, model, width)
                return given
        except IntegrityError:
            continue
    return 0
