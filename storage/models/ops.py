"""Alarms by phone: who is on duty, what went wrong, and every call made about it.

An alarm is raised once for one kind of trouble about one thing (``kind``, ``subject``); while it is open its
``open_key`` holds ``kind:subject`` (UNIQUE), so the same trouble is never open twice, whichever process looks.
Each call to a duty officer is its own row, claimed before the one Originate (never sent twice: decision 0009).
"""

from __future__ import annotations

from datetime import datetime, time

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text, Time
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base
from storage.types import UtcDateTime

ALARM_KINDS = ("emergency_failed", "disk", "ami_down", "alert_source_silent", "worker_down")
ALARM_KIND_LABELS = {
    "emergency_failed": "紧急广播失败",
    "disk": "磁盘空间不足",
    "ami_down": "电话系统断开",
    "alert_source_silent": "预警信息源中断",
    "worker_down": "后台服务停止",
}
# open: calling; acknowledged: someone pressed 1 (or an admin on the page); cleared: the trouble went away
# before anyone acknowledged; unanswered: every round called and nobody pressed 1.
ALARM_STATES = ("open", "acknowledged", "cleared", "unanswered")
ALARM_STATE_LABELS = {"open": "呼叫中", "acknowledged": "已确认", "cleared": "已恢复", "unanswered": "无人确认"}
ALARM_CALL_STATES = ("placing", "ringing", "acknowledged", "heard", "no_answer", "busy", "failed", "unknown")
ALARM_CALL_STATE_LABELS = {
    "placing": "正在拨打",
    "ringing": "已接通",
    "acknowledged": "已按1确认",
    "heard": "接听但未按1",
    "no_answer": "无人接听",
    "busy": "占线",
    "failed": "拨打失败",
    "unknown": "结果不明",
}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


class DutyOfficer(Base):
    """One person on the duty list: called in ``position`` order when on duty at the time of day (local time).

    ``on_from`` == ``on_until`` means all day; ``on_from`` > ``on_until`` crosses midnight (a night shift).
    """

    __tablename__ = "duty_officers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32))
    phone: Mapped[str] = mapped_column(String(64))
    on_from: Mapped[time] = mapped_column(Time())
    on_until: Mapped[time] = mapped_column(Time())
    position: Mapped[int] = mapped_column(Integer, index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class OpsAlarm(Base):
    __tablename__ = "ops_alarms"
    __table_args__ = (
        CheckConstraint(_in("kind", ALARM_KINDS), name="kind"),
        CheckConstraint(_in("state", ALARM_STATES), name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(24), index=True)
    subject: Mapped[str] = mapped_column(String(128))
    # ``kind:subject`` while open, NULL after: at most one open alarm per trouble (NULLs do not collide).
    open_key: Mapped[str | None] = mapped_column(String(160), unique=True)
    # What the phone says (Chinese), and what the page shows.
    message: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="open", index=True)
    raised_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    # The round being called (1-based) and where in the duty list it is; the next call is due at next_call_at.
    round: Mapped[int] = mapped_column(Integer, default=1)
    next_position: Mapped[int] = mapped_column(Integer, default=0)
    next_call_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    calls_made: Mapped[int] = mapped_column(Integer, default=0)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Who acknowledged: the officer's name and phone, or the admin's user name on the page.
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))


class AlarmCall(Base):
    __tablename__ = "alarm_calls"
    __table_args__ = (CheckConstraint(_in("state", ALARM_CALL_STATES), name="state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("ops_alarms.id", ondelete="CASCADE"), index=True)
    officer_id: Mapped[int | None] = mapped_column(ForeignKey("duty_officers.id", ondelete="SET NULL"))
    # Kept as they were when called: the duty list may change afterwards.
    officer_name: Mapped[str] = mapped_column(String(32))
    phone: Mapped[str] = mapped_column(String(64))
    round: Mapped[int] = mapped_column(Integer)
    # The call's Linkedid (ChannelId chosen by us): every AMI event of the call carries it.
    channel_id: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="placing")
    placed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    detail: Mapped[str | None] = mapped_column(String(255))
    # How it went out: "ami" (Originate on the worker's link; followed by that worker) or "spool" (a call file
    # in Asterisk's outgoing spool; its outcome is read back from files by whichever process looks).
    via: Mapped[str] = mapped_column(String(8), default="ami", server_default="ami")


__all__ = [
    "ALARM_CALL_STATES",
    "ALARM_CALL_STATE_LABELS",
    "ALARM_KINDS",
    "ALARM_KIND_LABELS",
    "ALARM_STATES",
    "ALARM_STATE_LABELS",
    "AlarmCall",
    "DutyOfficer",
    "OpsAlarm",
]
