"""Official warnings (CAP 1.2): where they come from, every message received, what was refused, the policy.

A message is kept whole (its XML as received) beside the fields the pages and the policy read. Identifier and
sender are unique together: the same message arriving twice (a push retried, a feed polled again, the same
file on two USB sticks) is recorded once. A refused message has no identity to trust; it is kept apart, with
its reason (``alert_refusals``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base
from storage.types import UtcDateTime

ALERT_SOURCE_KINDS = ("push", "pull", "folder", "manual")
# What the policy decides for a message: 自动播出, 待审核, 仅记录.
ALERT_ACTIONS = ("auto", "review", "record")
ALERT_ACTION_LABELS = {"auto": "自动播出", "review": "待审核", "record": "仅记录"}
# Where a message stands; each is derived from what happened to it.
ALERT_STATES = (
    "recorded",  # 已记录: nothing to air (policy 仅记录, Ack/Error, System, no village matched, expired)
    "pending",  # 待审核: an approver must release it
    "aired",  # 已播出: sent to the dispatcher (per-speaker outcome in the as-run log)
    "rejected",  # 未放行: an approver declined it
    "cancelled",  # 已撤销: a Cancel from the sender, or an admin by hand
    "superseded",  # 已更新: an Update replaced it
    "expired",  # 已过期: its expires passed before it could air
)
ALERT_STATE_LABELS = {
    "recorded": "已记录",
    "pending": "待审核",
    "aired": "已播出",
    "rejected": "未放行",
    "cancelled": "已撤销",
    "superseded": "已更新",
    "expired": "已过期",
}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


class AlertSource(Base):
    """Where official warnings come from: a push endpoint's token, a feed to poll, a folder to watch."""

    __tablename__ = "alert_sources"
    __table_args__ = (CheckConstraint(_in("kind", ALERT_SOURCE_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Push: the token's SHA-256 (the token itself is shown once, when made).
    token_hash: Mapped[str | None] = mapped_column(String(128), unique=True)
    # Pull: the feed; folder: the directory.
    url: Mapped[str | None] = mapped_column(String(1024))
    folder: Mapped[str | None] = mapped_column(String(1024))
    poll_interval_s: Mapped[int] = mapped_column(Integer, default=60)
    # The sender's certificate (PEM): when set, every message must carry a valid XML signature by its key.
    certificate_pem: Mapped[str | None] = mapped_column(Text)
    # Conditional requests: what the feed said last time.
    etag: Mapped[str | None] = mapped_column(String(255))
    last_modified: Mapped[str | None] = mapped_column(String(64))
    # A source that sends nothing (not even a System heartbeat) for this long shows as down.
    silent_after_s: Mapped[int | None] = mapped_column(Integer)
    last_message_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_polled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AlertMessage(Base):
    """One CAP message as received and what became of it."""

    __tablename__ = "alert_messages"
    __table_args__ = (
        UniqueConstraint("sender", "identifier", name="uq_alert_messages_sender_identifier"),
        CheckConstraint(_in("state", ALERT_STATES), name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("alert_sources.id", ondelete="RESTRICT"), index=True)
    identifier: Mapped[str] = mapped_column(String(255))
    sender: Mapped[str] = mapped_column(String(255))
    sent: Mapped[datetime] = mapped_column(UtcDateTime())
    status: Mapped[str] = mapped_column(String(12))
    msg_type: Mapped[str] = mapped_column(String(8))
    # [[sender, identifier, sent], ...] as the message names them.
    references: Mapped[list[list[str]]] = mapped_column(JSON, default=list)
    event: Mapped[str] = mapped_column(String(255), default="")
    severity: Mapped[str] = mapped_column(String(12), default="")
    urgency: Mapped[str] = mapped_column(String(12), default="")
    certainty: Mapped[str] = mapped_column(String(12), default="")
    headline: Mapped[str] = mapped_column(Text, default="")
    # 红色/橙色/黄色/蓝色 when the message says it (parameter or headline), else "".
    level: Mapped[str] = mapped_column(String(8), default="")
    expires: Mapped[datetime | None] = mapped_column(UtcDateTime())
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    xml: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(12), index=True)
    # Why it is in that state, in Chinese (the page shows it).
    state_reason: Mapped[str] = mapped_column(Text, default="")
    action: Mapped[str | None] = mapped_column(String(8))
    # Which policy row decided (None: a person, or nothing to decide).
    policy_rule_id: Mapped[int | None] = mapped_column(ForeignKey("alert_policy_rules.id", ondelete="SET NULL"))
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # [{"village_id", "village", "township", "why"}]: which villages the area matched and by what.
    matched: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    zone_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    # What is read: the lead (also the title in lists), then the body.
    spoken_lead: Mapped[str | None] = mapped_column(String(255))
    spoken_text: Mapped[str | None] = mapped_column(Text)
    # The emergency notice and broadcasts that aired it (broadcasting's own records; no key across the domains).
    notice_id: Mapped[int | None] = mapped_column(Integer)
    broadcast_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    # Repeats (the policy row's): plays so far, when the next is due (None: no more), and whether they may
    # sound in quiet hours (only the first play ignores them otherwise).
    plays: Mapped[int] = mapped_column(Integer, default=0)
    next_play_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    # The message that replaced (Update) or cancelled (Cancel) this one.
    replaced_by_id: Mapped[int | None] = mapped_column(ForeignKey("alert_messages.id", ondelete="SET NULL"))
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class AlertFeedEntry(Base):
    """An entry link a pull source has fetched: remembered across restarts, so it is fetched (and a refused one
    recorded) once. Keyed by the link's SHA-256 (a link may be longer than an index allows)."""

    __tablename__ = "alert_feed_entries"
    __table_args__ = (UniqueConstraint("source_id", "link_hash", name="uq_alert_feed_entries_source_link"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("alert_sources.id", ondelete="CASCADE"))
    link_hash: Mapped[str] = mapped_column(String(64))
    link: Mapped[str] = mapped_column(String(1024))
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AlertRefusal(Base):
    """A message that was not used, and why: shown on the page for pull and folder sources (push got a 400)."""

    __tablename__ = "alert_refusals"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("alert_sources.id", ondelete="RESTRICT"), index=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    code: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    # The file name or feed entry, and the first bytes (never the whole of something hostile).
    origin: Mapped[str] = mapped_column(String(1024), default="")
    excerpt: Mapped[str] = mapped_column(Text, default="")


class AlertPolicyRule(Base):
    """One row of the policy table: the first row (by ``position``) that matches a message decides.

    Empty lists match anything. ``event`` is matched as a substring of the message's event (暴雨 matches
    暴雨红色预警); None matches every event.
    """

    __tablename__ = "alert_policy_rules"
    __table_args__ = (CheckConstraint(_in("action", ALERT_ACTIONS), name="action"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    position: Mapped[int] = mapped_column(Integer, index=True)
    event: Mapped[str | None] = mapped_column(String(64))
    severities: Mapped[list[str]] = mapped_column(JSON, default=list)
    urgencies: Mapped[list[str]] = mapped_column(JSON, default=list)
    certainties: Mapped[list[str]] = mapped_column(JSON, default=list)
    action: Mapped[str] = mapped_column(String(8))
    # Repeats for those that air: every N minutes, at most this many plays within expires.
    repeat_every_min: Mapped[int | None] = mapped_column(Integer)
    max_plays: Mapped[int] = mapped_column(Integer, default=3)
    # Repeats respect quiet hours (only the first play ignores them) unless this says otherwise.
    repeats_in_quiet_hours: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str] = mapped_column(String(255), default="")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


__all__ = [
    "ALERT_ACTIONS",
    "ALERT_ACTION_LABELS",
    "ALERT_SOURCE_KINDS",
    "ALERT_STATES",
    "ALERT_STATE_LABELS",
    "AlertMessage",
    "AlertPolicyRule",
    "AlertRefusal",
    "AlertSource",
]
