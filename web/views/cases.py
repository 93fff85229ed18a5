"""The case ledger on the web: the JSON API and the pages (台账, 案件, 未接来电, 催办, 统计, 节假日).

Handlers translate requests into calls on ``cases.part.Cases`` and its
errors into responses (the middleware maps the error tree to statuses). Scope,
sealing and the audit trail are decided in the domain, never here; this
module only decides what goes on the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

from aiohttp import web
from pydantic import Field, ValidationError

from accounts.principal import Principal
from cases.callback import failure_reason
from cases.clocks import last_day
from cases.ledger import (
    REMINDER_FIRST_ROWS,
    CaseFilters,
    LedgerRow,
    Reminders,
    XlsxExport,
    csv_chunks,
    export_values,
)
from cases.live import CaseChange
from cases.part import Cases
from cases.replay import RECORDING_KIND_LABELS
from cases.sealed import CREATE_ROLES, READ_ROLES
from cases.statistics import DIMENSIONS, Report
from common.errors import InvalidInput, NotFound, UserError
from storage.models import (
    CALLBACK_ATTEMPT_STATES,
    CASE_CATEGORIES,
    CASE_CHANNEL_LABELS,
    CASE_STATUS_LABELS,
    CASE_STATUSES,
    DAY_KINDS,
    EVENT_KINDS,
    FOLLOWUP_METHODS,
    OUTCOME_LABELS,
    REPLY_METHODS,
    SATISFACTION_LABELS,
    SURVEY_STATES,
    CallbackAttempt,
    Case,
    CaseEvent,
    CaseHoliday,
    CaseView,
    Recording,
    SurveyAttempt,
)
from web import keys
from web.api import Routes, dumps, json_response
from web.domains import CASES
from web.render import flash, live_mark, redirect, render
from web.validation import EARLIEST_DATE, LATEST_DATE, ApiModel, multiline, read_form, read_query

OPERATORS = ("operator",)
DASHBOARD_ROLES = ("leader", "operator", "inspector", "admin")
MISSED_ROLES = ("operator", "inspector")
NAV = (
    keys.NavItem("案件台账", "/cases", READ_ROLES),
    keys.NavItem("未接来电", "/missed-calls", MISSED_ROLES),
    keys.NavItem("统计", "/dashboard", DASHBOARD_ROLES),
    keys.NavItem("节假日", "/admin/holidays", ("admin",), menu=keys.ADMIN_MENU),
)
ACTION_LABELS = {
    "triage": "分拣",
    "accept": "受理",
    "reject": "不予受理",
    "assign": "交办",
    "transfer": "转办",
    "request_extension": "申请延期",
    "decide_extension": "审批延期",
    "resolve": "办结",
    "follow_up": "回访",
    "close": "销号",
    "note": "备注",
    "urge": "催办",
    "callback": "回拨",
}
Status = Literal["new", "accepted", "rejected", "in_progress", "resolved", "followed_up", "closed"]
Channel = Literal["walk_in", "grid", "letter", "online"]
AnyChannel = Literal["hotline", "walk_in", "grid", "letter", "online"]
Outcome = Literal["resolved", "partly_resolved"]
ReplyMethod = Literal["phone", "visit", "sms", "letter", "in_person"]
Satisfaction = Literal["satisfied", "basically_satisfied", "unsatisfied"]
FollowUpMethod = Literal["phone", "visit"]
# Text fields accept up to 100,000 characters here; the configured limit (cases.note_max_chars) is checked
# by the workflow, with a message that says what the limit is. Nor is "required" checked here: an empty
# reason, result or name is refused by the domain in Chinese (请填写不予受理的理由), not as "reason：不能为空".


# -- request and response models ------------------------------------------------------------------


class CaseQuery(ApiModel):
    status: list[Status] = Field(default_factory=list, description="状态，可多选")
    township_id: int | None = None
    village_id: int | None = None
    unit_id: int | None = None
    category: str | None = Field(None, max_length=32)
    channel: AnyChannel | None = None
    deadline: Literal["overdue", "due_soon", "followup_due", "extension_pending"] | None = Field(
        None, description="overdue 超期；due_soon 即将到期；followup_due 待回访；extension_pending 延期待审批"
    )
    q: str | None = Field(None, max_length=64, description="受理编号、来电号码、姓名或诉求内容")
    created_from: date | None = None
    created_to: date | None = None
    sealed_only: bool = False
    test_calls: Literal["without", "with", "only"] = Field(
        "without", description="拨测（测试来电）：without 不含（默认），with 包含，only 只看拨测；输入编号总能找到"
    )
    include_test: bool = Field(False, description="同 test_calls=with（旧参数）")
    sort: Literal["newest", "oldest", "due"] = "newest"
    view_id: int | None = Field(None, description="使用保存的视图（其余条件被忽略）")
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=10_000_000)


class ExportQuery(CaseQuery):
    pass


class CaseSummaryOut(ApiModel):
    id: int
    number: str
    status: str
    status_label: str
    channel: str
    category: str
    sealed: bool
    caller: str | None
    caller_name: str | None
    township_id: int | None
    township_name: str | None
    village_id: int | None
    village_name: str | None
    unit_id: int | None
    unit_name: str | None
    summary: str | None
    created_at: datetime
    deadline_kind: str | None
    deadline: datetime | None
    overdue: bool


class CaseListOut(ApiModel):
    items: list[CaseSummaryOut]
    total: int = Field(description="符合条件的件数；超过10000件时为10000，且 total_capped 为 true")
    total_capped: bool
    sealed_hidden: int = Field(description="权限范围内、您看不到的违纪举报件数（只给数字）")
    limit: int
    offset: int


class CaseIn(ApiModel):
    channel: Channel = Field(description="来访 walk_in、网格员 grid、来信 letter、网上 online")
    summary: str = Field(max_length=100_000, json_schema_extra=multiline())
    township_id: int
    village_id: int | None = None
    category: str = Field("petition", max_length=32)
    caller_number: str | None = Field(None, max_length=32)
    caller_name: str | None = Field(None, max_length=64)


class EventOut(ApiModel):
    id: int
    at: datetime
    kind: str
    kind_label: str
    username: str
    display_name: str | None
    from_status: str | None
    to_status: str | None
    before: dict[str, Any]
    after: dict[str, Any]
    note: str | None


class CaseDetailOut(CaseSummaryOut):
    category_label: str
    caller_withheld: bool
    test_call: bool
    # When the service registered the case (created_at is when the call began; after an outage, earlier).
    learnt_at: datetime | None
    # Hotline cases: whether the caller heard her case number in full (None: not a phone case).
    number_told: bool | None
    # Someone should call her back to tell her the number: not told, and no callback has reached her yet.
    tell_number: bool
    leader_name: str | None
    accepted_at: datetime | None
    acceptance_due: datetime | None
    resolution_due: datetime | None
    extension: dict[str, Any]
    resolved_at: datetime | None
    outcome: str | None
    result: str | None
    result_told_via: str | None
    followup_due: datetime | None
    followed_up_at: datetime | None
    satisfaction: str | None
    followup_method: str | None
    closed_at: datetime | None
    reopen_count: int
    late: bool
    rejected_reason: str | None
    recordings: list[dict[str, Any]]
    callbacks: list[dict[str, Any]]
    surveys: list[dict[str, Any]]
    history: list[EventOut]
    actions: list[str]
    days_left: int | None = Field(None, description="办理期限还剩几天（受理后、办结前才有）")


class EventListOut(ApiModel):
    items: list[EventOut]


class TriageIn(ApiModel):
    township_id: int | None = None
    village_id: int | None = None
    category: str | None = Field(None, max_length=32)
    unit_id: int | None = None
    summary: str | None = Field(None, max_length=100_000, json_schema_extra=multiline())
    caller_name: str | None = Field(None, max_length=64)
    note: str | None = Field(None, max_length=100_000, json_schema_extra=multiline())


class NoteIn(ApiModel):
    note: str | None = Field(None, max_length=100_000, json_schema_extra=multiline())


class ReasonIn(ApiModel):
    reason: str = Field(max_length=100_000, json_schema_extra=multiline())


class AssignIn(ApiModel):
    unit_id: int
    leader_name: str = Field(max_length=64, description="包案领导")
    note: str | None = Field(None, max_length=100_000, json_schema_extra=multiline())


class TransferIn(ApiModel):
    unit_id: int
    reason: str = Field(max_length=100_000, json_schema_extra=multiline())


class ExtensionIn(ApiModel):
    days: int = Field(description="延期天数（最多 cases.max_extension_days，默认30）")
    reason: str = Field(max_length=100_000, json_schema_extra=multiline())


class DecisionIn(ApiModel):
    approve: bool
    note: str | None = Field(None, max_length=100_000, json_schema_extra=multiline())


class ResolveIn(ApiModel):
    outcome: Outcome = Field(description="resolved 已化解；partly_resolved 部分化解")
    result: str = Field(max_length=100_000, description="办理结果（已告知群众的内容）", json_schema_extra=multiline())
    told_via: ReplyMethod = Field(description="告知群众的方式")
    note: str | None = Field(None, max_length=100_000, json_schema_extra=multiline())


class FollowUpIn(ApiModel):
    satisfaction: Satisfaction
    method: FollowUpMethod = "phone"
    note: str | None = Field(None, max_length=100_000, json_schema_extra=multiline())


class CloseIn(ApiModel):
    note: str | None = Field(None, max_length=100_000, json_schema_extra=multiline())
    unreachable: bool = Field(False, description="多次联系不上群众，无法回访")


class NoteTextIn(ApiModel):
    text: str = Field(max_length=100_000, json_schema_extra=multiline())


class CallbackOut(ApiModel):
    id: int
    case_id: int
    state: str
    state_label: str
    channel_id: str
    requested_at: datetime
    placed_at: datetime | None
    ended_at: datetime | None
    dial_status: str | None
    reason: str | None = Field(description="没有接通群众的原因（中文）；进行中或已接通时为空")
    detail: str | None = Field(description="电话系统给出的原始情况（给运维人员看）")


class CallbackListOut(ApiModel):
    items: list[CallbackOut]


class AudioQuery(ApiModel):
    download: bool = False
    listening: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{8,64}$",
        description="这次收听的标记（播放器每次从头播放时生成）：同一次收听里的拖动、快进只记一次播放",
    )


class ViewIn(ApiModel):
    name: str = Field(max_length=64)
    shared: bool = False
    filters: CaseQuery


class ViewOut(ApiModel):
    id: int
    name: str
    shared: bool
    mine: bool
    filters: dict[str, Any]


class MissedQuery(ApiModel):
    state: Literal["pending", "called_back", "no_number", "not_needed", "all"] = "pending"
    limit: int = Field(100, ge=1, le=500)
    offset: int = Field(0, ge=0)


class HolidayQuery(ApiModel):
    year: int | None = Field(None, ge=2000, le=2100, description="默认今年")


class HolidayIn(ApiModel):
    kind: Literal["holiday", "workday"] = Field(description="holiday 放假；workday 调休上班")
    name: str = Field(max_length=32)


class HolidayOut(ApiModel):
    day: date
    kind: str
    kind_label: str
    name: str


class RemindersQuery(ApiModel):
    unit: str | None = Field(
        None, max_length=16, pattern=r"^(none|[0-9]{1,9})$", description="只看一个承办单位（单位编号；none 为未交办）"
    )
    limit: int = Field(REMINDER_FIRST_ROWS, ge=1, le=1000, description="最多列出的案件数（各单位的件数总是全部给出）")


class StatsQuery(ApiModel):
    date_from: date | None = Field(None, description="开始日期（含），默认今年1月1日")
    date_to: date | None = Field(None, description="结束日期（含），默认今天")


# -- helpers -----------------------------------------------------------------------------------------


def _cases(request: web.Request) -> Cases:
    return request.app[CASES]


def _id(request: web.Request, name: str = "id") -> int:
    return int(request.match_info[name])


def filters_of(query: CaseQuery) -> CaseFilters:
    return CaseFilters(
        statuses=tuple(query.status),
        township_id=query.township_id,
        village_id=query.village_id,
        unit_id=query.unit_id,
        category=query.category,
        channel=query.channel,
        deadline=query.deadline,
        q=query.q,
        created_from=query.created_from,
        created_to=query.created_to,
        sealed_only=query.sealed_only,
        test_calls="with" if query.include_test and query.test_calls == "without" else query.test_calls,
        sort=query.sort,
    )


async def _resolved_filters(request: web.Request, query: CaseQuery) -> CaseFilters:
    if query.view_id is None:
        return filters_of(query)
    view = await _cases(request).ledger.view(keys.principal(request), query.view_id)
    try:
        return filters_of(CaseQuery.model_validate({**view.filters, "limit": query.limit, "offset": query.offset}))
    except ValidationError:
        raise InvalidInput(f"视图“{view.name}”的筛选条件已不能使用，请删除后重新保存", code="case_view.stale") from None


def summary_json(row: LedgerRow) -> dict[str, Any]:
    case = row.case
    return {
        "id": case.id,
        "number": case.number,
        "status": case.status,
        "status_label": CASE_STATUS_LABELS.get(case.status, case.status),
        "channel": case.channel,
        "category": case.category,
        "sealed": case.sealed,
        "caller": row.caller,
        "caller_name": case.caller_name,
        "township_id": case.township_id,
        "township_name": row.township,
        "village_id": case.village_id,
        "village_name": row.village,
        "unit_id": case.unit_id,
        "unit_name": row.unit,
        "summary": case.summary,
        "created_at": case.created_at,
        "deadline_kind": row.deadline_kind,
        "deadline": row.deadline,
        "overdue": row.overdue,
    }


def event_json(event: CaseEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": event.at,
        "kind": event.kind,
        "kind_label": EVENT_KINDS.get(event.kind, event.kind),
        "username": event.username,
        "display_name": event.display_name,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "before": event.before,
        "after": event.after,
        "note": event.note,
    }


def recording_json(case: Case, recording: Recording, *, may_download: bool) -> dict[str, Any]:
    url = f"/api/v1/cases/{case.id}/recordings/{recording.id}/audio"
    return {
        "id": recording.id,
        "kind": recording.kind,
        "kind_label": RECORDING_KIND_LABELS.get(recording.kind, recording.kind),
        "duration_s": recording.duration_s,
        "bytes": recording.bytes,
        "empty": recording.empty,
        "recorded_at": recording.recorded_at,
        "purged": recording.purged_at is not None,
        "url": url,
        "download_url": f"{url}?download=true" if may_download else None,
    }


def callback_json(attempt: CallbackAttempt, operator_ring_s: float) -> dict[str, Any]:
    return {
        "id": attempt.id,
        "case_id": attempt.case_id,
        "state": attempt.state,
        "state_label": CALLBACK_ATTEMPT_STATES.get(attempt.state, attempt.state),
        "channel_id": attempt.channel_id,
        "requested_at": attempt.requested_at,
        "placed_at": attempt.placed_at,
        "ended_at": attempt.ended_at,
        "dial_status": attempt.dial_status,
        "reason": failure_reason(attempt, operator_ring_s=operator_ring_s),
        "detail": attempt.detail,
    }


def survey_json(attempt: SurveyAttempt) -> dict[str, Any]:
    return {
        "id": attempt.id,
        "round": attempt.round,
        "attempt": attempt.attempt,
        "state": attempt.state,
        "state_label": SURVEY_STATES.get(attempt.state, attempt.state),
        "answer": attempt.answer,
        "placed_at": attempt.placed_at,
        "ended_at": attempt.ended_at,
    }


async def case_detail(request: web.Request, case_id: int, *, via: str) -> dict[str, Any]:
    """Everything about one case the user may know (404 and the sealed-case audit happen in the domain)."""
    cases = _cases(request)
    me = keys.principal(request)
    case = await cases.workflow.visible_case(me, case_id, via=via)
    row = await cases.ledger.row(me, case)
    ledger = row.ledger
    deadlines = await cases.holidays.deadlines()
    recordings = await cases.replay.recordings(case.id)
    may_download = cases.access.may(me, "download", sealed=case.sealed)
    acceptance_due = ledger.acceptance_due if ledger and ledger.acceptance_due else None
    if acceptance_due is None and case.status == "new":
        acceptance_due = deadlines.acceptance_deadline(case.created_at)
    data = summary_json(row)
    callbacks = await cases.callbacks.attempts(case.id)
    data.update(
        {
            "category_label": CASE_CATEGORIES.get(case.category, case.category),
            "caller_withheld": case.caller_withheld,
            "test_call": case.test_call,
            "learnt_at": case.learnt_at,
            "number_told": case.number_told,
            "tell_number": case.number_told is False and not any(attempt.state == "answered" for attempt in callbacks),
            "leader_name": ledger.leader_name if ledger else None,
            "accepted_at": ledger.accepted_at if ledger else None,
            "acceptance_due": acceptance_due,
            "resolution_due": ledger.resolution_due if ledger else None,
            "extension": {
                "state": ledger.extension_state if ledger else "none",
                "days": ledger.extension_days if ledger else 0,
                "requested_days": ledger.extension_requested_days if ledger else None,
                "reason": ledger.extension_reason if ledger else None,
                "requested_by": ledger.extension_requested_by if ledger else None,
            },
            "resolved_at": ledger.resolved_at if ledger else None,
            "outcome": ledger.outcome if ledger else None,
            "result": ledger.result if ledger else None,
            "result_told_via": ledger.result_told_via if ledger else None,
            "followup_due": ledger.followup_due if ledger else None,
            "followed_up_at": ledger.followed_up_at if ledger else None,
            "satisfaction": ledger.satisfaction if ledger else None,
            "followup_method": ledger.followup_method if ledger else None,
            "closed_at": ledger.closed_at if ledger else None,
            "reopen_count": ledger.reopen_count if ledger else 0,
            "late": ledger.late if ledger else False,
            "rejected_reason": ledger.rejected_reason if ledger else None,
            "recordings": [recording_json(case, recording, may_download=may_download) for recording in recordings],
            "callbacks": [callback_json(attempt, cases.callbacks.config.operator_ring_s) for attempt in callbacks],
            "surveys": [survey_json(attempt) for attempt in await cases.surveys.attempts(case.id)],
            "history": [event_json(event) for event in await cases.workflow.history(case.id)],
            "actions": [
                action
                for action in cases.workflow.allowed(me, case, ledger)
                if action != "callback" or cases.callbacks.available
            ],
        }
    )
    if ledger is not None and ledger.resolution_due is not None and case.status in ("accepted", "in_progress"):
        data["days_left"] = deadlines.days_left(request.app[keys.CLOCK].now(), ledger.resolution_due)
    return data


# -- API: the ledger ------------------------------------------------------------------------------


async def list_cases(request: web.Request, query: CaseQuery) -> web.Response:
    filters = await _resolved_filters(request, query)
    page = await _cases(request).ledger.page(keys.principal(request), filters, limit=query.limit, offset=query.offset)
    return json_response(
        {
            "items": [summary_json(row) for row in page.rows],
            "total": page.total,
            "total_capped": page.capped,
            "sealed_hidden": page.sealed_hidden,
            "limit": page.limit,
            "offset": page.offset,
        }
    )


async def create_case(request: web.Request, body: CaseIn) -> web.Response:
    case = await _cases(request).workflow.create(keys.principal(request), **body.model_dump())
    return json_response(await case_detail(request, case.id, via="api"), status=201)


async def get_case(request: web.Request) -> web.Response:
    return json_response(await case_detail(request, _id(request), via="api"))


async def case_events(request: web.Request) -> web.Response:
    cases = _cases(request)
    case = await cases.workflow.visible_case(keys.principal(request), _id(request), via="api/events")
    return json_response({"items": [event_json(event) for event in await cases.workflow.history(case.id)]})


def _action(
    call: Callable[[Cases, Principal, int, Any], Awaitable[object]],
) -> Callable[..., Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request, body: Any) -> web.Response:
        case_id = _id(request)
        me = keys.principal(request)
        cases = _cases(request)
        changed = await call(cases, me, case_id, body)
        if isinstance(changed, Case) and not cases.access.may_see(
            me, sealed=changed.sealed, township_id=changed.township_id
        ):
            # Triage made it a discipline report: done, and from now on sealed from this user.
            return json_response(
                {"id": changed.id, "number": changed.number, "status": changed.status, "sealed": changed.sealed,
                 "visible": False, "message": "案件已转为违纪举报并密封，此后只有纪检监察能看到"}
            )  # fmt: skip
        return json_response(await case_detail(request, case_id, via="api"))

    return handler


async def _triage(cases: Cases, me: Principal, case_id: int, body: TriageIn) -> object:
    return await cases.workflow.triage(me, case_id, **body.model_dump(exclude_unset=True))


async def _accept(cases: Cases, me: Principal, case_id: int, body: NoteIn) -> object:
    return await cases.workflow.accept(me, case_id, note=body.note)


async def _reject(cases: Cases, me: Principal, case_id: int, body: ReasonIn) -> object:
    return await cases.workflow.reject(me, case_id, reason=body.reason)


async def _assign(cases: Cases, me: Principal, case_id: int, body: AssignIn) -> object:
    return await cases.workflow.assign(me, case_id, unit_id=body.unit_id, leader_name=body.leader_name, note=body.note)


async def _transfer(cases: Cases, me: Principal, case_id: int, body: TransferIn) -> object:
    return await cases.workflow.transfer(me, case_id, unit_id=body.unit_id, reason=body.reason)


async def _extension(cases: Cases, me: Principal, case_id: int, body: ExtensionIn) -> object:
    return await cases.workflow.request_extension(me, case_id, days=body.days, reason=body.reason)


async def _decision(cases: Cases, me: Principal, case_id: int, body: DecisionIn) -> object:
    return await cases.workflow.decide_extension(me, case_id, approve=body.approve, note=body.note)


async def _resolve(cases: Cases, me: Principal, case_id: int, body: ResolveIn) -> object:
    return await cases.workflow.resolve(
        me, case_id, outcome=body.outcome, result=body.result, told_via=body.told_via, note=body.note
    )


async def _follow_up(cases: Cases, me: Principal, case_id: int, body: FollowUpIn) -> object:
    return await cases.workflow.follow_up(
        me, case_id, satisfaction=body.satisfaction, method=body.method, note=body.note
    )


async def _close(cases: Cases, me: Principal, case_id: int, body: CloseIn) -> object:
    return await cases.workflow.close(me, case_id, note=body.note, unreachable=body.unreachable)


async def _note(cases: Cases, me: Principal, case_id: int, body: NoteTextIn) -> object:
    return await cases.workflow.add_note(me, case_id, text=body.text)


async def _urge(cases: Cases, me: Principal, case_id: int, body: NoteIn) -> object:
    return await cases.workflow.urge(me, case_id, note=body.note)


# (path, summary, model, call, description) of every workflow action.
ACTIONS: list[tuple[str, str, type[ApiModel], Callable[..., Awaitable[object]], str]] = [
    ("triage", "分拣（所属乡镇、村、类别、拟承办单位、摘要）", TriageIn, _triage,
     "全县范围的接线员给新来电定乡镇、类别和单位；改成违纪举报会立即密封案件。"),
    ("accept", "受理", NoteIn, _accept, "待受理 → 已受理；办理期限从受理次日起算。"),
    ("reject", "不予受理（须写明理由）", ReasonIn, _reject, "待受理 → 不予受理。"),
    ("assign", "交办（承办单位和包案领导）", AssignIn, _assign, "待受理或已受理 → 办理中；待受理的同时受理。"),
    ("transfer", "转办（须写明理由）", TransferIn, _transfer, "办理中的案件换承办单位。"),
    ("extension", "申请延期（一次，最多30天）", ExtensionIn, _extension, "须审核人同意；第二次申请返回409。"),
    ("extension/decision", "审批延期", DecisionIn, _decision, "审核人同意或不同意；不能审批自己的申请。"),
    ("resolve", "办结（已化解或部分化解，并告知群众）", ResolveIn, _resolve, "办理中 → 已办结；回访从次日起。"),
    ("follow-up", "人工回访（满意、基本满意、不满意）", FollowUpIn, _follow_up, "不满意则重新办理。"),
    ("close", "销号", CloseIn, _close, "已回访 → 已销号；联系不上群众时可注明“无法回访”后从已办结销号。"),
    ("notes", "添加备注", NoteTextIn, _note, "只追加到办理记录，不改状态。"),
    ("urge", "催办", NoteIn, _urge, "记入办理记录。"),
]  # fmt: skip


async def request_callback(request: web.Request) -> web.Response:
    cases = _cases(request)
    attempt = await cases.callbacks.request(keys.principal(request), _id(request))
    return json_response(callback_json(attempt, cases.callbacks.config.operator_ring_s), status=202)


async def list_callbacks(request: web.Request) -> web.Response:
    cases = _cases(request)
    case = await cases.workflow.visible_case(keys.principal(request), _id(request), via="api/callbacks")
    ring_s = cases.callbacks.config.operator_ring_s
    return json_response(
        {"items": [callback_json(attempt, ring_s) for attempt in await cases.callbacks.attempts(case.id)]}
    )


async def recording_audio(request: web.Request, query: AudioQuery) -> web.StreamResponse:
    """A recording, with HTTP Range (206 and Content-Range; 416 past the end), only through its case."""
    range_header = request.headers.get("Range")
    start: int | None = None
    if range_header is not None:
        with contextlib.suppress(ValueError):
            start = request.http_range.start
    playable = await _cases(request).replay.open(
        keys.principal(request),
        _id(request, "case_id"),
        _id(request, "recording_id"),
        range_start=start,
        range_header=range_header,
        download=query.download,
        listening=query.listening,
    )
    disposition = "attachment" if query.download else "inline"
    headers = {
        "Content-Type": "audio/wav",
        "Content-Disposition": f'{disposition}; filename="{playable.download_name}"',
        # Never cached by a shared proxy or kept on disk by a browser: these are people's voices.
        "Cache-Control": "private, no-store",
    }
    return web.FileResponse(playable.path, headers=headers)


# -- API: exports, reminders, views -------------------------------------------------------------------


def _stamp(request: web.Request) -> str:
    now = request.app[keys.CLOCK].now().astimezone(request.app[keys.CONFIG].zone)
    return now.strftime("%Y%m%d-%H%M")


async def export_csv(request: web.Request, query: ExportQuery) -> web.StreamResponse:
    cases = _cases(request)
    me = keys.principal(request)
    filters = await _resolved_filters(request, query)
    deadlines = await cases.holidays.deadlines()
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="cases-{_stamp(request)}.csv"',
            "Cache-Control": "private, no-store",
        }
    )
    await response.prepare(request)
    async for chunk in csv_chunks(cases.ledger.export_rows(me, filters), deadlines):
        await response.write(chunk)
    await response.write_eof()
    return response


async def export_xlsx(request: web.Request, query: ExportQuery) -> web.StreamResponse:
    cases = _cases(request)
    me = keys.principal(request)
    filters = await _resolved_filters(request, query)
    deadlines = await cases.holidays.deadlines()
    directory = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="cunxiang-export-"))
    path = directory / "cases.xlsx"
    try:
        book = await asyncio.to_thread(XlsxExport, path)
        batch: list[list[str]] = []
        async for row in cases.ledger.export_rows(me, filters):
            batch.append(export_values(row, deadlines))
            if len(batch) >= 2000:
                await asyncio.to_thread(book.append, batch)
                batch = []
        await asyncio.to_thread(book.append, batch)
        await asyncio.to_thread(book.save)
        data = await asyncio.to_thread(path.read_bytes)
    finally:
        await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)
    return web.Response(
        body=data,
        headers={
            "Content-Type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "Content-Disposition": f'attachment; filename="cases-{_stamp(request)}.xlsx"',
            "Cache-Control": "private, no-store",
        },
    )


async def reminders(request: web.Request, query: RemindersQuery) -> web.Response:
    found = await _cases(request).ledger.reminders(keys.principal(request), limit=query.limit, unit=query.unit)
    return json_response(reminders_json(found))


def reminders_json(found: Reminders) -> dict[str, Any]:
    return {
        "total": found.total,
        "overdue": found.overdue,
        "shown": found.shown,
        "units": [
            {"unit": unit.name, "key": unit.key, "overdue": unit.overdue, "total": unit.total,
             "items": [summary_json(row) for row in unit.rows]}
            for unit in found.units
        ],
    }  # fmt: skip


def view_json(view: CaseView, me: Principal) -> dict[str, Any]:
    return {"id": view.id, "name": view.name, "shared": view.shared, "mine": view.user_id == me.user_id,
            "filters": view.filters}  # fmt: skip


async def list_views(request: web.Request) -> web.Response:
    me = keys.principal(request)
    return json_response([view_json(view, me) for view in await _cases(request).ledger.views(me)])


async def create_view(request: web.Request, body: ViewIn) -> web.Response:
    me = keys.principal(request)
    view = await _cases(request).ledger.save_view(me, body.name, filters_of(body.filters), shared=body.shared)
    return json_response(view_json(view, me), status=201)


async def delete_view(request: web.Request) -> web.Response:
    await _cases(request).ledger.delete_view(keys.principal(request), _id(request))
    return web.Response(status=204)


# -- API: missed calls, holidays, statistics --------------------------------------------------------


def missed_json(missed: Any, number: str | None) -> dict[str, Any]:
    return {
        "id": missed.id,
        "at": missed.at,
        "caller": number,
        "caller_withheld": missed.caller_withheld,
        "caller_name": missed.caller_name,
        "township_id": missed.township_id,
        "village_id": missed.village_id,
        "reason": missed.reason,
        "sealed": missed.sealed,
        "callback_state": missed.callback_state,
        "callback_attempts": missed.callback_attempts,
        "case_id": missed.case_id,
    }


async def list_missed(request: web.Request, query: MissedQuery) -> web.Response:
    state = None if query.state == "all" else query.state
    rows, total = await _cases(request).ledger.missed_calls(
        keys.principal(request), state=state, limit=query.limit, offset=query.offset
    )
    return json_response({"items": [missed_json(missed, number) for missed, number in rows], "total": total})


async def callback_missed(request: web.Request) -> web.Response:
    cases = _cases(request)
    case, attempt = await cases.callbacks.request_for_missed(keys.principal(request), _id(request))
    callback = callback_json(attempt, cases.callbacks.config.operator_ring_s)
    return json_response({"case_id": case.id, "case_number": case.number, "callback": callback}, 202)


async def dismiss_missed(request: web.Request, body: ReasonIn) -> web.Response:
    missed = await _cases(request).ledger.dismiss_missed(keys.principal(request), _id(request), body.reason)
    return json_response({"id": missed.id, "callback_state": missed.callback_state})


def holiday_json(row: CaseHoliday) -> dict[str, Any]:
    return {"day": row.day, "kind": row.kind, "kind_label": DAY_KINDS.get(row.kind, row.kind), "name": row.name}


def _day(request: web.Request) -> date:
    text = request.match_info["day"]
    try:
        if not (text.isascii() and len(text) == 10):
            raise ValueError(text)
        day = date.fromisoformat(text)
    except ValueError:
        raise NotFound("日期格式应为 YYYY-MM-DD", code="holiday.bad_date") from None
    if not EARLIEST_DATE <= day <= LATEST_DATE:
        message = f"日期应在{EARLIEST_DATE.year}年到{LATEST_DATE.year}年之间"
        raise InvalidInput(message, code="holiday.bad_date", fields={"day": message})
    return day


async def list_holidays(request: web.Request, query: HolidayQuery) -> web.Response:
    year = query.year or request.app[keys.CLOCK].now().astimezone(request.app[keys.CONFIG].zone).year
    rows = await _cases(request).holidays.list_year(year)
    return json_response([holiday_json(row) for row in rows])


async def put_holiday(request: web.Request, body: HolidayIn) -> web.Response:
    row = await _cases(request).holidays.set_day(keys.principal(request), _day(request), body.kind, body.name)
    return json_response(holiday_json(row))


async def delete_holiday(request: web.Request) -> web.Response:
    await _cases(request).holidays.delete_day(keys.principal(request), _day(request))
    return web.Response(status=204)


async def statistics(request: web.Request, query: StatsQuery) -> web.Response:
    report = await _cases(request).stats.report(keys.principal(request), query.date_from, query.date_to)
    return json_response(report.as_dict())


# -- live pages: the stream of changes --------------------------------------------------------------------

# A comment line this often keeps proxies and the browser from taking a quiet stream for a dead one.
KEEP_ALIVE_S = 15.0


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {dumps(data)}\n\n".encode()


async def case_changes(request: web.Request) -> web.StreamResponse:
    """Server-sent events for the live pages: the ids of the cases this user may see that changed.

    ``cases``: ``{"case_ids": [...], "missed_calls": bool}`` — a page reloads what it shows if it shows
    one of them (a list, the 待办 counts: any). ``resync``: changes were missed; reload. Nothing about a
    case the user may not see is sent, not even that something changed. The stream ends after
    ``cases.live_stream_s`` (the browser reconnects, and the sign-in is checked again) and when the
    service stops. ``since``: the page's ``data-live-since`` mark — what changed after it is told at once,
    though it happened before this stream listened. Not in the OpenAPI document: an event stream, for the
    pages' script.
    """
    me = keys.principal(request)
    cases = _cases(request)
    since = request.query.get("since")

    def told(batch: list[CaseChange]) -> bytes:
        """The batch as this user may hear of it (nothing, when none of it is theirs)."""
        shown = [
            change.case_id
            for change in batch
            if change.topic == "case" and cases.access.may_see(me, sealed=change.sealed, township_id=change.township_id)
        ]
        missed = me.has_role(*MISSED_ROLES) and any(
            change.topic == "missed_call"
            and cases.access.may_see(me, sealed=change.sealed, township_id=change.township_id)
            for change in batch
        )
        return _event("cases", {"case_ids": shown, "missed_calls": missed}) if shown or missed else b""

    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a reverse proxy passes each event on at once
        }
    )
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + cases.config.live_stream_s
    try:
        await response.write(b"retry: 2000\n\n" + _event("ready", {}))
        with cases.changes.subscribe() as subscription:
            if since is not None:
                # Listening now: what was committed after the page was rendered and before this may have been
                # published to nobody, so it is asked for (anything later comes through the subscription).
                missed_meanwhile = await cases.changes.since(since)
                if missed_meanwhile is None:  # not a mark of ours: the page reloads what it shows
                    await response.write(_event("resync", {}))
                elif event := told(missed_meanwhile):
                    await response.write(event)
            while (left := ends_at - loop.time()) > 0:
                batch = await subscription.next(min(KEEP_ALIVE_S, left))
                if batch == "ended":
                    break
                if batch == "quiet":
                    await response.write(b": still here\n\n")
                elif batch == "resync":
                    await response.write(_event("resync", {}))
                elif event := told(batch):
                    await response.write(event)
    except ConnectionResetError:
        pass  # the page went away
    return response


# -- pages: the ledger, a case, new cases ----------------------------------------------------------------


async def _choices(request: web.Request) -> dict[str, Any]:
    me = keys.principal(request)
    areas = request.app[keys.AREAS]
    townships = await areas.list_townships(me)
    villages = await areas.list_villages(me)
    units = [unit for unit in await areas.list_units(me) if unit.active]
    return {
        "townships": townships,
        "villages": villages,
        "units": units,
        "township_options": [(township.id, township.name) for township in townships],
        "unit_options": [(unit.id, unit.name) for unit in units],
    }


def _labels() -> dict[str, Any]:
    return {
        "STATUS_LABELS": CASE_STATUS_LABELS,
        "STATUSES": CASE_STATUSES,
        "CATEGORIES": CASE_CATEGORIES,
        "CHANNEL_LABELS": CASE_CHANNEL_LABELS,
        "OUTCOME_LABELS": OUTCOME_LABELS,
        "REPLY_METHODS": REPLY_METHODS,
        "SATISFACTION_LABELS": SATISFACTION_LABELS,
        "FOLLOWUP_METHODS": {key: label for key, label in FOLLOWUP_METHODS.items() if key != "auto_call"},
        "EVENT_KINDS": EVENT_KINDS,
        "ACTION_LABELS": ACTION_LABELS,
        "DAY_KINDS": DAY_KINDS,
    }


async def cases_page(request: web.Request) -> web.Response:
    me = keys.principal(request)
    cases = _cases(request)
    error = None
    try:
        query = read_query(request, CaseQuery)
    except InvalidInput as exc:
        error, query = exc.message, CaseQuery()
    try:
        filters = await _resolved_filters(request, query)
    except NotFound as exc:
        error, filters = exc.message, CaseFilters()
    since = await live_mark(request)  # before the ledger is read: see static/live.js
    page = await cases.ledger.page(me, filters, limit=min(query.limit, cases.config.page_size), offset=query.offset)
    params = [(key, value) for key, value in request.query.items() if key not in ("offset",)]
    return await render(
        request,
        "cases/list.html",
        {
            "page": page,
            "query": query,
            "filters": filters,
            "error": error,
            "views": await cases.ledger.views(me),
            "can_create": me.has_role(*CREATE_ROLES),
            "qs": urlencode(params),
            "export_qs": urlencode([(key, value) for key, value in params if key not in ("limit",)]),
            **await _choices(request),
            **_labels(),
            **since,
        },
    )


class ViewForm(ApiModel):
    name: str = Field(max_length=64)
    shared: bool = False
    query: str = Field("", max_length=2000)


async def save_view_form(request: web.Request) -> web.StreamResponse:
    me = keys.principal(request)
    try:
        form = await read_form(request, ViewForm, checkboxes=("shared",))
        query = CaseQuery.model_validate(_query_dict(form.query))
        view = await _cases(request).ledger.save_view(me, form.name, filters_of(query), shared=form.shared)
        await flash(request, f"已保存视图“{view.name}”")
        raise redirect(f"/cases?view_id={view.id}")
    except UserError as exc:
        await flash(request, exc.message, "error")
    except ValueError:
        await flash(request, "筛选条件有误，未保存", "error")
    raise redirect("/cases")


def _query_dict(text: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in parse_qsl(text):
        if not value or key in ("view_id", "offset", "limit"):
            continue
        if key == "status":
            data.setdefault("status", []).append(value)
        else:
            data[key] = value
    return data


async def delete_view_form(request: web.Request) -> web.StreamResponse:
    try:
        await _cases(request).ledger.delete_view(keys.principal(request), _id(request))
        await flash(request, "已删除视图")
    except UserError as exc:
        await flash(request, exc.message, "error")
    raise redirect("/cases")


# How the history describes a change: field → (label, how its values read).
FIELD_LABELS: dict[str, str] = {
    "township_id": "乡镇",
    "village_id": "村",
    "category": "类别",
    "unit_id": "拟承办单位",
    "unit_name": "承办单位",
    "leader_name": "包案领导",
    "summary": "摘要",
    "caller_name": "姓名",
    "sealed": "密封",
    "resolution_due": "办理期限",
    "days": "天数",
    "outcome": "结果",
    "told_via": "告知方式",
    "satisfaction": "满意度",
    "method": "方式",
    "reopen_count": "重办次数",
    "channel": "渠道",
    "late": "超期",
    "unreachable": "无法回访",
    "state": "结果",
}


def describe(event: dict[str, Any], zone: Any, names: dict[str, dict[int, str]]) -> list[str]:
    """The event's changes as short Chinese lines (the API keeps the raw values)."""
    value_labels: dict[str, dict[Any, str]] = {
        "category": dict(CASE_CATEGORIES),
        "outcome": dict(OUTCOME_LABELS),
        "told_via": dict(REPLY_METHODS),
        "satisfaction": dict(SATISFACTION_LABELS),
        "method": dict(FOLLOWUP_METHODS),
        "channel": dict(CASE_CHANNEL_LABELS),
        "state": {**CALLBACK_ATTEMPT_STATES, **SURVEY_STATES},
        "sealed": {True: "是", False: "否"},
        "late": {True: "是", False: "否"},
        "unreachable": {True: "是", False: "否"},
        "township_id": dict(names["townships"]),
        "village_id": dict(names["villages"]),
        "unit_id": dict(names["units"]),
    }

    def shown(key: str, value: Any) -> str:
        if value is None or value == "":
            return "（空）"
        if key == "resolution_due" and isinstance(value, str):
            with contextlib.suppress(ValueError):
                instant = datetime.fromisoformat(value)
                return last_day(instant, zone).isoformat()
        if key == "summary":
            text = str(value)
            return text if len(text) <= 30 else text[:30] + "…"
        return value_labels.get(key, {}).get(value, str(value))

    lines = []
    for key, value in event["after"].items():
        if key not in FIELD_LABELS or (key == "unit_id" and "unit_name" in event["after"]):
            continue
        if key in event["before"]:
            lines.append(f"{FIELD_LABELS[key]}：{shown(key, event['before'][key])} → {shown(key, value)}")
        else:
            lines.append(f"{FIELD_LABELS[key]}：{shown(key, value)}")
    return lines


async def case_page(request: web.Request) -> web.Response:
    since = await live_mark(request)  # before the case is read: see static/live.js
    data = await case_detail(request, _id(request), via="page")
    zone = request.app[keys.CONFIG].zone
    async with request.app[keys.SESSIONS]() as session:
        found = await _cases(request).ledger.names(session)
    names = {"townships": found.townships, "villages": found.villages, "units": found.units}
    return await render(request, "cases/case.html", {"c": data, **await _choices(request), **_labels(),
                                                     "describe": lambda event: describe(event, zone, names),
                                                     "max_extension": _cases(request).config.clocks.max_extension_days,
                                                     "note_max": _cases(request).config.note_max_chars,
                                                     **since})  # fmt: skip


class NewCaseForm(ApiModel):
    channel: Channel
    summary: str = Field(max_length=100_000, json_schema_extra=multiline())
    township_id: int
    village_id: int | None = None
    category: str = Field("petition", max_length=32)
    caller_number: str | None = Field(None, max_length=32)
    caller_name: str | None = Field(None, max_length=64)


async def new_case_page(request: web.Request) -> web.Response:
    return await render(request, "cases/new.html", {**await _choices(request), **_labels()})


async def new_case_form(request: web.Request) -> web.StreamResponse:
    try:
        form = await read_form(request, NewCaseForm)
        case = await _cases(request).workflow.create(keys.principal(request), **form.model_dump())
    except UserError as exc:
        await flash(request, exc.message, "error")
        raise redirect("/cases/new") from None
    if case.sealed and not keys.principal(request).has_role("inspector"):
        await flash(request, f"已登记违纪举报，受理编号 {case.number}。案件已密封，仅纪检监察可见。")
        raise redirect("/cases")
    await flash(request, f"已登记，受理编号 {case.number}")
    raise redirect(f"/cases/{case.id}")


# Form posts on the case page: the action's name → (form model, checkboxes, call, message when done).
FORMS: dict[str, tuple[type[ApiModel], tuple[str, ...], Callable[..., Awaitable[object]], str]] = {
    "triage": (TriageIn, (), _triage, "已保存分拣信息"),
    "accept": (NoteIn, (), _accept, "已受理"),
    "reject": (ReasonIn, (), _reject, "已不予受理"),
    "assign": (AssignIn, (), _assign, "已交办"),
    "transfer": (TransferIn, (), _transfer, "已转办"),
    "extension": (ExtensionIn, (), _extension, "已提交延期申请，等待审核人审批"),
    "extension-decision": (DecisionIn, ("approve",), _decision, "已审批延期申请"),
    "resolve": (ResolveIn, (), _resolve, "已办结"),
    "follow-up": (FollowUpIn, (), _follow_up, "已记录回访"),
    "close": (CloseIn, ("unreachable",), _close, "已销号"),
    "notes": (NoteTextIn, (), _note, "已添加备注"),
    "urge": (NoteIn, (), _urge, "已催办"),
}


async def case_action_form(request: web.Request) -> web.StreamResponse:
    case_id = _id(request)
    action = request.match_info["action"]
    if action not in FORMS and action != "callback":
        raise NotFound("没有这个操作")
    me = keys.principal(request)
    cases = _cases(request)
    kind = "ok"
    try:
        if action == "callback":
            await cases.callbacks.request(me, case_id)
            message = "正在回拨：请先接听您自己的电话，接通后系统再拨打群众电话"
            kind = "ok callback-under-way"  # the page takes this message down when the call has ended
        else:
            model, checkboxes, call, message = FORMS[action]
            form = await read_form(request, model, checkboxes=checkboxes)
            if action == "triage":
                form = model.model_validate(form.model_dump(exclude_none=True))
            await call(cases, me, case_id, form)
        await flash(request, message, kind)
    except NotFound:
        await flash(request, "案件已不在您的权限范围内（例如已转为违纪举报并密封）", "warn")
        raise redirect("/cases") from None
    except UserError as exc:
        await flash(request, exc.message, "error")
    raise redirect(f"/cases/{case_id}")


async def reminders_page(request: web.Request) -> web.Response:
    """The first screen: every unit's counts and the first rows; ``?unit=`` one unit's rows (up to 1,000)."""
    unit = request.query.get("unit")
    if unit is not None and unit != "none" and not (unit.isdigit() and len(unit) <= 9):
        unit = None  # a hand-edited address: the first screen
    limit = 1000 if unit is not None else REMINDER_FIRST_ROWS
    found = await _cases(request).ledger.reminders(keys.principal(request), limit=limit, unit=unit)
    return await render(request, "cases/reminders.html", {"r": found, "unit": unit, **_labels()})


# -- pages: missed calls, dashboard, holidays -------------------------------------------------------------


async def missed_page(request: web.Request) -> web.Response:
    me = keys.principal(request)
    state = request.query.get("state", "pending")
    if state not in ("pending", "called_back", "no_number", "not_needed", "all"):
        state = "pending"
    since = await live_mark(request)  # before the calls are read: see static/live.js
    rows, total = await _cases(request).ledger.missed_calls(me, state=None if state == "all" else state, limit=200)
    townships = {t.id: t.name for t in await request.app[keys.AREAS].list_townships(me)}
    return await render(
        request,
        "cases/missed.html",
        {"rows": rows, "total": total, "state": state, "townships": townships,
         "can_call": _cases(request).callbacks.available, **since},
    )  # fmt: skip


async def missed_callback_form(request: web.Request) -> web.StreamResponse:
    try:
        case, _attempt = await _cases(request).callbacks.request_for_missed(keys.principal(request), _id(request))
    except UserError as exc:
        await flash(request, exc.message, "error")
        raise redirect("/missed-calls") from None
    await flash(request, f"已转为案件 {case.number}，正在回拨：请先接听您自己的电话")
    raise redirect(f"/cases/{case.id}")


async def missed_dismiss_form(request: web.Request) -> web.StreamResponse:
    try:
        form = await read_form(request, ReasonIn)
        await _cases(request).ledger.dismiss_missed(keys.principal(request), _id(request), form.reason)
        await flash(request, "已标记为无需回拨")
    except UserError as exc:
        await flash(request, exc.message, "error")
    raise redirect("/missed-calls")


async def dashboard_page(request: web.Request) -> web.Response:
    me = keys.principal(request)
    error = None
    try:
        query = read_query(request, StatsQuery)
    except InvalidInput as exc:
        error, query = exc.message, StatsQuery()
    try:
        report = await _cases(request).stats.report(me, query.date_from, query.date_to)
    except InvalidInput as exc:
        error, report = exc.message, await _cases(request).stats.report(me)
    today = request.app[keys.CLOCK].now().astimezone(request.app[keys.CONFIG].zone).date()
    periods = [
        ("今年", date(today.year, 1, 1), today),
        (f"去年（{today.year - 1}年）", date(today.year - 1, 1, 1), date(today.year - 1, 12, 31)),
        ("近十二个月", _months_back(today, 11), today),
    ]
    return await render(
        request,
        "cases/dashboard.html",
        {"r": report, "error": error, "DIMENSIONS": DIMENSIONS, "charts": charts(report), "periods": periods,
         **_labels()},
    )  # fmt: skip


def _months_back(today: date, months: int) -> date:
    """The first day of the month ``months`` months before this one (11: a twelve-month window with this one)."""
    index = today.year * 12 + today.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def charts(report: Report) -> dict[str, Any]:
    """Bar charts as plain numbers for the template's SVG (drawn server-side: no script, no CDN)."""
    months = report.groups.get("month", [])
    peak = max([1, *(g.current.received for g in months), *(g.last_year.received for g in months)])
    townships = report.groups.get("township", [])[:12]
    township_peak = max([1, *(g.current.received for g in townships)])
    return {"months": months, "month_peak": peak, "townships": townships, "township_peak": township_peak}


class HolidayForm(ApiModel):
    day: date
    kind: Literal["holiday", "workday"]
    name: str = Field(max_length=32)


async def holidays_page(request: web.Request) -> web.Response:
    holidays = _cases(request).holidays
    today = request.app[keys.CLOCK].now().astimezone(request.app[keys.CONFIG].zone).date()
    text = request.query.get("year", "")
    # ASCII digits only: int() also reads "２０２６" and "٢٠٢٦", and a long run of them is no year at all.
    year = int(text) if text.isascii() and text.isdigit() and len(text) == 4 else today.year
    year = min(max(year, 2000), 2099)
    rows = await holidays.list_year(year)
    years = sorted({*await holidays.years(), today.year, today.year + 1})
    return await render(
        request, "cases/holidays.html", {"rows": rows, "year": year, "years": years, "policy": holidays.policy,
                                         "check": await holidays.check(year), **_labels()}
    )  # fmt: skip


async def holiday_form(request: web.Request) -> web.StreamResponse:
    year = ""
    try:
        form = await read_form(request, HolidayForm)
        year = str(form.day.year)
        await _cases(request).holidays.set_day(keys.principal(request), form.day, form.kind, form.name)
        await flash(request, f"已保存 {form.day.isoformat()}")
    except UserError as exc:
        await flash(request, exc.message, "error")
    raise redirect(f"/admin/holidays?year={year}" if year else "/admin/holidays")


async def holiday_delete_form(request: web.Request) -> web.StreamResponse:
    day = _day(request)
    try:
        await _cases(request).holidays.delete_day(keys.principal(request), day)
        await flash(request, f"已删除 {day.isoformat()}")
    except UserError as exc:
        await flash(request, exc.message, "error")
    raise redirect(f"/admin/holidays?year={day.year}")


# -- routes --------------------------------------------------------------------------------------------


def add_routes(routes: Routes) -> None:
    tag = "诉求案件"
    item = r"{id:\d+}"
    base = "/api/v1/cases"
    routes.api("GET", base, list_cases, summary="案件台账（筛选、分页）", tag=tag, query=CaseQuery,
               response=CaseListOut, roles=READ_ROLES,
               description="按权限范围：本人乡镇（全县用户含未分拣的来电）。违纪举报只对纪检监察列出，"
               "其他角色只得到 sealed_hidden 件数。来电号码对接线员和纪检监察以外的人打码。")  # fmt: skip
    routes.api("POST", base, create_case, summary="登记来访、网格员、来信或网上诉求", tag=tag, body=CaseIn,
               response=CaseDetailOut, roles=CREATE_ROLES, status=201)  # fmt: skip
    routes.api("GET", f"{base}/export.csv", export_csv, summary="导出台账（CSV）", tag=tag, query=ExportQuery,
               roles=READ_ROLES, content_type="text/csv",
               description="UTF-8（带BOM）CSV，列与统计口径一致；每次导出记审计日志。")  # fmt: skip
    routes.api("GET", f"{base}/export.xlsx", export_xlsx, summary="导出台账（Excel）", tag=tag, query=ExportQuery,
               roles=READ_ROLES,
               content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")  # fmt: skip
    routes.api("GET", f"{base}/reminders", reminders, summary="今日催办清单（按承办单位：超期和即将到期）", tag=tag,
               query=RemindersQuery, roles=READ_ROLES,
               description="各单位件数全部给出；列出前 limit 件（默认50）；unit 只看一个单位。")  # fmt: skip
    routes.api("GET", f"{base}/{item}", get_case, summary="案件详情（含录音、办理记录、可做的操作）", tag=tag,
               response=CaseDetailOut, roles=READ_ROLES,
               description="不在权限范围内的、或非纪检监察查看违纪举报：404；后者的尝试记入审计日志。")  # fmt: skip
    routes.api("GET", f"{base}/{item}/events", case_events, summary="办理记录（只追加，不可修改）", tag=tag,
               response=EventListOut, roles=READ_ROLES)  # fmt: skip
    for path, summary, model, call, description in ACTIONS:
        routes.api("POST", f"{base}/{item}/{path}", _action(call), summary=summary, tag=tag, body=model,
                   response=CaseDetailOut, roles=READ_ROLES,
                   description=description + " 不允许的状态转换返回409，什么也不写。")  # fmt: skip
    routes.api("POST", f"{base}/{item}/callbacks", request_callback, summary="回拨（先呼接线员自己的电话，再呼群众）",
               tag=tag, response=CallbackOut, roles=READ_ROLES, status=202,
               description="只排队，由当班工作进程通过 AMI Originate 拨出，绝不自动重拨；"
               "通话录音附到案件。")  # fmt: skip
    routes.api("GET", f"{base}/{item}/callbacks", list_callbacks, summary="回拨记录", tag=tag,
               response=CallbackListOut, roles=READ_ROLES)  # fmt: skip
    routes.api("GET", base + r"/{case_id:\d+}/recordings/{recording_id:\d+}/audio", recording_audio,
               summary="播放或下载录音（支持 Range）", tag=tag, query=AudioQuery, roles=READ_ROLES,
               content_type="audio/wav",
               description="只能通过案件编号和录音编号取，不接受路径；支持 Range（206/416）。"
               "每次播放记审计日志。")  # fmt: skip
    routes.api("GET", "/api/v1/case-views", list_views, summary="保存的案件视图", tag=tag, roles=READ_ROLES)
    routes.api("POST", "/api/v1/case-views", create_view, summary="保存案件视图", tag=tag, body=ViewIn,
               response=ViewOut, roles=READ_ROLES, status=201)  # fmt: skip
    routes.api("DELETE", f"/api/v1/case-views/{item}", delete_view, summary="删除自己的案件视图", tag=tag,
               roles=READ_ROLES, status=204)  # fmt: skip
    routes.api("GET", "/api/v1/missed-calls", list_missed, summary="未接来电（待回拨）", tag=tag, query=MissedQuery,
               roles=MISSED_ROLES)  # fmt: skip
    routes.api("POST", f"/api/v1/missed-calls/{item}/callback", callback_missed, summary="回拨未接来电（转为案件）",
               tag=tag, roles=MISSED_ROLES, status=202)  # fmt: skip
    routes.api("POST", f"/api/v1/missed-calls/{item}/dismiss", dismiss_missed, summary="未接来电无需回拨", tag=tag,
               body=ReasonIn, roles=MISSED_ROLES)  # fmt: skip
    routes.api("GET", "/api/v1/holidays", list_holidays, summary="节假日和调休上班日", tag=tag, query=HolidayQuery,
               response=None, roles=READ_ROLES)  # fmt: skip
    routes.api("PUT", "/api/v1/holidays/{day}", put_holiday, summary="设置一天为放假或调休上班", tag=tag,
               body=HolidayIn, response=HolidayOut, roles=("admin",))  # fmt: skip
    routes.api("DELETE", "/api/v1/holidays/{day}", delete_holiday, summary="从节假日表删除一天", tag=tag,
               roles=("admin",), status=204)  # fmt: skip
    routes.api("GET", "/api/v1/statistics/cases", statistics, summary="案件统计（与去年同期对比）", tag=tag,
               query=StatsQuery, roles=READ_ROLES,
               description="受理、化解、化解率、满意率、超期、平均办理天数，按乡镇、村、类别、渠道、月份；"
               "不含拨测；违纪举报只对纪检监察计入明细，其他人只得到件数。")  # fmt: skip

    routes.page("GET", "/cases", cases_page, roles=READ_ROLES)
    routes.page("GET", "/cases/changes", case_changes, roles=READ_ROLES)
    routes.page("GET", "/cases/new", new_case_page, roles=CREATE_ROLES)
    routes.page("POST", "/cases/new", new_case_form, roles=CREATE_ROLES)
    routes.page("GET", "/cases/reminders", reminders_page, roles=READ_ROLES)
    routes.page("POST", "/cases/views", save_view_form, roles=READ_ROLES)
    routes.page("POST", f"/cases/views/{item}/delete", delete_view_form, roles=READ_ROLES)
    routes.page("GET", f"/cases/{item}", case_page, roles=READ_ROLES)
    routes.page("POST", f"/cases/{item}/" + "{action:[a-z-]+}", case_action_form, roles=READ_ROLES)
    routes.page("GET", "/missed-calls", missed_page, roles=MISSED_ROLES)
    routes.page("POST", f"/missed-calls/{item}/callback", missed_callback_form, roles=MISSED_ROLES)
    routes.page("POST", f"/missed-calls/{item}/dismiss", missed_dismiss_form, roles=MISSED_ROLES)
    routes.page("GET", "/dashboard", dashboard_page, roles=DASHBOARD_ROLES)
    routes.page("GET", "/admin/holidays", holidays_page, roles=("admin",))
    routes.page("POST", "/admin/holidays", holiday_form, roles=("admin",))
    routes.page("POST", "/admin/holidays/{day}/delete", holiday_delete_form, roles=("admin",))


async def todo(request: web.Request, me: Principal) -> list[keys.TodoItem]:
    """The home page's 待办 for the case ledger: counts only, so no sealed case is shown (or logged) there."""
    if not me.has_role(*READ_ROLES):
        return []
    ledger = _cases(request).ledger
    wanted = [("超期案件", CaseFilters(deadline="overdue"), "/cases?deadline=overdue", True)]
    if me.has_role("operator", "inspector"):
        wanted.append(("待受理的案件", CaseFilters(statuses=("new",)), "/cases?status=new", False))
    wanted.append(("即将到期的案件", CaseFilters(deadline="due_soon"), "/cases?deadline=due_soon", False))
    if me.has_role("operator"):
        wanted.append(("待回访的案件", CaseFilters(deadline="followup_due"), "/cases?deadline=followup_due", False))
    if me.has_role("approver"):
        asked = CaseFilters(deadline="extension_pending")
        wanted.append(("延期申请待审批", asked, "/cases?deadline=extension_pending", False))
    counted = await ledger.counts(me, [filters for _label, filters, _href, _urgent in wanted])
    items = [
        keys.TodoItem(label, count, href, urgent)
        for (label, _filters, href, urgent), count in zip(wanted, counted, strict=True)
    ]
    if me.has_role(*MISSED_ROLES):
        _rows, missed = await ledger.missed_calls(me, state="pending", limit=1)
        items.append(keys.TodoItem("未接来电待回拨", missed, "/missed-calls"))
    return items


__all__ = ["CASES", "NAV", "add_routes", "todo"]
