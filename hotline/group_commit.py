"""Group commit: writes that arrive together share one transaction and one commit.

20 callers hanging up within a few milliseconds each need a row or two written (a case, a recording).
Written one by one, they take turns for SQLite's one write lock (PostgreSQL: the day's roll-up rows),
each turn a transaction stretched by a busy event loop, and the last caller waits for all of them.
:class:`GroupCommit` lets one writer at a time hold the turn; whoever holds it writes *everything
waiting at that moment* — its own write and those that queued behind the previous group — with the
``together`` function (one transaction, one commit). The first write of a burst goes alone at once;
the rest gather while it is written and go in the next group. Nothing waits on a timer.

If ``together`` fails, every write of the group is tried ``alone``, so one bad write never costs the
others theirs; each writer gets its own result or its own exception. A writer cancelled while it
holds the turn hands the others of its group back to the queue, first, for the next holder (the
writes must be idempotent, as intake's are, keyed by Linkedid: a commit cut by the cancellation may
have happened); its own write, like one cancelled while still queued, is dropped — as any cancelled
write is (the tracker or reconciliation settles that call).

In-process only: the elected worker is the one process that settles calls.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(eq=False)  # each write is itself, however alike two are
class _Waiting(Generic[Item, Result]):
    item: Item
    done: bool = False
    result: Result | None = None
    error: BaseException | None = None

    def settle(self, result: Result) -> None:
        self.result, self.done = result, True

    def fail(self, error: BaseException) -> None:
        self.error, self.done = error, True

    def outcome(self) -> Result:
        if self.error is not None:
            raise self.error
        assert self.done, "a write left unfinished by its group"
        return self.result  # type: ignore[return-value]  # Result may itself be None (done says it was set)


class GroupCommit(Generic[Item, Result]):
    """``write(item)``: written with whatever else is waiting; ``together`` gets two or more, in arrival order.

    ``together(items)`` returns one result per item, in order, or None when the group could not be
    written as one (its transaction rolled back: nothing of it is written); then each is ``alone``.
    """

    def __init__(
        self,
        name: str,
        together: Callable[[list[Item]], Awaitable[list[Result] | None]],
        alone: Callable[[Item], Awaitable[Result]],
        *,
        enabled: bool = True,
    ) -> None:
        """``enabled=False``: every write alone at once, side by side (no turn, no queue)."""
        self.name = name
        self.enabled = enabled
        self._together = together
        self._alone = alone
        self._turn = asyncio.Lock()
        self._waiting: list[_Waiting[Item, Result]] = []
        # Groups written as one, and how many writes they held (tests and the log).
        self.groups = 0
        self.grouped = 0

    async def write(self, item: Item) -> Result:
        if not self.enabled:
            return await self._alone(item)
        waiting: _Waiting[Item, Result] = _Waiting(item)
        self._waiting.append(waiting)
        try:
            async with self._turn:
                if not waiting.done:
                    group, self._waiting = self._waiting, []
                    await self._write(group)
        except BaseException:
            if waiting in self._waiting:
                self._waiting.remove(waiting)  # cancelled while queued: nobody writes it for a caller gone
            raise
        return waiting.outcome()

    async def _write(self, group: list[_Waiting[Item, Result]]) -> None:
        try:
            if len(group) > 1:
                results = await self._together([waiting.item for waiting in group])
                if results is not None:
                    for waiting, result in zip(group, results, strict=True):
                        waiting.settle(result)
                    self.groups += 1
                    self.grouped += len(group)
                    return
                log.info("%s: %d written together failed; writing each alone", self.name, len(group))
            for waiting in group:
                if waiting.done:
                    continue
                try:
                    waiting.settle(await self._alone(waiting.item))
                except Exception as exc:  # noqa: BLE001 - raised to its own writer (``outcome``), not to the others
                    waiting.fail(exc)
        finally:
            # Cancelled mid-way (the writer holding the turn went away): the rest go back to the queue, first.
            self._waiting[:0] = [waiting for waiting in group if not waiting.done]
