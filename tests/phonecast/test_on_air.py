"""The 手机喊话 desk with the real parts: the recording rendered by ffmpeg, played by the running worker's dispatcher
to an RTP receiver on loopback and a 4G terminal over real HTTP; queued behind another cadre, preempted by an
emergency; let through quiet hours for a cadre with the emergency permission; scheduled for a time of day.

The line is not here (the coordinator adds the test through Asterisk): ``submit`` is called directly with a WAV,
as the line calls it. Recordings are a few seconds of tone: long enough to still be playing when the next
request arrives, short enough to keep the suite's budget (issue 10).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from broadcast.asrun import AsRunFilter
from hotline.phonecast import SubmitStatus
from server import Runtime
from settings import AudioSettings, PhonecastSettings, Settings
from storage.models import (
    PHONECAST_PRIORITY,
    RUN_INTERRUPTED,
    RUN_SUCCESS,
    Broadcast,
    BroadcastZone,
    Township,
)
from tests.broadcast.test_broadcast_api import Terminal
from tests.phonecast.helpers import audit_actions, make_cadre, record_of, tone_wav
from tests.support.broadcasting import broadcasting_settings, build_place, make_principal, wait_for_rows
from tests.support.receivers import RtpReceiver, item_payloads
from tests.support.speech import decode_pcm, ebur128, tone_power
from tts.audio import PROFILES, Profile
from tts.chime import CHIME_FREQUENCIES_HZ, chime_duration_s

pytestmark = pytest.mark.slow


@pytest.fixture
def chime() -> bool:
    """The fast test audio has no chime; the test that proves the chime on the air asks for it."""
    return False


@pytest.fixture
def settings(tmp_path: Path, database_url: str, chime: bool) -> Settings:
    # The follower looks often (a scheduled broadcast is due within seconds here); submit waits at most 20 s.
    values = broadcasting_settings(
        tmp_path / "data", database_url, phonecast=PhonecastSettings(due_poll_s=0.2, start_wait_s=20)
    )
    if chime:
        values = values.model_copy(update={"audio": AudioSettings(default_repeats=1)})
    return values


async def until_record(runtime: Runtime, record_id: int, status: str, timeout: float = 60) -> None:  # noqa: ASYNC109
    """The follower closes a record a moment after its broadcast ends (it looks every ``due_poll_s``)."""
    async with asyncio.timeout(timeout):
        while True:
            if (await record_of(runtime, record_id)).status == status:
                return
            await asyncio.sleep(0.2)


async def item_file(runtime: Runtime, broadcast_id: int, profile: Profile) -> Path:
    async with runtime.sessions() as session:
        broadcast = await session.get(Broadcast, broadcast_id)
        assert broadcast is not None and broadcast.audio_keys
    entry = runtime.speech.cache.get(broadcast.audio_keys[profile.value])
    assert entry is not None
    return entry.path


@pytest.mark.parametrize("chime", [True], ids=["with-chime"])
async def test_a_cadres_recording_plays_whole_on_an_rtp_speaker_and_a_4g_terminal_with_chime_and_loudness(
    runtime: Runtime, server: TestServer, tmp_path: Path
) -> None:
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    with RtpReceiver() as receiver:
        place = await build_place(runtime, admin, "甲乡", [[("rtp", receiver.address)]])
        _terminal, token = await runtime.areas.create_speaker(
            admin, zone_id=place.zone_ids[0], name="4G音柱", transport="http", address="4g-0001"
        )
        assert token is not None
        cadre = await make_cadre(runtime, admin, "cadre", "13800001111", villages=[place.village_id])
        target = (await runtime.phonecast.desk.targets(cadre)).villages[0]
        assert target.speakers == 2

        async with ClientSession() as http:
            terminal = Terminal(http, server, token)

            async def four_g() -> None:
                play = await terminal.wait_for_play()
                assert play["priority"] == PHONECAST_PRIORITY and not play["emergency"]
                assert len(await terminal.fetch(play)) > 1000
                assert await terminal.report(play["play_id"], "started") == 200
                await asyncio.sleep(play.get("duration_s") or 1)
                assert await terminal.report(play["play_id"], "finished") == 200

            pulling = asyncio.create_task(four_g())
            try:
                result = await runtime.phonecast.desk.submit(
                    cadre, "13800001111", target, tone_wav(tmp_path / "said.wav", 2.0), call_id="call-rtp"
                )
                # Both speakers started, as the as-run log says (the terminal reported its start).
                assert (result.status, result.speakers, result.unanswered) == (SubmitStatus.STARTED, 2, 0)
                await pulling
            finally:
                pulling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pulling
        rows = await wait_for_rows(runtime, lambda rows: rows and rows[0].state not in (1, 2), timeout=60)
        row = await record_of(runtime, result.record_id or 0)
        assert row.broadcast_id is not None
        rtp_item = await item_file(runtime, row.broadcast_id, Profile.RTP)
        # The receiver got the whole item, packet for packet.
        expected = await asyncio.to_thread(item_payloads, rtp_item)
        await receiver.until(lambda r: r.plays(expected) == ["full"], timeout=10)
    assert rows[0].state == RUN_SUCCESS, rows[0].error
    assert (rows[0].kind, rows[0].priority) == ("phonecast", PHONECAST_PRIORITY)
    # The as-run log names the caller with the number masked, on the line of every zone and so every speaker.
    lines = await runtime.broadcasting.asrun.lines(admin, AsRunFilter(zone_id=place.zone_ids[0]))
    assert [line.as_json(runtime.settings.zone)["title"] for line in lines] == [
        "手机喊话：cadre 138****1111（甲乡一村）"
    ]
    assert {s["state_label"] for s in lines[0].as_json(runtime.settings.zone)["speakers"]} == {"成功"}
    # What was sent is at the loudness target, with the chime before the voice.
    input_args = PROFILES[Profile.RTP].input_args
    loudness = await asyncio.to_thread(ebur128, rtp_item, *input_args)
    assert abs(loudness.integrated_lufs - runtime.settings.audio.loudness_target_lufs) <= 1.0, loudness
    lead_in_s = runtime.settings.audio.lead_in_ms / 1000
    window = await asyncio.to_thread(
        decode_pcm, rtp_item, *input_args, rate=8000, start_s=lead_in_s, length_s=chime_duration_s()
    )
    voice = await asyncio.to_thread(
        decode_pcm, rtp_item, *input_args, rate=8000, start_s=lead_in_s + chime_duration_s() + 1.0, length_s=0.5
    )
    chime_power = sum(tone_power(window, f, 8000) for f in CHIME_FREQUENCIES_HZ)
    assert chime_power > 50 * sum(tone_power(voice, f, 8000) for f in CHIME_FREQUENCIES_HZ)
    assert tone_power(voice, 440, 8000) > 50 * tone_power(window, 440, 8000)  # the cadre's tone follows it
    # The record closes when the broadcast ends; it kept its own copy of the recording.
    await until_record(runtime, row.id, "played")
    assert (runtime.phonecast.desk.recordings_dir / (row.recording_file or "-")).stat().st_size > 1000
    actions = await audit_actions(runtime)
    assert "phonecast.started" in actions and "phonecast.ended" in actions
    # The same call submitted again: the first answer, nothing played twice.
    again = await runtime.phonecast.desk.submit(
        cadre, "13800001111", target, tone_wav(tmp_path / "said.wav", 2.0), call_id="call-rtp"
    )
    assert again.record_id == result.record_id and again.status is SubmitStatus.STARTED
    async with runtime.sessions() as session:
        assert len((await session.scalars(select(Broadcast.id))).all()) == 1


async def test_a_second_cadre_queues_behind_the_first_and_an_emergency_preempts_both(
    runtime: Runtime, server: TestServer, tmp_path: Path
) -> None:
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    with RtpReceiver() as receiver:
        place = await build_place(runtime, admin, "甲乡", [[("rtp", receiver.address)]])
        zone = place.zone_ids[0]
        first = await make_cadre(runtime, admin, "first", "13800001111", villages=[place.village_id])
        second = await make_cadre(runtime, admin, "second", "13800002222", townships=[place.township_id])
        desk = runtime.phonecast.desk
        zone_target = await desk.zone_by_code(second, (await desk.targets(first)).villages[0].code) or None
        assert zone_target is None  # a village's code is not a zone's
        village = (await desk.targets(first)).villages[0]
        township = (await desk.targets(second)).townships[0]
        # The emergency is written (and its speech made) first, so that asking for it later is instant; ten
        # seconds of the first cadre's voice are then still playing when the second cadre and the emergency
        # arrive, however slow the machine (six were not, in a full run on two cores).
        chief = await make_principal(runtime, "chief", "leader", county_wide=True, can_emergency=True)
        notice = await runtime.broadcasting.notices.create_emergency(
            chief, title="森林草原防火紧急通知", body="严禁野外用火。", township_id=None
        )
        one = await desk.submit(first, "13800001111", village, tone_wav(tmp_path / "1.wav", 10.0), call_id="c1")
        assert one.status is SubmitStatus.STARTED
        two = await desk.submit(second, "13800002222", township, tone_wav(tmp_path / "2.wav", 1.0), call_id="c2")
        assert (two.status, two.speakers) == (SubmitStatus.QUEUED, 1)
        await runtime.broadcasting.dispatcher.request(
            notice_id=notice.id, zone_ids=[zone], origin="emergency", requested_by=chief.user_id
        )
        rows = await wait_for_rows(
            runtime,
            lambda rows: len([r for r in rows if r.state == RUN_SUCCESS]) >= 3,
            timeout=120,
            zone_id=zone,
        )
    by_kind = [(row.kind, row.broadcast_id, row.state) for row in rows]
    one_row = await record_of(runtime, one.record_id or 0)
    two_row = await record_of(runtime, two.record_id or 0)
    # The first cadre's play was cut by the emergency, which played; the second cadre's, queued, played after
    # it, and the first again (requeued) — never two at once in the zone.
    first_runs = [row for row in rows if row.broadcast_id == one_row.broadcast_id]
    assert first_runs[0].state == RUN_INTERRUPTED, by_kind
    emergency = next(row for row in rows if row.kind == "emergency")
    second_run = next(row for row in rows if row.broadcast_id == two_row.broadcast_id)
    assert emergency.state == RUN_SUCCESS and second_run.state == RUN_SUCCESS, by_kind
    assert first_runs[0].ended_at and emergency.started_at and emergency.ended_at and second_run.started_at
    assert emergency.started_at >= first_runs[0].ended_at - timedelta(seconds=0.5)
    assert second_run.started_at >= emergency.ended_at
    await until_record(runtime, two_row.id, "played")


async def test_quiet_hours_let_through_a_cadre_with_the_emergency_permission(
    runtime: Runtime, server: TestServer, tmp_path: Path
) -> None:
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    with RtpReceiver() as receiver:
        place = await build_place(runtime, admin, "甲乡", [[("rtp", receiver.address)]])
        now = datetime.now(runtime.settings.zone)
        async with runtime.sessions.begin() as session:
            township = await session.get(Township, place.township_id)
            assert township is not None
            township.quiet_start = (now - timedelta(hours=1)).time().replace(second=0, microsecond=0)
            township.quiet_end = (now + timedelta(hours=1)).time().replace(second=0, microsecond=0)
        chief = await make_cadre(
            runtime, admin, "chief", "13800001111", villages=[place.village_id], can_emergency=True
        )
        target = (await runtime.phonecast.desk.targets(chief)).villages[0]
        result = await runtime.phonecast.desk.submit(
            chief, "13800001111", target, tone_wav(tmp_path / "said.wav", 1.0), call_id="night"
        )
        assert result.status is SubmitStatus.STARTED
        rows = await wait_for_rows(runtime, lambda rows: rows and rows[0].state not in (1, 2), timeout=60)
    assert rows[0].state == RUN_SUCCESS, rows[0].error


async def test_a_time_of_day_is_scheduled_and_plays_when_it_comes(
    runtime: Runtime, server: TestServer, tmp_path: Path
) -> None:
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    with RtpReceiver() as receiver:
        place = await build_place(runtime, admin, "甲乡", [[("rtp", receiver.address)]])
        cadre = await make_cadre(runtime, admin, "cadre", "13800001111", villages=[place.village_id])
        target = (await runtime.phonecast.desk.targets(cadre)).villages[0]
        # Three seconds from now, county time (the line takes minutes; the desk takes any time of day).
        at_local = (datetime.now(runtime.settings.zone) + timedelta(seconds=3)).time().replace(microsecond=0)
        result = await runtime.phonecast.desk.submit(
            cadre, "13800001111", target, tone_wav(tmp_path / "said.wav", 1.0), call_id="later", at_local=at_local
        )
        assert result.status is SubmitStatus.SCHEDULED and result.at is not None
        assert result.at.astimezone(runtime.settings.zone).time() == at_local
        async with runtime.sessions() as session:
            assert (await session.scalars(select(BroadcastZone.id))).all() == []
        rows = await wait_for_rows(runtime, lambda rows: rows and rows[0].state not in (1, 2), timeout=60)
        assert rows[0].state == RUN_SUCCESS and rows[0].started_at is not None
        assert rows[0].started_at >= result.at
    await until_record(runtime, result.record_id or 0, "played")
