"""The case ledger's tables (台账): workflow state beside each case, its history, the holiday table, views, calls.

``cases`` itself (number, status, category, caller, township/village/unit,
summary) belongs to the hotline, which creates every hotline case in ``new``.
What the workflow adds lives here, one row per case in ``case_ledger``,
created the first time the workflow touches the case (a case still ``new``
has none yet, and needs none: its only clock runs from ``cases.created_at``).

``case_events`` is the history: one row per change, who/when/what with the
values before and after, never updated or deleted (database triggers, see
``storage/append_only.py``). ``case_holidays`` is the official holiday and
make-up working day (调休) table that working-day clocks count with; it is
data, edited by admins, not code. ``callback_attempts`` and
``survey_attempts`` are every call the workflow placed (回拨, 回访), answered
or not.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base
from storage.models.hotline import Case
from storage.types import UtcDateTime

# What operators file cases under. The hotline opens every case as "petition" (key 1) or
# "discipline" (key 3); operators refine the first at triage. "discipline" seals a case.
CASE_CATEGORIES: dict[str, str] = {
    "petition": "反映问题/求助（待分类）",
    "land": "土地草场纠纷",
    "neighbour": "邻里纠纷",
    "family": "婚姻家庭纠纷",
    "wages": "拖欠工资",
    "welfare": "低保救助",
    "infrastructure": "道路饮水等基础设施",
    "environment": "环境卫生",
    "social_security": "医疗社保",
    "policy": "政策咨询",
    "discipline": "违纪举报",
    "other": "其他",
}
# 已化解 / 部分化解: a case may be closed with part of the request met (told to the villager as such).
CASE_OUTCOMES = ("resolved", "partly_resolved")
OUTCOME_LABELS = {"resolved": "已化解", "partly_resolved": "部分化解"}
SATISFACTION_LEVELS = ("satisfied", "basically_satisfied", "unsatisfied")
SATISFACTION_LABELS = {"satisfied": "满意", "basically_satisfied": "基本满意", "unsatisfied": "不满意"}
# The keys of the follow-up survey (满意请按1，基本满意请按2，不满意请按3).
SATISFACTION_KEYS = {"1": "satisfied", "2": "basically_satisfied", "3": "unsatisfied"}
# How the villager was told the result, and how the follow-up was done.
REPLY_METHODS = {"phone": "电话", "visit": "上门", "sms": "短信", "letter": "书面", "in_person": "当面"}
FOLLOWUP_METHODS = {"auto_call": "自动语音回访", "phone": "电话回访", "visit": "上门回访"}
EXTENSION_STATES = ("none", "requested", "approved", "denied")

EVENT_KINDS: dict[str, str] = {
    "created": "登记",
    "triaged": "分拣",
    "accepted": "受理",
    "rejected": "不予受理",
    "assigned": "交办",
    "transferred": "转办",
    "extension_requested": "申请延期",
    "extension_approved": "同意延期",
    "extension_denied": "不同意延期",
    "resolved": "办结",
    "followed_up": "回访",
    "reopened": "重新办理",
    "closed": "销号",
    "noted": "备注",
    "urged": "催办",
    "callback": "回拨",
    "survey": "自动回访",
}

# 放假 (a day off, even on a weekday) / 调休上班 (a working day, even on a weekend).
DAY_KINDS = {"holiday": "放假", "workday": "调休上班"}

CALLBACK_ATTEMPT_STATES = {
    "requested": "等待拨出",
    "placing": "正在呼叫接线员",
    "ringing": "正在呼叫群众",
    "answered": "已接通",
    "operator_unanswered": "接线员未接听",
    "villager_unanswered": "群众未接听",
    "busy": "群众占线",
    "failed": "呼叫失败",
    "not_connected": "未接通即挂断",
    "expired": "请求过期未拨出",
    "unknown": "结果不明（电话系统连接中断）",
}
CALLBACK_ATTEMPT_FINAL = frozenset(set(CALLBACK_ATTEMPT_STATES) - {"requested", "placing", "ringing", "answered"})
SURVEY_STATES = {
    "placing": "正在呼叫",
    "answered": "已接听",
    "completed": "已评价",
    "no_key": "接听但未按键",
    "no_answer": "无人接听",
    "busy": "占线",
    "failed": "呼叫失败",
    "unknown": "结果不明（电话系统连接中断）",
}
SURVEY_OPEN = frozenset({"placing", "answered"})


def _in(column: str, values: Any) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


class CaseLedger(Base):
    """The workflow's state of one case, beside ``cases`` (one row, created on the first transition)."""

    __tablename__ = "case_ledger"
    __table_args__ = (
        CheckConstraint(f"outcome IS NULL OR {_in('outcome', CASE_OUTCOMES)}", name="outcome"),
        CheckConstraint(f"satisfaction IS NULL OR {_in('satisfaction', SATISFACTION_LEVELS)}", name="satisfaction"),
        CheckConstraint(_in("extension_state", EXTENSION_STATES), name="extension_state"),
        CheckConstraint("extension_days >= 0", name="extension_days"),
        # The overdue and due-soon lists: open cases (accepted, not resolved) by their resolution deadline.
        # Partial: every deadline that ever passed is most of the ledger; the open ones are a few per cent.
        Index(
            "ix_case_ledger_open_due",
            "resolution_due",
            sqlite_where=text("accepted_at IS NOT NULL AND resolved_at IS NULL"),
            postgresql_where=text("accepted_at IS NOT NULL AND resolved_at IS NULL"),
        ),
        Index("ix_case_ledger_resolution_due", "resolution_due"),
        Index("ix_case_ledger_followup_due", "followup_due"),
        Index("ix_case_ledger_extension_state", "extension_state"),
    )

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="RESTRICT"), primary_key=True)
    # When the case was decided on (受理 or 不予受理), and its deadline for that decision.
    acceptance_due: Mapped[datetime | None] = mapped_column(UtcDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    rejected_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    rejected_reason: Mapped[str | None] = mapped_column(Text)
    # 包案领导: the leader answerable for the case (a name; often not a user of this service).
    leader_name: Mapped[str | None] = mapped_column(String(64))
    assigned_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Instant the resolution clock runs out (end of the due day, local time), extension included.
    resolution_due: Mapped[datetime | None] = mapped_column(UtcDateTime())
    extension_state: Mapped[str] = mapped_column(String(16), default="none")
    extension_days: Mapped[int] = mapped_column(Integer, default=0)
    extension_requested_days: Mapped[int | None] = mapped_column(Integer)
    extension_reason: Mapped[str | None] = mapped_column(Text)
    extension_requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    extension_decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    outcome: Mapped[str | None] = mapped_column(String(16))
    result: Mapped[str | None] = mapped_column(Text)
    # 办理结果已告知群众: how and when the villager was told.
    result_told_via: Mapped[str | None] = mapped_column(String(16))
    result_told_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # 回访: due from the day after resolution; the latest answer (a reopened case keeps its 不满意 until re-asked).
    followup_due: Mapped[datetime | None] = mapped_column(UtcDateTime())
    followed_up_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    satisfaction: Mapped[str | None] = mapped_column(String(24))
    followup_method: Mapped[str | None] = mapped_column(String(16))
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    # Once a deadline was missed (decided or resolved late) the case stays counted as overdue.
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class CaseEvent(Base):
    """One change to a case: who, when, what, the values before and after, a note. Insert-only (triggers)."""

    __tablename__ = "case_events"
    __table_args__ = (
        CheckConstraint(_in("kind", EVENT_KINDS), name="kind"),
        Index("ix_case_events_case_id_id", "case_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="RESTRICT"))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    # None for the service itself (the follow-up runner): ``username`` says which part.
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    username: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(24))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    before: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    after: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    note: Mapped[str | None] = mapped_column(Text)


class CaseHoliday(Base):
    """A day that breaks the Monday–Friday rule: a holiday on a weekday, or a make-up working day (调休)."""

    __tablename__ = "case_holidays"
    __table_args__ = (CheckConstraint(_in("kind", DAY_KINDS), name="kind"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    # e.g. 春节, 国庆节.
    name: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_by: Mapped[str] = mapped_column(String(64))


class CaseView(Base):
    """A saved case-list filter (保存的视图): private to its owner, or shared with everyone."""

    __tablename__ = "case_views"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class CallbackAttempt(Base):
    """One 回拨: the operator's phone rang first, then the villager's; answered or not, it is kept."""

    __tablename__ = "callback_attempts"
    __table_args__ = (CheckConstraint(_in("state", CALLBACK_ATTEMPT_STATES), name="state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="RESTRICT"), index=True)
    # Set when the callback returns a missed call (未接来电), which became this case.
    missed_call_id: Mapped[int | None] = mapped_column(ForeignKey("missed_calls.id", ondelete="RESTRICT"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    operator_endpoint: Mapped[str] = mapped_column(String(128))
    # The Originate's ChannelId, so also the call's Linkedid (recordings carry it).
    channel_id: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(24), default="requested", index=True)
    dial_status: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(255))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime())
    placed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class SurveyAttempt(Base):
    """One automated 回访 call; the answer (1/2/3) or why there was none."""

    __tablename__ = "survey_attempts"
    __table_args__ = (
        CheckConstraint(_in("state", SURVEY_STATES), name="state"),
        UniqueConstraint("case_id", "round", "attempt"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="RESTRICT"), index=True)
    # Which resolution is asked about: a reopened and resolved-again case is surveyed afresh.
    round: Mapped[int] = mapped_column(Integer, default=0)
    attempt: Mapped[int] = mapped_column(Integer)
    channel_id: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="placing", index=True)
    answer: Mapped[str | None] = mapped_column(String(4))
    detail: Mapped[str | None] = mapped_column(String(255))
    placed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


# Indexes the ledger needs on the hotline's ``cases`` table (its own single-column ones stay as they are),
# found with bench/cases.py at a million cases: a township's list newest first, a township's cases in one
# state, a state's list (the new cases' overdue cutoff, the open cases), and the sealed-case counts
# every list shows non-inspectors.
Index("ix_cases_township_id_created_at", Case.township_id, Case.created_at)
Index("ix_cases_township_id_status", Case.township_id, Case.status, Case.created_at)
Index("ix_cases_status_created_at", Case.status, Case.created_at)
Index("ix_cases_sealed_test_call_township_id", Case.sealed, Case.test_call, Case.township_id, Case.created_at)

__all__ = [
    "CALLBACK_ATTEMPT_FINAL",
    "CALLBACK_ATTEMPT_STATES",
    "CASE_CATEGORIES",
    "CASE_OUTCOMES",
    "DAY_KINDS",
    "EVENT_KINDS",
    "EXTENSION_STATES",
    "FOLLOWUP_METHODS",
    "OUTCOME_LABELS",
    "REPLY_METHODS",
    "SATISFACTION_KEYS",
    "SATISFACTION_LABELS",
    "SATISFACTION_LEVELS",
    "SURVEY_OPEN",
    "SURVEY_STATES",
    "CallbackAttempt",
    "CaseEvent",
    "CaseHoliday",
    "CaseLedger",
    "CaseView",
    "SurveyAttempt",
]


class CaseRollup(Base):
    """Roll-ups of the statistics' figures (cases/rollups.py), by day and by month, one dimension at a time.

    One row per grain ("day", or "month" with ``day`` its first day) × local registration day ×
    township × sealed × dimension ("village", "category" or "channel") × that dimension's key: the
    dashboard's groupings, each summed on its own (a row per case combination would be as many rows
    as cases). Township totals and months are the channel rows summed (every case has one channel).
    Kept current by the case workflow in the same transaction as every change to a case or its ledger
    row (a flush hook), back-filled by migration 0013. Test calls are never in it. ``township_id`` 0
    and village key "0" stand for "none" (a key column cannot be NULL and still meet its row on
    conflict). "Overdue now" is not here: it changes with the clock, not with a write; ``late`` (a
    deadline missed once) is.
    """

    __tablename__ = "case_rollups"

    grain: Mapped[str] = mapped_column(String(8), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    township_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sealed: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    dimension: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    received: Mapped[int] = mapped_column(Integer, default=0)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    resolved: Mapped[int] = mapped_column(Integer, default=0)
    partly: Mapped[int] = mapped_column(Integer, default=0)
    satisfied: Mapped[int] = mapped_column(Integer, default=0)
    basically: Mapped[int] = mapped_column(Integer, default=0)
    unsatisfied: Mapped[int] = mapped_column(Integer, default=0)
    late: Mapped[int] = mapped_column(Integer, default=0)
    days_sum: Mapped[float] = mapped_column(Float, default=0.0)
    days_count: Mapped[int] = mapped_column(Integer, default=0)


class OpenCase(Base):
    """The cases whose clock runs now (新 / 受理 / 办理中, test calls left out): the "overdue now" set.

    What is over a deadline changes with the clock, not with a write, so it cannot be rolled up;
    counted from ``cases`` it reads every case of a period. These rows are the few per cent of
    cases still open, with what the dashboard groups them by and the deadlines that decide "overdue"
    and "due soon": the dashboard's overdue figures and the 催办 list read only them. Kept current by
    the case workflow's flush hook (cases/rollups.py) in the same transaction as every change,
    back-filled by migration 0016.
    """

    __tablename__ = "open_cases"
    # No index on unit_id: SQLite took it for the 催办 counts' GROUP BY and read the table in unit order,
    # a random read per row (113 ms against 24 ms through these two and a sort, at 30,000 open cases).
    __table_args__ = (
        Index("ix_open_cases_status_created_at", "status", "created_at"),
        Index("ix_open_cases_resolution_due", "resolution_due"),
    )

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    township_id: Mapped[int | None] = mapped_column(Integer)
    village_id: Mapped[int | None] = mapped_column(Integer)
    unit_id: Mapped[int | None] = mapped_column(Integer)
    category: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    sealed: Mapped[bool] = mapped_column(Boolean)
    # The ledger's 办理 deadline (none while new) and its "late once" mark.
    resolution_due: Mapped[datetime | None] = mapped_column(UtcDateTime())
    late: Mapped[bool] = mapped_column(Boolean, default=False)


class CaseRollupState(Base):
    """Which time zone the roll-ups' days are in (one row); none, or another zone: the dashboard counts cases."""

    __tablename__ = "case_rollup_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    zone: Mapped[str] = mapped_column(String(64))
