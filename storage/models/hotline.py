"""The hotline's tables: cases, their recordings, missed calls, calls, the villager phone registry.

A hotline call is identified by Asterisk's **Linkedid** (shared by every
channel of one call: both halves of a Local channel, the operator's leg of a
transfer). ``cases.linkedid`` and ``missed_calls.linkedid`` are UNIQUE, and
``calls.linkedid`` is UNIQUE too: whichever path learns of a call first (the
live FastAGI request, the AMI call tracker, reconciliation after an outage)
inserts, the others find the row. That is what makes "exactly one case per
call" hold across processes and restarts.

``cases`` carries the workflow columns the case ledger builds on (status with
the workflow's codes, unit, summary); the hotline only ever creates cases in
``new``. Walk-in and grid-worker cases have no Linkedid (NULL, which UNIQUE
allows many of).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.models.base import Base
from storage.types import UtcDateTime

# The petition workflow (issue 6): 待受理 → 已受理 / 不予受理 → 办理中 → 已办结 → 回访 → 已销号.
CASE_STATUSES = ("new", "accepted", "rejected", "in_progress", "resolved", "followed_up", "closed")
CASE_STATUS_LABELS = {
    "new": "待受理",
    "accepted": "已受理",
    "rejected": "不予受理",
    "in_progress": "办理中",
    "resolved": "已办结",
    "followed_up": "已回访",
    "closed": "已销号",
}
# How a case reached us. Only the hotline is created here; the others come with the case ledger.
CASE_CHANNELS = ("hotline", "walk_in", "grid", "letter", "online")
CASE_CHANNEL_LABELS = {"hotline": "热线", "walk_in": "来访", "grid": "网格员", "letter": "来信", "online": "网上"}
# The hotline knows two categories (menu keys 1 and 3); operators refine them later.
CASE_CATEGORY_LABELS = {"petition": "反映问题/求助", "discipline": "举报违纪违法"}
RECORDING_KINDS = ("message", "transfer", "callback", "survey")
CALL_KINDS = ("hotline", "callback", "survey", "page")
CALL_OUTCOMES = ("case", "missed", "status_query", "refused", "placed")
CALLBACK_STATES = ("pending", "called_back", "no_number", "not_needed")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


class Case(Base):
    """A petition or report (诉求/举报), with the columns the workflow builds on."""

    __tablename__ = "cases"
    __table_args__ = (
        CheckConstraint(_in("status", CASE_STATUSES), name="status"),
        CheckConstraint(_in("channel", CASE_CHANNELS), name="channel"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Digits only, Damm check digit last (cases.numbers); what villagers type and hear.
    number: Mapped[str] = mapped_column(String(8), unique=True)
    # The hotline call's Linkedid; NULL for walk-ins and other channels.
    linkedid: Mapped[str | None] = mapped_column(String(150), unique=True)
    channel: Mapped[str] = mapped_column(String(16), default="hotline")
    status: Mapped[str] = mapped_column(String(16), default="new", index=True)
    category: Mapped[str] = mapped_column(String(32), default="petition", index=True)
    # Set at creation for a sealed category (cases.sealed.seals) and never cleared: only inspectors see it.
    sealed: Mapped[bool] = mapped_column(Boolean, default=False)
    # Normalised digits; NULL when the number was withheld or unknown.
    caller_number: Mapped[str | None] = mapped_column(String(32), index=True)
    caller_withheld: Mapped[bool] = mapped_column(Boolean, default=False)
    caller_name: Mapped[str | None] = mapped_column(String(64))
    # From the villager phone registry when the number is known; otherwise the operator places it.
    village_id: Mapped[int | None] = mapped_column(ForeignKey("villages.id", ondelete="RESTRICT"), index=True)
    township_id: Mapped[int | None] = mapped_column(ForeignKey("townships.id", ondelete="RESTRICT"), index=True)
    # The unit the case is assigned to (乡镇吹哨、部门报到); set by the workflow.
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    # The IVR key that led here: "1", "3", "0" (operator), "" (no key: the caller simply spoke).
    ivr_choice: Mapped[str | None] = mapped_column(String(4))
    # For status queries from a phone other than the one the case was filed from.
    pin: Mapped[str] = mapped_column(String(8))
    summary: Mapped[str | None] = mapped_column(Text)
    # Made by the dial test (拨测): real in every way, but left out of statistics.
    test_call: Mapped[bool] = mapped_column(Boolean, default=False)
    # When the case came in: for a hotline case the moment the call began (from Asterisk's channel or
    # CDR times), however late the service learnt of it. Every clock and deadline counts from here.
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # When the service registered the case (after an outage: minutes after created_at). NULL before 0006.
    learnt_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Hotline cases: whether the caller heard her case number read back in full. False means someone
    # must call her back to tell it (she hung up during the read-back, or the service was down).
    # NULL for cases that did not come by phone.
    number_told: Mapped[bool | None] = mapped_column(Boolean)

    recordings: Mapped[list[Recording]] = relationship(
        back_populates="case", order_by="Recording.id", foreign_keys="Recording.case_id"
    )


class MissedCall(Base):
    """A hotline call that produced no case (hung up at the welcome, nothing said): someone should call back."""

    __tablename__ = "missed_calls"
    __table_args__ = (CheckConstraint(_in("callback_state", CALLBACK_STATES), name="callback_state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    linkedid: Mapped[str] = mapped_column(String(150), unique=True)
    caller_number: Mapped[str | None] = mapped_column(String(32), index=True)
    caller_withheld: Mapped[bool] = mapped_column(Boolean, default=False)
    caller_name: Mapped[str | None] = mapped_column(String(64))
    village_id: Mapped[int | None] = mapped_column(ForeignKey("villages.id", ondelete="RESTRICT"), index=True)
    township_id: Mapped[int | None] = mapped_column(ForeignKey("townships.id", ondelete="RESTRICT"), index=True)
    # When the call came in, and where in the IVR the caller was when it ended.
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    stage: Mapped[str | None] = mapped_column(String(16))
    # hung_up_at_welcome, hung_up_at_menu, nothing_said, operator_not_reached, ended_by_system (Asterisk
    # stopped, or the call limit ran out, before she could leave a message), unknown.
    reason: Mapped[str] = mapped_column(String(32))
    ivr_choice: Mapped[str | None] = mapped_column(String(4))
    # A caller who chose 举报 (key 3) and then hung up is protected like a sealed case.
    sealed: Mapped[bool] = mapped_column(Boolean, default=False)
    callback_state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    callback_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Set when calling back turned it into a case.
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="RESTRICT"), index=True)
    test_call: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Recording(Base):
    """One audio file of a call, moved out of Asterisk's spool into our recordings directory."""

    __tablename__ = "recordings"
    __table_args__ = (
        CheckConstraint(_in("kind", RECORDING_KINDS), name="kind"),
        CheckConstraint("case_id IS NOT NULL OR missed_call_id IS NOT NULL", name="owner"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="RESTRICT"), index=True)
    # A message with nothing in it is kept with its missed call: no recording is ever dropped.
    missed_call_id: Mapped[int | None] = mapped_column(ForeignKey("missed_calls.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    linkedid: Mapped[str] = mapped_column(String(150), index=True)
    # The file's name in Asterisk's spool: attaching the same file twice finds this row.
    source_name: Mapped[str] = mapped_column(String(255), unique=True)
    # Relative to the recordings directory (never an absolute path: the directory may move).
    path: Mapped[str] = mapped_column(String(255), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Float)
    # No audio frames at all (a 44-byte WAV), or nothing above the line's noise floor.
    empty: Mapped[bool] = mapped_column(Boolean)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Set when the retention setting deleted the file; the row stays as the record that it existed.
    purged_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    case: Mapped[Case | None] = relationship(back_populates="recordings", foreign_keys=[case_id])


class Call(Base):
    """Every call the hotline saw or placed, by Linkedid, and what became of it."""

    __tablename__ = "calls"
    __table_args__ = (
        CheckConstraint(_in("kind", CALL_KINDS), name="kind"),
        CheckConstraint(_in("outcome", CALL_OUTCOMES), name="outcome"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    linkedid: Mapped[str] = mapped_column(String(150), unique=True)
    # hotline: a villager called in; callback/survey/page: placed by the service (carry a marker, never a case).
    kind: Mapped[str] = mapped_column(String(16))
    direction: Mapped[str] = mapped_column(String(8), default="in")
    caller_number: Mapped[str | None] = mapped_column(String(32))
    caller_withheld: Mapped[bool] = mapped_column(Boolean, default=False)
    # When the call began and ended, from Asterisk's own times (channel events, the dialplan, the CDR),
    # never from when the service heard of it (that is created_at). NULL when no source knew.
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Who ended it: caller (hung up), ivr (our dialplan finished and hung up), call_limit
    # (TIMEOUT(absolute) ran out), system (Asterisk stopped or restarted with the call up). NULL: unknown.
    ended_by: Mapped[str | None] = mapped_column(String(16))
    stage: Mapped[str | None] = mapped_column(String(16))
    ivr_choice: Mapped[str | None] = mapped_column(String(4))
    outcome: Mapped[str] = mapped_column(String(16))
    sealed: Mapped[bool] = mapped_column(Boolean, default=False)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="RESTRICT"), index=True)
    missed_call_id: Mapped[int | None] = mapped_column(ForeignKey("missed_calls.id", ondelete="RESTRICT"))
    # Which part of the service settled it first: fastagi, tracker, reconcile.
    settled_by: Mapped[str] = mapped_column(String(16))
    test_call: Mapped[bool] = mapped_column(Boolean, default=False)
    # When the service first learnt of the call (after an outage, long after it ended).
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class VillagerPhone(Base):
    """A phone number staff know to belong to a villager (so a call links to the village by itself)."""

    __tablename__ = "villager_phones"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Normalised digits (no +86, no spaces): what a caller id becomes after common.phone_numbers.normalise.
    number: Mapped[str] = mapped_column(String(32), unique=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("villages.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class HotlineState(Base):
    """Small durable bookmarks of the hotline worker (how far the CDR file has been read)."""

    __tablename__ = "hotline_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


__all__ = [
    "CALLBACK_STATES",
    "CALL_KINDS",
    "CALL_OUTCOMES",
    "CASE_CATEGORY_LABELS",
    "CASE_CHANNELS",
    "CASE_CHANNEL_LABELS",
    "CASE_STATUSES",
    "CASE_STATUS_LABELS",
    "RECORDING_KINDS",
    "Call",
    "Case",
    "HotlineState",
    "MissedCall",
    "Recording",
    "VillagerPhone",
]
