"""Failover on PostgreSQL with calls in progress, on the real Asterisk.

Two ``cunxiang serve`` processes share one PostgreSQL database and one data directory; the active one
(AMI link, FastAGI, tracker, reconciliation) is killed with SIGKILL while two villagers are recording
their messages. The standby takes over by itself. One villager is still speaking when it has taken over
and then hangs up (the new worker learns of her call from Asterisk's list of live channels); the other
finishes her message and the IVR's goodbye on her own, wherever the takeover is by then. Each call
becomes exactly one case, with its one recording, dated from Asterisk's CDR — not two cases (one per
process), not none. ``hotline.reconcile_interval_s`` is shortened so that whatever is left to the
reconciler is settled within the test. The measured takeover time is printed (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from hotline.dialtest import SimulatedVillager
from server import Runtime
from tests.hotline.asterisk.records import (
    assert_one_message_recording_on_disk,
    assert_times_are_the_calls,
    cdr_times,
    counts,
    record_of,
)
from tests.hotline.asterisk.test_kills import up_and_reconciled
from tests.support.asterisk import SandboxInstance, Villagers, ivr_marker
from tests.support.cli import ServiceProcess, serving

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]

ELECTION_INTERVAL_S = 1.0
RECONCILE_INTERVAL_S = 2.0


def role(health: dict[str, Any]) -> str:
    return str(health["components"]["worker"]["role"])


def active_with_the_hotline_up(health: dict[str, Any]) -> bool:
    return role(health) == "active" and up_and_reconciled(health)


def standby(health: dict[str, Any]) -> bool:
    return role(health) == "standby"


async def until(service: ServiceProcess, ready: Any, timeout_s: float = 60.0) -> None:
    await asyncio.to_thread(service.wait_until, ready, timeout_s)


@pytest.mark.parametrize("db_kind", ["postgresql"])
async def test_calls_in_progress_when_the_active_serve_is_killed_each_become_one_case_with_its_recording(
    tmp_path: Path,
    database_url: str,
    db_kind: str,
    asterisk_instance: SandboxInstance,
    villagers: Villagers,
    runtime: Runtime,
    request: pytest.FixtureRequest,
) -> None:
    env = asterisk_instance.environment(tmp_path / "data", database_url, **ivr_marker(request))
    env["CUNXIANG_WORKER_ELECTION_INTERVAL_S"] = str(ELECTION_INTERVAL_S)
    env["CUNXIANG_HOTLINE_RECONCILE_INTERVAL_S"] = str(RECONCILE_INTERVAL_S)
    still_speaking, finishing = (f"failover-{name}-{SimulatedVillager.new_call_id()}" for name in ("long", "short"))
    with serving(env) as first:
        await until(first, active_with_the_hotline_up)
        with serving(env) as second:
            await until(second, standby)
            calls = {
                # Says her piece six times over: still speaking well after the takeover.
                still_speaking: villagers.start(still_speaking, caller="13930000007", caller_name="赵大姐", repeat=6),
                finishing: villagers.start(finishing, caller="13930000008", caller_name="钱大爷"),
            }
            for call_id in calls:
                await villagers.wait(call_id, "speaking")
            killed_at = time.monotonic()
            os.killpg(first.process.pid, signal.SIGKILL)
            await asyncio.to_thread(first.process.wait, 30)
            await until(second, active_with_the_hotline_up)
            took_over_s = time.monotonic() - killed_at
            # The other one finishes her message and hears the IVR out, on her own.
            assert (await calls[finishing]).ended
            await villagers.hang_up(still_speaking)
            assert (await calls[still_speaking]).ended
            # Both cases with their recordings, from the new worker (live) or its reconciler (every 2 s).
            async with asyncio.timeout(60):
                for call_id in calls:
                    # The case's record in the database: polled.
                    while not (await record_of(runtime, call_id)).recordings:  # noqa: ASYNC110
                        await asyncio.sleep(0.2)
            settled_s = time.monotonic() - killed_at
            print(
                f"hotline failover on PostgreSQL (election every {ELECTION_INTERVAL_S:g} s): standby active with its "
                f"AMI link up and reconciled {took_over_s:.2f} s after the kill; both calls settled "
                f"{settled_s:.2f} s after it"
            )
            # A few reconciliation rounds more change nothing: no second case, no second recording.
            await asyncio.sleep(2 * RECONCILE_INTERVAL_S + 1)

    assert await counts(runtime) == (2, 0, 2)  # none lost, none doubled
    assert runtime.hotline.store.spool_files() == []
    cdr = cdr_times(asterisk_instance)
    for call_id in calls:
        record = await record_of(runtime, call_id)
        assert record.case is not None, call_id
        assert_one_message_recording_on_disk(runtime, record)
        assert_times_are_the_calls(record, cdr[call_id])
    live = await record_of(runtime, still_speaking)
    assert live.case is not None and (live.case.caller_number, live.case.caller_name) == ("13930000007", "赵大姐")
    assert live.call.ended_by == "caller"
    finished = await record_of(runtime, finishing)
    assert finished.case is not None and (finished.case.caller_number, finished.case.caller_name) == (
        "13930000008",
        "钱大爷",
    )
    assert finished.call.ended_by == "ivr"
