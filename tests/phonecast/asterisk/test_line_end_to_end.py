"""手机喊话 whole: a cadre dials the line on the real Asterisk, and the real desk plays her voice on a loudspeaker.

The line's own tests (tests/hotline/asterisk/test_phonecast_line.py) stand a fake desk behind it and the desk's
(tests/phonecast/test_on_air.py) call ``submit`` directly; this one joins the two as server.py does: the number,
the PIN checked against the stored hash, the village read back with its speaker count from the area tree, the
recording made by Asterisk becoming a broadcast item, and that item arriving whole at an RTP receiver.
"""

from __future__ import annotations

import asyncio
from pathlib import Path, PurePosixPath

import pytest
from sqlalchemy import func, select

from hotline.dialtest import VillagerCall, VillagerScript
from hotline.recordings import inspect
from server import Runtime
from storage.models import RUN_SUCCESS, Broadcast, Case, PhoneBroadcast
from tests.phonecast.helpers import audit_actions, make_cadre, record_of
from tests.phonecast.test_on_air import item_file, until_record
from tests.support.asterisk import Hotline
from tests.support.broadcasting import build_place, make_principal, wait_for_rows
from tests.support.receivers import RtpReceiver, item_payloads
from tts.audio import Profile

pytestmark = [pytest.mark.asterisk, pytest.mark.slow]

NUMBER = "13947100007"
PIN = "258036"
# One short sentence: the line records it and plays it back to her in real time.
MESSAGE = "请大家下午三点到村委会开会。"


async def dial(hotline: Hotline, keys: tuple[str, ...]) -> VillagerCall:
    assert hotline.telephony.media is not None
    await hotline.telephony.media.sentence(MESSAGE, "test-cadre-says")
    script = VillagerScript(
        caller=NUMBER,
        keys=keys,
        audio=PurePosixPath(hotline.telephony.paths.media.asterisk / "test-cadre-says"),
        line="phonecast",
    )
    call = await hotline.telephony.villager.call(script, timeout_s=120)
    assert call.ended
    return call


async def test_a_cadre_dials_proves_herself_and_her_voice_reaches_her_villages_loudspeaker_whole(
    hotline: Hotline, runtime: Runtime, tmp_path: Path
) -> None:
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    with RtpReceiver() as receiver:
        place = await build_place(runtime, admin, "甲乡", [[("rtp", receiver.address)]])
        cadre = await make_cadre(runtime, admin, "lihua", NUMBER, villages=[place.village_id], pin=PIN)

        # Three wrong PINs: the call ends, nothing is broadcast, the desk counted and audited each failure.
        refused = await dial(hotline, ("111111", "222222", "333333"))
        assert refused.heard[-1] == "pc_pin_wrong_final" and refused.phonecast is None
        assert (await audit_actions(runtime)).count("phonecast.pin_wrong") == 3

        # The right PIN, 1 = 本村, speak, 1 = broadcast now.
        call = await dial(hotline, (PIN, "1", "1"))
        assert "tts:甲乡一村，共1个喇叭。" in call.heard, call.heard
        assert call.heard[-2:] == ["tts:已开始播出，共1个喇叭。", "pc_goodbye"], call.heard
        assert call.phonecast is not None and call.phonecast["Status"] == "started"
        record = await record_of(runtime, int(call.phonecast["Record"]))
        assert (record.user_id, record.call_id) == (cadre.user_id, call.linkedid)
        assert record.broadcast_id is not None

        rows = await wait_for_rows(runtime, lambda rows: rows and rows[0].state not in (1, 2), timeout=90)
        assert rows[0].state == RUN_SUCCESS, rows[0].error
        # What she said, as Asterisk recorded it, is what the desk kept and the loudspeaker received, whole.
        kept = runtime.phonecast.desk.recordings_dir / (record.recording_file or "-")
        assert (await asyncio.to_thread(inspect, kept)).has_speech(0.4)
        expected = await asyncio.to_thread(item_payloads, await item_file(runtime, record.broadcast_id, Profile.RTP))
        await receiver.until(lambda r: r.plays(expected) == ["full"], timeout=10)
    await until_record(runtime, record.id, "played")

    # One call, one phone broadcast, one item; and the line is not the hotline: no case.
    async with runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(PhoneBroadcast)) == 1
        assert await session.scalar(select(func.count()).select_from(Broadcast)) == 1
        assert await session.scalar(select(func.count()).select_from(Case)) == 0
