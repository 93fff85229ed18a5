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
LEAD_IN = "请注意，以下是气象部门发布的预警信息。"
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


def spoken_text(info: CapInfo, *, max_chars: int, test: bool = False) -> str:
    """Lead-in, the alert's name and level, headline, instruction, then the description as room allows.

    Headline and instruction come first (what happens, what to do); the description is cut to fit ``max_chars``
    at a sentence end where it can be.
    """
    parts = [TEST_LEAD_IN if test else "", LEAD_IN, f"{spoken_title(info)}。"]
    for piece in (info.headline, info.instruction):
        piece = piece.strip()
        if piece and piece not in "".join(parts):
            parts.append(_sentence(piece))
    text = "".join(parts)
    description = info.description.strip()
    if description and description not in text:
        room = max_chars - len(text)
        if len(description) > room:
            cut = description[:room]
            end = max(cut.rfind(mark) for mark in "。！？；")
            description = cut[: end + 1] if end > 0 else ""
        text += _sentence(description) if description else ""
    return text[:max_chars]


def _sentence(text: str) -> str:
    return text if text.endswith(("。", "！", "？", ".", "!", "?")) else f"{text}。"
