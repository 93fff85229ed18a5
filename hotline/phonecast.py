"""What the phone-broadcast line (手机喊话) asks of whoever decides and plays: the desk.

The telephony side (hotline) drives the call and owns this Protocol; phonecast/ implements it and
server.py hands the implementation to the line. Caller id is never proof: a known number only
selects whose PIN is asked.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import Literal, Protocol


@dataclass(frozen=True)
class Cadre:
    user_id: int
    name: str


class PinVerdict(enum.Enum):
    ACCEPTED = "accepted"
    WRONG = "wrong"  # counted by the desk toward the lockout; the line ends the call after three in one call
    LOCKED = "locked"  # phone broadcasting is locked for this user (or this number and user): the call ends


TargetKind = Literal["village", "township", "zone"]


@dataclass(frozen=True)
class PhonecastTarget:
    kind: TargetKind
    id: int
    name: str  # read back by name
    code: str  # 喊话编号 (digits)
    speakers: int  # loudspeakers it reaches today


@dataclass(frozen=True)
class PhonecastTargets:
    villages: tuple[PhonecastTarget, ...]  # in the cadre's scope, ordered by code
    townships: tuple[PhonecastTarget, ...]


class SubmitStatus(enum.Enum):
    STARTED = "started"  # playing: speakers answered, unanswered did not (部分喇叭未应答 when > 0)
    QUEUED = "queued"  # waiting its turn in a zone (another phone broadcast or an emergency is on)
    SCHEDULED = "scheduled"  # accepted for `at`
    REFUSED = "refused"  # nothing will play; `reason` says why


# Reasons the desk may give; the line has one prompt for each (a reason not listed is read as
# "广播未能开始" and logged).
REFUSAL_REASONS = frozenset({"quiet_hours", "too_long", "no_speakers", "not_in_scope", "locked", "disk_full", "failed"})


@dataclass(frozen=True)
class SubmitResult:
    status: SubmitStatus
    record_id: int | None  # the 喊话记录 row (None only when refused before one was written)
    speakers: int  # STARTED: speakers playing; otherwise: speakers targeted
    unanswered: int  # STARTED: targeted speakers that did not start
    reason: str | None = None  # REFUSED: one of REFUSAL_REASONS
    at: datetime | None = None  # SCHEDULED: when it will play (aware, UTC)


class LiveStatus(enum.Enum):
    ON_AIR = "on_air"  # the zones are held for this call: the caller speaks now
    BUSY = "busy"  # a target zone is live with another call: 该区域正在喊话 (the caller may record instead)
    EMERGENCY = "emergency"  # an emergency holds a target zone: a live call never starts over one
    REFUSED = "refused"  # reason is one of REFUSAL_REASONS (quiet hours, ...)


@dataclass(frozen=True)
class LiveStart:
    status: LiveStatus
    record_id: int | None  # the 喊话记录 row (None only when refused before one was written)
    speakers: int  # ON_AIR: loudspeakers hearing the caller live now; otherwise: speakers targeted
    after: int  # HTTP-pull terminals that cannot play live: they get the recording after the call
    unanswered: int  # ON_AIR: targeted live speakers that did not start
    reason: str | None = None


class LiveEnd(enum.Enum):
    CALLER = "caller"  # hung up, or pressed #
    LIMIT = "limit"  # the hard limit hotline.phonecast_live_max_s was reached
    EMERGENCY = "emergency"  # an emergency took the zones: the caller hears 紧急广播插播，喊话结束
    FAILED = "failed"  # Asterisk or the link failed


class PhonecastDesk(Protocol):
    async def identify(self, caller_number: str) -> Cadre | None:
        """The active cadre who registered this number (normalised by common.phone_numbers), if any."""

    async def check_pin(self, cadre: Cadre, caller_number: str, pin: str) -> PinVerdict:
        """Checks the PIN, counts failures per number+user and per user (kept in the database), audits."""

    async def targets(self, cadre: Cadre) -> PhonecastTargets:
        """The villages and townships in the cadre's 可电话喊话 scope."""

    async def zone_by_code(self, cadre: Cadre, code: str) -> PhonecastTarget | None:
        """A zone by its 喊话编号, only if it lies within the cadre's scope."""

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
        """Keeps the recording (copied; the line's file may go) and broadcasts it now, or at `at_local`
        county time (today, or tomorrow if already past). Returns once the outcome is known: started
        on the speakers (waits a bounded time for them), queued, scheduled or refused. Idempotent per
        call_id: a second submit with the same call_id returns the first result and plays nothing more."""

    async def go_live(
        self, cadre: Cadre, caller_number: str, target: PhonecastTarget, *, call_id: str, room: str
    ) -> LiveStart:
        """Holds the target's zones for a live call and connects their speakers to the conference
        `room` (the line has put the caller in it, muted to nobody, recording). Returns once the
        speakers are connected or refused. Idempotent per call_id."""

    async def live_ended(self, call_id: str, ended_by: LiveEnd, recording: Path | None) -> None:
        """The call left the room: releases the zones, closes the as-run rows, keeps a copy of the
        recording on the 喊话记录 row and queues it as a recorded item for the HTTP-pull terminals
        of the target. Idempotent per call_id."""

    def live_preempted(self, call_id: str) -> asyncio.Event:
        """Set when the dispatcher takes the zones away (an emergency): the line then ends the
        caller's conference and plays pc_live_emergency."""
