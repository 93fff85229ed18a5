"""One active worker: a second `serve` stands by, and takes over when the first dies."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.conftest import BOTH_DATABASES
from tests.support.cli import environment, run, serving

# Real `cunxiang serve` processes electing a worker, one killed.
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("db_kind", BOTH_DATABASES)
def test_a_second_serve_stands_by_and_takes_over_when_the_first_dies(tmp_path: Path, database_url: str) -> None:
    env = environment(tmp_path / "data", CUNXIANG_DATABASE_URL=database_url)
    assert run(["init"], env).returncode == 0

    def role(health: dict[str, object]) -> object:
        components = health["components"]
        assert isinstance(components, dict)
        return components["worker"]["role"]

    with serving(env) as first:
        first.wait_until(lambda health: role(health) == "active")
        with serving(env) as second:
            standby = second.wait_until(lambda health: health["components"]["database"]["status"] == "ok")
            assert role(standby) == "standby"
            # The first still holds it a while later: the standby does not steal it.
            assert role(first.health()) == "active"
            os.killpg(first.process.pid, signal.SIGKILL)
            first.process.wait()
            second.wait_until(lambda health: role(health) == "active", timeout=30)
