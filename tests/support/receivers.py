"""RTP receivers that count what each loudspeaker really got: the evidence of the fault tests.

A :class:`RtpReceiver` is a small UDP reader on one loopback port (one per speaker), in a thread of
its own, so it keeps counting whatever the test does meanwhile (kill the service, restart it, block
in a subprocess call). It records every packet's arrival (the kernel's timestamp, ``SO_TIMESTAMPNS``),
sequence number, SSRC, marker bit and a hash of its payload.

What was played is read from the packets, never from the service's own log:

* a *run* is one stream (one SSRC) with contiguous sequence numbers;
* an item was *played once* when exactly one run carries the item's whole payload, packet for
  packet (:meth:`RtpReceiver.plays`: "full"); a run carrying only its beginning was *cut* ("cut");
  the item's first packets seen again in another run mean it played *twice*.

Every item begins the same way (lead-in silence, the chime, a pause: about 2.4 s, 120 packets), so
a run cut within that beginning cannot tell which item it was: a test cuts an item only once a
receiver has seen :data:`INTO_SPEECH` packets of it.

The item's packets are its RTP file (G.711 mu-law, 160 bytes a packet) from the audio cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PAYLOAD_BYTES = 160
# Packets after which an item is past the beginning every item shares (4 s at 20 ms a packet).
INTO_SPEECH = 200
MULAW_SILENCE = b"\xff"
# SO_TIMESTAMPNS delivers struct timespec (two longs) in a control message of this type.
SCM_TIMESTAMPNS = getattr(socket, "SCM_TIMESTAMPNS", 35)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@ll")


@dataclass(frozen=True)
class Packet:
    arrived_ns: int  # kernel receive time, CLOCK_REALTIME
    sequence: int
    ssrc: int
    marker: bool
    payload: str  # SHA-256 of the payload, hex


@dataclass
class Run:
    """One stream's contiguous packets."""

    ssrc: int
    packets: list[Packet] = field(default_factory=list)

    @property
    def payloads(self) -> tuple[str, ...]:
        return tuple(packet.payload for packet in self.packets)

    @property
    def first_arrival_s(self) -> float:
        return self.packets[0].arrived_ns / 1e9

    @property
    def last_arrival_s(self) -> float:
        return self.packets[-1].arrived_ns / 1e9


def item_payloads(rtp_file: Path) -> tuple[str, ...]:
    """The hashes of the packets an item is sent as (its RTP profile, padded like the sender pads it)."""
    data = rtp_file.read_bytes()
    if len(data) % PAYLOAD_BYTES:
        data += MULAW_SILENCE * (PAYLOAD_BYTES - len(data) % PAYLOAD_BYTES)
    return tuple(
        hashlib.sha256(data[offset : offset + PAYLOAD_BYTES]).hexdigest()
        for offset in range(0, len(data), PAYLOAD_BYTES)
    )


class RtpReceiver:
    """Counts the RTP packets arriving at one loopback port (a loudspeaker), from its own thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._sock.bind((host, port))
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self.address = f"{host}:{self.port}"
        self._packets: list[Packet] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"rtp-receiver-{self.port}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data, ancillary, _flags, _address = self._sock.recvmsg(2048, socket.CMSG_SPACE(_TIMESPEC.size))
            except TimeoutError:
                continue
            except OSError:
                return
            arrived = time.time_ns()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                    seconds, nanoseconds = _TIMESPEC.unpack(value[: _TIMESPEC.size])
                    arrived = seconds * 1_000_000_000 + nanoseconds
            if len(data) < 12 or data[0] >> 6 != 2:
                continue
            _first, second, sequence, _timestamp, ssrc = struct.unpack("!BBHII", data[:12])
            packet = Packet(arrived, sequence, ssrc, bool(second & 0x80), hashlib.sha256(data[12:]).hexdigest())
            with self._lock:
                self._packets.append(packet)

    @property
    def packets(self) -> list[Packet]:
        with self._lock:
            return list(self._packets)

    def runs(self) -> list[Run]:
        """The streams, each split wherever a sequence number is missing, in order of first arrival."""
        runs: list[Run] = []
        open_runs: dict[int, Run] = {}
        for packet in self.packets:
            current = open_runs.get(packet.ssrc)
            if current is None or packet.sequence != (current.packets[-1].sequence + 1) & 0xFFFF:
                current = Run(packet.ssrc)
                open_runs[packet.ssrc] = current
                runs.append(current)
            current.packets.append(packet)
        return runs

    def plays(self, item: Sequence[str]) -> list[str]:
        """For each run that carries ``item``: "full" (all of it, packet for packet) or "cut" (its beginning only).

        Runs of other items are left out. An item seen twice is two entries.
        """
        found = []
        whole = tuple(item)
        for run in self.runs():
            payloads = run.payloads
            if payloads == whole:
                found.append("full")
            elif payloads and len(payloads) < len(whole) and whole[: len(payloads)] == payloads:
                found.append("cut")
        return found

    def runs_of(self, item: Sequence[str]) -> list[Run]:
        """The runs that carry ``item`` or its beginning, in order."""
        whole = tuple(item)
        return [run for run in self.runs() if run.payloads and whole[: len(run.payloads)] == run.payloads]

    async def until(self, predicate: object, timeout: float = 60.0) -> None:  # noqa: ASYNC109 - a polling budget
        """Wait (without blocking the event loop) until ``predicate(self)`` holds, polled every 50 ms."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):  # type: ignore[operator]
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"receiver {self.address}: not reached within {timeout} s; runs: {self.summary()}")

    def wait_for(self, predicate: object, timeout: float = 60.0) -> None:
        """Block until ``predicate(self)`` holds, polled every 50 ms (for tests driving other processes)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):  # type: ignore[operator]
                return
            time.sleep(0.05)
        raise AssertionError(
            f"receiver {self.address}: condition not reached within {timeout} s; runs: {self.summary()}"
        )

    def summary(self) -> list[tuple[int, int]]:
        """(SSRC, packets) of each run: what a failed assertion shows."""
        return [(run.ssrc, len(run.packets)) for run in self.runs()]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self._sock.close()

    def __enter__(self) -> RtpReceiver:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
