"""A round of work every so often, as one owned, stoppable task that outlives a failing round.

The watches (clock, disk) and the alerts' sources and repeats all do the same thing: run a step, wait, run it
again, until the service stops. :class:`Periodic` is that loop once: the task is owned (``BackgroundTasks``),
a round that raises is logged with the part's name and the next round comes as usual (a watch that dies on one
bad answer would otherwise go quiet for good), and stopping lets the round in progress finish (a database call
cancelled halfway can leave a connection behind the pool's back) before the task is cancelled, at most
``stop_grace_s`` later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from common.tasks import BackgroundTasks

log = logging.getLogger(__name__)


class Periodic:
    """Runs ``step`` every ``interval_s`` (the first round at once, or after one interval) until :meth:`stop`."""

    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[object]],
        *,
        interval_s: float,
        first_round_at_once: bool = True,
        stop_grace_s: float = 10.0,
    ) -> None:
        self.name = name
        self._step = step
        self.interval_s = interval_s
        self._first_round_at_once = first_round_at_once
        self._stop_grace_s = stop_grace_s
        self._tasks: BackgroundTasks | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._tasks is not None

    async def start(self) -> None:
        if self._tasks is not None:
            return
        self._stopping = asyncio.Event()
        self._tasks = BackgroundTasks(self.name)
        self._loop_task = self._tasks.spawn(self._loop(), "rounds")

    async def stop(self) -> None:
        if self._tasks is None:
            return
        self._stopping.set()
        tasks, self._tasks = self._tasks, None
        if self._loop_task is not None:
            await asyncio.wait([self._loop_task], timeout=self._stop_grace_s)
            self._loop_task = None
        await tasks.close()

    async def _loop(self) -> None:
        if not self._first_round_at_once:
            await self._pause()
        while not self._stopping.is_set():
            try:
                await self._step()
            except Exception:
                log.exception("%s: a round failed; the next one comes in %.1f s", self.name, self.interval_s)
            await self._pause()

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.interval_s):
                await self._stopping.wait()
