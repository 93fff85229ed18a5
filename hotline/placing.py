"""Calls placed for the case workflow (callbacks, follow-ups): an ``Originate`` sent once and followed to its end.

This is the hotline's side of ``cases.placing.CallLine`` (the protocol the
case workflow defines; ``server.py`` hands an :class:`OutboundCalls` over).
It knows Asterisk, the case workflow does not: one AMI listener follows every
call placed here by its Linkedid (the ``ChannelId`` the caller chose), and
translates what the link reports into what the workflow asks —

* the Originate not sent at all (no connection): ``placement = "not_sent"``;
  sent but lost (an AMI error after sending): ``"unknown"``, never re-sent;
* ``OriginateResponse``: the first phone answered, was busy (reason 5), rang
  out (reason 3) or failed (any other reason); the link dropping before it
  came, or nothing within the time, is ``unknown``;
* ``Newchannel``/``Hangup``: when the last channel of the call is gone;
* ``DialEnd``: how the second phone answered; ``UserEvent``: what the
  dialplan reported (a follow-up's key, a callback's villager leg).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from hotline.ami import AmiConnectionLost, AmiError, AmiLink, AmiNotConnected, Message, Originated

Placement = Literal["sent", "not_sent", "unknown"]
FirstAnswer = Literal["answered", "busy", "no_answer", "failed", "unknown"]

# OriginateResponse Reason codes (Asterisk's AST_CONTROL_*): 3 rang without an answer, 5 busy.
_FIRST_ANSWER: dict[str, FirstAnswer] = {"3": "no_answer", "5": "busy"}


@dataclass
class PlacedCall:
    """One call placed through :class:`OutboundCalls`; filled in by the AMI listener, in order."""

    call_id: str
    placement: Placement
    detail: str = ""
    originated: Originated | None = None
    channels: set[str] = field(default_factory=set)
    seen: bool = False
    dial_status: str | None = None
    reached: bool = False
    user_events: list[Message] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    _forget: OutboundCalls | None = None

    def handle(self, event: Mapping[str, str]) -> None:
        name = event.get("Event")
        if name == "Newchannel":
            self.channels.add(event.get("Uniqueid", ""))
            self.seen = True
        elif name == "Hangup":
            self.channels.discard(event.get("Uniqueid", ""))
            if self.seen and not self.channels:
                self.ended.set()
        elif name == "DialEnd":
            self.dial_status = event.get("DialStatus") or self.dial_status
            if self.dial_status == "ANSWER":
                self.reached = True
        elif name == "UserEvent":
            self.user_events.append(dict(event))

    async def first_answer(self, timeout_s: float) -> FirstAnswer:
        if self.originated is None:
            return "unknown"
        try:
            async with asyncio.timeout(timeout_s):
                response = await self.originated.result
        except AmiConnectionLost as exc:
            self.detail = exc.detail or exc.message
            return "unknown"
        except TimeoutError:
            self.detail = "no OriginateResponse"
            return "unknown"
        if response.get("Response", "").lower() == "success":
            return "answered"
        reason = response.get("Reason", "")
        self.detail = f"reason {reason}"
        answer = _FIRST_ANSWER.get(reason, "failed")
        return answer

    async def wait_end(self, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await self.ended.wait()
        except TimeoutError:
            return False
        return True

    def dialplan_events(self, name: str) -> Sequence[Mapping[str, str]]:
        return [event for event in self.user_events if event.get("UserEvent") == name]

    def close(self) -> None:
        if self._forget is not None:
            self._forget.forget(self.call_id)


class OutboundCalls:
    """Places calls into our dialplan contexts over the AMI link, and follows each by its Linkedid."""

    def __init__(self, link: AmiLink) -> None:
        self._link = link
        self._calls: dict[str, PlacedCall] = {}
        link.add_listener(self._handle)

    @property
    def connected(self) -> bool:
        return self._link.connected

    async def place(
        self, *, dial: str, call_id: str, context: str, ring_s: float, variables: Mapping[str, str]
    ) -> PlacedCall:
        """Sent exactly once; what became of it is on the returned call (never raises for the link's sake)."""
        call = PlacedCall(call_id, "sent", _forget=self)
        # Followed before the Originate goes out, so not one of its events is missed.
        self._calls[call_id] = call
        try:
            call.originated = await self._link.originate(
                channel=dial,
                channel_id=call_id,
                context=context,
                exten="s",
                ring_timeout_s=ring_s,
                variables=variables,
            )
        except AmiNotConnected as exc:
            call.placement, call.detail = "not_sent", exc.detail or exc.message
        except AmiError as exc:
            call.placement, call.detail = "unknown", exc.detail or exc.message
        return call

    def forget(self, call_id: str) -> None:
        self._calls.pop(call_id, None)

    def _handle(self, event: Message) -> None:
        linkedid = event.get("Linkedid")
        if linkedid is None:
            return
        call = self._calls.get(linkedid)
        if call is not None:
            call.handle(event)
