"""A round of work every so often, outliving a failing round: the ops watches, the alarms, the alerts' sources.

All of them do the same thing: run a step, wait, run it again, until the service stops; a round that raises is
logged with the part's name and the next round comes as usual (a watch that died on one bad answer — a database
restarting, a program printing something new — would leave its state stale for good).

* :func:`every` is that loop, for a part that owns its tasks already (cancelled when it stops);
* :class:`Periodic` is the loop as an owned service: ``start`` / ``stop``, and stopping lets the round in
  progress finish (a database call cancelled halfway can leave a connection behind the pool's back) before the
  task is cancelled, at most ``stop_grace_s`` later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from common.tasks import BackgroundTasks

log = logging.getLogger(__name__)


async def every(
    interval_s: float, round_: Callable[[], Awaitable[object]], what: str, *, first_at_once: bool = False
) -> None:
    """Run ``round_`` every ``interval_s`` seconds until cancelled; a round that raises is logged, the next runs."""
    if not first_at_once:
        await asyncio.sleep(interval_s)
    while True:
        try:
            await round_()
        except Exception:
            log.exception("%s: a round failed; trying again in %g s", what, interval_s)
        await asyncio.sleep(interval_s)


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
                log.exception("%s: a round failed; trying again in %g s", self.name, self.interval_s)
            await self._pause()

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.interval_s):
                await self._stopping.wait()
