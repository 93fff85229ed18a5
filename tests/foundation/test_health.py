"""/healthz's registry: a probe that raises is reported down, logged once with its traceback, and the rest answer."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from common.health import ComponentHealth, HealthRegistry


async def test_a_probe_that_raises_is_reported_down_logged_once_and_the_others_still_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = HealthRegistry()
    failing = True

    async def broken() -> dict[str, Any]:
        if failing:
            raise KeyError("status")  # a bug in the probe, not a component that is down
        return {"status": "ok"}

    registry.register("broken", broken)
    registry.register_component(ComponentHealth("fine", status="ok"))

    def logged() -> list[logging.LogRecord]:
        return [record for record in caplog.records if record.name == "common.health"]

    with caplog.at_level(logging.ERROR, logger="common.health"):
        first = await registry.report()
        second = await registry.report()
        assert (
            first
            == second
            == {
                "broken": {"status": "down", "detail": "probe failed: KeyError('status')"},
                "fine": {"status": "ok"},
            }
        )
        (record,) = logged()  # when it started failing, not at every poll
        assert record.getMessage() == "health probe broken failed"
        assert record.exc_info is not None and record.exc_info[0] is KeyError

        failing = False
        assert (await registry.report())["broken"] == {"status": "ok"}
        failing = True
        await registry.report()
        assert len(logged()) == 2  # failing again after an answer is news again
