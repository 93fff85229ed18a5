"""Errors, authentication, CSRF and security headers, for every route."""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Sequence
from urllib.parse import quote, urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp_session import Session, get_session

from common.errors import (
    Conflict,
    CunxiangError,
    InsufficientStorage,
    InvalidInput,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    TooManyAttempts,
    Unauthenticated,
)
from web import keys
from web.api import AUTH_ATTRIBUTE, BODY_LIMIT_ATTRIBUTE, error_body, json_response
from web.render import render_error_page
from web.validation import PayloadTooLarge, UnsupportedMediaType, read_post

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
TRUSTED_PROXIES = web.AppKey("trusted_proxies", list[IPNetwork])
DEFAULT_PORTS = {"http": 80, "https": 443}

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
    (InsufficientStorage, 507),
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


def _origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or URL, the default port filled in; None when it is not one."""
    try:
        parsed = urlsplit(url)
        port = parsed.port
    except ValueError:
        return None
    scheme = parsed.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parsed.hostname:
        return None
    return scheme, parsed.hostname.lower(), port or DEFAULT_PORTS[scheme]


def _same_origin(request: web.Request) -> bool:
    """No Origin (old browsers, curl), or exactly ours: scheme, host and port all compared."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    given = _origin_of(origin)
    if given is None:
        return False  # "null" (sandboxed frames, file: pages) or nonsense
    ours = {_origin_of(f"{request.scheme}://{request.host}"), _origin_of(request.app[keys.CONFIG].public_url)}
    return given in ours


async def _check_csrf(request: web.Request, session: Session) -> None:
    """Unsafe requests need proof they come from our own pages.

    JSON bodies are exempt: a cross-site page cannot send Content-Type
    application/json without a CORS preflight, which we never answer. Forms
    carry the session's token in ``csrf_token``; anything else in the
    ``X-CSRF-Token`` header. The Origin, when sent, must be ours either way.

    The decision comes before any large body is read: an upload (multipart)
    must carry the header (our pages send it with fetch), and a form is read
    only up to the small form limit.
    """
    if not _same_origin(request):
        raise PermissionDenied("请求来源不被允许", code="csrf.origin")
    if request.content_type == "application/json":
        return
    expected = session.get("csrf")
    supplied = request.headers.get("X-CSRF-Token")
    if supplied is None and request.content_type == "application/x-www-form-urlencoded":
        supplied_field = (await read_post(request)).get("csrf_token")
        supplied = supplied_field if isinstance(supplied_field, str) else None
    if not isinstance(expected, str) or not supplied or not hmac.compare_digest(supplied, expected):
        raise PermissionDenied("页面已过期，请刷新页面后重试", code="csrf")


def _check_length(request: web.Request) -> None:
    """A declared body larger than the route takes is refused before a byte of it is read."""
    limit = getattr(request.match_info.handler, BODY_LIMIT_ATTRIBUTE, None) or request.client_max_size
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"请求体太大，最多{max(1, limit // 1024)} KB", detail=f"{request.content_length} bytes")


@web.middleware
async def client_address_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Behind a trusted reverse proxy, ``request.remote`` becomes the real client (for the limiter and audit)."""
    trusted = request.app[TRUSTED_PROXIES]
    if trusted and request.remote:
        client = client_address(request.remote, request.headers.getall("X-Forwarded-For", []), trusted)
        if client != request.remote:
            request = request.clone(remote=client)
    return await handler(request)


def client_address(peer: str, forwarded_for: list[str], trusted: Sequence[IPNetwork]) -> str:
    """The nearest address in X-Forwarded-For that is not one of our proxies (read from the right).

    Each proxy appends the address it was reached from, so everything left of the
    first untrusted hop was written by the client itself and is not believed.
    """

    def is_trusted(text: str) -> bool:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return False
        return any(address in network for network in trusted)

    if not is_trusted(peer):
        return peer
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    client = peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return client  # a hop we cannot read: keep the last one we could believe
        client = hop
        if not is_trusted(hop):
            return hop
    return client


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    auth = getattr(request.match_info.handler, AUTH_ATTRIBUTE, None)
    if auth is None:
        # Unmatched paths fall through to the router's 404/405; static files are public.
        if request.match_info.http_exception is not None or request.path.startswith("/static/"):
            return await handler(request)
        auth = "session"
    if request.method not in SAFE_METHODS:
        _check_length(request)
    if auth == "self":  # machine clients (terminals) authenticate in the handler with their own token
        return await handler(request)
    session = await get_session(request)
    if auth == "session":
        token = session.get("sid")
        found = None
        if isinstance(token, str):
            found = await request.app[keys.ACCOUNTS].session_principal(token, request.remote)
        if found is None:
            if token is not None:
                session.invalidate()
            raise Unauthenticated("请先登录", code="unauthenticated")
        request[keys.PRINCIPAL], request[keys.SESSION_ID] = found
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
    # Who we are is nobody's business; aiohttp would announce its name and version.
    response.headers["Server"] = "cunxiang"
    content_type = response.headers.get("Content-Type", "")
    if "text/html" in content_type or "application/json" in content_type:
        # Pages and API answers carry people's data: no shared or browser cache keeps them.
        response.headers.setdefault("Cache-Control", "no-store")
