"""The call tracker hands calls that end together over together: none waits behind another's database work."""

from __future__ import annotations

import asyncio

import pytest

from common.clock import SystemClock
from hotline.calls import CallTracker
from hotline.intake import CallFacts

pytestmark = pytest.mark.timeout(30)


async def test_twenty_calls_ending_at_once_are_settled_at_once_not_two_by_two() -> None:
    """20 callers hanging up within a second: each call's settling (and its recording's move) starts at once.
    With two workers, the 20th waited for 18 others (over a second on a busy SQLite)."""
    calls = 20
    started: set[str] = set()
    all_started = asyncio.Event()

    async def finished(facts: CallFacts) -> None:
        started.add(facts.linkedid)
        if len(started) == calls:
            all_started.set()
        await all_started.wait()  # each holds its worker until every call has begun

    tracker = CallTracker(finished, clock=SystemClock())
    await tracker.start()
    try:
        for index in range(calls):
            linkedid = f"burst-{index}"
            for event in (
                {"Event": "Newchannel", "Linkedid": linkedid, "Uniqueid": f"{linkedid}-a", "Timestamp": "1.0"},
                {"Event": "UserEvent", "UserEvent": "CxStage", "Linkedid": linkedid, "Kind": "hotline"},
                {"Event": "Hangup", "Linkedid": linkedid, "Uniqueid": f"{linkedid}-a", "Timestamp": "2.0"},
            ):
                tracker.handle(event)
        async with asyncio.timeout(5):
            await all_started.wait()
        await tracker.wait_idle(5)
    finally:
        await tracker.stop()
    assert tracker.finished == calls
