"""Upgrading a populated database: the demo county and its ledger of cases, stored at an earlier revision, upgraded.

``tests/fixtures/upgrade/demo-at-0005.json`` holds the rows of the demo county (places, speakers, accounts)
and the demo ledger (cases, their events and ledger rows) as they were at revision 0005, the head before
this turn's issues. The test migrates an empty database to that revision, loads the rows through tables
reflected from it (not through today's models, which may have moved on), upgrades to head, and checks that
every row is still there and the service works on them. An issue that adds a migration extends the checks
for what it changes (and, for tables it adds, a later snapshot: ``python -m tests.fixtures.upgrade.snapshot``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from server import build_runtime
from storage import migrate
from storage.models import Township, Village, Zone
from tests.conftest import make_settings
from tests.fixtures.upgrade.snapshot import counts, load
from tests.support.broadcasting import make_principal
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.slow  # every migration from an empty database, twice

SNAPSHOT = Path(__file__).resolve().parents[1] / "fixtures" / "upgrade" / "demo-at-0005.json"
_numbers = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'upgraded.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    name = f"cx_upgrade_{next(_numbers)}"
    cluster.psql(f"CREATE DATABASE {name}")
    return cluster.url(name)


async def test_the_demo_county_and_its_ledger_survive_the_upgrade_to_head(empty_database: str, tmp_path: Path) -> None:
    snapshot: dict[str, Any] = json.loads(await asyncio.to_thread(SNAPSHOT.read_text, encoding="utf-8"))
    rows: dict[str, list[dict[str, Any]]] = snapshot["rows"]
    await migrate.upgrade(empty_database, snapshot["revision"])
    runtime = build_runtime(make_settings(tmp_path / "data", empty_database))
    try:
        async with runtime.engine.begin() as connection:
            await connection.run_sync(load, rows)
        await runtime.engine.dispose()
        await migrate.upgrade(empty_database)
        assert await migrate.current_revision(runtime.engine) == migrate.head_revision()

        async with runtime.engine.connect() as connection:
            after = await connection.run_sync(counts)
        assert {table: after.get(table) for table in rows} == {table: len(found) for table, found in rows.items()}

        tree = await runtime.areas.tree_counts()
        assert tree["townships"] == 9 and tree["villages"] == len(rows["villages"])
        # A villager still learns her case's state with its number and PIN; a sealed report stays sealed.
        for case in rows["cases"]:
            answer = await runtime.cases.workflow.status_query(case["number"], None, case["pin"])
            expected = "confidential" if case["sealed"] else "found"
            assert (answer.result, answer.case_id) == (expected, case["id"]), case["number"]
        # 0012 gave every existing township, village and zone its 喊话编号 (unique per kind, in the order made).
        async with runtime.sessions() as session:
            for model, width in ((Township, 2), (Village, 3), (Zone, 4)):
                codes = (await session.scalars(select(model.phonecast_code).order_by(model.id))).all()
                assert list(codes) == [f"{n:0{width}d}" for n in range(1, len(codes) + 1)], model.__tablename__
        # New rows take ids after the loaded ones (PostgreSQL's sequences were moved past them).
        admin = await make_principal(runtime, "after-upgrade", "admin", county_wide=True)
        assert admin.user_id > max(user["id"] for user in rows["users"])
        county = await runtime.areas.create_county(admin, name="升级后新县")
        assert county.id > max(row["id"] for row in rows["counties"])
        # 0010: the duty list starts empty (nobody is phoned until an admin fills it) and takes people.
        alarms = runtime.ops.alarms
        assert await alarms.officers() == [] and await alarms.alarms() == []
        officer = await alarms.add_officer(
            admin.actor, name="升级后值班", phone="13900001111", on_from=time(8), on_until=time(8)
        )
        assert [each.id for each in await alarms.officers()] == [officer.id]
    finally:
        await runtime.engine.dispose()
