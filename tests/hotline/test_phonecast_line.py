"""The phone-broadcast line's conversation against a scripted Asterisk (fast tier).

The whole call on the real Asterisk is in tests/hotline/asterisk/test_phonecast_line.py; here the
branches a real call would take seconds each to reach: every refusal reason, a desk that fails,
silence and ``*`` at the questions, a recording with nothing said, a withheld number.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from datetime import UTC, datetime, time
from pathlib import Path, PurePosixPath
from zoneinfo import ZoneInfo

import pytest

from common.clock import ManualClock
from hotline.fastagi import AgiHangup, AgiRequest
from hotline.phonecast import REFUSAL_REASONS, SubmitResult, SubmitStatus
from hotline.phonecast_line import PhonecastLine, PhonecastLineConfig, time_of_day
from hotline.prompts import PROMPTS, catalog, spoken_duration
from tests.hotline.phonecast_desk import NUMBER, PIN, ZONE, FakeDesk
from tests.hotline.wavs import write_wav


class ScriptedAsterisk:
    """Answers the line's AGI commands as Asterisk does, the caller doing what ``keys`` and ``speech`` say.

    ``keys``: what each question (GET DATA) gets, in order ("" is silence); when they run out the caller
    hangs up. ``speech``: seconds of sound in each recording, in order (0: a silent one).
    """

    def __init__(self, spool: Path, keys: Sequence[str], speech: Sequence[float] = (3.0,)) -> None:
        self.spool = spool
        self.keys = list(keys)
        self.speech = list(speech)
        self.hung_up = False
        self.heard: list[str] = []
        self.stages: list[str] = []
        self.outcome: dict[str, str] | None = None
        self.variables: dict[str, str] = {}

    async def command(self, text: str, *, timeout_s: float | None = None) -> tuple[int, str]:
        words = shlex.split(text)
        if words[:2] == ["EXEC", "UserEvent"]:
            name, *headers = words[2].split(",")
            fields = dict(header.split(": ", 1) for header in headers)
            if name == "CxStage":
                self.stages.append(fields["Stage"])
            elif name == "CxHeard":
                self.heard.extend(fields["Prompts"].split("&"))
            elif name == "CxPhonecast":
                self.outcome = fields
            return 200, "result=0"
        if words[:2] == ["GET", "DATA"]:
            if not self.keys:
                self.hung_up = True
                raise AgiHangup("the caller hung up")
            typed = self.keys.pop(0)
            return 200, f"result={typed}" + ("" if typed else " (timeout)")
        if words[:2] == ["STREAM", "FILE"]:
            return 200, "result=0 endpos=8000"
        if words[:2] == ["RECORD", "FILE"]:
            seconds = self.speech.pop(0) if self.speech else 3.0
            path = Path(words[2] + ".wav")
            write_wav(path, max(seconds, 1.0), loud=seconds > 0)
            return 200, "result=0 (timeout) endpos=24000"
        if words[:2] == ["SET", "VARIABLE"]:
            self.variables[words[2]] = words[3]
            return 200, "result=1"
        raise AssertionError(f"unexpected command {text!r}")

    async def set_variable(self, name: str, value: str) -> None:
        self.variables[name] = value


def make_line(spool: Path, desk: FakeDesk | None, *, now: datetime | None = None) -> PhonecastLine:
    async def sentences(text: str) -> PurePosixPath:
        return PurePosixPath("/media") / f"speech-{abs(hash(text))}"

    config = PhonecastLineConfig(
        prompts_dir=PurePosixPath("/prompts"),
        spool_host=spool,
        spool_asterisk=PurePosixPath(spool),
        timezone=ZoneInfo("Asia/Shanghai"),
        max_recording_s=30,
        attempts=2,
    )
    clock = ManualClock(now or datetime(2026, 12, 5, 2, 0, tzinfo=UTC))
    return PhonecastLine(config, clock=clock, desk=desk, sentences=sentences)


async def run_call(
    tmp_path: Path,
    desk: FakeDesk | None,
    keys: Sequence[str],
    *,
    speech: Sequence[float] = (3.0,),
    caller: str = NUMBER,
    presentation: str = "0",
    now: datetime | None = None,
) -> ScriptedAsterisk:
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    asterisk = ScriptedAsterisk(spool, keys, speech)
    line = make_line(spool, desk, now=now)
    request = AgiRequest("phonecast", ("call-1",), {"agi_callerid": caller, "agi_callingpres": presentation})
    try:
        await line.call(request, asterisk)  # type: ignore[arg-type]  # duck-typed AgiSession
    except AgiHangup:
        pass
    assert not list(spool.iterdir()), "the line leaves none of its recordings behind"
    return asterisk


@pytest.fixture
def desk(tmp_path: Path) -> FakeDesk:
    keep = tmp_path / "desk"
    keep.mkdir()
    return FakeDesk(keep)


@pytest.mark.parametrize("reason", sorted(REFUSAL_REASONS))
async def test_every_refusal_reason_has_its_own_sentence(tmp_path: Path, desk: FakeDesk, reason: str) -> None:
    desk.result = SubmitResult(SubmitStatus.REFUSED, None, 4, 0, reason=reason)
    asterisk = await run_call(tmp_path, desk, [PIN, "1", "1"])
    assert asterisk.heard[-2:] == [f"pc_refused_{reason}", "pc_goodbye"]
    assert f"pc_refused_{reason}" in PROMPTS
    assert asterisk.outcome is not None and asterisk.outcome["Reason"] == reason


async def test_a_reason_the_line_does_not_know_is_read_as_could_not_start(tmp_path: Path, desk: FakeDesk) -> None:
    desk.result = SubmitResult(SubmitStatus.REFUSED, None, 4, 0, reason="solar_flare")
    asterisk = await run_call(tmp_path, desk, [PIN, "1", "1"])
    assert asterisk.heard[-2:] == ["pc_refused_failed", "pc_goodbye"]
    assert "广播未能开始" in PROMPTS["pc_refused_failed"][1]


async def test_a_desk_that_fails_while_submitting_is_not_reported_as_either_outcome(
    tmp_path: Path, desk: FakeDesk
) -> None:
    async def broken(*args: object, **kwargs: object) -> SubmitResult:
        raise RuntimeError("database gone")

    desk.submit = broken  # type: ignore[method-assign]
    asterisk = await run_call(tmp_path, desk, [PIN, "1", "1"])
    assert asterisk.heard[-1] == "pc_outcome_unknown"
    assert asterisk.outcome == {"Status": "unknown"} and asterisk.variables["CX_RESULT"] == "done"


async def test_no_desk_or_a_withheld_number_hears_the_refusal_and_the_desk_is_not_asked(
    tmp_path: Path, desk: FakeDesk
) -> None:
    nobody = await run_call(tmp_path, None, [PIN, "1", "1"])
    assert nobody.heard == ["pc_refusal"] and nobody.stages == ["refused"]
    withheld = await run_call(tmp_path, desk, [PIN, "1", "1"], presentation="32")  # AGI's restricted bit
    assert withheld.heard == ["pc_refusal"] and desk.identified == [] and desk.submits == []
    assert withheld.keys == [PIN, "1", "1"]  # never asked anything


async def test_silence_asks_again_then_ends_the_call_with_nothing_broadcast(tmp_path: Path, desk: FakeDesk) -> None:
    asterisk = await run_call(tmp_path, desk, [PIN, "", ""])
    assert asterisk.heard[-4:] == ["pc_target_menu", "pc_no_keys", "pc_target_menu", "pc_no_keys_bye"]
    assert asterisk.heard.count("pc_no_keys") == 1 and asterisk.heard[-1] == "pc_no_keys_bye"
    assert asterisk.stages[-1] == "no_keys" and desk.submits == []


async def test_star_repeats_a_question_and_a_wrong_key_says_so(tmp_path: Path, desk: FakeDesk) -> None:
    asterisk = await run_call(tmp_path, desk, [PIN, "*", "7", "1", "*", "1"])
    assert asterisk.stages[:4] == ["pin", "target", "target", "target"]
    assert asterisk.heard.count("wrong_key") == 1
    # * at the review menu (再听一遍录音) plays the recording again, then the choices; it is not silence.
    assert asterisk.stages.count("review") == 2 and "pc_no_keys" not in asterisk.heard
    assert asterisk.heard.count("pc_you_said") == 2
    assert len([prompt for prompt in asterisk.heard if prompt.startswith("file:pc_call-1_")]) == 2
    assert len(desk.submits) == 1


async def test_a_recording_with_nothing_said_is_asked_for_again(tmp_path: Path, desk: FakeDesk) -> None:
    asterisk = await run_call(tmp_path, desk, [PIN, "1", "1"], speech=[0, 3.0])
    assert "pc_not_heard" in asterisk.heard and asterisk.stages.count("recording") == 2
    (submitted,) = desk.submits
    assert submitted["kept"].stat().st_size > 0


async def test_nothing_said_twice_ends_the_call(tmp_path: Path, desk: FakeDesk) -> None:
    asterisk = await run_call(tmp_path, desk, [PIN, "1", "1"], speech=[0, 0])
    assert asterisk.heard[-1] == "pc_nothing_heard" and desk.submits == []


async def test_a_time_tomorrow_is_said_as_tomorrow(tmp_path: Path, desk: FakeDesk) -> None:
    # 20:00 in the county; 07:30 is tomorrow morning (23:30 UTC today).
    desk.result = SubmitResult(SubmitStatus.SCHEDULED, 3, 4, 0, at=datetime(2026, 12, 5, 23, 30, tzinfo=UTC))
    asterisk = await run_call(
        tmp_path, desk, [PIN, "3", ZONE.code, "3", "0730"], now=datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    )
    assert desk.submits[0]["target"] == ZONE and desk.submits[0]["at"] == time(7, 30)
    assert "tts:已安排在明天7点30分播出。" in asterisk.heard


def test_a_time_of_day_is_four_digits_hhmm() -> None:
    assert time_of_day("0730") == time(7, 30) and time_of_day("2359") == time(23, 59)
    for wrong in ("2400", "0760", "730", "07300", "ab12", ""):
        assert time_of_day(wrong) is None


def test_the_longest_message_is_said_as_people_say_it() -> None:
    assert (
        spoken_duration(180) == "三分钟"
        and spoken_duration(150) == "两分钟三十秒"
        and spoken_duration(45) == "四十五秒"
    )
    said = {prompt.id: prompt.text for prompt in catalog("示例县", phonecast_max_s=120)}
    assert "最长两分钟" in said["pc_speak_after_tone"]
    # Nothing a stranger hears names the hotline or cadres.
    assert "热线" not in said["pc_refusal"] and "干部" not in said["pc_refusal"]
