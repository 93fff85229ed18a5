"""手机喊话, the call side: a cadre dials the phone-broadcast number through the real Asterisk.

Behind the line stands a fake desk (the Protocol in hotline/phonecast.py, recording what it was
asked); the real desk is phonecast/'s. The simulated villager dials ``Local/<DID>@from-trunk``,
so every call also proves that the number reaches this line and not the hotline. The line's
waits are short in these tests (tests/support/asterisk.py: 3 s per question, 2 tries, 2 s of
silence ends a recording) so that a whole call takes seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path, PurePosixPath

import pytest
from sqlalchemy import func, select

from hotline.dialtest import VillagerCall, VillagerScript
from hotline.phonecast import SubmitResult, SubmitStatus
from hotline.recordings import inspect
from storage.models import Call, Case, MissedCall
from tests.hotline.phonecast_desk import CADRE, EAST, NUMBER, PIN, WEST, ZONE, FakeDesk
from tests.support.asterisk import Hotline


@pytest.fixture
def desk(hotline: Hotline, tmp_path: Path, message: tuple[PurePosixPath, float]) -> FakeDesk:
    """The fake desk, handed to the running service's line as server.py hands the real one."""
    keep = tmp_path / "desk"
    keep.mkdir()
    fake = FakeDesk(keep)
    hotline.runtime.hotline.use_phonecast_desk(fake)
    return fake


# What the cadre says: one short sentence, because every call records it and plays it back to her in real
# time (the hotline's longer villager sentence would add seconds to each call of the suite).
MESSAGE = "请大家下午三点到村委会开会。"


@pytest.fixture
async def message(hotline: Hotline) -> tuple[PurePosixPath, float]:
    """The cadre's sentence as Asterisk plays it (rendered once per test process), and its length."""
    assert hotline.telephony.media is not None
    path = await hotline.telephony.media.sentence(MESSAGE, "test-cadre-says")
    return path, inspect(hotline.telephony.paths.media.to_host(f"{path}.wav")).duration_s


async def dial(
    hotline: Hotline,
    keys: tuple[str, ...],
    *,
    caller: str = NUMBER,
    hangup_at: str = "end",
) -> VillagerCall:
    script = VillagerScript(
        caller=caller,
        keys=keys,
        audio=PurePosixPath(hotline.telephony.paths.media.asterisk / "test-cadre-says"),
        line="phonecast",
        hangup_at=hangup_at,  # type: ignore[arg-type]
    )
    call = await hotline.telephony.villager.call(script, timeout_s=120)
    assert call.ended
    return call


async def test_a_cadre_broadcasts_to_her_village_and_hears_that_it_started(
    hotline: Hotline, desk: FakeDesk, message: tuple[PurePosixPath, float]
) -> None:
    call = await dial(hotline, (PIN, "1", "1"))
    assert call.stages[:4] == ["pin", "target", "recording", "review"]
    assert desk.pins == [PIN]
    (submitted,) = desk.submits
    assert submitted["target"] == EAST and submitted["cadre"] == CADRE and submitted["caller"] == NUMBER
    assert submitted["call_id"] == call.linkedid and submitted["at"] is None
    # What was spoken, as a real WAV: her sentence plus the silence that ended the recording (2 s here).
    audio = inspect(submitted["kept"])
    assert audio.has_speech(0.4)
    expected = message[1]
    assert expected - 0.5 <= audio.duration_s <= expected + 3.0, (audio.duration_s, expected)
    # She heard the place read back, her recording played back, and the outcome with the number of speakers.
    heard = call.heard
    assert heard[0] == "pc_enter_pin"
    assert "pc_target_is" in heard and "tts:东风村，共4个喇叭。" in heard
    assert any(prompt.startswith("file:pc_") for prompt in heard)
    assert heard[-2:] == ["tts:已开始播出，共4个喇叭。", "pc_goodbye"]
    assert call.phonecast == {
        "Status": "started",
        "Speakers": "4",
        "Unanswered": "0",
        "Record": "1",
        "Reason": "",
        "At": "",
    }
    # Not a hotline call: no case, no missed call, no call row; and the line's own file is gone.
    await hotline.telephony.tracker.wait_idle(30)
    async with hotline.runtime.sessions() as session:
        for model in (Case, MissedCall, Call):
            assert await session.scalar(select(func.count()).select_from(model)) == 0
    assert not list(hotline.telephony.paths.spool.host.glob("pc_*"))


async def test_three_wrong_pins_end_the_call_and_nothing_is_broadcast(hotline: Hotline, desk: FakeDesk) -> None:
    call = await dial(hotline, ("111111", "222222", "333333", "1", "1"))
    assert call.stages == ["pin", "pin", "pin", "pin_refused"]
    assert desk.pins == ["111111", "222222", "333333"] and desk.submits == []
    assert call.heard == ["pc_enter_pin", "pc_pin_wrong", "pc_pin_wrong", "pc_pin_wrong_final"]
    assert call.phonecast is None


async def test_a_locked_cadre_is_told_politely_and_the_call_ends(hotline: Hotline, desk: FakeDesk) -> None:
    desk.lock_after = 1
    call = await dial(hotline, (PIN, "1", "1"))
    assert call.stages == ["pin", "locked"] and call.heard == ["pc_enter_pin", "pc_locked"]
    assert desk.submits == []


async def test_an_unknown_number_hears_only_the_refusal(hotline: Hotline, desk: FakeDesk) -> None:
    call = await dial(hotline, (PIN, "1", "1"), caller="13800001111")
    # Never the hotline's welcome or menu, never asked for a PIN.
    assert call.stages == ["refused"] and call.heard == ["pc_refusal"] and call.pressed == []
    assert desk.identified == ["13800001111"] and desk.pins == [] and desk.submits == []
    await hotline.telephony.tracker.wait_idle(30)
    async with hotline.runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Case)) == 0


async def test_recording_again_then_a_time_of_day_is_passed_as_at_local(hotline: Hotline, desk: FakeDesk) -> None:
    desk.result = SubmitResult(SubmitStatus.SCHEDULED, 5, 4, 0, at=datetime(2026, 12, 5, 23, 30, tzinfo=UTC))
    # 2 = record again; then 3 with a time that is none (2561) and a right one (0730).
    call = await dial(hotline, (PIN, "1", "2", "3", "2561", "0730"))
    assert call.stages.count("recording") == 2
    (submitted,) = desk.submits
    assert submitted["at"] == time(7, 30)
    assert "pc_time_invalid" in call.heard
    # 23:30 UTC is 7:30 the next morning in the county (Asia/Shanghai).
    said = [prompt for prompt in call.heard if prompt.startswith("tts:已安排在")]
    assert len(said) == 1 and said[0].endswith("7点30分播出。"), call.heard
    assert call.phonecast is not None and call.phonecast["Status"] == "scheduled"


async def test_a_refusal_is_spoken_with_its_reason(hotline: Hotline, desk: FakeDesk) -> None:
    desk.result = SubmitResult(SubmitStatus.REFUSED, None, 4, 0, reason="quiet_hours")
    call = await dial(hotline, (PIN, "1", "1"))
    assert call.heard[-2:] == ["pc_refused_quiet_hours", "pc_goodbye"]
    assert call.phonecast is not None and call.phonecast["Reason"] == "quiet_hours"


async def test_a_hang_up_before_choosing_broadcasts_nothing(hotline: Hotline, desk: FakeDesk) -> None:
    call = await dial(hotline, (PIN, "1"), hangup_at="recording")
    assert call.spoke and "review" not in call.stages
    assert desk.submits == []
    assert not list(hotline.telephony.paths.spool.host.glob("pc_*"))


async def test_several_villages_are_read_as_a_numbered_list(hotline: Hotline, desk: FakeDesk) -> None:
    desk.villages = (EAST, WEST)
    call = await dial(hotline, (PIN, "1", "2", "1"))
    assert call.stages[:3] == ["pin", "target", "choose"]
    assert (
        "tts:按1，东风村。按2，西沟村。再听一遍，请按星号键。" in call.heard and "tts:西沟村，共3个喇叭。" in call.heard
    )
    assert desk.submits[0]["target"] == WEST


async def test_a_zone_by_its_code_and_speakers_that_did_not_answer(hotline: Hotline, desk: FakeDesk) -> None:
    desk.result = SubmitResult(SubmitStatus.STARTED, 3, 1, 1)
    call = await dial(hotline, (PIN, "3", "999#", "3101#", "1"))
    assert call.stages[:4] == ["pin", "target", "zone", "zone"]
    assert "pc_zone_not_found" in call.heard and "tts:红旗镇中心广场，共2个喇叭。" in call.heard
    assert desk.submits[0]["target"] == ZONE
    assert "tts:已开始播出，1个喇叭正在播。部分喇叭未应答，共1个。" in call.heard
