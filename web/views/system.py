"""Health, the OpenAPI document, the home page."""

from __future__ import annotations

from aiohttp import web
from aiohttp_session import get_session

from web import keys
from web.api import Routes, build_openapi, json_response
from web.render import live_mark, render

OPENAPI = web.AppKey("openapi", dict)


async def _signed_in_admin(request: web.Request) -> bool:
    """Whether the caller holds a live admin session (this route is public, so the middleware did not look)."""
    token = (await get_session(request)).get("sid")
    if not isinstance(token, str):
        return False
    found = await request.app[keys.ACCOUNTS].session_principal(token, request.remote)
    return found is not None and found[0].has_role("admin")


async def healthz(request: web.Request) -> web.Response:
    """Public: load balancers and monitoring ask it. Anonymous callers get statuses only; signed-in admins
    also get each component's detail (paths, error text, host names are for them, not for anyone asking)."""
    report = await request.app[keys.HEALTH].report()
    worst = "ok"
    for component in report.values():
        status = component.get("status")
        if status == "down" and component.get("required", True):
            worst = "down"
        elif status == "degraded" and worst == "ok":
            worst = "degraded"
    status = 503 if report.get("database", {}).get("status") == "down" else 200
    if not await _signed_in_admin(request):
        report = {name: _public(component) for name, component in report.items()}
    return json_response({"status": worst, "components": report}, status=status)


# What anyone may read of a component: its state, and which process is the active worker (a load balancer's
# question). Details, last errors, lock files and host names are for signed-in admins.
PUBLIC_FIELDS = ("status", "role")


def _public(component: dict[str, object]) -> dict[str, object]:
    return {key: component[key] for key in PUBLIC_FIELDS if key in component} or {"status": "down"}


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


async def home(request: web.Request) -> web.Response:
    me = keys.principal(request)
    since = await live_mark(request)  # before the counts are read
    todo = [item for source in request.app[keys.TODO] for item in await source(request, me) if item.count]
    todo.sort(key=lambda item: not item.urgent)  # overdue work first, otherwise in the domains' order
    counts = await request.app[keys.AREAS].tree_counts()
    return await render(request, "home.html", {"counts": counts, "todo": todo, **since})


def add_routes(routes: Routes) -> None:
    routes.api("GET", "/healthz", healthz, summary="健康检查", tag="系统", auth="public")
    routes.api("GET", "/api/openapi.json", openapi, summary="本接口文档（OpenAPI 3）", tag="系统")
    routes.page("GET", "/", home)


def install_openapi(app: web.Application, routes: Routes, *, title: str, version: str) -> None:
    app[OPENAPI] = build_openapi(routes.operations, title=title, version=version)
