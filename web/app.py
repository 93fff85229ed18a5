"""Builds the aiohttp application from the services the composition root hands over."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from aiohttp import web
from aiohttp_session import setup as setup_sessions
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from web import keys
from web.api import Routes
from web.middleware import (
    TRUSTED_PROXIES,
    auth_middleware,
    client_address_middleware,
    error_middleware,
    security_headers,
)
from web.render import STATIC, setup_templates
from web.views import areas, auth, system, users

SESSION_COOKIE = "cunxiang_session"

RouteAdder = Callable[[Routes], None]

FOUNDATION_ROUTES: tuple[RouteAdder, ...] = (system.add_routes, auth.add_routes, areas.add_routes, users.add_routes)

ADMIN_NAV = (
    keys.NavItem("区域与终端", "/admin/areas", ("admin",), menu=keys.ADMIN_MENU),
    keys.NavItem("承办单位", "/admin/units", ("admin",), menu=keys.ADMIN_MENU),
    keys.NavItem("用户", "/admin/users", ("admin",), menu=keys.ADMIN_MENU),
    keys.NavItem("审计日志", "/admin/audit", ("admin",), menu=keys.ADMIN_MENU),
)


def build_app(
    config: keys.WebConfig,
    *,
    route_adders: Iterable[RouteAdder] = (),
    nav: Iterable[keys.NavItem] = (),
    todo: Iterable[keys.TodoSource] = (),
    version: str = "0",
) -> web.Application:
    """The web application; services are attached by the caller under the keys in ``web.keys``.

    ``route_adders`` lets each domain's web module add its routes (``nav`` its
    header links, ``todo`` what waits for the user on the home page); every
    route, whatever its module, goes through the same authentication and CSRF
    checks.
    """
    # Small bodies everywhere (forms, JSON); the few upload routes raise the limit for themselves.
    app = web.Application(
        client_max_size=config.max_form_bytes, middlewares=[client_address_middleware, error_middleware]
    )
    app[TRUSTED_PROXIES] = [ipaddress.ip_network(entry, strict=False) for entry in config.trusted_proxies]
    app[keys.CONFIG] = config
    app[keys.NAV] = [*nav, *ADMIN_NAV]
    app[keys.TODO] = list(todo)
    setup_sessions(
        app,
        EncryptedCookieStorage(
            config.session_key,
            cookie_name=SESSION_COOKIE,
            max_age=config.session_max_age_s,
            httponly=True,
            samesite="Lax",
            secure=config.cookie_secure,
        ),
    )
    # After the session middleware, so authentication can read the session.
    app.middlewares.append(auth_middleware)
    setup_templates(app, config.zone)
    routes = Routes(max_json_bytes=config.max_json_bytes, max_upload_bytes=config.max_upload_bytes)
    for add in (*FOUNDATION_ROUTES, *route_adders):
        add(routes)
    routes.install(app)
    app.router.add_static("/static/", STATIC, name="static", append_version=True)
    system.install_openapi(app, routes, title="村响 API", version=version)
    app.on_response_prepare.append(security_headers)
    return app
