"""The scheduler hands occurrences over ahead of their instant (the dispatcher's pre-roll), and never falls asleep.

A handler that takes long to claim one slot (the clock moves past the next slot meanwhile) once left the
next wake-up armed for a moment already come while the running one ended: APScheduler skipped it
("maximum number of running instances") and the plan slept until the next change.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bench.scheduler_memory import seed
from common.clock import ManualClock
from schedules.scheduler import Scheduler
from schedules.service import ScheduleService
from storage.db import create_engine, make_session_factory

# A database migrated and seeded, a scheduler started and stopped: seconds.
pytestmark = pytest.mark.slow

ZONE = ZoneInfo("Asia/Shanghai")


class Recorder:
    """Records each hand-over with the clock's reading then; the first one takes a minute of the clock."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.handed: list[tuple[datetime, datetime]] = []
        self.changed = asyncio.Event()

    async def occurrence_due(self, *, occurrence_at: datetime, **_: Any) -> bool:
        self.handed.append((occurrence_at, self.clock.now()))
        if len(self.handed) == 1:
            self.clock.advance(timedelta(seconds=61))  # past the next slot (07:01) while claiming this one
        self.changed.set()
        return True

    async def occurrence_missed(self, **_: Any) -> bool:
        return True


async def test_slots_are_handed_over_the_lead_early_and_one_falling_due_meanwhile_is_not_lost(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'schedules.db'}"
    await seed(url, 3)  # daily at 07:00, 07:01 and 07:02 Shanghai time (and at 12 and 18)
    engine = create_engine(url)
    sessions = make_session_factory(engine)
    seven = datetime(2026, 11, 25, 7, 0, tzinfo=ZONE)
    clock = ManualClock(seven - timedelta(minutes=5))
    handler = Recorder(clock)
    scheduler = Scheduler(
        sessions, clock, ZONE, handler, ScheduleService(sessions, clock, ZONE), resync_s=3600, lead_s=2.0
    )
    await scheduler.start()
    try:
        clock.set(seven - timedelta(seconds=3))
        await scheduler.poke()
        await asyncio.sleep(0.3)
        assert handler.handed == []  # three seconds ahead: not yet
        clock.set(seven - timedelta(seconds=1.5))
        await scheduler.poke()
        async with asyncio.timeout(10):
            while len(handler.handed) < 2:
                handler.changed.clear()
                await handler.changed.wait()
        first, second = handler.handed[:2]
        assert first == (seven.astimezone(first[0].tzinfo), seven - timedelta(seconds=1.5))  # handed over ahead
        assert second[0] == seven + timedelta(minutes=1)  # fell due while the first was claimed: not lost
    finally:
        await scheduler.stop()
        await engine.dispose()
