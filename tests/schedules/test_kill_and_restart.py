"""A real `cunxiang serve` killed (SIGKILL) mid-broadcast, then started again within the grace: the slot it cut is
replayed once from its start (重播), the slot that passed while it was down is caught up once, nothing plays twice —
counted at an RTP receiver, the loudspeaker's side, as well as in the as-run log.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schedules.service import ScheduleInput
from server import Runtime
from storage.models import RUN_INTERRUPTED, RUN_SUCCESS
from tests.support.broadcasting import principal
from tests.support.cli import serving
from tests.support.deployment import Deployment
from tests.support.receivers import INTO_SPEECH, RtpReceiver

pytestmark = pytest.mark.slow

LONG = "各位村民请注意，今天下午三点在村委会召开村民代表会议，请准时参加。"
SHORT = "请大家相互转告。"


def _wait(predicate: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"not reached within {seconds} s")


def _schedule(deployment: Deployment, notice_id: int, zone: int, at: datetime) -> int:
    async def job(runtime: Runtime) -> int:
        staff = await principal(runtime, "fault-staff")
        schedule = await runtime.schedules.service.create(
            staff, ScheduleInput(notice_id=notice_id, kind="once", once_at=at, targets=(("zone", zone),))
        )
        return schedule.id

    return deployment.call(job)


def _active(health: dict[str, object]) -> bool:
    components = health["components"]
    assert isinstance(components, dict)
    return bool(components["worker"]["role"] == "active" and components["scheduler"]["status"] == "ok")


def test_a_worker_killed_mid_broadcast_replays_the_cut_slot_once_catches_up_the_missed_one_and_nothing_twice(
    tmp_path: Path, database_url: str
) -> None:
    from tests.broadcast.test_restarts import prepare

    deployment = Deployment(tmp_path / "data", database_url)
    deployment.init()
    with RtpReceiver() as speaker:
        zone, notices = prepare(deployment, speaker.address, {"会议通知": LONG, "转告": SHORT})
        meeting, reminder = notices["会议通知"], notices["转告"]
        first_slot = _schedule(deployment, meeting.id, zone, datetime.now(UTC) + timedelta(seconds=4))
        with serving(deployment.env) as service:
            service.wait_until(_active)
            speaker.wait_for(lambda receiver: len(receiver.packets) >= INTO_SPEECH, 60)
            os.killpg(service.process.pid, signal.SIGKILL)  # mid-broadcast, no clean shutdown
            service.process.wait()
        # Down while the second slot passes; back well within the 10-minute grace.
        second_at = datetime.now(UTC) + timedelta(seconds=1)
        second_slot = _schedule(deployment, reminder.id, zone, second_at)
        _wait(lambda: datetime.now(UTC) > second_at + timedelta(seconds=0.5), 10)
        assert speaker.plays(deployment.payloads(meeting)) == ["cut"]
        with serving(deployment.env) as service:
            service.wait_until(_active)
            speaker.wait_for(lambda receiver: receiver.plays(deployment.payloads(meeting)) == ["cut", "full"], 60)
            _wait(deployment.idle, 30)
        # Counted at the loudspeaker: the cut slot once more, whole; the missed one once; nothing twice.
        assert speaker.plays(deployment.payloads(meeting)) == ["cut", "full"]
        assert speaker.plays(deployment.payloads(reminder)) == ["full"]

        rows = deployment.zone_rows()
        cut, replayed = deployment.zone_rows(schedule_id=first_slot)
        assert (cut.attempt, cut.state, cut.replay_pending) == (0, RUN_INTERRUPTED, False)
        assert cut.error == "服务意外停止（进程退出），播出中断"
        assert (replayed.attempt, replayed.replay_of, replayed.state) == (1, cut.id, RUN_SUCCESS)
        assert replayed.occurrence_at == cut.occurrence_at
        (caught_up,) = deployment.zone_rows(schedule_id=second_slot)
        assert (caught_up.attempt, caught_up.state, caught_up.replay_of) == (0, RUN_SUCCESS, None)
        assert len(rows) == 3
        # A third start finds every slot handled and every replay decided: it adds no row and plays nothing.
        packets = len(speaker.packets)
        with serving(deployment.env) as service:
            service.wait_until(_active)
            _wait(deployment.idle, 30)
        assert len(deployment.zone_rows()) == 3 and len(speaker.packets) == packets
