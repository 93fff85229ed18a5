"""Writing and reading the append-only audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditEntry


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
