"""What the dialplan asks the service during a call (the FastAGI scripts), and what it is told back.

=============  ===========================================  ===============================================
script         arguments                                    sets
=============  ===========================================  ===============================================
``message``    linkedid, category, key, attempt, dialtest,  CX_RESULT case|silent, CX_CASENO, CX_READBACK
               started                                      (digit prompts joined by &), CX_READBACK_DIGITS,
                                                            CX_PIN_READBACK (withheld callers only)
``transfer``   linkedid, key, dialtest, started             as ``message`` (the operator answered)
``status``     linkedid, typed number, typed PIN            CX_RESULT found|need_pin|confidential|not_found,
                                                            CX_STATUS, CX_STATUS_PROMPT
``ended``      linkedid, stage, key, category, DIALSTATUS,  nothing (the channel is gone): the call is
               dialtest, started, told, ended by            settled — a case, a missed call, a status query
=============  ===========================================  ===============================================

The caller's number and name come from the request itself (``agi_callerid``,
``agi_calleridname``, ``agi_callingpres``), never from an argument. ``started``
is when the call began (``CX_STARTED``: the CDR's start, epoch seconds), so a
case dates from the call, not from the request; ``told`` is 1 once the number
was read back in full; ``ended by`` is who ended it (caller, ivr, call_limit,
system: Asterisk stopping with the call up).
"""

from __future__ import annotations

import logging
import re
from pathlib import PurePosixPath

from common.clock import Clock
from hotline.calls import epoch_time
from hotline.fastagi import AgiHandler, AgiRequest, AgiSession, BadAgiRequest
from hotline.intake import CLOSED_AT_HANGUP, ENDINGS, CallFacts, CaseTicket, IntakeService

log = logging.getLogger(__name__)

LINKEDID = re.compile(r"^[A-Za-z0-9._-]{1,150}$")
KEYS = re.compile(r"^[0-9*#]?$")
CATEGORIES = frozenset({"petition", "discipline"})


def _linkedid(request: AgiRequest) -> str:
    value = request.require(1, "linkedid")
    if not LINKEDID.match(value):
        raise BadAgiRequest(f"{request.script}: not a linkedid: {value[:40]!r}")
    return value


def _key(value: str) -> str:
    return value if KEYS.match(value) else ""


class HotlineAgi:
    """The FastAGI scripts of the hotline dialplan."""

    def __init__(self, intake: IntakeService, prompts_dir: PurePosixPath, *, clock: Clock) -> None:
        self._intake = intake
        self._prompts = prompts_dir
        self._clock = clock

    def handlers(self) -> dict[str, AgiHandler]:
        return {"message": self.message, "transfer": self.transfer, "status": self.status, "ended": self.ended}

    def _facts(self, request: AgiRequest, linkedid: str, **fields: object) -> CallFacts:
        facts = CallFacts(
            linkedid=linkedid,
            caller_raw=request.caller_number,
            caller_name=request.caller_name,
            presentation=request.caller_presentation,
        )
        for name, value in fields.items():
            setattr(facts, name, value)
        return facts

    def readback(self, digits: str) -> str:
        """The digit prompts for a number, joined for one Playback(): 1 is read 幺."""
        return "&".join(str(self._prompts / f"digit_{digit}") for digit in digits)

    async def _tell_case(self, session: AgiSession, ticket: CaseTicket) -> None:
        values = {
            "CX_CASENO": ticket.number,
            "CX_READBACK": self.readback(ticket.number),
            "CX_READBACK_DIGITS": ticket.number,
            # A caller whose number was withheld cannot be recognised at the status query: she needs the PIN.
            "CX_PIN_READBACK": self.readback(ticket.pin) if ticket.caller_withheld else "",
            "CX_RESULT": "case",
        }
        await session.set_variables(values)

    async def message(self, request: AgiRequest, session: AgiSession) -> None:
        linkedid = _linkedid(request)
        category = request.arg(2)
        found = await self._intake.message_audio(linkedid)
        if found is None or not self._intake.has_speech(found[0]):
            # Nothing said (yet): the dialplan asks again, or keeps it as a missed call.
            await session.set_variable("CX_RESULT", "silent")
            return
        facts = self._facts(
            request,
            linkedid,
            stage="recorded",
            category=category if category in CATEGORIES else None,
            choice=_key(request.arg(3)),
            test_call=request.arg(5) == "1",
            started_at=epoch_time(request.arg(6)),
            number_told=False,  # she is about to hear it
        )
        ticket = await self._intake.open_case(facts, via="fastagi", message=found[1])
        await self._tell_case(session, ticket)

    async def transfer(self, request: AgiRequest, session: AgiSession) -> None:
        linkedid = _linkedid(request)
        facts = self._facts(
            request,
            linkedid,
            stage="talked",
            category="petition",
            choice=_key(request.arg(2)) or "0",
            test_call=request.arg(3) == "1",
            started_at=epoch_time(request.arg(4)),
            number_told=False,
        )
        ticket = await self._intake.open_case(facts, via="fastagi")
        await self._tell_case(session, ticket)

    async def status(self, request: AgiRequest, session: AgiSession) -> None:
        _linkedid(request)
        answer = await self._intake.status(
            request.arg(2), request.caller_number, request.caller_presentation, pin=request.arg(3)
        )
        values = {"CX_STATUS": answer.status or "", "CX_RESULT": answer.result}
        if answer.status:
            values["CX_STATUS_PROMPT"] = str(self._prompts / f"status_{answer.status}")
        await session.set_variables(values)

    async def ended(self, request: AgiRequest, session: AgiSession) -> None:
        linkedid = _linkedid(request)
        facts = self._facts(
            request,
            linkedid,
            stage=request.arg(2) or None,
            choice=_key(request.arg(3)),
            category=request.arg(4) if request.arg(4) in CATEGORIES else None,
            dial_status=request.arg(5) or None,
            test_call=request.arg(6) == "1",
            started_at=epoch_time(request.arg(7)),
            number_told=request.arg(8) == "1",
            ended_by=request.arg(9) if request.arg(9) in ENDINGS else None,
            ended_at=self._clock.now(),  # the hang-up handler asks as the channel hangs up
        )
        await self._intake.settle(facts, via="fastagi")
        # This channel recorded her message and is hanging up: Record() has returned, the file is closed, so
        # it moves now, while an operator waits for it — not when the call's last channel is gone (the
        # tracker, a moment later, finds it attached). Other recordings (MixMonitor's) wait for the tracker.
        await self._intake.attach(linkedid, kinds=CLOSED_AT_HANGUP)
