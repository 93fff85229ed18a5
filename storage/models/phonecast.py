"""手机喊话: who may broadcast from their phone (the permission, its scope, their numbers and PIN), and the record
of every phone broadcast (喊话记录) with its review afterwards (事后审核).

The permission is a row in ``phonecast_cadres`` (granted by an admin); its scope is its own, apart from the
accounts' township scope: the villages and townships in ``phonecast_scopes``. A cadre's mobiles are in
``phonecast_numbers``, normalised (common.phone_numbers) and unique across users: a known number only selects
whose PIN is asked. PIN failures are counted in ``login_throttle`` under keys no web login can type.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, CheckConstraint, Float, ForeignKey, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base
from storage.types import UtcDateTime

PHONE_BROADCAST_STATUSES = (
    "received",
    "started",
    "queued",
    "scheduled",
    "refused",
    "played",
    "not_played",
    "cancelled",
)
PHONE_BROADCAST_STATUS_LABELS = {
    "received": "处理中",
    "started": "播出中",
    "queued": "排队中",
    "scheduled": "定时待播",
    "refused": "未播出",
    "played": "已播出",
    "not_played": "未播出",
    "cancelled": "已取消",
}
# How a live call ended, as the 喊话记录 page says it.
LIVE_END_LABELS = {
    "caller": "喊话人结束",
    "limit": "达到时长上限",
    "emergency": "紧急广播插播，喊话结束",
    "failed": "线路故障",
}
REVIEW_STATES = ("pending", "reviewed", "flagged")
REVIEW_LABELS = {"pending": "待审核", "reviewed": "已审核", "flagged": "有问题"}
SCOPE_KINDS = ("village", "township")


class PhonecastCadre(Base):
    """The 可电话喊话 permission of one user, with their PIN (argon2id, like a password)."""

    __tablename__ = "phonecast_cadres"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    # None until the user sets one on their own page (or an admin resets it, which clears it).
    pin_hash: Mapped[str | None] = mapped_column(String(255))
    pin_set_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    granted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    granted_at: Mapped[datetime] = mapped_column(UtcDateTime())


class PhonecastScope(Base):
    """One village or township a cadre may broadcast to by phone."""

    __tablename__ = "phonecast_scopes"
    __table_args__ = (CheckConstraint("(village_id IS NULL) <> (township_id IS NULL)", name="one_area"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("phonecast_cadres.user_id", ondelete="CASCADE"), index=True)
    village_id: Mapped[int | None] = mapped_column(ForeignKey("villages.id", ondelete="CASCADE"))
    township_id: Mapped[int | None] = mapped_column(ForeignKey("townships.id", ondelete="CASCADE"))


class PhonecastNumber(Base):
    """A cadre's registered mobile, normalised; one number belongs to one user."""

    __tablename__ = "phonecast_numbers"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("phonecast_cadres.user_id", ondelete="CASCADE"), index=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class PhoneBroadcast(Base):
    """One phone broadcast (喊话记录): who, from which number (masked), to what, the recording, what became of it."""

    __tablename__ = "phone_broadcasts"
    __table_args__ = (
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in PHONE_BROADCAST_STATUSES)})", name="status"),
        CheckConstraint(f"review_state IN ({', '.join(repr(s) for s in REVIEW_STATES)})", name="review_state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The line's call: a second submit of the same call returns the first result and plays nothing more.
    call_id: Mapped[str] = mapped_column(String(128), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    caller_name: Mapped[str] = mapped_column(String(64))
    # Masked like elsewhere (138****1111): the full number is never kept in the record.
    caller_masked: Mapped[str] = mapped_column(String(24))
    target_kind: Mapped[str] = mapped_column(String(12))
    target_id: Mapped[int] = mapped_column(Integer)
    target_name: Mapped[str] = mapped_column(String(128))
    target_code: Mapped[str] = mapped_column(String(8))
    zone_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    township_id: Mapped[int | None] = mapped_column(ForeignKey("townships.id", ondelete="RESTRICT"), index=True)
    # The kept copy, under <data_dir>/phonecast/.
    recording_file: Mapped[str | None] = mapped_column(String(255))
    recording_s: Mapped[float | None] = mapped_column(Float)
    notice_id: Mapped[int | None] = mapped_column(ForeignKey("notices.id", ondelete="RESTRICT"))
    broadcast_id: Mapped[int | None] = mapped_column(ForeignKey("broadcasts.id", ondelete="RESTRICT"), index=True)
    status: Mapped[str] = mapped_column(String(12), index=True)
    reason: Mapped[str | None] = mapped_column(String(32))
    speakers: Mapped[int] = mapped_column(Integer, default=0)
    unanswered: Mapped[int] = mapped_column(Integer, default=0)
    quiet_exempt: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    # SCHEDULED: when it is to play (UTC).
    play_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    review_state: Mapped[str] = mapped_column(String(12), default="pending", index=True)
    review_note: Mapped[str | None] = mapped_column(Text)
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    reviewed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # 实时喊话 (a live call) rather than 录音喊话. Its call_id is "live:<the line's call id>", so a caller told
    # 该区域正在喊话 may record instead under the call's own id.
    live: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # How a live call ended (hotline.phonecast.LiveEnd's values: caller, limit, emergency, failed).
    ended_by: Mapped[str | None] = mapped_column(String(12))
    # A live call's recording, afterwards, for the speakers that cannot play live (4G terminals, sound cards).
    after_speakers: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    after_broadcast_id: Mapped[int | None] = mapped_column(ForeignKey("broadcasts.id", ondelete="RESTRICT"))


__all__ = [
    "LIVE_END_LABELS",
    "PHONE_BROADCAST_STATUSES",
    "PHONE_BROADCAST_STATUS_LABELS",
    "REVIEW_LABELS",
    "REVIEW_STATES",
    "SCOPE_KINDS",
    "PhoneBroadcast",
    "PhonecastCadre",
    "PhonecastNumber",
    "PhonecastScope",
]
