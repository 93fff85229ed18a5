"""What runs on the event loop, measured in CPU time: the evidence that nothing CPU-bound is on it.

asyncio's own debug mode (``slow_callback_duration``) times callbacks by the wall clock, so on a
machine shared with other work a callback that was merely descheduled looks slow. This watch times
each callback by the CPU time the loop's thread spent in it (``time.thread_time``): a callback over
the limit really computed that long on the loop, whatever the machine's load.

    with LoopWatch(limit_s=0.05) as watch:
        await something()
    assert watch.slow == []
"""

from __future__ import annotations

import asyncio.events
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any


@dataclass
class LoopWatch:
    """Every callback of the loop's thread longer than ``limit_s`` of CPU, with what it was."""

    limit_s: float = 0.05
    slow: list[tuple[float, str]] = field(default_factory=list)
    longest_s: float = 0.0
    callbacks: int = 0
    _original: Callable[[asyncio.events.Handle], None] | None = None
    _thread: int = 0

    def __enter__(self) -> LoopWatch:
        self._thread = threading.get_ident()
        original = asyncio.events.Handle._run
        self._original = original
        watch = self

        def timed(handle: asyncio.events.Handle) -> None:
            if threading.get_ident() != watch._thread:
                original(handle)
                return
            started = time.thread_time()
            try:
                original(handle)
            finally:
                spent = time.thread_time() - started
                watch.callbacks += 1
                watch.longest_s = max(watch.longest_s, spent)
                if spent > watch.limit_s:
                    watch.slow.append((round(spent, 3), repr(handle)[:300]))

        asyncio.events.Handle._run = timed  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._original is not None:
            asyncio.events.Handle._run = self._original  # type: ignore[method-assign,assignment]

    def summary(self) -> dict[str, Any]:
        return {"callbacks": self.callbacks, "longest_ms": round(self.longest_s * 1000, 1), "slow": self.slow[:5]}
