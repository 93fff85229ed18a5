"""The service killed with ``kill -9`` while villagers are recording their messages.

The service runs as a real ``cunxiang serve`` process on this test's Asterisk instance. It is killed
while three callers speak; two of them finish and hang up while it is down (an outage longer than
their calls: the restarted service has never heard of them and finds them only in the CDR and the
spool), the third is still speaking when it comes back (the restarted service learns of her call from
Asterisk's list of live channels, and she then hangs up with no further stage event). Afterwards:
three cases, each with its recording, each dated from its call and saying who called, whether she
heard her number, who ended the call — and what the IVR promised the callers it could not give a
number to is what the service can do.
"""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hotline.dialtest import SimulatedVillager
from server import Runtime
from tests.conftest import UserFactory
from tests.hotline.asterisk.records import (
    assert_one_message_recording_on_disk,
    assert_times_are_the_calls,
    cdr_times,
    counts,
    record_of,
)
from tests.support.asterisk import SandboxInstance, Villagers, ivr_marker
from tests.support.cli import ServiceProcess, serving

pytestmark = pytest.mark.timeout(300)


def up(health: dict[str, Any]) -> bool:
    return bool(health.get("components", {}).get("ami", {}).get("status") == "ok")


def up_and_reconciled(health: dict[str, Any]) -> bool:
    return up(health) and health["components"].get("reconcile", {}).get("status") == "ok"


async def started(service: ServiceProcess, ready: Any) -> None:
    await asyncio.to_thread(service.wait_until, ready, 60.0)


async def case_as_operator_sees_it(service: ServiceProcess, username: str, password: str, case_id: int) -> Any:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{service.url}/api/v1/session", json={"username": username, "password": password}) as r:
            assert r.status == 200, await r.text()
        async with http.get(f"{service.url}/api/v1/cases/{case_id}") as response:
            assert response.status == 200, await response.text()
            return await response.json()


async def test_a_service_killed_during_recordings_keeps_every_record_true_after_a_restart(
    tmp_path: Path,
    database_url: str,
    asterisk_instance: SandboxInstance,
    villagers: Villagers,
    runtime: Runtime,
    make_user: UserFactory,
    request: pytest.FixtureRequest,
) -> None:
    env = asterisk_instance.environment(tmp_path / "data", database_url, **ivr_marker(request))
    username, password = await make_user("operator", county_wide=True)
    live, withheld, named = (f"kill-{name}-{SimulatedVillager.new_call_id()}" for name in ("live", "anon", "named"))
    with serving(env) as first:
        await started(first, up)
        calls = {
            # Still speaking when the service is back (she says her piece six times over).
            live: villagers.start(live, caller="13930000006", caller_name="王大娘", repeat=6),
            withheld: villagers.start(withheld, caller="anonymous"),
            named: villagers.start(named, caller="13930000005", caller_name="李大爷"),
        }
        for call_id in calls:
            await villagers.wait(call_id, "speaking")
        os.kill(first.process.pid, signal.SIGKILL)
        await asyncio.to_thread(first.process.wait)
    # Two of them finish their message and the IVR's goodbye while nothing listens: no FastAGI, no AMI.
    for call_id in (withheld, named):
        call = await calls[call_id]
        assert call.ended and call.read_back is None
    down_until = datetime.now(UTC)
    heard = {call_id: villagers.prompts(call_id) for call_id in (withheld, named)}
    # What the IVR promised, with no case number to give: the one it can call is told she will be
    # called with it; the withheld one is promised nothing it cannot do.
    assert heard[named][-3:] == ["recorded", "number_by_callback", "will_call_back"], heard[named]
    assert heard[withheld][-2:] == ["recorded", "no_number_no_callback"], heard[withheld]
    assert "will_call_back" not in heard[withheld]

    with serving(env) as second:
        await started(second, up_and_reconciled)
        # The third was learnt from the live-channel list; she hangs up mid-message, no stage event after.
        await villagers.hang_up(live)
        assert (await calls[live]).ended
        # Her recording is attached within seconds of her hang-up (reconciliation would be an hour away).
        async with asyncio.timeout(30):
            # The case's record in the database: polled.
            while not (await record_of(runtime, live)).recordings:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        cases = {call_id: (await record_of(runtime, call_id)).case for call_id in calls}
        shown = {
            call_id: await case_as_operator_sees_it(second, username, password, case.id)
            for call_id, case in cases.items()
            if case is not None
        }

    assert await counts(runtime) == (3, 0, 3)  # none lost, none doubled
    assert runtime.hotline.store.spool_files() == []
    cdr = cdr_times(asterisk_instance)
    records = {call_id: await record_of(runtime, call_id) for call_id in calls}
    for call_id, record in records.items():
        assert record.case is not None, call_id
        assert record.case.number_told is False, call_id  # nobody heard a number: each is to be called
        assert_one_message_recording_on_disk(runtime, record)
        assert_times_are_the_calls(record, cdr[call_id], learnt_after=None if call_id == live else down_until)
    named_case, withheld_case, live_case = records[named].case, records[withheld].case, records[live].case
    assert named_case is not None and withheld_case is not None and live_case is not None
    # Settled from the CDR alone, the caller's name is kept as the network gave it.
    assert (named_case.caller_number, named_case.caller_name) == ("13930000005", "李大爷")
    assert records[named].call.settled_by == "reconcile" and records[named].call.ended_by == "ivr"
    assert withheld_case.caller_number is None and withheld_case.caller_withheld
    assert (live_case.caller_number, live_case.caller_name) == ("13930000006", "王大娘")
    assert records[live].call.ended_by == "caller"
    # The case page's facts: call her back to tell her the number (or say why that cannot be done).
    assert shown[named]["tell_number"] and shown[named]["number_told"] is False
    assert shown[withheld]["tell_number"] and shown[withheld]["caller_withheld"]
    assert shown[named]["created_at"] < shown[named]["learnt_at"]
