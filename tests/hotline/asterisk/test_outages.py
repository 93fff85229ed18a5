"""Outages: the AMI link cut at the hang-ups, Asterisk restarted with calls up, the service started without Asterisk.

Afterwards every call has exactly one case (or missed call) with its recording — and every record says
what happened: when the call began and ended (Asterisk's times, not when the service heard of it), who
ended it, whether the caller heard her case number. The simulated villagers use a link of their own
straight to Asterisk, so they go on calling while the service's link is down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from hotline.dialtest import SimulatedVillager
from hotline.intake import CallFacts, Settlement
from server import Runtime
from settings import Settings
from tests.conftest import make_settings
from tests.hotline.asterisk.records import (
    assert_one_message_recording_on_disk,
    assert_times_are_the_calls,
    cdr_times,
    counts,
    record_of,
)
from tests.support.asterisk import Media, SandboxInstance, Villagers, ivr_marker
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


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        # The link's health and the service's records: state nothing signals, polled.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_a_link_that_was_healthy_reconnects_after_the_shortest_wait_however_many_drops_came_before(
    server: TestServer, runtime: Runtime, ami_proxy: CuttableProxy
) -> None:
    telephony = runtime.hotline.telephony
    assert telephony is not None
    link = telephony.link
    shortest, longest = link.config.reconnect_min_s, link.config.reconnect_max_s
    assert longest >= 4 * shortest
    await link.wait_connected(30)
    # A long outage: every failed try doubles the wait, towards the longest.
    ami_proxy.cut()
    await wait_for(lambda: link.health.extra.get("retry_in_s", 0) > 2 * shortest * 1.2)
    ami_proxy.restore()
    await link.wait_connected(30)
    # Connected and booted again: the next drop waits the shortest time (± its 20 % jitter), not the last wait.
    ami_proxy.cut()
    await wait_for(lambda: "retry_in_s" in link.health.extra)
    assert link.health.extra["retry_in_s"] <= shortest * 1.2
    ami_proxy.restore()
    await link.wait_connected(30)


async def test_calls_that_end_while_the_ami_link_is_cut_are_settled_once_and_say_what_happened(
    server: TestServer,
    runtime: Runtime,
    ami_proxy: CuttableProxy,
    villagers: Villagers,
    asterisk_instance: SandboxInstance,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    telephony = runtime.hotline.telephony
    assert telephony is not None
    await telephony.link.wait_connected(30)
    told, cut_short, menu = (f"{name}-{SimulatedVillager.new_call_id()}" for name in ("told", "cut", "menu"))
    # She hears her number to the end; she hangs up as it starts; (later) she hangs up at the menu.
    calls = [
        villagers.start(told, caller="13930000003", caller_name="孙大妈"),
        villagers.start(cut_short, caller="13930000004", hangup_at="readback"),
    ]
    for call_id in (told, cut_short):
        await villagers.wait(call_id, "speaking")
    ami_proxy.cut()  # the service's socket is closed under it: it sees none of the hang-ups
    calls.append(villagers.start(menu, caller="13930000005", hangup_at="menu", keys=()))
    finished = await asyncio.gather(*calls)
    assert all(call.ended for call in finished) and not telephony.link.connected
    assert finished[0].read_back is not None and finished[1].read_back is None
    # FastAGI still ran: cases were opened, and each hang-up handler moved the message its channel had closed
    # (nobody saw the last channel go, and nothing needed to).
    assert runtime.hotline.store.spool_files() == []
    await asyncio.sleep(2)  # the outage outlasts the calls: the reconnect comes measurably later
    reconnected_at = datetime.now(UTC)

    # The first reconciliation is cut by a second drop of the link half-way through its database work.
    intake = runtime.hotline.intake
    settle = intake.settle
    reconciling, go_on = asyncio.Event(), asyncio.Event()

    async def settle_then_wait(facts: CallFacts, *, via: str) -> Settlement:
        if via == "reconcile" and not reconciling.is_set():
            reconciling.set()
            await go_on.wait()
        return await settle(facts, via=via)

    monkeypatch.setattr(intake, "settle", settle_then_wait)
    runs = telephony.reconciler.runs
    ami_proxy.restore()
    async with asyncio.timeout(30):
        await reconciling.wait()
    ami_proxy.cut()
    await wait_for(lambda: not telephony.link.connected)
    go_on.set()
    first = await telephony.reconciler.wait_for_run(after=runs, timeout_s=30)
    # It went on to the end, and counted only what it did itself: the two calls the tracker held
    # ended unseen, FastAGI had settled all three and moved both recordings.
    assert sorted(first.finished_from_tracker) == sorted([told, cut_short])
    assert (first.settled_from_tracker, first.settled_from_cdr, first.settled_from_spool) == (0, 0, 0)
    assert first.attached == 0
    ami_proxy.restore()
    second = await telephony.reconciler.wait_for_run(after=runs + 1, timeout_s=30)
    assert second.as_dict() | {"reason": "", "live_calls": 0} == {
        "reason": "",
        "live_calls": 0,
        "finished_from_tracker": 0,
        "settled_from_tracker": 0,
        "settled_from_cdr": 0,
        "settled_from_spool": 0,
        "attached": 0,
        "purged": 0,
    }
    await telephony.tracker.wait_idle(30)
    failures = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert not failures, [record.getMessage() for record in failures]
    assert not any(record.exc_info for record in caplog.records if "reconcil" in record.getMessage())

    assert await counts(runtime) == (2, 1, 3)  # none lost, none doubled
    assert runtime.hotline.store.spool_files() == []
    cdr = cdr_times(asterisk_instance)
    records = {linkedid: await record_of(runtime, linkedid) for linkedid in (told, cut_short, menu)}
    for linkedid, record in records.items():
        assert_times_are_the_calls(record, cdr[linkedid])
        assert record.call.ended_at is not None and record.call.ended_at < reconnected_at
    heard, not_heard, missed = records[told], records[cut_short], records[menu]
    assert heard.case is not None and heard.case.caller_name == "孙大妈" and heard.case.caller_number == "13930000003"
    assert heard.case.number_told is True and heard.call.ended_by == "ivr"
    assert not_heard.case is not None and not_heard.case.number_told is False  # flagged: call her to tell it
    assert not_heard.call.ended_by == "caller"
    for record in (heard, not_heard):
        assert_one_message_recording_on_disk(runtime, record)
    assert missed.case is None and missed.missed is not None and missed.missed.reason == "hung_up_at_menu"
    assert missed.call.ended_by == "caller" and missed.recordings == []


@pytest.mark.ivr(record_silence_s=30)
async def test_calls_cut_off_by_an_asterisk_restart_are_kept_as_ended_by_the_system_not_by_the_caller(
    server: TestServer, runtime: Runtime, villagers: Villagers, asterisk_instance: SandboxInstance
) -> None:
    telephony = runtime.hotline.telephony
    assert telephony is not None
    await telephony.link.wait_connected(30)
    speaking = [f"restart-{index}-{SimulatedVillager.new_call_id()}" for index in range(2)]
    at_menu = f"restart-menu-{SimulatedVillager.new_call_id()}"
    calls = [villagers.start(call_id) for call_id in speaking]
    for call_id in speaking:
        await villagers.wait(call_id, "spoken")  # said her piece; the recording is still running
    calls.append(villagers.start(at_menu, keys=()))
    await villagers.wait(at_menu, "menu")  # listening to the choices
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

    assert await counts(runtime) == (2, 1, 3)
    assert runtime.hotline.store.spool_files() == []
    cdr = cdr_times(asterisk_instance)
    for linkedid in speaking:
        record = await record_of(runtime, linkedid)
        assert record.case is not None and record.call.ended_by == "system"
        assert record.case.number_told is False  # she never heard a number: someone calls her to tell it
        assert_times_are_the_calls(record, cdr[linkedid])
        assert_one_message_recording_on_disk(runtime, record)
    cut_off = await record_of(runtime, at_menu)
    assert cut_off.missed is not None and cut_off.missed.reason == "ended_by_system"  # she did not hang up
    assert cut_off.call.ended_by == "system" and cut_off.missed.callback_state == "pending"
    assert_times_are_the_calls(cut_off, cdr[at_menu])


# The line's safety net at its floor; the menu waits longer than that for a key; silence never ends a message.
@pytest.mark.ivr(call_limit_s=10, menu_timeout_s=30.0, record_silence_s=30)
async def test_calls_the_call_limit_ends_are_kept_as_ended_by_it_not_by_the_caller(
    server: TestServer, runtime: Runtime, villagers: Villagers, asterisk_instance: SandboxInstance
) -> None:
    telephony = runtime.hotline.telephony
    assert telephony is not None
    await telephony.link.wait_connected(30)
    speaking, at_menu = (f"limit-{name}-{SimulatedVillager.new_call_id()}" for name in ("speaking", "menu"))
    # One said her piece and the line stays open behind it; one never presses a key.
    calls = [villagers.start(speaking, caller="13930000007"), villagers.start(at_menu, caller="13930000008", keys=())]
    finished = await asyncio.gather(*calls)
    assert all(call.ended for call in finished)
    for linkedid in (speaking, at_menu):
        assert "goodbye" in villagers.prompts(linkedid), villagers.prompts(linkedid)  # the limit says goodbye
    await telephony.tracker.wait_idle(30)

    assert await counts(runtime) == (1, 1, 2)
    assert runtime.hotline.store.spool_files() == []
    cdr = cdr_times(asterisk_instance)
    spoke = await record_of(runtime, speaking)
    assert spoke.case is not None and spoke.call.ended_by == "call_limit"
    assert spoke.case.number_told is False  # cut before her number: someone calls her to tell it
    assert_times_are_the_calls(spoke, cdr[speaking])
    assert_one_message_recording_on_disk(runtime, spoke)
    waited = await record_of(runtime, at_menu)
    assert waited.missed is not None and waited.missed.reason == "ended_by_system"  # she did not hang up
    assert waited.call.ended_by == "call_limit" and waited.missed.callback_state == "pending"
    assert_times_are_the_calls(waited, cdr[at_menu])


@pytest.mark.parametrize("ami_proxy", ["down"], indirect=True)
async def test_a_service_started_without_asterisk_says_so_and_settles_the_calls_once_it_can(
    ami_proxy: CuttableProxy,
    villagers: Villagers,
    server: TestServer,
    runtime: Runtime,
    asterisk_instance: SandboxInstance,
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
    report = await telephony.reconciler.wait_for_run(after=0, timeout_s=30)
    await telephony.tracker.wait_idle(30)
    # FastAGI had settled it and its hang-up handler moved the message: nothing waited for the link.
    assert report.attached == 0 and report.settled_from_cdr == 0
    assert await counts(runtime) == (1, 0, 1)
    record = await record_of(runtime, call_id)
    assert record.case is not None and record.case.number_told is True
    assert_times_are_the_calls(record, cdr_times(asterisk_instance)[call_id])
    assert_one_message_recording_on_disk(runtime, record)
    assert runtime.hotline.store.spool_files() == []
