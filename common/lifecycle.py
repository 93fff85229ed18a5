"""The one start/stop protocol of the long-lived parts, and a group that starts them in order.

Everything that runs in the background (the speech engines' prober in every
process; on the elected worker the AMI link, FastAGI, the call tracker, the
dispatcher, the scheduler, the callback and follow-up runners…) offers the
same three things: a ``name`` for the log, ``start()`` and ``stop()``. Each
part lists its ``services`` (every process) and ``worker_services`` (the
elected worker only) in the order they must start; :class:`ServiceGroup`
starts a list in that order and stops it in reverse — the web app and the
worker election do it for the whole runtime, the dial test for the hotline
alone — so the order is written down once, by the part that knows it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

log = logging.getLogger(__name__)


class Service(Protocol):
    """Something that runs in the background between ``start()`` and ``stop()``; ``stop()`` is safe to repeat."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class ServiceGroup:
    """Services started in the order given and stopped in reverse.

    ``stop()`` stops every service of the group, started or not (a service's
    ``stop`` is a no-op when it is not running), and never raises: one that
    fails to stop must not keep the others running.
    """

    def __init__(self, services: Sequence[Service]) -> None:
        self.services = tuple(services)

    async def start(self) -> None:
        """Start each service in turn; if one fails, those already started are stopped again, then it raises.

        (The failed one is stopped too: a ``start`` that raised half-way may have left something running.)
        """
        started: list[Service] = []
        for service in self.services:
            log.info("starting %s", service.name)
            started.append(service)
            try:
                await service.start()
            except BaseException:
                log.error(
                    "%s failed to start; stopping the %d service(s) started before it", service.name, len(started) - 1
                )
                for done in reversed(started):
                    with contextlib.suppress(Exception):
                        await done.stop()
                raise

    async def stop(self) -> None:
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                await service.stop()
