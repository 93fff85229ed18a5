"""Failover on PostgreSQL: two `cunxiang serve` processes on one database; the active one is killed (SIGKILL)
mid-broadcast; the standby takes over by itself and replays the cut item once, whole — counted at an RTP
receiver on loopback. The measured takeover times are printed (docs/operations.md states them).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from storage.models import RUN_INTERRUPTED, RUN_PLAYING, RUN_SUCCESS
from tests.broadcast.test_restarts import LONG, active, prepare, request, wait
from tests.support.cli import serving
from tests.support.deployment import Deployment
from tests.support.receivers import INTO_SPEECH, RtpReceiver

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ELECTION_INTERVAL_S = 1.0


def standby(health: dict[str, object]) -> bool:
    components = health["components"]
    assert isinstance(components, dict)
    return bool(components["worker"]["role"] == "standby")


@pytest.mark.parametrize("db_kind", ["postgresql"])
def test_the_standby_takes_over_when_the_active_serve_is_killed_and_replays_the_cut_item_once(
    tmp_path: Path, database_url: str, db_kind: str
) -> None:
    deployment = Deployment(
        tmp_path / "data",
        database_url,
        extra_environment={"CUNXIANG_WORKER_ELECTION_INTERVAL_S": str(ELECTION_INTERVAL_S)},
    )
    deployment.init()
    with RtpReceiver() as speaker:
        zone, notices = prepare(deployment, speaker.address, {"会议通知": LONG})
        meeting = notices["会议通知"]
        with serving(deployment.env) as first:
            first.wait_until(active)
            with serving(deployment.env) as second:
                second.wait_until(standby)
                request(deployment, meeting, zone)
                wait(lambda: any(row.state == RUN_PLAYING for row in deployment.zone_rows()))
                speaker.wait_for(lambda receiver: len(receiver.packets) >= INTO_SPEECH)
                killed_at = time.monotonic()
                os.killpg(first.process.pid, signal.SIGKILL)
                first.process.wait(timeout=30)
                second.wait_until(active, timeout=60)
                took_over_s = time.monotonic() - killed_at
                speaker.wait_for(lambda receiver: receiver.plays(deployment.payloads(meeting)) == ["cut", "full"])
                (_cut, replayed) = speaker.runs_of(deployment.payloads(meeting))
                replay_began_s = (
                    replayed.first_arrival_s - speaker.runs_of(deployment.payloads(meeting))[0].last_arrival_s
                )
                wait(deployment.idle)
                print(
                    f"failover on PostgreSQL (election every {ELECTION_INTERVAL_S:g} s): standby active "
                    f"{took_over_s:.2f} s after the kill; the cut item began again {replay_began_s:.2f} s after "
                    "its last packet"
                )
        # Counted at the speaker: cut once, then once whole from its start; nothing else.
        assert speaker.plays(deployment.payloads(meeting)) == ["cut", "full"]
        assert len(speaker.runs()) == 2
    rows = deployment.zone_rows()
    assert len(rows) == 2
    cut, replay = rows
    assert cut.state == RUN_INTERRUPTED and (cut.error or "").startswith("服务意外停止")
    assert (replay.replay_of, replay.state) == (cut.id, RUN_SUCCESS)
