"""A `cunxiang` process imports only the command group it runs (every start used to import the whole service)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import GROUPS, build_parser, chosen_group
from tests.support.cli import environment

# What each command must not import: `tts normalize` needs neither the service nor broadcasting, `render` needs
# broadcasting's producer but not the service (server.py builds every part and the web app).
LIGHT_COMMANDS = [
    (["tts", "normalize", "一"], ["server", "broadcast.part", "web.app"]),
    (["tts", "check", "一"], ["server", "broadcast.part", "web.app"]),
    (["render", "--help"], ["server", "web.app"]),
]

PROBE = """
import sys
from cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(" ".join(sorted(name for name in sys.modules if name in {forbidden!r})))
"""


@pytest.mark.parametrize(("command", "forbidden"), LIGHT_COMMANDS, ids=[" ".join(c[:2]) for c, _ in LIGHT_COMMANDS])
def test_a_light_command_does_not_import_the_service(tmp_path: Path, command: list[str], forbidden: list[str]) -> None:
    # A fresh interpreter (about half a second now): this test process has imported everything already.
    probe = PROBE.format(forbidden=set(forbidden))
    done = subprocess.run(
        [sys.executable, "-c", probe, *command],
        env=environment(tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "", f"{' '.join(command)} imported {done.stdout.splitlines()[-1]}"


def test_the_command_named_chooses_its_group_after_any_config_option() -> None:
    assert chosen_group(["tts", "normalize", "x"]) == "cli.tts"
    assert chosen_group(["--config", "tts", "render", "--text", "x"]) == "cli.render"
    assert chosen_group(["--config=a.toml", "backup", "dir"]) == "cli.backup"
    # No command, help, or a mistake: the whole parser answers (and lists every command).
    for argv in ([], ["--help"], ["-h", "tts"], ["no-such-command"], ["--config"]):
        assert chosen_group(argv) is None


def test_every_command_is_in_the_table_and_help_lists_them_all() -> None:
    everything = build_parser([])
    [commands] = [action for action in everything._actions if action.dest == "command"]
    assert list(commands.choices or {}) == list(GROUPS)
    only_backup = build_parser(["backup", "dir"])
    [commands] = [action for action in only_backup._actions if action.dest == "command"]
    assert list(commands.choices or {}) == ["backup", "restore"]
    assert only_backup.parse_args(["backup", "dir"]).directory == Path("dir")
