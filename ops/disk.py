"""Free space on the disks the service writes to, measured in the background; uploads wait on it, the hotline not.

A full disk loses exactly what the hotline promises to keep: a villager's recording. So the watch has two
thresholds. Below the first (``warn``) the admins are told (待办, /healthz degraded). Below the second
(``refuse``) the things that only *add* to the disk on a person's request — uploading a recording, approving
a notice (which renders its audio) — are refused with a clear message, and what space is left stays for the
hotline, which never asks this watch: a call is recorded whatever the disk says.

statvfs can hang on a dead network mount, so it runs in a thread, never on the event loop; the web requests
read the last measurement (``require_room`` costs nothing).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from common.clock import Clock
from common.errors import InsufficientStorage
from common.health import ComponentHealth
from common.periodic import every
from common.tasks import BackgroundTasks

log = logging.getLogger(__name__)

Level = Literal["ok", "warn", "refuse"]
LEVEL_ORDER: dict[Level, int] = {"ok": 0, "warn": 1, "refuse": 2}
MIB = 1024 * 1024
# How long a measurement is waited for before the watch says it hangs (it goes on in its thread).
MEASURE_TIMEOUT_S = 10.0

# What each watched folder is, in the words an admin reads on the pages.
FOLDER_LABELS = {
    "data": "数据目录",
    "recordings": "热线录音",
    "audio": "广播音频",
    "uploads": "广播录音上传",
    "spool": "电话录音缓存",
}


@dataclass(frozen=True)
class DiskLimits:
    """Free space below either figure of a pair reaches that level (a small disk by percent, a big one by size)."""

    warn_free_percent: float
    warn_free_bytes: int
    refuse_free_percent: float
    refuse_free_bytes: int

    def level(self, free_bytes: int, free_percent: float) -> Level:
        if free_bytes < self.refuse_free_bytes or free_percent < self.refuse_free_percent:
            return "refuse"
        if free_bytes < self.warn_free_bytes or free_percent < self.warn_free_percent:
            return "warn"
        return "ok"


@dataclass(frozen=True)
class DiskReading:
    """One watched folder's file system: what it holds and what is left for us (not root's reserve)."""

    name: str
    path: Path
    total_bytes: int
    free_bytes: int
    level: Level

    @property
    def free_percent(self) -> float:
        return 100.0 * self.free_bytes / self.total_bytes if self.total_bytes else 0.0

    @property
    def label(self) -> str:
        return FOLDER_LABELS.get(self.name, self.name)

    def shown(self) -> str:
        """“热线录音所在磁盘只剩 3.1%（约 1.2 GB）”: for the pages."""
        return f"{self.label}所在磁盘只剩 {self.free_percent:.1f}%（约 {human_bytes(self.free_bytes)}）"

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "total_bytes": self.total_bytes,
            "free_bytes": self.free_bytes,
            "free_percent": round(self.free_percent, 2),
            "level": self.level,
        }


def human_bytes(size: int) -> str:
    if size >= 1024 * MIB:
        return f"{size / (1024 * MIB):.1f} GB"
    return f"{size / MIB:.0f} MB"


def existing_ancestor(path: Path) -> Path:
    """The folder itself, or the nearest parent that exists (the spool of an Asterisk not yet started)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def read_disks(watched: Mapping[str, Path], limits: DiskLimits) -> list[DiskReading]:
    """statvfs of every watched folder (blocking: called in a thread)."""
    readings = []
    for name, path in watched.items():
        found = existing_ancestor(path)
        stats = os.statvfs(found)
        total = stats.f_blocks * stats.f_frsize
        free = stats.f_bavail * stats.f_frsize  # what an unprivileged process may still write
        percent = 100.0 * free / total if total else 0.0
        readings.append(DiskReading(name, path, total, free, limits.level(free, percent)))
    return readings


class DiskWatch:
    """Measures the watched folders every ``interval_s`` (in a thread) and keeps the last readings."""

    name = "disk watch"

    def __init__(
        self,
        watched: Mapping[str, Path],
        limits: DiskLimits,
        *,
        interval_s: float,
        clock: Clock,
        answer_within_s: float = MEASURE_TIMEOUT_S,
        read: Callable[[Mapping[str, Path], DiskLimits], list[DiskReading]] = read_disks,
    ) -> None:
        self.watched = dict(watched)
        self.limits = limits
        self._interval_s = interval_s
        self._clock = clock
        self._answer_within_s = answer_within_s
        self._read = read
        self.readings: list[DiskReading] = []
        self.health = ComponentHealth("disk", status="standby", detail="not measured yet")
        self._tasks: BackgroundTasks | None = None
        # The statvfs in its thread: a hung one (a dead network mount) is waited for, never started twice.
        self._reading: asyncio.Future[list[DiskReading]] | None = None

    async def start(self) -> None:
        if self._tasks is not None:
            return
        await self.measure()  # the first answer is there before the first request
        self._tasks = BackgroundTasks("disk")
        self._tasks.spawn(self._run(), "watch")

    async def stop(self) -> None:
        if self._tasks is not None:
            await self._tasks.close()
            self._tasks = None

    async def _run(self) -> None:
        await every(self._interval_s, self.measure, self.health.name)

    async def measure(self) -> list[DiskReading]:
        """Measure now (off the loop) and update the health state; a failing statvfs is reported, not raised."""
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(asyncio.to_thread(self._read, self.watched, self.limits))
        try:
            async with asyncio.timeout(self._answer_within_s):
                readings = await asyncio.shield(self._reading)
        except TimeoutError:
            detail = f"statvfs has not answered for {self._answer_within_s:g} s (a hung mount?)"
            self.health.set("degraded", detail, at=self._clock.now())
            return self.readings
        except OSError as exc:
            self.health.set("degraded", "free space could not be measured", at=self._clock.now(), error=str(exc))
            return self.readings
        self.readings = readings
        worst = self.worst
        now = self._clock.now()
        if worst is None or worst.level == "ok":
            self.health.set("ok", "enough free space", at=now)
        elif worst.level == "warn":
            self.health.set(
                "degraded", f"{worst.name}: {worst.free_percent:.1f}% free, below the warning level", at=now
            )
        else:
            self.health.set(
                "down", f"{worst.name}: {worst.free_percent:.1f}% free; uploads and approvals refused", at=now
            )
        self.health.extra["folders"] = {reading.name: reading.as_dict() for reading in readings}
        return readings

    @property
    def worst(self) -> DiskReading | None:
        """The reading closest to trouble: highest level, then least free share."""
        if not self.readings:
            return None
        return max(self.readings, key=lambda reading: (LEVEL_ORDER[reading.level], -reading.free_percent))

    @property
    def level(self) -> Level:
        worst = self.worst
        return worst.level if worst is not None else "ok"

    def require_room(self, what: str) -> None:
        """Raise when the disk is below the refusal level: ``what`` (“上传录音”) waits, the hotline keeps the rest."""
        worst = self.worst
        if worst is None or worst.level != "refuse":
            return
        raise InsufficientStorage(
            f"服务器磁盘空间不足（{worst.shown()}），暂时不能{what}：剩下的空间要留给热线录音。请联系管理员清理磁盘。",
            code="disk.full",
            detail=f"{worst.name} at {worst.path}: {worst.free_bytes} bytes free ({worst.free_percent:.2f}%)",
        )
