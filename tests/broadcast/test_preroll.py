"""The pre-roll (issue 20, start on time): a scheduled item is claimed and prepared before its instant and
starts on it; a stop before the instant gives the slot back; an emergency, a cancel or an archive during the
pre-roll wins. What each loudspeaker got is counted at RTP receivers on loopback.

The scheduler and dispatcher run on a manual clock: the clock is set a moment before an occurrence and the
scheduler poked, so the pre-roll lasts that moment of real time (the release waits on the event loop's clock
for the rest), and a restart "ten minutes later" is the clock moved, not a wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broadcast.dispatcher import GIVEN_BACK_AFTER_DEATH, GIVEN_BACK_AT_STOP, PROVISIONAL_ATTEMPT
from common.clock import ManualClock
from schedules.service import ScheduleInput
from server import Runtime, build_runtime
from settings import BroadcastSettings, SchedulerSettings, Settings
from storage.models import (
    RUN_CANCELLED,
    RUN_MISSED,
    RUN_PREEMPTED_BEFORE_START,
    RUN_STOPPED_BEFORE_START,
    RUN_SUCCESS,
    RUN_WAITING,
    Broadcast,
    BroadcastSpeaker,
    Notice,
)
from tests.support.broadcasting import (
    approved_notice,
    broadcasting_settings,
    build_place,
    make_principal,
    speaker_rows,
    wait_for_rows,
    zone_rows,
)
from tests.support.receivers import RtpReceiver, item_payloads

pytestmark = pytest.mark.slow

# Long enough that the whole pre-roll (claim, rows, streams) fits in it on a loaded test machine, short enough
# that a test waits it out in real time.
PREROLL_S = 1.5
GRACE_S = 600.0


def preroll_settings(tmp_path: Path, database_url: str) -> Settings:
    return broadcasting_settings(
        tmp_path / "data",
        database_url,
        broadcast=BroadcastSettings(lower_priority_wait_s=300, pending_poll_s=0.2, preroll_s=PREROLL_S),
        scheduler=SchedulerSettings(resync_s=3600, catch_up_grace_s=GRACE_S),
    )


@pytest.fixture
def clock() -> ManualClock:
    # On a whole second, like the slots people schedule.
    return ManualClock(datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1))


@pytest.fixture
async def live(tmp_path: Path, database_url: str, clock: ManualClock) -> AsyncIterator[Runtime]:
    runtime = build_runtime(preroll_settings(tmp_path, database_url), clock=clock)
    await runtime.broadcasting.dispatcher.start()
    await runtime.schedules.scheduler.start()
    try:
        yield runtime
    finally:
        await runtime.schedules.scheduler.stop()
        await runtime.broadcasting.dispatcher.stop()
        await runtime.engine.dispose()


def payloads(runtime: Runtime, notice: Notice) -> tuple[str, ...]:
    assert notice.audio_keys is not None
    entry = runtime.speech.cache.get(notice.audio_keys["rtp"])
    assert entry is not None
    return item_payloads(entry.path)


async def schedule_once(runtime: Runtime, clock: ManualClock, notice: Notice, zone_id: int, at: datetime) -> int:
    admin = await make_principal(runtime, f"planner{notice.id}", "admin", county_wide=True)
    schedule = await runtime.schedules.service.create(
        admin, ScheduleInput(notice_id=notice.id, kind="once", once_at=at, targets=(("zone", zone_id),))
    )
    return int(schedule.id)


async def fire_ahead(runtime: Runtime, clock: ManualClock, at: datetime, ahead_s: float) -> None:
    """The clock to ``ahead_s`` before ``at`` (within the pre-roll): the scheduler hands the slot over now."""
    clock.set(at - timedelta(seconds=ahead_s))
    await runtime.schedules.scheduler.poke()
    await wait_for_rows(runtime, lambda rows: any(row.occurrence_at is not None for row in rows))


async def prepared(runtime: Runtime, zone_run_id: int, count: int) -> list[BroadcastSpeaker]:
    """The speakers' rows of a pre-rolled play, written at once (well within the pre-roll)."""
    for _ in range(50):
        speakers = await speaker_rows(runtime, zone_run_id)
        if len(speakers) >= count:
            return speakers
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} speaker rows not written within a second")


async def a_place(runtime: Runtime, receivers: list[RtpReceiver]) -> tuple[int, Notice, Notice]:
    admin = await make_principal(runtime, "admin", "admin", county_wide=True, can_emergency=True)
    place = await build_place(runtime, admin, "甲乡", [[("rtp", receiver.address) for receiver in receivers]])
    staff = await make_principal(runtime, "staff", "staff", township_ids=[place.township_id])
    approver = await make_principal(runtime, "approver", "approver", township_ids=[place.township_id])
    notice = await approved_notice(runtime, staff, approver, township_id=place.township_id, title="整点报时")
    alert = await runtime.broadcasting.notices.create_emergency(
        admin, title="大风预警", body="大风预警，请注意安全。", township_id=place.township_id
    )
    return place.zone_ids[0], notice, alert


async def test_a_slot_is_claimed_and_prepared_before_its_instant_and_starts_on_it_on_every_speaker(
    live: Runtime, clock: ManualClock
) -> None:
    with RtpReceiver() as one, RtpReceiver() as two, RtpReceiver() as three:
        zone, notice, _alert = await a_place(live, [one, two, three])
        at = clock.now() + timedelta(minutes=5)
        await schedule_once(live, clock, notice, zone, at)
        await fire_ahead(live, clock, at, 1.0)
        # Claimed ahead: provisional rows, every speaker's row waiting, nothing sent.
        (row,) = await zone_rows(live)
        assert (row.attempt, row.state, row.started_at) == (PROVISIONAL_ATTEMPT, RUN_WAITING, None)
        speakers = await prepared(live, row.id, 3)
        assert [speaker.state for speaker in speakers] == [RUN_WAITING] * 3
        assert one.packets == two.packets == three.packets == []
        rows = await wait_for_rows(live, lambda rows: rows[0].state == RUN_SUCCESS)
        for receiver in (one, two, three):
            assert receiver.plays(payloads(live, notice)) == ["full"]
            assert receiver.packets[0].marker
        (row,) = rows
        # The as-run log says it started on the instant itself, on every speaker.
        assert row.started_at == at and row.attempt == 0
        assert [speaker.started_at for speaker in await speaker_rows(live, row.id)] == [at] * 3
        async with live.sessions() as session:
            broadcast = await session.get(Broadcast, row.broadcast_id)
            assert broadcast is not None and broadcast.started_at == at and broadcast.created_at < at


async def test_a_stop_before_the_instant_gives_the_slot_back_and_the_restart_plays_it_within_the_grace(
    live: Runtime, clock: ManualClock
) -> None:
    dispatcher, scheduler = live.broadcasting.dispatcher, live.schedules.scheduler
    with RtpReceiver() as speaker:
        zone, notice, _alert = await a_place(live, [speaker])
        at = clock.now() + timedelta(minutes=5)
        await schedule_once(live, clock, notice, zone, at)
        await fire_ahead(live, clock, at, 1.2)
        await prepared(live, (await zone_rows(live))[0].id, 1)
        # The service stops (as SIGTERM stops it: the scheduler, then the dispatcher) before the instant.
        await scheduler.stop()
        await dispatcher.stop()
        (given_back,) = await zone_rows(live)
        assert given_back.attempt < PROVISIONAL_ATTEMPT
        assert (given_back.state, given_back.error) == (RUN_STOPPED_BEFORE_START, GIVEN_BACK_AT_STOP)
        assert not given_back.replay_pending
        assert [row.state for row in await speaker_rows(live, given_back.id)] == [RUN_STOPPED_BEFORE_START]
        await asyncio.sleep(1.5)  # past the instant the stopped pre-roll would have released it
        assert speaker.packets == []

        clock.set(at + timedelta(minutes=3))  # back within the grace: the slot plays once, late, as any missed slot
        await dispatcher.start()
        await scheduler.start()
        rows = await wait_for_rows(live, lambda rows: len(rows) == 2 and rows[1].state == RUN_SUCCESS)
        assert (rows[1].attempt, rows[1].occurrence_at) == (0, at)
        assert await dispatcher.replay_pending() == 0
        await speaker.until(lambda receiver: receiver.plays(payloads(live, notice)) == ["full"])


async def test_a_slot_given_back_is_recorded_missed_when_the_restart_comes_after_the_grace(
    live: Runtime, clock: ManualClock
) -> None:
    dispatcher, scheduler = live.broadcasting.dispatcher, live.schedules.scheduler
    with RtpReceiver() as speaker:
        zone, notice, _alert = await a_place(live, [speaker])
        at = clock.now() + timedelta(minutes=5)
        await schedule_once(live, clock, notice, zone, at)
        await fire_ahead(live, clock, at, 1.2)
        await scheduler.stop()
        await dispatcher.stop()
        clock.set(at + timedelta(seconds=GRACE_S + 60))
        await dispatcher.start()
        await scheduler.start()
        rows = await wait_for_rows(live, lambda rows: len(rows) == 2)
        assert [row.state for row in rows] == [RUN_STOPPED_BEFORE_START, RUN_MISSED]
        assert rows[1].attempt == 0 and speaker.packets == []


async def test_a_provisional_claim_left_by_a_dead_process_is_given_back_by_the_next_start(
    tmp_path: Path, database_url: str, live: Runtime, clock: ManualClock
) -> None:
    with RtpReceiver() as speaker:
        zone, notice, _alert = await a_place(live, [speaker])
        at = clock.now() + timedelta(minutes=5)
        await schedule_once(live, clock, notice, zone, at)
        # Handed over as early as the pre-roll allows: the claim stays provisional for about a second.
        await fire_ahead(live, clock, at, PREROLL_S)
        # The next worker starts while the claim is provisional: what it finds is what a kill -9 leaves (the
        # first worker, in this process, is then stopped before the instant: it writes nothing more).
        successor = build_runtime(preroll_settings(tmp_path, database_url), clock=clock)
        await successor.broadcasting.dispatcher.start()
        await live.schedules.scheduler.stop()
        await live.broadcasting.dispatcher.stop()
        try:
            (row,) = await zone_rows(live)
            assert row.attempt < PROVISIONAL_ATTEMPT
            assert (row.state, row.error, row.replay_pending) == (
                RUN_STOPPED_BEFORE_START,
                GIVEN_BACK_AFTER_DEATH,
                False,
            )
            # Catch-up finds the slot unclaimed: it plays once.
            clock.set(at + timedelta(seconds=30))
            await successor.schedules.scheduler.start()
            rows = await wait_for_rows(live, lambda rows: len(rows) == 2 and rows[1].state == RUN_SUCCESS)
            assert (rows[1].attempt, rows[1].occurrence_at) == (0, at)
            await speaker.until(lambda receiver: receiver.plays(payloads(live, notice)) == ["full"])
        finally:
            await successor.schedules.scheduler.stop()
            await successor.broadcasting.dispatcher.stop()
            await successor.engine.dispose()


async def test_an_emergency_during_the_pre_roll_wins_and_the_slot_plays_after_it(
    live: Runtime, clock: ManualClock
) -> None:
    dispatcher = live.broadcasting.dispatcher
    with RtpReceiver() as speaker:
        zone, notice, alert = await a_place(live, [speaker])
        at = clock.now() + timedelta(minutes=5)
        await schedule_once(live, clock, notice, zone, at)
        await fire_ahead(live, clock, at, 1.2)
        await dispatcher.request(notice_id=alert.id, zone_ids=[zone], origin="emergency", requested_by=None)
        rows = await wait_for_rows(
            live, lambda rows: len(rows) == 3 and all(row.state == RUN_SUCCESS for row in rows[1:]), timeout=60
        )
        by_notice: dict[int | None, list[int]] = {}
        for row in rows:
            by_notice.setdefault(row.notice_id, []).append(row.state)
        # The slot: cut before anyone heard it, then played once after the emergency.
        assert by_notice[notice.id] == [RUN_PREEMPTED_BEFORE_START, RUN_SUCCESS]
        assert [row.attempt for row in rows if row.notice_id == notice.id] == [0, 1]
        assert speaker.plays(payloads(live, alert)) == ["full"]
        assert speaker.plays(payloads(live, notice)) == ["full"]
        first_alert = min(p.arrived_ns for p in speaker.packets if p.payload in set(payloads(live, alert)))
        first_slot = min(p.arrived_ns for p in speaker.packets if p.payload == payloads(live, notice)[-1])
        assert first_alert < first_slot


async def test_a_cancel_during_the_pre_roll_wins(live: Runtime, clock: ManualClock) -> None:
    dispatcher = live.broadcasting.dispatcher
    with RtpReceiver() as speaker:
        zone, notice, _alert = await a_place(live, [speaker])
        at = clock.now() + timedelta(minutes=5)
        await schedule_once(live, clock, notice, zone, at)
        await fire_ahead(live, clock, at, 1.2)
        (row,) = await zone_rows(live)
        await dispatcher.cancel(row.broadcast_id, "预警已解除")
        (row,) = await wait_for_rows(live, lambda rows: rows[0].state == RUN_CANCELLED)
        assert (row.error, row.attempt) == ("预警已解除", 0)
        await asyncio.sleep(1.5)  # past the instant
        assert speaker.packets == []
        assert [speaker.state for speaker in await speaker_rows(live, row.id)] == [RUN_CANCELLED]


async def test_an_archive_during_the_pre_roll_wins(live: Runtime, clock: ManualClock) -> None:
    with RtpReceiver() as speaker:
        zone, notice, _alert = await a_place(live, [speaker])
        at = clock.now() + timedelta(minutes=5)
        await schedule_once(live, clock, notice, zone, at)
        await fire_ahead(live, clock, at, 1.2)
        admin = await make_principal(live, "archivist", "admin", county_wide=True)
        await live.broadcasting.notices.archive(admin, notice.id)
        (row,) = await wait_for_rows(live, lambda rows: rows[0].state == RUN_CANCELLED)
        assert (row.error, row.attempt) == ("通知在播出前已归档，未播出", 0)
        await asyncio.sleep(1.5)
        assert speaker.packets == []
