"""The dial test's report waits for the truth: the call ended, its recording attached — never a moment before.

The worker that settles the call may be another process; the dial test only watches the database and the
spool. Here the worker attaches the recording exactly between two of the dial test's looks, the
interleaving that once printed a case with no recording under load.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from cli.hotline import _settled_outcome
from common.clock import SystemClock
from hotline.intake import CallFacts, IntakeService
from hotline.phones import PhoneRegistry
from hotline.recordings import RecordingStore
from server import Runtime
from tests.hotline.wavs import write_wav


@pytest.fixture
def intake(runtime: Runtime, tmp_path: Path) -> IntakeService:
    store = RecordingStore(tmp_path / "recordings", tmp_path / "spool")
    store.prepare()
    return IntakeService(
        runtime.sessions,
        SystemClock(),
        store,
        PhoneRegistry(runtime.sessions, SystemClock()),
        runtime.cases.workflow,
        mixmonitor_wait_s=0.5,
    )


class WorkerFinishesDuringARead:
    """The intake as the dial test sees it, with the worker settling the call right after the first read."""

    def __init__(self, intake: IntakeService, facts: CallFacts) -> None:
        self._intake = intake
        self._facts = facts
        self.reads = 0

    async def outcome(self, linkedid: str) -> dict[str, Any] | None:
        seen = await self._intake.outcome(linkedid)
        self.reads += 1
        if self.reads == 1:
            # The worker saw the last channel go: it settles the call and moves the recording.
            await self._intake.settle(self._facts, via="tracker")
            await self._intake.attach(linkedid)
        return seen


async def test_the_dial_test_reports_the_recording_the_worker_attaches_while_it_looks(
    intake: IntakeService,
) -> None:
    linkedid = "dialtest-1"
    write_wav(intake.store.spool / f"cx_petition_message_{linkedid}.wav", 2.0)
    asked = CallFacts(linkedid, caller_raw="13800001111", stage="recorded", choice="1", category="petition")
    # FastAGI opened the case while she listened to her number; the call has not been seen to end yet.
    (_path, message), *_ = intake.store.spool_files(linkedid)
    await intake.open_case(asked, via="fastagi", message=message)
    ended = CallFacts(
        linkedid,
        caller_raw="13800001111",
        stage="done",
        choice="1",
        category="petition",
        ended_at=datetime.now(UTC),
    )
    worker = WorkerFinishesDuringARead(intake, ended)

    outcome = await _settled_outcome(cast(IntakeService, worker), intake.store, linkedid, 10)

    assert outcome is not None and outcome["outcome"] == "case"
    assert outcome["call"]["ended_at"] is not None
    (recording,) = outcome["case"]["recordings"]
    assert recording["kind"] == "message" and not recording["empty"]
    assert intake.store.spool_files(linkedid) == []
