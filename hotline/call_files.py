"""Calls placed without AMI: Asterisk call files in its outgoing spool (``pbx_spool``), read back from files.

The alarms by phone use this when there is no AMI link to Originate on (the link itself is what is down) or no
worker at all (the process that holds the link is gone): any process of the service that shares a filesystem
with Asterisk may place such a call.

Placing: the call file is written in a directory of our own beside ``outgoing/`` (same filesystem), then renamed
into ``outgoing/`` — Asterisk never reads half a file — and is named by the call's id: one claimed call row,
one file, never two. ``MaxRetries: 0``: escalation (the next officer, the next round) is ours, not the spool's.
``Archive: yes``: when Asterisk is done with it, the file is moved to ``outgoing_done/`` with a ``Status:`` line:
``Completed`` (answered), ``Expired`` (not answered: no answer, busy, or unreachable — the spool does not say
which), ``Failed`` (the file was refused).

What the person did is written by the dialplan (``cx-alarm-spool``) into the shared spool as
``cx_alarm_<call id>.ack``: ``answered`` once it is answered, ``1`` the moment 1 is pressed, else ``none`` (heard
every time, never pressed) or ``hangup`` (hung up first) when the call ends. So an answered call is known at
once, whenever pbx_spool archives its file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hotline.asterisk import AsteriskPaths

SAFE_CALL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SpoolState = Literal["pending", "answered", "acknowledged", "heard", "not_answered", "failed"]


@dataclass(frozen=True)
class SpoolOutcome:
    state: SpoolState
    detail: str = ""


class CallFiles:
    """Asterisk's outgoing spool (``outgoing``: the directory as this process sees it) and our result files."""

    def __init__(self, outgoing: Path, paths: AsteriskPaths) -> None:
        self.outgoing = outgoing
        self.done = outgoing.with_name("outgoing_done")
        self.staging = outgoing.with_name("cunxiang-outgoing")
        self._paths = paths

    @property
    def ack_dir_in_asterisk(self) -> str:
        return str(self._paths.spool.asterisk)

    def _name(self, call_id: str) -> str:
        if not SAFE_CALL_ID.match(call_id):
            raise ValueError(f"bad call id {call_id!r}")
        return f"cx-alarm-{call_id}.call"

    def _ack(self, call_id: str) -> Path:
        return self._paths.spool.host / f"cx_alarm_{call_id}.ack"

    async def place(
        self, *, dial: str, call_id: str, context: str, ring_s: float, variables: Mapping[str, str]
    ) -> None:
        """Hand one call to Asterisk's spool; OSError if it could not be written (then it was not placed)."""
        lines = [
            f"Channel: {dial}",
            f"Context: {context}",
            "Extension: s",
            "Priority: 1",
            "MaxRetries: 0",
            "RetryTime: 60",
            f"WaitTime: {max(1, round(ring_s))}",
            "Archive: yes",
            f"Setvar: CX_ALARM_TOKEN={call_id}",
            *(f"Setvar: {name}={value}" for name, value in variables.items()),
        ]
        if any("\n" in line or "\r" in line for line in lines):
            raise ValueError("a call file line must not contain a line break")
        await asyncio.to_thread(self._write, self._name(call_id), "\n".join(lines) + "\n")

    def _write(self, name: str, text: str) -> None:
        self.staging.mkdir(parents=True, exist_ok=True)
        staged = self.staging / name
        with open(staged, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        self._paths.give_to_asterisk(staged)
        # pbx_spool is given the whole file at once (a rename on one filesystem), and never one already there.
        target = self.outgoing / name
        if target.exists() or (self.done / name).exists():
            staged.unlink()
            raise FileExistsError(f"{name} was placed already")
        os.rename(staged, target)

    async def outcome(self, call_id: str) -> SpoolOutcome:
        return await asyncio.to_thread(self._outcome, call_id)

    def _outcome(self, call_id: str) -> SpoolOutcome:
        try:
            ack = self._ack(call_id).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            ack = ""
        if ack == "1":
            return SpoolOutcome("acknowledged", "pressed 1 (call file)")
        if ack in ("none", "hangup"):
            what = "heard the alarm and did not press 1" if ack == "none" else "hung up before pressing 1"
            return SpoolOutcome("heard", f"{what} (call file)")
        if ack == "answered":
            return SpoolOutcome("answered", "answered (call file)")
        try:
            archived = (self.done / self._name(call_id)).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return SpoolOutcome("pending")
        statuses = [line.split(":", 1)[1].strip() for line in archived.splitlines() if line.startswith("Status:")]
        status = statuses[-1] if statuses else ""
        if status == "Completed":
            return SpoolOutcome("answered", "answered (call file)")
        if status == "Expired":
            return SpoolOutcome(
                "not_answered", "call file expired: not answered (no answer, busy or unreachable: not known which)"
            )
        return SpoolOutcome("failed", f"call file status {status or 'missing'}")

    async def withdraw(self, call_id: str) -> bool:
        """Take a call file Asterisk has not finished with out of the spool (True if it was still there)."""

        def unlink() -> bool:
            try:
                (self.outgoing / self._name(call_id)).unlink()
            except FileNotFoundError:
                return False
            return True

        return await asyncio.to_thread(unlink)

    async def leftovers(self) -> list[str]:
        """Calls with an archived call file or a result file still here (archived after they were settled: an
        acknowledged call goes on to say thank you, and pbx_spool archives it when it ends)."""

        def listed() -> list[str]:
            found: set[str] = set()
            for folder, prefix, suffix in (
                (self.done, "cx-alarm-", ".call"),
                (self._paths.spool.host, "cx_alarm_", ".ack"),
            ):
                with contextlib.suppress(FileNotFoundError):
                    found.update(
                        name.removeprefix(prefix).removesuffix(suffix)
                        for name in os.listdir(folder)
                        if name.startswith(prefix) and name.endswith(suffix)
                    )
            return sorted(found)

        return await asyncio.to_thread(listed)

    async def forget(self, call_id: str) -> None:
        """The call is settled: its files go (the database row keeps what happened)."""

        def remove() -> None:
            for path in (self._ack(call_id), self.done / self._name(call_id)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

        await asyncio.to_thread(remove)
