"""Whether the system clock is synchronised, asked of the system (timedatectl, else chronyc) in the background.

Schedules play “on the second” and every call and case carries a time: both assume a correct clock. The
service does not set the clock (that is the system's job); it asks, and says so when the answer is bad.
The programs run as subprocesses under a time limit, never blocking the event loop. On a machine where
neither answers (a container without systemd or chrony), the state is “unknown”, shown as such — not as
synchronised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Literal

from common.clock import Clock
from common.health import ComponentHealth
from common.periodic import every
from common.tasks import BackgroundTasks

log = logging.getLogger(__name__)

Source = Literal["timedatectl", "chronyc"]


@dataclass(frozen=True)
class ClockState:
    """What the system said: synchronised or not (None: nobody answered), and the offset when it is known."""

    synchronized: bool | None
    offset_s: float | None = None
    source: Source | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"synchronized": self.synchronized, "source": self.source}
        if self.offset_s is not None:
            result["offset_ms"] = round(self.offset_s * 1000, 3)
        return result


UNKNOWN = ClockState(None, detail="no time synchronisation service answered (timedatectl, chronyc)")


def parse_timedatectl(output: str) -> ClockState | None:
    """``timedatectl show``: ``NTPSynchronized=yes|no`` (no offset: systemd does not say it here)."""
    values = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    synchronized = values.get("NTPSynchronized")
    if synchronized not in ("yes", "no"):
        return None
    detail = "" if values.get("NTP", "yes") == "yes" else "network time synchronisation is switched off"
    return ClockState(synchronized == "yes", None, "timedatectl", detail)


def parse_chronyc_tracking(output: str) -> ClockState | None:
    """``chronyc -c tracking``: CSV whose 5th field is the system clock's offset (s) and last is the leap status."""
    fields = output.strip().splitlines()[0].split(",") if output.strip() else []
    if len(fields) < 14:
        return None
    try:
        offset = float(fields[4])
    except ValueError:
        return None
    leap = fields[-1].strip()
    synchronized = leap != "Not synchronised" and fields[0] != "00000000"
    return ClockState(synchronized, offset, "chronyc", "" if synchronized else leap)


class ClockWatch:
    """Asks the system every ``interval_s`` and keeps the answer; warns when unsynchronised or far off."""

    name = "clock watch"

    def __init__(
        self,
        *,
        timedatectl: str,
        chronyc: str,
        max_offset_s: float,
        interval_s: float,
        command_timeout_s: float,
        clock: Clock,
    ) -> None:
        self._timedatectl = timedatectl
        self._chronyc = chronyc
        self.max_offset_s = max_offset_s
        self._interval_s = interval_s
        self._command_timeout_s = command_timeout_s
        self._clock = clock
        self.state: ClockState = UNKNOWN
        self.health = ComponentHealth("clock", status="disabled", detail=UNKNOWN.detail)
        self._tasks: BackgroundTasks | None = None

    @property
    def trouble(self) -> str | None:
        """Why the clock cannot be trusted, in words for the admins' 待办; None when it is fine or unknown."""
        state = self.state
        if state.synchronized is False:
            return "服务器时钟没有与时间服务器同步，定时广播和来电时间可能不准"
        if state.offset_s is not None and abs(state.offset_s) > self.max_offset_s:
            return f"服务器时钟与时间服务器相差 {abs(state.offset_s) * 1000:.0f} 毫秒，定时广播可能不准"
        return None

    async def start(self) -> None:
        if self._tasks is not None:
            return
        await self.check()
        self._tasks = BackgroundTasks("clock")
        self._tasks.spawn(self._run(), "watch")

    async def stop(self) -> None:
        if self._tasks is not None:
            await self._tasks.close()
            self._tasks = None

    async def _run(self) -> None:
        await every(self._interval_s, self.check, self.health.name)

    async def check(self) -> ClockState:
        state = await self._ask()
        self.state = state
        now = self._clock.now()
        self.health.extra = state.as_dict()
        if state.synchronized is None:
            self.health.set("disabled", state.detail, at=now)
        elif self.trouble is not None:
            offset = "" if state.offset_s is None else f", offset {state.offset_s * 1000:.0f} ms"
            self.health.set("degraded", f"not synchronised{offset} {state.detail}".strip(), at=now)
        else:
            self.health.set("ok", f"synchronised ({state.source})", at=now)
        return state

    async def _ask(self) -> ClockState:
        # chronyc first when it answers: it also knows the offset; timedatectl knows only yes or no.
        output = await self._run_program(self._chronyc, "-c", "tracking")
        state = parse_chronyc_tracking(output) if output is not None else None
        if state is None:
            output = await self._run_program(self._timedatectl, "show")
            state = parse_timedatectl(output) if output is not None else None
        return state or UNKNOWN

    async def _run_program(self, program: str, *args: str) -> str | None:
        """Its standard output when it ran and succeeded in time; None otherwise (missing, failed, hung)."""
        try:
            process = await asyncio.create_subprocess_exec(
                program,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError:
            return None
        try:
            async with asyncio.timeout(self._command_timeout_s):
                stdout, _ = await process.communicate()
        except BaseException as exc:  # a hung program, or the watch stopping: never leave the child behind
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.shield(process.wait())
            if not isinstance(exc, TimeoutError):
                raise
            log.warning("%s %s did not answer within %.1f s", program, " ".join(args), self._command_timeout_s)
            return None
        if process.returncode != 0:
            return None
        return stdout.decode("utf-8", "replace")
