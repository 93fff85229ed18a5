"""Writing and reading the append-only audit log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import AuditEntry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who is acting: a user, or the service itself (user_id None, e.g. 'system:hotline')."""

    user_id: int | None
    username: str
    ip: str | None = None


def record(
    session: AsyncSession,
    actor: Actor,
    *,
    at: datetime,
    action: str,
    object_type: str,
    object_id: str | int | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an entry to the session; it is written with the caller's transaction (or not at all)."""
    entry = AuditEntry(
        at=at,
        user_id=actor.user_id,
        username=actor.username,
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        detail=detail or {},
        ip=actor.ip,
    )
    session.add(entry)
    return entry


def query(
    *,
    user_id: int | None = None,
    action: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Select[AuditEntry]:
    statement = select(AuditEntry)
    if user_id is not None:
        statement = statement.where(AuditEntry.user_id == user_id)
    if action:
        statement = statement.where(AuditEntry.action == action)
    if object_type:
        statement = statement.where(AuditEntry.object_type == object_type)
    if object_id:
        statement = statement.where(AuditEntry.object_id == object_id)
    if since:
        statement = statement.where(AuditEntry.at >= since)
    if until:
        statement = statement.where(AuditEntry.at < until)
    return statement.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())


@dataclass(frozen=True)
class PendingEntry:
    actor: Actor
    at: datetime
    action: str
    object_type: str
    object_id: str | int | None
    detail: dict[str, Any]


class AuditQueue:
    """Audit entries written by one owned background task, so the caller never waits for the write.

    For the few places where how long an answer takes must not depend on
    whether something was logged: a refused look at a sealed case answers as
    fast as a look at a case that does not exist, while the refusal is still
    recorded. Nothing is dropped: a failed write is retried (the database may
    be busy or restarting), :meth:`flush` waits until everything queued is
    written, and :meth:`stop` flushes before it returns — an entry that still
    cannot be written then is logged in full at ERROR, so it is never lost
    silently. The writer starts on the first entry and is the owner's to stop.
    """

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, retry_s: float = 0.5, name: str = "audit-queue"
    ) -> None:
        self._sessions = sessions
        self._retry_s = retry_s
        self.name = name
        self._pending: asyncio.Queue[PendingEntry] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._stopping = False

    def put(
        self,
        actor: Actor,
        *,
        at: datetime,
        action: str,
        object_type: str,
        object_id: str | int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Queue an entry; returns at once (the writer task starts with the first one)."""
        self._pending.put_nowait(PendingEntry(actor, at, action, object_type, object_id, dict(detail or {})))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_all(), name=self.name)

    async def start(self) -> None:
        """Nothing to do: the writer starts with the first entry (so a command's runtime needs no start)."""

    @property
    def waiting(self) -> int:
        return self._pending.qsize()

    async def flush(self) -> None:
        """Returns once every entry queued so far is in the database."""
        await self._pending.join()

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Write what is queued (for at most ``timeout_s``), then end the writer."""
        self._stopping = True
        try:
            async with asyncio.timeout(timeout_s):
                await self.flush()
        except TimeoutError:
            pass
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        while not self._pending.empty():
            entry = self._pending.get_nowait()
            log.error("audit entry not written before shutdown: %r", entry)
            self._pending.task_done()
        self._stopping = False

    async def _write_all(self) -> None:
        while True:
            entry = await self._pending.get()
            try:
                while True:
                    try:
                        await self._write(entry)
                        break
                    except Exception as exc:  # noqa: BLE001 - never dropped: whatever failed, logged and retried
                        log.warning("audit entry %s not written yet, retrying: %s", entry.action, exc)
                        await asyncio.sleep(self._retry_s)
            finally:
                self._pending.task_done()

    async def _write(self, entry: PendingEntry) -> None:
        async with self._sessions.begin() as session:
            record(
                session,
                entry.actor,
                at=entry.at,
                action=entry.action,
                object_type=entry.object_type,
                object_id=entry.object_id,
                detail=entry.detail,
            )
