"""手机喊话 实时 whole (issue 18), on the real Asterisk: a cadre dials the line, goes live, and her voice reaches the
loudspeakers as she speaks — a unicast RTP speaker, a multicast zone group pinned to loopback, a SIP speaker (a
Local channel that answers and records) — while the 4G terminal, which cannot play live, gets the call's recording
after it. # ends it, an emergency cuts it (she hears why), the hard limit ends it.

The line, the desk, the dispatcher and the rooms are the service's own, joined by server.py; only the cadre is
simulated (the dial test's villager). The hard limit is a few seconds and the cadre says one short sentence: each
call lasts seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Iterator
from pathlib import PurePosixPath

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from hotline.dialtest import VillagerCall, VillagerScript
from hotline.recordings import inspect
from server import Runtime
from settings import Settings
from storage.models import RUN_SUCCESS, Speaker, ZoneBroadcastSettings
from tests.broadcast.test_broadcast_api import Terminal
from tests.phonecast.helpers import make_cadre, record_of
from tests.support.asterisk import Hotline, free_port
from tests.support.broadcasting import build_place, make_principal, speaker_rows, wait_for_rows
from tests.support.receivers import RtpReceiver

pytestmark = [pytest.mark.asterisk, pytest.mark.slow]

NUMBER = "13947100007"
PIN = "258036"
MESSAGE = "各位村民请注意，今天下午三点在村委会开会。"
GROUP = "239.255.42.9"
SIP_SPEAKER = "Local/lvspk@cx-test-speaker"


@pytest.fixture
def live_max_s() -> int:
    """The hard limit: well above a test call (the limit's own test parametrizes a few seconds)."""
    return 30


@pytest.fixture
def settings(asterisk_settings: Settings, live_max_s: int) -> Settings:
    # Live on; multicast leaves from loopback and is looped back to this machine's receiver (nothing leaves it).
    return asterisk_settings.model_copy(
        update={
            "hotline": asterisk_settings.hotline.model_copy(update={"phonecast_live_max_s": live_max_s}),
            "broadcast": asterisk_settings.broadcast.model_copy(update={"rtp_multicast_interface": "127.0.0.1"}),
        }
    )


class MulticastReceiver(RtpReceiver):
    """An RTP speaker listening to a zone group, joined on loopback only."""

    def __init__(self, group: str, port: int) -> None:
        super().__init__(group, port)
        membership = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton("127.0.0.1"))
        self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)


@pytest.fixture
def multicast() -> Iterator[MulticastReceiver]:
    receiver = MulticastReceiver(GROUP, free_port(socket.SOCK_DGRAM))
    with receiver:
        yield receiver


def voiced(receiver: RtpReceiver) -> int:
    """How many different payloads arrived: the room's silence is one payload over and over, a voice is not."""
    return len({packet.payload for packet in receiver.packets})


async def dial(hotline: Hotline, keys: tuple[str, ...]) -> VillagerCall:
    assert hotline.telephony.media is not None
    await hotline.telephony.media.sentence(MESSAGE, "test-cadre-live")
    script = VillagerScript(
        caller=NUMBER,
        keys=keys,
        audio=PurePosixPath(hotline.telephony.paths.media.asterisk / "test-cadre-live"),
        line="phonecast",
    )
    call = await hotline.telephony.villager.call(script, timeout_s=120)
    assert call.ended
    return call


async def test_a_cadre_goes_live_on_unicast_multicast_and_sip_speakers_ends_with_hash_and_4g_gets_the_recording_after(
    hotline: Hotline, runtime: Runtime, server: TestServer, multicast: MulticastReceiver
) -> None:
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    with RtpReceiver() as unicast:
        # Zone 1: a unicast RTP speaker and a 4G terminal; zone 2: two RTP speakers on one multicast group.
        place = await build_place(
            runtime,
            admin,
            "甲乡",
            [[("rtp", unicast.address)], [("rtp", "127.0.0.1:40300"), ("rtp", "127.0.0.1:40302")]],
        )
        _terminal, token = await runtime.areas.create_speaker(
            admin, zone_id=place.zone_ids[0], name="4G音柱", transport="http", address="4g-live"
        )
        assert token is not None
        async with runtime.sessions.begin() as session:
            # The area tree takes only PJSIP endpoint names: the stand-in's dial string is written directly.
            session.add(
                Speaker(
                    zone_id=place.zone_ids[0],
                    name="SIP喇叭",
                    transport="sip",
                    address=SIP_SPEAKER,
                    codec="pcmu",
                    enabled=True,
                    created_at=runtime.clock.now(),
                )
            )
            session.add(
                ZoneBroadcastSettings(
                    zone_id=place.zone_ids[1],
                    rtp_group=f"{GROUP}:{multicast.port}",
                    rtp_ttl=1,
                    updated_at=runtime.clock.now(),
                )
            )
        cadre = await make_cadre(runtime, admin, "lihua", NUMBER, villages=[place.village_id], pin=PIN)

        # PIN, 1 = 本村, 2 = 实时喊话; on the air she says her sentence, then presses #.
        call = await dial(hotline, (PIN, "1", "2", "#"))
        assert call.phonecast is not None and call.phonecast["Mode"] == "live", call.heard
        assert (call.phonecast["Status"], call.phonecast["Speakers"], call.phonecast["After"]) == ("on_air", "4", "1")
        assert "mode" in call.stages and "live" in call.stages
        # Told how many speakers hear her, that the 4G terminal plays the recording after, then the chime.
        assert "tts:已接通4个喇叭。" in call.heard and "pc_live_after" in call.heard, call.heard
        assert call.heard.index("beep") == call.heard.index("pc_live_speak") + 1
        assert call.heard[-2:] == ["pc_live_ended", "pc_goodbye"], call.heard
        # Her voice reached both RTP speakers as PCMU, and the SIP speaker recorded it.
        assert voiced(unicast) > 50 and voiced(multicast) > 50, (voiced(unicast), voiced(multicast))
        heard_by_sip = hotline.instance.sandbox.paths.spool.host.with_name("cunxiang-test") / "page_lvspk_.wav"
        assert (await asyncio.to_thread(inspect, heard_by_sip)).has_speech(0.4)

    record = await record_of(runtime, int(call.phonecast["Record"]))
    assert record.live and (record.status, record.ended_by) == ("played", "caller")
    assert (record.user_id, record.after_broadcast_id is not None) == (cadre.user_id, True)
    kept = runtime.phonecast.desk.recordings_dir / (record.recording_file or "-")
    assert (await asyncio.to_thread(inspect, kept)).has_speech(0.4)
    # The as-run log: every live speaker that joined heard the call.
    rows = await wait_for_rows(runtime, lambda rows: any(r.broadcast_id == record.broadcast_id for r in rows))
    live_rows = [row for row in rows if row.broadcast_id == record.broadcast_id]
    assert {row.state for row in live_rows} == {RUN_SUCCESS}
    speakers = [speaker for row in live_rows for speaker in await speaker_rows(runtime, row.id)]
    assert sorted((speaker.transport, speaker.state) for speaker in speakers) == [
        ("rtp", RUN_SUCCESS),
        ("rtp", RUN_SUCCESS),
        ("rtp", RUN_SUCCESS),
        ("sip", RUN_SUCCESS),
    ]
    # The 4G terminal gets the call's recording afterwards, as a recorded item at 手机喊话's priority.
    async with ClientSession() as http:
        terminal = Terminal(http, server, token)
        play = await terminal.wait_for_play(timeout=60)
        assert play["priority"] == 2 and not play["emergency"]
        assert len(await terminal.fetch(play)) > 1000


async def test_an_emergency_cuts_a_live_call_and_the_caller_hears_why(hotline: Hotline, runtime: Runtime) -> None:
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    chief = await make_principal(runtime, "chief", "leader", county_wide=True, can_emergency=True)
    with RtpReceiver() as unicast:
        place = await build_place(runtime, admin, "甲乡", [[("rtp", unicast.address)]])
        await make_cadre(runtime, admin, "lihua", NUMBER, villages=[place.village_id], pin=PIN)
        notice = await runtime.broadcasting.notices.create_emergency(
            chief, title="森林草原防火紧急通知", body="严禁野外用火。", township_id=None
        )
        # No #: she speaks and stays on the air until the emergency takes the zone.
        calling = asyncio.create_task(dial(hotline, (PIN, "1", "2")))
        try:
            await unicast.until(lambda receiver: voiced(receiver) > 20, timeout=60)
            await runtime.broadcasting.dispatcher.request(
                notice_id=notice.id, zone_ids=[place.zone_ids[0]], origin="emergency", requested_by=chief.user_id
            )
            async with asyncio.timeout(60):
                call = await calling
        finally:
            if not calling.done():
                calling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await calling
    assert call.heard[-2:] == ["pc_live_emergency", "pc_goodbye"], call.heard
    assert call.phonecast is not None
    record = await record_of(runtime, int(call.phonecast["Record"]))
    assert (record.status, record.ended_by) == ("played", "emergency")


# Three seconds on the air: shorter than her sentence, so the limit (not she) ends it, and long enough to be heard.
@pytest.mark.parametrize("live_max_s", [3])
async def test_the_hard_limit_ends_a_live_call(hotline: Hotline, runtime: Runtime) -> None:
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    with RtpReceiver() as unicast:
        place = await build_place(runtime, admin, "甲乡", [[("rtp", unicast.address)]])
        await make_cadre(runtime, admin, "lihua", NUMBER, villages=[place.village_id], pin=PIN)
        call = await dial(hotline, (PIN, "1", "2"))
        assert voiced(unicast) > 20
    assert call.heard[-2:] == ["pc_live_limit", "pc_goodbye"], call.heard
    assert call.phonecast is not None
    record = await record_of(runtime, int(call.phonecast["Record"]))
    assert (record.status, record.ended_by) == ("played", "limit")
