"""Intake: every path that learns of a call at once, on both databases, still makes exactly one case.

The live calls are in tests/hotline/asterisk/; here the decisions and the database's part are checked
directly, including the races a real Asterisk makes rarely and PostgreSQL's real concurrency.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cases import numbers as casenumbers
from common.clock import SystemClock
from hotline.intake import CallFacts, IntakeService
from hotline.phones import PhoneRegistry
from hotline.recordings import RecordingStore, sha256_file
from server import Runtime
from storage.models import AuditEntry, Call, Case, MissedCall, Recording
from tests.conftest import BOTH_DATABASES
from tests.foundation.seed import seed_tree
from tests.hotline.wavs import write_wav

pytestmark = pytest.mark.parametrize("db_kind", BOTH_DATABASES)


@pytest.fixture
def intake(runtime: Runtime, tmp_path: Path) -> IntakeService:
    store = RecordingStore(tmp_path / "recordings", tmp_path / "spool")
    store.prepare()
    # A recording without its MixMonitor marker is taken after a short wait here (10 s in production).
    return IntakeService(
        runtime.sessions,
        SystemClock(),
        store,
        PhoneRegistry(runtime.sessions, SystemClock()),
        runtime.cases.workflow,
        mixmonitor_wait_s=0.5,
    )


async def counts(runtime: Runtime) -> tuple[int, int, int, int]:
    async with runtime.sessions() as session:
        cases, missed, calls, recordings = [
            await session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Case, MissedCall, Call, Recording)
        ]
        return cases, missed, calls, recordings


async def test_every_path_reporting_one_call_at_once_makes_exactly_one_case(
    runtime: Runtime, intake: IntakeService
) -> None:
    write_wav(intake.store.spool / "cx_petition_message_race-1.wav", 2.0)
    facts = CallFacts("race-1", caller_raw="13800001111", stage="recorded", choice="1", category="petition")
    results = await asyncio.gather(
        intake.open_case(facts, via="fastagi"),
        intake.settle(facts, via="tracker"),
        intake.settle(facts, via="reconcile"),
        intake.open_case(facts, via="fastagi"),
        intake.settle(CallFacts("race-1", stage="done"), via="fastagi"),
    )
    numbers = {result.number for result in results}
    assert len(numbers) == 1 and None not in numbers
    assert await counts(runtime) == (1, 0, 1, 0)
    await asyncio.gather(intake.attach("race-1"), intake.attach("race-1"))
    assert await counts(runtime) == (1, 0, 1, 1)


async def test_a_case_a_call_opens_starts_its_history_with_the_same_created_event_as_a_case_entered_by_hand(
    runtime: Runtime, intake: IntakeService
) -> None:
    ticket = await intake.open_case(CallFacts("history-1", caller_raw="13800007777", choice="3"), via="fastagi")
    again = await intake.open_case(CallFacts("history-1", caller_raw="13800007777", choice="3"), via="tracker")
    assert ticket.created and not again.created and again.case_id == ticket.case_id
    events = await runtime.cases.workflow.history(ticket.case_id)
    assert [(event.kind, event.username, event.display_name, event.to_status) for event in events] == [
        ("created", "system:hotline", "热线系统", "new")
    ]
    assert events[0].after["channel"] == "hotline" and events[0].after["sealed"] is True
    async with runtime.sessions() as session:
        audited = await session.scalars(select(AuditEntry.action).where(AuditEntry.object_id == str(ticket.case_id)))
        assert list(audited) == ["case.create"]


async def test_a_hang_up_at_the_menu_is_a_missed_call_and_reporting_it_again_changes_nothing(
    runtime: Runtime, intake: IntakeService
) -> None:
    facts = CallFacts("menu-1", caller_raw="+86 138-0000-2222", stage="menu")
    first = await intake.settle(facts, via="fastagi")
    again = await intake.settle(facts, via="tracker")
    assert first.outcome == again.outcome == "missed" and first.missed_call_id == again.missed_call_id
    async with runtime.sessions() as session:
        missed = await session.scalar(select(MissedCall))
    assert missed is not None and missed.reason == "hung_up_at_menu" and missed.caller_number == "13800002222"
    assert missed.callback_state == "pending"
    assert await counts(runtime) == (0, 1, 1, 0)


async def test_a_message_with_nothing_said_is_a_missed_call_and_its_silent_recording_is_kept(
    runtime: Runtime, intake: IntakeService
) -> None:
    write_wav(intake.store.spool / "cx_petition_message_quiet-1.wav", 3.0, loud=False)
    settled = await intake.settle(CallFacts("quiet-1", stage="done", choice=""), via="tracker")
    assert settled.outcome == "missed"
    (recording_id,) = await intake.attach("quiet-1")
    async with runtime.sessions() as session:
        recording = await session.get(Recording, recording_id)
        missed = await session.scalar(select(MissedCall))
    assert recording is not None and missed is not None
    assert recording.empty and recording.missed_call_id == missed.id and missed.reason == "nothing_said"


async def test_a_caller_who_chose_to_report_and_hung_up_is_a_sealed_missed_call(
    runtime: Runtime, intake: IntakeService
) -> None:
    await intake.settle(CallFacts("report-1", caller_raw="13800003333", stage="recording", choice="3"), via="tracker")
    async with runtime.sessions() as session:
        missed = await session.scalar(select(MissedCall))
    assert missed is not None and missed.sealed and missed.reason == "nothing_said"


async def test_a_withheld_number_is_kept_as_no_number_and_never_matched(
    runtime: Runtime, intake: IntakeService
) -> None:
    for index, (raw, presentation) in enumerate(
        [("anonymous", None), ("", None), ("13800004444", "prohib_not_screened"), ("13800004444", "32")]
    ):
        await intake.settle(
            CallFacts(f"anon-{index}", caller_raw=raw, presentation=presentation, stage="welcome"), via="t"
        )
    async with runtime.sessions() as session:
        rows = (await session.scalars(select(MissedCall))).all()
    assert [(row.caller_number, row.caller_withheld, row.callback_state) for row in rows] == [
        (None, True, "no_number")
    ] * 4


async def test_a_registered_number_places_the_new_case_in_its_village(runtime: Runtime, intake: IntakeService) -> None:
    tree = await seed_tree(runtime)
    from accounts.service import principal_of
    from storage.models import User

    async with runtime.sessions() as session:
        admin = principal_of((await session.scalars(select(User))).one())
    await PhoneRegistry(runtime.sessions, SystemClock()).create(
        admin, number="138 0000 5555", village_id=tree.village_ids[1], name="李大爷"
    )
    write_wav(intake.store.spool / "cx_petition_message_known-1.wav", 1.5)
    ticket = await intake.open_case(CallFacts("known-1", caller_raw="+8613800005555", stage="recorded"), via="t")
    async with runtime.sessions() as session:
        case = await session.get(Case, ticket.case_id)
    assert case is not None
    assert (case.village_id, case.township_id, case.caller_name) == (
        tree.village_ids[1],
        tree.township_ids[1],
        "李大爷",
    )


async def test_the_status_query_answers_only_the_filing_phone_or_the_pin_and_never_a_sealed_case(
    runtime: Runtime, intake: IntakeService
) -> None:
    open_case = await intake.open_case(CallFacts("status-1", caller_raw="13800006666"), via="t")
    sealed = await intake.open_case(CallFacts("status-2", caller_raw="13800006666", choice="3"), via="t")
    number = open_case.number
    assert (await intake.status(f"{number}#", "13800006666", "0")).result == "found"
    assert (await intake.status(number, "13800006666", "0")).status == "new"
    assert (await intake.status(number, "13999999999", "0")).result == "need_pin"
    assert (await intake.status(number, "anonymous", None)).result == "need_pin"
    assert (await intake.status(number, "13999999999", "0", pin=open_case.pin)).result == "found"
    wrong = "0000" if open_case.pin != "0000" else "1111"
    assert (await intake.status(number, "13999999999", "0", pin=wrong)).result == "need_pin"
    assert (await intake.status(sealed.number, "13800006666", "0")).result == "confidential"
    # Another phone hears what it hears for any case, never that the number is a sealed report; with the PIN
    # (read back to a withheld caller) the reporter is told it is confidential, still without its status.
    assert (await intake.status(sealed.number, "13999999999", "0")).result == "need_pin"
    assert (await intake.status(sealed.number, "13999999999", "0", pin=sealed.pin)).result == "confidential"
    typo = number[:-1] + str((int(number[-1]) + 1) % 10)
    assert not casenumbers.is_valid(typo) and (await intake.status(typo, "13800006666", "0")).result == "not_found"


async def test_attaching_moves_the_file_checksummed_private_and_only_once(
    runtime: Runtime, intake: IntakeService
) -> None:
    source = intake.store.spool / "cx_petition_message_move-1.wav"
    write_wav(source, 1.0)
    digest = sha256_file(source)
    ticket = await intake.open_case(CallFacts("move-1", stage="recorded"), via="t")
    (recording_id,) = await intake.attach("move-1")
    async with runtime.sessions() as session:
        recording = await session.get(Recording, recording_id)
    assert recording is not None and recording.case_id == ticket.case_id and recording.sha256 == digest
    stored = intake.store.root / recording.path
    assert sha256_file(stored) == digest and not source.exists()
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600 and stat.S_IMODE(intake.store.root.stat().st_mode) == 0o700
    assert recording.path.endswith(f"{ticket.number}-message-move-1.wav")
    # A crash after the database write but before the spool copy was removed: the copy comes back.
    os.link(stored, source)
    assert await intake.attach("move-1") == []
    assert not source.exists() and await counts(runtime) == (1, 0, 1, 1)


async def test_calls_the_service_placed_itself_never_become_cases(runtime: Runtime, intake: IntakeService) -> None:
    ticket = await intake.open_case(CallFacts("origin-1"), via="t")
    write_wav(intake.store.spool / f"cx_case{ticket.case_id}_callback_cb-1.wav", 1.0)
    settled = await intake.settle(CallFacts("cb-1", kind="callback", case_id=ticket.case_id), via="tracker")
    assert settled.outcome == "placed"
    (recording_id,) = await intake.attach("cb-1")
    async with runtime.sessions() as session:
        recording = await session.get(Recording, recording_id)
        call = await session.scalar(select(Call).where(Call.linkedid == "cb-1"))
    assert recording is not None and recording.case_id == ticket.case_id and recording.kind == "callback"
    assert call is not None and call.kind == "callback" and call.direction == "out"
    assert await counts(runtime) == (1, 0, 2, 1)


async def test_retention_deletes_old_files_but_keeps_their_records(runtime: Runtime, intake: IntakeService) -> None:
    write_wav(intake.store.spool / "cx_petition_message_old-1.wav", 1.0)
    await intake.open_case(CallFacts("old-1"), via="t")
    (recording_id,) = await intake.attach("old-1")
    async with runtime.sessions() as session:
        recording = await session.get(Recording, recording_id)
    assert recording is not None
    from datetime import timedelta

    assert await intake.purge_before(recording.recorded_at - timedelta(seconds=1)) == 0
    assert await intake.purge_before(recording.recorded_at + timedelta(seconds=1)) == 1
    async with runtime.sessions() as session:
        purged = await session.get(Recording, recording_id)
    assert purged is not None and purged.purged_at is not None and not (intake.store.root / purged.path).exists()


@pytest.mark.parametrize("size", [0, 44])
async def test_a_recording_of_zero_length_is_kept_as_empty_and_the_call_is_a_missed_call(
    runtime: Runtime, intake: IntakeService, size: int
) -> None:
    # She hung up at the beep: Asterisk created the file and wrote nothing (0 bytes) or only a header (44).
    path = intake.store.spool / f"cx_petition_message_zero-{size}.wav"
    write_wav(path, 0)
    path.write_bytes(path.read_bytes()[:size])
    settled = await intake.settle(
        CallFacts(f"zero-{size}", caller_raw="13800007777", stage="recording", choice="1"), via="tracker"
    )
    assert settled.outcome == "missed"
    (recording_id,) = await intake.attach(f"zero-{size}")
    async with runtime.sessions() as session:
        recording = await session.get(Recording, recording_id)
        missed = await session.scalar(select(MissedCall))
    assert recording is not None and missed is not None
    assert recording.empty and recording.bytes == size and recording.duration_s == 0
    assert recording.missed_call_id == missed.id and missed.reason == "nothing_said"
    assert missed.callback_state == "pending" and not path.exists()


async def test_whether_the_operator_answered_decides_between_a_case_and_a_missed_call(
    runtime: Runtime, intake: IntakeService
) -> None:
    rang = await intake.settle(
        CallFacts("op-rang", caller_raw="13800008888", stage="transfer", choice="0", dial_status="NOANSWER"),
        via="fastagi",
    )
    answered = await intake.settle(
        CallFacts("op-answered", caller_raw="13800008888", stage="transfer", choice="0", dial_status="ANSWER"),
        via="fastagi",
    )
    talked = await intake.settle(CallFacts("op-talked", stage="talked", choice="0"), via="tracker")
    assert (rang.outcome, answered.outcome, talked.outcome) == ("missed", "case", "case")
    async with runtime.sessions() as session:
        missed = await session.scalar(select(MissedCall))
    assert missed is not None and missed.reason == "operator_not_reached" and missed.linkedid == "op-rang"


async def test_the_hang_up_handler_attaches_her_message_at_once_and_leaves_mixmonitor_files_to_the_tracker(
    runtime: Runtime, intake: IntakeService
) -> None:
    """Record() has closed the message by the time its channel's hang-up handler asks: it need not wait for the
    call's last channel (an operator waits for it). A MixMonitor file may still be open: that one waits."""
    from pathlib import PurePosixPath

    from hotline.fastagi import AgiRequest
    from hotline.ivr import HotlineAgi

    write_wav(intake.store.spool / "cx_petition_message_hung-up-1.wav", 2.0)
    write_wav(intake.store.spool / "cx_petition_transfer_hung-up-1.wav", 1.0)
    handlers = HotlineAgi(intake, PurePosixPath("/prompts"), clock=SystemClock()).handlers()
    env = {"agi_callerid": "13800001111", "agi_callingpres": "0", "agi_uniqueid": "hung-up-1-ivr"}
    request = AgiRequest("ended", ("hung-up-1", "recording", "1", "petition", "", "0", "", "0", "caller"), env)
    await handlers["ended"](request, None)  # type: ignore[arg-type]  # "ended" sets nothing: no session needed
    async with runtime.sessions() as session:
        case = await session.scalar(select(Case).where(Case.linkedid == "hung-up-1"))
        kinds = [row.kind for row in (await session.scalars(select(Recording))).all()]
    assert case is not None and kinds == ["message"]
    assert [name.kind for _path, name in intake.store.spool_files("hung-up-1")] == ["transfer"]
    # The tracker, once the call's last channel is gone, takes the rest; the message is not attached twice.
    await intake.attach("hung-up-1")
    assert await counts(runtime) == (1, 0, 1, 2)


async def test_a_second_path_reporting_what_is_known_writes_nothing(runtime: Runtime, intake: IntakeService) -> None:
    """The tracker reports nearly every call after the hang-up handler did: the same facts again are no write
    (on SQLite a write would wait for, then hold, the lock the next caller's case needs)."""
    write_wav(intake.store.spool / "cx_petition_message_again-1.wav", 2.0)
    facts = CallFacts("again-1", caller_raw="13800001111", stage="recording", choice="1", category="petition")
    await intake.settle(facts, via="fastagi")
    async with runtime.sessions() as session:
        before = await session.scalar(select(Call.updated_at).where(Call.linkedid == "again-1"))
    await asyncio.sleep(0.01)
    await intake.settle(facts, via="tracker")
    async with runtime.sessions() as session:
        after = await session.scalar(select(Call.updated_at).where(Call.linkedid == "again-1"))
    assert after == before
    later = CallFacts("again-1", stage="recording", ended_by="system")
    await intake.settle(later, via="tracker")
    async with runtime.sessions() as session:
        call = await session.scalar(select(Call).where(Call.linkedid == "again-1"))
    assert before is not None and call is not None and call.ended_by == "system" and call.updated_at > before


async def test_the_tracker_reporting_the_same_hang_up_a_moment_later_writes_nothing(
    runtime: Runtime, intake: IntakeService
) -> None:
    """The hang-up handler reports the end as her channel hangs up, the tracker the last channel's Hangup a few
    milliseconds later: the same hang-up, no second write. A leg that outlives hers by seconds moves the end."""
    write_wav(intake.store.spool / "cx_petition_message_later-1.wav", 2.0)
    hung_up = datetime(2026, 5, 4, 3, 2, 1, 500_000, tzinfo=UTC)
    facts = CallFacts(
        "later-1", caller_raw="13800001111", stage="recording", choice="1", category="petition", ended_at=hung_up
    )
    await intake.settle(facts, via="fastagi")

    async def call_row() -> Call:
        async with runtime.sessions() as session:
            call = await session.scalar(select(Call).where(Call.linkedid == "later-1"))
        assert call is not None
        return call

    before = await call_row()
    await asyncio.sleep(0.01)
    facts.ended_at = hung_up + timedelta(milliseconds=40)
    await intake.settle(facts, via="tracker")
    after = await call_row()
    assert (after.ended_at, after.updated_at) == (hung_up, before.updated_at)
    facts.ended_at = hung_up + timedelta(seconds=3)
    await intake.settle(facts, via="reconcile")
    last = await call_row()
    assert last.ended_at == hung_up + timedelta(seconds=3) and last.updated_at > before.updated_at


async def test_cases_of_calls_ending_together_are_committed_together_and_each_once(
    runtime: Runtime, intake: IntakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 callers hanging up at once: every call one case and its recording, written in a few commits, not 20
    taking turns."""
    # Each call reaches its write after work in threads (its message inspected, its file copied and checked),
    # and on a loaded machine those arrivals spread out: a full suite run once saw the recordings in 11 commits.
    # How arrivals group is the machine's; that writes arriving together share commits is the intake's. So the
    # 20 writes are let through together, once all have arrived.
    for writes in (intake._case_writes, intake._recording_writes):
        monkeypatch.setattr(writes, "write", _together_once_all_arrive(writes.write, 20))
    commits: list[None] = []
    event.listen(runtime.engine.sync_engine, "commit", lambda connection: commits.append(None))
    facts = []
    for index in range(20):
        write_wav(intake.store.spool / f"cx_petition_message_together-{index}.wav", 1.0)
        facts.append(CallFacts(f"together-{index}", caller_raw=f"1380000{index:04d}", stage="recording", choice="1"))
    first = await asyncio.gather(*(intake.settle(one, via="fastagi") for one in facts))
    case_commits = len(commits)
    again = await asyncio.gather(*(intake.open_case(one, via="tracker") for one in facts))
    assert all(settlement.outcome == "case" and settlement.created for settlement in first)
    assert [ticket.case_id for ticket in again] == [settlement.case_id for settlement in first]
    assert not any(ticket.created for ticket in again)
    assert await counts(runtime) == (20, 0, 20, 0)
    assert len({settlement.number for settlement in first}) == 20
    # Without grouping: 20 commits of cases. The first caller writes alone; the rest queue behind her turn.
    assert case_commits < 10, case_commits
    # Their recordings, moved at the same hang-ups: the rows written together too, each file once.
    commits.clear()
    attached = await asyncio.gather(*(intake.attach(one.linkedid) for one in facts))
    assert all(len(ids) == 1 for ids in attached) and len({ids[0] for ids in attached}) == 20
    assert await counts(runtime) == (20, 0, 20, 20)
    assert len(commits) < 10, len(commits)
    assert not list(intake.store.spool.glob("*.wav"))


def _together_once_all_arrive(write: Callable[[Any], Awaitable[Any]], count: int) -> Callable[[Any], Awaitable[Any]]:
    """``write``, each call held until ``count`` calls are waiting (then all go on, and the next ``count`` wait)."""
    arrived = asyncio.Barrier(count)

    async def held_write(item: Any) -> Any:
        async with asyncio.timeout(30):
            await arrived.wait()
        return await write(item)

    return held_write


async def test_one_call_failing_in_a_group_costs_the_others_nothing(
    runtime: Runtime, intake: IntakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group's transaction fails on one bad call: each case is written alone, only the bad one fails."""
    desk = runtime.cases.workflow
    real_open = desk.open_call_case

    async def open_call_case(session: AsyncSession, **fields: Any) -> Case:
        if fields["linkedid"] == "group-3":
            raise RuntimeError("this call's case cannot be written")
        return await real_open(session, **fields)

    monkeypatch.setattr(desk, "open_call_case", open_call_case)
    facts = [CallFacts(f"group-{index}", caller_raw=f"1390000{index:04d}", stage="recorded") for index in range(8)]
    results = await asyncio.gather(*(intake.open_case(one, via="fastagi") for one in facts), return_exceptions=True)
    failed = [index for index, result in enumerate(results) if isinstance(result, BaseException)]
    assert failed == [3] and isinstance(results[3], RuntimeError)
    assert await counts(runtime) == (7, 0, 7, 0)
    async with runtime.sessions() as session:
        linkedids = set((await session.scalars(select(Case.linkedid))).all())
    assert linkedids == {f"group-{index}" for index in range(8)} - {"group-3"}


async def test_a_second_report_adding_nothing_costs_no_query_and_one_adding_something_is_written(
    runtime: Runtime, intake: IntakeService
) -> None:
    # Nearly every call is reported twice as it ends (the hang-up handler, then the call tracker): while 20
    # calls end together, the second report of what was just written reads nothing from the database.
    statements: list[str] = []
    engine = runtime.sessions.kw["bind"].sync_engine

    def seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    ended = datetime(2026, 12, 5, 10, 0, 0, tzinfo=UTC)
    first = CallFacts(
        "twice-1", caller_raw="13800008888", choice="1", stage="recorded", ended_at=ended, ended_by="caller"
    )
    write_wav(intake.store.spool / "cx_petition_message_twice-1.wav", 2.0)
    settled = await intake.settle(first, via="fastagi")
    assert settled.outcome == "case" and settled.created
    event.listen(engine, "before_cursor_execute", seen)
    try:
        same = CallFacts(
            "twice-1", caller_raw="13800008888", stage="recorded", ended_at=ended + timedelta(milliseconds=300)
        )
        again = await intake.settle(same, via="tracker")
        assert (again.outcome, again.case_id, again.created) == ("case", settled.case_id, False)
        assert statements == []
        # A report that adds something goes to the database: she heard her number, and the system ended it.
        told = CallFacts("twice-1", ended_at=ended + timedelta(seconds=5), ended_by="system", number_told=True)
        assert (await intake.settle(told, via="reconcile")).case_id == settled.case_id
        assert statements
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    async with runtime.sessions() as session:
        call = await session.scalar(select(Call).where(Call.linkedid == "twice-1"))
        case = await session.get(Case, settled.case_id)
    assert call is not None and case is not None
    assert (call.ended_at, call.ended_by, case.number_told) == (ended + timedelta(seconds=5), "system", True)
