"""The phone-broadcast line's live mode (实时喊话, issue 18) against a scripted Asterisk and a fake desk (fast tier).

The same call on the real Asterisk, with real speakers, is in tests/phonecast/asterisk/test_live_end_to_end.py;
here every way a live call ends, and every answer of the desk, in milliseconds.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from zoneinfo import ZoneInfo

import pytest

from common.clock import ManualClock
from hotline.fastagi import AgiHangup, AgiRequest
from hotline.phonecast import LiveEnd, LiveStart, LiveStatus, SubmitStatus
from hotline.phonecast_line import PhonecastLine, PhonecastLineConfig
from hotline.prompts import PROMPTS
from tests.hotline.phonecast_desk import NUMBER, PIN, FakeDesk
from tests.hotline.test_phonecast_line import ScriptedAsterisk
from tests.hotline.wavs import write_wav

ON_AIR = LiveStart(LiveStatus.ON_AIR, 9, speakers=4, after=0, unanswered=0)


class LiveAsterisk(ScriptedAsterisk):
    """ScriptedAsterisk, plus the conference: the caller leaves it as ``left`` says (CONFBRIDGE_RESULT), or
    hangs up in it, or stays until the room is emptied (``kicked``)."""

    def __init__(
        self,
        spool: Path,
        keys: Sequence[str],
        *,
        left: str = "DTMF",
        hang_up_in_room: bool = False,
        hang_up_while_connecting: bool = False,
    ) -> None:
        super().__init__(spool, keys)
        self.hang_up_while_connecting = hang_up_while_connecting
        self.left = left
        self.hang_up_in_room = hang_up_in_room
        self.rooms: list[str] = []
        self.in_room = asyncio.Event()
        self.kicked = asyncio.Event()
        self.monitored: Path | None = None
        self.monitoring = False

    def _close_monitor(self) -> None:
        if self.monitored is not None and self.monitoring:
            self.monitored.with_suffix(".done").touch()
            self.monitoring = False

    async def command(self, text: str, *, timeout_s: float | None = None) -> tuple[int, str]:
        if self.hung_up:
            raise AgiHangup("the channel hung up")
        words = shlex.split(text)
        if (
            self.hang_up_while_connecting
            and words[:2] == ["STREAM", "FILE"]
            and words[2].endswith("pc_live_connecting")
        ):
            # She hangs up while the desk connects the speakers: Asterisk tells the line at its next command.
            self.hung_up = True
            return 200, "result=0 endpos=8000"
        if words[:2] == ["EXEC", "MixMonitor"]:
            self.monitored = Path(words[2].split(",")[0])
            write_wav(self.monitored, 2.0, loud=True)
            self.monitoring = True
            return 200, "result=0"
        if words[:2] == ["EXEC", "ConfBridge"]:
            self.rooms.append(words[2])
            self.in_room.set()
            if self.left == "KICKED":
                await self.kicked.wait()
            if self.hang_up_in_room:
                self.hung_up = True
                self._close_monitor()
                return 200, "result=-1"
            return 200, "result=0"
        if words[:2] == ["GET", "VARIABLE"]:
            return 200, f"result=1 ({self.left})"
        if words[:2] == ["EXEC", "StopMixMonitor"]:
            self._close_monitor()
            return 200, "result=0"
        return await super().command(text, timeout_s=timeout_s)


class FakeRooms:
    def __init__(self, asterisk: LiveAsterisk) -> None:
        self.asterisk = asterisk
        self.ended: list[str] = []

    async def end(self, room: str) -> None:
        self.ended.append(room)
        self.asterisk.kicked.set()


def make_line(spool: Path, desk: FakeDesk, asterisk: LiveAsterisk, *, live_max_s: int = 5) -> PhonecastLine:
    async def sentences(text: str) -> PurePosixPath:
        return PurePosixPath("/media") / f"speech-{abs(hash(text))}"

    config = PhonecastLineConfig(
        prompts_dir=PurePosixPath("/prompts"),
        spool_host=spool,
        spool_asterisk=PurePosixPath(spool),
        timezone=ZoneInfo("Asia/Shanghai"),
        max_recording_s=30,
        attempts=2,
        live_max_s=live_max_s,
        mixmonitor_wait_s=1.0,
    )
    line = PhonecastLine(
        config, clock=ManualClock(datetime(2026, 12, 5, 2, 0, tzinfo=UTC)), desk=desk, sentences=sentences
    )
    line.use_rooms(FakeRooms(asterisk))
    return line


async def live_call(
    tmp_path: Path, desk: FakeDesk, keys: Sequence[str], *, live_max_s: int = 5, preempt: bool = False, **how: object
) -> tuple[LiveAsterisk, PhonecastLine]:
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    asterisk = LiveAsterisk(spool, keys, **how)  # type: ignore[arg-type]
    line = make_line(spool, desk, asterisk, live_max_s=live_max_s)
    request = AgiRequest("phonecast", ("call-1",), {"agi_callerid": NUMBER, "agi_callingpres": "0"})

    async def emergency() -> None:
        await asterisk.in_room.wait()
        desk.live_preempted("call-1").set()

    preempting = asyncio.create_task(emergency()) if preempt else None
    try:
        async with asyncio.timeout(10):
            await line.call(request, asterisk)  # type: ignore[arg-type]  # duck-typed AgiSession
    except AgiHangup:
        pass
    finally:
        if preempting is not None:
            preempting.cancel()
    assert not list(spool.iterdir()), "the line leaves none of its recordings behind"
    return asterisk, line


@pytest.fixture
def desk(tmp_path: Path) -> FakeDesk:
    keep = tmp_path / "desk"
    keep.mkdir()
    return FakeDesk(keep, live=ON_AIR)


def test_every_live_prompt_is_in_the_catalogue_in_chinese() -> None:
    for name in (
        "pc_mode_menu",
        "pc_live_connecting",
        "pc_live_on_air",
        "pc_live_after",
        "pc_live_speak",
        "pc_live_busy",
        "pc_live_emergency_refused",
        "pc_live_ended",
        "pc_live_limit",
        "pc_live_emergency",
        "pc_live_failed",
    ):
        assert name in PROMPTS
    assert PROMPTS["pc_live_emergency"][1] == "紧急广播插播，喊话结束。"
    assert "该区域正在喊话" in PROMPTS["pc_live_busy"][1]


async def test_pressing_hash_ends_a_live_call_and_the_desk_keeps_its_recording(tmp_path: Path, desk: FakeDesk) -> None:
    asterisk, _line = await live_call(tmp_path, desk, [PIN, "1", "2"], left="DTMF")
    assert asterisk.stages[:4] == ["pin", "target", "mode", "connecting"] and "live" in asterisk.stages
    assert desk.went_live[0]["room"] == "cx-live-call-1" and desk.went_live[0]["call_id"] == "call-1"
    assert asterisk.rooms == ["cx-live-call-1,cx_live"]
    # The talker's profile, the hard limit and # to leave are set on her channel before she enters.
    assert asterisk.variables["CONFBRIDGE(user,template)"] == "cx_live_talker"
    assert asterisk.variables["CONFBRIDGE(user,timeout)"] == "5"
    assert asterisk.variables["CONFBRIDGE(menu,#)"] == "leave_conference"
    assert "pc_live_connecting" in asterisk.heard and "tts:已接通4个喇叭。" in asterisk.heard
    # The chime comes after the instructions, right before the room.
    assert asterisk.heard.index("beep") == asterisk.heard.index("pc_live_speak") + 1
    assert asterisk.heard[-2:] == ["pc_live_ended", "pc_goodbye"]
    [ended] = desk.ended
    assert ended["ended_by"] is LiveEnd.CALLER and ended["kept"] is not None and ended["kept"].stat().st_size > 44
    assert not desk.submits
    assert (
        asterisk.outcome is not None and asterisk.outcome["Mode"] == "live" and asterisk.outcome["Status"] == "on_air"
    )


async def test_the_hard_limit_ends_a_live_call_and_says_so(tmp_path: Path, desk: FakeDesk) -> None:
    asterisk, _line = await live_call(tmp_path, desk, [PIN, "1", "2"], left="TIMEOUT", live_max_s=7)
    assert asterisk.variables["CONFBRIDGE(user,timeout)"] == "7"
    assert asterisk.heard[-2:] == ["pc_live_limit", "pc_goodbye"]
    assert [ended["ended_by"] for ended in desk.ended] == [LiveEnd.LIMIT]


async def test_an_emergency_empties_the_room_and_the_caller_hears_why(tmp_path: Path, desk: FakeDesk) -> None:
    asterisk, line = await live_call(tmp_path, desk, [PIN, "1", "2"], left="KICKED", preempt=True)
    assert isinstance(line.rooms, FakeRooms) and set(line.rooms.ended) == {"cx-live-call-1"}
    assert asterisk.heard[-2:] == ["pc_live_emergency", "pc_goodbye"]
    [ended] = desk.ended
    assert ended["ended_by"] is LiveEnd.EMERGENCY and ended["kept"] is not None


async def test_a_caller_who_hangs_up_on_the_air_ends_it_and_hears_nothing_more(tmp_path: Path, desk: FakeDesk) -> None:
    asterisk, _line = await live_call(tmp_path, desk, [PIN, "1", "2"], hang_up_in_room=True)
    assert asterisk.heard[-1] == "beep"
    [ended] = desk.ended
    assert ended["ended_by"] is LiveEnd.CALLER and ended["kept"] is not None


async def test_a_caller_who_hangs_up_while_the_speakers_are_connected_still_releases_them(
    tmp_path: Path, desk: FakeDesk
) -> None:
    asterisk, _line = await live_call(tmp_path, desk, [PIN, "1", "2"], hang_up_while_connecting=True)
    assert len(desk.went_live) == 1 and not asterisk.rooms
    # The zones were held for her: the desk is told she left, with nothing recorded.
    assert desk.ended == [{"call_id": "call-1", "ended_by": LiveEnd.CALLER, "kept": None}]


async def test_pull_terminals_and_unanswered_speakers_are_told_before_the_chime(tmp_path: Path, desk: FakeDesk) -> None:
    desk.live = LiveStart(LiveStatus.ON_AIR, 9, speakers=3, after=2, unanswered=1)
    asterisk, _line = await live_call(tmp_path, desk, [PIN, "1", "2"])
    said = asterisk.heard[: asterisk.heard.index("beep")]
    assert "tts:已接通3个喇叭，还有1个喇叭没有接通。" in said and "pc_live_after" in said


async def test_a_busy_zone_offers_to_record_instead_with_the_same_call(tmp_path: Path, desk: FakeDesk) -> None:
    desk.live = LiveStart(LiveStatus.BUSY, None, speakers=4, after=0, unanswered=0)
    # PIN, the village, live, then 1 = record instead, and 1 = broadcast the recording now.
    asterisk, _line = await live_call(tmp_path, desk, [PIN, "1", "2", "1", "1"])
    assert "pc_live_busy" in asterisk.heard and not asterisk.rooms and not desk.ended
    [submitted] = desk.submits
    assert submitted["call_id"] == "call-1"
    assert asterisk.outcome is not None and asterisk.outcome["Status"] == SubmitStatus.STARTED.value


async def test_a_busy_zone_and_no_recording_ends_politely(tmp_path: Path, desk: FakeDesk) -> None:
    desk.live = LiveStart(LiveStatus.BUSY, None, speakers=4, after=0, unanswered=0)
    asterisk, _line = await live_call(tmp_path, desk, [PIN, "1", "2", "2"])
    assert asterisk.heard[-1] == "pc_goodbye" and not desk.submits and not asterisk.rooms


async def test_a_live_call_never_starts_over_an_emergency(tmp_path: Path, desk: FakeDesk) -> None:
    desk.live = LiveStart(LiveStatus.EMERGENCY, None, speakers=4, after=0, unanswered=0)
    asterisk, _line = await live_call(tmp_path, desk, [PIN, "1", "2"])
    assert asterisk.heard[-1] == "pc_live_emergency_refused" and not asterisk.rooms and not desk.ended


async def test_a_refused_live_call_says_why(tmp_path: Path, desk: FakeDesk) -> None:
    desk.live = LiveStart(LiveStatus.REFUSED, 5, speakers=4, after=0, unanswered=0, reason="quiet_hours")
    asterisk, _line = await live_call(tmp_path, desk, [PIN, "1", "2"])
    assert asterisk.heard[-2:] == ["pc_refused_quiet_hours", "pc_goodbye"] and not asterisk.rooms


async def test_with_no_live_limit_the_line_asks_no_mode(tmp_path: Path, desk: FakeDesk) -> None:
    asterisk, _line = await live_call(tmp_path, desk, [PIN, "1", "1"], live_max_s=0)
    assert "mode" not in asterisk.stages and len(desk.submits) == 1
