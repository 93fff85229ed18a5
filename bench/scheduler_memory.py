"""Whole-process memory of a scheduler starting on 50,000 schedules, each part in a process of its own.

    .venv/bin/python -m bench.scheduler_memory [--schedules 50000] [--naive]

1. A seeding process writes the schedules (three slots a day each, one target each) into a
   fresh SQLite database, in batches.
2. The measured process only imports the service and starts the scheduler on that database:
   its peak resident memory (VmHWM, what the kernel counted: not tracemalloc's view of Python's
   allocations) after the imports and after the plan is made, the time the start took, and how
   many APScheduler jobs it holds.
3. With ``--naive``: the design we did not build (one APScheduler cron job per slot) in a third
   process, its peak RSS and time, for the ratio.

Seeding and the baseline stay out of the measured process: a figure for the scheduler that
includes building 50,000 insert dictionaries says nothing about the scheduler.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.figures import isolate_from_environment, write_results

ZONE = "Asia/Shanghai"
BATCH = 5000


def _vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def schedule_times(index: int) -> list[str]:
    """The three daily times of the ``index``-th seeded schedule (also the APScheduler baseline's jobs)."""
    minute = index % 60
    return [f"07:{minute:02d}", f"12:{minute:02d}", f"18:{minute:02d}"]


async def seed(url: str, count: int) -> None:
    """``count`` daily schedules of one notice, written in batches (never all rows at once)."""
    from sqlalchemy import insert

    from storage.db import create_engine, make_session_factory
    from storage.migrate import upgrade
    from storage.models import (
        PRIORITY_OF_KIND,
        County,
        Notice,
        Schedule,
        ScheduleTarget,
        Township,
        User,
        Village,
        Zone,
    )

    await upgrade(url)
    engine = create_engine(url)
    sessions = make_session_factory(engine)
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        session.add(County(id=1, name="县", created_at=now))
        session.add(Township(id=1, county_id=1, name="乡", created_at=now))
        session.add(Village(id=1, township_id=1, name="村", created_at=now))
        session.add(Zone(id=1, village_id=1, name="区", created_at=now))
        session.add(User(id=1, username="u", display_name="u", password_hash="x", created_at=now))
        await session.flush()
        session.add(
            Notice(
                id=1, township_id=1, kind="civility", title="t", body="b", author_id=1, created_at=now, updated_at=now
            )
        )
    async with sessions.begin() as session:
        for start in range(0, count, BATCH):
            ids = range(start + 1, min(count, start + BATCH) + 1)
            await session.execute(
                insert(Schedule),
                [
                    {"id": schedule_id, "notice_id": 1, "township_id": 1, "kind": "daily",
                     "times": schedule_times(schedule_id - 1), "weekdays": [],
                     "priority": PRIORITY_OF_KIND["civility"], "enabled": True,
                     "created_at": now, "updated_at": now}
                    for schedule_id in ids
                ],
            )  # fmt: skip
            await session.execute(
                insert(ScheduleTarget),
                [{"schedule_id": schedule_id, "level": "village", "target_id": 1} for schedule_id in ids],
            )
    await engine.dispose()


async def start_only(url: str) -> dict[str, Any]:
    """What the measured process does: start the scheduler on the database, and stop it."""
    from common.clock import SystemClock
    from schedules.scheduler import Scheduler
    from schedules.service import ScheduleService
    from storage.db import create_engine, make_session_factory

    class Nothing:
        async def occurrence_due(self, **_: Any) -> bool:
            return True

        async def occurrence_missed(self, **_: Any) -> bool:
            return True

    after_imports = _vm_kib("VmHWM")
    zone = ZoneInfo(ZONE)
    engine = create_engine(url)
    sessions = make_session_factory(engine)
    clock = SystemClock()
    scheduler = Scheduler(sessions, clock, zone, Nothing(), ScheduleService(sessions, clock, zone), resync_s=3600)
    started = time.perf_counter()
    await scheduler.start()
    seconds = time.perf_counter() - started
    health = await scheduler.health()
    planned_rss = _vm_kib("VmRSS")
    await scheduler.stop()
    await engine.dispose()
    return {
        "start_s": round(seconds, 2),
        "peak_rss_mib": round(_vm_kib("VmHWM") / 1024, 1),
        "rss_after_imports_mib": round(after_imports / 1024, 1),
        "rss_with_plan_mib": round(planned_rss / 1024, 1),
        **health,
    }


def naive(count: int) -> dict[str, Any]:
    """The design we did not build: one APScheduler cron job per slot."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.cron import CronTrigger

    async def noop() -> None:
        return None

    async def build() -> float:
        zone = ZoneInfo(ZONE)
        scheduler = AsyncIOScheduler(timezone=zone)
        scheduler.start(paused=True)
        started = time.perf_counter()
        for index in range(count):
            for text in schedule_times(index):
                hour, minute = text.split(":")
                scheduler.add_job(noop, CronTrigger(hour=int(hour), minute=int(minute), timezone=zone))
        seconds = time.perf_counter() - started
        scheduler.shutdown(wait=False)
        return seconds

    after_imports = _vm_kib("VmHWM")
    seconds = asyncio.run(build())
    return {
        "jobs": count * 3,
        "start_s": round(seconds, 2),
        "peak_rss_mib": round(_vm_kib("VmHWM") / 1024, 1),
        "rss_after_imports_mib": round(after_imports / 1024, 1),
    }


def _child(*arguments: str) -> dict[str, Any]:
    """Run one part in a fresh interpreter and return the JSON it printed on its last line."""
    command = [sys.executable, "-m", "bench.scheduler_memory", *arguments]
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} failed:\n{finished.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(finished.stdout.strip().splitlines()[-1])
    return result


def measure(count: int, *, with_naive: bool) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="cx-bench-scheduler-memory-"))
    try:
        url = f"sqlite+aiosqlite:///{directory / 'schedules.db'}"
        started = time.perf_counter()
        _child("seed", url, str(count))
        results: dict[str, Any] = {"schedules": count, "seed_s": round(time.perf_counter() - started, 1)}
        results["scheduler"] = _child("start", url)
        if with_naive:
            results["naive_apscheduler"] = _child("naive", str(count))
            results["naive_vs_ours_peak_rss"] = round(
                results["naive_apscheduler"]["peak_rss_mib"] / results["scheduler"]["peak_rss_mib"], 1
            )
        return results
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", nargs="?", choices=["measure", "seed", "start", "naive"], default="measure")
    parser.add_argument("arguments", nargs="*", help="(the parts' own: database URL, count)")
    parser.add_argument("--schedules", type=int, default=50_000)
    parser.add_argument("--naive", action="store_true", help="also the one-cron-job-per-slot baseline (minutes)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    isolate_from_environment()
    if args.part == "seed":
        asyncio.run(seed(args.arguments[0], int(args.arguments[1])))
        print(json.dumps({}))
    elif args.part == "start":
        print(json.dumps(asyncio.run(start_only(args.arguments[0]))))
    elif args.part == "naive":
        print(json.dumps(naive(int(args.arguments[0]))))
    else:
        results = measure(args.schedules, with_naive=args.naive)
        print(json.dumps(results, indent=2))
        write_results(args.json, results)


if __name__ == "__main__":
    main()
