"""Alembic environment: runs migrations on the async engines we use everywhere else.

Called two ways: by `cunxiang init` / the tests through storage.migrate (which
passes the URL in ``config.attributes``), or by the ``alembic`` command line
(which reads CUNXIANG_DATABASE_URL) when a developer writes a new revision.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from storage.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or os.environ.get("CUNXIANG_DATABASE_URL")
    if not url:
        raise RuntimeError("set CUNXIANG_DATABASE_URL to the database to migrate")
    return str(url)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
