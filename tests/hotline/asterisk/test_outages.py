"""Outages: the AMI link cut mid-call, Asterisk restarted, the service started without Asterisk.

Afterwards every call has exactly one case and no recording is lost. The simulated villagers use a
link of their own straight to Asterisk, so they go on calling while the service's link is down.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select

from common.clock import SystemClock
from hotline.ami import AmiConfig, AmiLink, Message
from hotline.dialtest import HangupAt, SimulatedVillager, VillagerCall, VillagerScript
from server import Runtime
from settings import Settings
from storage.models import Call, Case, MissedCall
from tests.conftest import make_settings
from tests.support.asterisk import Media, SandboxInstance, ivr_marker
from tests.support.tcp_proxy import CuttableProxy


@pytest.fixture
async def ami_proxy(asterisk_instance: SandboxInstance, request: pytest.FixtureRequest) -> AsyncIterator[CuttableProxy]:
    """Parametrize indirectly with "down" to have it cut before the service starts."""
    proxy = CuttableProxy("127.0.0.1", asterisk_instance.ami_port)
    await proxy.start()
    if getattr(request, "param", "up") == "down":
        proxy.cut()
    yield proxy
    await proxy.stop()


@pytest.fixture
def settings(
    tmp_path: Path,
    database_url: str,
    asterisk_instance: SandboxInstance,
    media: Media,
    ami_proxy: CuttableProxy,
    request: pytest.FixtureRequest,
) -> Settings:
    """The service reaches AMI through a proxy the test can cut."""
    values = asterisk_instance.settings_values(**ivr_marker(request))
    values["ami"] = values["ami"].model_copy(update={"port": ami_proxy.port})
    return make_settings(tmp_path / "data", database_url, **values)


class Villagers:
    """Simulated villagers on their own AMI link, and a way to wait for their calls' stages."""

    def __init__(self, link: AmiLink, media: Media) -> None:
        self.link = link
        self.media = media
        self.villager = SimulatedVillager(link)
        self.reached: dict[tuple[str, str], asyncio.Event] = {}
        link.add_listener(self._listen)

    def _listen(self, event: Message) -> None:
        if event.get("Event") != "UserEvent":
            return
        stage = event.get("Stage", "") if event.get("UserEvent") in ("CxStage", "CxVillager") else ""
        self.reached.setdefault((event.get("Linkedid", ""), stage), asyncio.Event()).set()

    async def wait(self, linkedid: str, stage: str, timeout_s: float = 60) -> None:
        async with asyncio.timeout(timeout_s):
            await self.reached.setdefault((linkedid, stage), asyncio.Event()).wait()

    def start(
        self, call_id: str, *, hangup_at: HangupAt = "end", keys: tuple[str, ...] = ("1",)
    ) -> asyncio.Task[VillagerCall]:
        script = VillagerScript(caller="13700000000", keys=keys, audio=self.media.villager, hangup_at=hangup_at)
        return asyncio.ensure_future(self.villager.call(script, call_id=call_id, timeout_s=120))


@pytest.fixture
async def villagers(asterisk_instance: SandboxInstance, media: Media) -> AsyncIterator[Villagers]:
    link = AmiLink(
        AmiConfig("127.0.0.1", asterisk_instance.ami_port, "cunxiang", asterisk_instance.ami_secret, reconnect_max_s=1),
        clock=SystemClock(),
    )
    await link.start()
    await link.wait_connected(30)
    yield Villagers(link, media)
    await link.stop()


async def counts(runtime: Runtime) -> tuple[int, int, int]:
    async with runtime.sessions() as session:
        return (
            await session.scalar(select(func.count()).select_from(Case)) or 0,
            await session.scalar(select(func.count()).select_from(MissedCall)) or 0,
            await session.scalar(select(func.count()).select_from(Call)) or 0,
        )


async def assert_each_call_has_one_case_with_its_recording(runtime: Runtime, linkedids: list[str]) -> None:
    for linkedid in linkedids:
        outcome = await runtime.hotline.intake.outcome(linkedid)
        assert outcome is not None and outcome["outcome"] == "case", (linkedid, outcome)
        (recording,) = outcome["case"]["recordings"]
        assert recording["kind"] == "message" and not recording["empty"]
    assert await counts(runtime) == (len(linkedids), 0, len(linkedids))
    assert runtime.hotline.store.spool_files() == []


async def test_calls_that_end_while_the_ami_link_is_cut_each_become_one_case_once_it_is_back(
    server: TestServer, runtime: Runtime, ami_proxy: CuttableProxy, villagers: Villagers
) -> None:
    telephony = runtime.hotline.telephony
    assert telephony is not None
    await telephony.link.wait_connected(30)
    ids = [f"cut-{index}-{SimulatedVillager.new_call_id()}" for index in range(4)]
    calls = [
        villagers.start(call_id, hangup_at="recording" if index % 2 else "end") for index, call_id in enumerate(ids)
    ]
    for call_id in ids:
        await villagers.wait(call_id, "speaking")
    runs = telephony.reconciler.runs
    ami_proxy.cut()  # the service's socket is closed under it, and it cannot reconnect
    finished = await asyncio.gather(*calls)
    assert all(call.ended for call in finished)
    assert not telephony.link.connected
    # Meanwhile FastAGI still ran: cases were opened, but no recording has moved (no one saw the hang-ups).
    assert len(runtime.hotline.store.spool_files()) == 4
    ami_proxy.restore()
    await telephony.link.wait_connected(30)
    await telephony.reconciler.wait_for_run(after=runs, timeout_s=30)
    await telephony.tracker.wait_idle(30)
    await assert_each_call_has_one_case_with_its_recording(runtime, ids)


@pytest.mark.ivr(record_silence_s=30)
async def test_calls_cut_off_by_an_asterisk_restart_keep_their_recordings_and_each_become_one_case(
    server: TestServer, runtime: Runtime, villagers: Villagers, asterisk_instance: SandboxInstance
) -> None:
    telephony = runtime.hotline.telephony
    assert telephony is not None
    await telephony.link.wait_connected(30)
    ids = [f"restart-{index}-{SimulatedVillager.new_call_id()}" for index in range(3)]
    calls = [villagers.start(call_id) for call_id in ids]
    for call_id in ids:
        await villagers.wait(call_id, "spoken")  # said her piece; the recording is still running
    runs = telephony.reconciler.runs
    sandbox = asterisk_instance.sandbox
    await sandbox.stop()
    await sandbox.start()
    for call in calls:
        call.cancel()  # the villagers' side of those calls died with Asterisk
    await asyncio.gather(*calls, return_exceptions=True)
    await telephony.link.wait_connected(60)
    await telephony.reconciler.wait_for_run(after=runs, timeout_s=60)
    await telephony.tracker.wait_idle(30)
    await assert_each_call_has_one_case_with_its_recording(runtime, ids)


@pytest.mark.parametrize("ami_proxy", ["down"], indirect=True)
async def test_a_service_started_without_asterisk_says_so_and_settles_the_calls_once_it_can(
    ami_proxy: CuttableProxy, villagers: Villagers, server: TestServer, runtime: Runtime
) -> None:
    telephony = runtime.hotline.telephony
    assert telephony is not None
    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(30):
            while True:
                async with session.get(server.make_url("/healthz")) as response:
                    health = await response.json()
                if health["components"].get("ami", {}).get("status") == "down":
                    break
                await asyncio.sleep(0.1)
        assert response.status == 200
        assert health["components"]["asterisk"]["status"] == "down"
        assert health["components"]["fastagi"]["status"] == "ok"
    call_id = f"late-{SimulatedVillager.new_call_id()}"
    call = await villagers.start(call_id)
    assert call.read_back is not None  # FastAGI answered: she heard her case number
    ami_proxy.restore()
    await telephony.link.wait_connected(30)
    await telephony.reconciler.wait_for_run(after=0, timeout_s=30)
    await telephony.tracker.wait_idle(30)
    await assert_each_call_has_one_case_with_its_recording(runtime, [call_id])
