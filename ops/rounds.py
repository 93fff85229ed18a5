"""The loop every ops watch runs: one round every interval, a failing round logged and the next one run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def every(
    interval_s: float, round_: Callable[[], Awaitable[object]], what: str, *, first_at_once: bool = False
) -> None:
    """Run ``round_`` every ``interval_s`` seconds until cancelled.

    A round that raises is logged with its traceback and the next one runs as usual: a watch that died on one
    bad answer (a database restarting, a program printing something new) would leave its state stale for good.
    """
    if not first_at_once:
        await asyncio.sleep(interval_s)
    while True:
        try:
            await round_()
        except Exception:
            log.exception("%s: a round failed; trying again in %g s", what, interval_s)
        await asyncio.sleep(interval_s)
