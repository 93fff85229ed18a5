"""Server-side sessions: the cookie carries a random token, the ``user_sessions`` table its hash.

A session is valid while its row exists, has not expired (``max_age_s`` after
sign-in), has been used within ``idle_s``, and its user is active. Ending a
session deletes its row, so a copied cookie stops working the moment the
session ends, on every process.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from storage.models import User, UserSession

# last_seen_at is written again only when it is older than this.
TOUCH_INTERVAL = timedelta(seconds=60)


@dataclass(frozen=True)
class SessionPolicy:
    max_age_s: int = 12 * 3600
    idle_s: int = 4 * 3600


@dataclass(frozen=True)
class SessionInfo:
    """A session as its owner and admins see it (never its token)."""

    id: int
    user_id: int
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool = False


def hash_token(token: str) -> str:
    # 256 random bits: a fast hash is enough, there is nothing to guess.
    return hashlib.sha256(token.encode()).hexdigest()


def info(row: UserSession, current_id: int | None = None) -> SessionInfo:
    return SessionInfo(
        id=row.id,
        user_id=row.user_id,
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        expires_at=row.expires_at,
        ip=row.ip,
        user_agent=row.user_agent,
        current=row.id == current_id,
    )


class SessionTable:
    """Reads and writes ``user_sessions`` inside the caller's transaction."""

    def __init__(self, policy: SessionPolicy) -> None:
        self.policy = policy

    async def start(
        self, session: AsyncSession, user: User, now: datetime, ip: str | None, user_agent: str | None
    ) -> tuple[str, int]:
        """A new session for ``user``: its token (for the cookie, shown nowhere else) and its id."""
        token = secrets.token_urlsafe(32)
        row = UserSession(
            user_id=user.id,
            token_hash=hash_token(token),
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(seconds=self.policy.max_age_s),
            ip=ip[:64] if ip else None,
            user_agent=user_agent[:256] if user_agent else None,
        )
        session.add(row)
        await session.flush()
        return token, row.id

    async def find(self, session: AsyncSession, token: str, now: datetime) -> tuple[UserSession, User] | None:
        """The live session a token names, with its active user; an expired or idle one is ended here."""
        # One statement for every signed-in request: the session, its user and the user's roles and townships
        # (joined; by default the user and each collection were a statement of their own — four per request).
        found = (
            (
                await session.execute(
                    select(UserSession, User)
                    .outerjoin(User, User.id == UserSession.user_id)
                    .options(joinedload(User.roles), joinedload(User.townships))
                    .where(UserSession.token_hash == hash_token(token))
                )
            )
            .unique()
            .first()
        )
        if found is None:
            return None
        row, user = found
        idle_since = now - timedelta(seconds=self.policy.idle_s)
        if row.expires_at <= now or row.last_seen_at < idle_since or user is None or not user.active:
            await session.delete(row)
            return None
        if now - row.last_seen_at >= TOUCH_INTERVAL:
            row.last_seen_at = now
        return row, user

    async def list_for(self, session: AsyncSession, user_id: int, now: datetime) -> list[UserSession]:
        idle_since = now - timedelta(seconds=self.policy.idle_s)
        rows = await session.scalars(
            select(UserSession)
            .where(UserSession.user_id == user_id, UserSession.expires_at > now, UserSession.last_seen_at >= idle_since)
            .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())
        )
        return list(rows.all())

    async def end(self, session: AsyncSession, user_id: int, session_id: int) -> bool:
        result = await session.execute(
            delete(UserSession).where(UserSession.id == session_id, UserSession.user_id == user_id)
        )
        return bool(getattr(result, "rowcount", 0))

    async def end_all(self, session: AsyncSession, user_id: int, *, keep: int | None = None) -> int:
        statement = delete(UserSession).where(UserSession.user_id == user_id)
        if keep is not None:
            statement = statement.where(UserSession.id != keep)
        result = await session.execute(statement)
        return int(getattr(result, "rowcount", 0) or 0)

    async def end_token(self, session: AsyncSession, token: str) -> UserSession | None:
        row = await session.scalar(select(UserSession).where(UserSession.token_hash == hash_token(token)))
        if row is not None:
            await session.delete(row)
        return row

    async def sweep(self, session: AsyncSession, now: datetime) -> None:
        """Rows of sessions that ended by time: nobody can use them, nobody needs to see them."""
        idle_since = now - timedelta(seconds=self.policy.idle_s)
        await session.execute(
            delete(UserSession).where((UserSession.expires_at <= now) | (UserSession.last_seen_at < idle_since))
        )
