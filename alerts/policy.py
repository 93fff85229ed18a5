"""The policy table and the spoken text: what the county airs by itself, what waits, what it only records.

:func:`decide` reads the rows in order; the first row that matches the message's ``<info>`` decides. An empty
list in a row matches anything; ``event`` matches as a substring of the message's event (暴雨 matches
暴雨红色预警). No row matching means 仅记录: nothing airs unless a row says so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from alerts.cap import CapInfo

SEVERITY_LABELS = {"Extreme": "特别严重", "Severe": "严重", "Moderate": "较重", "Minor": "一般", "Unknown": "未知"}
URGENCY_LABELS = {"Immediate": "立即", "Expected": "即将", "Future": "将来", "Past": "已过去", "Unknown": "未知"}
CERTAINTY_LABELS = {
    "Observed": "已发生",
    "Likely": "很可能",
    "Possible": "可能",
    "Unlikely": "不太可能",
    "Unknown": "未知",
}
LEVELS = ("红色", "橙色", "黄色", "蓝色")
# The level as senders give it in a parameter, in English or Chinese.
_LEVEL_WORDS = {"red": "红色", "orange": "橙色", "yellow": "黄色", "blue": "蓝色"}
TEST_LEAD_IN = "这是一条测试预警信息，不是真实预警。"


@dataclass(frozen=True)
class PolicyRow:
    id: int
    event: str | None
    severities: tuple[str, ...]
    urgencies: tuple[str, ...]
    certainties: tuple[str, ...]
    action: str
    repeat_every_min: int | None = None
    max_plays: int = 3
    repeats_in_quiet_hours: bool = False

    def matches(self, info: CapInfo) -> bool:
        return (
            (not self.event or self.event in info.event)
            and (not self.severities or info.severity in self.severities)
            and (not self.urgencies or info.urgency in self.urgencies)
            and (not self.certainties or info.certainty in self.certainties)
        )


def decide(rows: Sequence[PolicyRow], info: CapInfo) -> PolicyRow | None:
    """The row that decides (None: no row matches, the message is only recorded)."""
    for row in rows:
        if row.matches(info):
            return row
    return None


def level_of(info: CapInfo) -> str:
    """红色/橙色/黄色/蓝色 from a parameter (any name, e.g. 预警级别 or alertLevel), else from the headline or event."""
    for _name, value in info.parameters:
        word = value.strip().lower()
        if word in _LEVEL_WORDS:
            return _LEVEL_WORDS[word]
        for level in LEVELS:
            if level in value:
                return level
    for text in (info.event, info.headline):
        for level in LEVELS:
            if level in text:
                return level
    return ""


def spoken_title(info: CapInfo) -> str:
    """The alert named plainly: 暴雨红色预警 (event and level), never an English code."""
    level = level_of(info)
    event = info.event
    if level and level in event:
        return event if event.endswith("预警") else f"{event}预警"
    name = re.sub(r"(预警|警报)$", "", event)
    return f"{name}{level}预警" if level else (event if event.endswith(("预警", "警报")) else f"{event}预警")


def _publisher(info: CapInfo) -> str:
    """Who published it, as listeners know them: the Chinese sender name, else the kind of authority."""
    if info.sender_name and re.search(r"[\u4e00-\u9fff]", info.sender_name):
        return info.sender_name
    return "气象部门" if "Met" in info.categories else "有关部门"


def spoken_lead(info: CapInfo, *, test: bool = False) -> str:
    """The fixed lead-in with the alert's name and level: 请注意，以下是示例县气象局发布的暴雨红色预警.

    It is also the alert's title in lists and the as-run log (the notice's title is read first).
    """
    return f"{TEST_LEAD_IN if test else ''}请注意，以下是{_publisher(info)}发布的{spoken_title(info)}"


def spoken_body(info: CapInfo, *, max_chars: int) -> str:
    """Headline and instruction first (what happens, what to do), then the description as room allows.

    ``max_chars`` counts the body only; the description is cut at a sentence end where it can be.
    """
    parts: list[str] = []
    for piece in (info.headline, info.instruction):
        piece = piece.strip()
        if piece and piece not in "".join(parts):
            parts.append(_sentence(piece))
    text = "".join(parts)[:max_chars]
    description = info.description.strip()
    if description and description not in text:
        room = max_chars - len(text)
        if len(description) > room:
            cut = description[:room]
            end = max(cut.rfind(mark) for mark in "。！？；")
            description = cut[: end + 1] if end > 0 else ""
        text += _sentence(description) if description else ""
    return text


def spoken_text(info: CapInfo, *, max_chars: int, test: bool = False) -> tuple[str, str]:
    """(lead, body): what is read, in that order, the whole within ``max_chars``."""
    lead = spoken_lead(info, test=test)
    return lead, spoken_body(info, max_chars=max(0, max_chars - len(lead) - 1))


def _sentence(text: str) -> str:
    return text if text.endswith(("。", "！", "？", ".", "!", "?")) else f"{text}。"
