"""Route registration with the metadata the OpenAPI document is built from.

Every route is added through :class:`Routes`, so the document cannot drift
from the router: a test walks the router and checks each API route is in it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from common.errors import NotFound
from web import keys
from web.validation import MAX_INT, read_json, read_query

Handler = Callable[..., Awaitable[web.StreamResponse]]
Auth = Literal["session", "public", "self"]

AUTH_ATTRIBUTE = "__cunxiang_auth__"
# The largest body a route takes, read by the middleware before any of it is (uploads take more than forms).
BODY_LIMIT_ATTRIBUTE = "__cunxiang_body_limit__"


def ascii_digits(path: str) -> str:
    r"""A route pattern whose ``\d`` means 0-9 only.

    Python's ``\d`` also matches Arabic-Indic, fullwidth and mathematical digits,
    and ``int()`` reads them: ``/notices/١١`` would be notice 11 under another
    name, and a long run of them overflows the drivers.
    """
    return path.replace(r"\d", "[0-9]")


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, default=_default)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps, headers=headers)


def error_body(code: str, message: str, fields: dict[str, str] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    auth: Auth
    roles: tuple[str, ...]
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    content_type: str
    description: str = ""
    # Routes that take a file (multipart) may receive up to this many bytes; None: the small form/JSON limit.
    upload_bytes: int | None = None


@dataclass
class Routes:
    """Collects API operations and pages, and wraps handlers with parsing and role checks."""

    max_json_bytes: int
    max_upload_bytes: int = 50 * 1024 * 1024
    operations: list[Operation] = field(default_factory=list)
    _routes: list[web.RouteDef] = field(default_factory=list)

    def api(
        self,
        method: str,
        path: str,
        handler: Handler,
        *,
        summary: str,
        tag: str,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        roles: Iterable[str] = (),
        auth: Auth = "session",
        status: int = 200,
        content_type: str = "application/json",
        description: str = "",
        upload: bool = False,
    ) -> None:
        """An API operation under /api/: documented, parsed, role-checked (``upload``: takes a file)."""
        operation = Operation(
            method=method.upper(),
            path=path,
            summary=summary,
            tag=tag,
            auth=auth,
            roles=tuple(roles),
            body=body,
            query=query,
            response=response,
            status=status,
            content_type=content_type,
            description=description,
            upload_bytes=self.max_upload_bytes if upload else None,
        )
        self.operations.append(operation)
        self._routes.append(web.route(operation.method, ascii_digits(path), self._wrap(handler, operation)))

    def page(
        self, method: str, path: str, handler: Handler, *, roles: Iterable[str] = (), auth: Auth = "session"
    ) -> None:
        """A server-rendered page or form post: authenticated like the API, not in the OpenAPI document."""
        operation = Operation(method.upper(), path, "", "", auth, tuple(roles), None, None, None, 200, "text/html")
        self._routes.append(web.route(operation.method, ascii_digits(path), self._wrap(handler, operation)))

    def _wrap(self, handler: Handler, operation: Operation) -> Handler:
        max_json = self.max_json_bytes

        async def wrapped(request: web.Request) -> web.StreamResponse:
            # isascii: "²" is a digit to str.isdigit() but not to int(), and free path parts may carry it.
            if any(v.isascii() and v.isdigit() and int(v) > MAX_INT for v in request.match_info.values()):
                # No row has such an id; the drivers would raise on it instead of finding nothing.
                raise NotFound("页面或对象不存在", detail="a path id beyond any row's range")
            if operation.roles:
                keys.principal(request).require_role(*operation.roles)
            if operation.upload_bytes is not None:
                # Only here may a body be large; everywhere else the application's small limit holds.
                request = request.clone(client_max_size=operation.upload_bytes)
            kwargs: dict[str, Any] = {}
            if operation.body is not None:
                kwargs["body"] = await read_json(request, operation.body, max_json)
            if operation.query is not None:
                kwargs["query"] = read_query(request, operation.query)
            return await handler(request, **kwargs)

        setattr(wrapped, AUTH_ATTRIBUTE, operation.auth)
        # What the middleware lets in before reading: an upload's limit, a JSON body's, else the app's (forms).
        body_limit = operation.upload_bytes or (max_json if operation.body is not None else None)
        setattr(wrapped, BODY_LIMIT_ATTRIBUTE, body_limit)
        wrapped.__name__ = handler.__name__
        wrapped.__doc__ = handler.__doc__
        return wrapped

    def install(self, app: web.Application) -> None:
        app.router.add_routes(self._routes)


# Every answer an operation may give besides its success, all with the Error body. (401 for the public ones too:
# a wrong password at sign-in, a terminal's token.)
ERROR_RESPONSES = (
    ("400", "输入有误"),
    ("401", "未登录或登录已结束"),
    ("403", "无权限，或请求来源、CSRF令牌不对"),
    ("404", "不存在或不在权限范围内"),
    ("409", "对象当前的状态不允许这样做"),
    ("413", "请求体太大"),
    ("415", "请求体类型不对（应为JSON，或上传用 multipart）"),
    ("429", "尝试太频繁，Retry-After 秒后再试"),
    ("503", "依赖的部件（数据库、电话系统、语音合成）暂时不可用"),
    ("507", "服务器磁盘空间不足：上传录音、审核通过暂停，空间留给热线录音"),
)

PATH_PARAM = re.compile(r"\{(\w+)(?::[^}]+)?\}")


def openapi_path(path: str) -> str:
    """aiohttp's '{id:\\d+}' becomes OpenAPI's '{id}'."""
    return PATH_PARAM.sub(lambda match: "{" + match.group(1) + "}", path)


def build_openapi(operations: list[Operation], *, title: str, version: str) -> dict[str, Any]:
    models: set[type[BaseModel]] = set()
    for op in operations:
        models.update(model for model in (op.body, op.query, op.response) if model is not None)
    ordered = sorted(models, key=lambda model: model.__name__)
    mode_of: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (model, "validation") for model in ordered
    ]
    refs, schema = models_json_schema(mode_of, ref_template="#/components/schemas/{model}")
    components: dict[str, Any] = dict(schema.get("$defs", {}))
    components["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "fields"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string", "description": "给用户看的中文说明"},
                    "fields": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            }
        },
    }

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return refs[(model, "validation")]

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(openapi_path(op.path), {})[op.method.lower()] = _operation(op, ref)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "cunxiang_session"},
                "terminalToken": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"session": []}],
    }


def _operation(op: Operation, ref: Callable[[type[BaseModel]], dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "summary": op.summary,
        "tags": [op.tag],
        "operationId": f"{op.method.lower()}_{openapi_path(op.path).strip('/').replace('/', '_')}",
    }
    if op.description:
        spec["description"] = op.description
    parameters = _parameters(op)
    if parameters:
        spec["parameters"] = parameters
    if op.body is not None:
        spec["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(op.body)}}}
    success: dict[str, Any] = {"description": "成功"}
    if op.response is not None:
        success["content"] = {op.content_type: {"schema": ref(op.response)}}
    elif op.content_type != "application/json":
        success["content"] = {op.content_type: {}}
    responses: dict[str, Any] = {str(op.status): success}
    for status, text in ERROR_RESPONSES:
        responses[status] = {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    spec["responses"] = responses
    if op.auth == "public":
        spec["security"] = []
    elif op.auth == "self":
        spec["security"] = [{"terminalToken": []}]
    if op.roles:
        spec["x-roles"] = list(op.roles)
    return spec


def _parameters(op: Operation) -> list[dict[str, Any]]:
    """The path's parameters (integers where the route says \\d+), then the query model's fields."""
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}
        for name in PATH_PARAM.findall(op.path)
        if f"{{{name}:\\d+}}" in op.path
    ] + [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in PATH_PARAM.findall(op.path)
        if f"{{{name}:\\d+}}" not in op.path
    ]
    if op.query is not None:
        for name, info in op.query.model_fields.items():
            field_schema = op.query.model_json_schema()["properties"][name]
            parameters.append(
                {"name": name, "in": "query", "required": info.is_required(), "schema": field_schema}
                | ({"description": info.description} if info.description else {})
            )
    return parameters
