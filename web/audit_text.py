"""The audit log in the words an admin reads: what was done, to what (by name, with a link), and the details.

The log keeps codes (``notice.create``, ``user 2``, ``{"roles": …}``) so it can be queried and exported
as it is; the page shows each entry as a Chinese sentence instead: the action's name, the object by its name
(a user by user name and name, a notice by its title, a case by its number — never a sealed case's), and the
details as short lines with Chinese labels and values. Nothing a code spells is shown as it is: an action,
key or value this module does not know still reads as Chinese (新建乡镇, 其他信息), so a new code never puts
English on the page — and a test holds every code the service writes to a name of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.principal import ROLE_LABELS
from broadcast.notices import STATE_LABELS as NOTICE_STATE_LABELS
from cases.replay import RECORDING_KIND_LABELS
from storage.models import (
    CASE_CATEGORIES,
    CASE_CHANNEL_LABELS,
    CASE_STATUS_LABELS,
    CODEC_LABELS,
    DAY_KINDS,
    KIND_LABELS,
    TRANSPORT_LABELS,
    UNIT_KIND_LABELS,
    VILLAGE_KIND_LABELS,
    AuditEntry,
    Case,
    County,
    MissedCall,
    Notice,
    Recording,
    Schedule,
    Speaker,
    Township,
    Unit,
    User,
    Village,
    Zone,
)
from tts.engines import ENGINE_LABELS

# Every action the service writes, by its name on the page.
ACTION_NAMES: dict[str, str] = {
    "login": "登录",
    "login.failed": "登录失败",
    "login.throttled": "登录过于频繁被暂停",
    "logout": "退出登录",
    "session.end": "结束一处登录",
    "session.end_all": "在所有设备上退出登录",
    "session.end_others": "退出其他设备上的登录",
    "user.create": "新建用户",
    "user.update": "修改用户",
    "user.password_reset": "重置密码",
    "user.password_change": "修改自己的密码",
    "speaker.token": "生成4G终端的接入令牌",
    "notice.create": "新建通知",
    "notice.update": "修改通知",
    "notice.recording": "上传人声录音",
    "notice.submit": "提交审核",
    "notice.approve": "审核通过",
    "notice.reject": "驳回通知",
    "notice.archive": "归档通知",
    "notice.mask": "隐去通知里的号码",
    "notice.keep_number": "保留通知里的公开电话",
    "notice.emergency": "发布应急广播",
    "notice.phonecast": "手机喊话生成播出内容",
    "phonecast.grant": "授予电话喊话权限",
    "phonecast.revoke": "撤销电话喊话权限",
    "phonecast.pin_set": "设置喊话密码",
    "phonecast.pin_reset": "重置喊话密码",
    "phonecast.pin_wrong": "喊话密码错误",
    "phonecast.pin_locked": "喊话被锁定时来电",
    "phonecast.lockout": "喊话密码错误次数过多被锁定",
    "phonecast.code": "修改喊话编号",
    "phonecast.started": "手机喊话开始播出",
    "phonecast.queued": "手机喊话排队等待",
    "phonecast.scheduled": "手机喊话定时播出",
    "phonecast.refused": "手机喊话未能播出",
    "phonecast.ended": "手机喊话播出结束",
    "phonecast.live_started": "实时喊话开始",
    "phonecast.live_ended": "实时喊话结束",
    "phonecast.after_refused": "实时喊话录音未能转给4G终端",
    "phonecast.review": "事后审核手机喊话",
    "phonecast.listen": "收听手机喊话录音",
    "schedule.create": "新建播出安排",
    "schedule.update": "修改播出安排",
    "schedule.enable": "启用播出安排",
    "schedule.disable": "停用播出安排",
    "case.create": "来电立案",
    "case.view_sealed": "查看违纪举报",
    "case.sealed_denied": "查看违纪举报被拒绝",
    "case.list_sealed": "列出违纪举报",
    "case.export": "导出案件台账",
    "recording.play": "播放录音",
    "recording.play_sealed": "播放违纪举报录音",
    "recording.download": "下载录音",
    "recording.download_sealed": "下载违纪举报录音",
    "missed_call.dismiss": "未接来电标为无需回拨",
    "missed_call.sealed_denied": "查看密封的未接来电被拒绝",
    "holiday.set": "设置节假日",
    "holiday.delete": "删除节假日",
    "villager_phone.create": "登记村民电话",
    "villager_phone.update": "修改村民电话",
    "villager_phone.delete": "删除村民电话",
}
# The service's own parts, when they act.
SYSTEM_ACTORS = {
    "system:hotline": "热线系统",
    "system:demo": "演示数据",
    "system:callback": "回拨",
    "system:followup": "自动回访",
    "system:cli": "命令行",
}
# What an action was done to, by its name on the page.
OBJECT_NAMES: dict[str, str] = {
    "user": "用户",
    "session": "登录",
    "county": "县",
    "township": "乡镇",
    "village": "村（社区）",
    "zone": "播出分区",
    "speaker": "终端",
    "unit": "承办单位",
    "notice": "通知",
    "schedule": "播出安排",
    "case": "案件",
    "recording": "录音",
    "missed_call": "未接来电",
    "holiday": "节假日",
    "villager_phone": "村民电话",
    "call": "来电",
    "phone_broadcast": "手机喊话",
}
_VERBS = {"create": "新建", "update": "修改", "delete": "删除", "enable": "启用", "disable": "停用"}
for _kind in ("county", "township", "village", "zone", "speaker", "unit"):
    for _verb, _word in (("create", "新建"), ("update", "修改"), ("delete", "删除")):
        ACTION_NAMES[f"{_kind}.{_verb}"] = _word + OBJECT_NAMES[_kind]


def action_name(code: str) -> str:
    """The action's Chinese name; an unknown code still reads as Chinese (never the code itself)."""
    if code in ACTION_NAMES:
        return ACTION_NAMES[code]
    kind, _, verb = code.partition(".")
    thing = OBJECT_NAMES.get(kind, "")
    if verb in _VERBS and thing:
        return _VERBS[verb] + thing
    return f"{thing}的其他操作" if thing else "其他操作"


# Detail keys, by their label on the page; None: technical, not shown (the API keeps them).
DETAIL_LABELS: dict[str, str | None] = {
    "username": "用户名",
    "display_name": "姓名",
    "roles": "角色",
    "county_wide": "全县范围",
    "township_ids": "乡镇",
    "township_id": "乡镇",
    "can_emergency": "应急广播权限",
    "phone_endpoint": "本人话机",
    "active": "账号可用",
    "name": "名称",
    "code": "代码",
    "kind": "种类",
    "title": "标题",
    "state": "状态",
    "revision": "版本",
    "duration_s": "时长（秒）",
    "engine": "语音",
    "bytes": "大小",
    "reason": "理由",
    "schedules_stopped": "停止的播出安排",
    "notice_id": "通知",
    "rule": "播出时间",
    "targets": "播出对象",
    "village_id": "村（社区）",
    "zone_id": "播出分区",
    "fields": "改动的项目",
    "case_id": "案件",
    "case_ids": "案件",
    "sealed_case_ids": "其中违纪举报",
    "via": "途径",
    "channel": "渠道",
    "sealed": "违纪举报",
    "test": "拨测",
    "filters": "筛选条件",
    "rows": "行数",
    "before": "原来",
    "after": "改为",
    "transport": "方式",
    "address": "地址",
    "codec": "编码",
    "enabled": "启用",
    "quiet_start": "静音开始",
    "quiet_end": "静音结束",
    "phone": "电话",
    "category": "类别",
    "status": "状态",
    "deadline": "期限",
    "q": "查找",
    "created_from": "登记从",
    "created_to": "登记到",
    "sealed_only": "只看违纪举报",
    "test_calls": "拨测",
    "sort": "排序",
    "unit_id": "承办单位",
    "device": "设备",
    "masked": "隐去的号码",
    "number": "号码",
    "kept_numbers": "保留的公开电话",
    "range": None,
    "listening": None,
    "sha256": None,
    "audio": None,  # the produced audio's content key: nothing a person reads
    "linkedid": None,
    "recording_id": None,
    "by_user": None,
}
# Values of a key, where the log keeps a code.
_VALUES: dict[str, Mapping[Any, str]] = {
    "roles": ROLE_LABELS,
    "kind": {
        **KIND_LABELS,
        **RECORDING_KIND_LABELS,
        **DAY_KINDS,
        **VILLAGE_KIND_LABELS,
        **UNIT_KIND_LABELS,
        "township": "乡镇",
        "village": "村（社区）",
        "zone": "播出分区",
    },
    "state": {**NOTICE_STATE_LABELS, **CASE_STATUS_LABELS},
    "status": CASE_STATUS_LABELS,
    "engine": ENGINE_LABELS,
    "channel": CASE_CHANNEL_LABELS,
    "category": CASE_CATEGORIES,
    "transport": TRANSPORT_LABELS,
    "codec": CODEC_LABELS,
    "test_calls": {"without": "不含", "with": "包含", "only": "只看拨测"},
    "sort": {"newest": "最新登记", "oldest": "最早登记", "due": "期限最近"},
    "deadline": {
        "overdue": "超期",
        "due_soon": "即将到期",
        "followup_due": "待回访",
        "extension_pending": "延期待审批",
    },
    "via": {
        "page": "网页",
        "api": "接口",
        "api/events": "接口（办理记录）",
        "api/callbacks": "接口（回拨记录）",
        "api/hotline/calls": "接口（来电记录）",
        "recording": "播放录音",
        "reminders": "催办清单",
        "case.callback": "回拨",
        "cunxiang cases show": "命令行",
        "demo": "演示数据",
        "fastagi": "热线电话",
        "tracker": "热线电话",
        "reconcile": "热线对账",
    },
}
_ID_KEYS = {
    "township_id": "township",
    "township_ids": "township",
    "village_id": "village",
    "zone_id": "zone",
    "notice_id": "notice",
    "unit_id": "unit",
    "case_id": "case",
    "case_ids": "case",
    "sealed_case_ids": "case",
    "schedules_stopped": "schedule",
}


@dataclass
class Shown:
    """An object as the page shows it: what it is and its name, where it can be opened (None: nowhere).

    ``name`` alone is for a detail line, whose label already says what it is (通知：《…》).
    """

    text: str
    href: str | None = None
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or self.text


@dataclass
class AuditLine:
    entry: AuditEntry
    action: str
    who: str
    target: Shown | None
    details: list[str] = field(default_factory=list)


@dataclass
class Names:
    """Names of the objects one page of entries mentions, looked up together."""

    found: dict[tuple[str, int], Shown] = field(default_factory=dict)

    def of(self, kind: str, object_id: Any) -> Shown:
        try:
            key = (kind, int(object_id))
        except (TypeError, ValueError):
            return Shown(f"{OBJECT_NAMES.get(kind, '对象')} {object_id}")
        return self.found.get(key) or Shown(f"{OBJECT_NAMES.get(kind, '对象')} {key[1]}（已删除）")


def _ids(entries: Iterable[AuditEntry]) -> dict[str, set[int]]:
    wanted: dict[str, set[int]] = {}

    def add(kind: str, value: Any) -> None:
        for one in value if isinstance(value, list) else [value]:
            if isinstance(one, int) and not isinstance(one, bool):
                wanted.setdefault(kind, set()).add(one)
            elif isinstance(one, str) and one.isdigit():
                wanted.setdefault(kind, set()).add(int(one))

    for entry in entries:
        if entry.object_type in OBJECT_NAMES and entry.object_id is not None:
            add(entry.object_type, entry.object_id)
        if entry.object_type == "recording" and isinstance(entry.detail.get("case_id"), int):
            add("case", entry.detail["case_id"])
        for key, value in _flat(entry.detail):
            if key in _ID_KEYS:
                add(_ID_KEYS[key], value)
            elif key == "targets" and isinstance(value, list):
                for target in value:
                    if isinstance(target, list) and len(target) == 2:
                        add(str(target[0]), target[1])
    return wanted


def _flat(detail: Any) -> Iterable[tuple[str, Any]]:
    """Every (key, value) of a detail, nested ones too (a filter's township, a change's before and after)."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            yield key, value
            if isinstance(value, dict):
                for inner_key, inner in value.items():
                    if inner_key in ("before", "after"):
                        yield key, inner
                    else:
                        yield from _flat({inner_key: inner})


async def lookup_names(session: AsyncSession, entries: Iterable[AuditEntry]) -> Names:
    """The names of everything these entries mention (a few queries, whatever the number of entries)."""
    wanted = _ids(list(entries))
    names = Names()
    await _name_people_and_places(session, wanted, names)
    await _name_broadcasting(session, wanted, names)
    await _name_cases(session, wanted, names)
    return names


def _put(names: Names, kind: str, object_id: int, text: str, href: str | None, name: str = "") -> None:
    names.found[(kind, object_id)] = Shown(text, href, name)


# The areas and units: named "<kind> <name>", each linking to its admin page.
_PLACES: tuple[tuple[str, Any, str | None], ...] = (
    ("county", County, "/admin/areas"),
    ("township", Township, "/admin/townships/{id}"),
    ("village", Village, "/admin/villages/{id}"),
    ("zone", Zone, "/admin/zones/{id}"),
    ("unit", Unit, "/admin/units"),
)


async def _name_people_and_places(session: AsyncSession, wanted: dict[str, set[int]], names: Names) -> None:
    if ids := wanted.get("user"):
        for user in await session.scalars(select(User).where(User.id.in_(ids))):
            _put(names, "user", user.id, f"{user.display_name}（{user.username}）", f"/admin/users/{user.id}")
    for kind, model, href in _PLACES:
        if ids := wanted.get(kind):
            for row in await session.scalars(select(model).where(model.id.in_(ids))):
                link = href.format(id=row.id) if href else None
                _put(names, kind, row.id, f"{OBJECT_NAMES[kind]} {row.name}", link, row.name)


async def _name_broadcasting(session: AsyncSession, wanted: dict[str, set[int]], names: Names) -> None:
    if ids := wanted.get("speaker"):
        for speaker in await session.scalars(select(Speaker).where(Speaker.id.in_(ids))):
            _put(names, "speaker", speaker.id, f"终端 {speaker.name}", f"/admin/zones/{speaker.zone_id}", speaker.name)
    if ids := wanted.get("notice"):
        for notice in await session.scalars(select(Notice).where(Notice.id.in_(ids))):
            link = f"/broadcast/notices/{notice.id}"
            _put(names, "notice", notice.id, f"通知《{notice.title}》", link, f"《{notice.title}》")
    if ids := wanted.get("schedule"):
        rows = await session.execute(
            select(Schedule.id, Notice.title).join(Notice, Notice.id == Schedule.notice_id).where(Schedule.id.in_(ids))
        )
        for schedule_id, title in rows:
            _put(names, "schedule", schedule_id, f"《{title}》的播出安排", f"/broadcast/schedules/{schedule_id}")


async def _name_cases(session: AsyncSession, wanted: dict[str, set[int]], names: Names) -> None:
    recordings: dict[int, int | None] = {}
    if ids := wanted.get("recording"):
        for recording_id, case_id in await session.execute(
            select(Recording.id, Recording.case_id).where(Recording.id.in_(ids))
        ):
            recordings[recording_id] = case_id
            wanted.setdefault("case", set()).update([case_id] if case_id else [])
    if ids := wanted.get("case"):
        for case in await session.scalars(select(Case).where(Case.id.in_(ids))):
            if case.sealed:
                # Admins do not read discipline reports: not even the number goes on the page.
                _put(names, "case", case.id, "一件违纪举报（编号保密）", None)
            else:
                _put(names, "case", case.id, f"案件 {case.number}", f"/cases/{case.id}", case.number)
    for recording_id, case_id in recordings.items():
        case_shown = names.of("case", case_id) if case_id else Shown("未立案的来电")
        _put(names, "recording", recording_id, f"{case_shown.text}的录音", case_shown.href)
    if ids := wanted.get("missed_call"):
        for missed in await session.scalars(select(MissedCall).where(MissedCall.id.in_(ids))):
            text = "一通密封的未接来电" if missed.sealed else f"未接来电（{missed.at:%Y-%m-%d}）"
            _put(names, "missed_call", missed.id, text, None if missed.sealed else "/missed-calls?state=all")


def _value(key: str, value: Any, names: Names) -> str:
    if value is None or value == "" or value == []:
        return "（空）"
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, dict) and value and set(value) <= {"before", "after"}:
        return f"{_value(key, value.get('before'), names)} → {_value(key, value.get('after'), names)}"
    if key in _ID_KEYS:
        kind = _ID_KEYS[key]
        values = value if isinstance(value, list) else [value]
        return "、".join(names.of(kind, one).name for one in values)
    if key == "targets" and isinstance(value, list):
        return "、".join(
            names.of(str(target[0]), target[1]).name if isinstance(target, list) and len(target) == 2 else "（空）"
            for target in value
        )
    if key == "fields" and isinstance(value, list):
        return "、".join(str(DETAIL_LABELS.get(str(one)) or "其他") for one in value)
    if key == "bytes" and isinstance(value, int):
        return f"{value / 1024:.0f} KB" if value >= 1024 else f"{value} 字节"
    if isinstance(value, list):
        return "、".join(_value(key, one, names) for one in value)
    if isinstance(value, dict):
        return "；".join(line for inner, one in value.items() if (line := _line(inner, one, names)))
    if key in _VALUES:
        labels = _VALUES[key]
        if value in labels:
            return labels[value]
        if key == "via" and isinstance(value, str) and value.startswith("case."):
            return "案件操作"
    return str(value)


def _line(key: str, value: Any, names: Names) -> str | None:
    label = DETAIL_LABELS.get(key, "其他信息")
    if label is None:
        return None
    return f"{label}：{_value(key, value, names)}"


def describe(entry: AuditEntry, names: Names) -> AuditLine:
    target = None
    if entry.object_type == "holiday" and entry.object_id:
        day = entry.object_id
        target = Shown(f"节假日 {day}", f"/admin/holidays?year={day[:4]}" if day[:4].isdigit() else None)
    elif entry.object_id is not None:
        target = names.of(entry.object_type, entry.object_id)
    elif entry.object_type in OBJECT_NAMES and entry.object_type not in ("case", "user"):
        target = Shown(OBJECT_NAMES[entry.object_type])
    who = entry.username
    if entry.user_id is None and entry.username.startswith("system:"):
        who = SYSTEM_ACTORS.get(entry.username, "系统")
    details = [line for key, value in entry.detail.items() if (line := _line(key, value, names))]
    return AuditLine(entry, action_name(entry.action), who, target, details)


async def describe_all(session: AsyncSession, entries: list[AuditEntry]) -> list[AuditLine]:
    names = await lookup_names(session, entries)
    return [describe(entry, names) for entry in entries]


def action_choices() -> list[tuple[str, str]]:
    """The action filter's drop-down: (code, name), grouped by what they act on."""
    order = list(OBJECT_NAMES)
    return sorted(
        ACTION_NAMES.items(),
        key=lambda item: (order.index(item[0].split(".")[0]) if item[0].split(".")[0] in order else -1, item[0]),
    )


def object_choices() -> list[tuple[str, str]]:
    return list(OBJECT_NAMES.items())
