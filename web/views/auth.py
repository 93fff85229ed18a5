"""Signing in and out: the login page and the JSON session API."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from aiohttp import web
from aiohttp_session import Session, get_session, new_session
from pydantic import Field, RootModel
from yarl import URL

from accounts.principal import Principal, role_labels
from accounts.sessions import SessionInfo
from common.errors import UserError
from web import keys
from web.api import AUTH_ATTRIBUTE, Routes, json_response
from web.render import csrf_token, flash, redirect, render
from web.validation import ApiModel, read_form, read_post

# A path as our own links write it: printable ASCII, no spaces, no backslash.
SAFE_NEXT = re.compile(r"/[!#-\[\]-~]*")


class LoginIn(ApiModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


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
    signed_in = await request.app[keys.ACCOUNTS].sign_in(
        username, password, request.remote, request.headers.get("User-Agent")
    )
    # A fresh cookie on sign-in: a cookie planted before login is worth nothing after it.
    session = await new_session(request)
    session["sid"] = signed_in.token
    csrf_token(session)
    request[keys.SESSION_ID] = signed_in.session_id
    return signed_in.principal, session


async def _safe_next(request: web.Request, target: object) -> str:
    """Where to go after signing in: a page of this service, or the home page.

    Only a path that this service answers with a page is taken: never a scheme, a
    host (``//evil.example``, ``/\\evil.example``, ``/%09/evil.example``), a control
    character browsers would silently drop, or an API address.
    """
    if not isinstance(target, str) or not SAFE_NEXT.fullmatch(target):
        return "/"
    parsed = urlsplit(target)
    if parsed.scheme or parsed.netloc or not parsed.path.startswith("/") or parsed.path.startswith("//"):
        return "/"
    if "//" in unquote(parsed.path) or "\\" in unquote(parsed.path) or parsed.path.startswith(("/api/", "/logout")):
        return "/"
    # The router reads only the method and the path of what it resolves; the request itself may be consumed.
    match = await request.app.router.resolve(cast(web.Request, _PageProbe("GET", URL(target))))
    if match.http_exception is not None or getattr(match.handler, AUTH_ATTRIBUTE, None) != "session":
        return "/"
    return target


@dataclass(frozen=True)
class _PageProbe:
    method: str
    rel_url: URL


async def login_page(request: web.Request) -> web.Response:
    target = await _safe_next(request, request.query.get("next", "/"))
    return await render(request, "login.html", {"next": target, "error": None})


async def login_form(request: web.Request) -> web.StreamResponse:
    # Where to go next is read raw and only ever checked: a hostile value must not fail the sign-in itself.
    target = await _safe_next(request, (await read_post(request)).get("next", "/"))
    try:
        form = await read_form(request, LoginIn, ignore=("next",))
        await _start_session(request, form.username, form.password)
    except UserError as exc:
        status = {"login.failed": 401, "login.throttled": 429}.get(exc.code, 400)
        return await render(request, "login.html", {"next": target, "error": exc.message}, status=status)
    raise web.HTTPSeeOther(target)


async def _sign_out(request: web.Request) -> None:
    session = await get_session(request)
    token = session.get("sid")
    if isinstance(token, str):
        await request.app[keys.ACCOUNTS].sign_out(token, request.remote)
    session.invalidate()


async def logout(request: web.Request) -> web.StreamResponse:
    await _sign_out(request)
    raise web.HTTPSeeOther("/login")


async def api_login(request: web.Request, body: LoginIn) -> web.Response:
    principal, session = await _start_session(request, body.username, body.password)
    return json_response(me_body(principal, session))


async def api_logout(request: web.Request) -> web.Response:
    await _sign_out(request)
    return json_response({"ok": True})


async def api_me(request: web.Request) -> web.Response:
    return json_response(me_body(keys.principal(request), await get_session(request)))


async def _change_password(request: web.Request, old_password: str, new_password: str) -> None:
    # This session stays signed in; every other one ends.
    await request.app[keys.ACCOUNTS].change_own_password(
        keys.principal(request), old_password, new_password, keep_session=request[keys.SESSION_ID]
    )


async def api_change_password(request: web.Request, body: PasswordChangeIn) -> web.Response:
    await _change_password(request, body.old_password, body.new_password)
    return json_response({"ok": True})


async def password_page(request: web.Request) -> web.Response:
    return await render(request, "password.html", {"error": None, "done": False})


async def password_form(request: web.Request) -> web.Response:
    try:
        form = await read_form(request, PasswordChangeIn)
        await _change_password(request, form.old_password, form.new_password)
    except UserError as exc:
        return await render(request, "password.html", {"error": exc.message, "done": False}, status=400)
    return await render(request, "password.html", {"error": None, "done": True})


# -- one's own sessions (登录设备) ---------------------------------------------------------------


class SessionOut(ApiModel):
    id: int
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None
    device: str = Field(description="浏览器和系统，从 User-Agent 概括")
    current: bool = Field(description="是否就是发出这个请求的登录")


class SessionList(RootModel[list[SessionOut]]):
    pass


def session_json(info: SessionInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "created_at": info.created_at,
        "last_seen_at": info.last_seen_at,
        "expires_at": info.expires_at,
        "ip": info.ip,
        "user_agent": info.user_agent,
        "device": describe_device(info.user_agent),
        "current": info.current,
    }


def describe_device(user_agent: str | None) -> str:
    """What a person recognises their device by ("谷歌浏览器 · 电脑"), from the User-Agent, in Chinese."""
    text = user_agent or ""
    browser = next((name for marker, name in BROWSERS if marker in text), "浏览器")
    kind = next((name for marker, name in DEVICE_KINDS if marker in text), "")
    return f"{browser} · {kind}" if kind else browser


# First match wins: Edge and QQ's browser also say "Chrome/", Chrome also says "Safari/".
BROWSERS = (
    ("MicroMessenger", "微信"),
    ("Edg/", "微软浏览器"),
    ("QQBrowser", "腾讯浏览器"),
    ("Firefox/", "火狐浏览器"),
    ("Chrome/", "谷歌浏览器"),
    ("Safari/", "苹果浏览器"),
    ("python", "程序"),
    ("curl", "程序"),
)
DEVICE_KINDS = (
    ("iPad", "平板"),
    ("Android", "手机"),
    ("iPhone", "手机"),
    ("Windows", "电脑"),
    ("Mac OS X", "电脑"),
    ("Linux", "电脑"),
)


async def _own_sessions(request: web.Request) -> list[SessionInfo]:
    me = keys.principal(request)
    return await request.app[keys.ACCOUNTS].list_sessions(me.user_id, current_id=request[keys.SESSION_ID])


async def api_my_sessions(request: web.Request) -> web.Response:
    return json_response([session_json(info) for info in await _own_sessions(request)])


async def api_end_my_session(request: web.Request) -> web.Response:
    me = keys.principal(request)
    await request.app[keys.ACCOUNTS].end_session(me.actor, me.user_id, int(request.match_info["id"]))
    return json_response({"ok": True})


async def api_end_my_other_sessions(request: web.Request) -> web.Response:
    me = keys.principal(request)
    ended = await request.app[keys.ACCOUNTS].end_sessions(me.actor, me.user_id, keep=request[keys.SESSION_ID])
    return json_response({"ended": ended})


async def sessions_page(request: web.Request) -> web.Response:
    sessions = [session_json(info) for info in await _own_sessions(request)]
    return await render(request, "sessions.html", {"sessions": sessions})


async def end_session_form(request: web.Request) -> web.StreamResponse:
    me = keys.principal(request)
    session_id = int(request.match_info["id"])
    try:
        await request.app[keys.ACCOUNTS].end_session(me.actor, me.user_id, session_id)
    except UserError as exc:
        await flash(request, exc.message, "error")
        raise redirect("/account/sessions") from None
    if session_id == request[keys.SESSION_ID]:  # ended the one in use: this browser is signed out too
        (await get_session(request)).invalidate()
        raise redirect("/login")
    await flash(request, "已结束这个登录，那台设备需要重新登录")
    raise redirect("/account/sessions")


async def end_other_sessions_form(request: web.Request) -> web.StreamResponse:
    me = keys.principal(request)
    ended = await request.app[keys.ACCOUNTS].end_sessions(me.actor, me.user_id, keep=request[keys.SESSION_ID])
    await flash(request, f"已退出其他 {ended} 处登录" if ended else "没有其他设备上的登录")
    raise redirect("/account/sessions")


def add_routes(routes: Routes) -> None:
    routes.page("GET", "/login", login_page, auth="public")
    routes.page("POST", "/login", login_form, auth="public")
    routes.page("POST", "/logout", logout)
    routes.page("GET", "/account/password", password_page)
    routes.page("POST", "/account/password", password_form)
    routes.page("GET", "/account/sessions", sessions_page)
    routes.page("POST", r"/account/sessions/{id:\d+}/end", end_session_form)
    routes.page("POST", "/account/sessions/end-others", end_other_sessions_form)
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
    routes.api(
        "GET", "/api/v1/session/devices", api_my_sessions, summary="我的登录设备", tag="登录", response=SessionList
    )
    routes.api(
        "DELETE",
        r"/api/v1/session/devices/{id:\d+}",
        api_end_my_session,
        summary="结束自己的一处登录",
        tag="登录",
    )
    routes.api(
        "POST",
        "/api/v1/session/devices/end-others",
        api_end_my_other_sessions,
        summary="退出其他所有设备上的登录",
        tag="登录",
    )


__all__ = ["add_routes", "role_labels"]
