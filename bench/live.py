"""实时喊话: mouth → loudspeaker latency of a live phone broadcast, on the Asterisk sandbox.

    .venv/bin/python -m bench.live                 # 5 live calls of 25 tone bursts each (125 bursts)
    .venv/bin/python -m bench.live --calls 8 --bursts 30
    .venv/bin/python -m bench.live --quick         # 2 calls of 10 bursts: the figures' shape only

A cadre (the dial test's simulated caller, a Local channel into the real phone-broadcast line, the real
desk and dispatcher behind it) goes live on her village's one RTP loudspeaker — a UDP socket here — and
says a recording of tone bursts (100 ms of 1 kHz every ``--period-ms``). Her "mouth" is the moment Asterisk
starts playing that recording on her side of the call: the ``CxVillager Stage: speaking`` event raised right
before ``Playback``, stamped by Asterisk (``timestampevents``); burst k leaves her mouth at that moment plus
its offset in the file. The speaker's side is the kernel's receive time (SO_TIMESTAMPNS, the same clock) of
the first RTP packet carrying the burst's onset. The path measured: Local channel → the caller's
ConfBridge (mixing, 20 ms) → UnicastRTP listener → the socket.

Baseline, in the same run and measured the same way: the same recording said by the same dialplan on a
Local channel whose other half dials a ``UnicastRTP`` channel to a second socket — the live path without
the conference (a two-party bridge instead of ConfBridge's mixing). Figures: count, median, p95, p99 (from
100 bursts), max, in ms, for both; the ratio of the medians; bursts sent and heard; the whole process's peak
memory (the service runs in it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import socket
import struct
import sys
import tempfile
import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from bench._sandbox import Service, hotline_service
from bench.figures import isolate_from_environment, peak_memory, summary, write_results
from hotline.ami import Message
from hotline.dialtest import VillagerScript
from tests.phonecast.helpers import make_cadre
from tests.support.broadcasting import build_place, make_principal

NUMBER = "13947100007"
PIN = "258036"
RATE = 8000
BURST_S = 0.1
FIRST_BURST_S = 0.5  # the first burst leaves her mouth this far into the file (she is in the room by then)
LOUD = 2000  # |sample| above this is a burst (the tone's amplitude is 8000; the room's silence is 0)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")


def _ulaw_table() -> list[int]:
    table = []
    for byte in range(256):
        value = ~byte & 0xFF
        sign, exponent, mantissa = value & 0x80, (value >> 4) & 0x07, value & 0x0F
        magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
        table.append(-magnitude if sign else magnitude)
    return table


ULAW = _ulaw_table()


def burst_wav(path: Path, bursts: int, period_s: float) -> Path:
    """The cadre's recording: ``bursts`` of 1 kHz, one every ``period_s`` from FIRST_BURST_S, silence between."""
    total = int((FIRST_BURST_S + bursts * period_s) * RATE)
    samples = [0] * total
    for index in range(bursts):
        start = int((FIRST_BURST_S + index * period_s) * RATE)
        for n in range(int(BURST_S * RATE)):
            samples[start + n] = int(8000 * math.sin(2 * math.pi * 1000 * n / RATE))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(struct.pack(f"<{total}h", *samples))
    return path


@dataclass
class Speaker:
    """A loudspeaker's socket: every RTP packet's kernel arrival time and μ-law payload, from its own thread."""

    sock: socket.socket = field(default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    packets: list[tuple[int, bytes]] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self.closed.is_set():
            try:
                data, ancillary, _flags, _address = self.sock.recvmsg(2048, socket.CMSG_SPACE(_TIMESPEC.size))
            except TimeoutError:
                continue
            except OSError:
                return
            arrived = time.time_ns()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                    seconds, nanoseconds = _TIMESPEC.unpack(value[: _TIMESPEC.size])
                    arrived = seconds * 1_000_000_000 + nanoseconds
            if len(data) > 12:
                self.packets.append((arrived, data[12:]))

    def onsets(self, since_ns: int) -> list[int]:
        """Arrival times (ns) of each burst's first loud packet, after ``since_ns``."""
        found, loud = [], False
        for arrived, payload in list(self.packets):
            if arrived < since_ns:
                continue
            peak = max(abs(ULAW[byte]) for byte in payload)
            if not loud and peak > LOUD:
                found.append(arrived)
                loud = True
            elif loud and peak < LOUD // 4:
                loud = False
        return found

    def close(self) -> None:
        self.closed.set()
        self._thread.join(timeout=2)
        self.sock.close()


def latencies_ms(onsets: list[int], mouth_ns: int, bursts: int, period_s: float) -> list[float]:
    """Each burst's first onset against the moment it left her mouth (an onset belongs to the latest burst that
    left before it; a second onset of the same burst — a packet of it quieter than the rest — is not a burst)."""
    first: dict[int, float] = {}
    for onset in onsets:
        since_first = (onset - mouth_ns) / 1e9 - FIRST_BURST_S
        index = math.floor(since_first / period_s)
        if 0 <= index < bursts:
            first.setdefault(index, (since_first - index * period_s) * 1000)
    return [first[index] for index in sorted(first)]


class Mouths:
    """When Asterisk started playing the caller's recording, per call (its own event timestamp)."""

    def __init__(self) -> None:
        self.at: dict[str, int] = {}
        self.ready: dict[str, str] = {}

    def listen(self, event: Message) -> None:
        if event.get("Event") != "UserEvent" or event.get("UserEvent") != "CxVillager":
            return
        linkedid = event.get("Linkedid", "")
        if event.get("Stage") == "speaking" and event.get("Timestamp"):
            self.at.setdefault(linkedid, int(float(event["Timestamp"]) * 1e9))
        elif event.get("Stage") == "ready":
            self.ready.setdefault(linkedid, event.get("Channel", ""))


async def live_call(service: Service, audio: PurePosixPath, bursts: int, period_s: float) -> tuple[str, Any]:
    script = VillagerScript(caller=NUMBER, keys=(PIN, "1", "2", "#"), audio=audio, line="phonecast")
    call = await service.telephony.villager.call(script, timeout_s=120 + bursts * period_s)
    return call.linkedid, call


async def baseline_call(service: Service, mouths: Mouths, speaker: Speaker, audio: PurePosixPath, wait_s: float) -> str:
    """The same recording said the same way (the villager dialplan on a Local channel), bridged straight to a
    UnicastRTP channel to ``speaker``: the live path without the conference."""
    link = service.telephony.link
    channel_id = f"bench-base-{time.monotonic_ns()}"
    originated = await link.originate(
        channel="Local/s@villager",
        channel_id=channel_id,
        application="Dial",
        data=f"UnicastRTP/{speaker.address}/c(ulaw)",
    )
    assert (await originated.result).get("Response") == "Success"
    async with asyncio.timeout(10):
        while channel_id not in mouths.ready:  # noqa: ASYNC110 - the event arrives on the link's reader
            await asyncio.sleep(0.01)
    channel = mouths.ready[channel_id]
    await link.action("Setvar", Channel=channel, Variable="CX_AUDIO", Value=str(audio))
    await link.action("Setvar", Channel=channel, Variable="CX_HANGUP_AFTER_SPEAKING", Value="1")
    await link.action("Redirect", Channel=channel, Context="villager-act", Exten="speak", Priority=1)
    await asyncio.sleep(wait_s)
    return channel_id


async def run(calls: int, bursts: int, period_ms: int) -> dict[str, Any]:
    period_s = period_ms / 1000
    with tempfile.TemporaryDirectory(prefix="cx-bench-live-") as workdir:
        async with hotline_service(Path(workdir), hotline={"phonecast_live_max_s": 600}) as service:
            runtime = service.runtime
            admin = await make_principal(runtime, "bench-admin", "admin", county_wide=True)
            live_speaker, base_speaker = Speaker(), Speaker()
            try:
                place = await build_place(runtime, admin, "甲乡", [[("rtp", live_speaker.address)]])
                await make_cadre(runtime, admin, "bench-cadre", NUMBER, villages=[place.village_id], pin=PIN)
                media = service.telephony.paths.media
                host = burst_wav(media.host / "bench-bursts.wav", bursts, period_s)
                service.telephony.paths.give_to_asterisk(host)
                audio = media.to_asterisk(host.with_suffix(""))
                mouths = Mouths()
                service.telephony.link.add_listener(mouths.listen)
                live: list[float] = []
                base: list[float] = []
                heard = 0
                for number in range(calls):
                    linkedid, call = await live_call(service, audio, bursts, period_s)
                    if linkedid not in mouths.at or (call.phonecast or {}).get("Status") != "on_air":
                        print(f"live call {number + 1}: not on the air: {call.heard[-3:]}", file=sys.stderr)
                        continue
                    onsets = live_speaker.onsets(mouths.at[linkedid])
                    live_speaker.packets.clear()
                    values = latencies_ms(onsets, mouths.at[linkedid], bursts, period_s)
                    heard += len(values)
                    live.extend(values)
                    # The recording's length, and time for the call to be set up and the last packets to arrive.
                    channel_id = await baseline_call(
                        service, mouths, base_speaker, audio, FIRST_BURST_S + bursts * period_s + 3.0
                    )
                    base_values = latencies_ms(
                        base_speaker.onsets(mouths.at.get(channel_id, 0)),
                        mouths.at.get(channel_id, 0),
                        bursts,
                        period_s,
                    )
                    base_speaker.packets.clear()
                    base.extend(base_values)
                    print(f"call {number + 1}: live {len(values)} bursts, baseline {len(base_values)}", file=sys.stderr)
            finally:
                live_speaker.close()
                base_speaker.close()
    live_figures, base_figures = summary(live), summary(base)
    return {
        "calls": calls,
        "bursts_per_call": bursts,
        "period_ms": period_ms,
        "bursts_sent": calls * bursts,
        "bursts_heard": heard,
        "mouth_to_speaker_ms": live_figures,
        "baseline_without_conference_ms": base_figures,
        "live_vs_baseline_median": (
            round(live_figures["median"] / base_figures["median"], 2)
            if live and base and base_figures["median"]
            else None
        ),
        **peak_memory(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5, help="live calls, one after another")
    parser.add_argument("--bursts", type=int, default=25, help="tone bursts per call")
    parser.add_argument("--period-ms", type=int, default=500, help="one burst every this many ms (> the latency)")
    parser.add_argument("--quick", action="store_true", help="2 calls of 10 bursts")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    isolate_from_environment()
    if args.quick:
        args.calls, args.bursts = 2, 10
    results = asyncio.run(run(args.calls, args.bursts, args.period_ms))
    print(json.dumps(results, indent=2, ensure_ascii=False))
    write_results(args.json, results)


if __name__ == "__main__":
    main()
