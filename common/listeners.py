"""Listeners told, after a committed change, which object changed (the scheduler re-plans a schedule)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

ChangeListener = Callable[[int], Awaitable[None]]


class ChangeListeners:
    def __init__(self, what: str) -> None:
        self._what = what
        self._listeners: list[ChangeListener] = []

    def add(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    async def notify(self, object_id: int) -> None:
        for listener in self._listeners:
            try:
                await listener(object_id)
            except Exception:  # a listener's failure must not undo a committed change
                log.exception("%s change listener failed for %s", self._what, object_id)
