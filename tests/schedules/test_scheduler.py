"""The scheduler with a controllable clock: Shanghai wall-clock time, changes without restart, catch-up once."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from accounts.principal import Principal
from broadcast.notices import NoticeInput
from common.clock import ManualClock
from schedules.service import ScheduleInput
from server import Runtime, build_runtime
from storage.models import RUN_CANCELLED, RUN_MISSED, RUN_SUCCESS
from tests.support.broadcasting import (
    Place,
    approved_notice,
    broadcasting_settings,
    build_place,
    count_zone_rows,
    make_principal,
    shanghai,
    wait_for_rows,
)

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def server_in_utc() -> Iterator[None]:
    """The process runs in UTC; schedules must still fire at Shanghai wall-clock times."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(shanghai("2026-11-25T06:58:00"))


@pytest.fixture
async def live(tmp_path: Path, database_url: str, clock: ManualClock) -> AsyncIterator[Runtime]:
    runtime = build_runtime(broadcasting_settings(tmp_path / "data", database_url), clock=clock)
    try:
        yield runtime
    finally:
        await runtime.schedules.scheduler.stop()
        await runtime.broadcasting.dispatcher.stop()
        await runtime.engine.dispose()


async def _place(runtime: Runtime, tmp_path: Path) -> tuple[Place, Principal, Principal]:
    admin = await make_principal(runtime, "admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "甲乡", [[("sink", "file:square")]])
    staff = await make_principal(runtime, "staff", "staff", township_ids=[place.township_id])
    approver = await make_principal(runtime, "approver", "approver", township_ids=[place.township_id])
    return place, staff, approver


async def test_a_daily_slot_fires_at_seven_shanghai_time_while_the_process_runs_in_utc(
    live: Runtime, clock: ManualClock, tmp_path: Path
) -> None:
    place, staff, approver = await _place(live, tmp_path)
    notice = await approved_notice(live, staff, approver, township_id=place.township_id)
    await live.broadcasting.dispatcher.start()
    await live.schedules.scheduler.start()
    schedule = await live.schedules.service.create(
        staff,
        ScheduleInput(notice_id=notice.id, kind="daily", times=("07:00",), targets=(("zone", place.zone_ids[0]),)),
    )
    health = await live.schedules.scheduler.health()
    assert health["jobs"] == 1
    assert health["next_fire"].startswith("2026-11-25T07:00:00+08:00")
    assert await count_zone_rows(live) == 0

    clock.advance(timedelta(minutes=2, seconds=1))
    await live.schedules.scheduler.poke()
    rows = await wait_for_rows(live, lambda rows: rows and rows[0].state == RUN_SUCCESS, schedule_id=schedule.id)

    assert len(rows) == 1
    assert rows[0].occurrence_at is not None
    assert rows[0].occurrence_at.astimezone(live.settings.zone).strftime("%H:%M") == "07:00"
    assert rows[0].occurrence_at.strftime("%H:%M") == "23:00"  # UTC, the day before
    assert (tmp_path / "data" / "sink" / "square.wav").exists()
    after = await live.schedules.scheduler.health()
    assert after["next_fire"].startswith("2026-11-26T07:00:00+08:00")
    # What the county reports upward: this village played one 村务公开 notice in November.
    coverage = await live.broadcasting.asrun.coverage(
        staff,
        since=date(2026, 11, 1),
        until=date(2026, 11, 30),
    )
    row = next(row for row in coverage if row["village_id"] == place.village_id)
    assert (row["month"], row["disclosure_village"], row["disclosure_village_plays"], row["total"]) == (
        "2026-11",
        1,
        1,
        1,
    )


async def test_the_week_ahead_of_a_zone_marks_two_items_at_the_same_time_as_conflicting(
    live: Runtime, tmp_path: Path
) -> None:
    place, staff, approver = await _place(live, tmp_path)
    first = await approved_notice(live, staff, approver, township_id=place.township_id)
    second = await approved_notice(
        live,
        staff,
        approver,
        township_id=place.township_id,
        kind="civility",
        title="移风易俗",
    )
    for notice, times in ((first, ("07:00",)), (second, ("07:00", "12:00"))):
        await live.schedules.service.create(
            staff,
            ScheduleInput(notice_id=notice.id, kind="daily", times=times, targets=(("zone", place.zone_ids[0]),)),
        )
    _zone, _village, _township, items = await live.schedules.service.week_ahead(
        staff,
        place.zone_ids[0],
    )
    assert len(items) == 7 * 3
    seven = [item for item in items if item.at.astimezone(live.settings.zone).hour == 7]
    noon = [item for item in items if item.at.astimezone(live.settings.zone).hour == 12]
    assert all(item.conflicts_with for item in seven)
    assert not any(item.conflicts_with for item in noon)
    # At 07:00 the disclosure (priority 3) is listed before the civility item (5): it plays first.
    assert [item.priority for item in seven[:2]] == [3, 5]


async def test_a_schedule_added_while_running_fires_without_a_restart(
    live: Runtime, clock: ManualClock, tmp_path: Path
) -> None:
    place, staff, approver = await _place(live, tmp_path)
    notice = await approved_notice(live, staff, approver, township_id=place.township_id)
    await live.broadcasting.dispatcher.start()
    await live.schedules.scheduler.start()
    assert (await live.schedules.scheduler.health())["next_fire"] is None

    schedule = await live.schedules.service.create(
        staff,
        ScheduleInput(
            notice_id=notice.id,
            kind="once",
            once_at=shanghai("2026-11-25T07:30:00"),
            targets=(("village", place.village_id),),
        ),
    )
    clock.set(shanghai("2026-11-25T07:30:05"))
    await live.schedules.scheduler.poke()
    rows = await wait_for_rows(live, lambda rows: rows and rows[0].state == RUN_SUCCESS, schedule_id=schedule.id)
    assert [row.zone_id for row in rows] == list(place.zone_ids)


async def test_after_a_restart_a_slot_missed_within_grace_plays_once_and_an_older_one_is_recorded_missed(
    live: Runtime, clock: ManualClock, tmp_path: Path
) -> None:
    place, staff, approver = await _place(live, tmp_path)
    notice = await approved_notice(live, staff, approver, township_id=place.township_id)
    await live.schedules.service.create(
        staff,
        ScheduleInput(
            notice_id=notice.id, kind="daily", times=("07:00", "07:20"), targets=(("zone", place.zone_ids[0]),)
        ),
    )
    # The worker was down from 06:58 to 07:25: 07:00 is 25 minutes late (missed), 07:20 five (played).
    clock.set(shanghai("2026-11-25T07:25:00"))
    zone = live.settings.zone
    for _start in range(2):
        await live.broadcasting.dispatcher.start()
        await live.schedules.scheduler.start()
        rows = await wait_for_rows(
            live, lambda rows: len(rows) == 2 and all(row.state in (RUN_SUCCESS, RUN_MISSED) for row in rows)
        )
        await live.schedules.scheduler.stop()
        await live.broadcasting.dispatcher.stop()
        by_time = {row.occurrence_at.astimezone(zone).strftime("%H:%M"): row for row in rows if row.occurrence_at}
        assert by_time["07:00"].state == RUN_MISSED
        assert by_time["07:20"].state == RUN_SUCCESS
        # The second start finds both rows and adds none: nothing plays twice.
        assert await count_zone_rows(live) == 2


async def test_a_slot_of_an_edited_notice_is_recorded_cancelled_and_an_archived_notice_stops_its_schedules(
    live: Runtime, clock: ManualClock, tmp_path: Path
) -> None:
    place, staff, approver = await _place(live, tmp_path)
    edited = await approved_notice(live, staff, approver, township_id=place.township_id)
    archived = await approved_notice(live, staff, approver, township_id=place.township_id)
    await live.broadcasting.dispatcher.start()
    await live.schedules.scheduler.start()
    schedules = live.schedules.service
    made = {}
    for notice in (edited, archived):
        made[notice.id] = await schedules.create(
            staff,
            ScheduleInput(notice_id=notice.id, kind="daily", times=("07:00",), targets=(("zone", place.zone_ids[0]),)),
        )
    notices = live.broadcasting.notices
    await notices.update(
        staff,
        edited.id,
        NoticeInput(kind=edited.kind, title=edited.title, body="改过的内容。", township_id=place.township_id),
    )
    await notices.archive(staff, archived.id)
    stopped = await schedules.get(staff, made[archived.id].id)
    assert not stopped.enabled, "archiving a notice stops its schedules"
    clock.advance(timedelta(minutes=2, seconds=1))
    await live.schedules.scheduler.poke()
    rows = await wait_for_rows(live, lambda rows: len(rows) >= 1)
    await asyncio.sleep(0.3)  # time for a wrongly planned slot of the archived notice to be recorded too
    rows = await wait_for_rows(live, lambda rows: len(rows) >= 1)
    by_notice = {row.notice_id: row for row in rows}
    assert by_notice[edited.id].state == RUN_CANCELLED and "未通过审核" in (by_notice[edited.id].error or "")
    # The archived notice's schedule was stopped at once (re-planned): its slot is not even taken up.
    assert archived.id not in by_notice
    assert not (tmp_path / "data" / "sink" / "square.wav").exists()  # nothing reached the speaker
