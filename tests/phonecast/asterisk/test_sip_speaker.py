"""A cadre's phone broadcast paged to a SIP loudspeaker on the real Asterisk sandbox (a Local/ channel that answers
and records, as in tests/broadcast/asterisk/test_sip_paging.py): the speaker hears the whole item."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hotline.phonecast import SubmitStatus
from server import Runtime
from settings import PhonecastSettings, Settings
from storage.models import RUN_FAILED, RUN_SUCCESS, Notice, Speaker
from tests.phonecast.helpers import make_cadre, record_of, tone_wav
from tests.support.asterisk import Hotline
from tests.support.broadcasting import build_place, make_principal, speaker_rows, wait_for_rows
from tests.support.speech import ffprobe

pytestmark = [pytest.mark.asterisk, pytest.mark.slow]


@pytest.fixture
def settings(asterisk_settings: Settings) -> Settings:
    # The desk waits 4 s for speakers to answer (15 by default): a page answers in well under a second here,
    # and the item that must outlast the wait stays short.
    return asterisk_settings.model_copy(update={"phonecast": PhonecastSettings(start_wait_s=4)})


async def test_a_sip_speaker_still_ringing_is_not_counted_as_started_and_the_cadre_hears_it_did_not_answer(
    hotline: Hotline, runtime: Runtime, tmp_path: Path
) -> None:
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "甲乡", [[]])
    # One speaker answers (cx-test-speaker); the other rings for ever (cx-test-operator's "noanswer").
    async with runtime.sessions.begin() as session:
        for name, address in (("spk1", "Local/pcspk1@cx-test-speaker"), ("spk2", "Local/noanswer@cx-test-operator")):
            session.add(
                Speaker(
                    zone_id=place.zone_ids[0],
                    name=name,
                    transport="sip",
                    address=address,
                    codec="pcmu",
                    enabled=True,
                    created_at=runtime.clock.now(),
                )
            )
    cadre = await make_cadre(runtime, admin, "cadre", "13800001111", villages=[place.village_id])
    target = (await runtime.phonecast.desk.targets(cadre)).villages[0]
    # Long enough to be on the air for the whole of the desk's wait (settings: start_wait_s).
    said = tone_wav(tmp_path / "said.wav", 2.0 + runtime.settings.phonecast.start_wait_s)
    result = await runtime.phonecast.desk.submit(cadre, "13800001111", target, said, call_id="sip-2")
    # The one that answered plays; the one still ringing is told to the cadre as not answering (it used to
    # count as started from the moment it was dialled).
    assert (result.status, result.speakers, result.unanswered) == (SubmitStatus.STARTED, 1, 1)
    rows = await wait_for_rows(runtime, lambda rows: rows and rows[0].state not in (1, 2), timeout=120)
    speakers = {speaker.address: speaker for speaker in await speaker_rows(runtime, rows[0].id)}
    assert speakers["Local/pcspk1@cx-test-speaker"].state == RUN_SUCCESS
    assert speakers["Local/noanswer@cx-test-operator"].state == RUN_FAILED
    assert speakers["Local/noanswer@cx-test-operator"].error == "终端未应答"


async def test_a_cadres_recording_is_paged_to_a_sip_speaker_that_answers_and_hears_it_whole(
    hotline: Hotline, runtime: Runtime, tmp_path: Path
) -> None:
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "甲乡", [[]])
    # A stand-in for an auto-answering SIP speaker (cx-test-speaker answers and records); the area tree only
    # accepts PJSIP endpoint names, so the dial string is written directly.
    async with runtime.sessions.begin() as session:
        session.add(
            Speaker(
                zone_id=place.zone_ids[0],
                name="spk1",
                transport="sip",
                address="Local/pcspk1@cx-test-speaker",
                codec="pcmu",
                enabled=True,
                created_at=runtime.clock.now(),
            )
        )
    cadre = await make_cadre(runtime, admin, "cadre", "13800001111", villages=[place.village_id])
    target = (await runtime.phonecast.desk.targets(cadre)).villages[0]
    result = await runtime.phonecast.desk.submit(
        cadre, "13800001111", target, tone_wav(tmp_path / "said.wav", 2.0), call_id="sip-1"
    )
    assert (result.status, result.speakers) == (SubmitStatus.STARTED, 1)
    rows = await wait_for_rows(runtime, lambda rows: rows and rows[0].state not in (1, 2), timeout=120)
    speakers = await speaker_rows(runtime, rows[0].id)
    assert rows[0].state == RUN_SUCCESS, (rows[0].error, [(s.address, s.state, s.error) for s in speakers])
    assert [speaker.state for speaker in speakers] == [RUN_SUCCESS]

    record = await record_of(runtime, result.record_id or 0)
    async with runtime.sessions() as session:
        notice = await session.get(Notice, record.notice_id)
        assert notice is not None
    expected = float(notice.audio_duration_s or 0)
    spool = hotline.telephony.paths.spool.host
    test_spool = spool.with_name(spool.name + "-test")

    def heard() -> float | None:
        found = sorted(Path(test_spool).glob("page_pcspk1_*.wav"))
        return ffprobe(found[-1]).duration_s if found and found[-1].stat().st_size > 44 else None

    duration = None
    async with asyncio.timeout(30):
        while duration is None:
            duration = await asyncio.to_thread(heard)
            if duration is None:
                await asyncio.sleep(0.5)
    # The speaker heard the whole item (give or take the moment it took to answer).
    assert abs(duration - expected) < max(1.0, 0.05 * expected), (duration, expected)
