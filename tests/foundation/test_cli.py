"""The command line, run as a real process: help, init, demo, serve and its start-up errors."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.support.cli import environment, free_port, run, serving

# Each test runs `cunxiang` as a process (a second or two of start-up each).
pytestmark = pytest.mark.slow


def test_help_explains_each_command(tmp_path: Path) -> None:
    result = run(["--help"], environment(tmp_path / "data"))
    assert result.returncode == 0
    for command in ("serve", "init", "demo"):
        assert command in result.stdout
    serve_help = run(["serve", "--help"], environment(tmp_path / "data"))
    assert "--host" in serve_help.stdout and "--port" in serve_help.stdout


def test_init_creates_the_database_and_one_admin_and_is_safe_to_repeat(tmp_path: Path) -> None:
    env = environment(tmp_path / "data")
    first = run(["init"], env)
    assert first.returncode == 0, first.stderr
    assert "created admin 'admin' with password: " in first.stdout
    password = first.stdout.split("with password: ", 1)[1].split()[0]
    assert len(password) >= 12
    assert (tmp_path / "data" / "cunxiang.db").exists()
    key = tmp_path / "data" / "session.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    second = run(["init"], env)
    assert second.returncode == 0
    assert "an active admin exists already" in second.stdout
    with serving(env) as service:
        service.wait_until(lambda health: health["components"]["database"]["status"] == "ok")
        import urllib.request

        request = urllib.request.Request(
            service.url + "/api/v1/session",
            data=f'{{"username": "admin", "password": "{password}"}}'.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200


def test_init_takes_the_admin_password_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("A-chosen-password-77\n", encoding="utf-8")
    result = run(
        ["init", "--admin-password-file", str(secret), "--admin-username", "chief"], environment(tmp_path / "d")
    )
    assert result.returncode == 0, result.stderr
    assert "created admin 'chief' with the password from" in result.stdout
    assert "A-chosen-password-77" not in result.stdout


def test_demo_loads_a_county_once_and_keeps_accounts(tmp_path: Path) -> None:
    env = environment(tmp_path / "data")
    assert run(["init"], env).returncode == 0
    first = run(["demo"], env)
    assert first.returncode == 0, first.stderr
    logins = tmp_path / "data" / "demo-logins.txt"
    assert stat.S_IMODE(logins.stat().st_mode) == 0o600
    content = logins.read_text(encoding="utf-8")
    for role in ("admin", "staff", "approver", "operator", "inspector", "leader"):
        assert f"demo.{role}\t" in content
    second = run(["demo"], env)
    assert second.returncode == 0
    assert "already present" in second.stdout
    assert logins.read_text(encoding="utf-8") == content

    import sqlite3

    database = sqlite3.connect(tmp_path / "data" / "cunxiang.db")
    townships = database.execute("SELECT count(*) FROM townships").fetchone()[0]
    villages = database.execute("SELECT count(*) FROM villages").fetchone()[0]
    transports = {row[0] for row in database.execute("SELECT DISTINCT transport FROM speakers")}
    case_states = {row[0] for row in database.execute("SELECT DISTINCT status FROM cases")}
    sealed = database.execute("SELECT category, channel FROM cases WHERE sealed").fetchall()
    histories = database.execute("SELECT count(DISTINCT case_id) FROM case_events").fetchone()[0]
    case_count = database.execute("SELECT count(*) FROM cases").fetchone()[0]
    database.close()
    assert townships == 9
    assert 95 <= villages <= 110
    assert transports == {"sip", "rtp", "http", "sink"}
    # The ledger is not empty: cases in each state, worked through the workflow (each has its history),
    # one of them a sealed report, and the second run added none.
    assert {"new", "rejected", "in_progress", "resolved", "followed_up", "closed"} <= case_states
    assert sealed == [("discipline", "letter")]
    assert histories == case_count and "cases already present" in second.stdout


def test_serve_without_init_says_what_to_do(tmp_path: Path) -> None:
    port = str(free_port())
    result = run(["serve", "--port", port], environment(tmp_path / "data"))
    assert result.returncode == 1
    assert result.stderr.strip() == "cunxiang: the database is empty: run `cunxiang init` first"


def test_an_unreachable_database_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    env = environment(
        tmp_path / "data", CUNXIANG_DATABASE_URL=f"postgresql+asyncpg://nobody@/cx?host={tmp_path}/nosuch"
    )
    env["CUNXIANG_DATABASE_CONNECT_TIMEOUT_S"] = "3"
    for command in (["serve", "--port", str(free_port())], ["init"]):
        result = run(command, env)
        assert result.returncode == 1, command
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("cunxiang: cannot connect to the database at postgresql+asyncpg://nobody@/cx")
        assert "Traceback" not in result.stderr


def test_a_bad_setting_stops_start_up_with_exit_2(tmp_path: Path) -> None:
    result = run(["serve"], environment(tmp_path / "data", CUNXIANG_SERVER_PORT="eighty"))
    assert result.returncode == 2
    assert result.stderr.startswith("cunxiang: bad setting CUNXIANG_SERVER_PORT (server.port)")


@pytest.mark.parametrize("busy", [True])
def test_a_port_in_use_is_reported_plainly(tmp_path: Path, busy: bool) -> None:
    import socket

    env = environment(tmp_path / "data")
    assert run(["init"], env).returncode == 0
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run(["serve", "--port", str(port)], env)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
