"""RTP (RFC 3550/3551) PCMU sending: one pacing loop for every stream of every item.

A stream is one destination (a speaker's unicast address or a zone's
multicast group) playing one item: 8 kHz G.711 mu-law, one packet every
``packet_ms`` (20 ms → 160 bytes of payload, 172 bytes with the header),
random initial sequence number, timestamp and SSRC, the marker bit on the
first packet.

Pacing: packet *k* of a stream is due at ``start + k × packet time`` on the
event loop's monotonic clock. Due times are computed, never accumulated from
sleeps, so a 10-minute item does not drift; a loop that wakes late sends what
is due then (at most one packet period's worth per stream), so there are no
bursts. Streams are spread over ``slots`` phases of the packet period (a
stream in slot 3 of 20 sends at 3 ms, 23 ms, 43 ms…), so 2,000 streams mean
100 ``sendto`` calls per millisecond rather than 2,000 at once every 20 ms —
that is what keeps the p99 lateness low at high fan-out (bench/README.md, Broadcasting).

There is one task (the loop), whatever the number of streams: a task per
stream would cost a wake-up per packet per stream.

A pre-rolled item (a scheduled occurrence prepared before its due instant, see the
dispatcher) is built with :meth:`RtpSender.prepare` — payload padded, streams and
sockets made, nothing sent — and started with :meth:`RtpSender.release`: the first
packet of every stream goes in one loop over the prepared streams, with nothing
awaited between them, so every loudspeaker starts on the same instant; phase
spreading applies from the second packet on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from common.errors import InvalidInput
from common.tasks import BackgroundTasks

log = logging.getLogger(__name__)

RTP_VERSION: Final = 2
PAYLOAD_PCMU: Final = 0
PCMU_RATE: Final = 8000
HEADER_BYTES: Final = 12
MULAW_SILENCE: Final = b"\xff"
MULTICAST = ipaddress.IPv4Network("224.0.0.0/4")
_HEADER: Final = struct.Struct("!BBHII")


def parse_destination(text: str, *, default_port: int | None = None, field: str = "address") -> tuple[str, int]:
    """'HOST:PORT' with an IPv4 literal (unicast or multicast); a clear Chinese error otherwise."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep:
        host, port_text = text.strip(), str(default_port or "")
    if not port_text.isdigit():
        raise InvalidInput("RTP地址应写成 IP:端口，例如 192.168.1.20:5004", fields={field: "应写成 IP:端口"})
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        raise InvalidInput(f"“{host}”不是有效的IPv4地址", fields={field: "不是有效的IP地址"}) from None
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise InvalidInput("RTP端口应在1到65535之间", fields={field: "端口不对"})
    if address.is_unspecified or address == ipaddress.IPv4Address("255.255.255.255"):
        raise InvalidInput("RTP地址不能是0.0.0.0或广播地址", fields={field: "不能是0.0.0.0或广播地址"})
    return str(address), port


def is_multicast(host: str) -> bool:
    return ipaddress.IPv4Address(host) in MULTICAST


@dataclass
class StreamResult:
    destination: tuple[str, int]
    packets: int
    sent: int
    dropped: int
    completed: bool
    stopped: bool
    error: str | None = None
    # Seconds each packet left after its due time (kept only when the sender measures).
    lateness_s: list[float] = field(default_factory=list)


class RtpStream:
    """One destination playing one payload; created by :meth:`RtpSender.play`."""

    def __init__(
        self,
        destination: tuple[str, int],
        payload: memoryview,
        *,
        bytes_per_packet: int,
        sock: socket.socket,
        start: float,
        packet_s: float,
        done: asyncio.Future[StreamResult],
        measure: bool,
    ) -> None:
        self.destination = destination
        # Shared by every stream of the item (padded to whole packets once, in RtpSender.play).
        self._payload = payload
        self._bytes = bytes_per_packet
        self.packets = len(payload) // bytes_per_packet
        # One reusable packet buffer: header packed in place, payload copied in; no allocation per packet.
        self._packet = bytearray(HEADER_BYTES + bytes_per_packet)
        self._sock = sock
        self.start = start
        self._packet_s = packet_s
        self.index = 0
        self.sent = 0
        self.dropped = 0
        self._sequence = int.from_bytes(os.urandom(2), "big")
        self._timestamp = int.from_bytes(os.urandom(4), "big")
        self.ssrc = int.from_bytes(os.urandom(4), "big")
        self.done = done
        self._measure = measure
        self._lateness: list[float] = []
        self.finished = False

    def due(self) -> float:
        return self.start + self.index * self._packet_s

    def send_due(self, now: float) -> None:
        """Send the packet that is due, if it is due (the loop calls this on the stream's phase)."""
        if self.finished:
            return
        index = self.index
        due = self.start + index * self._packet_s
        if due > now:
            return
        offset = index * self._bytes
        packet = self._packet
        _HEADER.pack_into(
            packet,
            0,
            RTP_VERSION << 6,
            0x80 | PAYLOAD_PCMU if index == 0 else PAYLOAD_PCMU,
            (self._sequence + index) & 0xFFFF,
            (self._timestamp + offset) & 0xFFFFFFFF,
            self.ssrc,
        )
        packet[HEADER_BYTES:] = self._payload[offset : offset + self._bytes]
        try:
            self._sock.sendto(packet, self.destination)
            self.sent += 1
        except BlockingIOError:
            self.dropped += 1  # the socket buffer is full: the packet is lost, the clock goes on
        except OSError as exc:
            self._finish(completed=False, stopped=False, error=f"sendto {self.destination[0]}: {exc.strerror or exc}")
            return
        if self._measure:
            self._lateness.append(time.monotonic() - due)
        self.index = index + 1
        if self.index >= self.packets:
            self._finish(completed=True, stopped=False)

    def send_first(self, now: float) -> None:
        """Send packet 0 now, whatever its phase (a pre-rolled item's release: every stream at once)."""
        start, self.start = self.start, now
        self.send_due(now)
        self.start = start

    def stop(self) -> None:
        self._finish(completed=False, stopped=True)

    def _finish(self, *, completed: bool, stopped: bool, error: str | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        if not self.done.done():
            self.done.set_result(
                StreamResult(
                    destination=self.destination,
                    packets=self.packets,
                    sent=self.sent,
                    dropped=self.dropped,
                    completed=completed,
                    stopped=stopped,
                    error=error,
                    lateness_s=self._lateness,
                )
            )


class RtpSender:
    """The one pacing loop. ``start``/``stop`` own its task; ``play`` adds streams to it."""

    def __init__(
        self,
        *,
        packet_ms: int = 20,
        slots: int = 20,
        multicast_interface: str = "",
        measure: bool = False,
    ) -> None:
        self.packet_s = packet_ms / 1000
        self.bytes_per_packet = PCMU_RATE * packet_ms // 1000
        self._slots = max(1, slots)
        self._slot_s = self.packet_s / self._slots
        self._interface = multicast_interface
        self._measure = measure
        self._buckets: list[list[RtpStream]] = [[] for _ in range(self._slots)]
        self._next_slot = 0
        self._sockets: dict[int, socket.socket] = {}
        self._wakeup = asyncio.Event()
        self._tasks: BackgroundTasks | None = None
        self._origin: float | None = None
        self.active = 0

    async def start(self) -> None:
        if self._tasks is None:
            self._tasks = BackgroundTasks("rtp-sender")
            self._tasks.spawn(self._loop(), "pacing-loop")

    async def stop(self) -> None:
        if self._tasks is not None:
            await self._tasks.close()
            self._tasks = None
        for bucket in self._buckets:
            for stream in bucket:
                stream.stop()
            bucket.clear()
        self.active = 0
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

    def _socket(self, ttl: int) -> socket.socket:
        sock = self._sockets.get(ttl)
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
            # A sender that also listens on the group (a test, a monitoring PC) hears its own stream.
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            if self._interface:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(self._interface))
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
            self._sockets[ttl] = sock
        return sock

    def play(self, payload: bytes, destinations: Sequence[tuple[str, int]], *, ttl: int = 8) -> list[RtpStream]:
        """Start one stream per destination at the next packet boundary of its phase slot."""
        streams = self.prepare(payload, destinations, ttl=ttl)
        self._schedule(streams, asyncio.get_running_loop().time(), first_sent=False)
        return streams

    def prepare(self, payload: bytes, destinations: Sequence[tuple[str, int]], *, ttl: int = 8) -> list[RtpStream]:
        """Build one stream per destination, sending nothing until :meth:`release` (or :meth:`RtpStream.stop`)."""
        if self._tasks is None:
            raise RuntimeError("the RTP sender is not started")
        loop = asyncio.get_running_loop()
        sock = self._socket(ttl)
        remainder = len(payload) % self.bytes_per_packet
        if remainder:
            payload += MULAW_SILENCE * (self.bytes_per_packet - remainder)
        shared = memoryview(payload)
        streams: list[RtpStream] = []
        for destination in destinations:
            stream = RtpStream(
                destination,
                shared,
                bytes_per_packet=self.bytes_per_packet,
                sock=sock,
                start=0.0,
                packet_s=self.packet_s,
                done=loop.create_future(),
                measure=self._measure,
            )
            streams.append(stream)
        return streams

    def release(self, streams: Sequence[RtpStream]) -> float:
        """Send the first packet of every prepared stream now, in one loop; the rest follow on their phases.

        Returns the loop time the release began. A stream already stopped (its play was preempted or
        withdrawn) sends nothing.
        """
        now = asyncio.get_running_loop().time()
        live = [stream for stream in streams if not stream.finished]
        for stream in live:
            stream.send_first(now)
        self._schedule([stream for stream in live if not stream.finished], now, first_sent=True)
        return now

    def _schedule(self, streams: Sequence[RtpStream], now: float, *, first_sent: bool) -> None:
        """Give each stream its phase slot and start time, and hand it to the pacing loop."""
        if self._origin is None:
            self._origin = now
        # After a release, packet 1 goes within one period of packet 0 (early rather than late: a receiver's
        # jitter buffer absorbs an early packet, a late one is a gap); else packet 0 at the slot's next time.
        lead = 0.002 - self.packet_s if first_sent else 0.002
        for stream in streams:
            slot = self._next_slot
            self._next_slot = (self._next_slot + 1) % self._slots
            # The first grid time of this slot that lies ahead (a little lead so it is not already late).
            offset = slot * self._slot_s
            periods = int((now + lead - self._origin - offset) // self.packet_s) + 1
            stream.start = self._origin + offset + max(0, periods) * self.packet_s
            self._buckets[slot].append(stream)
        self.active += len(streams)
        self._wakeup.set()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        cursor: float | None = None  # the next sub-tick to serve
        while True:
            if self.active == 0:
                self._wakeup.clear()
                await self._wakeup.wait()
                cursor = None
            assert self._origin is not None
            now = loop.time()
            if cursor is None:
                ticks = int((now - self._origin) // self._slot_s)
                cursor = self._origin + ticks * self._slot_s
            # Serve every sub-tick up to now, in order: each touches one slot's streams.
            served = 0
            while cursor <= now and served < self._slots:
                slot = round((cursor - self._origin) / self._slot_s) % self._slots
                self._serve(self._buckets[slot], now)
                cursor += self._slot_s
                served += 1
            if served == self._slots and cursor <= now:
                cursor = None  # more than a whole period behind: re-align instead of replaying
            delay = (cursor if cursor is not None else now) - loop.time()
            await asyncio.sleep(max(0.0, delay))

    def _serve(self, bucket: list[RtpStream], now: float) -> None:
        if not bucket:
            return
        finished = False
        for stream in bucket:
            if not stream.finished:
                stream.send_due(now)
                # Behind after a stall (its next packet is already due too): one more packet now, never more,
                # so a stream catches up a period per period instead of staying late for good, with no burst.
                if not stream.finished and stream.due() <= now:
                    stream.send_due(now)
            finished = finished or stream.finished
        if finished:
            before = len(bucket)
            bucket[:] = [stream for stream in bucket if not stream.finished]
            self.active -= before - len(bucket)
