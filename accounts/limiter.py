"""The login limiter: recent failed sign-ins, kept in the database so every process counts the same ones.

Three counters, each with its own allowance, then a wait that doubles with
every further failure (up to a cap); failures older than the window are
forgotten:

- per (client address, name): someone guessing one account's password from one place;
- per address, across names: one place trying many names (password spraying);
- per name, across addresses: many places guessing one account. This one holds
  back only addresses that have failed recently themselves, so the account's
  owner, signing in correctly from an address without failures, is never
  refused because of someone else's guesses elsewhere.

Names are counted exactly as typed, whether or not an account has that name:
the answers (401, then 429 with the same wait) are the same for every name, so
they never tell which names exist. Behind a reverse proxy the address is the
real client's (``server.trusted_proxies``), not the proxy's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from common.errors import TooManyAttempts
from storage.models import LoginThrottle

PAIR, NAME, ADDRESS = "pair", "name", "address"


@dataclass(frozen=True)
class LimiterPolicy:
    # Failures per (address, name), per name and per address before the waits begin.
    pair_free_attempts: int = 3
    name_free_attempts: int = 10
    address_free_attempts: int = 10
    base_delay_s: float = 1.0
    max_delay_s: float = 300.0
    # A failure older than this no longer counts.
    window_s: float = 900.0

    def free_attempts(self, scope: str) -> int:
        return {PAIR: self.pair_free_attempts, NAME: self.name_free_attempts}.get(scope, self.address_free_attempts)

    def delay_after(self, scope: str, failures: int) -> float:
        """Seconds every further attempt under this key must wait after ``failures`` recent failures."""
        free = self.free_attempts(scope)
        if failures < free:
            return 0.0
        return float(min(self.base_delay_s * 2.0 ** min(failures - free, 62), self.max_delay_s))


def throttled(seconds: float) -> TooManyAttempts:
    wait = max(1, math.ceil(seconds))
    return TooManyAttempts(f"登录失败次数过多，请{wait}秒后再试", retry_after_s=wait, code="login.throttled")


def _keys(address: str, name: str) -> dict[str, str]:
    # The unit separator cannot be typed into a name (control characters are refused) nor appear in an address.
    return {PAIR: f"{address}\x1f{name}"[:160], NAME: name[:160], ADDRESS: address[:160]}


class LoginLimiter:
    """Reads and writes ``login_throttle`` inside the caller's transaction."""

    def __init__(self, policy: LimiterPolicy) -> None:
        self.policy = policy

    async def wait_s(self, session: AsyncSession, address: str, name: str, now: datetime) -> float:
        """How long this attempt must wait (0: go ahead), before any account is looked up."""
        keys = _keys(address, name)
        rows = {
            row.scope: row
            for row in (
                await session.scalars(
                    select(LoginThrottle).where(
                        or_(*(and_(LoginThrottle.scope == s, LoginThrottle.key == k) for s, k in keys.items()))
                    )
                )
            ).all()
        }
        recent = now - timedelta(seconds=self.policy.window_s)
        waits = [0.0]
        for scope in (PAIR, ADDRESS):
            row = rows.get(scope)
            if row is not None and row.blocked_until is not None and row.blocked_until > now:
                waits.append((row.blocked_until - now).total_seconds())
        name_row, address_row = rows.get(NAME), rows.get(ADDRESS)
        address_failed_recently = address_row is not None and address_row.last_failure_at >= recent
        if (
            name_row is not None
            and name_row.blocked_until is not None
            and name_row.blocked_until > now
            and address_failed_recently
        ):
            waits.append((name_row.blocked_until - now).total_seconds())
        return max(waits)

    async def failed(self, session: AsyncSession, address: str, name: str, now: datetime) -> None:
        recent = now - timedelta(seconds=self.policy.window_s)
        for scope, key in _keys(address, name).items():
            failures = await self._count_failure(session, scope, key, now, recent)
            delay = self.policy.delay_after(scope, failures)
            blocked = now + timedelta(seconds=delay) if delay > 0 else None
            await session.execute(
                update(LoginThrottle)
                .where(LoginThrottle.scope == scope, LoginThrottle.key == key)
                .values(blocked_until=blocked)
            )
        # Forget what no longer counts, so a spray of invented names cannot grow the table for ever.
        await session.execute(
            delete(LoginThrottle).where(
                LoginThrottle.last_failure_at < recent,
                or_(LoginThrottle.blocked_until.is_(None), LoginThrottle.blocked_until < now),
            )
        )

    async def succeeded(self, session: AsyncSession, address: str, name: str) -> None:
        """A correct password clears its own (address, name) count; the wider counts run out by themselves."""
        await session.execute(
            delete(LoginThrottle).where(LoginThrottle.scope == PAIR, LoginThrottle.key == _keys(address, name)[PAIR])
        )

    async def forget_name(self, session: AsyncSession, name: str) -> None:
        """After an admin resets a password: the account may be signed in to at once, from anywhere."""
        await session.execute(
            delete(LoginThrottle).where(
                or_(
                    and_(LoginThrottle.scope == NAME, LoginThrottle.key == name),
                    and_(LoginThrottle.scope == PAIR, LoginThrottle.key.endswith(f"\x1f{name}", autoescape=True)),
                )
            )
        )

    @staticmethod
    async def _count_failure(session: AsyncSession, scope: str, key: str, now: datetime, recent: datetime) -> int:
        """One atomic upsert (the same statement on SQLite and PostgreSQL): concurrent failures all count."""
        dialect = session.get_bind().dialect.name
        insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
        table = LoginThrottle.__table__
        statement = (
            insert(table)
            .values(scope=scope, key=key, failures=1, last_failure_at=now, blocked_until=None)
            .on_conflict_do_update(
                index_elements=[table.c.scope, table.c.key],
                set_={
                    "failures": case((table.c.last_failure_at >= recent, table.c.failures + 1), else_=1),
                    "last_failure_at": now,
                },
            )
            .returning(table.c.failures)
        )
        return int((await session.execute(statement)).scalar_one())
