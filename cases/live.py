"""Live changes of the case ledger: what changed, told at once to every page that shows it.

An operator's screen — the case list, the home page's 待办 counts, a case page — updates itself when
something changes: a call becomes a case, a recording arrives, a colleague resolves a case, a missed call
comes in. The pages listen on a server-sent event stream (``web/views/cases.py``) fed by this hub.

**Where changes come from.** The database is the one source, so every process sees every change,
whichever process made it (a standby serving pages, the elected worker taking the calls; SQLite or
PostgreSQL alike): every change to a case writes a row of its history (``case_events``, append-only —
creation included, by the hotline's intake too), a recording is a new row, and so is a missed call. The hub
remembers the highest id it has seen of each and asks for anything newer — a few index lookups — every
``poll_s``, or at once when poked. The workflow and the hotline's intake poke it after each commit in this
process (:meth:`ChangeFeed.poke`), so here a change is published within milliseconds; another process's
change within ``poll_s``.

**What is published.** A batch of :class:`CaseChange` — the case's id, township, sealing and whether it
is a dial test — to each subscriber; the web layer drops what its user may not see before anything is
sent (a sealed case's id never reaches a non-inspector). A subscriber too slow to keep up gets a
``resync`` instead of an ever longer queue: its page simply reloads what it shows.

The hub is a :class:`common.lifecycle.Service` run in every process; ``stop()`` ends its poll task and
every subscription (the streams end; their pages reconnect to the next process or fall back to polling).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.tasks import BackgroundTasks
from storage.models import Case, CaseEvent, MissedCall, Recording

log = logging.getLogger(__name__)

Topic = Literal["case", "missed_call"]
# Rows read per table and poll: far more than change in a poll; the rest is read on the next one.
BATCH = 500
# Batches a subscriber may have waiting before it is told to resync instead.
QUEUE_LIMIT = 100


@dataclass(frozen=True)
class CaseChange:
    """Something changed about a case (or a missed call came in), with what decides who may hear of it."""

    topic: Topic
    case_id: int | None
    township_id: int | None
    sealed: bool
    test_call: bool


@dataclass(eq=False)  # each subscription is itself (kept in a set)
class Subscription:
    """One listener's batches, in order; ``None`` in the queue ends it."""

    queue: asyncio.Queue[list[CaseChange] | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    resync: bool = False

    async def next(self, timeout_s: float) -> list[CaseChange] | Literal["resync", "quiet", "ended"]:
        """The next batch (``resync`` first if some were dropped), ``quiet`` after ``timeout_s`` without one,
        or ``ended`` once the hub has stopped."""
        if self.resync:
            self.resync = False
            return "resync"
        try:
            batch = await asyncio.wait_for(self.queue.get(), timeout_s)
        except TimeoutError:
            return "quiet"
        if batch is None:
            self.queue.put_nowait(None)  # ended for good, however often it is asked again
            return "ended"
        return batch


class ChangeFeed:
    name = "case changes"

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, poll_s: float = 0.5) -> None:
        self._sessions = sessions
        self.poll_s = poll_s
        self._subscribers: set[Subscription] = set()
        self._tasks: BackgroundTasks | None = None
        self._wake = asyncio.Event()
        # The highest id seen in each table: anything above it is new.
        self._last: dict[str, int] = {}

    # -- the service ------------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks is not None:
            return
        async with self._sessions() as session:
            self._last = await _newest(session)
        self._wake = asyncio.Event()
        self._tasks = BackgroundTasks(self.name)
        self._tasks.spawn(self._run(), "poll")

    async def stop(self) -> None:
        self.close_subscriptions()
        if self._tasks is None:
            return
        tasks, self._tasks = self._tasks, None
        await tasks.close()

    def close_subscriptions(self) -> None:
        """End every stream now (the web app's shutdown, before it waits for open requests to finish)."""
        for subscription in list(self._subscribers):
            self._end(subscription)

    # -- listening --------------------------------------------------------------------------

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        subscription = Subscription()
        if self._tasks is None:
            subscription.queue.put_nowait(None)  # not running (a command, a stopped service): ends at once
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    # -- learning of changes ----------------------------------------------------------------

    def poke(self) -> None:
        """Something was committed in this process: look now rather than at the next poll."""
        self._wake.set()

    async def changed(self, _case_id: int, _kind: str) -> None:
        """The workflow's change listener (``Workflow.on_change``): a poke."""
        self.poke()

    async def _run(self) -> None:
        while True:
            try:
                changes = await self.read_new()
            except Exception:
                log.exception("case changes: reading what changed failed; trying again")
                changes = []
            if changes:
                self._publish(changes)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()
            self._wake.clear()

    async def read_new(self) -> list[CaseChange]:
        """Everything committed since the last look, oldest first (and the marks moved past it)."""
        async with self._sessions() as session:
            changes, self._last = await _changes_after(session, self._last)
        return changes

    # -- what a page has not seen -----------------------------------------------------------

    async def mark(self) -> str:
        """Where the ledger stands now, for a live page to carry (``data-live-since``).

        A page is rendered, then its script subscribes to the stream: whatever is committed in between
        (a callback ending while the page loads) is published to nobody it could reach. So a live page
        takes this mark *before* it reads what it shows, and its stream asks :meth:`since` for anything
        newer once it has subscribed. Read from the database, not this hub's memory: the page and its
        stream may be served by different processes.
        """
        async with self._sessions() as session:
            newest = await _newest(session)
        return ".".join(str(newest[table]) for table in TABLES)

    async def since(self, mark: str) -> list[CaseChange] | None:
        """What was committed after ``mark`` (from :meth:`mark`); None when the mark is not one of ours."""
        parts = mark.split(".")
        if len(parts) != len(TABLES) or not all(part.isdigit() and len(part) <= 18 for part in parts):
            return None
        async with self._sessions() as session:
            changes, _ = await _changes_after(session, dict(zip(TABLES, map(int, parts), strict=True)))
        return changes

    def _publish(self, changes: list[CaseChange]) -> None:
        for subscription in list(self._subscribers):
            try:
                subscription.queue.put_nowait(changes)
            except asyncio.QueueFull:
                # Too slow to keep up: drop what waits and tell it to reload what it shows.
                while not subscription.queue.empty():
                    subscription.queue.get_nowait()
                subscription.resync = True
                subscription.queue.put_nowait(changes)

    def _end(self, subscription: Subscription) -> None:
        while True:
            try:
                subscription.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                subscription.queue.get_nowait()


# The tables whose new rows are the ledger's changes, in the order a mark names them.
TABLES = ("events", "recordings", "missed")


async def _newest(session: AsyncSession) -> dict[str, int]:
    return {
        "events": int(await session.scalar(select(func.max(CaseEvent.id))) or 0),
        "recordings": int(await session.scalar(select(func.max(Recording.id))) or 0),
        "missed": int(await session.scalar(select(func.max(MissedCall.id))) or 0),
    }


async def _changes_after(session: AsyncSession, after: dict[str, int]) -> tuple[list[CaseChange], dict[str, int]]:
    """The changes committed above ``after``'s ids, oldest first (one per case), and the marks moved past them."""
    last = dict(after)
    changes: list[CaseChange] = []
    events = (
        await session.execute(
            select(CaseEvent.id, Case.id, Case.township_id, Case.sealed, Case.test_call)
            .join(Case, Case.id == CaseEvent.case_id)
            .where(CaseEvent.id > last["events"])
            .order_by(CaseEvent.id)
            .limit(BATCH)
        )
    ).all()
    recordings = (
        await session.execute(
            select(Recording.id, Case.id, Case.township_id, Case.sealed, Case.test_call)
            .join(Case, Case.id == Recording.case_id)
            .where(Recording.id > last["recordings"])
            .order_by(Recording.id)
            .limit(BATCH)
        )
    ).all()
    missed = (
        await session.execute(
            select(MissedCall.id, MissedCall.township_id, MissedCall.sealed, MissedCall.test_call)
            .where(MissedCall.id > last["missed"])
            .order_by(MissedCall.id)
            .limit(BATCH)
        )
    ).all()
    for rows, table in ((events, "events"), (recordings, "recordings")):
        for row_id, case_id, township_id, sealed, test_call in rows:
            changes.append(CaseChange("case", case_id, township_id, sealed, test_call))
            last[table] = max(last[table], row_id)
    for row_id, township_id, sealed, test_call in missed:
        changes.append(CaseChange("missed_call", None, township_id, sealed, test_call))
        last["missed"] = max(last["missed"], row_id)
    return list(dict.fromkeys(changes)), last  # one per case, in order
