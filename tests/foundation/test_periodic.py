"""The one periodic service: rounds every interval, a failing round logged and the next one run, a clean stop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from common.periodic import Periodic


async def test_a_failing_round_is_logged_and_the_next_round_still_comes(caplog: pytest.LogCaptureFixture) -> None:
    rounds = 0
    third = asyncio.Event()

    async def step() -> None:
        nonlocal rounds
        rounds += 1
        if rounds == 3:
            third.set()
        if rounds == 1:
            raise OSError("the first answer was garbage")

    periodic = Periodic("watch", step, interval_s=0.01)
    with caplog.at_level(logging.ERROR, logger="common.periodic"):
        await periodic.start()
        async with asyncio.timeout(5):
            await third.wait()
        await periodic.stop()
    assert "watch: a round failed" in caplog.text and "garbage" in caplog.text
    assert not periodic.running


async def test_stopping_lets_the_round_in_progress_finish() -> None:
    started, finished = asyncio.Event(), asyncio.Event()

    async def step() -> None:
        started.set()
        await asyncio.sleep(0.05)  # a database call in progress, say
        finished.set()

    periodic = Periodic("slow", step, interval_s=60, first_round_at_once=True)
    await periodic.start()
    await started.wait()
    await periodic.stop()
    assert finished.is_set()
