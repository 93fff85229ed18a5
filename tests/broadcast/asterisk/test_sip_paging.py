"""SIP paging on the real Asterisk sandbox: two recording "speakers" (Local/ channels that Record) each get the item."""

from __future__ import annotations

import asyncio
import json
from argparse import Namespace
from pathlib import Path

import pytest

from cli.broadcast import cmd_broadcast_test
from server import Runtime
from settings import Settings
from storage.models import RUN_INTERRUPTED, RUN_PLAYING, RUN_SUCCESS, Speaker
from tests.support.asterisk import Hotline
from tests.support.broadcasting import approved_notice, build_place, make_principal, speaker_rows, wait_for_rows
from tests.support.speech import ffprobe

pytestmark = [pytest.mark.asterisk, pytest.mark.slow]


def oldest_first(directory: Path, pattern: str) -> list[Path]:
    return sorted(directory.glob(pattern), key=lambda path: path.stat().st_mtime)


async def test_a_zone_of_two_sip_speakers_is_paged_and_each_records_the_whole_item(
    hotline: Hotline, runtime: Runtime
) -> None:
    admin = await make_principal(runtime, "page-admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "甲乡", [[]])
    zone = place.zone_ids[0]
    # Stand-ins for two auto-answering SIP speakers (cx-test-speaker answers and records). The area
    # tree only accepts PJSIP endpoint names, so these dial strings are written directly.
    async with runtime.sessions.begin() as session:
        for name in ("spk1", "spk2"):
            session.add(
                Speaker(
                    zone_id=zone,
                    name=name,
                    transport="sip",
                    address=f"Local/{name}@cx-test-speaker",
                    codec="pcmu",
                    enabled=True,
                    created_at=runtime.clock.now(),
                )
            )
    staff = await make_principal(runtime, "page-staff", "staff", township_ids=[place.township_id])
    approver = await make_principal(runtime, "page-approver", "approver", township_ids=[place.township_id])
    notice = await approved_notice(
        runtime, staff, approver, township_id=place.township_id, body="各位村民请注意，明天上午九点在村委会开会。"
    )
    await runtime.broadcasting.dispatcher.request(
        notice_id=notice.id, zone_ids=[zone], origin="manual", requested_by=None
    )
    rows = await wait_for_rows(runtime, lambda rows: rows and rows[0].state not in (1, 2), timeout=120)
    speakers = await speaker_rows(runtime, rows[0].id)
    assert rows[0].state == RUN_SUCCESS, (rows[0].error, [(s.address, s.state, s.error) for s in speakers])
    assert [speaker.state for speaker in speakers] == [RUN_SUCCESS, RUN_SUCCESS]

    spool = hotline.telephony.paths.spool.host
    test_spool = spool.with_name(spool.name + "-test")
    expected = float(notice.audio_duration_s or 0)
    durations: dict[str, float] = {}

    def heard(name: str) -> float | None:
        """How long the speaker's latest recording of a page is, once it holds more than a WAV header."""
        found = sorted(Path(test_spool).glob(f"page_{name}_*.wav"))
        return ffprobe(found[-1]).duration_s if found and found[-1].stat().st_size > 44 else None

    async with asyncio.timeout(30):
        # Files Asterisk writes, in the event loop that runs the service: read in a thread, polled.
        while len(durations) < 2:
            for name in ("spk1", "spk2"):
                if (duration := await asyncio.to_thread(heard, name)) is not None:
                    durations[name] = duration
            await asyncio.sleep(0.5)
    for name, duration in durations.items():
        # Each speaker heard the whole item (give or take the moment it took to answer).
        assert abs(duration - expected) < max(1.0, 0.05 * expected), (name, duration, expected)


async def test_the_speaker_test_command_pages_one_sip_speaker_and_prints_its_result(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = Namespace(text="村响广播测试。", rtp=None, page="Local/spk9@cx-test-speaker", speaker=None)
    code = await asyncio.to_thread(cmd_broadcast_test, settings, arguments)
    printed = json.loads(capsys.readouterr().out)
    assert code == 0, printed
    assert (printed["transport"], printed["state_label"]) == ("sip", "成功")


async def test_an_emergency_cuts_into_a_page_on_the_real_asterisk_and_then_pages_the_same_speakers(
    hotline: Hotline, runtime: Runtime
) -> None:
    admin = await make_principal(runtime, "cut-admin", "admin", county_wide=True, can_emergency=True)
    place = await build_place(runtime, admin, "乙镇", [[]])
    zone = place.zone_ids[0]
    async with runtime.sessions.begin() as session:
        for name in ("spk5", "spk6"):
            session.add(
                Speaker(
                    zone_id=zone,
                    name=name,
                    transport="sip",
                    address=f"Local/{name}@cx-test-speaker",
                    codec="pcmu",
                    enabled=True,
                    created_at=runtime.clock.now(),
                )
            )
    staff = await make_principal(runtime, "cut-staff", "staff", township_ids=[place.township_id])
    approver = await make_principal(runtime, "cut-approver", "approver", township_ids=[place.township_id])
    disclosure = await approved_notice(
        runtime,
        staff,
        approver,
        township_id=place.township_id,
        kind="disclosure_finance",
        body="各位村民请注意，本月村集体收入和支出明细如下，请大家认真收听。" * 4,
    )
    dispatcher = runtime.broadcasting.dispatcher
    await dispatcher.request(notice_id=disclosure.id, zone_ids=[zone], origin="manual", requested_by=None)
    rows = await wait_for_rows(runtime, lambda rows: rows and rows[0].state == RUN_PLAYING, timeout=60)
    await asyncio.sleep(4)  # the speakers have answered and are hearing it
    alert = await runtime.broadcasting.notices.create_emergency(
        admin, title="森林草原防火紧急通知", body="严禁一切野外用火。", township_id=place.township_id
    )
    await dispatcher.request(notice_id=alert.id, zone_ids=[zone], origin="emergency", requested_by=None)
    rows = await wait_for_rows(
        runtime, lambda rows: any(r.kind == "emergency" and r.state not in (1, 2) for r in rows), timeout=120
    )
    cut = next(row for row in rows if row.kind == "disclosure_finance" and row.attempt == 0)
    emergency = next(row for row in rows if row.kind == "emergency")
    assert cut.state == RUN_INTERRUPTED and cut.interrupted_by == emergency.id
    # Hung up on every speaker: both had answered, so both are recorded as interrupted, not failed.
    assert [speaker.state for speaker in await speaker_rows(runtime, cut.id)] == [RUN_INTERRUPTED] * 2
    assert emergency.state == RUN_SUCCESS, emergency.error
    assert [speaker.state for speaker in await speaker_rows(runtime, emergency.id)] == [RUN_SUCCESS] * 2
    assert cut.ended_at is not None and emergency.started_at is not None and cut.ended_at <= emergency.started_at
    # What the first speaker recorded of the cut page: a few seconds, far from the whole item.
    spool = hotline.telephony.paths.spool.host
    recordings = await asyncio.to_thread(oldest_first, Path(spool.with_name(spool.name + "-test")), "page_spk5_*.wav")
    assert len(recordings) >= 2  # the cut page, then the emergency
    heard = (await asyncio.to_thread(ffprobe, recordings[0])).duration_s
    assert 1.0 < heard < float(disclosure.audio_duration_s or 0) - 5, (heard, disclosure.audio_duration_s)
