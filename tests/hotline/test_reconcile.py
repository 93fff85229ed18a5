"""Reconciliation from what Asterisk left behind: CDR records (lines as the sandbox writes them) and spool files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import select

from common.clock import SystemClock
from hotline.ami import AmiLink
from hotline.calls import CallTracker
from hotline.intake import CallFacts, IntakeService, missed_reason
from hotline.phones import PhoneRegistry
from hotline.reconcile import CdrCall, Reconciler, clid_name, read_cdr, with_cdr_times
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


def test_the_last_cdr_mark_says_who_called_when_whether_she_heard_her_number_and_who_ended_it() -> None:
    row = {
        "userfield": "cx:hotline:done:1:petition::1:ivr:1796445611.754339:allowed_not_screened",
        "src": "13930000003",
        "clid": '"孙大妈" <13930000003>',
        "start": "2026-12-05 04:40:11",
        "end": "2026-12-05 04:40:40",
    }
    facts = CdrCall("c4", [row]).facts()
    assert facts is not None
    assert (facts.caller_raw, facts.caller_name, facts.presentation) == (
        "13930000003",
        "孙大妈",
        "allowed_not_screened",
    )
    assert facts.number_told is True and facts.ended_by == "ivr"
    # The dialplan's own start, to the microsecond, rather than the CSV's whole second; the CSV's end.
    assert facts.started_at == datetime.fromtimestamp(1796445611.754339, UTC)
    assert facts.ended_at == datetime(2026, 12, 5, 4, 40, 40, tzinfo=UTC)
    # An older mark (from a dialplan before "told" and "ended by" were added) still reads, with nothing more known.
    old = CdrCall("c5", [row | {"userfield": "cx:hotline:recording:1:petition:", "clid": '"" <13930000003>'}]).facts()
    assert old is not None and old.number_told is False and old.ended_by is None and old.caller_name is None
    assert old.started_at == datetime(2026, 12, 5, 4, 40, 11, tzinfo=UTC)
    assert [clid_name(text) for text in ('"王 大娘" <1>', "<1>", '"" <1>', "")] == ["王 大娘", None, None, None]


def test_a_call_the_tracker_held_takes_its_end_and_its_ending_from_the_cdr() -> None:
    started = datetime(2026, 12, 5, 1, 21, 58, 500000, tzinfo=UTC)
    held = CallFacts("h", caller_raw="13800001111", caller_name="王大娘", started_at=started, stage="recording")
    recorded = CallFacts(
        "h",
        started_at=started.replace(microsecond=0),
        ended_at=datetime(2026, 12, 5, 1, 22, 40, tzinfo=UTC),
        stage="done",
        ended_by="system",
        number_told=False,
    )
    merged = with_cdr_times(held, recorded)
    assert (merged.caller_name, merged.stage, merged.ended_by) == ("王大娘", "done", "system")
    assert merged.started_at == started.replace(microsecond=0) and merged.ended_at == recorded.ended_at
    assert with_cdr_times(held, None) is held  # no record: nothing invented (its end stays unknown)


def test_a_call_the_system_ended_is_never_put_down_to_the_caller() -> None:
    assert missed_reason(CallFacts("m", stage="menu", ended_by="caller"), has_message=False) == "hung_up_at_menu"
    assert missed_reason(CallFacts("m", stage="menu", ended_by="system"), has_message=False) == "ended_by_system"
    assert missed_reason(CallFacts("m", stage="welcome", ended_by="call_limit"), has_message=False) == "ended_by_system"
    assert missed_reason(CallFacts("m", stage="recording"), has_message=True) == "nothing_said"


def test_calls_found_in_the_live_list_are_followed_as_ours_and_those_gone_are_handed_back() -> None:
    tracker = CallTracker(lambda facts: None, clock=SystemClock())  # type: ignore[arg-type,return-value]
    tracker._tasks = cast(Any, object())  # started, as far as handling events goes
    tracker.handle({"Event": "Newchannel", "Linkedid": "held", "Uniqueid": "held-1", "Timestamp": "1796445600.5"})
    tracker.handle({"Event": "UserEvent", "UserEvent": "CxStage", "Linkedid": "held", "Kind": "hotline"})
    live = [
        # After a restart: a hotline call the tracker never heard of, two channels, one in our IVR.
        {"Linkedid": "new", "Uniqueid": "new-1", "Context": "villager", "Duration": "00:00:12"},
        {"Linkedid": "new", "Uniqueid": "new-2", "Context": "hotline-message", "Duration": "00:00:11",
         "CallerIDNum": "13930000006", "CallerIDName": "王大娘"},
        {"Linkedid": "other", "Uniqueid": "other-1", "Context": "from-elsewhere", "Duration": "00:01:00"},
    ]  # fmt: skip
    before = datetime.now(UTC)
    (gone,) = tracker.resync(live)
    assert gone.linkedid == "held" and gone.ended_at is None  # nobody saw it end: the CDR will say
    assert gone.started_at == datetime.fromtimestamp(1796445600.5, UTC)
    new = tracker.calls["new"]
    assert new.kind == "hotline" and (new.caller_raw, new.caller_name) == ("13930000006", "王大娘")
    assert new.started_at is not None and new.started_at <= before - timedelta(seconds=11)
    assert tracker.calls["other"].kind is None  # not ours: dropped when it ends


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
    assert first.attached == 1  # the spoken message's file, attached while settling from the CDR
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
