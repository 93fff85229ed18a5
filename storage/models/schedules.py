"""Schedules: when a notice plays, and where (townships, villages or zones)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Boolean, CheckConstraint, Date, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.models.base import Base
from storage.types import UtcDateTime

SCHEDULE_KINDS = ("once", "daily", "weekly")
TARGET_LEVELS = ("township", "village", "zone")


class Schedule(Base):
    """A rule that produces occurrences, all in the deployment's wall clock (Asia/Shanghai).

    once: ``once_at``; daily: every day at each of ``times``; weekly: on ``weekdays``
    (1 = Monday … 7 = Sunday) at each of ``times``; daily and weekly only between
    ``start_date`` and ``end_date`` (both inclusive, either may be open).
    """

    __tablename__ = "schedules"
    __table_args__ = (CheckConstraint("kind IN ('once', 'daily', 'weekly')", name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id", ondelete="RESTRICT"), index=True)
    # NULL: county-level (targets in several townships; county-wide users only).
    township_id: Mapped[int | None] = mapped_column(ForeignKey("townships.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    once_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # "HH:MM" wall-clock times, sorted.
    times: Mapped[list[str]] = mapped_column(JSON, default=list)
    weekdays: Mapped[list[int]] = mapped_column(JSON, default=list)
    start_date: Mapped[date | None] = mapped_column(Date())
    end_date: Mapped[date | None] = mapped_column(Date())
    # From the notice's kind (1 应急 … 4 宣传); kept here so the scheduler needs no join.
    priority: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    targets: Mapped[list[ScheduleTarget]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="ScheduleTarget.level, ScheduleTarget.target_id"
    )


class ScheduleTarget(Base):
    __tablename__ = "schedule_targets"
    __table_args__ = (CheckConstraint("level IN ('township', 'village', 'zone')", name="level"),)

    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"), primary_key=True)
    level: Mapped[str] = mapped_column(String(8), primary_key=True)
    target_id: Mapped[int] = mapped_column(Integer, primary_key=True)


__all__ = ["SCHEDULE_KINDS", "TARGET_LEVELS", "Schedule", "ScheduleTarget"]
