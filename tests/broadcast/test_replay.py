"""Replays (重播) after the service stops: what was cut or queued plays again once, from its start — unless
it must not — counted at RTP receivers on loopback, one per loudspeaker.

The dispatcher here is stopped and started in-process (what SIGTERM and the next start do); the
real processes killed with SIGKILL and SIGTERM are in tests/broadcast/test_restarts.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broadcast.asrun import AsRunFilter
from common.clock import ManualClock
from schedules.service import ScheduleInput
from server import Runtime, build_runtime
from settings import AudioSettings, BroadcastSettings, SchedulerSettings
from storage.models import (
    EMERGENCY_PRIORITY,
    RUN_CANCELLED,
    RUN_INTERRUPTED,
    RUN_MISSED,
    RUN_PLAYING,
    RUN_STOPPED_BEFORE_START,
    RUN_SUCCESS,
    RUN_WAITING,
    BroadcastZone,
    Notice,
)
from tests.support.broadcasting import (
    PRODUCTION_SPEECH,
    approved_notice,
    broadcasting_settings,
    build_place,
    make_principal,
    speaker_rows,
    wait_for_rows,
    zone_rows,
)
from tests.support.receivers import INTO_SPEECH, RtpReceiver, item_payloads

pytestmark = pytest.mark.slow

# About six seconds of speech after the chime: long enough to be cut part-way, past the shared beginning.
LONG = "各位村民请注意，今天下午三点在村委会召开村民代表会议，请准时参加。"
SHORT = "请大家相互转告。"


@pytest.fixture
async def live(tmp_path: Path, database_url: str) -> AsyncIterator[Runtime]:
    # The production rate and the chime: a cut is told from a whole play only past the beginning every item
    # shares (INTO_SPEECH), and LONG must still be playing there.
    settings = broadcasting_settings(
        tmp_path / "data",
        database_url,
        tts=PRODUCTION_SPEECH,
        audio=AudioSettings(default_repeats=1),
        broadcast=BroadcastSettings(lower_priority_wait_s=300, pending_poll_s=0.2, heartbeat_s=0.5),
        scheduler=SchedulerSettings(resync_s=3600, catch_up_grace_s=600),
    )
    runtime = build_runtime(settings, clock=ManualClock(datetime.now(UTC)))
    await runtime.broadcasting.dispatcher.start()
    try:
        yield runtime
    finally:
        await runtime.broadcasting.dispatcher.stop()
        await runtime.engine.dispose()


def payloads(runtime: Runtime, notice: Notice) -> tuple[str, ...]:
    assert notice.audio_keys is not None
    entry = runtime.speech.cache.get(notice.audio_keys["rtp"])
    assert entry is not None
    return item_payloads(entry.path)


async def test_a_stop_mid_item_replays_it_once_from_the_start_and_the_queued_one_once_emergencies_first(
    live: Runtime,
) -> None:
    dispatcher = live.broadcasting.dispatcher
    admin = await make_principal(live, "admin", "admin", county_wide=True, can_emergency=True)
    with RtpReceiver() as speaker_one, RtpReceiver() as speaker_two:
        place = await build_place(live, admin, "甲乡", [[("rtp", speaker_one.address)], [("rtp", speaker_two.address)]])
        one, two = place.zone_ids
        staff = await make_principal(live, "staff", "staff", township_ids=[place.township_id])
        approver = await make_principal(live, "approver", "approver", township_ids=[place.township_id])
        meeting = await approved_notice(live, staff, approver, township_id=place.township_id, body=LONG)
        reminder = await approved_notice(
            live, staff, approver, township_id=place.township_id, kind="service", title="提醒", body=SHORT
        )
        alert = await live.broadcasting.notices.create_emergency(
            admin, title="大风预警", body=LONG, township_id=place.township_id
        )
        await dispatcher.request(notice_id=meeting.id, zone_ids=[one], origin="manual", requested_by=None)
        await dispatcher.request(notice_id=alert.id, zone_ids=[two], origin="emergency", requested_by=None)
        await wait_for_rows(live, lambda rows: len(rows) == 2 and all(row.state == RUN_PLAYING for row in rows))
        await dispatcher.request(notice_id=reminder.id, zone_ids=[one], origin="manual", requested_by=None)
        await wait_for_rows(live, lambda rows: len(rows) == 3 and rows[2].state == RUN_WAITING)
        # Both zones on air, the reminder queued behind the meeting: then the service stops.
        await speaker_one.until(lambda receiver: len(receiver.packets) >= INTO_SPEECH)
        await speaker_two.until(lambda receiver: len(receiver.packets) >= INTO_SPEECH)
        await dispatcher.stop()

        by_notice = {row.notice_id: row for row in await zone_rows(live)}
        cut, queued, cut_alert = by_notice[meeting.id], by_notice[reminder.id], by_notice[alert.id]
        assert (cut.state, cut.error, cut.replay_pending) == (RUN_INTERRUPTED, "服务停止，播出中断", True)
        assert (queued.state, queued.replay_pending) == (RUN_STOPPED_BEFORE_START, True)
        assert queued.error == "服务停止时仍在排队，未开始"
        assert cut_alert.state == RUN_INTERRUPTED
        # What each speaker got before the stop is in the as-run log.
        (speaker,) = await speaker_rows(live, cut.id)
        assert speaker.state == RUN_INTERRUPTED and 0 < (speaker.packets_sent or 0) == len(speaker_one.packets)

        await dispatcher.start()  # the service is back, well within the grace
        assert await dispatcher.replay_pending() == 3
        rows = await wait_for_rows(
            live, lambda rows: len(rows) == 6 and all(row.state == RUN_SUCCESS for row in rows[3:]), timeout=90
        )
        replays = {row.replay_of: row for row in rows if row.replay_of is not None}
        assert set(replays) == {cut.id, queued.id, cut_alert.id}
        assert all(not row.replay_pending for row in rows)
        assert replays[cut_alert.id].priority == EMERGENCY_PRIORITY
        assert replays[cut.id].attempt == 1 and replays[cut.id].scheduled_at == cut.scheduled_at

        # Counted at the speakers: each cut item once cut, then once whole; the queued one once; nothing twice.
        assert speaker_one.plays(payloads(live, meeting)) == ["cut", "full"]
        assert speaker_one.plays(payloads(live, reminder)) == ["full"]
        assert speaker_two.plays(payloads(live, alert)) == ["cut", "full"]
        # The replay came before what had waited behind it.
        (_cut_run, whole_meeting) = speaker_one.runs_of(payloads(live, meeting))
        (whole_reminder,) = speaker_one.runs_of(payloads(live, reminder))
        assert whole_meeting.last_arrival_s <= whole_reminder.first_arrival_s

    asrun = await live.broadcasting.asrun.lines(admin, AsRunFilter())
    marked = {line.zone_run.id: line.as_json(live.settings.zone) for line in asrun}
    assert marked[replays[cut.id].id]["replay_label"] == "重播" and marked[replays[cut.id].id]["replay_of"] == cut.id
    assert marked[cut.id]["replay_label"] is None
    csv = await live.broadcasting.asrun.csv(admin, AsRunFilter())
    assert f"重播（重播记录号{cut.id}）" in csv


async def test_no_replay_after_an_archive_or_a_newer_play_of_the_notice_and_outside_the_grace_it_is_missed(
    live: Runtime,
) -> None:
    dispatcher = live.broadcasting.dispatcher
    clock = live.clock
    assert isinstance(clock, ManualClock)
    admin = await make_principal(live, "admin", "admin", county_wide=True)
    with RtpReceiver() as archived_speaker, RtpReceiver() as newer_speaker:
        place = await build_place(
            live, admin, "乙镇", [[("rtp", archived_speaker.address)], [("rtp", newer_speaker.address)]]
        )
        archived_zone, newer_zone = place.zone_ids
        staff = await make_principal(live, "staff", "staff", township_ids=[place.township_id])
        approver = await make_principal(live, "approver", "approver", township_ids=[place.township_id])
        to_archive = await approved_notice(live, staff, approver, township_id=place.township_id, body=LONG)
        repeated = await approved_notice(
            live, staff, approver, township_id=place.township_id, title="每日提醒", body=LONG
        )
        await dispatcher.request(notice_id=to_archive.id, zone_ids=[archived_zone], origin="manual", requested_by=None)
        await dispatcher.request(notice_id=repeated.id, zone_ids=[newer_zone], origin="manual", requested_by=None)
        await wait_for_rows(live, lambda rows: len(rows) == 2 and all(row.state == RUN_PLAYING for row in rows))
        await archived_speaker.until(lambda receiver: len(receiver.packets) >= INTO_SPEECH)
        await newer_speaker.until(lambda receiver: len(receiver.packets) >= INTO_SPEECH)
        await dispatcher.stop()
        first_rows = {row.notice_id: row for row in await zone_rows(live)}

        # While it is down: one notice archived (a cancel), the other's next slot claimed (a newer play of it).
        await live.broadcasting.notices.archive(staff, to_archive.id)
        schedule = await live.schedules.service.create(
            staff,
            ScheduleInput(
                notice_id=repeated.id,
                kind="once",
                once_at=clock.now() + timedelta(minutes=1),
                targets=(("zone", newer_zone),),
            ),
        )
        clock.advance(timedelta(minutes=1))
        assert await dispatcher.occurrence_due(
            schedule_id=schedule.id,
            notice_id=repeated.id,
            occurrence_at=clock.now(),
            zone_ids=[newer_zone],
            priority=2,
        )  # the dispatcher is down: the claimed slot waits, and is itself replayed at the start

        await dispatcher.start()
        assert await dispatcher.replay_pending() == 1
        rows = await wait_for_rows(
            live,
            lambda rows: any(row.replay_of is not None and row.state == RUN_SUCCESS for row in rows),
            timeout=60,
        )
        replays = {row.replay_of: row for row in rows if row.replay_of is not None}
        archived_replay = replays[first_rows[to_archive.id].id]
        assert (archived_replay.state, archived_replay.error) == (RUN_CANCELLED, "通知已归档，不再重播")
        superseded = replays[first_rows[repeated.id].id]
        newer_slot = next(row for row in rows if row.schedule_id == schedule.id and row.attempt == 0)
        assert superseded.state == RUN_CANCELLED
        assert superseded.error == f"本分区此后已有同一通知的播出（记录号{newer_slot.id}），不再重播"
        assert replays[newer_slot.id].state == RUN_SUCCESS  # the newer slot plays, once
        async with asyncio.timeout(30):
            await dispatcher.wait_until(dispatcher.idle)
        assert archived_speaker.plays(payloads(live, to_archive)) == ["cut"]
        assert newer_speaker.plays(payloads(live, repeated)) == ["cut", "full"]

        # Cut again, and back only after the grace (10 minutes): recorded 错过, with why, and not played.
        await dispatcher.request(notice_id=repeated.id, zone_ids=[newer_zone], origin="manual", requested_by=None)
        playing = await wait_for_rows(
            live, lambda rows: rows[-1].state == RUN_PLAYING and rows[-1].notice_id == repeated.id
        )
        await newer_speaker.until(
            lambda receiver: len(receiver.runs()) == 3 and len(receiver.runs()[-1].packets) >= INTO_SPEECH
        )
        await dispatcher.stop()
        clock.advance(timedelta(minutes=11))
        await dispatcher.start()
        assert await dispatcher.replay_pending() == 0
        late = playing[-1]
        async with live.sessions() as session:
            row = await session.get(BroadcastZone, late.id)
            assert row is not None and not row.replay_pending
        (missed,) = [row for row in await zone_rows(live) if row.replay_of == late.id]
        assert missed.state == RUN_MISSED
        assert missed.error == "服务停机约11分钟，超过补播时限（10分钟），未重播"
        async with asyncio.timeout(10):
            await dispatcher.wait_until(dispatcher.idle)
        assert newer_speaker.plays(payloads(live, repeated)) == ["cut", "full", "cut"]
