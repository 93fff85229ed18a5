"""Live rooms on the real Asterisk: a cadre's conference reaches a unicast RTP speaker, a multicast group pinned to
loopback and a SIP speaker (a Local channel that answers and records), each as a listener; each leg's answer and
end are reported, and ending the room (an emergency) empties it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from hotline.live_rooms import BRIDGE_PROFILE, TALKER_PROFILE, ConferenceRooms, RoomLeg, dial_string, room_name
from tests.phonecast.helpers import tone_wav
from tests.support.asterisk import Hotline, free_port

pytestmark = [pytest.mark.asterisk, pytest.mark.slow]

GROUP = "239.255.42.7"


class Receiver:
    """A loudspeaker's socket: counts the RTP packets (and PCMU bytes) that reach it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.packets = 0
        self.payload = bytearray()
        self.payload_types: set[int] = set()

    def drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            if len(data) > 12:
                self.packets += 1
                self.payload_types.add(data[1] & 0x7F)
                self.payload += data[12:]


@pytest.fixture
def unicast() -> Iterator[Receiver]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", free_port(socket.SOCK_DGRAM)))
    sock.setblocking(False)
    with contextlib.closing(sock):
        yield Receiver(sock)


@pytest.fixture
def multicast() -> Iterator[Receiver]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((GROUP, free_port(socket.SOCK_DGRAM)))
    # Joined on loopback only: nothing of the test leaves the machine.
    sock.setsockopt(
        socket.IPPROTO_IP,
        socket.IP_ADD_MEMBERSHIP,
        struct.pack("4s4s", socket.inet_aton(GROUP), socket.inet_aton("127.0.0.1")),
    )
    sock.setblocking(False)
    with contextlib.closing(sock):
        yield Receiver(sock)


def test_dial_strings_refuse_what_is_not_an_address() -> None:
    assert dial_string(RoomLeg("unicast", "127.0.0.1:4000"), 0) == "UnicastRTP/127.0.0.1:4000/c(ulaw)"
    assert (
        dial_string(RoomLeg("multicast", "239.1.2.3:5004", ttl=2, interface="127.0.0.1", loop=True), 1)
        == "MulticastRTP/basic/239.1.2.3:5004//c(ulaw)t(2)l(1)i(127.0.0.1)"
    )
    assert dial_string(RoomLeg("sip", "PJSIP/spk1"), 2) == "Local/2@cx-live-sip"
    for leg in (
        RoomLeg("unicast", "239.1.2.3:5004"),
        RoomLeg("multicast", "10.0.0.1:5004"),
        RoomLeg("unicast", "example.org:5004"),
        RoomLeg("unicast", "127.0.0.1:0"),
        RoomLeg("sip", "PJSIP/a&PJSIP/b"),
        RoomLeg("multicast", "239.1.2.3:5004", ttl=999),
    ):
        with pytest.raises(ValueError):
            dial_string(leg, 0)
    with pytest.raises(ValueError):
        room_name("a,b")


async def _talker(hotline: Hotline, room: str, tmp_path: Path) -> None:
    """A cadre already in the room, saying a tone over and over (the live line's own tests put a real call there)."""
    paths = hotline.telephony.config.paths
    host = paths.media.host / "live-talker.wav"
    host.parent.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(tone_wav, host, 1.0)
    paths.give_to_asterisk(host)
    originated = await hotline.telephony.link.originate(
        channel="Local/talk@cx-test-live-talker",
        channel_id=f"{room}-talker",
        application="ConfBridge",
        data=f"{room},{BRIDGE_PROFILE},{TALKER_PROFILE}",
        variables={"CX_AUDIO": str(paths.media.to_asterisk(host.with_suffix(""))), "__CX_MARKER": "live"},
    )
    assert (await originated.result).get("Response") == "Success"


async def test_a_room_reaches_unicast_multicast_and_sip_speakers_and_ending_it_empties_it(
    hotline: Hotline, tmp_path: Path, unicast: Receiver, multicast: Receiver
) -> None:
    rooms = ConferenceRooms(hotline.telephony.link, clock=hotline.runtime.clock, ring_timeout_s=5)
    room = room_name("lr-1")
    legs = [
        RoomLeg("unicast", f"127.0.0.1:{unicast.sock.getsockname()[1]}"),
        RoomLeg("multicast", f"{GROUP}:{multicast.sock.getsockname()[1]}", ttl=1, interface="127.0.0.1", loop=True),
        RoomLeg("sip", "Local/lrspk@cx-test-speaker"),
        RoomLeg("sip", "Local/noanswer@cx-test-operator"),  # rings for ever: never joins
    ]
    answered: list[int] = []
    failed: list[int] = []
    stop = asyncio.Event()
    await _talker(hotline, room, tmp_path)
    connecting = asyncio.create_task(
        rooms.connect(room, legs, stop, on_leg=lambda index, error: (failed if error else answered).append(index))
    )
    # Listen until both RTP sockets have had a second of the cadre's voice (50 packets of 20 ms).
    try:
        async with asyncio.timeout(20):
            while unicast.packets < 50 or multicast.packets < 50:
                await asyncio.sleep(0.05)
                unicast.drain()
                multicast.drain()
    except TimeoutError:
        log = (hotline.instance.directory / "log" / "messages.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"unicast {unicast.packets}, multicast {multicast.packets}\n{log}") from None
    assert unicast.payload_types == {0} and multicast.payload_types == {0}  # PCMU
    # The tone is heard, not silence: μ-law silence is 0xFF/0x7F throughout.
    assert len(set(unicast.payload)) > 20 and len(set(multicast.payload)) > 20
    try:
        async with asyncio.timeout(15):
            while set(answered) != {0, 1, 2} or failed != [3]:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        log = (hotline.instance.directory / "log" / "messages.log").read_text(errors="replace")[-4000:]
        raise AssertionError(f"answered {answered}\n{log}") from None
    await rooms.end(room)
    async with asyncio.timeout(15):
        outcomes = await connecting
    assert [outcome.answered_at is not None for outcome in outcomes] == [True, True, True, False]
    assert all(outcome.ended_at is not None for outcome in outcomes[:3])
    assert outcomes[3].error is not None and outcomes[3].error.startswith("未应答")
    # The SIP speaker recorded what it heard in the room.
    recorded = hotline.instance.sandbox.paths.spool.host.with_name("cunxiang-test")
    async with asyncio.timeout(10):
        while not list(recorded.glob("page_lrspk_*.wav")):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    channels = [channel["Channel"] for channel in await hotline.telephony.link.live_channels()]
    assert not [channel for channel in channels if "RTP/" in channel], channels


async def test_connect_returns_when_stop_is_set_and_hangs_up_every_leg(
    hotline: Hotline, tmp_path: Path, unicast: Receiver
) -> None:
    rooms = ConferenceRooms(hotline.telephony.link, clock=hotline.runtime.clock, ring_timeout_s=5)
    room = room_name("lr-2")
    await _talker(hotline, room, tmp_path)
    stop = asyncio.Event()
    connecting = asyncio.create_task(
        rooms.connect(room, [RoomLeg("unicast", f"127.0.0.1:{unicast.sock.getsockname()[1]}")], stop)
    )
    async with asyncio.timeout(30):
        while unicast.packets < 10:
            await asyncio.sleep(0.05)
            unicast.drain()
    stop.set()
    async with asyncio.timeout(15):
        [outcome] = await connecting
    assert outcome.answered_at is not None and outcome.ended_at is not None and outcome.error is None
    channels = [channel["Channel"] for channel in await hotline.telephony.link.live_channels()]
    assert not [channel for channel in channels if channel.startswith("UnicastRTP/")], channels
