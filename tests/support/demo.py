"""The demo county, loaded once per test run and copied for each test that walks it (``cunxiang demo``'s data).

Loading it — the places and accounts, the sample notices with their audio, today's cases and last year's
ledger worked through the workflow — takes half a minute on two cores, so the first pytest-xdist worker to
need it builds it into a folder the run's workers share, under a file lock, and every test copies that folder
(the SQLite database, the audio, the logins file) into its own data directory.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from areas.demo import load_demo
from cases.demo import load_demo as load_demo_cases
from cli.service import load_demo_broadcasting
from server import build_runtime
from settings import Settings, TtsSettings
from storage.migrate import upgrade
from tests.support.settings import make_settings

DATABASE = "cunxiang.db"
LOGINS = "demo-logins.txt"


@dataclass(frozen=True)
class DemoCounty:
    """The built demo county: its data folder (to copy) and the demo accounts' passwords by user name."""

    data_dir: Path
    passwords: dict[str, str]

    def copy_to(self, target: Path) -> str:
        """A copy of the county in ``target`` (a data directory); returns its database URL."""
        shutil.copytree(self.data_dir, target)
        return f"sqlite+aiosqlite:///{target / DATABASE}"


def demo_settings(data_dir: Path) -> Settings:
    # The offline engine only: the notices' audio is rendered without waiting for an unreachable cloud.
    return make_settings(data_dir, f"sqlite+aiosqlite:///{data_dir / DATABASE}", tts=TtsSettings(engines=("espeak",)))


async def build_demo_county(data_dir: Path) -> None:
    """What ``cunxiang init`` and ``cunxiang demo`` do, in this process."""
    settings = demo_settings(data_dir)
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    await upgrade(settings.database_url)
    runtime = build_runtime(settings)
    try:
        await load_demo(runtime.sessions, runtime.accounts, runtime.clock, data_dir / LOGINS)
        await load_demo_broadcasting(runtime)
        await load_demo_cases(runtime.sessions, runtime.cases.workflow, clock=runtime.clock)
    finally:
        await runtime.engine.dispose()


def read_logins(data_dir: Path) -> dict[str, str]:
    passwords = {}
    for line in (data_dir / LOGINS).read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            username, password, _roles = line.split("\t")
            passwords[username] = password
    return passwords


@pytest.fixture(scope="session")
def demo_county(tmp_path_factory: pytest.TempPathFactory) -> DemoCounty:
    """The demo county, built once per run (see the module's docstring)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent / "demo-county"  # this run's, shared by its workers
    else:
        shared = tmp_path_factory.getbasetemp() / "demo-county"
    shared.mkdir(parents=True, exist_ok=True)
    data_dir = shared / "data"
    with (shared / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other workers wait here while the first builds it
        if not (shared / "complete").exists():
            shutil.rmtree(data_dir, ignore_errors=True)
            asyncio.run(build_demo_county(data_dir))
            (shared / "complete").touch()
    return DemoCounty(data_dir, read_logins(data_dir))
