"""Time from a villager's hang-up to her case — and its recording — on an operator's screen, 20 calls at once.

    .venv/bin/python -m bench.hangup_to_case                    # 5 rounds of 20 calls, SQLite then PostgreSQL
    .venv/bin/python -m bench.hangup_to_case --db sqlite --rounds 1
    .venv/bin/python -m bench.hangup_to_case --quick            # one round of 5 calls on each database

Each simulated villager (a Local channel into the real IVR of a sandbox Asterisk, driven over its own
AMI connection so the service's link does only its own work) presses 1, says her sentence and hangs
up while the recording is still running — the case is made at the hang-up, not before. For each call
the clock starts when her channel's Hangup event arrives.

What is observed is what an operator's screen shows: the bench keeps the case list (``/cases``) open,
signed in as a county-wide operator, the way ``web/static/live.js`` keeps it — it listens on the case
pages' stream of changes (``GET /cases/changes``) and reloads the list at the first change, one reload at
a time, changes told during a reload making one more after it. The clock stops when her row is in the
list ("case visible": every call of a run has its own number) and when the row carries its 录音 badge
("recording attached": moved out of the spool, checksum verified, on her case). Her call is a real
call, not a dial test: a dial test's case is left out of that list and of the statistics' roll-ups,
which a real call's case updates. Like the page, the screen does not poll while its stream listens (a
reload every second once did, adding a reload to a third of the bursts): a change the stream failed to
tell would leave her call waiting, counted as "timed out" after ``WAIT_S``. Asking the API
about every waiting call at every change instead (as this benchmark once did: ~87 requests a round)
loaded the very process it measured and is not what a page does.

The villagers and the screen run in a process of their own (``--drive``, started by the measuring
process, which runs the service): parsing the whole Asterisk's AMI stream for 20 villagers and the
screen's HTTP client once shared the service's one event loop and took the CPU it needed during the
burst. The screen still signs in and asks the service over HTTP what the case page asks, as a
browser would. Both ends of every sample — her Hangup event and the screen's answer — are read in
that process with ``time.perf_counter``; on Linux that is ``CLOCK_MONOTONIC``, one clock for every
process of the boot, so even a time taken in the service would compare, but none needs to.

Each figure: count, median, p95 (nearest rank), p99 only with at least 100 samples (``--rounds 5``
of 20 calls), max; the ratio of the two medians (the case is the baseline its recording is set
against); and the peak memory of the process that runs the service (the villagers' process's
beside it). Each database is measured in a process of its own, so that each peak memory is its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import aiohttp

from bench._sandbox import hotline_service
from bench.figures import isolate_from_environment, peak_memory, summary, write_results
from common.clock import SystemClock
from hotline.ami import AmiConfig, AmiLink, Message
from hotline.dialtest import SimulatedVillager, VillagerScript
from storage.audit import Actor

DATABASES = ("sqlite", "postgresql")
# The callers of the first burst after the service starts (the measured rounds' numbers count up from 0).
FIRST_BURST_NUMBERS = 9000
# A call whose case and recording are not seen this long after its hang-up counts as timed out.
WAIT_S = 60.0
# The list's rows, and the badge a row carries once the case's recording is attached (web/templates/cases/list.html).
ROW = re.compile(r"<tr>(.*?)</tr>", re.S)
RECORDING_BADGE = ">录音</span>"
OPERATOR = {"username": "bench-operator", "password": "Hangup-timing-2026!"}


@dataclass
class Watched:
    """One call as the operator's screen learns of it (``perf_counter`` times, all read in the driver process)."""

    caller: str
    hung_up: float | None = None
    case_seen: float | None = None
    recording_seen: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Screen:
    """The operator's case list (``/cases``), kept current the way ``web/static/live.js`` keeps it."""

    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self._url = url
        self._http = http
        self._by_linkedid: dict[str, Watched] = {}
        self.changes_told = 0
        self.reloads: dict[int, int] = {}  # the list's answers by status (only 200s expected)
        self._busy = False
        self._again = False
        self._reloading: set[asyncio.Task[None]] = set()

    def watch(self, linkedid: str, caller: str) -> Watched:
        return self._by_linkedid.setdefault(linkedid, Watched(caller))

    def saw_hangup(self, linkedid: str) -> None:
        watched = self._by_linkedid.get(linkedid)
        if watched is not None and watched.hung_up is None:
            watched.hung_up = time.perf_counter()

    def soon(self) -> None:
        """As live.js: one reload at a time; changes told while it runs make one more after it, not one each."""
        if self._busy:
            self._again = True
            return
        task = asyncio.ensure_future(self._reload())
        self._reloading.add(task)
        task.add_done_callback(self._reloading.discard)

    async def stop(self) -> None:
        for task in list(self._reloading):
            task.cancel()
        await asyncio.gather(*self._reloading, return_exceptions=True)

    async def _reload(self) -> None:
        self._busy = True
        try:
            while True:
                self._again = False
                await self._read_list()
                if not self._again:
                    return
        finally:
            self._busy = False

    async def _read_list(self) -> None:
        headers = {"Accept": "text/html", "X-Live-Refresh": "1"}
        async with self._http.get(f"{self._url}/cases", headers=headers) as response:
            self.reloads[response.status] = self.reloads.get(response.status, 0) + 1
            if response.status != 200:
                return
            html = await response.text()
        now = time.perf_counter()
        # What the person reads in each row: the caller's number, and the 录音 badge once her message is attached.
        rows = ROW.findall(html)
        for watched in self._by_linkedid.values():
            row = next((row for row in rows if f"<td>{watched.caller}" in row), None)
            if row is None or watched.hung_up is None:
                continue
            if watched.case_seen is None:
                watched.case_seen = now
            if RECORDING_BADGE in row and watched.recording_seen is None:
                watched.recording_seen = now
                watched.done.set()

    async def listen(self, ready: asyncio.Event) -> None:
        """The case pages' stream: each ``cases`` (or ``resync``) event makes the list reload."""
        async with self._http.get(f"{self._url}/cases/changes", timeout=aiohttp.ClientTimeout()) as stream:
            assert stream.status == 200, await stream.text()
            event = ""
            async for raw in stream.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    event = line.removeprefix("event:").strip()
                elif not line:
                    if event == "ready":
                        ready.set()
                    elif event in ("cases", "resync"):
                        self.changes_told += 1
                        self.soon()
                    event = ""


async def one_round(
    audio: PurePosixPath, villager: SimulatedVillager, screen: Screen, calls: int, first: int
) -> tuple[list[tuple[float, float]], list[str]]:
    """``calls`` villagers at once: (case visible, recording attached) after each hang-up, and what became of
    the calls that did not end as a case seen on the screen."""

    async def one(index: int) -> tuple[float, float] | str:
        call_id = f"bench-{index}-{SimulatedVillager.new_call_id()}"
        # Each call of the run its own number: the list's rows are told apart by the caller's number.
        caller = f"1370000{first + index:04d}"
        watched = screen.watch(call_id, caller)
        # A villager's real call (not a dial test: those are left out of the list an operator has open).
        script = VillagerScript(caller=caller, keys=("1",), audio=audio, hangup_at="recording", test_call=False)
        call = asyncio.ensure_future(villager.call(script, call_id=call_id, timeout_s=180))
        try:
            async with asyncio.timeout(180 + WAIT_S):
                await watched.done.wait()
        except TimeoutError:
            return "timed out"
        finally:
            await call
        assert watched.hung_up is not None and watched.case_seen is not None and watched.recording_seen is not None
        return watched.case_seen - watched.hung_up, watched.recording_seen - watched.hung_up

    results = await asyncio.gather(*(one(index) for index in range(calls)))
    return [r for r in results if not isinstance(r, str)], [r for r in results if isinstance(r, str)]


@contextlib.asynccontextmanager
async def database(kind: str, workdir: Path) -> AsyncIterator[str | None]:
    """None for SQLite (the service's own file in ``workdir``), else a throwaway PostgreSQL database's URL."""
    if kind == "sqlite":
        yield None
        return
    from tests.support.postgres import PostgresCluster

    cluster = await asyncio.to_thread(PostgresCluster.start)
    try:
        await asyncio.to_thread(cluster.psql, "CREATE DATABASE cx_bench_hangup")
        yield cluster.url("cx_bench_hangup")
    finally:
        await asyncio.to_thread(cluster.stop)


@dataclass(frozen=True)
class Target:
    """What the driver process needs to reach the service and its Asterisk (handed over as a JSON file)."""

    url: str
    ami_port: int
    ami_secret: str
    villager_audio: str
    rounds: int
    calls: int
    kind: str


async def drive(target: Target) -> dict[str, Any]:
    """The villagers and the operator's screen, in a process of their own (see ``run``); their samples."""
    samples: list[tuple[float, float]] = []
    others: list[str] = []
    link = AmiLink(AmiConfig("127.0.0.1", target.ami_port, "cunxiang", target.ami_secret), clock=SystemClock())
    # Cookies from an IP-address host are dropped by default; this one is ours.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{target.url}/api/v1/session", json=OPERATOR) as response:
            assert response.status == 200, await response.text()
        screen = Screen(target.url, http)

        def on_event(event: Message) -> None:
            if event.get("Event") == "Hangup":
                screen.saw_hangup(event.get("Linkedid", ""))

        link.add_listener(on_event)
        await link.start()
        ready = asyncio.Event()
        listening = asyncio.ensure_future(screen.listen(ready))
        try:
            await link.wait_connected(30)
            async with asyncio.timeout(30):
                await ready.wait()
            villager = SimulatedVillager(link)
            audio = PurePosixPath(target.villager_audio)
            # The first burst after the service starts also opens its pool's database connections (on PostgreSQL a
            # server process each) and compiles its statements — once per start, not in a service that has run
            # a minute: it is measured and reported on its own, and the rounds after it are the figures.
            first_samples, first_others = await one_round(audio, villager, screen, target.calls, FIRST_BURST_NUMBERS)
            print(f"{target.kind} first burst after start: {len(first_samples)} cases", file=sys.stderr)
            for number in range(target.rounds):
                timed, not_seen = await one_round(audio, villager, screen, target.calls, number * target.calls)
                samples += timed
                others += not_seen
                print(f"{target.kind} round {number + 1}: {len(samples)} cases, others {others}", file=sys.stderr)
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening
            await screen.stop()
            await link.stop()
    return {
        "samples": samples,
        "others": others,
        "first_samples": first_samples,
        "first_others": first_others,
        "changes_told": screen.changes_told,
        "list_reloads": {str(status): count for status, count in sorted(screen.reloads.items())},
        "driver_peak_rss_mib": peak_memory()["peak_rss_mib"],
    }


async def run(kind: str, rounds: int, calls: int) -> dict[str, Any]:
    """The service in this process; the villagers and the operator's screen in a child process (``drive``,
    why: the module's docstring)."""
    with tempfile.TemporaryDirectory(prefix="cx-bench-hangup-") as workdir:
        async with database(kind, Path(workdir)) as url, hotline_service(Path(workdir), url) as service:
            await service.runtime.accounts.create_user(
                Actor(user_id=None, username="system:bench"),
                username=OPERATOR["username"],
                password=OPERATOR["password"],
                display_name="bench",
                roles=["operator"],
                county_wide=True,
            )
            target = Target(
                url=service.url,
                ami_port=service.instance.ami_port,
                ami_secret=service.instance.ami_secret,
                villager_audio=str(service.villager_audio),
                rounds=rounds,
                calls=calls,
                kind=kind,
            )
            handed = Path(workdir) / "target.json"
            handed.write_text(json.dumps(asdict(target)))
            out = Path(workdir) / "driven.json"
            driver = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.hangup_to_case", "--drive", str(handed), "--json", str(out)
            )
            if await driver.wait() != 0 or not out.exists():
                raise RuntimeError(f"the villagers' process failed (exit status {driver.returncode})")
            driven = json.loads(out.read_text())
    samples = [(first, second) for first, second in driven["samples"]]
    others: list[str] = driven["others"]
    case_ms = [first * 1000 for first, _ in samples]
    recording_ms = [second * 1000 for _, second in samples]
    case, recording = summary(case_ms), summary(recording_ms)
    return {
        "calls": len(samples) + len(others),
        "not_cases": others,
        "concurrent": calls,
        "observed": "the case pages' change stream, then the case list reloaded as live.js does",
        "changes_told": driven["changes_told"],
        "list_reloads": driven["list_reloads"],
        "case_visible_ms": case,
        "recording_attached_ms": recording,
        "recording_after_case_ms": summary(
            [second - first for first, second in zip(case_ms, recording_ms, strict=True)]
        ),
        "recording_vs_case_median": round(recording["median"] / case["median"], 2) if samples else None,
        "first_burst_after_start": {
            "calls": len(driven["first_samples"]) + len(driven["first_others"]),
            "not_cases": driven["first_others"],
            "case_visible_ms": summary([first * 1000 for first, _ in driven["first_samples"]]),
            "recording_attached_ms": summary([second * 1000 for _, second in driven["first_samples"]]),
        },
        # This process runs the service (and Asterisk's sandbox is its child); the villagers and the screen
        # are a child process of their own, whose peak is given beside.
        **peak_memory(),
        "villagers_and_screen_peak_rss_mib": driven["driver_peak_rss_mib"],
    }


def in_own_process(kind: str, rounds: int, calls: int) -> dict[str, Any]:
    """One database's figures from a process of its own (its peak memory is its own)."""
    with tempfile.TemporaryDirectory(prefix="cx-bench-hangup-run-") as work:
        out = Path(work) / "figures.json"
        command = [sys.executable, "-m", "bench.hangup_to_case", "--db", kind, "--rounds", str(rounds)]
        command += ["--calls", str(calls), "--json", str(out)]
        finished = subprocess.run(command, check=False, stdout=subprocess.DEVNULL)
        if finished.returncode != 0 or not out.exists():
            return {"failed": f"exit status {finished.returncode}"}
        figures: dict[str, Any] = json.loads(out.read_text())
        return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=[*DATABASES, "both"], default="both")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20, help="concurrent calls per round")
    parser.add_argument("--quick", action="store_true", help="one round of 5 calls")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--drive", type=Path, help=argparse.SUPPRESS)  # the villagers' process (``run`` starts it)
    args = parser.parse_args(argv)
    isolate_from_environment()
    if args.drive is not None:
        write_results(args.json, asyncio.run(drive(Target(**json.loads(args.drive.read_text())))))
        return
    if args.quick:
        args.rounds, args.calls = 1, 5
    results: dict[str, Any]
    if args.db == "both":
        results = {kind: in_own_process(kind, args.rounds, args.calls) for kind in DATABASES}
    else:
        results = asyncio.run(run(args.db, args.rounds, args.calls))
    print(json.dumps(results, indent=2))
    write_results(args.json, results)
    if args.db == "both" and any("failed" in part for part in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
