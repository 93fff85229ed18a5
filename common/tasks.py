"""Background tasks with an owner: named, referenced, logged when they fail, cancelled on close."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)

# How long close() waits for cancelled tasks to finish their cleanup.
STOP_GRACE_S = 10.0


class TaskGroupClosed(RuntimeError):
    pass


class BackgroundTasks:
    """Owns the long-lived tasks of one component.

    Unlike a bare ``create_task`` the task cannot be garbage-collected while
    running, an exception is logged once with the task's name instead of
    vanishing, and :meth:`close` cancels and awaits everything still running.
    """

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        if self._closed:
            coro.close()
            raise TaskGroupClosed(f"{self._owner} is shutting down; cannot start {name}")
        task = asyncio.get_running_loop().create_task(coro, name=f"{self._owner}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("background task %s failed", task.get_name(), exc_info=exc)

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        """Cancel everything and wait for it, at most STOP_GRACE_S; log (and leave) what outlives that."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
            for task in pending:
                log.error("background task %s did not stop within %.1f s", task.get_name(), STOP_GRACE_S)
