"""手机喊话, the call side: a cadre dials the phone-broadcast number through the real Asterisk.

Behind the line stands a fake desk (the Protocol in hotline/phonecast.py, recording what it was
asked); the real desk is phonecast/'s. The simulated villager dials ``Local/<DID>@from-trunk``,
so every call also proves that the number reaches this line and not the hotline. The line's
waits are short in these tests (tests/support/asterisk.py: 3 s per question, 2 tries, 2 s of
silence ends a recording) so that a whole call takes seconds.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from hotline.dialtest import VillagerCall, VillagerScript
from hotline.phonecast import (
    Cadre,
    PhonecastTarget,
    PhonecastTargets,
    PinVerdict,
    SubmitResult,
    SubmitStatus,
)
from hotline.recordings import inspect
from storage.models import Call, Case, MissedCall
from tests.support.asterisk import Hotline

CADRE = Cadre(user_id=7, name="巴特尔")
NUMBER = "13947100007"
PIN = "246810"
EAST = PhonecastTarget("village", 11, "东风村", "101", 4)
WEST = PhonecastTarget("village", 12, "西沟村", "102", 3)
TOWNSHIP = PhonecastTarget("township", 2, "红旗镇", "20", 9)
ZONE = PhonecastTarget("zone", 31, "红旗镇中心广场", "3101", 2)


@dataclass
class FakeDesk:
    """A desk that answers as told and remembers every question (a PhonecastDesk)."""

    keep: Path
    villages: tuple[PhonecastTarget, ...] = (EAST,)
    townships: tuple[PhonecastTarget, ...] = (TOWNSHIP,)
    lock_after: int | None = None  # LOCKED from this check on (1: the first)
    result: SubmitResult = field(default_factory=lambda: SubmitResult(SubmitStatus.STARTED, 1, 4, 0))
    identified: list[str] = field(default_factory=list)
    pins: list[str] = field(default_factory=list)
    submits: list[dict[str, Any]] = field(default_factory=list)

    async def identify(self, caller_number: str) -> Cadre | None:
        self.identified.append(caller_number)
        return CADRE if caller_number == NUMBER else None

    async def check_pin(self, cadre: Cadre, caller_number: str, pin: str) -> PinVerdict:
        self.pins.append(pin)
        if self.lock_after is not None and len(self.pins) >= self.lock_after:
            return PinVerdict.LOCKED
        return PinVerdict.ACCEPTED if pin == PIN else PinVerdict.WRONG

    async def targets(self, cadre: Cadre) -> PhonecastTargets:
        return PhonecastTargets(self.villages, self.townships)

    async def zone_by_code(self, cadre: Cadre, code: str) -> PhonecastTarget | None:
        return ZONE if code == ZONE.code else None

    async def submit(
        self,
        cadre: Cadre,
        caller_number: str,
        target: PhonecastTarget,
        recording: Path,
        *,
        call_id: str,
        at_local: time | None = None,
    ) -> SubmitResult:
        # Copied as the real desk does: the line removes its own file when the call ends.
        kept = self.keep / f"{call_id}-{len(self.submits)}.wav"
        shutil.copyfile(recording, kept)
        self.submits.append(
            {
                "cadre": cadre,
                "caller": caller_number,
                "target": target,
                "kept": kept,
                "call_id": call_id,
                "at": at_local,
            }
        )
        return self.result


@pytest.fixture
def desk(hotline: Hotline, tmp_path: Path) -> FakeDesk:
    keep = tmp_path / "desk"
    keep.mkdir()
    fake = FakeDesk(keep)
    hotline.runtime.hotline.use_phonecast_desk(fake)
    return fake


async def dial(
    hotline: Hotline, keys: tuple[str, ...], *, caller: str = NUMBER, speak: bool = True, hangup_at: str = "end"
) -> VillagerCall:
    script = VillagerScript(
        caller=caller,
        keys=keys,
        audio=hotline.media.villager if speak else None,
        line="phonecast",
        hangup_at=hangup_at,  # type: ignore[arg-type]
    )
    call = await hotline.telephony.villager.call(script, timeout_s=120)
    assert call.ended
    return call


async def test_a_cadre_broadcasts_to_her_village_and_hears_that_it_started(hotline: Hotline, desk: FakeDesk) -> None:
    call = await dial(hotline, (PIN, "1", "1"))
    assert call.stages[:4] == ["pin", "target", "recording", "review"]
    assert desk.pins == [PIN]
    (submitted,) = desk.submits
    assert submitted["target"] == EAST and submitted["cadre"] == CADRE and submitted["caller"] == NUMBER
    assert submitted["call_id"] == call.linkedid and submitted["at"] is None
    # What was spoken, as a real WAV: the villager's sentence plus the silence that ended the recording.
    audio = inspect(submitted["kept"])
    assert audio.has_speech(0.4)
    expected = hotline.media.villager_duration_s
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
