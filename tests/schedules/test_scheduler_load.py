"""The scheduler's plan is loaded in bounded partitions and shares what schedules have in common.

50,000 schedules once took the starting process from 64 MiB to 153 MiB (and, with the seeding in
the same process, to 321 MiB): every row materialised at once, then one rule object per schedule.
bench/scheduler_memory.py measures the whole process; these tests hold the loading's shape.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, update

from bench.scheduler_memory import seed
from common.clock import SystemClock
from schedules import scheduler as scheduler_module
from schedules.scheduler import Scheduler
from schedules.service import ScheduleService
from storage.db import create_engine, make_session_factory
from storage.models import Schedule, ScheduleTarget

ZONE = ZoneInfo("Asia/Shanghai")


class Nothing:
    async def occurrence_due(self, **_: Any) -> bool:
        return True

    async def occurrence_missed(self, **_: Any) -> bool:
        return True


async def test_the_plan_loaded_in_small_partitions_has_every_schedule_with_its_own_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'schedules.db'}"
    await seed(url, 200)  # schedule n: 07:mm, 12:mm, 18:mm with mm = (n - 1) % 60; target village 1
    engine = create_engine(url)
    sessions = make_session_factory(engine)
    async with sessions.begin() as session:
        # Every seventh schedule has a second target, the 100th is disabled.
        await session.execute(
            insert(ScheduleTarget),
            [{"schedule_id": n, "level": "zone", "target_id": 1} for n in range(7, 201, 7)],
        )
        await session.execute(update(Schedule).where(Schedule.id == 100).values(enabled=False))
    monkeypatch.setattr(scheduler_module, "_LOAD_BATCH", 9)  # many partitions, one ending mid-way
    clock = SystemClock()
    scheduler = Scheduler(sessions, clock, ZONE, Nothing(), ScheduleService(sessions, clock, ZONE), resync_s=3600)
    await scheduler.start()
    try:
        entries = scheduler._entries
        assert sorted(entries) == [n for n in range(1, 201) if n != 100]
        for n, entry in entries.items():
            expected = [("village", 1)] + ([("zone", 1)] if n % 7 == 0 else [])
            assert sorted(entry.targets) == expected, n
            assert [clock_time.minute for clock_time in entry.rule.times] == [(n - 1) % 60] * 3
        # Schedules with the same timing share one rule (a county repeats a few timings thousands of times).
        assert entries[1].rule is entries[61].rule and entries[1].rule is not entries[2].rule
        assert len({id(entry.rule) for entry in entries.values()}) == 60
        assert (await scheduler.health())["schedules"] == 199
    finally:
        await scheduler.stop()
        await engine.dispose()


@pytest.mark.slow  # two processes (seeding, then the measured start) on 20,000 schedules: several seconds
def test_starting_on_20000_schedules_grows_the_process_by_far_less_than_before() -> None:
    command = [sys.executable, "-m", "bench.scheduler_memory", "--schedules", "20000"]
    finished = subprocess.run(command, capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2])
    import json

    figures = json.loads(finished.stdout)["scheduler"]
    assert figures["schedules"] == 20_000 and figures["jobs"] == 1
    # Before: 64 → 153 MiB for 50,000 (1.8 KiB a schedule: 35 MiB for 20,000); now about 0.6 KiB a schedule.
    assert figures["peak_rss_mib"] - figures["rss_after_imports_mib"] < 20, figures
