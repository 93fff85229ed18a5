"""The dispatcher: one item per zone; lower priority waits, then is skipped; higher preempts, the cut item requeued."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from server import Runtime, build_runtime
from settings import BroadcastSettings
from storage.models import (
    RUN_CANCELLED,
    RUN_INTERRUPTED,
    RUN_PLAYING,
    RUN_PREEMPTED_BEFORE_START,
    RUN_SKIPPED,
    RUN_SUCCESS,
    RUN_WAITING,
    Notice,
)
from tests.support.broadcasting import (
    approved_notice,
    broadcasting_settings,
    build_place,
    make_principal,
    speaker_rows,
    wait_for_rows,
)
from tests.support.receivers import RtpReceiver, item_payloads
from tts.audio import Profile
from tts.cache import KeepSet

pytestmark = pytest.mark.slow

LONG = "各位村民请注意，今天下午三点在村委会召开村民代表会议。" * 3


@pytest.fixture
def wait_limit() -> float:
    return 1.0


@pytest.fixture
def requeue() -> bool:
    return True


@pytest.fixture
async def live(tmp_path: Path, database_url: str, wait_limit: float, requeue: bool) -> AsyncIterator[Runtime]:
    settings = broadcasting_settings(
        tmp_path / "data",
        database_url,
        broadcast=BroadcastSettings(lower_priority_wait_s=wait_limit, pending_poll_s=0.2, requeue_interrupted=requeue),
    )
    runtime = build_runtime(settings)
    await runtime.broadcasting.dispatcher.start()
    try:
        yield runtime
    finally:
        await runtime.broadcasting.dispatcher.stop()
        await runtime.engine.dispose()


async def test_a_lower_priority_item_waits_for_the_zone_and_is_skipped_after_the_wait_limit(live: Runtime) -> None:
    admin = await make_principal(live, "admin", "admin", county_wide=True)
    place = await build_place(live, admin, "甲乡", [[("sink", "file:a"), ("sink", "file:b")]])
    staff = await make_principal(live, "staff", "staff", township_ids=[place.township_id])
    approver = await make_principal(live, "approver", "approver", township_ids=[place.township_id])
    disclosure = await approved_notice(live, staff, approver, township_id=place.township_id, body=LONG)
    civility = await approved_notice(
        live, staff, approver, township_id=place.township_id, kind="civility", title="文明新风"
    )
    dispatcher = live.broadcasting.dispatcher
    zone = place.zone_ids[0]
    await dispatcher.request(notice_id=disclosure.id, zone_ids=[zone], origin="manual", requested_by=None)
    await wait_for_rows(live, lambda rows: rows and rows[0].state == RUN_PLAYING)
    await dispatcher.request(notice_id=civility.id, zone_ids=[zone], origin="manual", requested_by=None)
    rows = await wait_for_rows(live, lambda rows: len(rows) == 2 and rows[1].state == RUN_SKIPPED)
    assert rows[0].state == RUN_PLAYING  # the zone was never shared
    assert "等待超过" in (rows[1].error or "")
    rows = await wait_for_rows(live, lambda rows: rows[0].state == RUN_SUCCESS, timeout=60)
    assert [speaker.state for speaker in await speaker_rows(live, rows[0].id)] == [RUN_SUCCESS, RUN_SUCCESS]


@pytest.mark.parametrize("wait_limit", [300.0])
async def test_a_higher_priority_item_cuts_in_and_the_cut_item_is_played_again_afterwards(live: Runtime) -> None:
    admin = await make_principal(live, "admin", "admin", county_wide=True)
    place = await build_place(live, admin, "甲乡", [[("sink", "file:a")]])
    staff = await make_principal(live, "staff", "staff", township_ids=[place.township_id])
    approver = await make_principal(live, "approver", "approver", township_ids=[place.township_id])
    civility = await approved_notice(
        live, staff, approver, township_id=place.township_id, kind="civility", title="文明新风", body=LONG
    )
    disclosure = await approved_notice(live, staff, approver, township_id=place.township_id, title="财务公开")
    dispatcher = live.broadcasting.dispatcher
    zone = place.zone_ids[0]
    await dispatcher.request(notice_id=civility.id, zone_ids=[zone], origin="manual", requested_by=None)
    await wait_for_rows(live, lambda rows: rows and rows[0].state == RUN_PLAYING)
    await dispatcher.request(notice_id=disclosure.id, zone_ids=[zone], origin="manual", requested_by=None)
    rows = await wait_for_rows(
        live,
        lambda rows: len(rows) == 3 and rows[1].state == RUN_SUCCESS and rows[2].state in (RUN_WAITING, RUN_PLAYING),
        timeout=60,
    )
    cut, cutter, again = rows
    assert cut.state == RUN_INTERRUPTED and cut.interrupted_by == cutter.id
    assert (again.notice_id, again.attempt) == (civility.id, 1)
    assert cutter.started_at is not None and cut.ended_at is not None and cut.ended_at <= cutter.started_at
    rows = await wait_for_rows(live, lambda rows: rows[2].state == RUN_SUCCESS, timeout=60)


@pytest.mark.parametrize(("wait_limit", "requeue"), [(300.0, False)])
async def test_without_requeueing_a_cut_item_is_only_recorded_as_interrupted(live: Runtime) -> None:
    admin = await make_principal(live, "admin", "admin", county_wide=True)
    place = await build_place(live, admin, "甲乡", [[("sink", "file:a")]])
    staff = await make_principal(live, "staff", "staff", township_ids=[place.township_id])
    approver = await make_principal(live, "approver", "approver", township_ids=[place.township_id])
    civility = await approved_notice(
        live, staff, approver, township_id=place.township_id, kind="civility", title="文明新风", body=LONG
    )
    disclosure = await approved_notice(live, staff, approver, township_id=place.township_id, title="财务公开")
    dispatcher = live.broadcasting.dispatcher
    zone = place.zone_ids[0]
    await dispatcher.request(notice_id=civility.id, zone_ids=[zone], origin="manual", requested_by=None)
    await wait_for_rows(live, lambda rows: rows and rows[0].state == RUN_PLAYING)
    await dispatcher.request(notice_id=disclosure.id, zone_ids=[zone], origin="manual", requested_by=None)
    rows = await wait_for_rows(live, lambda rows: len(rows) >= 2 and rows[1].state == RUN_SUCCESS, timeout=60)
    # The cut item would have been queued again before the cutter started: there is no such row.
    assert [(row.notice_id, row.attempt, row.state) for row in rows] == [
        (civility.id, 0, RUN_INTERRUPTED),
        (disclosure.id, 0, RUN_SUCCESS),
    ]
    async with asyncio.timeout(10):
        await dispatcher.wait_until(dispatcher.idle)  # and nothing is left waiting for the zone


async def test_in_quiet_hours_a_manual_play_is_cancelled_and_an_emergency_still_plays(live: Runtime) -> None:
    admin = await make_principal(live, "admin", "admin", county_wide=True, can_emergency=True)
    place = await build_place(live, admin, "甲乡", [[("sink", "file:a")]])
    local = live.clock.now().astimezone(live.settings.zone)
    await live.areas.update(
        admin,
        "township",
        place.township_id,
        {
            "quiet_start": (local - timedelta(hours=1)).time().replace(second=0, microsecond=0),
            "quiet_end": (local + timedelta(hours=1)).time().replace(second=0, microsecond=0),
        },
    )
    staff = await make_principal(live, "staff", "staff", township_ids=[place.township_id])
    approver = await make_principal(live, "approver", "approver", township_ids=[place.township_id])
    notice = await approved_notice(live, staff, approver, township_id=place.township_id)
    dispatcher = live.broadcasting.dispatcher
    await dispatcher.request(notice_id=notice.id, zone_ids=[place.zone_ids[0]], origin="manual", requested_by=None)
    rows = await wait_for_rows(live, lambda rows: rows and rows[0].state == RUN_CANCELLED)
    assert "静默时段" in (rows[0].error or "")
    alert = await live.broadcasting.notices.create_emergency(
        admin, title="森林草原防火紧急通知", body="严禁野外用火。", township_id=place.township_id
    )
    await dispatcher.request(notice_id=alert.id, zone_ids=[place.zone_ids[0]], origin="emergency", requested_by=None)
    rows = await wait_for_rows(live, lambda rows: len(rows) == 2 and rows[1].state == RUN_SUCCESS, timeout=60)
    assert rows[1].kind == "emergency"


@pytest.mark.parametrize("wait_limit", [300.0])
async def test_an_item_that_waited_does_not_start_once_quiet_hours_have_begun(live: Runtime) -> None:
    admin = await make_principal(live, "admin", "admin", county_wide=True)
    place = await build_place(live, admin, "甲乡", [[("sink", "file:a")]])
    staff = await make_principal(live, "staff", "staff", township_ids=[place.township_id])
    approver = await make_principal(live, "approver", "approver", township_ids=[place.township_id])
    civility = await approved_notice(
        live, staff, approver, township_id=place.township_id, kind="civility", title="文明新风", body=LONG
    )
    disclosure = await approved_notice(live, staff, approver, township_id=place.township_id, title="财务公开")
    dispatcher = live.broadcasting.dispatcher
    zone = place.zone_ids[0]
    await dispatcher.request(notice_id=civility.id, zone_ids=[zone], origin="manual", requested_by=None)
    await wait_for_rows(live, lambda rows: rows and rows[0].state == RUN_PLAYING)
    await dispatcher.request(notice_id=disclosure.id, zone_ids=[zone], origin="manual", requested_by=None)
    # The disclosure cuts in; the cut item is queued again behind it …
    await wait_for_rows(live, lambda rows: len(rows) == 3 and rows[1].state == RUN_PLAYING, timeout=60)
    # … and while it waits, the township's quiet hours begin.
    local = live.clock.now().astimezone(live.settings.zone)
    await live.areas.update(
        admin,
        "township",
        place.township_id,
        {
            "quiet_start": (local - timedelta(hours=1)).time().replace(second=0, microsecond=0),
            "quiet_end": (local + timedelta(hours=1)).time().replace(second=0, microsecond=0),
        },
    )
    rows = await wait_for_rows(live, lambda rows: rows[2].state not in (RUN_WAITING, RUN_PLAYING), timeout=60)
    _cut, cutter, again = rows
    assert cutter.state == RUN_SUCCESS  # it had started before quiet hours: it plays to its end
    assert (again.notice_id, again.attempt, again.state) == (civility.id, 1, RUN_CANCELLED)
    assert "静默时段" in (again.error or "") and again.started_at is None
    assert await speaker_rows(live, again.id) == []  # no speaker was ever asked to play it


@pytest.mark.parametrize("wait_limit", [300.0])
async def test_an_item_preempted_before_it_played_a_sound_is_recorded_not_started_and_played_once_afterwards(
    live: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await make_principal(live, "admin", "admin", county_wide=True, can_emergency=True)
    with RtpReceiver() as speaker:
        place = await build_place(live, admin, "甲乡", [[("rtp", speaker.address)]])
        staff = await make_principal(live, "staff", "staff", township_ids=[place.township_id])
        approver = await make_principal(live, "approver", "approver", township_ids=[place.township_id])
        civility = await approved_notice(
            live, staff, approver, township_id=place.township_id, kind="civility", title="文明新风"
        )
        alert = await live.broadcasting.notices.create_emergency(
            admin, title="大风预警", body="请关好门窗。", township_id=place.township_id
        )
        notices = live.broadcasting.notices
        real_audio_files = notices.audio_files
        gate = asyncio.Event()
        reached = asyncio.Event()

        async def slow_audio(notice: Notice, keep: KeepSet | None = None) -> tuple[dict[Profile, Path], float]:
            # The civility item is claimed and has its zone, but its audio is still being found (a slow disk,
            # a re-render) when the emergency comes: it has not played a single packet.
            if notice.id == civility.id:
                reached.set()
                await gate.wait()
            return await real_audio_files(notice, keep)

        monkeypatch.setattr(notices, "audio_files", slow_audio)
        dispatcher = live.broadcasting.dispatcher
        zone = place.zone_ids[0]
        await dispatcher.request(notice_id=civility.id, zone_ids=[zone], origin="manual", requested_by=None)
        await asyncio.wait_for(reached.wait(), 30)
        await dispatcher.request(notice_id=alert.id, zone_ids=[zone], origin="emergency", requested_by=None)
        await wait_for_rows(live, lambda rows: len(rows) == 2)
        gate.set()
        rows = await wait_for_rows(live, lambda rows: len(rows) == 3 and rows[2].state == RUN_SUCCESS, timeout=60)
        preempted, emergency, again = rows
        assert preempted.state == RUN_PREEMPTED_BEFORE_START and preempted.interrupted_by == emergency.id
        assert preempted.error == "尚未播出即被更高优先级的广播抢占"
        assert await speaker_rows(live, preempted.id) == []  # no speaker was ever asked to play it
        assert emergency.state == RUN_SUCCESS
        assert (again.notice_id, again.attempt, again.replay_of) == (civility.id, 1, None)
        # Counted at the speaker: the emergency once, then the civility item once, whole; nothing else.
        assert len(speaker.runs()) == 2
        for notice in (alert, civility):
            assert notice.audio_keys is not None
            entry = live.speech.cache.get(notice.audio_keys["rtp"])
            assert entry is not None
            assert speaker.plays(item_payloads(entry.path)) == ["full"]
        (played,) = await speaker_rows(live, again.id)
        assert played.packets_sent == len(speaker.runs()[1].packets)
        assert played.played_s == pytest.approx(played.packets_sent * 0.02)


async def test_a_cancel_asked_by_another_process_stops_the_workers_play(live: Runtime) -> None:
    # Two runtimes on one database: ``live`` is the active worker holding the play; ``standby`` (its dispatcher
    # never started) stands for a process that received the Cancel, e.g. a web process behind the load balancer.
    admin = await make_principal(live, "admin", "admin", county_wide=True)
    place = await build_place(live, admin, "甲乡", [[("sink", "file:a")]])
    staff = await make_principal(live, "staff", "staff", township_ids=[place.township_id])
    approver = await make_principal(live, "approver", "approver", township_ids=[place.township_id])
    disclosure = await approved_notice(live, staff, approver, township_id=place.township_id, body=LONG)
    broadcast_id = await live.broadcasting.dispatcher.request(
        notice_id=disclosure.id, zone_ids=[place.zone_ids[0]], origin="emergency", requested_by=None
    )
    await wait_for_rows(live, lambda rows: rows and rows[0].state == RUN_PLAYING)
    standby = build_runtime(live.settings)
    try:
        await standby.broadcasting.dispatcher.cancel(broadcast_id, "预警已撤销")
    finally:
        await standby.engine.dispose()
    # The worker finds the written cancel on its next round (pending_poll_s = 0.2 here), long before LONG ends.
    rows = await wait_for_rows(live, lambda rows: rows[0].state == RUN_CANCELLED, timeout=10)
    assert rows[0].error == "预警已撤销"
    # The speaker was cut part-way (its line says so); the zone's line says why: cancelled.
    assert [speaker.state for speaker in await speaker_rows(live, rows[0].id)] == [RUN_INTERRUPTED]
    async with asyncio.timeout(10):
        await live.broadcasting.dispatcher.wait_until(live.broadcasting.dispatcher.idle)
