"""RTP to loudspeakers, checked by an independent receiver (ffmpeg) and by reading the packets ourselves."""

from __future__ import annotations

import asyncio
import itertools
import socket
import statistics
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from broadcast.rtp import RtpSender
from tests.support.speech import SpeechKit, ffprobe
from tts.audio import Profile

pytestmark = pytest.mark.slow

TEXT = "各位村民请注意，明天上午九点在村委会开会。"


@dataclass
class Packet:
    arrived: float
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: int


def parse(data: bytes, arrived: float) -> Packet:
    first, second, sequence, timestamp, ssrc = struct.unpack("!BBHII", data[:12])
    assert first >> 6 == 2, "RTP version 2"
    return Packet(arrived, bool(second & 0x80), second & 0x7F, sequence, timestamp, ssrc, len(data) - 12)


def free_rtp_port() -> int:
    """An even port whose odd neighbour (RTCP, which ffmpeg also binds) is free too."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1]) & ~1
        try:
            for candidate in (port, port + 1):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as check:
                    check.bind(("127.0.0.1", candidate))
            return port
        except OSError:
            continue
    raise RuntimeError("no free RTP port pair")


def udp_port_bound(port: int) -> bool:
    needle = f":{port:04X} "
    return any(needle in line.split()[1] + " " for line in Path("/proc/net/udp").read_text().splitlines()[1:])


class Listener:
    """Our own receiver: records every packet with its arrival time."""

    def __init__(self, group: str | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if group:
            self.sock.bind((group, 0))
            membership = socket.inet_aton(group) + socket.inet_aton("127.0.0.1")
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        else:
            self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.sock.setblocking(False)
        self.packets: list[Packet] = []

    def attach(self) -> None:
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._read)

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(2048)
            except BlockingIOError:
                return
            self.packets.append(parse(data, time.monotonic()))

    def close(self) -> None:
        if self.sock.fileno() < 0:  # closed already (a test may close it before its fixture does)
            return
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


@pytest.fixture
async def sender() -> AsyncIterator[RtpSender]:
    rtp = RtpSender(multicast_interface="127.0.0.1")
    await rtp.start()
    yield rtp
    await rtp.stop()


def check_headers(packets: list[Packet], count: int) -> None:
    assert len(packets) == count
    assert packets[0].marker and not any(packet.marker for packet in packets[1:])
    assert {packet.payload_type for packet in packets} == {0}
    assert len({packet.ssrc for packet in packets}) == 1
    assert {packet.payload for packet in packets} == {160}
    for before, after in itertools.pairwise(packets):
        assert after.sequence == (before.sequence + 1) & 0xFFFF
        assert after.timestamp == (before.timestamp + 160) & 0xFFFFFFFF


def jitter_report(packets: list[Packet]) -> dict[str, float]:
    gaps = [(after.arrived - before.arrived) * 1000 for before, after in itertools.pairwise(packets)]
    deviation = sorted(abs(gap - 20.0) for gap in gaps)
    # RFC 3550 interarrival jitter (in ms), as a receiver would report it.
    jitter = 0.0
    for gap in gaps:
        jitter += (abs(gap - 20.0) - jitter) / 16
    return {
        "median_gap_ms": statistics.median(gaps),
        "p99_deviation_ms": deviation[int(0.99 * (len(deviation) - 1))],
        "max_deviation_ms": deviation[-1],
        "rfc3550_jitter_ms": jitter,
    }


async def test_an_independent_ffmpeg_receiver_decodes_the_whole_item_within_two_percent(
    kit: SpeechKit, sender: RtpSender, tmp_path: Path
) -> None:
    item = await kit.producer.render_text(TEXT, repeats=2, profiles=[Profile.RTP])
    payload = item.files[Profile.RTP].read_bytes()
    expected_s = len(payload) / 8000
    port = free_rtp_port()
    sdp = tmp_path / "in.sdp"
    sdp.write_text(
        "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=cunxiang\nc=IN IP4 127.0.0.1\nt=0 0\n"
        f"m=audio {port} RTP/AVP 0\na=rtpmap:0 PCMU/8000\n"
    )
    out = tmp_path / "received.wav"
    receiver = await asyncio.create_subprocess_exec(
        "ffmpeg", "-v", "error", "-protocol_whitelist", "file,udp,rtp", "-listen_timeout", "3",
        "-i", str(sdp), "-f", "wav", "-y", str(out),
        stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    listener = Listener()
    listener.attach()
    try:
        async with asyncio.timeout(10):
            # ffmpeg tells no one when it listens: the kernel's socket table shows it.
            while not udp_port_bound(port):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        streams = sender.play(payload, [("127.0.0.1", port), ("127.0.0.1", listener.port)], ttl=0)
        results = await asyncio.gather(*(stream.done for stream in streams))
        async with asyncio.timeout(30):
            await receiver.wait()
    finally:
        listener.close()
        if receiver.returncode is None:
            receiver.kill()
            await receiver.wait()
    assert all(result.completed and result.sent == result.packets for result in results)
    decoded = ffprobe(out).duration_s
    assert abs(decoded - expected_s) / expected_s < 0.02, (decoded, expected_s)
    check_headers(listener.packets, results[1].packets)
    report = jitter_report(listener.packets)
    print(f"\nRTP {expected_s:.2f} s item: ffmpeg decoded {decoded:.2f} s; inter-arrival {report}")
    assert 19.5 < report["median_gap_ms"] < 20.5


async def test_multicast_to_a_group_reaches_a_member_on_loopback_with_ttl_zero(sender: RtpSender) -> None:
    group = "239.255.77.7"
    listener = Listener(group)
    listener.attach()
    payload = b"\xff" * 160 * 50  # one second
    try:
        streams = sender.play(payload, [(group, listener.port)], ttl=0)
        result = await asyncio.wait_for(streams[0].done, 10)
        await asyncio.sleep(0.2)
    finally:
        listener.close()
    assert result.completed
    check_headers(listener.packets, 50)


async def test_packets_stay_on_their_absolute_schedule_so_a_long_item_does_not_drift() -> None:
    rtp = RtpSender(measure=True)
    await rtp.start()
    listener = Listener()
    listener.attach()
    try:
        streams = rtp.play(b"\xff" * 160 * 250, [("127.0.0.1", listener.port)])  # five seconds
        result = await asyncio.wait_for(streams[0].done, 15)
    finally:
        listener.close()
        await rtp.stop()
    # Each packet's lateness is measured against start + k x 20 ms: an accumulating drift would grow with k.
    # Medians, not extremes: a loaded machine may stall the sender now and then, which is not drift.
    assert statistics.median(result.lateness_s[-50:]) - statistics.median(result.lateness_s[:50]) < 0.002
    # The receiver's view: arrival of packet k against first arrival + k x 20 ms, at the start and at the end.
    first = listener.packets[0].arrived
    offsets = [packet.arrived - first - index * 0.020 for index, packet in enumerate(listener.packets)]
    assert len(listener.packets) == 250
    assert abs(statistics.median(offsets[-50:]) - statistics.median(offsets[:50])) < 0.003


async def test_a_stopped_stream_ends_at_once_and_says_it_was_stopped(sender: RtpSender) -> None:
    listener = Listener()
    listener.attach()
    try:
        streams = sender.play(b"\xff" * 160 * 500, [("127.0.0.1", listener.port)])
        await asyncio.sleep(0.3)
        streams[0].stop()
        result = await asyncio.wait_for(streams[0].done, 2)
        await asyncio.sleep(0.1)
        received = len(listener.packets)
        await asyncio.sleep(0.2)
    finally:
        listener.close()
    assert result.stopped and not result.completed
    assert 5 < result.sent < 500
    assert received == len(listener.packets) == result.sent


async def test_after_the_sender_stalls_its_streams_catch_up_instead_of_staying_late() -> None:
    rtp = RtpSender(measure=True)
    await rtp.start()
    listener = Listener()
    listener.attach()
    try:
        streams = rtp.play(b"\xff" * 160 * 150, [("127.0.0.1", listener.port)])  # three seconds
        await asyncio.sleep(0.5)
        time.sleep(0.07)  # noqa: ASYNC251 - the whole event loop is blocked for three and a half packet periods
        result = await asyncio.wait_for(streams[0].done, 15)
    finally:
        listener.close()
        await rtp.stop()
    assert max(result.lateness_s) >= 0.05  # the stall happened
    assert statistics.median(result.lateness_s[-50:]) < 0.003  # and the stream is back on its schedule
    assert result.sent == 150


async def test_prepared_streams_send_nothing_until_released_then_every_first_packet_before_any_second(
    sender: RtpSender,
) -> None:
    """A pre-rolled item: 40 streams built ahead; their first packets go in one loop, then each on its phase."""
    listener = Listener()
    listener.attach()
    try:
        streams = sender.prepare(b"\xff" * 160 * 10, [("127.0.0.1", listener.port)] * 40)
        await asyncio.sleep(0.1)
        assert listener.packets == [] and sender.active == 0
        sender.release(streams)
        results = await asyncio.wait_for(asyncio.gather(*(stream.done for stream in streams)), 5)
        await asyncio.sleep(0.1)
    finally:
        listener.close()
    assert all(result.completed and result.sent == 10 for result in results)
    # The first 40 packets to arrive are the 40 streams' first (marker) packets: none waited for its phase.
    assert [packet.marker for packet in listener.packets[:40]] == [True] * 40
    assert len({packet.ssrc for packet in listener.packets[:40]}) == 40
    by_stream: dict[int, list[Packet]] = {}
    for packet in listener.packets:
        by_stream.setdefault(packet.ssrc, []).append(packet)
    for packets in by_stream.values():
        check_headers(packets, 10)


async def test_a_prepared_stream_stopped_before_its_release_sends_nothing(sender: RtpSender) -> None:
    listener = Listener()
    listener.attach()
    try:
        kept, stopped = sender.prepare(b"\xff" * 160 * 5, [("127.0.0.1", listener.port)] * 2)
        stopped.stop()
        sender.release([kept, stopped])
        kept_result = await asyncio.wait_for(kept.done, 5)
        stopped_result = await asyncio.wait_for(stopped.done, 5)
        await asyncio.sleep(0.1)
    finally:
        listener.close()
    assert kept_result.completed and kept_result.sent == 5
    assert stopped_result.stopped and stopped_result.sent == 0
    assert {packet.ssrc for packet in listener.packets} == {kept.ssrc}
