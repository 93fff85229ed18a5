"""A CAP 1.2 message read safely, checked against the schema kept here, then against our own rules.

Order matters, each step refusing with a reason (:class:`CapRefused`) before the next runs:

1. size: more than ``max_bytes`` is refused unread;
2. XML safety: a document type declaration (DTD, and with it every entity, internal or external) is
   refused outright — the national system never sends one, and it is how XML bombs and external-entity
   reads arrive; the parser additionally resolves no entity, loads no DTD and touches no network;
3. the CAP 1.2 schema (``schema/CAP-v1.2.xsd``, the OASIS normative schema);
4. our rules: the things the schema cannot say (an Update or Cancel names what it refers to, ``expires``
   after ``sent``, polygons closed with at least four points, circles with a radius, coordinates on earth).

A message is used whole or not at all: :func:`parse_cap` returns a :class:`CapMessage` only when every
step passed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path

from lxml import etree

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
SCHEMA_PATH = Path(__file__).with_name("schema") / "CAP-v1.2.xsd"
DEFAULT_MAX_BYTES = 256 * 1024
# A DOCTYPE anywhere (it may hide behind a comment or processing instruction at the top).
_DOCTYPE = re.compile(rb"<!\s*DOCTYPE|<!\s*ENTITY", re.IGNORECASE)
_NS = f"{{{CAP_NS}}}"


class CapRefused(Exception):
    """The message was not used; ``reason`` says why (Chinese, shown on the page and returned to a push)."""

    def __init__(self, reason: str, *, code: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Point:
    lat: float
    lon: float


@dataclass(frozen=True)
class Circle:
    centre: Point
    radius_km: float


@dataclass(frozen=True)
class CapArea:
    description: str
    polygons: tuple[tuple[Point, ...], ...] = ()
    circles: tuple[Circle, ...] = ()
    # (valueName, value), e.g. ("GB/T 2260", "159901").
    geocodes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CapInfo:
    language: str
    categories: tuple[str, ...]
    event: str
    urgency: str
    severity: str
    certainty: str
    headline: str = ""
    description: str = ""
    instruction: str = ""
    sender_name: str = ""
    effective: datetime | None = None
    onset: datetime | None = None
    expires: datetime | None = None
    event_codes: tuple[tuple[str, str], ...] = ()
    parameters: tuple[tuple[str, str], ...] = ()
    areas: tuple[CapArea, ...] = ()


@dataclass(frozen=True)
class Reference:
    """One entry of ``<references>``: sender, identifier, sent."""

    sender: str
    identifier: str
    sent: str


@dataclass(frozen=True)
class CapMessage:
    identifier: str
    sender: str
    sent: datetime
    status: str
    msg_type: str
    scope: str
    source: str = ""
    note: str = ""
    references: tuple[Reference, ...] = ()
    incidents: tuple[str, ...] = ()
    infos: tuple[CapInfo, ...] = ()
    signed: bool = False
    codes: tuple[str, ...] = field(default=())

    def chosen_info(self) -> CapInfo | None:
        """The Chinese ``<info>`` (language zh-CN, or any zh), else the first one."""
        for info in self.infos:
            if info.language.lower() in ("zh-cn", "zh-hans", "zh-hans-cn"):
                return info
        for info in self.infos:
            if info.language.lower().startswith("zh"):
                return info
        return self.infos[0] if self.infos else None

    @property
    def expires(self) -> datetime | None:
        info = self.chosen_info()
        return info.expires if info else None


@cache
def _schema() -> etree.XMLSchema:
    # The schema is our own file: parsed once, with the same no-network parser.
    return etree.XMLSchema(etree.parse(str(SCHEMA_PATH), _parser()))


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_cap(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> CapMessage:
    """The message in ``data``, or :class:`CapRefused` with the first reason it cannot be used."""
    if len(data) > max_bytes:
        raise CapRefused(
            f"消息太大（{len(data)} 字节，上限 {max_bytes} 字节）", code="cap.too_large", detail=f"{len(data)} bytes"
        )
    if not data.strip():
        raise CapRefused("消息为空", code="cap.empty")
    if _DOCTYPE.search(data):
        raise CapRefused(
            "消息含有文档类型声明（DTD）或实体定义，出于安全原因拒收", code="cap.dtd", detail="DOCTYPE/ENTITY present"
        )
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise CapRefused(f"不是格式正确的 XML（第 {exc.lineno} 行）", code="cap.xml", detail=str(exc)) from None
    if root.tag != f"{{{CAP_NS}}}alert":
        raise CapRefused(
            "不是 CAP 1.2 预警消息（根元素不是 CAP 1.2 的预警）",
            code="cap.not_cap12",
            detail=f"root element {root.tag!s}",
        )
    schema = _schema()
    if not schema.validate(root):
        error = schema.error_log.last_error
        problem = error.message if error is not None else "unknown"
        line = error.line if error is not None else 0
        raise CapRefused(schema_reason(problem, line), code="cap.schema", detail=f"line {line}: {problem}")
    message = _read(root)
    check_rules(message)
    return message


# What the elements are called on the page (the schema's messages name them in English, for the log).
ELEMENT_LABELS = {
    "alert": "预警",
    "identifier": "标识",
    "sender": "发布者",
    "sent": "发布时间",
    "status": "状态",
    "msgType": "消息类型",
    "source": "来源",
    "scope": "范围",
    "restriction": "限制",
    "addresses": "收件方",
    "code": "代码",
    "note": "备注",
    "references": "引用",
    "incidents": "事件编号",
    "info": "预警内容",
    "language": "语言",
    "category": "类别",
    "event": "事件",
    "responseType": "建议行动",
    "urgency": "紧急程度",
    "severity": "严重程度",
    "certainty": "确定性",
    "audience": "受众",
    "eventCode": "事件代码",
    "effective": "生效时间",
    "onset": "开始时间",
    "expires": "失效时间",
    "senderName": "发布单位",
    "headline": "标题",
    "description": "描述",
    "instruction": "防御指引",
    "web": "网址",
    "contact": "联系方式",
    "parameter": "参数",
    "resource": "附件",
    "area": "区域",
    "areaDesc": "区域描述",
    "polygon": "多边形",
    "circle": "圆形",
    "geocode": "地理编码",
    "altitude": "高度",
    "ceiling": "上限高度",
    "valueName": "名称",
    "value": "值",
}
_ELEMENT = re.compile(r"Element '(?:\{[^}]*\})?(\w+)'")
_EXPECTED = re.compile(r"Expected is(?: one of)? \((.*?)\)")


def _label(name: str) -> str:
    return f"「{ELEMENT_LABELS.get(name, '未知元素')}」"


def schema_reason(problem: str, line: int) -> str:
    """The schema's complaint in Chinese for the page (the English original goes to the log as the detail)."""
    where = f"第 {line} 行" if line else "消息中"
    found = _ELEMENT.search(problem)
    element = _label(found.group(1)) if found else "某个元素"
    expected = _EXPECTED.search(problem)
    wanted = ""
    if expected:
        names = [part.strip().split("}")[-1] for part in expected.group(1).split(",")]
        wanted = "、".join(_label(name) for name in names if name)
    if "Missing child element" in problem:
        what = f"{element}缺少必需的内容{f'（应有{wanted}）' if wanted else ''}"
    elif "not expected" in problem:
        what = f"{element}出现的位置不对，或缺少前面必需的元素{f'（此处应为{wanted}）' if wanted else ''}"
    elif "dateTime" in problem or "pattern" in problem:
        what = f"{element}的时间格式不对（应为 2026-12-05T06:00:00+08:00 这样的格式）"
    elif "enumeration" in problem or "not an element of the set" in problem:
        what = f"{element}的取值不在规范允许的范围内"
    else:
        what = f"{element}不符合规范"
    return f"不符合 CAP 1.2 规范（{where}）：{what}"


# -- reading a validated tree ------------------------------------------------------------------


def _text(element: etree._Element, name: str) -> str:
    child = element.find(_NS + name)
    return (child.text or "").strip() if child is not None else ""


def _texts(element: etree._Element, name: str) -> tuple[str, ...]:
    return tuple((child.text or "").strip() for child in element.findall(_NS + name))


def _pairs(element: etree._Element, name: str) -> tuple[tuple[str, str], ...]:
    return tuple((_text(child, "valueName"), _text(child, "value")) for child in element.findall(_NS + name))


def _time(value: str) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _number(value: str, what: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise CapRefused(f"{what}中的数字不对：{value}", code="cap.coordinates") from None


def _point(pair: str, what: str) -> Point:
    parts = pair.split(",")
    if len(parts) != 2:
        raise CapRefused(f"{what}的坐标应为“纬度,经度”：{pair}", code="cap.coordinates")
    lat, lon = _number(parts[0], what), _number(parts[1], what)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise CapRefused(f"{what}的坐标超出范围：{pair}", code="cap.coordinates")
    return Point(lat, lon)


def _polygon(value: str) -> tuple[Point, ...]:
    points = tuple(_point(pair, "多边形") for pair in value.split())
    if len(points) < 4 or points[0] != points[-1]:
        raise CapRefused("多边形至少需要四个点，且首尾相同（闭合）", code="cap.polygon", detail=value[:200])
    return points


def _circle(value: str) -> Circle:
    parts = value.split()
    if len(parts) != 2:
        raise CapRefused(f"圆形区域应为“纬度,经度 半径”：{value}", code="cap.circle")
    radius = _number(parts[1], "圆形区域")
    if radius < 0:
        raise CapRefused(f"圆形区域的半径不能为负：{value}", code="cap.circle")
    return Circle(_point(parts[0], "圆形区域"), radius)


def _area(element: etree._Element) -> CapArea:
    return CapArea(
        description=_text(element, "areaDesc"),
        polygons=tuple(_polygon(value) for value in _texts(element, "polygon")),
        circles=tuple(_circle(value) for value in _texts(element, "circle")),
        geocodes=_pairs(element, "geocode"),
    )


def _info(element: etree._Element) -> CapInfo:
    return CapInfo(
        language=_text(element, "language") or "en-US",
        categories=_texts(element, "category"),
        event=_text(element, "event"),
        urgency=_text(element, "urgency"),
        severity=_text(element, "severity"),
        certainty=_text(element, "certainty"),
        headline=_text(element, "headline"),
        description=_text(element, "description"),
        instruction=_text(element, "instruction"),
        sender_name=_text(element, "senderName"),
        effective=_time(_text(element, "effective")),
        onset=_time(_text(element, "onset")),
        expires=_time(_text(element, "expires")),
        event_codes=_pairs(element, "eventCode"),
        parameters=_pairs(element, "parameter"),
        areas=tuple(_area(area) for area in element.findall(_NS + "area")),
    )


def _references(value: str) -> tuple[Reference, ...]:
    references = []
    for entry in value.split():
        parts = entry.split(",")
        if len(parts) != 3:
            raise CapRefused(f"「引用」的每一项应为“发布者,标识,时间”：{entry}", code="cap.references")
        references.append(Reference(*parts))
    return tuple(references)


def _read(root: etree._Element) -> CapMessage:
    sent = _time(_text(root, "sent"))
    assert sent is not None  # the schema requires it
    return CapMessage(
        identifier=_text(root, "identifier"),
        sender=_text(root, "sender"),
        sent=sent,
        status=_text(root, "status"),
        msg_type=_text(root, "msgType"),
        scope=_text(root, "scope"),
        source=_text(root, "source"),
        note=_text(root, "note"),
        references=_references(_text(root, "references")),
        incidents=tuple(_text(root, "incidents").split()),
        infos=tuple(_info(info) for info in root.findall(_NS + "info")),
        signed=root.find(f"{{{DSIG_NS}}}Signature") is not None,
        codes=_texts(root, "code"),
    )


# -- our rules ------------------------------------------------------------------------------

# CAP 1.2 3.2.1: identifier and sender contain no spaces, commas or restricted characters (< and &).
_RESTRICTED = re.compile(r"[\s,<&]")


def check_rules(message: CapMessage) -> None:
    """What the schema cannot say; :class:`CapRefused` on the first rule broken."""
    for name, value in (("identifier", message.identifier), ("sender", message.sender)):
        if not value or _RESTRICTED.search(value):
            raise CapRefused(f"{_label(name)}不能为空，也不能含空格、逗号、< 或 &", code=f"cap.{name}")
    if message.msg_type in ("Update", "Cancel", "Ack", "Error") and not message.references:
        kind = {"Update": "更新", "Cancel": "撤销", "Ack": "确认", "Error": "错误"}[message.msg_type]
        raise CapRefused(f"{kind}消息必须在「引用」中指明所针对的消息", code="cap.references")
    if message.msg_type in ("Alert", "Update") and message.status in ("Actual", "Exercise", "Test"):
        if not message.infos:
            raise CapRefused("预警消息没有「预警内容」，无从播出", code="cap.no_info")
    for info in message.infos:
        if info.expires is not None and info.expires <= message.sent:
            raise CapRefused("失效时间早于发布时间", code="cap.expires")
