"""The database layer on both engines: migrations, types, the append-only audit log, concurrency."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, event, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from server import Runtime
from storage import audit
from storage.audit import Actor
from storage.migrate import current_revision, head_revision
from storage.models import AuditEntry, Base, County
from tests.conftest import BOTH_DATABASES

pytestmark = pytest.mark.parametrize("db_kind", BOTH_DATABASES)


async def test_the_database_is_migrated_to_head_and_matches_the_models(runtime: Runtime) -> None:
    assert await current_revision(runtime.engine) == head_revision()

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with runtime.engine.connect() as connection:
        diff = await connection.run_sync(differences)
    assert diff == [], "models and migrations disagree: write a migration"


async def test_instants_come_back_timezone_aware_in_utc(runtime: Runtime) -> None:
    beijing = timezone(timedelta(hours=8))
    created = datetime(2026, 11, 25, 7, 0, tzinfo=beijing)
    async with runtime.sessions.begin() as session:
        session.add(County(name="时区县", created_at=created))
    async with runtime.sessions() as session:
        stored = await session.scalar(select(County.created_at).where(County.name == "时区县"))
    assert stored == created
    assert stored is not None and stored.tzinfo is not None and stored.utcoffset() == timedelta(0)


async def test_the_audit_log_refuses_updates_and_deletes(runtime: Runtime) -> None:
    async with runtime.sessions.begin() as session:
        audit.record(session, Actor(None, "system:test"), at=datetime.now(UTC), action="x", object_type="y")
    for statement in ("UPDATE audit_log SET action = 'rewritten'", "DELETE FROM audit_log"):
        with pytest.raises((IntegrityError, DBAPIError)) as raised:
            async with runtime.sessions.begin() as session:
                await session.execute(text(statement))
        assert "append-only" in str(raised.value)
    async with runtime.sessions() as session:
        assert (await session.scalars(select(AuditEntry.action))).all() == ["x"]


async def test_concurrent_writers_all_succeed(runtime: Runtime) -> None:
    """SQLite needs WAL and a busy timeout for this; PostgreSQL does it anyway."""

    async def write(index: int) -> None:
        async with runtime.sessions.begin() as session:
            session.add(County(name=f"并发县{index}", created_at=datetime.now(UTC)))
            await asyncio.sleep(0.01)

    await asyncio.gather(*(write(index) for index in range(20)))
    async with runtime.sessions() as session:
        names = (await session.scalars(select(County.name))).all()
    assert len(names) == 20
    if runtime.settings.is_sqlite:
        async with runtime.engine.connect() as connection:
            assert (await connection.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar() == 1


async def test_twenty_calls_at_once_reuse_the_pools_connections_instead_of_opening_new_ones(runtime: Runtime) -> None:
    """Twenty callers hanging up together each want a connection at once. Connections beyond the pool are
    closed when returned, so with SQLAlchemy's default pool (5) every such burst opened ten or more again."""
    opened: list[object] = []
    event.listen(runtime.engine.sync_engine, "connect", lambda connection, _record: opened.append(connection))

    async def one_call() -> None:
        async with runtime.sessions() as session:
            await session.execute(text("SELECT 1"))
            await asyncio.sleep(0.05)  # all twenty hold theirs together

    await asyncio.gather(*(one_call() for _ in range(20)))
    assert opened, "the first burst opens the connections"
    opened.clear()
    await asyncio.gather(*(one_call() for _ in range(20)))
    assert opened == [], f"the second burst opened {len(opened)} connections again"


async def test_the_audit_queue_answers_at_once_and_writes_every_entry_once_the_database_lets_it(
    runtime: Runtime,
) -> None:
    queue = audit.AuditQueue(runtime.sessions, retry_s=0.05)
    # Another writer holds the database: no insert can go through while it does.
    holder = await runtime.engine.connect()
    try:
        if runtime.settings.is_sqlite:
            await holder.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            await holder.execute(text("LOCK TABLE audit_log IN EXCLUSIVE MODE"))
        for index in range(3):
            queue.put(Actor(None, "system:test"), at=datetime.now(UTC), action=f"held.{index}", object_type="case")
        await asyncio.sleep(0.3)
        assert queue.waiting >= 2  # still queued, and put() never waited
    finally:
        await holder.rollback()
        await holder.close()
    await queue.stop()
    async with runtime.sessions() as session:
        actions = sorted((await session.scalars(select(AuditEntry.action))).all())
    assert actions == ["held.0", "held.1", "held.2"]
