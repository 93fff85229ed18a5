"""Producing a long item never freezes what is on air: no event-loop callback runs 50 ms while a long notice is
approved (rendered) and another zone plays — timed by the CPU each callback used — and the zone's RTP plays on, whole.
An item longer than the one length cap is refused before anything is rendered, with the minutes, in Chinese.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broadcast.notices import NoticeInput
from broadcast.production import ItemTooLong
from server import Runtime, build_runtime
from settings import AudioSettings
from storage.models import RUN_PLAYING, RUN_SUCCESS
from tests.support.broadcasting import (
    PRODUCTION_SPEECH,
    approved_notice,
    broadcasting_settings,
    build_place,
    make_principal,
    wait_for_rows,
)
from tests.support.loop_watch import LoopWatch
from tests.support.receivers import RtpReceiver, item_payloads

pytestmark = pytest.mark.slow

# What plays meanwhile: long enough to be on air for the whole production.
ON_AIR = "各位村民请注意，今天下午三点在村委会召开村民代表会议，请准时参加。" * 4
# The long item: 240 characters read ten times, over ten minutes of audio. Before production moved off the
# loop, producing it held one callback for 330 ms of CPU (pydub concatenation and gain on the loop); the 4 h
# item of the report held one for 8 s.
LONG_BODY = "各位村民请注意，今年第三季度村集体收入合计十二万元。" * 8
SLOW_CALLBACK_S = 0.05


@pytest.fixture
async def live(tmp_path: Path, database_url: str) -> AsyncIterator[Runtime]:
    # At the production rate, with the chime: the item must be long (minutes) to prove production stays off the loop.
    settings = broadcasting_settings(
        tmp_path / "data", database_url, tts=PRODUCTION_SPEECH, audio=AudioSettings(default_repeats=1)
    )
    runtime = build_runtime(settings)
    await runtime.broadcasting.dispatcher.start()
    try:
        yield runtime
    finally:
        await runtime.broadcasting.dispatcher.stop()
        await runtime.engine.dispose()


async def test_a_long_item_produced_while_a_zone_plays_holds_no_loop_callback_for_50_ms(
    live: Runtime,
) -> None:
    admin = await make_principal(live, "admin", "admin", county_wide=True)
    with RtpReceiver() as speaker:
        place = await build_place(live, admin, "甲乡", [[("rtp", speaker.address)]])
        staff = await make_principal(live, "staff", "staff", township_ids=[place.township_id])
        approver = await make_principal(live, "approver", "approver", township_ids=[place.township_id])
        on_air = await approved_notice(live, staff, approver, township_id=place.township_id, body=ON_AIR)
        notices = live.broadcasting.notices
        long_notice = await notices.create(
            staff,
            NoticeInput(
                kind="disclosure_finance", title="财务公开", body=LONG_BODY, township_id=place.township_id, repeats=10
            ),
        )
        await notices.submit(staff, long_notice.id)
        await live.broadcasting.dispatcher.request(
            notice_id=on_air.id, zone_ids=[place.zone_ids[0]], origin="manual", requested_by=None
        )
        await wait_for_rows(live, lambda rows: rows and rows[0].state == RUN_PLAYING)
        await speaker.until(lambda receiver: len(receiver.packets) > 25)

        # Each loop callback timed by the CPU it used (not the wall clock: the machine may be busy).
        with LoopWatch(limit_s=SLOW_CALLBACK_S) as watch:
            approved = await notices.approve(approver, long_notice.id)
        assert watch.callbacks > 100  # the watch saw the loop at work (RTP pacing, at least)
        assert watch.slow == [], f"loop callback(s) over 50 ms of CPU while producing: {watch.summary()}"
        assert approved.state == "approved" and (approved.audio_duration_s or 0) > 600

        rows = await wait_for_rows(live, lambda rows: rows[0].state == RUN_SUCCESS, timeout=60)
        assert rows[0].state == RUN_SUCCESS
        assert on_air.audio_keys is not None
        entry = live.speech.cache.get(on_air.audio_keys["rtp"])
        assert entry is not None
        assert speaker.plays(item_payloads(entry.path)) == ["full"]  # on air all along, whole, once


async def test_a_notice_that_would_read_longer_than_the_cap_is_refused_before_anything_is_rendered(
    tmp_path: Path, database_url: str
) -> None:
    settings = broadcasting_settings(
        tmp_path / "data", database_url, tts=PRODUCTION_SPEECH, audio=AudioSettings(default_repeats=1, max_item_s=60)
    )
    runtime = build_runtime(settings)
    try:
        admin = await make_principal(runtime, "admin", "admin", county_wide=True, can_emergency=True)
        place = await build_place(runtime, admin, "乙镇", [[("sink", "file:a")]])
        staff = await make_principal(runtime, "staff", "staff", township_ids=[place.township_id])
        approver = await make_principal(runtime, "approver", "approver", township_ids=[place.township_id])
        notices = runtime.broadcasting.notices
        # 120 characters read three times: at least 72 s at the fastest voice, over a 1-minute cap.
        body = "请各户在本月底前缴纳新农合医疗保险费，每人三百八十元，可到村委会或用手机缴纳。" * 3
        notice = await notices.create(
            staff, NoticeInput(kind="service", title="缴费提醒", body=body, township_id=place.township_id, repeats=3)
        )
        await notices.submit(staff, notice.id)
        entries_before = sorted((runtime.speech.cache.entries_dir).rglob("meta.json"))
        with pytest.raises(ItemTooLong) as refused:
            await notices.approve(approver, notice.id)
        message = refused.value.message
        assert message.startswith("这条广播读3遍至少要") and "超过了单条广播最长1分钟的限制" in message
        assert "请删减内容或减少重复次数" in message
        assert (await notices.get(staff, notice.id)).state == "pending"
        # Refused before rendering: not a single new entry (speech or item) in the cache.
        assert sorted((runtime.speech.cache.entries_dir).rglob("meta.json")) == entries_before
        # The same cap holds for an emergency: refused before it is spoken, with the same message.
        with pytest.raises(ItemTooLong):
            await notices.create_emergency(admin, title="预警", body=body * 2, township_id=place.township_id)
    finally:
        await runtime.engine.dispose()
