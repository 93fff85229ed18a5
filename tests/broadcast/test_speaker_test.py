"""The speaker test (拨测): `cunxiang broadcast test` to an RTP address and to a registered speaker, and the API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from server import Runtime
from settings import Settings
from storage.models import RUN_SUCCESS
from tests.broadcast.test_rtp import Listener
from tests.support.broadcasting import SPEAKER_TEST_TEXT, broadcasting_settings, build_place, make_principal
from tests.support.cli import environment, run
from tests.support.http import ApiClient

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return broadcasting_settings(tmp_path / "data", database_url)


def _env(tmp_path: Path) -> dict[str, str]:
    # The command's process reads as fast as the fixture's runtime (tests/support/broadcasting.py): the test item's
    # length proves nothing here.
    return environment(
        tmp_path / "data",
        CUNXIANG_TTS_ENGINES='["espeak"]',
        CUNXIANG_TTS_ESPEAK_SPEED_WPM="400",
        CUNXIANG_AUDIO_CHIME="false",
        CUNXIANG_AUDIO_LEAD_IN_MS="0",
        CUNXIANG_AUDIO_TAIL_MS="0",
    )


async def test_the_command_plays_to_an_rtp_address_and_prints_the_speakers_result_as_json(
    tmp_path: Path, database_url: str
) -> None:
    listener = Listener()
    listener.attach()
    try:
        done = await asyncio.to_thread(
            run,
            ["broadcast", "test", "--text", SPEAKER_TEST_TEXT, "--rtp", f"127.0.0.1:{listener.port}"],
            _env(tmp_path),
        )
        await asyncio.sleep(0.2)
    finally:
        listener.close()
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["transport"], result["state"], result["state_label"]) == ("rtp", RUN_SUCCESS, "成功")
    assert result["detail"]["packets"] == result["detail"]["sent"] == len(listener.packets) > 50
    assert listener.packets[0].marker and {packet.payload for packet in listener.packets} == {160}


async def test_the_command_refuses_an_rtp_address_that_is_not_an_address_in_one_line(
    tmp_path: Path, database_url: str
) -> None:
    done = await asyncio.to_thread(run, ["broadcast", "test", "--rtp", "speaker-one:5004"], _env(tmp_path))
    assert done.returncode != 0 and done.stdout == ""
    assert "不是有效的IPv4地址" in done.stderr and "Traceback" not in done.stderr


async def test_the_command_tests_a_registered_speaker_by_id_and_a_4g_terminal_is_pointed_to_a_zone_play(
    runtime: Runtime, tmp_path: Path
) -> None:
    admin = await make_principal(runtime, "test-admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "甲乡", [[("sink", "file:room"), ("http", "t00009")]])
    sink, terminal = place.speaker_ids
    done = await asyncio.to_thread(run, ["broadcast", "test", "--speaker", str(sink)], _env(tmp_path))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["speaker_id"], result["transport"], result["state_label"]) == (sink, "sink", "成功")
    assert (tmp_path / "data" / "sink" / "room.wav").stat().st_size > 1000
    refused = await asyncio.to_thread(run, ["broadcast", "test", "--speaker", str(terminal)], _env(tmp_path))
    assert refused.returncode != 0 and "立即播出" in refused.stderr


async def test_the_speaker_api_and_the_button_on_the_speaker_page_test_one_speaker(
    runtime: Runtime, server: TestServer, admin: ApiClient
) -> None:
    principal = await make_principal(runtime, "api-test-admin", "admin", county_wide=True)
    place = await build_place(runtime, principal, "乙镇", [[("sink", "file:hall"), ("http", "t00010")]])
    sink, terminal = place.speaker_ids
    result = await admin.post_json(f"/api/v1/speakers/{sink}/test", {"text": SPEAKER_TEST_TEXT})
    assert (result["speaker_id"], result["state"]) == (sink, RUN_SUCCESS)
    refused = await admin.post_json(f"/api/v1/speakers/{terminal}/test", {"text": SPEAKER_TEST_TEXT}, expect=400)
    assert refused["error"]["code"] == "speaker_test.http"
    # The 拨测 button on the speaker page: the result comes back as the page's message.
    page = await (await admin.post(f"/broadcast/speakers/{sink}/test", data={"text": SPEAKER_TEST_TEXT})).text()
    assert "拨测 喇叭1：成功" in page
    page = await (await admin.post(f"/broadcast/speakers/{terminal}/test", data={"text": SPEAKER_TEST_TEXT})).text()
    assert "立即播出" in page
