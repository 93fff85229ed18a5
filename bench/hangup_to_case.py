"""Time from a villager's hang-up to her case being visible through the API, 20 calls at once, on the sandbox.

    .venv/bin/python -m bench.hangup_to_case               # 3 rounds of 20 concurrent calls
    .venv/bin/python -m bench.hangup_to_case --rounds 5

Each simulated villager (a Local channel into the real IVR, driven over its own AMI connection so
the service's link does only its own work) presses 1, says her sentence and hangs up while the
recording is still running — the case is made at the hang-up, not before. For each call the clock
starts when her channel's Hangup event arrives and stops when ``GET /api/v1/hotline/calls/{linkedid}``
(signed in as a county-wide operator, polled every 25 ms) first shows (a) the case ("case visible")
and (b) the case with its recording attached (moved out of the spool, checksum verified: "recording
attached"). Both are measured on the same calls in the same run, with how long the recording came
after its case, and the ratio of the two medians (the case is the baseline the recording is set
against). Each figure: count, median, p95 (nearest rank), p99 only with at least 100 samples
(``--rounds 5`` of 20 calls), max; and the whole process's peak memory (the service runs in it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp

from bench._sandbox import Service, hotline_service
from bench.figures import isolate_from_environment, peak_memory, summary, write_results
from common.clock import SystemClock
from hotline.ami import AmiConfig, AmiLink, Message
from hotline.dialtest import SimulatedVillager, VillagerScript
from storage.audit import Actor

POLL_S = 0.025


class Hangups:
    """When each call first lost a channel (perf_counter), and a wait for it."""

    def __init__(self) -> None:
        self._at: dict[str, float] = {}
        self._seen: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def saw(self, linkedid: str) -> None:
        self._at.setdefault(linkedid, time.perf_counter())
        self._seen[linkedid].set()

    async def of(self, linkedid: str) -> float:
        await self._seen[linkedid].wait()
        return self._at[linkedid]


async def one_round(
    service: Service, villager: SimulatedVillager, http: aiohttp.ClientSession, hangups: Hangups, calls: int
) -> list[tuple[float, float] | str]:
    async def one(index: int) -> tuple[float, float] | str:
        call_id = f"bench-{index}-{SimulatedVillager.new_call_id()}"
        script = VillagerScript(
            caller=f"1370000{index:04d}", keys=("1",), audio=service.villager_audio, hangup_at="recording"
        )
        call_task = asyncio.ensure_future(villager.call(script, call_id=call_id, timeout_s=180))
        hung_up = await hangups.of(call_id)
        case_seen = recording_seen = None
        deadline = hung_up + 60
        while recording_seen is None:
            async with http.get(f"{service.url}/api/v1/hotline/calls/{call_id}") as response:
                if response.status == 200:
                    outcome = await response.json()
                    now = time.perf_counter()
                    case = outcome.get("case")
                    if case is None and outcome.get("outcome") == "missed":
                        await call_task
                        return "missed"  # not a case: she was gone before she said anything
                    if case is not None and case_seen is None:
                        case_seen = now
                    if case is not None and case["recordings"]:
                        recording_seen = now
                        continue
            if time.perf_counter() > deadline:
                return "timed out"
            await asyncio.sleep(POLL_S)
        await call_task
        assert case_seen is not None
        return case_seen - hung_up, recording_seen - hung_up

    return list(await asyncio.gather(*(one(index) for index in range(calls))))


async def run(rounds: int, calls: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cx-bench-hangup-") as workdir:
        async with hotline_service(Path(workdir)) as service:
            runtime = service.runtime
            await runtime.accounts.create_user(
                Actor(user_id=None, username="system:bench"),
                username="bench-operator",
                display_name="bench",
                password="Hangup-timing-2026!",
                roles=["operator"],
                county_wide=True,
            )
            instance = service.instance
            link = AmiLink(
                AmiConfig("127.0.0.1", instance.ami_port, "cunxiang", instance.ami_secret), clock=SystemClock()
            )
            hangups = Hangups()

            def on_event(event: Message) -> None:
                if event.get("Event") == "Hangup":
                    hangups.saw(event.get("Linkedid", ""))

            link.add_listener(on_event)
            await link.start()
            await link.wait_connected(30)
            samples: list[tuple[float, float]] = []
            others: list[str] = []
            try:
                # Cookies from an IP-address host are dropped by default; this one is ours.
                async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                    async with http.post(
                        f"{service.url}/api/v1/session",
                        json={"username": "bench-operator", "password": "Hangup-timing-2026!"},
                    ) as response:
                        assert response.status == 200, await response.text()
                    villager = SimulatedVillager(link)
                    for number in range(rounds):
                        for result in await one_round(service, villager, http, hangups, calls):
                            if isinstance(result, str):
                                others.append(result)
                            else:
                                samples.append(result)
                        print(f"round {number + 1}: {len(samples)} cases, others {others}", file=sys.stderr)
            finally:
                await link.stop()
    case_ms = [first * 1000 for first, _ in samples]
    recording_ms = [second * 1000 for _, second in samples]
    case, recording = summary(case_ms), summary(recording_ms)
    return {
        "calls": len(samples) + len(others),
        "not_cases": others,
        "concurrent": calls,
        "poll_ms": POLL_S * 1000,
        "case_visible_ms": case,
        "recording_attached_ms": recording,
        "recording_after_case_ms": summary(
            [second - first for first, second in zip(case_ms, recording_ms, strict=True)]
        ),
        "recording_vs_case_median": round(recording["median"] / case["median"], 2) if samples else None,
        # The service, the villagers' link and this loop share the process.
        **peak_memory(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20, help="concurrent calls per round")
    parser.add_argument("--quick", action="store_true", help="one round of 5 calls")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    isolate_from_environment()
    if args.quick:
        args.rounds, args.calls = 1, 5
    results = asyncio.run(run(args.rounds, args.calls))
    print(json.dumps(results, indent=2))
    write_results(args.json, results)


if __name__ == "__main__":
    main()
