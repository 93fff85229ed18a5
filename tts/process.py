"""The one way ``tts`` runs an external program (espeak-ng, ffmpeg, ffprobe).

``asyncio.create_subprocess_exec`` (never a shell), input and output through
pipes, and a time limit: when the limit passes or the caller is cancelled the
program is asked to stop (SIGTERM), given a moment, then killed, and always
waited for, so no zombie or orphaned encoder outlives the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from tts.engine_errors import ProgramMissing

# How long a program gets to exit after SIGTERM before it is killed.
TERMINATE_GRACE_S = 2.0


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: bytes

    def stderr_tail(self, lines: int = 5) -> str:
        """The last lines of stderr, for an error's detail."""
        text = self.stderr.decode("utf-8", errors="replace").strip()
        return " | ".join(text.splitlines()[-lines:])


async def run_program(
    argv: Sequence[str], *, program: str, timeout_s: float, stdin: bytes | None = None, niceness: int = 0
) -> Completed:
    """Run ``argv`` to completion and return its exit code and output.

    ``program`` is the program's usual name (``ffmpeg``), used when it is
    missing: :class:`ProgramMissing` then names it and its Debian package.
    Raises :class:`TimeoutError` after ``timeout_s``; the program is stopped first.
    ``niceness`` lowers the program's CPU priority (``setpriority`` on the child, from
    here, right after it starts — no code runs in the forked child): rendering is
    background work, and must not take the CPU from the loop that paces RTP.
    """
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        raise ProgramMissing(program, argv[0]) from exc
    if niceness:
        with contextlib.suppress(OSError):  # it may have ended already
            os.setpriority(os.PRIO_PROCESS, process.pid, niceness)
    try:
        async with asyncio.timeout(timeout_s):
            stdout, stderr = await process.communicate(stdin)
    except BaseException:
        # Timed out or cancelled: do not leave the program running behind us.
        await _stop(process)
        raise
    assert process.returncode is not None
    return Completed(process.returncode, stdout, stderr)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), TERMINATE_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
