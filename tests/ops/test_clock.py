"""The clock's synchronisation, as the system reports it, in /healthz and the admins' 待办.

The parsers are checked against output captured from chrony 4 and systemd 252; the service tests put a
small program in place of ``chronyc``/``timedatectl`` (the settings name the programs) that prints such
output, since a test cannot unsynchronise the machine's clock.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from common.clock import SystemClock
from ops.clock import ClockWatch, parse_chronyc_tracking, parse_timedatectl
from settings import OpsSettings, Settings
from tests.conftest import make_settings
from tests.support.http import ApiClient

CHRONY_SYNCED = (
    "C0A80001,192.168.0.1,3,1764915000.123456789,0.000012345,0.000023456,0.000034567,"
    "-12.345,0.001,0.012,0.023456,0.001234,64.5,Normal\n"
)
CHRONY_FAR_OFF = CHRONY_SYNCED.replace("0.000012345", "-2.500000000")
CHRONY_UNSYNCED = (
    "00000000,,0,0.000000000,0.000000000,0.000000000,0.000000000,0.000,0.000,0.000,"
    "1.000000000,1.000000000,0.0,Not synchronised\n"
)
TIMEDATECTL_UNSYNCED = """Timezone=Asia/Shanghai
LocalRTC=no
CanNTP=yes
NTP=yes
NTPSynchronized=no
TimeUSec=Sat 2026-12-05 14:30:00 CST
RTCTimeUSec=Sat 2026-12-05 14:30:00 CST
"""


def test_chronyc_tracking_gives_the_offset_and_whether_it_is_synchronised() -> None:
    synced = parse_chronyc_tracking(CHRONY_SYNCED)
    assert synced is not None and synced.synchronized and synced.offset_s == pytest.approx(0.000012345)
    far = parse_chronyc_tracking(CHRONY_FAR_OFF)
    assert far is not None and far.offset_s == pytest.approx(-2.5)
    unsynced = parse_chronyc_tracking(CHRONY_UNSYNCED)
    assert unsynced is not None and unsynced.synchronized is False
    assert parse_chronyc_tracking("506 Cannot talk to daemon\n") is None


def test_timedatectl_show_gives_whether_it_is_synchronised() -> None:
    state = parse_timedatectl(TIMEDATECTL_UNSYNCED)
    assert state is not None and state.synchronized is False and state.offset_s is None
    assert parse_timedatectl(TIMEDATECTL_UNSYNCED.replace("NTPSynchronized=no", "NTPSynchronized=yes"))
    assert parse_timedatectl("System has not been booted with systemd as init system (PID 1).\n") is None


def program(directory: Path, name: str, output: str, *, exit_code: int = 0, hang: bool = False) -> str:
    """A stand-in for a system program: prints ``output`` (or hangs), exits with ``exit_code``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    body = "exec sleep 60\n" if hang else f"cat <<'END'\n{output}END\nexit {exit_code}\n"
    path.write_text(f"#!/bin/sh\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def clock_outputs() -> dict[str, str]:
    """What the stand-in programs print, by name; a program not named here does not exist."""
    return {}


@pytest.fixture
def settings(tmp_path: Path, database_url: str, clock_outputs: dict[str, str]) -> Settings:
    programs = tmp_path / "programs"
    paths = {
        name: program(programs, name, clock_outputs[name]) if name in clock_outputs else str(programs / "missing")
        for name in ("chronyc", "timedatectl")
    }
    return make_settings(tmp_path / "data", database_url, ops=OpsSettings(**paths))


async def test_with_no_synchronisation_service_the_clock_is_unknown_not_synchronised(admin: ApiClient) -> None:
    clock = (await admin.get_json("/healthz"))["components"]["clock"]
    assert clock["status"] == "disabled" and clock["synchronized"] is None
    assert "时钟" not in await (await admin.get("/")).text()


@pytest.mark.parametrize("clock_outputs", [{"timedatectl": TIMEDATECTL_UNSYNCED}])
async def test_an_unsynchronised_clock_is_degraded_in_healthz_and_warned_in_the_admins_todo(admin: ApiClient) -> None:
    clock = (await admin.get_json("/healthz"))["components"]["clock"]
    assert clock["status"] == "degraded" and clock["synchronized"] is False and clock["source"] == "timedatectl"
    home = await (await admin.get("/")).text()
    assert "时钟未同步" in home and "没有与时间服务器同步" in home


@pytest.mark.parametrize("clock_outputs", [{"chronyc": CHRONY_FAR_OFF}])
async def test_a_clock_far_off_its_servers_is_warned_with_the_offset(admin: ApiClient) -> None:
    clock = (await admin.get_json("/healthz"))["components"]["clock"]
    assert clock["status"] == "degraded" and clock["offset_ms"] == -2500.0 and clock["source"] == "chronyc"
    assert "相差 2500 毫秒" in await (await admin.get("/")).text()


@pytest.mark.parametrize("clock_outputs", [{"chronyc": CHRONY_UNSYNCED, "timedatectl": TIMEDATECTL_UNSYNCED}])
async def test_chrony_is_asked_first_and_its_unsynchronised_answer_is_believed(admin: ApiClient) -> None:
    clock = (await admin.get_json("/healthz"))["components"]["clock"]
    assert clock["status"] == "degraded" and clock["source"] == "chronyc" and clock["synchronized"] is False


async def test_a_hung_program_is_killed_after_its_time_limit_and_the_state_is_unknown(tmp_path: Path) -> None:
    watch = ClockWatch(
        timedatectl=program(tmp_path, "timedatectl", "", hang=True),
        chronyc=program(tmp_path, "chronyc", "", hang=True),
        max_offset_s=0.5,
        interval_s=60,
        command_timeout_s=0.3,
        clock=SystemClock(),
    )
    state = await watch.check()
    assert state.synchronized is None and watch.health.status == "disabled"
