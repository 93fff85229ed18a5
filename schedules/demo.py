"""The demo county's sample schedules (``cunxiang demo``): the approved sample notices, played in every village.

Each approved sample notice of a kind below gets the schedule such a notice
usually has (财务公开 three times a day, 党务公开 for a week, 文明新风 three
mornings a week, 便民服务 at noon for a month), targeting every village of
the demo township, created by ``demo.staff`` through the schedule service.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.service import principal_of
from schedules.service import ScheduleInput, ScheduleService
from storage.models import User, Village


def demo_shapes(today: date) -> dict[str, dict[str, Any]]:
    """The schedule each sample notice kind gets, as fields of :class:`ScheduleInput`."""
    return {
        "disclosure_finance": {"times": ("07:00", "12:00", "18:30")},
        "disclosure_party": {"times": ("07:30",), "end_date": today + timedelta(days=7)},
        "civility": {"kind": "weekly", "times": ("08:00",), "weekdays": (1, 3, 5)},
        "service": {"times": ("12:00",), "start_date": today, "end_date": today + timedelta(days=30)},
    }


async def load_demo_schedules(
    sessions: async_sessionmaker[AsyncSession],
    schedules: ScheduleService,
    *,
    township_id: int,
    notices: Mapping[str, int],
    today: date,
) -> int:
    """Schedule the approved sample ``notices`` (kind → notice id); returns how many schedules were made."""
    async with sessions() as session:
        staff_user = await session.scalar(select(User).where(User.username == "demo.staff"))
        villages = (await session.scalars(select(Village.id).where(Village.township_id == township_id))).all()
    if staff_user is None:
        return 0
    staff = principal_of(staff_user)
    everywhere = tuple(("village", village) for village in villages)
    scheduled = 0
    for kind, shape in demo_shapes(today).items():
        if kind in notices:
            plan = ScheduleInput(notice_id=notices[kind], targets=everywhere, **{"kind": "daily", **shape})
            await schedules.create(staff, plan)
            scheduled += 1
    return scheduled
