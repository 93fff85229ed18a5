"""Every command of the command line fails with one clear line, never a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.cli import environment, run

pytestmark = pytest.mark.slow

# Every command, as someone would first try it, on a data folder that does not exist yet (before `init`).
COMMANDS = [
    ["demo"],
    ["serve", "--port", "1"],
    ["broadcast", "test", "--speaker", "1"],
    ["broadcast", "test", "--rtp", "8.8.8.8:5004"],
    ["broadcast", "test", "--page", "speaker1"],
    ["tts", "normalize", ""],
    ["render", "--text", "测试", "--out", "{tmp}/a-file/out.mp3", "--engine", "espeak"],
    ["render", "--notice", "/nonexistent/notice.json", "--out", "x.mp3"],
    ["render", "--recording", "/nonexistent/recording.wav", "--out", "x.mp3"],
    ["asterisk", "status"],
    ["prompts", "install"],
    ["hotline", "dial-test", "--timeout", "5"],
    ["cases", "show", "12345678"],
    ["backup", "{tmp}/backup"],
    ["restore", "{tmp}/no-such-backup"],
    ["init", "--admin-password-file", "/nonexistent/password"],
]


def one_clear_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith("cunxiang: "), lines[0]
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(command[:2]) for command in COMMANDS])
def test_every_command_before_init_fails_with_one_clear_line(tmp_path: Path, command: list[str]) -> None:
    env = environment(tmp_path / "data", CUNXIANG_ASTERISK="none", CUNXIANG_TTS_ENGINES="espeak")
    (tmp_path / "a-file").write_text("a file where a folder is expected")
    done = run([part.format(tmp=tmp_path) for part in command], env, timeout=180)
    assert done.returncode != 0, (done.stdout, done.stderr)
    one_clear_line(done)


def test_demo_before_init_says_to_run_init(tmp_path: Path) -> None:
    done = run(["demo"], environment(tmp_path / "data", CUNXIANG_TTS_ENGINES="espeak"))
    assert done.returncode != 0
    assert "cunxiang init" in one_clear_line(done)


# One test per command, not a loop: each is a process start of seconds, and separate tests run on separate
# pytest-xdist workers at once instead of one after another on one.
@pytest.mark.parametrize(
    "command",
    [["demo"], ["init"], ["cases", "show", "12345678"], ["broadcast", "test", "--speaker", "1"]],
    ids=["demo", "init", "cases show", "broadcast test"],
)
def test_a_database_that_is_not_ours_is_one_line_for_every_command(tmp_path: Path, command: list[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "cunxiang.db").write_bytes(b"this is not a database at all" * 100)
    env = environment(data, CUNXIANG_ASTERISK="none", CUNXIANG_TTS_ENGINES="espeak")
    done = run(command, env)
    assert done.returncode != 0, command
    one_clear_line(done)
