"""The command line, as staff use it: the dial test (拨测) through the real Asterisk, a case with its
recordings, the sandbox's status, and the configuration for a site's own Asterisk."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hotline.asterisk import instance_paths
from tests.hotline.wavs import write_wav
from tests.support.asterisk import PHONECAST_DID, REPOSITORY, Hotline, SandboxInstance, free_port
from tests.support.cli import environment

pytestmark = pytest.mark.timeout(600)


def cunxiang(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # The code of this tree (not whatever the installed entry point points at).
    return subprocess.run(
        [sys.executable, "-c", "from cli.main import main; main()", *args],
        cwd=REPOSITORY,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def env(tmp_path: Path, asterisk_instance: SandboxInstance, media: object) -> dict[str, str]:
    values = {
        "CUNXIANG_ASTERISK": "sandbox",
        "CUNXIANG_SANDBOX_ROOT": str(asterisk_instance.root),
        "CUNXIANG_SANDBOX_INSTANCE": asterisk_instance.name,
        "CUNXIANG_SANDBOX_SIP_PORT": str(asterisk_instance.sip_port),
        "CUNXIANG_SANDBOX_SOFTPHONE_PASSWORD": "test-softphone",
        "CUNXIANG_AMI_PORT": str(asterisk_instance.ami_port),
        "CUNXIANG_AMI_SECRET": asterisk_instance.ami_secret,
        "CUNXIANG_FASTAGI_PORT": str(asterisk_instance.fastagi_port),
        "CUNXIANG_TTS_ENGINES": "espeak",
        "CUNXIANG_TTS_ESPEAK_SPEED_WPM": "400",
    }
    for name, value in asterisk_instance.settings_values()["ivr"].model_dump().items():
        values[f"CUNXIANG_IVR_{name.upper()}"] = str(value)
    env = environment(tmp_path / "data", **values)
    done = cunxiang(["init", "--admin-username", "admin"], env)
    assert done.returncode == 0, done.stderr
    return env


def test_the_dial_test_prints_the_case_its_call_made_and_cases_show_prints_it_with_its_recording(
    env: dict[str, str],
) -> None:
    done = cunxiang(["hotline", "dial-test", "--caller", "13500001234", "--keys", "1"], env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"] == "case"
    case = result["case"]
    assert result["villager"]["read_back"] == case["number"] and case["caller_number"] == "13500001234"
    assert case["test_call"] and len(case["recordings"]) == 1 and not case["recordings"][0]["empty"]

    shown = cunxiang(["cases", "show", case["number"], "--json"], env)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["number"] == case["number"]
    (recording,) = data["recordings"]
    assert Path(recording["file"]).is_file() and recording["kind"] == "message"
    missing = cunxiang(["cases", "show", "12345678"], env)
    assert missing.returncode == 1 and "no case numbered" in missing.stderr


def test_the_dial_test_calls_the_phone_broadcast_line_and_an_unregistered_number_hears_the_refusal(
    env: dict[str, str],
) -> None:
    # The real desk (server.py connects phonecast/'s) knows no cadre with this number: refused, politely.
    values = asterisk_settings_env()
    done = cunxiang(["hotline", "dial-test", "--line", "phonecast", "--pin", "246810", "--keys", "1,1"], env | values)
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["heard"] == ["pc_refusal"] and result["outcome"] is None
    assert result["villager"]["stages"] == ["refused"] and result["villager"]["pressed"] == []
    unset = cunxiang(["hotline", "dial-test", "--line", "phonecast"], env)
    assert unset.returncode != 0 and "phonecast_did" in unset.stderr


def asterisk_settings_env() -> dict[str, str]:
    """The phone-broadcast line's settings as the tests' dialplan has them (tests/support/asterisk.py)."""
    return {"CUNXIANG_HOTLINE_PHONECAST_DID": PHONECAST_DID, "CUNXIANG_HOTLINE_PHONECAST_MAX_RECORDING_S": "20"}


def test_the_dial_test_plays_a_given_recording_presses_the_given_keys_and_hangs_up_where_told(
    env: dict[str, str], tmp_path: Path
) -> None:
    audio = tmp_path / "complaint.wav"
    write_wav(audio, 3.0)
    done = cunxiang(
        [
            "hotline",
            "dial-test",
            "--audio",
            str(audio),
            "--keys",
            "3",
            "--hangup-at",
            "recording",
            "--caller",
            "13600002222",
        ],
        env,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    villager = result["villager"]
    assert villager["pressed"] == ["3"] and villager["spoke"] and villager["read_back"] is None
    assert result["outcome"] == "case"
    case = result["case"]
    assert case["sealed"] and case["category"] == "discipline" and case["caller_number"] == "13600002222"
    (recording,) = case["recordings"]
    assert not recording["empty"] and 2.5 <= recording["duration_s"] <= 5.0, recording


async def test_a_dial_test_beside_a_running_service_logs_only_its_own_call(
    hotline: Hotline, tmp_path: Path, database_url: str, asterisk_instance: SandboxInstance
) -> None:
    """The service's worker settles the dial test's call; the other calls on the line are none of its business."""
    env = asterisk_instance.environment(tmp_path / "data", database_url)
    dial_test = asyncio.ensure_future(
        asyncio.to_thread(cunxiang, ["hotline", "dial-test", "--keys", "1", "--hangup-at", "recording"], env)
    )
    others = []
    while not dial_test.done():  # villagers keep calling (and hanging up at the welcome) meanwhile
        others.append((await hotline.call(hangup_at="welcome", speak=False, caller="13900009999")).linkedid)
    done = await dial_test
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"] == "case" and result["call"]["settled_by"] in ("fastagi", "tracker")
    assert others and all(linkedid not in done.stderr for linkedid in others), done.stderr
    warnings = [line for line in done.stderr.splitlines() if " WARNING " in line]
    assert all("ami: standby -> down connecting" in line for line in warnings), warnings  # its link starting
    for linkedid in others:  # and the service settled them, as ever
        assert (await hotline.settled(linkedid))["outcome"] == "missed"


def test_a_caller_who_hangs_up_at_the_welcome_is_reported_as_a_missed_call(env: dict[str, str]) -> None:
    done = cunxiang(["hotline", "dial-test", "--hangup-at", "welcome"], env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"] == "missed" and result["missed_call"]["reason"] == "hung_up_at_welcome"


def test_asterisk_status_reports_the_running_instance(env: dict[str, str], asterisk_instance: SandboxInstance) -> None:
    done = cunxiang(["asterisk", "status"], env)
    assert done.returncode == 0 and done.stdout.startswith("running:"), (done.stdout, done.stderr)
    assert str(asterisk_instance.directory) in done.stdout


def test_the_configuration_for_a_sites_own_asterisk_can_be_rendered(tmp_path: Path) -> None:
    env = environment(
        tmp_path / "data",
        CUNXIANG_ASTERISK="external",
        CUNXIANG_AMI_SECRET="site-secret",
        CUNXIANG_FASTAGI_PUBLIC_HOST="10.0.0.5",
        CUNXIANG_HOTLINE_SPOOL_DIR=str(tmp_path / "spool"),
        CUNXIANG_HOTLINE_SPOOL_DIR_IN_ASTERISK="/var/spool/asterisk/cunxiang",
        CUNXIANG_HOTLINE_PROMPTS_DIR=str(tmp_path / "prompts"),
        CUNXIANG_HOTLINE_PROMPTS_DIR_IN_ASTERISK="/var/lib/asterisk/sounds/cunxiang",
    )
    out = tmp_path / "site-config"
    done = cunxiang(["asterisk", "render", "--out", str(out)], env)
    assert done.returncode == 0, done.stderr
    dialplan = (out / "extensions.conf").read_text()
    assert "agi://10.0.0.5:4573/message" in dialplan and "/var/spool/asterisk/cunxiang/cx_" in dialplan
    assert "secret = site-secret" in (out / "manager.conf").read_text()
    refused = cunxiang(["asterisk", "up"], env)
    assert refused.returncode == 1 and "does not run Asterisk itself" in refused.stderr


def test_asterisk_up_down_and_status_start_and_stop_an_instance_and_can_be_repeated(
    tmp_path: Path, asterisk_instance: SandboxInstance
) -> None:
    name = f"{asterisk_instance.name}-cli"
    env = environment(
        tmp_path / "data",
        CUNXIANG_ASTERISK="sandbox",
        CUNXIANG_SANDBOX_ROOT=str(asterisk_instance.root),
        CUNXIANG_SANDBOX_INSTANCE=name,
        CUNXIANG_SANDBOX_SIP_PORT=str(free_port(socket.SOCK_DGRAM)),
        CUNXIANG_AMI_PORT=str(free_port()),
        CUNXIANG_FASTAGI_PORT=str(free_port()),
    )
    directory = instance_paths(asterisk_instance.root, name)[0]
    try:
        for _ in range(2):  # up twice: the second finds it running and changes nothing
            up = cunxiang(["asterisk", "up"], env)
            assert up.returncode == 0, up.stderr
            assert "Asterisk sandbox running" in up.stdout and env["CUNXIANG_AMI_PORT"] in up.stdout
            status = cunxiang(["asterisk", "status"], env)
            assert status.returncode == 0 and status.stdout.startswith("running:"), (status.stdout, status.stderr)
        manager = (directory / "etc" / "manager.conf").read_text()
        assert f"port = {env['CUNXIANG_AMI_PORT']}" in manager and "bindaddr = 127.0.0.1" in manager
        for _ in range(2):  # down twice: stopping a stopped instance is not an error
            down = cunxiang(["asterisk", "down"], env)
            assert down.returncode == 0, down.stderr
            status = cunxiang(["asterisk", "status"], env)
            assert status.returncode == 3 and status.stdout.startswith("stopped"), (status.stdout, status.stderr)
    finally:
        cunxiang(["asterisk", "down"], env)
        if directory.exists() and directory.parent.name == "cunxiang":
            shutil.rmtree(directory, ignore_errors=True)
