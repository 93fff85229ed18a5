"""A fake phone-broadcast desk (the PhonecastDesk Protocol of hotline/phonecast.py) for the line's tests.

It answers as told and remembers every question; the real desk is phonecast/'s.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any

from hotline.phonecast import (
    Cadre,
    LiveEnd,
    LiveStart,
    LiveStatus,
    PhonecastTarget,
    PhonecastTargets,
    PinVerdict,
    SubmitResult,
    SubmitStatus,
)

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

    # The live seam (issue 18): answers ``live`` (refused unless a test says otherwise); ``live_ended``
    # keeps a copy of the recording as the real desk does.
    live: LiveStart = field(
        default_factory=lambda: LiveStart(LiveStatus.REFUSED, None, speakers=4, after=0, unanswered=0, reason="failed")
    )
    went_live: list[dict[str, Any]] = field(default_factory=list)
    ended: list[dict[str, Any]] = field(default_factory=list)
    preempted: dict[str, asyncio.Event] = field(default_factory=dict)

    async def go_live(
        self, cadre: Cadre, caller_number: str, target: PhonecastTarget, *, call_id: str, room: str
    ) -> LiveStart:
        self.went_live.append(
            {"cadre": cadre, "caller": caller_number, "target": target, "call_id": call_id, "room": room}
        )
        return self.live

    async def live_ended(self, call_id: str, ended_by: LiveEnd, recording: Path | None) -> None:
        kept = None
        if recording is not None:
            kept = self.keep / f"{call_id}-live.wav"
            shutil.copyfile(recording, kept)
        self.ended.append({"call_id": call_id, "ended_by": ended_by, "kept": kept})

    def live_preempted(self, call_id: str) -> asyncio.Event:
        return self.preempted.setdefault(call_id, asyncio.Event())
