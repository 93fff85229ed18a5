"""A real `cunxiang serve` killed (SIGKILL) mid-broadcast, then started again: a missed slot plays once, none twice."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path

import pytest
from sqlalchemy import select

from schedules.service import ScheduleInput
from server import build_runtime
from settings import TtsSettings
from storage.models import RUN_INTERRUPTED, RUN_SUCCESS, BroadcastZone
from tests.conftest import make_settings
from tests.support.broadcasting import approved_notice, make_principal
from tests.support.cli import environment, run, serving

pytestmark = pytest.mark.slow


async def _rows(settings_dir: Path, url: str) -> list[BroadcastZone]:
    runtime = build_runtime(make_settings(settings_dir, url))
    try:
        async with runtime.sessions() as session:
            return list((await session.scalars(select(BroadcastZone).order_by(BroadcastZone.id))).all())
    finally:
        await runtime.engine.dispose()


def _wait(predicate: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"not reached within {seconds} s")


def test_a_worker_killed_mid_broadcast_plays_the_missed_slot_once_after_restart_and_nothing_twice(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    env = environment(data, CUNXIANG_TTS_ENGINES="espeak")
    assert run(["init"], env).returncode == 0
    url = f"sqlite+aiosqlite:///{(data / 'cunxiang.db').resolve()}"
    settings = make_settings(data, url, tts=TtsSettings(engines=("espeak",)))
    now = datetime.now(UTC)
    first_slot = now + timedelta(seconds=12)
    second_slot = now + timedelta(seconds=24)

    async def prepare() -> None:
        runtime = build_runtime(settings)
        try:
            admin = await make_principal(runtime, "kill-admin", "admin", county_wide=True)
            county = await runtime.areas.create_county(admin, name="测试县")
            township = await runtime.areas.create_township(
                admin, county_id=county.id, name="甲乡", quiet_start=dt_time(0, 0), quiet_end=dt_time(0, 0)
            )
            village = await runtime.areas.create_village(admin, township_id=township.id, name="一村")
            zone = await runtime.areas.create_zone(admin, village_id=village.id, name="广场")
            await runtime.areas.create_speaker(
                admin, zone_id=zone.id, name="广播室", transport="sink", address="file:room"
            )
            staff = await make_principal(runtime, "kill-staff", "staff", township_ids=[township.id])
            approver = await make_principal(runtime, "kill-approver", "approver", township_ids=[township.id])
            # Long enough (~15 s) to still be playing when the worker is killed.
            notice = await approved_notice(
                runtime, staff, approver, township_id=township.id, body="各位村民请注意，今天下午村委会开会。" * 4
            )
            for slot in (first_slot, second_slot):
                await runtime.schedules.service.create(
                    staff, ScheduleInput(notice_id=notice.id, kind="once", once_at=slot, targets=(("zone", zone.id),))
                )
        finally:
            await runtime.engine.dispose()

    asyncio.run(prepare())
    with serving(env) as service:
        service.wait_until(lambda health: health["components"]["worker"]["role"] == "active")
        _wait(lambda: any(row.state == 2 for row in asyncio.run(_rows(data, url))), 40)
        os.killpg(service.process.pid, signal.SIGKILL)  # mid-broadcast, no clean shutdown
        service.process.wait()
    # Down while the second slot passes; back within the 10-minute grace.
    _wait(lambda: datetime.now(UTC) > second_slot + timedelta(seconds=2), 60)
    with serving(env) as service:
        service.wait_until(lambda health: health["components"]["worker"]["role"] == "active")
        _wait(lambda: any(row.state == RUN_SUCCESS for row in asyncio.run(_rows(data, url))), 60)
        rows = asyncio.run(_rows(data, url))
    assert len(rows) == 2, [(row.occurrence_at, row.state) for row in rows]
    first, second = sorted(rows, key=lambda row: row.occurrence_at or now)
    assert first.state == RUN_INTERRUPTED and first.error == "服务重启，播出中断"
    assert second.state == RUN_SUCCESS
    # A third start finds both rows and adds none.
    with serving(env) as service:
        service.wait_until(lambda health: health["components"]["scheduler"]["status"] == "ok")
        time.sleep(1)
    assert len(asyncio.run(_rows(data, url))) == 2
