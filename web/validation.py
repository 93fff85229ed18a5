"""Turning request bodies, forms and query strings into validated models, with Chinese field errors."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from multidict import MultiMapping
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from common.errors import InvalidInput, UserError

ModelT = TypeVar("ModelT", bound=BaseModel)

JSON_TYPES = ("application/json",)

# The widest integer any column takes (PostgreSQL's INTEGER, our ids and counts): a larger number in a
# request can name nothing and count nothing, and the database drivers refuse it with an exception.
MAX_INT = 2**31 - 1


class ApiModel(BaseModel):
    """Base of every request model: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def _integers_in_range(cls, value: Any) -> Any:
        numbers = value if isinstance(value, list | tuple | set | frozenset) else (value,)
        if any(isinstance(number, int) and not -MAX_INT <= number <= MAX_INT for number in numbers):
            raise ValueError("数值超出范围")
        return value


class UnsupportedMediaType(UserError):
    default_code = "unsupported_media_type"


class PayloadTooLarge(UserError):
    default_code = "payload_too_large"


def _field_message(error: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "必填"
    if kind == "extra_forbidden":
        return "不认识的字段"
    if kind in ("string_too_short", "too_short"):
        return "不能为空" if ctx.get("min_length") in (1, None) else f"至少{ctx.get('min_length')}个字"
    if kind in ("string_too_long", "too_long"):
        return f"最多{ctx.get('max_length')}个字"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "应为整数"
    if kind in ("float_type", "float_parsing"):
        return "应为数字"
    if kind in ("bool_type", "bool_parsing"):
        return "应为是或否"
    if kind in ("string_type",):
        return "应为文字"
    if kind in ("list_type", "set_type"):
        return "应为列表"
    if kind == "literal_error":
        return f"取值只能是：{ctx.get('expected', '')}"
    if kind in ("greater_than_equal", "greater_than"):
        return f"不能小于{ctx.get('ge', ctx.get('gt'))}"
    if kind in ("less_than_equal", "less_than"):
        return f"不能大于{ctx.get('le', ctx.get('lt'))}"
    if kind.startswith(("time", "date", "datetime")):
        return "时间格式不正确"
    if kind == "string_pattern_mismatch":
        return "格式不正确"
    if kind == "value_error":
        # Our validators raise ValueError with a Chinese sentence.
        return str(error["msg"]).removeprefix("Value error, ")
    return "格式不正确"


def translate(exc: ValidationError) -> InvalidInput:
    fields: dict[str, str] = {}
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "_"
        fields.setdefault(key, _field_message(error))
    summary = "；".join(f"{key}：{message}" for key, message in fields.items())
    return InvalidInput(f"输入有误：{summary}", code="invalid", fields=fields)


async def read_json(request: web.Request, model: type[ModelT], max_bytes: int) -> ModelT:
    if request.content_type not in JSON_TYPES:
        raise UnsupportedMediaType("请求体必须是JSON（Content-Type: application/json）")
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"请求体太大，最多{max_bytes // 1024} KB")
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"请求体太大，最多{max_bytes // 1024} KB")
    try:
        json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput("请求体不是有效的JSON", code="invalid_json", detail=str(exc)) from None
    try:
        # Strict: "5" is not an integer and "yes" is not a boolean in a JSON API.
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise translate(exc) from None


def _multidict_to_plain(data: MultiMapping[Any], model: type[BaseModel]) -> dict[str, Any]:
    plain: dict[str, Any] = {}
    for key in data:
        if key in plain:
            continue
        field = model.model_fields.get(key)
        values = data.getall(key)
        origin = getattr(field.annotation, "__origin__", None) if field else None
        if origin in (list, set, frozenset, tuple):
            plain[key] = [value for value in values if value != ""]
        else:
            plain[key] = values[-1]
    return plain


def read_query(request: web.Request, model: type[ModelT]) -> ModelT:
    data = {key: value for key, value in _multidict_to_plain(request.query, model).items() if value not in ("", [])}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise translate(exc) from None


async def read_form(request: web.Request, model: type[ModelT], *, checkboxes: tuple[str, ...] = ()) -> ModelT:
    """A form post as a model; unchecked checkboxes (absent from the post) become False."""
    form = await request.post()
    data = _multidict_to_plain(form, model)
    data.pop("csrf_token", None)
    for name in checkboxes:
        data[name] = name in form
    for key, value in list(data.items()):
        if value == "" and key in model.model_fields and not model.model_fields[key].is_required():
            data.pop(key)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise translate(exc) from None
