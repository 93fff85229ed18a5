"""User administration and sign-in, with throttling and an audit trail."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.limiter import LimiterPolicy, LoginLimiter, throttled
from accounts.passwords import Passwords, generate_password
from accounts.principal import Principal
from accounts.sessions import SessionInfo, SessionPolicy, SessionTable
from accounts.sessions import info as session_info
from common.clock import Clock, SystemClock
from common.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from settings import SecuritySettings, ServerSettings
from storage import audit
from storage.audit import Actor
from storage.models import ROLES, Township, User, UserRole, UserTownship

log = logging.getLogger(__name__)

# Roles whose work is bound to townships: they need a scope (or county-wide) to see anything.
TOWNSHIP_SCOPED_ROLES = frozenset({"staff", "operator", "approver"})
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{3,64}$")
# The operator's own phone as Asterisk dials it: a PJSIP endpoint name or a dial string (PJSIP/op1, Local/100@ctx).
# Nothing else reaches the Originate action: no spaces, no line breaks, no "," or "|" that would add options.
PHONE_ENDPOINT_PATTERN = re.compile(r"^[A-Za-z0-9_./@&:+#*-]{1,128}$")


def _phone_endpoint(value: str | None) -> str | None:
    text = (value or "").strip()
    if not text:
        return None
    if not PHONE_ENDPOINT_PATTERN.match(text):
        message = "话机只能写终端名或拨号串（字母、数字和 _ . / @ & : + # * -），不能有空格或换行"
        raise InvalidInput(message, fields={"phone_endpoint": message})
    return text


@dataclass(frozen=True)
class SignIn:
    """A successful sign-in: who, and the new session (its token goes into the cookie, nowhere else)."""

    principal: Principal
    token: str
    session_id: int


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
        limiter: LimiterPolicy,
        session_policy: SessionPolicy,
        *,
        wall_clock: Clock | None = None,
    ) -> None:
        self._sessions = sessions
        self._passwords = passwords
        # The service's clock dates what happens (audit entries); how long a session lives and how long a
        # failed sign-in counts are measured on the wall clock, like the cookie's own lifetime, even when
        # the service's clock is a simulated one (the case tests move theirs by days).
        self._clock = clock
        self._wall = wall_clock or SystemClock()
        self._limiter = LoginLimiter(limiter)
        self._table = SessionTable(session_policy)

    @classmethod
    def from_settings(
        cls,
        security: SecuritySettings,
        server: ServerSettings,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
    ) -> AccountService:
        """The accounts part: password hashing cost and policy, the login limiter (``[security]``), and how
        long a session lives (``[server]``)."""
        passwords = Passwords(
            time_cost=security.password_time_cost,
            memory_kib=security.password_memory_kib,
            parallelism=security.password_parallelism,
            min_length=security.password_min_length,
        )
        limiter = LimiterPolicy(
            pair_free_attempts=security.login_free_attempts,
            name_free_attempts=security.login_name_free_attempts,
            address_free_attempts=security.login_address_free_attempts,
            base_delay_s=security.login_base_delay_s,
            max_delay_s=security.login_max_delay_s,
            window_s=security.login_window_s,
        )
        policy = SessionPolicy(max_age_s=server.session_max_age_s, idle_s=server.session_idle_s)
        return cls(sessions, passwords, clock, limiter, policy)

    # -- signing in and sessions ------------------------------------------------------------

    async def sign_in(self, username: str, password: str, ip: str | None, user_agent: str | None = None) -> SignIn:
        """A new session, or Unauthenticated / TooManyAttempts: the same answers whether the name exists or not."""
        address = ip or "unknown"
        name = username.strip()[:64]
        now, at = self._wall.now(), self._clock.now()
        async with self._sessions.begin() as session:
            wait = await self._limiter.wait_s(session, address, name, now)
        if wait > 0:
            raise throttled(wait)
        async with self._sessions.begin() as session:
            user = await session.scalar(select(User).where(User.username == name))
            valid = await self._passwords.verify(user.password_hash if user else None, password)
            if user is None or not valid or not user.active:
                # Recorded and committed with this transaction: raising here would roll it back.
                await self._limiter.failed(session, address, name, now)
                actor = Actor(user.id if user else None, name, ip)
                object_id = user.id if user else None
                audit.record(session, actor, at=at, action="login.failed", object_type="user", object_id=object_id)
                result = None
            else:
                await self._limiter.succeeded(session, address, name)
                user.last_login_at = at
                if self._passwords.needs_rehash(user.password_hash):
                    user.password_hash = await self._passwords.hash(password)
                token, session_id = await self._table.start(session, user, now, ip, user_agent)
                actor = Actor(user.id, user.username, ip)
                audit.record(
                    session,
                    actor,
                    at=at,
                    action="login",
                    object_type="user",
                    object_id=user.id,
                    detail={"session_id": session_id},
                )
                result = SignIn(principal_of(user, ip), token, session_id)
        if result is None:
            raise Unauthenticated("用户名或密码不正确", code="login.failed")
        return result

    async def session_principal(self, token: str, ip: str | None) -> tuple[Principal, int] | None:
        """The principal and session id a cookie's token stands for; None once the session has ended."""
        async with self._sessions.begin() as session:
            found = await self._table.find(session, token, self._wall.now())
            if found is None:
                return None
            row, user = found
            return principal_of(user, ip), row.id

    async def sign_out(self, token: str, ip: str | None) -> None:
        """Ends the session on the server: the cookie (or any copy of it) is worth nothing from now on."""
        now = self._clock.now()
        async with self._sessions.begin() as session:
            row = await self._table.end_token(session, token)
            if row is not None:
                user = await session.get(User, row.user_id)
                actor = Actor(row.user_id, user.username if user else "", ip)
                audit.record(session, actor, at=now, action="logout", object_type="session", object_id=row.id)

    async def list_sessions(self, user_id: int, current_id: int | None = None) -> list[SessionInfo]:
        async with self._sessions.begin() as session:
            if await session.get(User, user_id) is None:
                raise NotFound("用户不存在")
            now = self._wall.now()
            await self._table.sweep(session, now)
            return [session_info(row, current_id) for row in await self._table.list_for(session, user_id, now)]

    async def end_session(self, actor: Actor, user_id: int, session_id: int) -> None:
        """One session of ``user_id`` ends (its owner from another device, or an admin)."""
        async with self._sessions.begin() as session:
            if not await self._table.end(session, user_id, session_id):
                raise NotFound("这个登录已经结束或不存在", code="session.not_found")
            audit.record(
                session,
                actor,
                at=self._clock.now(),
                action="session.end",
                object_type="session",
                object_id=session_id,
                detail={"user_id": user_id},
            )

    async def end_sessions(self, actor: Actor, user_id: int, *, keep: int | None = None) -> int:
        """Every session of ``user_id`` ends but ``keep`` (the caller's own); returns how many ended."""
        async with self._sessions.begin() as session:
            if await session.get(User, user_id) is None:
                raise NotFound("用户不存在")
            ended = await self._table.end_all(session, user_id, keep=keep)
            audit.record(
                session,
                actor,
                at=self._clock.now(),
                action="session.end_all" if keep is None else "session.end_others",
                object_type="user",
                object_id=user_id,
                detail={"ended": ended},
            )
            return ended

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
        phone_endpoint = _phone_endpoint(phone_endpoint)
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
                    phone_endpoint=phone_endpoint,
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
                user.phone_endpoint = _phone_endpoint(phone_endpoint)
            if active is not None and active != user.active:
                user.active = active
                if not active:
                    await self._table.end_all(session, user.id)  # signs the user out everywhere
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
            await self._table.end_all(session, user.id)
            await self._limiter.forget_name(session, user.username)
            audit.record(
                session,
                actor,
                at=self._clock.now(),
                action="user.password_reset",
                object_type="user",
                object_id=user.id,
            )
        return generated

    async def change_own_password(
        self, principal: Principal, old_password: str, new_password: str, *, keep_session: int | None
    ) -> None:
        """A new password; every session of the user ends except ``keep_session`` (the one asking)."""
        async with self._sessions.begin() as session:
            user = await session.get(User, principal.user_id)
            if user is None:
                raise NotFound("用户不存在")
            if not await self._passwords.verify(user.password_hash, old_password):
                raise InvalidInput("原密码不正确", fields={"old_password": "原密码不正确"})
            self._passwords.check_policy(new_password, username=user.username)
            user.password_hash = await self._passwords.hash(new_password)
            await self._table.end_all(session, user.id, keep=keep_session)
            audit.record(
                session,
                principal.actor,
                at=self._clock.now(),
                action="user.password_change",
                object_type="user",
                object_id=user.id,
            )


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
