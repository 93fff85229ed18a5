"""Backup while the service runs, restore into a fresh install: every case, with recordings that still play.

The backup and restore run as the real ``cunxiang`` command in another
process, against the database and data directory of a service that keeps
writing the whole time (notes added every few milliseconds).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from common.clock import ManualClock
from hotline.recordings import inspect
from server import Runtime, build_runtime, create_app
from settings import Settings
from storage import migrate
from storage.audit import Actor
from tests.cases.conftest import START, CaseMaker, County, People
from tests.conftest import BOTH_DATABASES, make_settings
from tests.support.cli import CUNXIANG, environment, run
from tests.support.http import ApiClient
from tests.support.postgres import PostgresCluster

# Backups and restores of whole installations, through the command line.
pytestmark = pytest.mark.slow


async def cunxiang(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """The real command in another process, without blocking this test's event loop (the service keeps running)."""
    process = await asyncio.create_subprocess_exec(
        CUNXIANG, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=180)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def env_for(settings: Settings) -> dict[str, str]:
    env = environment(settings.data_dir)
    env["CUNXIANG_DATABASE_URL"] = settings.database_url
    return env


@pytest.fixture
async def busy_county(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker, settings: Settings
) -> AsyncIterator[dict[str, Any]]:
    """Cases in every state with recordings, produced audio on disk, and a writer that does not stop."""
    operator = people.operator_county.principal
    workflow = runtime.cases.workflow
    cases = []
    for index in range(6):
        case = await hotline_case(township_id=county.township_a, seconds=3 + index)
        if index >= 2:
            await workflow.assign(operator, case.id, unit_id=county.unit_a, leader_name="张书记")
        if index >= 4:
            await workflow.resolve(operator, case.id, outcome="resolved", result="已办", told_via="phone")
        cases.append(case)
    sealed = await hotline_case(township_id=county.township_a, category="discipline", seconds=4)
    audio = settings.data_dir / "audio" / "ab" / "abcdef.mp3"
    audio.parent.mkdir(parents=True)
    audio.write_bytes(b"ID3" + bytes(range(256)) * 40)
    stop = asyncio.Event()
    written = 0

    async def keep_writing() -> None:
        nonlocal written
        while not stop.is_set():
            await workflow.add_note(operator, cases[0].id, text=f"备注{written}")
            written += 1
            await asyncio.sleep(0.005)

    writer = asyncio.create_task(keep_writing())
    try:
        yield {"cases": cases, "sealed": sealed, "audio": audio}
    finally:
        stop.set()
        await writer
    assert written > 10  # the service really was writing during the backup


async def recordings_by_case(runtime: Runtime) -> dict[str, list[tuple[str, str, float]]]:
    """case number → [(relative path, sha256 of the file on disk, duration)] as a restored install holds them."""
    from sqlalchemy import select

    from storage.models import Case, Recording

    found: dict[str, list[tuple[str, str, float]]] = {}
    async with runtime.sessions() as session:
        rows = (await session.execute(select(Case.number, Recording.path).join(Recording))).all()
    for number, path in rows:
        file = runtime.hotline.store.path_of(path)
        found.setdefault(number, []).append(
            (path, hashlib.sha256(file.read_bytes()).hexdigest(), inspect(file).duration_s)
        )
    return found


@pytest.fixture
def fresh_settings(tmp_path: Path, db_kind: str, request: pytest.FixtureRequest) -> Settings:
    """Another installation: its own data directory and an empty database of the same kind."""
    if db_kind == "sqlite":
        return make_settings(tmp_path / "fresh", f"sqlite+aiosqlite:///{tmp_path / 'fresh' / 'cunxiang.db'}")
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    name = f"cx_fresh_{tmp_path.name[-12:].replace('-', '_').lower()}"
    cluster.psql(f"CREATE DATABASE {name}")
    return make_settings(tmp_path / "fresh", cluster.url(name))


@pytest.mark.parametrize("db_kind", BOTH_DATABASES)
async def test_a_backup_taken_while_writing_restores_into_a_fresh_install_with_playable_recordings(
    runtime: Runtime,
    settings: Settings,
    fresh_settings: Settings,
    busy_county: dict[str, Any],
    tmp_path: Path,
    db_kind: str,
) -> None:
    target = tmp_path / "backup"
    code, out, err = await cunxiang(["backup", str(target)], env_for(settings))
    assert code == 0, err
    assert "backup complete" in out
    manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["database"]["kind"] == db_kind and manifest["database"]["revision"] == migrate.head_revision()
    listed = {entry["path"]: entry["sha256"] for entry in manifest["files"]}
    assert "files/audio/ab/abcdef.mp3" in listed
    assert sum(path.startswith("files/recordings/") for path in listed) == 7
    for path, digest in listed.items():
        assert hashlib.sha256((target / path).read_bytes()).hexdigest() == digest
    if db_kind == "sqlite":
        copy = sqlite3.connect(target / "database.sqlite3")
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        copy.close()
    original = await recordings_by_case(runtime)

    fresh_env = env_for(fresh_settings)
    assert run(["init"], fresh_env).returncode == 0
    code, out, err = await cunxiang(["restore", str(target)], fresh_env)
    assert code == 0, err
    assert "checksums verified" in out
    restored_runtime = build_runtime(fresh_settings, clock=ManualClock(START))
    try:
        assert await recordings_by_case(restored_runtime) == original
        assert (fresh_settings.data_dir / "audio" / "ab" / "abcdef.mp3").read_bytes() == busy_county[
            "audio"
        ].read_bytes()
        number = busy_county["cases"][4].number
        shown = run(["cases", "show", f"{number[:4]} {number[4:]}", "--json"], fresh_env)  # as written down
        data = json.loads(shown.stdout)
        assert data["status"] == "resolved" and data["workflow"]["outcome"] == "resolved"
        assert [event["kind"] for event in data["workflow"]["history"]] == ["accepted", "assigned", "resolved"]
        # Playable: the restored service serves the restored file, byte for byte, with Range.
        await restored_runtime.accounts.create_user(
            Actor(None, "test"), username="restorer", display_name="restorer", password="Restored-pass-1234",
            roles=["operator"], county_wide=True,
        )  # fmt: skip
        app = create_app(fresh_settings, runtime=restored_runtime)
        async with TestClient(TestServer(app)) as raw:
            client = await ApiClient(raw).login("restorer", "Restored-pass-1234")
            case = busy_county["cases"][2]
            detail = await client.get_json(f"/api/v1/cases/{case.id}")
            url = detail["recordings"][0]["url"]
            response = await client.get(url, headers={"Range": "bytes=44-1043"})
            path = fresh_settings.data_dir / "recordings" / original[case.number][0][0]
            assert response.status == 206 and await response.read() == path.read_bytes()[44:1044]
    finally:
        await restored_runtime.engine.dispose()


async def test_a_damaged_partial_or_padded_backup_is_refused_and_nothing_is_touched(
    runtime: Runtime, settings: Settings, busy_county: dict[str, Any], tmp_path: Path
) -> None:
    target = tmp_path / "backup"
    code, _out, err = await cunxiang(["backup", str(target)], env_for(settings))
    assert code == 0, err
    fresh = make_settings(tmp_path / "fresh", f"sqlite+aiosqlite:///{tmp_path / 'fresh' / 'cunxiang.db'}")
    fresh_env = env_for(fresh)
    assert run(["init"], fresh_env).returncode == 0
    before = (tmp_path / "fresh" / "cunxiang.db").read_bytes()

    damaged = tmp_path / "damaged"
    shutil.copytree(target, damaged)
    recording = next((damaged / "files" / "recordings").rglob("*.wav"))
    data = bytearray(recording.read_bytes())
    data[100] ^= 0xFF
    recording.write_bytes(bytes(data))
    partial = tmp_path / "partial"
    shutil.copytree(target, partial)
    (partial / "manifest.json").unlink()
    padded = tmp_path / "padded"
    shutil.copytree(target, padded)
    (padded / "files" / "recordings" / "extra.wav").write_bytes(b"RIFF")
    for broken, message in (
        (damaged, "备份与清单不符"),
        (partial, "备份不完整"),
        (padded, "备份与清单不符"),
        (tmp_path / "nowhere", "备份不完整"),
    ):
        code, _out, err = await cunxiang(["restore", str(broken)], fresh_env)
        assert code == 1, broken
        assert message in err and "Traceback" not in err, err
    assert (tmp_path / "fresh" / "cunxiang.db").read_bytes() == before
    assert not (tmp_path / "fresh" / "recordings").exists()

    # A backup directory that is not empty is refused too (nothing is overwritten).
    code, _out, err = await cunxiang(["backup", str(target)], env_for(settings))
    assert code == 1 and "不是空的" in err


async def test_restore_refuses_a_running_service_and_an_installation_that_already_has_cases(
    runtime: Runtime, settings: Settings, server: TestServer, busy_county: dict[str, Any], tmp_path: Path
) -> None:
    target = tmp_path / "backup"
    code, _out, err = await cunxiang(["backup", str(target)], env_for(settings))
    assert code == 0, err
    for _ in range(100):  # the test server's worker holds the lock once elected
        if (await runtime.health.report()).get("worker", {}).get("role") == "active":
            break
        await asyncio.sleep(0.05)
    code, _out, err = await cunxiang(["restore", str(target)], env_for(settings))
    assert code == 1 and "stop it first" in err
    copy = make_settings(tmp_path / "copy", f"sqlite+aiosqlite:///{tmp_path / 'copy' / 'cunxiang.db'}")
    assert (await cunxiang(["restore", str(target)], env_for(copy)))[0] == 0
    code, _out, err = await cunxiang(["restore", str(target)], env_for(copy))
    assert code == 1 and "already holds 7 cases" in err
    code, _out, err = await cunxiang(["restore", "--force", str(target)], env_for(copy))
    assert code == 0, err
    kept = [path.name for path in (tmp_path / "copy").iterdir() if path.name.startswith("recordings.before-restore-")]
    assert len(kept) == 1
