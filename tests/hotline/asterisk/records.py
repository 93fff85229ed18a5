"""What the fault tests check of every record after an outage: not only how many, but what each one says.

The truth to compare with is Asterisk's own CDR file (when each call began and ended, to the second),
and the recordings on disk (their checksum against the database's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from hotline.reconcile import read_cdr
from hotline.recordings import sha256_file
from server import Runtime
from storage.models import Call, Case, MissedCall, Recording
from tests.support.asterisk import SandboxInstance

# The CDR file says whole seconds; our records keep Asterisk's times to the microsecond.
CDR_RESOLUTION = timedelta(seconds=1.5)


@dataclass(frozen=True)
class CdrTimes:
    started: datetime
    ended: datetime


def cdr_times(instance: SandboxInstance) -> dict[str, CdrTimes]:
    """Per Linkedid, when Asterisk's CDR says the call began (first channel) and ended (last channel)."""
    path = instance.sandbox.paths.cdr_csv
    assert path is not None
    calls: dict[str, CdrTimes] = {}
    for _offset, row in read_cdr(path, 0)[0]:
        started = datetime.strptime(row["start"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        ended = datetime.strptime(row["end"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        known = calls.get(row["linkedid"])
        if known is not None:
            started, ended = min(started, known.started), max(ended, known.ended)
        calls[row["linkedid"]] = CdrTimes(started, ended)
    return calls


@dataclass
class CallRecord:
    """Everything the database holds about one call."""

    call: Call
    case: Case | None
    missed: MissedCall | None
    recordings: list[Recording] = field(default_factory=list)


async def record_of(runtime: Runtime, linkedid: str) -> CallRecord:
    async with runtime.sessions() as session:
        call = await session.scalar(select(Call).where(Call.linkedid == linkedid))
        assert call is not None, f"no call row for {linkedid}"
        case = await session.scalar(select(Case).where(Case.linkedid == linkedid))
        missed = await session.scalar(select(MissedCall).where(MissedCall.linkedid == linkedid))
        recordings = (await session.scalars(select(Recording).where(Recording.linkedid == linkedid))).all()
    return CallRecord(call, case, missed, list(recordings))


async def counts(runtime: Runtime) -> tuple[int, int, int]:
    """(cases, missed calls, calls) in the database."""
    async with runtime.sessions() as session:
        return (
            await session.scalar(select(func.count()).select_from(Case)) or 0,
            await session.scalar(select(func.count()).select_from(MissedCall)) or 0,
            await session.scalar(select(func.count()).select_from(Call)) or 0,
        )


def assert_close(actual: datetime | None, expected: datetime, what: str) -> None:
    assert actual is not None, f"{what}: not recorded"
    # The CDR floors to the second: ours is at most a second and a half after it, never before it by more.
    assert expected - timedelta(seconds=0.5) <= actual <= expected + CDR_RESOLUTION, (what, actual, expected)


def assert_times_are_the_calls(record: CallRecord, cdr: CdrTimes, *, learnt_after: datetime | None = None) -> None:
    """The call's times are Asterisk's (not when the service heard of it); the case dates from the call.

    ``learnt_after``: a moment after the call ended before which the service could not have known of it
    (it was cut off or down): the records must say they were learnt then, and still date from the call.
    """
    linkedid = record.call.linkedid
    assert_close(record.call.started_at, cdr.started, f"{linkedid}: calls.started_at")
    assert_close(record.call.ended_at, cdr.ended, f"{linkedid}: calls.ended_at")
    if record.case is not None:
        assert_close(record.case.created_at, cdr.started, f"{linkedid}: cases.created_at (its clocks start there)")
        assert record.case.learnt_at is not None and record.case.learnt_at >= record.case.created_at
    if record.missed is not None:
        assert_close(record.missed.at, cdr.started, f"{linkedid}: missed_calls.at")
    if learnt_after is not None:
        assert record.call.created_at >= learnt_after, (linkedid, record.call.created_at, learnt_after)
        assert record.call.ended_at is not None and record.call.ended_at < learnt_after
        if record.case is not None:
            assert record.case.learnt_at is not None and record.case.learnt_at >= learnt_after


def assert_one_message_recording_on_disk(runtime: Runtime, record: CallRecord) -> None:
    """Exactly one recording, the caller's message, with speech in it, its file matching its checksum."""
    (recording,) = record.recordings
    assert recording.kind == "message" and not recording.empty, recording
    owner = (record.case.id, None) if record.case is not None else (None, record.missed.id if record.missed else None)
    assert (recording.case_id, recording.missed_call_id) == owner
    stored = runtime.hotline.store.path_of(recording.path)
    assert sha256_file(stored) == recording.sha256 and stored.stat().st_size == recording.bytes
