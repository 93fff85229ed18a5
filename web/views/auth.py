"""Signing in and out: the login page and the JSON session API."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp_session import Session, get_session, new_session
from pydantic import Field

from accounts.principal import Principal, role_labels
from common.errors import UserError
from web import keys
from web.api import Routes, json_response
from web.render import csrf_token, render
from web.validation import ApiModel, read_form


class LoginIn(ApiModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class LoginForm(LoginIn):
    next: str = "/"


class PasswordChangeIn(ApiModel):
    old_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class Me(ApiModel):
    id: int
    username: str
    display_name: str
    roles: list[str]
    county_wide: bool
    township_ids: list[int]
    can_emergency: bool
    csrf_token: str = Field(description="表单以外的非JSON请求（如无请求体的DELETE）放在 X-CSRF-Token 请求头里")


def me_body(principal: Principal, session: Session) -> dict[str, Any]:
    return {
        "id": principal.user_id,
        "username": principal.username,
        "display_name": principal.display_name,
        "roles": sorted(principal.roles),
        "county_wide": principal.county_wide,
        "township_ids": sorted(principal.township_ids),
        "can_emergency": principal.can_emergency,
        "csrf_token": csrf_token(session),
    }


async def _start_session(request: web.Request, username: str, password: str) -> tuple[Principal, Session]:
    principal, epoch = await request.app[keys.ACCOUNTS].authenticate(username, password, request.remote)
    # A fresh session on sign-in: a cookie planted before login is worth nothing after it.
    session = await new_session(request)
    session["uid"] = principal.user_id
    session["epoch"] = epoch
    csrf_token(session)
    return principal, session


def _safe_next(target: str) -> str:
    # Only local paths: never bounce a freshly signed-in user to another site.
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


async def login_page(request: web.Request) -> web.Response:
    return await render(request, "login.html", {"next": _safe_next(request.query.get("next", "/")), "error": None})


async def login_form(request: web.Request) -> web.StreamResponse:
    try:
        form = await read_form(request, LoginForm)
        await _start_session(request, form.username, form.password)
    except UserError as exc:
        raw = await request.post()
        target = raw.get("next")
        context = {"next": _safe_next(target if isinstance(target, str) else "/"), "error": exc.message}
        return await render(request, "login.html", context, status=401 if exc.code == "login.failed" else 400)
    raise web.HTTPSeeOther(_safe_next(form.next))


async def logout(request: web.Request) -> web.StreamResponse:
    session = await get_session(request)
    session.invalidate()
    raise web.HTTPSeeOther("/login")


async def api_login(request: web.Request, body: LoginIn) -> web.Response:
    principal, session = await _start_session(request, body.username, body.password)
    return json_response(me_body(principal, session))


async def api_logout(request: web.Request) -> web.Response:
    session = await get_session(request)
    session.invalidate()
    return json_response({"ok": True})


async def api_me(request: web.Request) -> web.Response:
    return json_response(me_body(keys.principal(request), await get_session(request)))


async def api_change_password(request: web.Request, body: PasswordChangeIn) -> web.Response:
    me = keys.principal(request)
    epoch = await request.app[keys.ACCOUNTS].change_own_password(me, body.old_password, body.new_password)
    session = await get_session(request)
    session["epoch"] = epoch  # this session stays signed in; every other one ends
    return json_response({"ok": True})


async def password_page(request: web.Request) -> web.Response:
    return await render(request, "password.html", {"error": None, "done": False})


async def password_form(request: web.Request) -> web.Response:
    try:
        form = await read_form(request, PasswordChangeIn)
        epoch = await request.app[keys.ACCOUNTS].change_own_password(
            keys.principal(request), form.old_password, form.new_password
        )
    except UserError as exc:
        return await render(request, "password.html", {"error": exc.message, "done": False}, status=400)
    session = await get_session(request)
    session["epoch"] = epoch
    return await render(request, "password.html", {"error": None, "done": True})


def add_routes(routes: Routes) -> None:
    routes.page("GET", "/login", login_page, auth="public")
    routes.page("POST", "/login", login_form, auth="public")
    routes.page("POST", "/logout", logout)
    routes.page("GET", "/account/password", password_page)
    routes.page("POST", "/account/password", password_form)
    routes.api(
        "POST", "/api/v1/session", api_login, summary="登录", tag="登录", body=LoginIn, response=Me, auth="public"
    )
    routes.api("DELETE", "/api/v1/session", api_logout, summary="退出登录", tag="登录")
    routes.api("GET", "/api/v1/session", api_me, summary="当前用户", tag="登录", response=Me)
    routes.api(
        "POST",
        "/api/v1/session/password",
        api_change_password,
        summary="修改自己的密码",
        tag="登录",
        body=PasswordChangeIn,
    )


__all__ = ["add_routes", "role_labels"]
