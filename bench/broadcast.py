"""Broadcasting benchmarks: scheduler load, start jitter, RTP fan-out (ratios against baselines of the same run).

    .venv/bin/python -m bench.broadcast [--schedules 50000] [--jitter-runs 30] [--fanout-seconds 4]

(a) 50,000 schedule rows (three slots a day) load and become the scheduler's plan:
    time and peak memory, against the naive design measured here too (one
    APScheduler cron job per slot: 150,000 jobs).
(b) start on time: from an occurrence's instant to its first RTP packet at a
    receiver in another process (the kernel's receive stamp), through the real
    scheduler, dispatcher (the pre-roll), database and RTP sender; one zone per
    slot, ``--jitter-runs`` slots ``--jitter-spacing`` apart, the load average
    before and after. (b') the spread of one zone's ``--spread-speakers`` (500)
    RTP speakers: first to last speaker's first packet, ``--spread-runs`` times.
(c) RTP fan-out on one core: the most simultaneous real-time unicast streams
    with p99 packet lateness under 5 ms, as a fraction of the raw limit (a plain
    ``sendto`` loop of 172-byte packets, in the same process, same core).
(d) RTP packet lateness while a long item is produced in the same process (a
    notice read ten times: minutes of audio), against the same streams with
    nothing produced, in the same run; and the production's time and the
    whole process's peak memory (and its ffmpeg children's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any

from bench.figures import isolate_from_environment, offline_speech, summary, write_results

PACKET = 172  # 12-byte RTP header + 160 bytes of PCMU: one 20 ms packet


def _pin_to_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def _realtime_priority() -> str:
    """SCHED_RR (as audio servers run), else a higher nice priority; what the paging worker can be given too."""
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))
        return "SCHED_RR 10"
    except (AttributeError, PermissionError, OSError):
        pass
    try:
        os.nice(-10)
        return "nice -10"
    except (PermissionError, OSError):
        return "normal"


# -- (a) scheduler load -------------------------------------------------------------------------


async def bench_scheduler(count: int, *, naive_baseline: bool = True) -> dict[str, Any]:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Asia/Shanghai")
    directory = Path(tempfile.mkdtemp(prefix="cx-bench-"))
    try:
        return await _bench_scheduler(directory, zone, count, naive_baseline=naive_baseline)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def _bench_scheduler(directory: Path, zone: Any, count: int, *, naive_baseline: bool) -> dict[str, Any]:
    from bench.scheduler_memory import schedule_times, seed
    from common.clock import SystemClock
    from schedules.scheduler import Scheduler
    from schedules.service import ScheduleService
    from storage.db import create_engine, make_session_factory

    url = f"sqlite+aiosqlite:///{directory / 'bench.db'}"
    # The same county and schedules as bench/scheduler_memory.py, written in batches by its seed.
    await seed(url, count)
    engine = create_engine(url)
    sessions = make_session_factory(engine)

    class Nothing:
        async def occurrence_due(self, **_: Any) -> bool:
            return True

        async def occurrence_missed(self, **_: Any) -> bool:
            return True

    clock = SystemClock()
    service = ScheduleService(sessions, clock, zone)
    scheduler = Scheduler(sessions, clock, zone, Nothing(), service, resync_s=3600)
    # Timed without tracemalloc (it slows every allocation), then once more to measure the peak.
    started = time.perf_counter()
    await scheduler.start()
    plain_s = time.perf_counter() - started
    health = await scheduler.health()
    await scheduler.stop()
    tracemalloc.start()
    started = time.perf_counter()
    await scheduler.start()
    ours_s = time.perf_counter() - started
    _current, ours_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    await scheduler.stop()
    await engine.dispose()
    if not naive_baseline:
        return {"schedules": count, "load_s": round(plain_s, 2), "peak_mib": round(ours_peak / 2**20, 1), **health}

    # The naive design, for comparison: one APScheduler cron job per slot.
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.cron import CronTrigger

    async def noop() -> None:
        return None

    naive = AsyncIOScheduler(timezone=zone)
    naive.start(paused=True)
    tracemalloc.start()
    started = time.perf_counter()
    for index in range(count):
        for text in schedule_times(index):
            hour, minute = text.split(":")
            naive.add_job(noop, CronTrigger(hour=int(hour), minute=int(minute), timezone=zone))
    naive_s = time.perf_counter() - started
    _current, naive_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    naive.shutdown(wait=False)
    return {
        "schedules": count,
        "slots": count * 3,
        "load_s": round(plain_s, 2),
        "load_traced_s": round(ours_s, 2),
        "peak_mib": round(ours_peak / 2**20, 1),
        "apscheduler_jobs": health["jobs"],
        "naive_jobs": count * 3,
        "naive_s": round(naive_s, 2),
        "naive_peak_mib": round(naive_peak / 2**20, 1),
        # Both under tracemalloc, so the ratio compares like with like.
        "speedup": round(naive_s / ours_s, 1),
    }


# -- (b) start jitter, (b') the spread of 500 speakers ---------------------------------------------


class _Receiver:
    """bench/rtp_first_packets.py in a process of its own: each destination's first packet, by the kernel's clock."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port

    @classmethod
    async def start(cls, expect: int, timeout_s: float) -> _Receiver:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.rtp_first_packets",
            "--expect",
            str(expect),
            "--timeout",
            str(timeout_s),
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        return cls(process, int(await process.stdout.readline()))

    async def first_ns(self) -> dict[str, int]:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        await self.process.wait()
        return dict(json.loads(line)["first_ns"]) if line else {}

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


def _loopback(index: int) -> str:
    """A loudspeaker's own address on loopback (127.0.1.2, 127.0.1.3, …; never .0 or .255)."""
    return f"127.0.{1 + index // 250}.{2 + index % 250}"


async def _broadcasting(directory: Path) -> tuple[Any, Any, int, int]:
    """A runtime on a fresh SQLite database (real clock) with a county, a village and one approved notice."""
    from accounts.service import principal_of
    from broadcast.notices import NoticeInput
    from server import build_runtime
    from settings import AudioSettings, DatabaseSettings, SchedulerSettings, SecuritySettings, Settings
    from storage.audit import Actor
    from storage.migrate import upgrade
    from storage.models import User

    url = f"sqlite+aiosqlite:///{directory / 'cunxiang.db'}"
    await upgrade(url)
    settings = Settings(
        data_dir=directory,
        asterisk="none",
        database=DatabaseSettings(url=url),
        security=SecuritySettings(password_time_cost=1, password_memory_kib=1024, password_parallelism=1),
        tts=offline_speech(),
        audio=AudioSettings(default_repeats=1),
        scheduler=SchedulerSettings(resync_s=3600),
    )
    runtime = build_runtime(settings)
    actor = Actor(user_id=None, username="bench")
    await runtime.accounts.create_user(
        actor, username="admin", display_name="a", password="Bench-pass-123", roles=["admin", "staff"],
        county_wide=True,
    )  # fmt: skip
    await runtime.accounts.create_user(
        actor, username="approver", display_name="b", password="Bench-pass-123", roles=["approver"], county_wide=True
    )
    async with runtime.sessions() as session:
        from sqlalchemy import select

        admin = principal_of((await session.scalars(select(User).where(User.username == "admin"))).one())
        approver = principal_of((await session.scalars(select(User).where(User.username == "approver"))).one())
    county = await runtime.areas.create_county(admin, name="县")
    # No quiet hours: the benchmark runs whatever the hour in Shanghai.
    township = await runtime.areas.create_township(
        admin, county_id=county.id, name="乡", quiet_start=dt_time(0, 0), quiet_end=dt_time(0, 0)
    )
    village = await runtime.areas.create_village(admin, township_id=township.id, name="村")
    notice = await runtime.broadcasting.notices.create(
        admin, NoticeInput("civility", "测试", "各位村民请注意。", township.id, repeats=1)
    )
    await runtime.broadcasting.notices.submit(admin, notice.id)
    await runtime.broadcasting.notices.approve(approver, notice.id)
    return runtime, admin, village.id, notice.id


async def bench_jitter(runs: int, spacing_s: float) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="cx-bench-jitter-"))
    try:
        return await _bench_jitter(directory, runs, spacing_s)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def _bench_jitter(directory: Path, runs: int, spacing_s: float) -> dict[str, Any]:
    """Each of ``runs`` zones has one RTP speaker and one slot, ``spacing_s`` apart: its instant → its first packet."""
    from schedules.service import ScheduleInput

    runtime, admin, village_id, notice_id = await _broadcasting(directory)
    preroll_s = runtime.settings.broadcast.preroll_s
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=10 + 0.15 * runs)
    receiver = await _Receiver.start(runs, (base - datetime.now(UTC)).total_seconds() + runs * spacing_s + 60)
    try:
        slots: list[tuple[str, datetime]] = []
        for index in range(runs):
            zone = await runtime.areas.create_zone(admin, village_id=village_id, name=f"区{index}")
            address = _loopback(index)
            await runtime.areas.create_speaker(
                admin, zone_id=zone.id, name="音柱", transport="rtp", address=f"{address}:{receiver.port}"
            )
            at = base + timedelta(seconds=spacing_s * index)
            await runtime.schedules.service.create(
                admin, ScheduleInput(notice_id=notice_id, kind="once", once_at=at, targets=(("zone", zone.id),))
            )
            slots.append((address, at))
        if datetime.now(UTC) > base - timedelta(seconds=preroll_s + 1):
            raise RuntimeError("setting up took longer than planned: the first slots would not be pre-rolled")
        load_before = os.getloadavg()[0]
        await runtime.broadcasting.dispatcher.start()
        await runtime.schedules.scheduler.start()
        first = await receiver.first_ns()
        load_after = os.getloadavg()[0]
        late = runtime.broadcasting.dispatcher.late_releases
        latest_ms = runtime.broadcasting.dispatcher.latest_release_s * 1000
    finally:
        await receiver.close()
        await runtime.schedules.scheduler.stop()
        await runtime.broadcasting.dispatcher.stop()
        await runtime.engine.dispose()
    delays = [(first[address] - at.timestamp() * 1e9) / 1e6 for address, at in slots if address in first]
    if not delays:
        raise RuntimeError(f"no first packet arrived of {runs} scheduled starts")
    return {
        "scheduled": runs,
        "received": len(delays),
        "spacing_s": spacing_s,
        "preroll_s": preroll_s,
        "fire_to_first_packet_ms": summary(delays, digits=2),
        "early": sum(1 for delay in delays if delay < 0),
        "earliest_ms": round(min(delays), 2),
        # Released after the instant because the pre-roll (claim, rows, commit) was not done by then.
        "late_releases": late,
        "latest_release_ms": round(latest_ms, 1),
        "load_before": round(load_before, 2),
        "load_after": round(load_after, 2),
    }


async def bench_spread(speakers: int, runs: int) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="cx-bench-spread-"))
    try:
        return await _bench_spread(directory, speakers, runs)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def _bench_spread(directory: Path, speakers: int, runs: int) -> dict[str, Any]:
    """One zone of ``speakers`` RTP speakers, one slot per run: first to last speaker's first packet."""
    from schedules.service import ScheduleInput

    runtime, admin, village_id, notice_id = await _broadcasting(directory)
    preroll_s = runtime.settings.broadcast.preroll_s
    dispatcher = runtime.broadcasting.dispatcher
    zone = await runtime.areas.create_zone(admin, village_id=village_id, name="广场")
    spreads: list[float] = []
    firsts: list[float] = []
    lasts: list[float] = []
    received: list[int] = []
    load_before = os.getloadavg()[0]
    await dispatcher.start()
    await runtime.schedules.scheduler.start()
    try:
        for run in range(runs):
            receiver = await _Receiver.start(speakers, 60 + preroll_s)
            try:
                if run == 0:
                    for index in range(speakers):
                        await runtime.areas.create_speaker(
                            admin, zone_id=zone.id, name=f"音柱{index}", transport="rtp",
                            address=f"{_loopback(index)}:{receiver.port}",
                        )  # fmt: skip
                else:
                    await _move_speakers(runtime, zone.id, receiver.port)
                await dispatcher.wait_until(dispatcher.idle)
                at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=preroll_s + 3)
                await runtime.schedules.service.create(
                    admin, ScheduleInput(notice_id=notice_id, kind="once", once_at=at, targets=(("zone", zone.id),))
                )
                first = await receiver.first_ns()
            finally:
                await receiver.close()
            arrivals = sorted(first.values())
            received.append(len(arrivals))
            if arrivals:
                spreads.append((arrivals[-1] - arrivals[0]) / 1e6)
                firsts.append((arrivals[0] - at.timestamp() * 1e9) / 1e6)
                lasts.append((arrivals[-1] - at.timestamp() * 1e9) / 1e6)
            await dispatcher.wait_until(dispatcher.idle)
        load_after = os.getloadavg()[0]
    finally:
        await runtime.schedules.scheduler.stop()
        await dispatcher.stop()
        await runtime.engine.dispose()
    return {
        "speakers": speakers,
        "runs": runs,
        "received": received,
        "spread_ms": [round(value, 2) for value in spreads],
        "instant_to_first_speaker_ms": [round(value, 2) for value in firsts],
        "instant_to_last_speaker_ms": [round(value, 2) for value in lasts],
        "max_spread_ms": round(max(spreads), 2) if spreads else None,
        "load_before": round(load_before, 2),
        "load_after": round(load_after, 2),
    }


async def _move_speakers(runtime: Any, zone_id: int, port: int) -> None:
    """Point the zone's speakers at a new receiver's port (one receiver process per run)."""
    from sqlalchemy import select

    from storage.models import Speaker

    async with runtime.sessions.begin() as session:
        for speaker in (await session.scalars(select(Speaker).where(Speaker.zone_id == zone_id))).all():
            speaker.address = f"{speaker.address.rpartition(':')[0]}:{port}"


# -- (c) RTP fan-out ----------------------------------------------------------------------------


def raw_sendto_rate(seconds: float = 1.0) -> float:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    destination = sink.getsockname()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    packet = b"\x80" * PACKET
    sent = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(1000):
            try:
                sock.sendto(packet, destination)
            except BlockingIOError:
                pass
        sent += 1000
    sock.close()
    sink.close()
    return sent / seconds


async def fanout_p99(streams: int, seconds: float) -> tuple[float, int]:
    from broadcast.rtp import RtpSender

    sinks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
    for sink in sinks:
        sink.bind(("127.0.0.1", 0))
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    destinations = [sinks[index % len(sinks)].getsockname() for index in range(streams)]
    sender = RtpSender(measure=True)
    await sender.start()
    payload = b"\xff" * 160 * int(seconds * 50)
    handles = sender.play(payload, destinations)
    results = await asyncio.gather(*(handle.done for handle in handles))
    await sender.stop()
    for sink in sinks:
        sink.close()
    lateness = [value * 1000 for result in results for value in result.lateness_s]
    dropped = sum(result.dropped for result in results)
    figures = summary(lateness, digits=2)
    if "p99" not in figures:
        raise RuntimeError(f"{len(lateness)} packets measured: too few for a p99 (use longer --fanout-seconds)")
    return float(figures["p99"]), dropped


async def bench_fanout(seconds: float) -> dict[str, Any]:
    raw_pps = raw_sendto_rate()
    raw_streams = raw_pps / 50
    low, high = 0, int(raw_streams)
    best = 0
    probes: list[tuple[int, float, int]] = []
    candidate = max(100, int(raw_streams * 0.3))
    while low <= high and len(probes) < 8:
        p99, dropped = await fanout_p99(candidate, seconds)
        probes.append((candidate, round(p99, 2), dropped))
        if p99 < 5.0:
            best = max(best, candidate)
            low = candidate + 1
        else:
            high = candidate - 1
        candidate = (low + high) // 2
    return {
        "raw_packets_per_s": round(raw_pps),
        "raw_stream_limit": round(raw_streams),
        "sustained_streams": best,
        "fraction_of_raw": round(best / raw_streams, 2),
        "probes": probes,
    }


def _lateness_summary(values: list[float]) -> dict[str, Any]:
    """Packet lateness (given in seconds) as a summary in milliseconds."""
    return summary((value * 1000 for value in values), digits=2)


async def _streams_lateness(sender: Any, destinations: list[tuple[str, int]], seconds: float) -> list[float]:
    handles = sender.play(b"\xff" * 160 * int(seconds * 50), destinations)
    results = await asyncio.gather(*(handle.done for handle in handles))
    return [value for result in results for value in result.lateness_s]


async def bench_production(characters: int, repeats: int, streams: int) -> dict[str, Any]:
    """(d): the same RTP streams with and without a long item being produced alongside."""
    directory = Path(tempfile.mkdtemp(prefix="cx-bench-production-"))
    try:
        return await _bench_production(directory, characters, repeats, streams)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def _bench_production(directory: Path, characters: int, repeats: int, streams: int) -> dict[str, Any]:
    from broadcast.production import BroadcastProducer, ProductionSettings
    from broadcast.rtp import RtpSender
    from common.clock import SystemClock
    from settings import Settings
    from tts.audio import Profile
    from tts.part import SpeechConfig, build_speech

    settings = Settings(data_dir=directory, tts=offline_speech())
    speech = build_speech(SpeechConfig.from_settings(settings), clock=SystemClock())
    producer = BroadcastProducer(
        speech.chain, speech.renderer, ProductionSettings(max_chars=100_000, max_item_s=24 * 3600.0)
    )
    profiles = list(Profile)
    sentence = "各位村民请注意，今年第三季度村集体收入合计十二万五千元，支出八万三千元，结余四万二千元。"

    def text(variant: str) -> str:
        return (variant + sentence * (characters // len(sentence) + 1))[:characters]

    await producer.render_text("预热。", repeats=1, profiles=profiles)  # the chime and the engine, once
    started = time.perf_counter()
    first = await producer.render_text(text("甲。"), repeats=repeats, profiles=profiles)
    production_s = time.perf_counter() - started

    sinks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    for sink in sinks:
        sink.bind(("127.0.0.1", 0))
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    destinations = [sinks[index % len(sinks)].getsockname() for index in range(streams)]
    sender = RtpSender(measure=True)
    await sender.start()
    seconds = max(5.0, production_s * 1.2)
    try:
        baseline = await _streams_lateness(sender, destinations, seconds)
        during_task = asyncio.ensure_future(_streams_lateness(sender, destinations, seconds))
        await asyncio.sleep(0.5)
        produced = await producer.render_text(text("乙。"), repeats=repeats, profiles=profiles)
        during = await during_task
    finally:
        await sender.stop()
        for sink in sinks:
            sink.close()
    base, load = _lateness_summary(baseline), _lateness_summary(during)
    ratios = {
        f"{key}_ratio": round(load[key] / base[key], 2) for key in ("p99", "max") if base.get(key) and load.get(key)
    }
    return {
        "item_s": round(produced.duration_s),
        "production_s": round(production_s, 1),
        "streams": streams,
        "lateness_without_production_ms": base,
        "lateness_while_producing_ms": load,
        **ratios,
        "first_item_s": round(first.duration_s),
    }


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schedules", type=int, default=50_000)
    parser.add_argument("--jitter-runs", type=int, default=300)
    parser.add_argument("--jitter-spacing", type=float, default=0.25, help="(b): seconds between two slots")
    parser.add_argument("--spread-speakers", type=int, default=500)
    parser.add_argument("--spread-runs", type=int, default=3)
    parser.add_argument("--fanout-seconds", type=float, default=4.0)
    parser.add_argument("--only", choices=["scheduler", "jitter", "spread", "fanout", "production"])
    parser.add_argument("--production-chars", type=int, default=600, help="(d): characters of the long notice")
    parser.add_argument("--production-repeats", type=int, default=10, help="(d): how often it is read")
    parser.add_argument("--production-streams", type=int, default=50, help="(d): RTP streams on air meanwhile")
    parser.add_argument("--skip-naive", action="store_true", help="skip the 150,000-job APScheduler baseline (minutes)")
    parser.add_argument(
        "--realtime", action="store_true", help="run the fan-out at real-time priority (SCHED_RR, else nice -10)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes: 5,000 schedules, 10 starts, 50 speakers once, 1 s fan-out, a short item",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    isolate_from_environment()
    if args.quick:
        args.schedules, args.jitter_runs, args.fanout_seconds = 5_000, 10, 1.0
        args.spread_speakers, args.spread_runs = 50, 1
        args.production_chars, args.production_repeats, args.production_streams = 100, 2, 10
    _pin_to_one_core()
    results: dict[str, Any] = {}
    if args.only in (None, "scheduler"):
        results["scheduler"] = await bench_scheduler(args.schedules, naive_baseline=not args.skip_naive)
        print("scheduler:", results["scheduler"], flush=True)
    if args.only in (None, "jitter"):
        results["start_jitter"] = await bench_jitter(args.jitter_runs, args.jitter_spacing)
        print("start jitter:", results["start_jitter"], flush=True)
    if args.only in (None, "spread"):
        results["start_spread"] = await bench_spread(args.spread_speakers, args.spread_runs)
        print("start spread:", results["start_spread"], flush=True)
    if args.only in (None, "fanout"):
        priority = _realtime_priority() if args.realtime else "normal"
        results["fanout"] = {"priority": priority, **await bench_fanout(args.fanout_seconds)}
        print(f"rtp fan-out ({priority} priority):", results["fanout"], flush=True)
    if args.only in (None, "production"):
        production = await bench_production(args.production_chars, args.production_repeats, args.production_streams)
        results["production"] = production
        print("rtp lateness while producing a long item:", production, flush=True)
    write_results(args.json, results)


if __name__ == "__main__":
    asyncio.run(main())
