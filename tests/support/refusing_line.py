"""A line to Asterisk that refuses to ring the operator's phone, as Asterisk answers for an unregistered endpoint.

The callback service places a call to the operator's own phone first; when that phone cannot be rung Asterisk
ends the originate with reason 0. This line answers that way every time, so a browser test can watch a
failed callback's reason reach the page without a real Asterisk (the real one is in ``tests/cases/asterisk``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cases.placing import FirstAnswer, PlacedCall, Placement


class RefusedCall:
    """What Asterisk answers when the operator's phone cannot be rung (an endpoint not registered): reason 0."""

    placement: Placement = "sent"
    detail = ""
    dial_status: str | None = None
    reached = False

    async def first_answer(self, timeout_s: float) -> FirstAnswer:
        self.detail = "reason 0"
        return "failed"

    async def wait_end(self, timeout_s: float) -> bool:
        return True

    def dialplan_events(self, name: str) -> Sequence[Mapping[str, str]]:
        return []

    def close(self) -> None:
        pass


class RefusingLine:
    connected = True

    async def place(
        self, *, dial: str, call_id: str, context: str, ring_s: float, variables: Mapping[str, str]
    ) -> PlacedCall:
        return RefusedCall()
