"""User administration and the audit-log viewer (admins)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from accounts.principal import ROLE_LABELS
from common.errors import InvalidInput, UserError
from storage import audit
from storage.models import AuditEntry, User
from web import audit_text, keys
from web.api import Routes, json_response
from web.render import flash, redirect, render
from web.validation import ApiModel, read_form, read_query
from web.views.auth import SessionList, session_json

Role = Literal["admin", "staff", "approver", "operator", "inspector", "leader"]


class UserIn(ApiModel):
    username: str = Field(min_length=3, max_length=64, title="用户名")
    display_name: str = Field(min_length=1, max_length=64, title="姓名")
    password: str | None = Field(
        None, max_length=128, title="初始密码", description="不填则生成随机密码并在响应里返回一次"
    )
    roles: list[Role] = Field(min_length=1, title="角色")
    county_wide: bool = Field(False, title="全县")
    township_ids: list[int] = Field(default_factory=list, title="乡镇")
    can_emergency: bool = Field(False, title="应急广播")
    phone_endpoint: str | None = Field(
        None, max_length=128, title="本人话机", description="回拨时先呼叫的本人话机（PJSIP终端名或拨号串）"
    )


class UserPatch(ApiModel):
    display_name: str | None = Field(None, min_length=1, max_length=64, title="姓名")
    roles: list[Role] | None = Field(None, min_length=1, title="角色")
    county_wide: bool | None = Field(None, title="全县")
    township_ids: list[int] | None = Field(None, title="乡镇")
    can_emergency: bool | None = Field(None, title="应急广播")
    phone_endpoint: str | None = Field(None, max_length=128, title="本人话机")
    active: bool | None = Field(None, title="账号可用")


class ActiveForm(ApiModel):
    active: bool


class PasswordResetIn(ApiModel):
    password: str | None = Field(None, max_length=128, description="不填则生成随机密码")


class AuditQuery(ApiModel):
    user_id: int | None = None
    action: str | None = Field(None, max_length=64)
    object_type: str | None = Field(None, max_length=32)
    object_id: str | None = Field(None, max_length=64)
    since: date | None = Field(None, description="起始日期（含，北京时间）")
    until: date | None = Field(None, description="截止日期（含，北京时间）")
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0)


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "active": user.active,
        "roles": sorted(role.role for role in user.roles),
        "county_wide": user.county_wide,
        "township_ids": sorted(scope.township_id for scope in user.townships),
        "can_emergency": user.can_emergency,
        "phone_endpoint": user.phone_endpoint,
        "created_at": user.created_at,
        "last_login_at": user.last_login_at,
    }


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at,
        "user_id": entry.user_id,
        "username": entry.username,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "detail": entry.detail,
        "ip": entry.ip,
    }


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])


async def list_users(request: web.Request) -> web.Response:
    return json_response([user_json(u) for u in await request.app[keys.ACCOUNTS].list_users()])


async def get_user(request: web.Request) -> web.Response:
    return json_response(user_json(await request.app[keys.ACCOUNTS].get_user(_id(request))))


async def create_user(request: web.Request, body: UserIn) -> web.Response:
    user, generated = await request.app[keys.ACCOUNTS].create_user(keys.principal(request).actor, **body.model_dump())
    result = user_json(await request.app[keys.ACCOUNTS].get_user(user.id))
    if generated:
        result["password"] = generated  # shown once, never stored in clear
    return json_response(result, status=201)


async def patch_user(request: web.Request, body: UserPatch) -> web.Response:
    accounts = request.app[keys.ACCOUNTS]
    await accounts.update_user(keys.principal(request).actor, _id(request), **body.model_dump(exclude_unset=True))
    return json_response(user_json(await accounts.get_user(_id(request))))


async def reset_password(request: web.Request, body: PasswordResetIn) -> web.Response:
    generated = await request.app[keys.ACCOUNTS].reset_password(
        keys.principal(request).actor, _id(request), body.password
    )
    return json_response({"ok": True, "password": generated})


async def list_roles(request: web.Request) -> web.Response:
    return json_response([{"role": role, "label": label} for role, label in ROLE_LABELS.items()])


def _audit_statement(request: web.Request, query: AuditQuery) -> Any:
    zone = request.app[keys.CONFIG].zone
    since = datetime.combine(query.since, time(), zone) if query.since else None
    until = datetime.combine(query.until + timedelta(days=1), time(), zone) if query.until else None
    return audit.query(
        user_id=query.user_id,
        action=query.action,
        object_type=query.object_type,
        object_id=query.object_id,
        since=since,
        until=until,
    )


async def _audit_entries(request: web.Request, query: AuditQuery) -> list[AuditEntry]:
    statement = _audit_statement(request, query).limit(query.limit).offset(query.offset)
    async with request.app[keys.SESSIONS]() as session:
        return list((await session.scalars(statement)).all())


async def list_audit(request: web.Request, query: AuditQuery) -> web.Response:
    return json_response([audit_json(entry) for entry in await _audit_entries(request, query)])


# -- pages ---------------------------------------------------------------------------------


async def users_page(request: web.Request) -> web.Response:
    context = {
        "users": await request.app[keys.ACCOUNTS].list_users(),
        "townships": await request.app[keys.AREAS].list_townships(keys.principal(request)),
    }
    return await render(request, "admin/users.html", context)


async def user_page(request: web.Request) -> web.Response:
    accounts = request.app[keys.ACCOUNTS]
    context = {
        "user": await accounts.get_user(_id(request)),
        "townships": await request.app[keys.AREAS].list_townships(keys.principal(request)),
        "sessions": [
            session_json(info) for info in await accounts.list_sessions(_id(request), request[keys.SESSION_ID])
        ],
    }
    return await render(request, "admin/user.html", context)


# -- a user's sessions (admins see them and end them) ------------------------------------------


async def list_user_sessions(request: web.Request) -> web.Response:
    sessions = await request.app[keys.ACCOUNTS].list_sessions(_id(request), request[keys.SESSION_ID])
    return json_response([session_json(info) for info in sessions])


async def end_user_session(request: web.Request) -> web.Response:
    me = keys.principal(request)
    await request.app[keys.ACCOUNTS].end_session(me.actor, _id(request), int(request.match_info["session_id"]))
    return json_response({"ok": True})


async def end_user_sessions(request: web.Request) -> web.Response:
    ended = await request.app[keys.ACCOUNTS].end_sessions(keys.principal(request).actor, _id(request))
    return json_response({"ended": ended})


async def end_user_session_form(request: web.Request) -> web.StreamResponse:
    me = keys.principal(request)
    try:
        await request.app[keys.ACCOUNTS].end_session(me.actor, _id(request), int(request.match_info["session_id"]))
        await flash(request, "已结束这个登录")
    except UserError as exc:
        await flash(request, exc.message, "error")
    raise redirect(f"/admin/users/{_id(request)}")


async def end_user_sessions_form(request: web.Request) -> web.StreamResponse:
    ended = await request.app[keys.ACCOUNTS].end_sessions(keys.principal(request).actor, _id(request))
    await flash(request, f"已结束 {ended} 处登录")
    raise redirect(f"/admin/users/{_id(request)}")


CHECKBOXES = ("county_wide", "can_emergency")


async def create_user_form(request: web.Request) -> web.StreamResponse:
    try:
        form = await read_form(request, UserIn, checkboxes=CHECKBOXES)
        user, generated = await request.app[keys.ACCOUNTS].create_user(
            keys.principal(request).actor, **form.model_dump()
        )
    except UserError as exc:
        await flash(request, exc.message, "error")
        raise redirect("/admin/users") from None
    shown = f"，初始密码（只显示这一次）：{generated}" if generated else ""
    await flash(request, f"已创建用户 {user.username}{shown}")
    raise redirect(f"/admin/users/{user.id}")


async def update_user_form(request: web.Request) -> web.StreamResponse:
    try:
        form = await read_form(request, UserPatch, checkboxes=CHECKBOXES)
        changes = form.model_dump(exclude_unset=True)
        changes.pop("active", None)  # disabling has its own button (below), with its own question
        changes.setdefault("township_ids", [])  # no township ticked posts nothing: it means "none"
        if "roles" not in changes:
            raise InvalidInput("请至少选择一个角色", fields={"roles": "至少选一个"})
        await request.app[keys.ACCOUNTS].update_user(keys.principal(request).actor, _id(request), **changes)
        await flash(request, "已保存")
    except UserError as exc:
        await flash(request, exc.message, "error")
    raise redirect(f"/admin/users/{_id(request)}")


async def user_active_form(request: web.Request) -> web.StreamResponse:
    """停用 or 启用 an account: a disabled user is signed out everywhere and cannot sign in."""
    me = keys.principal(request)
    try:
        form = await read_form(request, ActiveForm)
        if not form.active and _id(request) == me.user_id:
            raise InvalidInput("不能停用自己正在使用的账号", code="user.self_disable")
        user = await request.app[keys.ACCOUNTS].update_user(me.actor, _id(request), active=form.active)
        await flash(
            request,
            f"已启用账号 {user.username}" if form.active else f"已停用账号 {user.username}，它已在所有设备上退出",
        )
    except UserError as exc:
        await flash(request, exc.message, "error")
    raise redirect(f"/admin/users/{_id(request)}")


async def reset_password_form(request: web.Request) -> web.StreamResponse:
    try:
        form = await read_form(request, PasswordResetIn)
        generated = await request.app[keys.ACCOUNTS].reset_password(
            keys.principal(request).actor, _id(request), form.password
        )
        await flash(request, f"密码已重置，新密码（只显示这一次）：{generated}" if generated else "密码已重置")
    except UserError as exc:
        await flash(request, exc.message, "error")
    raise redirect(f"/admin/users/{_id(request)}")


async def audit_page(request: web.Request) -> web.Response:
    try:
        query = read_query(request, AuditQuery)
        entries = await _audit_entries(request, query)
        error = None
    except UserError as exc:
        query, entries, error = AuditQuery(), [], exc.message
    users = await request.app[keys.ACCOUNTS].list_users()
    async with request.app[keys.SESSIONS]() as session:
        lines = await audit_text.describe_all(session, entries)
    return await render(
        request,
        "admin/audit.html",
        {
            "lines": lines,
            "entries": entries,
            "query": query,
            "users": users,
            "error": error,
            "actions": audit_text.action_choices(),
            "objects": audit_text.object_choices(),
        },
    )


def add_routes(routes: Routes) -> None:
    admin = ("admin",)
    tag = "用户与审计"
    item = r"{id:\d+}"
    routes.api("GET", "/api/v1/roles", list_roles, summary="角色列表", tag=tag)
    routes.api("GET", "/api/v1/users", list_users, summary="用户列表", tag=tag, roles=admin)
    routes.api("POST", "/api/v1/users", create_user, summary="新建用户", tag=tag, body=UserIn, roles=admin, status=201)
    routes.api("GET", f"/api/v1/users/{item}", get_user, summary="用户详情", tag=tag, roles=admin)
    routes.api(
        "PATCH",
        f"/api/v1/users/{item}",
        patch_user,
        summary="修改用户（角色、范围、停用）",
        tag=tag,
        body=UserPatch,
        roles=admin,
    )
    routes.api(
        "POST",
        f"/api/v1/users/{item}/password",
        reset_password,
        summary="重置密码",
        tag=tag,
        body=PasswordResetIn,
        roles=admin,
    )
    sessions = rf"/api/v1/users/{item}/sessions"
    routes.api(
        "GET", sessions, list_user_sessions, summary="用户的登录设备", tag=tag, roles=admin, response=SessionList
    )
    routes.api("DELETE", sessions, end_user_sessions, summary="让用户在所有设备上退出登录", tag=tag, roles=admin)
    routes.api(
        "DELETE",
        sessions + r"/{session_id:\d+}",
        end_user_session,
        summary="结束用户的一处登录",
        tag=tag,
        roles=admin,
    )
    routes.api("GET", "/api/v1/audit", list_audit, summary="审计日志", tag=tag, query=AuditQuery, roles=admin)
    routes.page("GET", "/admin/users", users_page, roles=admin)
    routes.page("POST", "/admin/users", create_user_form, roles=admin)
    routes.page("GET", f"/admin/users/{item}", user_page, roles=admin)
    routes.page("POST", f"/admin/users/{item}", update_user_form, roles=admin)
    routes.page("POST", f"/admin/users/{item}/password", reset_password_form, roles=admin)
    routes.page("POST", rf"/admin/users/{item}/sessions/{{session_id:\d+}}/end", end_user_session_form, roles=admin)
    routes.page("POST", f"/admin/users/{item}/sessions/end-all", end_user_sessions_form, roles=admin)
    routes.page("POST", f"/admin/users/{item}/active", user_active_form, roles=admin)
    routes.page("GET", "/admin/audit", audit_page, roles=admin)
