"""Reconciliation from what Asterisk left behind: CDR records (lines as the sandbox writes them) and spool files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import select

from common.clock import SystemClock
from hotline.ami import AmiLink
from hotline.calls import CallTracker
from hotline.intake import CallFacts, IntakeService
from hotline.phones import PhoneRegistry
from hotline.reconcile import CdrCall, Reconciler, read_cdr
from hotline.recordings import RecordingStore
from server import Runtime
from storage.models import Call, Case, MissedCall, Recording
from tests.hotline.wavs import write_wav


def cdr_line(linkedid: str, uniqueid: str, userfield: str, *, src: str = "13800001111", minute: int = 0) -> str:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now.replace(minute=minute).strftime("%Y-%m-%d %H:%M:%S")
    # The columns of cdr.conf's [csv] with loguniqueid, loguserfield and newcdrcolumns.
    fields = [
        "", src, "s", "hotline", f'"" <{src}>', "Local/s@hotline-00000002;2", "", "Hangup", "",
        start, start, start, "80", "80", "ANSWERED", "DOCUMENTATION", uniqueid, userfield, "", linkedid, "5",
    ]  # fmt: skip
    return ",".join(f'"{field}"' if not field.isdigit() else field for field in fields) + "\n"


class QuietLink:
    """What reconciliation needs of the AMI link, with the live calls a test says there are."""

    def __init__(self) -> None:
        self.live: list[dict[str, str]] = []
        self.connected = True

    def on_connected(self, hook: Any) -> None:
        pass

    async def live_channels(self) -> list[dict[str, str]]:
        return self.live


def test_a_cdr_record_says_where_the_caller_got_to() -> None:
    call = CdrCall("c1", [{"userfield": "cx:hotline:done:1:petition:1", "src": "13800001111", "start": "", "end": ""}])
    facts = call.facts()
    assert facts is not None and (facts.stage, facts.choice, facts.category, facts.test_call) == (
        "done",
        "1",
        "petition",
        True,
    )
    callback = CdrCall("c2", [{"userfield": "cx:callback:42", "start": "", "end": ""}]).facts()
    assert callback is not None and callback.kind == "callback" and callback.case_id == 42
    assert CdrCall("c3", [{"userfield": "", "start": "", "end": ""}]).facts() is None


def test_only_complete_lines_are_read_and_the_offset_says_where_to_go_on(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    path.write_text(cdr_line("a", "a-ivr", "cx:hotline:menu:::") + '"", "half a line')
    records, offset = read_cdr(path, 0)
    assert [record["linkedid"] for _position, record in records] == ["a"]
    assert offset == len(cdr_line("a", "a-ivr", "cx:hotline:menu:::").encode())


async def test_calls_that_ended_unseen_are_settled_from_the_cdr_once_and_live_ones_wait(
    runtime: Runtime, tmp_path: Path
) -> None:
    store = RecordingStore(tmp_path / "recordings", tmp_path / "spool")
    store.prepare()
    intake = IntakeService(
        runtime.sessions, SystemClock(), store, PhoneRegistry(runtime.sessions, SystemClock()), runtime.cases.workflow
    )
    cdr = tmp_path / "Master.csv"
    link = QuietLink()

    async def finished(facts: CallFacts) -> None:
        await intake.settle(facts, via="tracker")

    tracker = CallTracker(finished, clock=SystemClock())
    reconciler = Reconciler(cast(AmiLink, link), tracker, intake, runtime.sessions, clock=SystemClock(), cdr_csv=cdr)
    write_wav(store.spool / "cx_discipline_message_spoke.wav", 2.0)
    cdr.write_text(
        cdr_line("welcome", "welcome-ivr", "cx:hotline:welcome:::")
        + cdr_line("status", "status-ivr", "cx:hotline:done:2::")
        + cdr_line("spoke", "spoke-ivr", "cx:hotline:recording:3:discipline:")
        + cdr_line("live", "live-ivr", "cx:hotline:menu:::")
    )
    link.live = [{"Linkedid": "live", "Uniqueid": "live-2"}]
    await tracker.start()
    try:
        first = await reconciler.run()
        second = await reconciler.run()
        link.live = []
        third = await reconciler.run()
    finally:
        await tracker.stop()
    assert (first.settled_from_cdr, second.settled_from_cdr, third.settled_from_cdr) == (3, 0, 1)
    assert first.attached == 0  # the spoken message's file was attached while settling from the CDR
    async with runtime.sessions() as session:
        calls = {call.linkedid: call.outcome for call in (await session.scalars(select(Call))).all()}
        case = await session.scalar(select(Case))
        missed = {row.linkedid: row.reason for row in (await session.scalars(select(MissedCall))).all()}
    assert calls == {"welcome": "missed", "status": "status_query", "spoke": "case", "live": "missed"}
    assert case is not None and case.linkedid == "spoke" and case.sealed
    assert missed == {"welcome": "hung_up_at_welcome", "live": "hung_up_at_menu"}
    assert store.spool_files() == []


async def test_recordings_are_deleted_only_under_an_explicit_retention_setting(
    runtime: Runtime, tmp_path: Path
) -> None:
    store = RecordingStore(tmp_path / "recordings", tmp_path / "spool")
    store.prepare()
    intake = IntakeService(
        runtime.sessions, SystemClock(), store, PhoneRegistry(runtime.sessions, SystemClock()), runtime.cases.workflow
    )
    link = QuietLink()

    async def finished(facts: CallFacts) -> None:
        await intake.settle(facts, via="tracker")

    tracker = CallTracker(finished, clock=SystemClock())
    write_wav(store.spool / "cx_petition_message_ancient.wav", 1.0)
    await intake.open_case(CallFacts("ancient", stage="recorded"), via="t")
    (recording_id,) = await intake.attach("ancient")
    async with runtime.sessions() as session:
        recording = await session.get(Recording, recording_id)
        assert recording is not None
        recording.recorded_at = recording.recorded_at.replace(year=recording.recorded_at.year - 10)
        await session.commit()
        stored = store.root / recording.path

    def reconciler(**retention: int) -> Reconciler:
        return Reconciler(
            cast(AmiLink, link), tracker, intake, runtime.sessions, clock=SystemClock(), cdr_csv=None, **retention
        )

    # The default (0) keeps a ten-year-old recording for ever.
    assert (await reconciler().run()).purged == 0
    assert stored.exists()
    # A retention of a year, set on purpose: the file goes, the row stays and says so.
    assert (await reconciler(retention_days=365).run()).purged == 1
    async with runtime.sessions() as session:
        purged = await session.get(Recording, recording_id)
    assert not stored.exists() and purged is not None and purged.purged_at is not None
