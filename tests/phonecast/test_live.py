"""手机喊话 实时 on the desk and dispatcher side, with a fake of the hotline's conference rooms (LiveRooms).

The running worker's dispatcher holds the target's zones for the call: what comes meanwhile waits, a second live
call hears 该区域正在喊话, an emergency takes a zone back (the line is told through live_preempted) and a live call
never starts over one; the as-run rows say what each speaker heard; the 4G terminal, which cannot play live, gets
the call's recording afterwards. The legs are what the real rooms (live-call's, tested on Asterisk) are given.
Recordings are a second of tone: the live hold lasts as long as the test keeps it, not as long as any audio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from broadcast.asrun import AsRunFilter
from broadcast.dispatcher import LIVE_PREEMPTED
from broadcast.transports import LiveLeg, SpeakerResult, SpeakerTarget
from common.clock import Clock
from hotline.phonecast import LiveEnd, LiveStatus, SubmitStatus
from server import Runtime
from settings import PhonecastSettings, Settings
from storage.models import (
    LIVE_AFTER,
    LIVE_CALL,
    RUN_CANCELLED,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_PLAYING,
    RUN_SUCCESS,
    Broadcast,
    BroadcastZone,
    ZoneBroadcastSettings,
)
from tests.phonecast.helpers import audit_actions, make_cadre, record_of, tone_wav
from tests.support.broadcasting import broadcasting_settings, build_place, make_principal, speaker_rows, wait_for_rows

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # go_live waits at most 2 s for legs that never answer (the test of speakers that stay silent).
    return broadcasting_settings(
        tmp_path / "data",
        database_url,
        phonecast=PhonecastSettings(due_poll_s=0.2, start_wait_s=20, live_start_wait_s=2),
    )


class FakeRooms:
    """The hotline's rooms as the dispatcher sees them: every leg answers at once (but those told to fail), and
    stays in the room until ``stop``."""

    def __init__(self, clock: Clock, *, failing: Sequence[str] = (), silent: bool = False) -> None:
        self._clock = clock
        self._failing = set(failing)
        self._silent = silent  # no leg ever answers, nor says it failed (a SIP speaker ringing on)
        self.calls: list[tuple[str, list[LiveLeg]]] = []
        self.stopped: list[str] = []

    async def connect(
        self,
        room: str,
        legs: Sequence[LiveLeg],
        stop: asyncio.Event,
        *,
        on_leg: Callable[[LiveLeg, str | None], None] | None = None,
    ) -> list[SpeakerResult]:
        self.calls.append((room, list(legs)))
        answered: dict[LiveLeg, datetime] = {}
        for leg in legs:
            error = "无应答" if leg.address in self._failing else None
            if error is None:
                answered[leg] = self._clock.now()
            if self._silent:
                continue
            if on_leg is not None:
                on_leg(leg, error)
        await stop.wait()
        self.stopped.append(room)
        ended = self._clock.now()
        results = []
        for leg in legs:
            for speaker_id in leg.speaker_ids:
                target = SpeakerTarget(leg.kind, leg.address, speaker_id)
                if leg in answered and not self._silent:
                    results.append(SpeakerResult(target, RUN_SUCCESS, answered[leg], ended))
                else:
                    results.append(SpeakerResult(target, RUN_FAILED, error="无应答"))
        return results


async def broadcast_of(runtime: Runtime, broadcast_id: int) -> Broadcast:
    async with runtime.sessions() as session:
        row = await session.get(Broadcast, broadcast_id)
        assert row is not None
        return row


async def test_a_live_call_holds_its_zones_queued_items_wait_a_second_live_is_busy_and_4g_gets_the_recording(
    runtime: Runtime, server: TestServer, tmp_path: Path
) -> None:
    rooms = FakeRooms(runtime.clock, failing=["PJSIP/spk-dead"])
    runtime.broadcasting.dispatcher.use_live_rooms(rooms)
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    place = await build_place(
        runtime,
        admin,
        "甲乡",
        [
            [("rtp", "127.0.0.1:40100"), ("sip", "spk1"), ("sip", "spk-dead"), ("http", "4g-0001")],
            [("rtp", "127.0.0.1:40102"), ("rtp", "127.0.0.1:40104")],
        ],
    )
    # The second zone's RTP speakers listen to its multicast group: one leg reaches both.
    async with runtime.sessions.begin() as session:
        session.add(
            ZoneBroadcastSettings(
                zone_id=place.zone_ids[1], rtp_group="239.7.7.7:5006", rtp_ttl=2, updated_at=runtime.clock.now()
            )
        )
    first = await make_cadre(runtime, admin, "first", "13800001111", villages=[place.village_id])
    second = await make_cadre(runtime, admin, "second", "13800002222", villages=[place.village_id])
    desk = runtime.phonecast.desk
    village = (await desk.targets(first)).villages[0]

    started = await desk.go_live(first, "13800001111", village, call_id="call-1", room="cx-live-call-1")
    # Five live speakers targeted, four answered (one SIP speaker did not); the 4G terminal gets it after.
    assert (started.status, started.speakers, started.unanswered, started.after) == (LiveStatus.ON_AIR, 4, 1, 1)
    assert await desk.go_live(first, "13800001111", village, call_id="call-1", room="cx-live-call-1") == started
    legs = sorted((leg.kind, leg.address, len(leg.speaker_ids), leg.ttl) for _room, legs in rooms.calls for leg in legs)
    assert legs == [
        ("multicast", "239.7.7.7:5006", 2, 2),
        ("sip", "PJSIP/spk-dead", 1, None),
        ("sip", "PJSIP/spk1", 1, None),
        ("unicast", "127.0.0.1:40100", 1, None),
    ]
    assert {room for room, _legs in rooms.calls} == {"cx-live-call-1"}
    record = await record_of(runtime, started.record_id or 0)
    assert record.live and record.status == "started" and record.broadcast_id is not None
    live_broadcast = await broadcast_of(runtime, record.broadcast_id)
    assert live_broadcast.live_part == LIVE_CALL and live_broadcast.notice_id is None
    live_rows = [row for row in await wait_for_rows(runtime, bool) if row.broadcast_id == record.broadcast_id]
    assert [row.state for row in live_rows] == [RUN_PLAYING, RUN_PLAYING]
    # 播放中 from each leg's answer; the silent one failed at once; the 4G terminal is not in the live rows.
    first_zone = await speaker_rows(runtime, live_rows[0].id)
    assert sorted((row.transport, row.address, row.state) for row in first_zone) == [
        ("rtp", "127.0.0.1:40100", RUN_PLAYING),
        ("sip", "spk-dead", RUN_FAILED),
        ("sip", "spk1", RUN_PLAYING),
    ]

    # Meanwhile: a second cadre asking for live hears 该区域正在喊话 and records instead, which queues.
    busy = await desk.go_live(second, "13800002222", village, call_id="call-2", room="cx-live-call-2")
    assert (busy.status, busy.record_id is not None) == (LiveStatus.BUSY, True)
    assert (await record_of(runtime, busy.record_id or 0)).reason == "busy"
    queued = await desk.submit(second, "13800002222", village, tone_wav(tmp_path / "2.wav", 1.0), call_id="call-2")
    assert queued.status is SubmitStatus.QUEUED

    # The caller presses #: the zones are released, the rows closed as heard, the recording kept and queued for
    # the 4G terminal alone.
    await desk.live_ended("call-1", LiveEnd.CALLER, tone_wav(tmp_path / "live.wav", 1.0))
    await desk.live_ended("call-1", LiveEnd.CALLER, tone_wav(tmp_path / "again.wav", 1.0))  # nothing twice
    assert rooms.stopped == ["cx-live-call-1", "cx-live-call-1"]
    record = await record_of(runtime, started.record_id or 0)
    assert (record.status, record.ended_by, record.recording_file) == ("played", "caller", f"phone-{record.id}.wav")
    assert record.recording_s == pytest.approx(1.0, abs=0.1)
    assert (desk.recordings_dir / f"phone-{record.id}.wav").exists()
    async with runtime.sessions() as session:
        closed = (
            await session.scalars(select(BroadcastZone).where(BroadcastZone.broadcast_id == record.broadcast_id))
        ).all()
    assert [(row.state, row.attempt) for row in closed] == [(RUN_SUCCESS, 0), (RUN_SUCCESS, 0)]
    heard = await speaker_rows(runtime, closed[0].id)
    assert sorted((row.address, row.state, bool(row.played_s is not None)) for row in heard) == [
        ("127.0.0.1:40100", RUN_SUCCESS, True),
        ("spk-dead", RUN_FAILED, False),
        ("spk1", RUN_SUCCESS, True),
    ]
    assert record.after_broadcast_id is not None
    after = await broadcast_of(runtime, record.after_broadcast_id)
    assert after.live_part == LIVE_AFTER
    # The queued recording plays first (it waited), then the call's recording: to the 4G terminal only.
    assert after.zone_ids == [place.zone_ids[0]]  # the other zone has no speaker that could not hear it live
    after_rows = await wait_for_rows(
        runtime, lambda rows: any(r.broadcast_id == after.id and r.started_at for r in rows), timeout=60
    )
    after_zone = next(r for r in after_rows if r.broadcast_id == after.id and r.started_at)
    assert [row.transport for row in await speaker_rows(runtime, after_zone.id)] == ["http"]
    # The as-run log (播出记录) shows the live call like a recorded one: its title, each speaker's outcome.
    lines = await runtime.broadcasting.asrun.lines(admin, AsRunFilter(zone_id=place.zone_ids[0]))
    shown = [line.as_json(runtime.settings.zone) for line in lines]
    live_line = next(line for line in shown if line["broadcast_id"] == live_broadcast.id)
    assert live_line["title"] == "手机喊话（实时）：first 138****1111（甲乡一村）"
    assert sorted(s["state_label"] for s in live_line["speakers"]) == ["失败", "成功", "成功"]
    assert "phonecast.live_started" in await audit_actions(runtime)
    assert "phonecast.live_ended" in await audit_actions(runtime)


async def test_an_emergency_takes_the_zones_from_a_live_call_and_a_live_call_never_starts_over_one(
    runtime: Runtime, server: TestServer, tmp_path: Path
) -> None:
    rooms = FakeRooms(runtime.clock)
    dispatcher = runtime.broadcasting.dispatcher
    dispatcher.use_live_rooms(rooms)
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    # A sink plays the emergency in real time: it holds the zone while the second cadre asks, however loaded the
    # machine (a few sentences of speech); the test withdraws it then rather than waiting for its end.
    place = await build_place(runtime, admin, "甲乡", [[("rtp", "127.0.0.1:40110"), ("sink", "file:e")]])
    zone = place.zone_ids[0]
    first = await make_cadre(runtime, admin, "first", "13800001111", villages=[place.village_id])
    second = await make_cadre(runtime, admin, "second", "13800002222", villages=[place.village_id])
    chief = await make_principal(runtime, "chief", "leader", county_wide=True, can_emergency=True)
    notice = await runtime.broadcasting.notices.create_emergency(
        chief, title="森林草原防火紧急通知", body="严禁野外用火，发现火情立即报告。" * 6, township_id=None
    )
    desk = runtime.phonecast.desk
    village = (await desk.targets(first)).villages[0]
    preempted = desk.live_preempted("call-1")
    started = await desk.go_live(first, "13800001111", village, call_id="call-1", room="cx-live-call-1")
    assert (started.status, started.speakers, started.after) == (LiveStatus.ON_AIR, 1, 1)
    assert desk.live_preempted("call-1") is preempted and not preempted.is_set()
    # The caller speaks a moment before the emergency: a speaker cut in the very instant it joined heard nothing
    # (未开始（被抢占）), which is not what this test is about.
    await asyncio.sleep(0.3)

    emergency = await dispatcher.request(
        notice_id=notice.id, zone_ids=[zone], origin="emergency", requested_by=chief.user_id
    )
    async with asyncio.timeout(30):
        await preempted.wait()
    # The emergency holds the zone now: a live call does not start over it.
    refused = await desk.go_live(second, "13800002222", village, call_id="call-2", room="cx-live-call-2")
    assert refused.status is LiveStatus.EMERGENCY
    assert rooms.calls == [("cx-live-call-1", rooms.calls[0][1])]  # the second call's legs were never dialled
    await dispatcher.cancel(emergency, "测试结束")

    # The line ends the call and says why; the zone's live row says the emergency cut it, never to be replayed.
    await desk.live_ended("call-1", LiveEnd.EMERGENCY, tone_wav(tmp_path / "live.wav", 1.0))
    record = await record_of(runtime, started.record_id or 0)
    assert (record.status, record.ended_by) == ("played", "emergency")
    rows = await wait_for_rows(
        runtime, lambda rows: any(r.kind == "emergency" and r.state == RUN_CANCELLED for r in rows), timeout=60
    )
    live_rows = [row for row in rows if row.broadcast_id == record.broadcast_id]
    assert [(row.state, row.error, row.attempt) for row in live_rows] == [(RUN_INTERRUPTED, LIVE_PREEMPTED, 0)]
    [heard] = await speaker_rows(runtime, live_rows[0].id)
    assert (heard.transport, heard.state, heard.error) == ("rtp", RUN_INTERRUPTED, LIVE_PREEMPTED)
    # The sound card (it cannot play live) gets the recording after the emergency.
    assert record.after_broadcast_id is not None
    await wait_for_rows(
        runtime,
        lambda rows: any(r.broadcast_id == record.after_broadcast_id and r.state == RUN_SUCCESS for r in rows),
        timeout=60,
    )


async def test_a_live_call_cut_by_the_services_stop_is_not_replayed(
    runtime: Runtime, server: TestServer, tmp_path: Path
) -> None:
    rooms = FakeRooms(runtime.clock)
    dispatcher = runtime.broadcasting.dispatcher
    dispatcher.use_live_rooms(rooms)
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "甲乡", [[("rtp", "127.0.0.1:40120")]])
    cadre = await make_cadre(runtime, admin, "first", "13800001111", villages=[place.village_id])
    desk = runtime.phonecast.desk
    village = (await desk.targets(cadre)).villages[0]
    started = await desk.go_live(cadre, "13800001111", village, call_id="call-1", room="cx-live-call-1")
    assert started.status is LiveStatus.ON_AIR
    await dispatcher.stop()
    await dispatcher.start()
    assert await dispatcher.replay_pending() == 0
    rows = await wait_for_rows(runtime, lambda rows: len(rows) >= 1 and all(r.state != RUN_PLAYING for r in rows))
    assert [(row.state, row.replay_of is None) for row in rows] == [(RUN_INTERRUPTED, True)]
    # The line's end still closes the record, once.
    await desk.live_ended("call-1", LiveEnd.FAILED, None)
    record = await record_of(runtime, started.record_id or 0)
    assert (record.ended_by, record.recording_file) == ("failed", None)
    assert RUN_CANCELLED not in [row.state for row in rows]


async def test_a_live_call_nobody_answers_is_refused_and_one_hung_up_while_being_reached_keeps_no_zone(
    runtime: Runtime, server: TestServer, tmp_path: Path
) -> None:
    dispatcher = runtime.broadcasting.dispatcher
    dispatcher.use_live_rooms(FakeRooms(runtime.clock, silent=True))
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "甲乡", [[("sip", "spk1")]])
    cadre = await make_cadre(runtime, admin, "first", "13800001111", villages=[place.village_id])
    desk = runtime.phonecast.desk
    village = (await desk.targets(cadre)).villages[0]

    refused = await desk.go_live(cadre, "13800001111", village, call_id="call-1", room="cx-live-call-1")
    assert (refused.status, refused.reason) == (LiveStatus.REFUSED, "failed")
    async with asyncio.timeout(10):
        await dispatcher.wait_until(dispatcher.idle)

    # The caller hangs up while the speakers are still being reached: the hold goes with the call.
    going = asyncio.create_task(desk.go_live(cadre, "13800001111", village, call_id="call-2", room="cx-live-call-2"))
    await wait_for_rows(runtime, lambda rows: any(r.state == RUN_PLAYING for r in rows))
    await desk.live_ended("call-2", LiveEnd.CALLER, tone_wav(tmp_path / "live.wav", 0.5))
    await going
    async with asyncio.timeout(10):
        await dispatcher.wait_until(dispatcher.idle)
    rows = await wait_for_rows(runtime, lambda rows: all(r.state != RUN_PLAYING for r in rows))
    assert len(rows) == 2
    assert (await record_of(runtime, refused.record_id or 0)).status == "refused"
