"""User administration and sign-in, with throttling and an audit trail."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.passwords import Passwords, generate_password
from accounts.principal import Principal
from common.clock import Clock
from common.errors import Conflict, InvalidInput, NotFound, TooManyAttempts, Unauthenticated
from settings import SecuritySettings
from storage import audit
from storage.audit import Actor
from storage.models import ROLES, Township, User, UserRole, UserTownship

log = logging.getLogger(__name__)

# Roles whose work is bound to townships: they need a scope (or county-wide) to see anything.
TOWNSHIP_SCOPED_ROLES = frozenset({"staff", "operator", "approver"})
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{3,64}$")


@dataclass(frozen=True)
class ThrottlePolicy:
    free_attempts: int
    base_delay_s: float
    max_delay_s: float

    def delay_after(self, failures: int) -> float:
        """Seconds the next attempt must wait after ``failures`` consecutive failures."""
        if failures < self.free_attempts:
            return 0.0
        return float(min(self.base_delay_s * 2.0 ** (failures - self.free_attempts), self.max_delay_s))


class _AddressThrottle:
    """Failures per client address for names that match no account (nothing to store them on)."""

    def __init__(self, policy: ThrottlePolicy) -> None:
        self._policy = policy
        self._failures: dict[str, tuple[int, float]] = {}

    def wait_s(self, ip: str, now: float) -> float:
        _failures, until = self._failures.get(ip, (0, 0.0))
        return max(0.0, until - now)

    def failed(self, ip: str, now: float) -> None:
        failures, _until = self._failures.get(ip, (0, 0.0))
        failures += 1
        self._failures[ip] = (failures, now + self._policy.delay_after(failures))
        if len(self._failures) > 10_000:  # bound memory under a spray of addresses
            self._failures.pop(next(iter(self._failures)))

    def succeeded(self, ip: str) -> None:
        self._failures.pop(ip, None)


def _throttled(seconds: float) -> TooManyAttempts:
    wait = max(1, math.ceil(seconds))
    return TooManyAttempts(f"登录失败次数过多，请{wait}秒后再试", retry_after_s=wait, code="login.throttled")


def principal_of(user: User, ip: str | None = None) -> Principal:
    return Principal(
        user_id=user.id,
        username=user.username,
        display_name=user.display_name,
        roles=frozenset(role.role for role in user.roles),
        county_wide=user.county_wide or any(role.role == "admin" for role in user.roles),
        township_ids=frozenset(scope.township_id for scope in user.townships),
        can_emergency=user.can_emergency,
        ip=ip,
    )


class AccountService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        passwords: Passwords,
        clock: Clock,
        throttle: ThrottlePolicy,
    ) -> None:
        self._sessions = sessions
        self._passwords = passwords
        self._clock = clock
        self._throttle = throttle
        self._address_throttle = _AddressThrottle(throttle)

    @classmethod
    def from_settings(
        cls, security: SecuritySettings, sessions: async_sessionmaker[AsyncSession], clock: Clock
    ) -> AccountService:
        """The accounts part: password hashing cost and policy, and the login throttle, from ``[security]``."""
        passwords = Passwords(
            time_cost=security.password_time_cost,
            memory_kib=security.password_memory_kib,
            parallelism=security.password_parallelism,
            min_length=security.password_min_length,
        )
        throttle = ThrottlePolicy(security.login_free_attempts, security.login_base_delay_s, security.login_max_delay_s)
        return cls(sessions, passwords, clock, throttle)

    # -- signing in ---------------------------------------------------------------

    async def authenticate(self, username: str, password: str, ip: str | None) -> tuple[Principal, int]:
        """The principal and its session epoch, or Unauthenticated / TooManyAttempts."""
        address = ip or "unknown"
        now = self._clock.now()
        wait = self._address_throttle.wait_s(address, self._clock.monotonic())
        if wait > 0:
            raise _throttled(wait)
        async with self._sessions.begin() as session:
            user = await session.scalar(select(User).where(User.username == username.strip()))
            if user is not None and user.locked_until is not None and user.locked_until > now:
                raise _throttled((user.locked_until - now).total_seconds())
            valid = await self._passwords.verify(user.password_hash if user else None, password)
            if user is None or not valid or not user.active:
                # Recorded and committed with this transaction: raising here would roll it back.
                self._record_failure(session, user, username, address, now)
                principal = None
            else:
                user.failed_logins = 0
                user.locked_until = None
                user.last_login_at = now
                if self._passwords.needs_rehash(user.password_hash):
                    user.password_hash = await self._passwords.hash(password)
                actor = Actor(user.id, user.username, ip)
                audit.record(session, actor, at=now, action="login", object_type="user", object_id=user.id)
                self._address_throttle.succeeded(address)
                principal, epoch = principal_of(user, ip), user.session_epoch
        if principal is None:
            raise Unauthenticated("用户名或密码不正确", code="login.failed")
        return principal, epoch

    def _record_failure(self, session: AsyncSession, user: User | None, username: str, ip: str, now: datetime) -> None:
        if user is None:
            self._address_throttle.failed(ip, self._clock.monotonic())
        else:
            user.failed_logins += 1
            delay = self._throttle.delay_after(user.failed_logins)
            if delay > 0:
                user.locked_until = now + timedelta(seconds=delay)
        actor = Actor(user.id if user else None, username[:64], ip)
        audit.record(
            session,
            actor,
            at=now,
            action="login.failed",
            object_type="user",
            object_id=user.id if user else None,
        )

    async def load_principal(self, user_id: int, epoch: int, ip: str | None) -> Principal | None:
        """The principal for a session cookie, or None when the user was disabled or reset since."""
        async with self._sessions() as session:
            user = await session.get(User, user_id)
            if user is None or not user.active or user.session_epoch != epoch:
                return None
            return principal_of(user, ip)

    # -- administration -------------------------------------------------------------

    async def list_users(self) -> Sequence[User]:
        async with self._sessions() as session:
            return (await session.scalars(select(User).order_by(User.id))).all()

    async def get_user(self, user_id: int) -> User:
        async with self._sessions() as session:
            user = await session.get(User, user_id)
            if user is None:
                raise NotFound("用户不存在")
            return user

    async def count_admins(self) -> int:
        async with self._sessions() as session:
            return await self._active_admins(session)

    async def _active_admins(self, session: AsyncSession) -> int:
        statement = select(func.count()).select_from(User).join(UserRole).where(User.active, UserRole.role == "admin")
        return int(await session.scalar(statement) or 0)

    async def _check_townships(self, session: AsyncSession, township_ids: Iterable[int]) -> list[int]:
        wanted = sorted(set(township_ids))
        if not wanted:
            return []
        found = set((await session.scalars(select(Township.id).where(Township.id.in_(wanted)))).all())
        missing = [tid for tid in wanted if tid not in found]
        if missing:
            raise InvalidInput("所选乡镇不存在", fields={"township_ids": f"乡镇不存在：{missing}"})
        return wanted

    @staticmethod
    def _check_roles(roles: Iterable[str]) -> list[str]:
        roles = sorted(set(roles))
        unknown = [role for role in roles if role not in ROLES]
        if unknown:
            raise InvalidInput("角色不存在", fields={"roles": f"不认识的角色：{'、'.join(unknown)}"})
        if not roles:
            raise InvalidInput("至少选择一个角色", fields={"roles": "至少选择一个角色"})
        return roles

    async def create_user(
        self,
        actor: Actor,
        *,
        username: str,
        display_name: str,
        password: str | None,
        roles: Iterable[str],
        county_wide: bool = False,
        township_ids: Iterable[int] = (),
        can_emergency: bool = False,
        phone_endpoint: str | None = None,
    ) -> tuple[User, str | None]:
        """Create an account; returns it and the generated password when none was given."""
        username = username.strip()
        if not USERNAME_PATTERN.match(username):
            raise InvalidInput(
                "用户名只能用3到64个字母、数字、下划线、点或减号",
                fields={"username": "只能用字母、数字、下划线、点或减号，3到64个"},
            )
        checked_roles = self._check_roles(roles)
        generated = None
        if password is None:
            password = generated = generate_password()
        self._passwords.check_policy(password, username=username)
        password_hash = await self._passwords.hash(password)
        now = self._clock.now()
        try:
            async with self._sessions.begin() as session:
                scope = await self._check_townships(session, township_ids)
                if (
                    not county_wide
                    and not scope
                    and "admin" not in checked_roles
                    and set(checked_roles) & {"staff", "operator", "approver"}
                ):
                    raise InvalidInput(
                        "请选择所属乡镇，或设为全县范围",
                        fields={"township_ids": "请选择所属乡镇，或设为全县范围"},
                    )
                user = User(
                    username=username,
                    display_name=display_name.strip() or username,
                    password_hash=password_hash,
                    active=True,
                    county_wide=county_wide,
                    can_emergency=can_emergency,
                    phone_endpoint=phone_endpoint or None,
                    failed_logins=0,
                    session_epoch=0,
                    created_at=now,
                    roles=[UserRole(role=role) for role in checked_roles],
                    townships=[UserTownship(township_id=tid) for tid in scope],
                )
                session.add(user)
                await session.flush()
                audit.record(
                    session,
                    actor,
                    at=now,
                    action="user.create",
                    object_type="user",
                    object_id=user.id,
                    detail={
                        "username": username,
                        "roles": checked_roles,
                        "county_wide": county_wide,
                        "township_ids": scope,
                    },
                )
        except IntegrityError as exc:
            raise Conflict("用户名已被占用", code="user.exists", fields={"username": "已被占用"}) from exc
        return user, generated

    async def update_user(
        self,
        actor: Actor,
        user_id: int,
        *,
        display_name: str | None = None,
        roles: Iterable[str] | None = None,
        county_wide: bool | None = None,
        township_ids: Iterable[int] | None = None,
        can_emergency: bool | None = None,
        phone_endpoint: str | None = None,
        active: bool | None = None,
    ) -> User:
        now = self._clock.now()
        async with self._sessions.begin() as session:
            user = await session.get(User, user_id)
            if user is None:
                raise NotFound("用户不存在")
            before = _describe(user)
            if display_name is not None:
                user.display_name = display_name.strip() or user.username
            if roles is not None:
                checked = self._check_roles(roles)
                user.roles = [UserRole(role=role) for role in checked]
            if county_wide is not None:
                user.county_wide = county_wide
            if township_ids is not None:
                scope = await self._check_townships(session, township_ids)
                user.townships = [UserTownship(township_id=tid) for tid in scope]
            if can_emergency is not None:
                user.can_emergency = can_emergency
            if phone_endpoint is not None:
                user.phone_endpoint = phone_endpoint.strip() or None
            if active is not None and active != user.active:
                user.active = active
                if not active:
                    user.session_epoch += 1  # signs the user out everywhere
            await session.flush()
            if await self._active_admins(session) == 0:
                raise Conflict("至少要保留一个可用的系统管理员", code="user.last_admin")
            after = _describe(user)
            changed = {key: {"before": before[key], "after": after[key]} for key in after if before[key] != after[key]}
            if changed:
                audit.record(
                    session,
                    actor,
                    at=now,
                    action="user.update",
                    object_type="user",
                    object_id=user.id,
                    detail=changed,
                )
            return user

    async def reset_password(self, actor: Actor, user_id: int, new_password: str | None = None) -> str | None:
        """Set a new password (generated when none is given, and returned); signs the user out everywhere."""
        generated = None
        async with self._sessions.begin() as session:
            user = await session.get(User, user_id)
            if user is None:
                raise NotFound("用户不存在")
            if new_password is None:
                new_password = generated = generate_password()
            self._passwords.check_policy(new_password, username=user.username)
            user.password_hash = await self._passwords.hash(new_password)
            user.session_epoch += 1
            user.failed_logins = 0
            user.locked_until = None
            audit.record(
                session,
                actor,
                at=self._clock.now(),
                action="user.password_reset",
                object_type="user",
                object_id=user.id,
            )
        return generated

    async def change_own_password(self, principal: Principal, old_password: str, new_password: str) -> int:
        """Returns the new session epoch, so the caller can keep its own session signed in."""
        async with self._sessions.begin() as session:
            user = await session.get(User, principal.user_id)
            if user is None:
                raise NotFound("用户不存在")
            if not await self._passwords.verify(user.password_hash, old_password):
                raise InvalidInput("原密码不正确", fields={"old_password": "原密码不正确"})
            self._passwords.check_policy(new_password, username=user.username)
            user.password_hash = await self._passwords.hash(new_password)
            user.session_epoch += 1
            audit.record(
                session,
                principal.actor,
                at=self._clock.now(),
                action="user.password_change",
                object_type="user",
                object_id=user.id,
            )
            return user.session_epoch


def _describe(user: User) -> dict[str, object]:
    return {
        "display_name": user.display_name,
        "roles": sorted(role.role for role in user.roles),
        "county_wide": user.county_wide,
        "township_ids": sorted(scope.township_id for scope in user.townships),
        "can_emergency": user.can_emergency,
        "phone_endpoint": user.phone_endpoint,
        "active": user.active,
    }
