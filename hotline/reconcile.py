"""Reconciliation: calls that ended while nobody was listening still become their cases, exactly once.

It runs whenever the AMI link comes (back) up — at start-up and after every
outage — and every ``interval_s`` besides. Each run:

1. asks Asterisk which channels are live (``CoreShowChannels``); every call
   the tracker still holds that is no longer live is finished now (that is how
   a Hangup missed during an outage is made up for);
2. reads the CDR CSV from where the last run stopped: a hotline call's record
   carries ``cx:hotline:<stage>:<key>:<category>:<test>`` in its userfield, so
   a call that ended unseen is settled from it (a case, a missed call, a
   status query); records of live calls are left to be read next time;
3. walks the spool: every recording of a call that is not live (neither in
   Asterisk's list nor the tracker's) is settled and attached;
4. deletes recordings past the retention setting, if one is set.

Everything it calls is idempotent, so running it twice, or alongside the
tracker, changes nothing the second time.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.clock import Clock
from common.health import ComponentHealth
from common.tasks import BackgroundTasks
from hotline.ami import AmiError, AmiLink
from hotline.calls import CallTracker
from hotline.intake import CallFacts, IntakeService
from hotline.recordings import retention_cutoff
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


@dataclass
class CdrCall:
    linkedid: str
    rows: list[dict[str, str]] = field(default_factory=list)

    def facts(self) -> CallFacts | None:
        """What the CDR says about a call of ours; None if it is not ours."""
        marks = [row["userfield"] for row in self.rows if row.get("userfield", "").startswith("cx:")]
        if not marks:
            return None
        parts = marks[-1].split(":")
        kind = parts[1] if len(parts) > 1 else ""
        starts = [_cdr_time(row.get("start", "")) for row in self.rows]
        ends = [_cdr_time(row.get("end", "")) for row in self.rows]
        started = min((time for time in starts if time), default=None)
        ended = max((time for time in ends if time), default=None)
        if kind == "hotline":
            caller = next((row["src"] for row in self.rows if row.get("userfield", "").startswith("cx:hotline")), "")
            return CallFacts(
                linkedid=self.linkedid,
                caller_raw=caller or None,
                started_at=started,
                ended_at=ended,
                stage=_part(parts, 2),
                choice=_part(parts, 3) or "",
                category=_part(parts, 4),
                test_call=_part(parts, 5) == "1",
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


@dataclass
class ReconcileReport:
    reason: str
    live_calls: int = 0
    finished_from_tracker: list[str] = field(default_factory=list)
    settled_from_cdr: int = 0
    attached: int = 0
    purged: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "live_calls": self.live_calls,
            "finished_from_tracker": len(self.finished_from_tracker),
            "settled_from_cdr": self.settled_from_cdr,
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
        if self._tasks is None:
            return  # not the active worker (or stopping)
        await self._run_logged("connected")

    async def _periodically(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            if self._link.connected:
                await self._run_logged("periodic")

    async def _run_logged(self, reason: str) -> None:
        try:
            report = await self.run(reason)
        except AmiError as exc:
            self.health.set("degraded", f"{reason}: Asterisk did not answer", at=self._clock.now(), error=exc.detail)
            return
        except Exception as exc:
            log.exception("reconciliation (%s) failed", reason)
            self.health.set("down", f"{reason}: failed", at=self._clock.now(), error=repr(exc))
            return
        if report.finished_from_tracker or report.settled_from_cdr or report.attached or report.purged:
            log.info("reconciliation: %s", report.as_dict())

    async def run(self, reason: str = "manual") -> ReconcileReport:
        async with self._lock:
            report = ReconcileReport(reason)
            channels = await self._link.live_channels()
            live = {channel["Linkedid"] for channel in channels if channel.get("Linkedid")}
            report.live_calls = len(live)
            report.finished_from_tracker = self._tracker.resync(channels)
            # Calls that began after the list was taken are in the tracker (the link is up): not ours to touch.
            busy = live | self._tracker.live_linkedids
            report.settled_from_cdr = await self._settle_from_cdr(busy)
            report.attached = await self._sweep_spool(busy)
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

    async def _settle_from_cdr(self, busy: set[str]) -> int:
        path = self._cdr_csv
        if path is None:
            return 0
        try:
            stat = path.stat()
        except FileNotFoundError:
            return 0
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
        horizon = self._clock.now() - CDR_LOOKBACK
        settled = 0
        for call in calls.values():
            facts = call.facts()
            if facts is None or (facts.ended_at is not None and facts.ended_at < horizon):
                continue
            await self._intake.settle(facts, via="reconcile")
            if facts.kind == "hotline" or facts.case_id is not None:
                await self._intake.attach(facts.linkedid)
            settled += 1
        await self._save_bookmark({"inode": stat.st_ino, "offset": hold_back, "path": str(path)})
        return settled

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

    async def _sweep_spool(self, busy: set[str]) -> int:
        attached = 0
        waiting = await asyncio.to_thread(self._intake.store.spool_files)
        for linkedid in _unique(name.linkedid for _path, name in waiting):
            if linkedid in busy:
                continue
            files = [(path, name) for path, name in waiting if name.linkedid == linkedid]
            path, name = files[0]
            if name.case_id is None:
                message = next((n for _p, n in files if n.kind == "message"), None)
                transfer = next((n for _p, n in files if n.kind == "transfer"), None)
                facts = CallFacts(
                    linkedid=linkedid,
                    stage="talked" if transfer is not None and message is None else "recorded",
                    category=(message or name).category,
                    started_at=await asyncio.to_thread(_written_at, path),
                )
                await self._intake.settle(facts, via="reconcile")
            attached += len(await self._intake.attach(linkedid))
        return attached


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _written_at(path: Path) -> datetime | None:
    """When a recording was last written (its call's time, near enough), if it is still there."""
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except FileNotFoundError:
        return None
