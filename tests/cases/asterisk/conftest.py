"""Callbacks and follow-up calls against the real Asterisk sandbox, with the hotline's fixtures.

The Asterisk plugin's fixtures (``tests/support/asterisk.py``: this test
process's sandbox instance, prompts and test audio rendered once, the harness
that waits for the worker's AMI link, a clean spool before each test) are used
as they are, on the same instance as the hotline's tests.

The service here runs on the system clock (the hotline's parts time
MixMonitor and reconnects with it); the case-workflow rules that need a
controlled clock are tested in ``tests/cases`` without Asterisk.

Stand-ins from the sandbox's test contexts: an operator's phone that answers
and speaks (``Local/answer@cx-test-operator``) or rings for ever
(``Local/noanswer@cx-test-operator``); a villager's phone that answers and
speaks (``Local/answer@cx-test-phone``); and the simulated villager
(``Local/s@villager``), which answers and presses keys when the
:class:`KeyPresser` here tells it to — when the survey says it is listening,
never after a fixed wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import time
from typing import Any

import pytest

from hotline.ami import AmiError, AmiLink, Message
from server import Runtime, build_runtime
from settings import CasesSettings, Settings
from tests.support.asterisk import Hotline

OPERATOR_ANSWERS = "Local/answer@cx-test-operator"
NOBODY_ANSWERS = "Local/noanswer@cx-test-operator"
VILLAGER_ANSWERS = "Local/answer@cx-test-phone"
VILLAGER_PRESSES = "Local/s@villager"


def cases_settings(**overrides: Any) -> CasesSettings:
    values: dict[str, Any] = {
        "dial_template": VILLAGER_ANSWERS,
        "callback_operator_ring_s": 8.0,
        "callback_poll_s": 0.2,
        "followup_call_start": time(0, 0),
        "followup_call_end": time(0, 0),  # any hour: the tests run whenever they run
        "followup_after_days": 0,
        "followup_poll_s": 0.3,
        "followup_retry_interval_s": 1.0,
        "followup_ring_s": 4.0,
        "followup_concurrent_calls": 3,
        "followup_result_timeout_s": 120.0,
    }
    values.update(overrides)
    return CasesSettings(**values)


@pytest.fixture
def settings(asterisk_settings: Settings) -> Settings:
    return asterisk_settings.model_copy(update={"cases": cases_settings()})


@pytest.fixture(autouse=True)
def _clean_instance(clean_asterisk_instance: None) -> None:
    """Each test starts on an empty spool and CDR file, with its own IVR settings rendered."""


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """The system clock here (see the module docstring)."""
    built = build_runtime(settings)
    yield built
    await built.engine.dispose()


class KeyPresser:
    """Plays the villager on follow-up calls: presses ``keys[case_id]`` once the survey asks for it."""

    def __init__(self, link: AmiLink, keys: dict[int, str]) -> None:
        self._link = link
        self.keys = keys
        self._villagers: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.pressed: list[tuple[int, str]] = []
        link.add_listener(self._event)

    def close(self) -> None:
        self._link.remove_listener(self._event)

    def _event(self, event: Message) -> None:
        linkedid = event.get("Linkedid", "")
        if event.get("UserEvent") == "CxVillager" and event.get("Stage") == "ready":
            self._villagers[linkedid] = event.get("Channel", "")
        elif event.get("UserEvent") == "CxStage" and event.get("Kind") == "survey" and event.get("Stage") == "survey":
            case_id = int(event.get("Case", "0") or 0)
            key = self.keys.get(case_id)
            channel = self._villagers.get(linkedid)
            if key and channel:
                task = asyncio.get_running_loop().create_task(self._press(channel, case_id, key))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _press(self, channel: str, case_id: int, key: str) -> None:
        try:
            await self._link.action("Setvar", Channel=channel, Variable="CX_KEYS", Value=key)
            await self._link.action("Redirect", Channel=channel, Context="villager-act", Exten="keys", Priority=1)
            self.pressed.append((case_id, key))
        except AmiError:
            pass  # the call ended meanwhile


@pytest.fixture
def key_presser(hotline: Hotline) -> Iterator[KeyPresser]:
    presser = KeyPresser(hotline.telephony.link, {})
    yield presser
    presser.close()
