"""Reconciliation: calls that ended while nobody was listening still become their cases, exactly once.

It runs whenever the AMI link comes (back) up — at start-up and after every
outage — and every ``interval_s`` besides. Each run:

1. asks Asterisk which channels are live (``CoreShowChannels``); the tracker
   takes the list as the truth (calls it never heard of are followed from
   now on) and hands back every call it held that ended unseen;
2. reads the CDR CSV from where the last run stopped: a hotline call's record
   carries ``cx:hotline:<stage>:<key>:<category>:<test>:<told>:<ended by>:
   <started>:<presentation>`` in its userfield (the hang-up handler writes the
   last one), its caller id (``"孙大妈" <13930000003>``) and its start and end.
   The calls the tracker handed back are settled with what it knew and the
   CDR's times; every other call that ended unseen is settled from its record
   alone (a case, a missed call, a status query). Records of live calls are
   left to be read next time;
3. walks the spool: every recording of a call that is not live (neither in
   Asterisk's list nor the tracker's) is settled and attached;
4. deletes recordings past the retention setting, if one is set.

Everything it calls is idempotent, so running it twice, or alongside the
tracker, changes nothing the second time — and its report counts only what it
did itself: calls *it* was first to settle, recordings *it* attached.

A run is its own task, not the AMI connection's: a link that drops while a run
writes to the database does not cancel it half-way (the database work goes on
to the end; a run cut short before it had the channel list says so in the log
and the next connection runs again).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.clock import Clock
from common.health import ComponentHealth
from common.tasks import BackgroundTasks, TaskGroupClosed
from hotline.ami import AmiError, AmiLink
from hotline.calls import CallTracker, epoch_time
from hotline.intake import ENDINGS, CallFacts, IntakeService, Settlement
from hotline.recordings import AudioFacts, inspect, retention_cutoff
from storage.models import HotlineState

log = logging.getLogger(__name__)

# cdr.conf [csv] with loguniqueid, loguserfield and newcdrcolumns (deploy/asterisk/templates/cdr.conf.j2).
CDR_COLUMNS: Final = (
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "uniqueid",
    "userfield",
    "peeraccount",
    "linkedid",
    "sequence",
)
# CDR records older than this are history, not calls waiting to be settled (a fresh database on
# an old Asterisk must not turn years of records into missed calls).
CDR_LOOKBACK: Final = timedelta(days=7)
STATE_KEY: Final = "cdr_csv"
# A caller id as the CDR's clid column writes it: "name" <number>.
_CLID: Final = re.compile(r'^\s*"(?P<name>.*)"\s*<(?P<number>[^>]*)>\s*$')


def clid_name(clid: str) -> str | None:
    """The caller's name from a CDR caller id (``"孙大妈" <13930000003>``); None when it has none."""
    match = _CLID.match(clid or "")
    name = match["name"].strip() if match else ""
    return name or None


@dataclass
class CdrCall:
    linkedid: str
    rows: list[dict[str, str]] = field(default_factory=list)

    def facts(self) -> CallFacts | None:
        """What the CDR says about a call of ours; None if it is not ours."""
        marks = [row["userfield"] for row in self.rows if row.get("userfield", "").startswith("cx:")]
        if not marks:
            return None
        all_parts = [mark.split(":") for mark in marks]
        parts = all_parts[-1]
        kind = parts[1] if len(parts) > 1 else ""
        starts = [_cdr_time(row.get("start", "")) for row in self.rows]
        ends = [_cdr_time(row.get("end", "")) for row in self.rows]
        started = min((time for time in starts if time), default=None)
        ended = max((time for time in ends if time), default=None)
        if kind == "hotline":
            hotline_row = next((row for row in self.rows if row.get("userfield", "").startswith("cx:hotline")), {})
            # The dialplan's own start (to the microsecond) beats the CSV's whole seconds.
            precise = [time for time in (epoch_time(_part(each, 8)) for each in all_parts) if time is not None]
            endings = [_part(each, 7) for each in all_parts if _part(each, 7) in ENDINGS]
            presentation = next((_part(each, 9) for each in all_parts if _part(each, 9)), None)
            return CallFacts(
                linkedid=self.linkedid,
                caller_raw=hotline_row.get("src") or None,
                caller_name=clid_name(hotline_row.get("clid", "")),
                presentation=presentation,
                started_at=min(precise) if precise else started,
                ended_at=ended,
                stage=_part(parts, 2),
                choice=_part(parts, 3) or "",
                category=_part(parts, 4),
                test_call=_part(parts, 5) == "1",
                number_told=any(_part(each, 6) == "1" for each in all_parts),
                ended_by=endings[-1] if endings else None,
            )
        if kind in ("callback", "survey", "page"):
            case = _part(parts, 2) or ""
            return CallFacts(
                linkedid=self.linkedid,
                kind=kind,
                started_at=started,
                ended_at=ended,
                case_id=int(case) if kind != "page" and case.isdigit() else None,
            )
        return None


def _part(parts: list[str], index: int) -> str | None:
    return parts[index] if len(parts) > index and parts[index] else None


def _cdr_time(text: str) -> datetime | None:
    # cdr.conf sets usegmtime: the CSV's times are UTC.
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def read_cdr(path: Path, offset: int) -> tuple[list[tuple[int, dict[str, str]]], int]:
    """Complete CSV lines from ``offset``: (line offset, record) pairs and the offset after the last one."""
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    records: list[tuple[int, dict[str, str]]] = []
    position = offset
    for raw in data[: end + 1].splitlines(keepends=True):
        line = raw.decode("utf-8", errors="replace")
        for values in csv.reader(io.StringIO(line)):
            if len(values) >= len(CDR_COLUMNS):
                records.append((position, dict(zip(CDR_COLUMNS, values, strict=False))))
        position += len(raw)
    return records, offset + end + 1


def with_cdr_times(held: CallFacts, recorded: CallFacts | None) -> CallFacts:
    """A call the tracker held that ended unseen: what the tracker knew, completed by its CDR record.

    The tracker saw the call live (its kind, caller, stage as far as it got); the CDR was
    written when it really ended, so its end — and whatever the hang-up handler added (the
    last stage, whether the number was told, who ended it) — is the truth the tracker lacks.
    """
    if recorded is None:
        return held
    return CallFacts(
        linkedid=held.linkedid,
        kind=held.kind,
        caller_raw=held.caller_raw or recorded.caller_raw,
        caller_name=held.caller_name or recorded.caller_name,
        presentation=held.presentation or recorded.presentation,
        started_at=min((time for time in (held.started_at, recorded.started_at) if time), default=None),
        ended_at=recorded.ended_at,
        stage=recorded.stage or held.stage,
        choice=held.choice if held.choice is not None else recorded.choice,
        category=held.category or recorded.category,
        dial_status=held.dial_status,
        test_call=held.test_call or recorded.test_call,
        case_id=held.case_id if held.case_id is not None else recorded.case_id,
        ended_by=recorded.ended_by,
        number_told=bool(held.number_told or recorded.number_told),
    )


@dataclass
class ReconcileReport:
    """What one run did itself (not what it found already done by FastAGI or the tracker)."""

    reason: str
    live_calls: int = 0
    # Calls the tracker held that had ended unseen (settled here, or already by FastAGI).
    finished_from_tracker: list[str] = field(default_factory=list)
    # Calls this run was the first to settle, by what told it: the tracker's memory (with the
    # CDR's times when there was a record), a CDR record alone, a recording in the spool alone.
    settled_from_tracker: int = 0
    settled_from_cdr: int = 0
    settled_from_spool: int = 0
    # Recordings this run moved onto their case or missed call, by whichever of its paths.
    attached: int = 0
    purged: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "live_calls": self.live_calls,
            "finished_from_tracker": len(self.finished_from_tracker),
            "settled_from_tracker": self.settled_from_tracker,
            "settled_from_cdr": self.settled_from_cdr,
            "settled_from_spool": self.settled_from_spool,
            "attached": self.attached,
            "purged": self.purged,
        }


class Reconciler:
    name = "reconcile"

    def __init__(
        self,
        link: AmiLink,
        tracker: CallTracker,
        intake: IntakeService,
        sessions: async_sessionmaker[AsyncSession],
        *,
        clock: Clock,
        cdr_csv: Path | None,
        interval_s: float = 600.0,
        retention_days: int = 0,
    ) -> None:
        self._link = link
        self._tracker = tracker
        self._intake = intake
        self._sessions = sessions
        self._clock = clock
        self._cdr_csv = cdr_csv
        self._interval_s = interval_s
        self._retention_days = retention_days
        self._lock = asyncio.Lock()
        self._tasks: BackgroundTasks | None = None
        self.health = ComponentHealth("reconcile", status="standby", detail="not run yet")
        self.runs = 0
        self.last: ReconcileReport | None = None
        self._ran = asyncio.Condition()
        link.on_connected(self.after_connect)

    async def start(self) -> None:
        if self._tasks is None:
            self._tasks = BackgroundTasks("reconcile")
            self._tasks.spawn(self._periodically(), "periodic")

    async def stop(self) -> None:
        if self._tasks is not None:
            await self._tasks.close()
            self._tasks = None

    async def after_connect(self) -> None:
        """The link is up again: run now, as a task of our own (a drop of the link must not cut it half-way)."""
        if self._tasks is None:
            return  # not the active worker (or stopping)
        with contextlib.suppress(TaskGroupClosed):
            self._tasks.spawn(self._run_logged("connected"), "after-connect")

    async def _periodically(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            if self._link.connected:
                await self._run_logged("periodic")

    async def _run_logged(self, reason: str) -> None:
        try:
            report = await self.run(reason)
        except AmiError as exc:
            log.warning(
                "reconciliation (%s) could not ask Asterisk for its live channels (%s); "
                "it runs again when the link is back",
                reason,
                exc.detail or exc.message,
            )
            self.health.set("degraded", f"{reason}: Asterisk did not answer", at=self._clock.now(), error=exc.detail)
            return
        except Exception as exc:
            log.exception("reconciliation (%s) failed", reason)
            self.health.set("down", f"{reason}: failed", at=self._clock.now(), error=repr(exc))
            return
        if any(value for key, value in report.as_dict().items() if key not in ("reason", "live_calls")):
            log.info("reconciliation: %s", report.as_dict())

    async def run(self, reason: str = "manual") -> ReconcileReport:
        async with self._lock:
            report = ReconcileReport(reason)
            channels = await self._link.live_channels()
            live = {channel["Linkedid"] for channel in channels if channel.get("Linkedid")}
            report.live_calls = len(live)
            ended = self._tracker.resync(channels)
            report.finished_from_tracker = [facts.linkedid for facts in ended]
            # Calls that began after the list was taken are in the tracker (the link is up): not ours to touch.
            busy = live | self._tracker.live_linkedids
            await self._settle_ended(ended, busy, report)
            await self._sweep_spool(busy, report)
            cutoff = retention_cutoff(self._clock.now(), self._retention_days)
            if cutoff is not None:
                report.purged = await self._intake.purge_before(cutoff)
            self.runs += 1
            self.last = report
            self.health.set("ok", f"last run: {reason}", at=self._clock.now())
            self.health.extra.update(report.as_dict())
        async with self._ran:
            self._ran.notify_all()
        return report

    async def wait_for_run(self, after: int, timeout_s: float) -> ReconcileReport:
        """Until a run beyond the first ``after`` has completed (tests; operators watching an outage end)."""
        async with asyncio.timeout(timeout_s), self._ran:
            await self._ran.wait_for(lambda: self.runs > after)
        assert self.last is not None
        return self.last

    # -- CDR --------------------------------------------------------------------------------------

    async def _settle(self, facts: CallFacts, report: ReconcileReport, counter: str) -> None:
        """Settle one call that has ended and attach its recordings, counting what this run did itself."""
        settlement: Settlement = await self._intake.settle(facts, via="reconcile")
        if settlement.created:
            setattr(report, counter, getattr(report, counter) + 1)
        if facts.kind == "hotline" or facts.case_id is not None:
            report.attached += len(await self._intake.attach(facts.linkedid))

    async def _settle_ended(self, held: list[CallFacts], busy: set[str], report: ReconcileReport) -> None:
        """The calls the tracker held (with their CDR times), then every other call the CDR says ended unseen."""
        records = await self._read_cdr(busy)
        calls = records[0] if records is not None else {}
        for tracked in held:
            record = calls.pop(tracked.linkedid, None)
            recorded = record.facts() if record is not None else None
            await self._settle(with_cdr_times(tracked, recorded), report, "settled_from_tracker")
        horizon = self._clock.now() - CDR_LOOKBACK
        for call in calls.values():
            facts = call.facts()
            if facts is None or (facts.ended_at is not None and facts.ended_at < horizon):
                continue
            await self._settle(facts, report, "settled_from_cdr")
        if records is not None:
            await self._save_bookmark(records[1])

    async def _read_cdr(self, busy: set[str]) -> tuple[dict[str, CdrCall], dict[str, Any]] | None:
        """The records of calls that ended since the last run, by Linkedid, and the bookmark to save after."""
        path = self._cdr_csv
        if path is None:
            return None
        try:
            stat = await asyncio.to_thread(path.stat)
        except FileNotFoundError:
            return None
        bookmark = await self._bookmark()
        offset = int(bookmark.get("offset", 0))
        if bookmark.get("inode") != stat.st_ino or offset > stat.st_size:
            offset = 0  # a new or truncated file: read it from the start
        records, end = await asyncio.to_thread(read_cdr, path, offset)
        calls: dict[str, CdrCall] = {}
        hold_back = end
        for position, row in records:
            linkedid = row.get("linkedid") or row.get("uniqueid") or ""
            if not linkedid:
                continue
            if linkedid in busy:
                hold_back = min(hold_back, position)  # read this call's records again next time
                continue
            calls.setdefault(linkedid, CdrCall(linkedid)).rows.append(row)
        return calls, {"inode": stat.st_ino, "offset": hold_back, "path": str(path)}

    async def _bookmark(self) -> dict[str, Any]:
        async with self._sessions() as session:
            state = await session.get(HotlineState, STATE_KEY)
        if state is None:
            return {}
        try:
            value = json.loads(state.value)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    async def _save_bookmark(self, value: dict[str, Any]) -> None:
        async with self._sessions() as session:
            state = await session.get(HotlineState, STATE_KEY)
            if state is None:
                state = HotlineState(key=STATE_KEY, value="", updated_at=self._clock.now())
                session.add(state)
            state.value = json.dumps(value)
            state.updated_at = self._clock.now()
            await session.commit()

    # -- spool ------------------------------------------------------------------------------------

    async def _sweep_spool(self, busy: set[str], report: ReconcileReport) -> None:
        """Recordings of calls neither Asterisk nor the CDR told us about: the file name says whose they are."""
        waiting = await asyncio.to_thread(self._intake.store.spool_files)
        for linkedid in _unique(name.linkedid for _path, name in waiting):
            if linkedid in busy:
                continue
            files = [(path, name) for path, name in waiting if name.linkedid == linkedid]
            path, name = files[0]
            if name.case_id is None:
                message = next((n for _p, n in files if n.kind == "message"), None)
                transfer = next((n for _p, n in files if n.kind == "transfer"), None)
                started, ended = await asyncio.to_thread(_recording_span, path)
                facts = CallFacts(
                    linkedid=linkedid,
                    stage="talked" if transfer is not None and message is None else "recorded",
                    category=(message or name).category,
                    started_at=started,
                    ended_at=ended,
                )
                if (await self._intake.settle(facts, via="reconcile")).created:
                    report.settled_from_spool += 1
            report.attached += len(await self._intake.attach(linkedid))


def _recording_span(path: Path) -> tuple[datetime | None, datetime | None]:
    """With nothing but the file: the call began at least as long before its last write as it lasts."""
    try:
        last_write = datetime.fromtimestamp(os.path.getmtime(path), UTC)
    except OSError:
        return None, None
    try:
        audio: AudioFacts | None = inspect(path)
    except (ValueError, OSError):
        audio = None
    return last_write - timedelta(seconds=audio.duration_s if audio else 0.0), last_write


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))
