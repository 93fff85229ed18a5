"""Turning request bodies, forms and query strings into validated models, with Chinese field errors."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from datetime import date, datetime
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

from aiohttp import web
from multidict import MultiDictProxy, MultiMapping
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from common.errors import InvalidInput, UserError

ModelT = TypeVar("ModelT", bound=BaseModel)

JSON_TYPES = ("application/json",)

# The widest integer any column takes (PostgreSQL's INTEGER, our ids and counts): a larger number in a
# request can name nothing and count nothing, and the database drivers refuse it with an exception.
MAX_INT = 2**31 - 1
# Every date a request may carry. Nothing this service keeps lies outside it, and arithmetic on a day
# near year 1 or 9999 (a day later, a time zone away) overflows instead of finding nothing.
EARLIEST_DATE = date(2000, 1, 1)
LATEST_DATE = date(2099, 12, 31)
# Marks a text field that may hold line breaks (a notice's body, a note); every other text is one line.
MULTILINE = "multiline"


def multiline() -> dict[str, Any]:
    """``Field(json_schema_extra=multiline())``: this text may hold line breaks (and tabs)."""
    return {MULTILINE: True}


def _control_character(text: str, *, lines: bool) -> str | None:
    """The first character no person types into this field: NUL, escapes, and line breaks in one-line text."""
    allowed = "\n\r\t" if lines else ""
    for char in text:
        if char in allowed:
            continue
        if unicodedata.category(char) in ("Cc", "Cs") or char in "\u2028\u2029":
            return char
    return None


class ApiModel(BaseModel):
    """Base of every request model: unknown fields are an error, not silently dropped.

    Every field is also held to what no one could mean: integers beyond any
    column, dates outside 2000–2099, control characters (NUL, escape, and line
    breaks outside the few multi-line fields) — refused when written, never
    stored to surprise a page, a file name or an Asterisk command later.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def _integers_in_range(cls, value: Any, info: ValidationInfo) -> Any:
        values = value if isinstance(value, list | tuple | set | frozenset) else (value,)
        if any(isinstance(number, int) and not -MAX_INT <= number <= MAX_INT for number in values):
            raise ValueError("数值超出范围")
        for item in values:
            day = item.date() if isinstance(item, datetime) else item
            if isinstance(day, date) and not EARLIEST_DATE <= day <= LATEST_DATE:
                raise ValueError(f"日期应在{EARLIEST_DATE.year}年到{LATEST_DATE.year}年之间")
        field = cls.model_fields.get(info.field_name or "")
        extra = field.json_schema_extra if field is not None else None
        lines = isinstance(extra, dict) and bool(extra.get(MULTILINE))
        for item in values:
            if isinstance(item, str) and _control_character(item, lines=lines) is not None:
                raise ValueError("不能含有换行或控制字符" if not lines else "不能含有控制字符")
        return value


class UnsupportedMediaType(UserError):
    default_code = "unsupported_media_type"


class PayloadTooLarge(UserError):
    default_code = "payload_too_large"


# Pydantic's error types, in Chinese.
_MESSAGES: dict[str, str] = {
    "missing": "必填",
    "extra_forbidden": "不认识的字段",
    **dict.fromkeys(("int_type", "int_parsing", "int_from_float"), "应为整数"),
    **dict.fromkeys(("float_type", "float_parsing"), "应为数字"),
    **dict.fromkeys(("bool_type", "bool_parsing"), "应为是或否"),
    "string_type": "应为文字",
    **dict.fromkeys(("list_type", "set_type"), "应为列表"),
    "string_pattern_mismatch": "格式不正确",
}


def _too_short(ctx: dict[str, Any]) -> str:
    return "不能为空" if ctx.get("min_length") in (1, None) else f"至少{ctx.get('min_length')}个字"


def _too_long(ctx: dict[str, Any]) -> str:
    return f"最多{ctx.get('max_length')}个字"


def _not_listed(ctx: dict[str, Any]) -> str:
    return f"取值只能是：{ctx.get('expected', '')}"


def _too_small(ctx: dict[str, Any]) -> str:
    return f"不能小于{ctx.get('ge', ctx.get('gt'))}"


def _too_large(ctx: dict[str, Any]) -> str:
    return f"不能大于{ctx.get('le', ctx.get('lt'))}"


# Those whose message quotes a limit from the error's context.
_MESSAGES_WITH_LIMITS: dict[str, Callable[[dict[str, Any]], str]] = {
    **dict.fromkeys(("string_too_short", "too_short"), _too_short),
    **dict.fromkeys(("string_too_long", "too_long"), _too_long),
    "literal_error": _not_listed,
    **dict.fromkeys(("greater_than_equal", "greater_than"), _too_small),
    **dict.fromkeys(("less_than_equal", "less_than"), _too_large),
}


def _time_message(ctx: dict[str, Any]) -> str:
    # 31 February is a well-written date that does not exist: say so, not that it is badly written.
    reason = str(ctx.get("error", ""))
    if "day value is outside expected range" in reason:
        return "没有这一天"
    if "month value is outside expected range" in reason:
        return "没有这个月份"
    return "时间格式不正确"


def _field_message(error: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "value_error":
        # Our validators raise ValueError with a Chinese sentence.
        return str(error["msg"]).removeprefix("Value error, ")
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind in _MESSAGES_WITH_LIMITS:
        return _MESSAGES_WITH_LIMITS[kind](ctx)
    if kind.startswith(("time", "date", "datetime")):
        return _time_message(ctx)
    return "格式不正确"


def translate(exc: ValidationError, model: type[BaseModel] | None = None) -> InvalidInput:
    """Field errors, keyed by field; the message names each field by its ``title`` when the model gives one."""
    fields: dict[str, str] = {}
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "_"
        fields.setdefault(key, _field_message(error))

    def named(key: str) -> str:
        field = model.model_fields.get(key.split(".")[0]) if model is not None else None
        return field.title if field is not None and field.title else key

    summary = "；".join(f"{named(key)}：{message}" for key, message in fields.items())
    return InvalidInput(f"输入有误：{summary}", code="invalid", fields=fields)


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole body, however it arrives (in pieces, slowly, chunked), up to ``max_bytes``; 413 beyond."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"请求体太大，最多{max_bytes // 1024} KB")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(max_bytes + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"请求体太大，最多{max_bytes // 1024} KB")
    return b"".join(chunks)


async def read_json(request: web.Request, model: type[ModelT], max_bytes: int) -> ModelT:
    if request.content_type not in JSON_TYPES:
        raise UnsupportedMediaType("请求体必须是JSON（Content-Type: application/json）")
    raw = await read_body(request, max_bytes)
    try:
        json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput("请求体不是有效的JSON", code="invalid_json", detail=str(exc)) from None
    except RecursionError:
        raise InvalidInput("请求体不是有效的JSON", code="invalid_json", detail="nested too deeply") from None
    try:
        # Strict: "5" is not an integer and "yes" is not a boolean in a JSON API.
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise translate(exc) from None
    except RecursionError:
        raise InvalidInput("请求体不是有效的JSON", code="invalid_json", detail="nested too deeply") from None


async def read_post(request: web.Request) -> MultiDictProxy[Any]:
    """A form post, bounded by the request's size limit; bytes that are not UTF-8 are a 400, not a crash."""
    try:
        return await request.post()
    except UnicodeDecodeError:
        raise InvalidInput(
            "表单内容不是有效的UTF-8文字", code="invalid_form", detail="form body is not UTF-8"
        ) from None
    except ValueError as exc:  # a multipart body without its boundary, a broken part
        raise InvalidInput("表单格式不正确", code="invalid_form", detail=str(exc)) from None


def _takes_many(annotation: Any) -> bool:
    """Whether a field holds several values: ``list[int]``, and ``list[int] | None`` too."""
    origin = get_origin(annotation)
    if origin in (list, set, frozenset, tuple):
        return True
    if origin in (Union, UnionType):
        return any(_takes_many(member) for member in get_args(annotation))
    return False


def _multidict_to_plain(data: MultiMapping[Any], model: type[BaseModel]) -> dict[str, Any]:
    """Repeated fields (ticked boxes, a multi-select) become a list where the model takes several values."""
    plain: dict[str, Any] = {}
    for key in data:
        if key in plain:
            continue
        field = model.model_fields.get(key)
        values = data.getall(key)
        if field is not None and _takes_many(field.annotation):
            plain[key] = [value for value in values if value != ""]
        else:
            plain[key] = values[-1]
    return plain


def read_query(request: web.Request, model: type[ModelT]) -> ModelT:
    data = {key: value for key, value in _multidict_to_plain(request.query, model).items() if value not in ("", [])}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise translate(exc, model) from None


async def read_form(
    request: web.Request, model: type[ModelT], *, checkboxes: tuple[str, ...] = (), ignore: tuple[str, ...] = ()
) -> ModelT:
    """A form post as a model; unchecked checkboxes (absent from the post) become False.

    ``ignore`` names fields the handler reads itself (raw), never failing the form.
    """
    form = await read_post(request)
    data = _multidict_to_plain(form, model)
    for name in ("csrf_token", *ignore):
        data.pop(name, None)
    for name in checkboxes:
        data[name] = name in form
    for key, value in list(data.items()):
        if value == "" and key in model.model_fields and not model.model_fields[key].is_required():
            data.pop(key)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise translate(exc, model) from None
