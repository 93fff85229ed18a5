"""Notices, and the as-run log (播出记录): what was asked to play, where, and what really played.

The as-run log has three levels: a ``broadcasts`` row per request (a schedule's
occurrence, an emergency, a speaker test), a ``broadcast_zones`` row per zone
it was meant for (the unit the dispatcher plays and preempts), and a
``broadcast_speakers`` row per loudspeaker with that speaker's own result.

As-run rows progress through their states (waiting → playing → success…) and
are updated as they do, but are never deleted: a trigger refuses DELETE on all
three tables (see migration 0003). ``broadcast_zones`` carries a UNIQUE key
(schedule, occurrence, zone, attempt): the scheduler claims an occurrence by
inserting attempt 0, so the same slot can never be played twice, even by two
processes or after a restart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base
from storage.types import UtcDateTime

NOTICE_KINDS = (
    "emergency",
    "disclosure_party",
    "disclosure_village",
    "disclosure_finance",
    "service",
    "policy",
    "civility",
)
# A cadre's recording from the phone (手机喊话): a kind of its own, never written on the notice pages.
PHONECAST_KIND = "phonecast"
# Every kind a notice row may have: those written on the pages, and the phone's.
STORED_NOTICE_KINDS = (*NOTICE_KINDS, PHONECAST_KIND)
# The one table of kinds and priority classes (docs/broadcasting.md): a lower number preempts a higher one.
# 手机喊话 sits between 应急 and 公开: it preempts notices and is preempted by emergencies (migration 0012
# moved the classes below it down by one).
PRIORITY_OF_KIND = {
    "emergency": 1,
    PHONECAST_KIND: 2,
    "disclosure_party": 3,
    "disclosure_village": 3,
    "disclosure_finance": 3,
    "service": 4,
    "policy": 5,
    "civility": 5,
}
KIND_LABELS = {
    "emergency": "应急",
    "disclosure_party": "党务公开",
    "disclosure_village": "村务公开",
    "disclosure_finance": "财务公开",
    "service": "便民服务",
    "policy": "政策宣传",
    "civility": "文明新风",
    PHONECAST_KIND: "手机喊话",
}
PRIORITY_LABELS = {1: "应急", 2: "手机喊话", 3: "公开", 4: "便民", 5: "宣传"}
EMERGENCY_PRIORITY = 1
PHONECAST_PRIORITY = PRIORITY_OF_KIND[PHONECAST_KIND]
# The lowest class (speaker tests play at it).
LOWEST_PRIORITY = max(PRIORITY_LABELS)
NOTICE_STATES = ("draft", "pending", "approved", "rejected", "archived")
NOTICE_SOURCES = ("tts", "recording")
BROADCAST_ORIGINS = ("schedule", "emergency", "manual", "test")
LIVE_CALL = "call"
LIVE_AFTER = "after"

# As-run states: 0-5 after the 应急广播 (GD/J) broadcast record, then our own.
RUN_UNPROCESSED = 0  # 未处理
RUN_WAITING = 1  # 等待
RUN_PLAYING = 2  # 播出中
RUN_SUCCESS = 3  # 成功
RUN_FAILED = 4  # 失败
RUN_CANCELLED = 5  # 已取消
RUN_INTERRUPTED = 6  # 被中断: cut while it played (by a higher priority, or the service stopping)
RUN_MISSED = 7  # 错过（停机超过补播时限）
RUN_SKIPPED = 8  # 等待超时未播
# Claimed, then cut by a higher priority before a single speaker played a sound of it: nobody heard it.
RUN_PREEMPTED_BEFORE_START = 9  # 未开始（被抢占）
# Still waiting for its zone when the service stopped: nobody heard it (it is replayed, see REPLAY_LABEL).
RUN_STOPPED_BEFORE_START = 10  # 未开始（服务停止）
RUN_STATES = tuple(range(11))
RUN_STATE_LABELS = {
    RUN_UNPROCESSED: "未处理",
    RUN_WAITING: "等待",
    RUN_PLAYING: "播出中",
    RUN_SUCCESS: "成功",
    RUN_FAILED: "失败",
    RUN_CANCELLED: "已取消",
    RUN_INTERRUPTED: "被中断",
    RUN_MISSED: "错过",
    RUN_SKIPPED: "已跳过",
    RUN_PREEMPTED_BEFORE_START: "未开始（被抢占）",
    RUN_STOPPED_BEFORE_START: "未开始（服务停止）",
}
FINAL_RUN_STATES = (
    RUN_SUCCESS,
    RUN_FAILED,
    RUN_CANCELLED,
    RUN_INTERRUPTED,
    RUN_MISSED,
    RUN_SKIPPED,
    RUN_PREEMPTED_BEFORE_START,
    RUN_STOPPED_BEFORE_START,
)
# Final states in which nobody heard the whole item (a speaker's or a zone's).
NOT_PLAYED_STATES = (
    RUN_FAILED,
    RUN_CANCELLED,
    RUN_INTERRUPTED,
    RUN_MISSED,
    RUN_SKIPPED,
    RUN_PREEMPTED_BEFORE_START,
    RUN_STOPPED_BEFORE_START,
)
# A zone row with ``replay_of`` set is a 重播 (replay): the item played again, from its start, because the
# service stopped while it played or waited (``broadcast_zones.replay_of`` names the row it replays). Its own
# state says how the replay went: a 重播 in RUN_SUCCESS played; one in any other state did not.
REPLAY_LABEL = "重播"
_RUN_STATE_CHECK = f"state BETWEEN 0 AND {len(RUN_STATES) - 1}"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


class Notice(Base):
    """A notice (通知/公开稿) to be read out: text for TTS, or a person's recording."""

    __tablename__ = "notices"
    __table_args__ = (
        CheckConstraint(_in("kind", STORED_NOTICE_KINDS), name="kind"),
        CheckConstraint(_in("state", NOTICE_STATES), name="state"),
        CheckConstraint(_in("source", NOTICE_SOURCES), name="source"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # NULL: a county-level notice (only county-wide users see it).
    township_id: Mapped[int | None] = mapped_column(ForeignKey("townships.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(12), default="tts")
    voice_engine: Mapped[str | None] = mapped_column(String(16))
    voice_name: Mapped[str | None] = mapped_column(String(96))
    voice_rate: Mapped[str | None] = mapped_column(String(8))
    repeats: Mapped[int] = mapped_column(Integer, default=2)
    # A person's recording, stored under <data_dir>/recordings/<sha256>.<ext>.
    recording_file: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(12), default="draft", index=True)
    reject_reason: Mapped[str | None] = mapped_column(Text)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    approver_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    # Everyone but the author who changed its content (text, recording, a number masked or kept): four eyes
    # means none of them, nor the author, may decide on it.
    editor_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    # The author's decision on each full mobile number in the text, by its digits:
    # {"13912345678": {"decision": "keep", "by": user id, "by_name": …, "at": ISO time}} (kept numbers are
    # read out digit by digit; a masked one is no longer in the text, its record stays for the approver).
    number_decisions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Bumped on every edit of the content; approval is of one revision.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    # The audio of this revision: {profile: audio cache key}, and what it measured. Rendered for the
    # preview (试听) or at approval, whichever comes first; an edit drops it. The approver hears these
    # very files, and approval keeps them: what was heard is what airs.
    audio_keys: Mapped[dict[str, str] | None] = mapped_column(JSON)
    audio_duration_s: Mapped[float | None] = mapped_column(Float)
    audio_engine: Mapped[str | None] = mapped_column(String(16))
    spoken_text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    submitted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class ZoneBroadcastSettings(Base):
    """Per-zone transport settings: an RTP multicast group every RTP speaker of the zone listens to."""

    __tablename__ = "zone_broadcast_settings"

    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id", ondelete="CASCADE"), primary_key=True)
    # host:port of a 224.0.0.0/4 group; NULL: each RTP speaker gets its own unicast stream.
    rtp_group: Mapped[str | None] = mapped_column(String(64))
    rtp_ttl: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Broadcast(Base):
    """One request to play: a schedule's occurrence, an emergency, a manual play or a speaker test."""

    __tablename__ = "broadcasts"
    __table_args__ = (
        CheckConstraint(_in("origin", BROADCAST_ORIGINS), name="origin"),
        CheckConstraint(_RUN_STATE_CHECK, name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    notice_id: Mapped[int | None] = mapped_column(ForeignKey("notices.id", ondelete="RESTRICT"), index=True)
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("schedules.id", ondelete="RESTRICT"), index=True)
    occurrence_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    origin: Mapped[str] = mapped_column(String(12))
    kind: Mapped[str] = mapped_column(String(24))
    priority: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    # The zones asked for (a request waits as state 0 until the active worker takes it).
    zone_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    audio_keys: Mapped[dict[str, str] | None] = mapped_column(JSON)
    duration_s: Mapped[float | None] = mapped_column(Float)
    state: Mapped[int] = mapped_column(Integer, default=RUN_UNPROCESSED, index=True)
    # May start in quiet hours although not an emergency: a phone broadcast by a user with the emergency
    # permission (手机喊话).
    quiet_exempt: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    error: Mapped[str | None] = mapped_column(Text)
    # A cancel asked by any process (an official warning withdrawn): the active worker stops its plays of it.
    cancel_reason: Mapped[str | None] = mapped_column(String(255))
    # 手机喊话 实时: "call" is a live call holding its zones (no item: the caller's voice through Asterisk; never
    # replayed); "after" is that call's recording, afterwards, for the speakers that cannot play live (4G
    # terminals, sound cards) and only for them. None: any other broadcast.
    live_part: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class BroadcastZone(Base):
    """One broadcast in one zone: what the dispatcher queues, plays, preempts; the as-run line per zone."""

    __tablename__ = "broadcast_zones"
    __table_args__ = (
        # Attempt 0 of a scheduled slot is its claim: inserted once, whoever tries second fails.
        UniqueConstraint("schedule_id", "occurrence_at", "zone_id", "attempt", name="uq_broadcast_zones_occurrence"),
        CheckConstraint(_RUN_STATE_CHECK, name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="RESTRICT"), index=True)
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("schedules.id", ondelete="RESTRICT"))
    occurrence_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id", ondelete="RESTRICT"), index=True)
    # Copied from the tree and the notice, so the log still reads (and filters fast) after they change.
    village_id: Mapped[int] = mapped_column(ForeignKey("villages.id", ondelete="RESTRICT"), index=True)
    township_id: Mapped[int] = mapped_column(ForeignKey("townships.id", ondelete="RESTRICT"), index=True)
    notice_id: Mapped[int | None] = mapped_column(ForeignKey("notices.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[str] = mapped_column(String(24), index=True)
    priority: Mapped[int] = mapped_column(Integer)
    # 0 for the slot itself; each requeue after an interruption, and each replay, is the next attempt.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    # A 重播: the row whose play the service's stop cut (or left queued), played again from the start.
    # UNIQUE: a row is replayed (or recorded as not replayed, with why) at most once, whoever decides.
    replay_of: Mapped[int | None] = mapped_column(ForeignKey("broadcast_zones.id", ondelete="RESTRICT"), unique=True)
    # Set when the service stopped while this row played or waited: the next worker decides its replay.
    replay_pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false(), index=True)
    state: Mapped[int] = mapped_column(Integer, default=RUN_UNPROCESSED, index=True)
    scheduled_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    interrupted_by: Mapped[int | None] = mapped_column(Integer)


class BroadcastSpeaker(Base):
    """One speaker's part in one zone broadcast, with its own result."""

    __tablename__ = "broadcast_speakers"
    __table_args__ = (
        UniqueConstraint("zone_run_id", "speaker_id", name="uq_broadcast_speakers_speaker"),
        CheckConstraint(_RUN_STATE_CHECK, name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    zone_run_id: Mapped[int] = mapped_column(ForeignKey("broadcast_zones.id", ondelete="RESTRICT"), index=True)
    speaker_id: Mapped[int] = mapped_column(ForeignKey("speakers.id", ondelete="RESTRICT"), index=True)
    transport: Mapped[str] = mapped_column(String(8))
    address: Mapped[str] = mapped_column(String(255))
    state: Mapped[int] = mapped_column(Integer, default=RUN_UNPROCESSED)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # For HTTP-pull terminals: whether the terminal has fetched/acknowledged the item.
    acknowledged: Mapped[bool] = mapped_column(Boolean, default=False)
    # What this speaker was given of the item: RTP packets sent (RTP only), and seconds played (every transport
    # that can tell: RTP from the packets, SIP from the answered page, 4G terminals from their reports).
    packets_sent: Mapped[int | None] = mapped_column(Integer)
    played_s: Mapped[float | None] = mapped_column(Float)


class WorkerHeartbeat(Base):
    """The last sign of life of a worker service (the dispatcher), so the next one knows when it stopped.

    Written every few seconds while the service runs, and with ``stopped_at`` when it stops cleanly;
    a process killed with SIGKILL leaves only ``alive_at``, which is then the best estimate of when
    it died (at most one heartbeat interval early).
    """

    __tablename__ = "worker_heartbeats"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    alive_at: Mapped[datetime] = mapped_column(UtcDateTime())
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    process: Mapped[str] = mapped_column(String(128), default="")


__all__ = [
    "BROADCAST_ORIGINS",
    "EMERGENCY_PRIORITY",
    "FINAL_RUN_STATES",
    "KIND_LABELS",
    "LIVE_AFTER",
    "LIVE_CALL",
    "LOWEST_PRIORITY",
    "NOTICE_KINDS",
    "NOTICE_SOURCES",
    "NOTICE_STATES",
    "NOT_PLAYED_STATES",
    "PHONECAST_KIND",
    "PHONECAST_PRIORITY",
    "PRIORITY_LABELS",
    "PRIORITY_OF_KIND",
    "REPLAY_LABEL",
    "RUN_CANCELLED",
    "RUN_FAILED",
    "RUN_INTERRUPTED",
    "RUN_MISSED",
    "RUN_PLAYING",
    "RUN_PREEMPTED_BEFORE_START",
    "RUN_SKIPPED",
    "RUN_STATES",
    "RUN_STATE_LABELS",
    "RUN_STOPPED_BEFORE_START",
    "RUN_SUCCESS",
    "RUN_UNPROCESSED",
    "RUN_WAITING",
    "STORED_NOTICE_KINDS",
    "Broadcast",
    "BroadcastSpeaker",
    "BroadcastZone",
    "Notice",
    "WorkerHeartbeat",
    "ZoneBroadcastSettings",
]
