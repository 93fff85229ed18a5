"""Fixtures for tests against the real Asterisk sandbox (see tests/support/asterisk.py).

``settings`` here points the service at the session's instance, so the usual
``runtime``/``app``/``server``/``new_client`` fixtures give a service whose
elected worker runs the AMI link, FastAGI, the tracker and reconciliation.
``hotline`` waits until that worker is connected and gives the test a
:class:`Hotline` harness; a test module sets other IVR timings with
``pytestmark = pytest.mark.ivr(operator_dial=…)``. These tests run on SQLite.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from hotline.dialtest import HangupAt, VillagerCall, VillagerScript
from hotline.recordings import inspect
from hotline.runtime import Telephony
from server import Runtime, build_runtime, sandbox_up
from settings import Settings
from tests.conftest import make_settings
from tests.support.asterisk import SandboxInstance, SandboxUnavailable, provision
from tests.support.required import missing

pytestmark = [pytest.mark.asterisk, pytest.mark.slow]

# What the simulated villager says (rendered by our TTS once per session).
VILLAGER_SENTENCE = "我是东村的王大娘。村口那座桥裂了一道大口子，娃娃们上学天天走，太危险了，请你们快来看看。"
OPERATOR_SENTENCE = "您好，我是热线接线员。您说的事情我记下了，我们马上安排人去看。"
CALLBACK_SENTENCE = "喂，你好，我是王大娘，你们打来的电话我接到了。"


@dataclass(frozen=True)
class Media:
    villager: PurePosixPath
    villager_duration_s: float


@pytest.fixture(scope="session")
def asterisk_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxInstance]:
    try:
        root = provision()
    except SandboxUnavailable as exc:  # as root a failure, see tests.support.required
        missing(f"the Asterisk sandbox could not be provisioned: {exc}")
    instance = SandboxInstance.new(root)
    data = tmp_path_factory.mktemp("asterisk-session")
    settings = make_settings(data, f"sqlite+aiosqlite:///{data / 'unused.db'}", **instance.settings_values())
    asyncio.run(sandbox_up(settings, provision=False))
    try:
        yield instance
    finally:
        instance.stop_and_remove()


@pytest.fixture(scope="session")
def media(asterisk_instance: SandboxInstance, tmp_path_factory: pytest.TempPathFactory) -> Media:
    """Prompts and test audio, rendered once into the instance (espeak-ng; edge is unreachable here)."""
    data = tmp_path_factory.mktemp("asterisk-media")
    settings = make_settings(data, f"sqlite+aiosqlite:///{data / 'unused.db'}", **asterisk_instance.settings_values())

    async def render() -> Media:
        runtime = build_runtime(settings)
        try:
            telephony = runtime.hotline.telephony
            assert telephony is not None and telephony.prompts is not None and telephony.media is not None
            telephony.paths.prepare()
            report = await telephony.prompts.install()
            assert not report.failed, report.failed
            villager = await telephony.media.sentence(VILLAGER_SENTENCE, "test-villager-says")
            await telephony.media.sentence(OPERATOR_SENTENCE, "test-operator")
            await telephony.media.sentence(CALLBACK_SENTENCE, "test-villager")
            duration = inspect(telephony.paths.media.to_host(f"{villager}.wav")).duration_s
        finally:
            await runtime.engine.dispose()
        return Media(villager, duration)

    return asyncio.run(render())


def ivr_marker(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("ivr")
    return dict(marker.kwargs) if marker else {}


@pytest.fixture
def settings(
    tmp_path: Path, database_url: str, asterisk_instance: SandboxInstance, media: Media, request: pytest.FixtureRequest
) -> Settings:
    return make_settings(tmp_path / "data", database_url, **asterisk_instance.settings_values(**ivr_marker(request)))


@dataclass
class Hotline:
    runtime: Runtime
    telephony: Telephony
    instance: SandboxInstance
    media: Media

    async def call(
        self,
        *,
        keys: tuple[str, ...] = (),
        speak: bool = True,
        hangup_at: HangupAt = "end",
        caller: str = "13800001111",
        caller_name: str = "",
        timeout_s: float = 120.0,
    ) -> VillagerCall:
        script = VillagerScript(
            caller=caller,
            caller_name=caller_name,
            keys=keys,
            audio=self.media.villager if speak else None,
            hangup_at=hangup_at,
        )
        call = await self.telephony.villager.call(script, timeout_s=timeout_s)
        assert call.ended
        return call

    async def settled(self, linkedid: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """What became of a call once the tracker has handed it over (settled and recordings attached)."""
        await self.telephony.tracker.wait_idle(timeout_s)
        outcome = await self.runtime.hotline.intake.outcome(linkedid)
        assert outcome is not None, f"nothing recorded for call {linkedid}"
        return outcome

    def spool(self) -> list[str]:
        return [path.name for path, _name in self.runtime.hotline.store.spool_files()]

    async def live_channels(self) -> list[dict[str, str]]:
        return await self.telephony.link.live_channels()

    async def hang_up_everything(self) -> None:
        link = self.telephony.link
        if not link.connected:
            return
        for _ in range(50):
            channels = await link.live_channels()
            if not channels:
                return
            for channel in channels:
                await link.hangup(channel["Channel"])
            await asyncio.sleep(0.1)


@pytest.fixture
async def hotline(
    server: TestServer, runtime: Runtime, settings: Settings, asterisk_instance: SandboxInstance, media: Media
) -> AsyncIterator[Hotline]:
    telephony = runtime.hotline.telephony
    assert telephony is not None
    await telephony.link.wait_connected(30)
    harness = Hotline(runtime, telephony, asterisk_instance, media)
    try:
        yield harness
    finally:
        await harness.hang_up_everything()
        with_timeout = telephony.tracker.wait_idle(30)
        await with_timeout


@pytest.fixture(autouse=True)
async def _clean_instance(
    asterisk_instance: SandboxInstance, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[None]:
    """Before each test: an empty spool and CDR file, and the dialplan rendered with this test's IVR settings."""
    asterisk_instance.reset()
    values = asterisk_instance.settings_values(**ivr_marker(request))
    render = make_settings(tmp_path / "render", f"sqlite+aiosqlite:///{tmp_path / 'render.db'}", **values)
    await sandbox_up(render, provision=False)
    yield
