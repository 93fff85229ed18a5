"""The OpenAPI document matches the router, route for route."""

from __future__ import annotations

from aiohttp import web

from tests.support.http import ApiClient
from web.api import openapi_path


async def test_every_api_route_is_documented_and_every_documented_route_exists(
    app: web.Application, admin: ApiClient
) -> None:
    document = await admin.get_json("/api/openapi.json")
    assert document["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, operations in document["paths"].items() for method in operations}
    routed = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if path and (path.startswith("/api/") or path == "/healthz") and route.method != "HEAD":
            routed.add((openapi_path(path), route.method))
    assert routed, "no API routes found"
    assert routed - documented == set(), "routes missing from the OpenAPI document"
    assert documented - routed == set(), "documented operations that do not exist"


async def test_request_bodies_are_described_by_schemas(admin: ApiClient) -> None:
    document = await admin.get_json("/api/openapi.json")
    create = document["paths"]["/api/v1/townships"]["post"]
    reference = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][reference.rsplit("/", 1)[1]]
    assert set(schema["required"]) == {"county_id", "name"}
    assert schema["additionalProperties"] is False
    login = document["paths"]["/api/v1/session"]["post"]
    assert login["security"] == []
