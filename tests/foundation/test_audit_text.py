"""The audit log's words: every action the service writes has a Chinese name, and details read as Chinese lines."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

from storage.models import AuditEntry
from tests.support.journey import english_words
from web.audit_text import ACTION_NAMES, Names, Shown, action_name, describe

REPOSITORY = Path(__file__).resolve().parents[2]
PACKAGES = (
    "accounts",
    "areas",
    "broadcast",
    "cases",
    "hotline",
    "schedules",
    "storage",
    "web",
    "cli",
    "common",
    "phonecast",
)
# Functions that write an audit entry with the action as a keyword or as their second positional argument.
WRITERS = {"record", "log", "deny", "put"}


def _strings(node: ast.AST) -> list[str]:
    """The string constants an expression can be (a literal, either side of ``a if c else b``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _strings(node.body) + _strings(node.orelse)
    return []


def actions_written() -> set[str]:
    found: set[str] = set()
    for package in PACKAGES:
        for path in (REPOSITORY / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name not in WRITERS:
                    continue
                for keyword in node.keywords:
                    if keyword.arg == "action":
                        found.update(_strings(keyword.value))
                if len(node.args) >= 2:
                    found.update(value for value in _strings(node.args[1]) if "." in value)
    # Written by name: a recording's play or download, "_sealed" for a sealed case's (cases/replay.py).
    found.update(f"recording.{verb}{suffix}" for verb in ("play", "download") for suffix in ("", "_sealed"))
    return {action for action in found if action.replace(".", "").replace("_", "").isalpha()}


def test_every_action_the_service_writes_has_a_chinese_name_of_its_own() -> None:
    written = actions_written()
    assert {"login", "user.update", "case.view_sealed", "notice.approve", "holiday.set"} <= written
    assert not written - ACTION_NAMES.keys(), sorted(written - ACTION_NAMES.keys())


def test_an_unknown_action_still_reads_as_chinese() -> None:
    assert action_name("township.create") == "新建乡镇"
    assert action_name("notice.frobnicate") == "通知的其他操作"
    assert action_name("gizmo.poke") == "其他操作"


def test_details_read_as_chinese_lines_with_names_not_codes() -> None:
    names = Names({("township", 3): Shown("乡镇 示例东风镇", "/admin/townships/3", "示例东风镇")})
    entry = AuditEntry(
        at=datetime(2026, 12, 5, tzinfo=UTC),
        user_id=1,
        username="demo.admin",
        action="user.update",
        object_type="user",
        object_id="2",
        detail={
            "roles": {"before": ["staff"], "after": ["approver", "staff"]},
            "township_ids": {"before": [], "after": [3]},
            "active": {"before": True, "after": False},
            "sha256": "ab12",
            "gizmo": "x",
        },
        ip="127.0.0.1",
    )
    line = describe(entry, names)
    assert line.action == "修改用户"
    assert line.details == [
        "角色：乡镇干部 → 审核人、乡镇干部",
        "乡镇：（空） → 示例东风镇",
        "账号可用：是 → 否",
        "其他信息：x",
    ]
    assert line.target is not None and line.target.text == "用户 2（已删除）"
    assert english_words(" ".join([line.action, line.target.text, *line.details[:3]])) == []


def test_an_approval_reads_without_its_audio_key_and_with_the_numbers_kept() -> None:
    entry = AuditEntry(
        at=datetime(2026, 12, 5, tzinfo=UTC),
        user_id=3,
        username="demo.approver",
        action="notice.approve",
        object_type="notice",
        object_id="11",
        detail={
            "revision": 2,
            "engine": "espeak",
            "audio": "1cf2ddddc4d26c98607af8f57c3b6165d71f48cc1fcc1a9e7d4f3416bf17b88a",
            "kept_numbers": ["13800001234"],
        },
        ip="127.0.0.1",
    )
    line = describe(entry, Names())
    assert line.action == "审核通过"
    assert not any("1cf2dddd" in detail for detail in line.details)
    assert "保留的公开电话：13800001234" in line.details
