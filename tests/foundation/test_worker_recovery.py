"""The worker election recovers by itself from a worker service whose start raises, on both databases.

A start that fails (SQLAlchemy's OperationalError from the dispatcher or the scheduler, say) must not
leave the role "active" with the lock held and nothing running: what started is stopped, the lock is
released so a standby can take it, /healthz says what happened, and the next attempt comes later each
time until one succeeds.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from common.lifecycle import ServiceGroup
from schedules.service import ScheduleInput
from server import Runtime
from storage.db import DatabaseConfig
from storage.worker_lock import WorkerElection, worker_lock
from tests.conftest import BOTH_DATABASES
from tests.support.broadcasting import approved_notice, build_place, make_principal

pytestmark = pytest.mark.parametrize("db_kind", BOTH_DATABASES)


class Recorder:
    """A worker service that records its starts and stops; ``failures`` starts raise first."""

    def __init__(self, name: str, log: list[str], failures: int = 0) -> None:
        self.name = name
        self.log = log
        self.failures = failures
        self.running = False

    async def start(self) -> None:
        self.log.append(f"start {self.name}")
        if self.failures:
            self.failures -= 1
            raise OperationalError("SELECT 1", {}, Exception("database is locked"))
        self.running = True

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")
        self.running = False


def running(*services: Any) -> bool:
    """Read afresh (a helper, so mypy does not keep an earlier assert's narrowing across awaits)."""
    return all(service.running for service in services)


def state_of(thing: Any, name: str) -> Any:
    return getattr(thing, name)


async def wait_for(predicate: object, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - applied with asyncio.timeout
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110 - state of another object, polled
            await asyncio.sleep(0.02)


async def test_a_service_whose_start_raises_is_rolled_back_the_lock_released_and_the_start_retried_later(
    runtime: Runtime,
) -> None:
    log: list[str] = []
    first, failing = Recorder("link", log), Recorder("dispatcher", log, failures=2)
    group = ServiceGroup([first, failing])
    config = DatabaseConfig.from_settings(runtime.settings)
    election = WorkerElection(
        worker_lock(config), on_elected=group.start, on_demoted=group.stop, interval_s=0.1, max_retry_s=0.4
    )
    other = worker_lock(config)  # a second process's lock on the same database
    try:
        await election.start()
        # The first attempt failed: nothing runs, the role is standby, the lock is free, and it says why.
        assert election.role == "standby"
        assert not first.running and not failing.running
        # Rolled back in reverse order (the election stops the group once more: stopping is safe to repeat).
        assert log[:4] == ["start link", "start dispatcher", "stop dispatcher", "stop link"]
        health = election.health()
        assert health["status"] == "degraded" and "OperationalError" in health["last_error"]
        assert health["failures"] == 1 and health["retry_in_s"] >= 0
        assert await other.try_acquire(), "the lock must be released after a failed start"
        await other.release()
        # It tries again by itself, later each time (0.1 s, then 0.2 s), and the third start succeeds.
        await wait_for(lambda: state_of(election, "role") == "active")
        assert running(first, failing)
        assert election.health() == {"status": "ok", "role": "active", "lock": election.health()["lock"]}
        assert log.count("start dispatcher") == 3
        assert not await other.try_acquire(), "the active worker holds the lock"
    finally:
        await election.stop()
        await other.release()
    assert not first.running and not failing.running


async def test_a_scheduler_whose_start_fails_is_not_left_half_started_and_starts_fully_next_time(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await make_principal(runtime, "admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "甲乡", [[("sink", "file:a")]])
    staff = await make_principal(runtime, "staff", "staff", township_ids=[place.township_id])
    approver = await make_principal(runtime, "approver", "approver", township_ids=[place.township_id])
    notice = await approved_notice(runtime, staff, approver, township_id=place.township_id)
    at = datetime.now(UTC) + timedelta(hours=1)
    await runtime.schedules.service.create(
        staff, ScheduleInput(notice_id=notice.id, kind="once", once_at=at, targets=(("zone", place.zone_ids[0]),))
    )
    scheduler = runtime.schedules.scheduler
    real_load = scheduler._load
    calls = 0

    async def load_failing_once(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OperationalError("SELECT schedules", {}, Exception("server closed the connection"))
        return await real_load(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(scheduler, "_load", load_failing_once)
    with pytest.raises(OperationalError):
        await scheduler.start()
    assert not scheduler.running and scheduler.next_fire is None
    try:
        await scheduler.start()  # not a no-op: it plans every schedule this time
        assert running(scheduler) and state_of(scheduler, "next_fire") == at
        assert (await scheduler.health())["jobs"] == 1
    finally:
        await scheduler.stop()
