"""Real `cunxiang serve` processes killed (SIGKILL), stopped (SIGTERM) and started twice at once, while RTP
receivers on loopback count what each loudspeaker got: an item is never lost and never played twice.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schedules.service import ScheduleInput
from server import Runtime
from storage.models import (
    RUN_INTERRUPTED,
    RUN_PLAYING,
    RUN_STOPPED_BEFORE_START,
    RUN_SUCCESS,
    RUN_WAITING,
    Notice,
)
from tests.support.broadcasting import approved_notice, build_place, make_principal, principal
from tests.support.cli import ServiceProcess, free_port, serving, start_service, stop_service
from tests.support.deployment import Deployment
from tests.support.receivers import INTO_SPEECH, RtpReceiver

pytestmark = pytest.mark.slow

LONG = "各位村民请注意，今天下午三点在村委会召开村民代表会议，请准时参加。"
SHORT = "请大家相互转告。"


def active(health: dict[str, object]) -> bool:
    components = health["components"]
    assert isinstance(components, dict)
    return bool(components["worker"]["role"] == "active" and components["dispatcher"]["status"] == "ok")


def wait(predicate: object, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"not reached within {seconds} s")


def prepare(deployment: Deployment, speaker: str, bodies: dict[str, str]) -> tuple[int, dict[str, Notice]]:
    """One zone with one RTP speaker; an approved notice per body. Returns the zone and the notices."""

    async def job(runtime: Runtime) -> tuple[int, dict[str, Notice]]:
        admin = await make_principal(runtime, "fault-admin", "admin", county_wide=True)
        place = await build_place(runtime, admin, "甲乡", [[("rtp", speaker)]])
        staff = await make_principal(runtime, "fault-staff", "staff", township_ids=[place.township_id])
        approver = await make_principal(runtime, "fault-approver", "approver", township_ids=[place.township_id])
        notices = {
            title: await approved_notice(
                runtime, staff, approver, township_id=place.township_id, title=title, body=body
            )
            for title, body in bodies.items()
        }
        return place.zone_ids[0], notices

    return deployment.call(job)


def request(deployment: Deployment, notice: Notice, zone: int) -> None:
    """立即播出 from another process: a request row the active worker takes."""

    async def job(runtime: Runtime) -> None:
        await runtime.broadcasting.dispatcher.request(
            notice_id=notice.id, zone_ids=[zone], origin="manual", requested_by=None
        )

    deployment.call(job)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_an_item_cut_and_one_queued_when_the_service_dies_or_stops_each_play_once_more_whole_after_restart(
    tmp_path: Path, database_url: str, how: str
) -> None:
    deployment = Deployment(tmp_path / "data", database_url)
    deployment.init()
    with RtpReceiver() as speaker:
        zone, notices = prepare(deployment, speaker.address, {"会议通知": LONG, "转告": SHORT})
        meeting, reminder = notices["会议通知"], notices["转告"]
        with serving(deployment.env) as service:
            service.wait_until(active)
            request(deployment, meeting, zone)
            wait(lambda: any(row.state == RUN_PLAYING for row in deployment.zone_rows()))
            request(deployment, reminder, zone)
            wait(lambda: any(row.state == RUN_WAITING for row in deployment.zone_rows()))
            speaker.wait_for(lambda receiver: len(receiver.packets) >= INTO_SPEECH)
            os.killpg(service.process.pid, getattr(signal, how))
            service.process.wait(timeout=30)
        cut = speaker.summary()
        rows = deployment.zone_rows()
        if how == "SIGTERM":  # a clean stop records what it cut and what it left queued
            assert [(row.state, row.replay_pending) for row in rows] == [
                (RUN_INTERRUPTED, True),
                (RUN_STOPPED_BEFORE_START, True),
            ]
        else:  # a killed process records nothing: its rows are still open
            assert [row.state for row in rows] == [RUN_PLAYING, RUN_WAITING]
        assert speaker.summary() == cut  # nothing plays while it is down

        with serving(deployment.env) as service:  # back within the grace (10 minutes)
            service.wait_until(active)
            speaker.wait_for(lambda receiver: receiver.plays(deployment.payloads(reminder)) == ["full"])
            wait(deployment.idle)
        # Counted at the speaker: the meeting cut once, then once whole from its start; the reminder once.
        assert speaker.plays(deployment.payloads(meeting)) == ["cut", "full"]
        assert speaker.plays(deployment.payloads(reminder)) == ["full"]
        (_cut, replayed_meeting) = speaker.runs_of(deployment.payloads(meeting))
        (replayed_reminder,) = speaker.runs_of(deployment.payloads(reminder))
        assert replayed_meeting.last_arrival_s <= replayed_reminder.first_arrival_s  # in their order

    rows = deployment.zone_rows()
    first_meeting, first_reminder = rows[:2]
    assert first_meeting.state == RUN_INTERRUPTED and first_reminder.state == RUN_STOPPED_BEFORE_START
    reason = "服务停止" if how == "SIGTERM" else "服务意外停止"
    assert first_meeting.error is not None and first_meeting.error.startswith(reason)
    replays = {row.replay_of: row for row in rows[2:]}
    assert set(replays) == {first_meeting.id, first_reminder.id} and len(rows) == 4
    assert all(row.state == RUN_SUCCESS for row in replays.values())
    # The as-run log says what the first speaker row got before the cut.
    (cut_speaker,) = deployment.speaker_rows(first_meeting.id)
    if how == "SIGTERM":
        assert cut_speaker.packets_sent == len(speaker.runs_of(deployment.payloads(meeting))[0].packets)
    # A third start finds nothing to replay and plays nothing.
    with RtpReceiver() as later:
        with serving(deployment.env) as service:
            service.wait_until(active)
            wait(deployment.idle)
        assert later.packets == []
    assert len(deployment.zone_rows()) == 4


def test_two_serves_started_at_once_on_one_port_after_a_crash_play_the_due_slot_exactly_once(
    tmp_path: Path, database_url: str
) -> None:
    deployment = Deployment(tmp_path / "data", database_url)
    deployment.init()
    with RtpReceiver() as speaker:
        zone, notices = prepare(deployment, speaker.address, {"开会": SHORT})
        notice = notices["开会"]
        # The service runs, and dies (SIGKILL).
        with serving(deployment.env) as first:
            first.wait_until(active)
            os.killpg(first.process.pid, signal.SIGKILL)
            first.process.wait()
        slot = datetime.now(UTC) + timedelta(seconds=1)

        async def add_schedule(runtime: Runtime) -> None:
            staff = await principal(runtime, "fault-staff")
            await runtime.schedules.service.create(
                staff, ScheduleInput(notice_id=notice.id, kind="once", once_at=slot, targets=(("zone", zone),))
            )

        deployment.call(add_schedule)
        wait(lambda: datetime.now(UTC) > slot + timedelta(seconds=0.5), 15)
        # Now it is due: systemd restarts the service while an admin starts it by hand, on the same port.
        port = free_port()
        both: list[ServiceProcess] = [start_service(deployment.env, port), start_service(deployment.env, port)]
        try:
            wait(lambda: any(service.process.poll() is not None for service in both), 60)
            (loser,) = [service for service in both if service.process.poll() is not None]
            (winner,) = [service for service in both if service.process.poll() is None]
            assert loser.process.returncode != 0
            output = loser.process.stdout.read() if loser.process.stdout else ""
            assert "cannot listen" in output, output
            winner.wait_until(active)
            speaker.wait_for(lambda receiver: "full" in receiver.plays(deployment.payloads(notice)))
            wait(deployment.idle)
        finally:
            for service in both:
                stop_service(service)
        # Counted at the speaker: played exactly once, whole.
        assert speaker.plays(deployment.payloads(notice)) == ["full"]
    rows = deployment.zone_rows()
    assert [(row.attempt, row.state, row.replay_of) for row in rows] == [(0, RUN_SUCCESS, None)]
