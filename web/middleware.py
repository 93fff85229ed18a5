"""Errors, authentication, CSRF and security headers, for every route."""

from __future__ import annotations

import hmac
import logging
from urllib.parse import quote, urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp_session import Session, get_session

from common.errors import (
    Conflict,
    CunxiangError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    TooManyAttempts,
    Unauthenticated,
)
from web import keys
from web.api import AUTH_ATTRIBUTE, error_body, json_response
from web.render import render_error_page
from web.validation import PayloadTooLarge, UnsupportedMediaType

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})

STATUS_OF: list[tuple[type[CunxiangError], int]] = [
    (UnsupportedMediaType, 415),
    (PayloadTooLarge, 413),
    (InvalidInput, 400),
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (Conflict, 409),
    (TooManyAttempts, 429),
    (ServiceUnavailable, 503),
]

HTTP_MESSAGES = {
    400: "请求格式不正确",
    404: "页面或对象不存在",
    405: "不支持这种请求方法",
    413: "上传的内容太大",
    415: "不支持的内容类型",
}


def status_for(exc: CunxiangError) -> int:
    for kind, status in STATUS_OF:
        if isinstance(exc, kind):
            return status
    return 400


def wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = HTTP_MESSAGES.get(exc.status, exc.reason)
        if wants_json(request):
            return json_response(error_body(f"http_{exc.status}", message), status=exc.status)
        return await render_error_page(request, exc.status, message)
    except CunxiangError as exc:
        status = status_for(exc)
        if exc.detail:
            log.info("%s %s -> %s %s: %s", request.method, request.path, status, exc.code, exc.detail)
        headers = {"Retry-After": str(int(exc.retry_after_s))} if isinstance(exc, TooManyAttempts) else None
        if wants_json(request):
            return json_response(error_body(exc.code, exc.message, exc.fields), status=status, headers=headers)
        if isinstance(exc, Unauthenticated):
            raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs)}") from None
        return await render_error_page(request, status, exc.message)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        message = "服务器内部错误，请稍后再试；如果一直出现，请联系管理员"
        if wants_json(request):
            return json_response(error_body("internal", message), status=500)
        return await render_error_page(request, 500, message)


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return origin is None
    parsed = urlsplit(origin)
    allowed = {request.host, urlsplit(request.app[keys.CONFIG].public_url).netloc}
    return parsed.netloc in allowed


async def _check_csrf(request: web.Request, session: Session) -> None:
    """Unsafe requests need proof they come from our own pages.

    JSON bodies are exempt: a cross-site page cannot send Content-Type
    application/json without a CORS preflight, which we never answer. Forms
    carry the session's token in ``csrf_token``; anything else in the
    ``X-CSRF-Token`` header. The Origin, when sent, must be ours either way.
    """
    if not _same_origin(request):
        raise PermissionDenied("请求来源不被允许", code="csrf.origin")
    if request.content_type == "application/json":
        return
    expected = session.get("csrf")
    supplied = request.headers.get("X-CSRF-Token")
    if supplied is None and request.content_type in FORM_TYPES:
        supplied_field = (await request.post()).get("csrf_token")
        supplied = supplied_field if isinstance(supplied_field, str) else None
    if not isinstance(expected, str) or not supplied or not hmac.compare_digest(supplied, expected):
        raise PermissionDenied("页面已过期，请刷新页面后重试", code="csrf")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    auth = getattr(request.match_info.handler, AUTH_ATTRIBUTE, None)
    if auth is None:
        # Unmatched paths fall through to the router's 404/405; static files are public.
        if request.match_info.http_exception is not None or request.path.startswith("/static/"):
            return await handler(request)
        auth = "session"
    if auth == "self":  # machine clients (terminals) authenticate in the handler with their own token
        return await handler(request)
    session = await get_session(request)
    if auth == "session":
        user_id, epoch = session.get("uid"), session.get("epoch")
        found = None
        if isinstance(user_id, int) and isinstance(epoch, int):
            found = await request.app[keys.ACCOUNTS].load_principal(user_id, epoch, request.remote)
        if found is None:
            if user_id is not None:
                session.invalidate()
            raise Unauthenticated("请先登录", code="unauthenticated")
        request[keys.PRINCIPAL] = found
    if request.method not in SAFE_METHODS:
        await _check_csrf(request, session)
    return await handler(request)


CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    if "text/html" in response.headers.get("Content-Type", ""):
        response.headers.setdefault("Cache-Control", "no-store")
