"""Callbacks and follow-up calls against the real Asterisk sandbox, with the hotline's fixtures.

The hotline's fixtures (``tests/hotline/asterisk/conftest.py``: prompts and
test audio rendered once, the harness that waits for the worker's AMI link,
a clean spool before each test) are used as they are; this directory runs its
own sandbox instance (``c<pid>``, beside the hotline tests' ``t<pid>``), so a
whole-suite run never shares one instance between two session fixtures.

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
import dataclasses
import os
from collections.abc import AsyncIterator, Iterator
from datetime import time
from pathlib import Path
from typing import Any

import pytest

from hotline.ami import AmiError, AmiLink, Message
from server import Runtime, build_runtime, sandbox_up
from settings import CasesSettings, Settings
from tests.conftest import make_settings
from tests.hotline.asterisk import conftest as hotline_fixtures
from tests.hotline.asterisk.conftest import Hotline, Media
from tests.support.asterisk import SandboxInstance, SandboxUnavailable, provision

pytestmark = [pytest.mark.asterisk, pytest.mark.slow]

# The hotline's own fixtures, used by name in this directory (against this directory's instance).
media = hotline_fixtures.media
hotline = hotline_fixtures.hotline
_clean_instance = hotline_fixtures._clean_instance

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


@pytest.fixture(scope="session")
def asterisk_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxInstance]:
    try:
        root = provision()
    except SandboxUnavailable as exc:
        pytest.skip(f"no Asterisk sandbox on this machine: {exc}")
    instance = dataclasses.replace(SandboxInstance.new(root), name=f"c{os.getpid()}")
    data = tmp_path_factory.mktemp("cases-asterisk-session")
    settings = make_settings(data, f"sqlite+aiosqlite:///{data / 'unused.db'}", **instance.settings_values())
    asyncio.run(sandbox_up(settings, provision=False))
    try:
        yield instance
    finally:
        instance.stop_and_remove()


@pytest.fixture
def settings(
    tmp_path: Path, database_url: str, asterisk_instance: SandboxInstance, media: Media, request: pytest.FixtureRequest
) -> Settings:
    marker = request.node.get_closest_marker("ivr")
    ivr: dict[str, Any] = dict(marker.kwargs) if marker else {}
    values = asterisk_instance.settings_values(**ivr)
    return make_settings(tmp_path / "data", database_url, **values, cases=cases_settings())


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
