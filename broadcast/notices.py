"""Notices and their approval: 草稿 → 待审核 → 已通过 / 已驳回 → 已归档.

Rules, each enforced here (the web layer only translates):

* writers (乡镇干部, admins) write within their townships; county-wide users may
  also write county-level notices (no township);
* an edit of an approved or pending notice sends it (back) to 待审核, with a new
  revision; its old audio is dropped, so nothing unapproved can play;
* **four eyes**: an approver (审核人) who neither wrote the notice nor edited it
  since (text, recording, a number masked or kept) approves or rejects it, and
  approves the revision they read (a newer one is not theirs to approve unseen);
* the privacy guard (:mod:`broadcast.review`) refuses to *submit* while a
  resident ID or bank card number remains, or while a full mobile number waits
  for its author's decision (keep it — a public contact phone, read digit by
  digit — or mask it); a notice that still reaches approval with one (written
  before the guard) goes back to its author with the reason;
* the preview (试听) is rendered on demand in every output profile and kept with
  the revision; approval keeps those very files (nothing is rendered twice, and
  what the approver heard is what airs) or renders them if nobody listened, so
  air time never waits on a TTS cloud;
* an emergency (应急) notice is written, approved and rendered in one step by a
  user with the emergency permission, with the fastest engine first.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.principal import Principal
from broadcast.production import BroadcastProducer, ProductionResult, estimated_bytes, notice_text
from broadcast.review import TextReview, mask_numbers, number_key, review_text
from common.clock import Clock
from common.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from common.listeners import ChangeListener, ChangeListeners
from storage import audit
from storage.audit import Actor
from storage.models import (
    KIND_LABELS,
    NOTICE_KINDS,
    PHONECAST_KIND,
    PRIORITY_OF_KIND,
    RUN_PLAYING,
    RUN_WAITING,
    Broadcast,
    Notice,
    Schedule,
    Township,
)
from tts.audio import PROFILES, Profile, atomic_write
from tts.cache import AudioCache, KeepSet
from tts.engines import VoiceRequest

log = logging.getLogger(__name__)

WRITER_ROLES = ("staff", "admin")
APPROVER_ROLES = ("approver",)
STATE_LABELS = {"draft": "草稿", "pending": "待审核", "approved": "已通过", "rejected": "已驳回", "archived": "已归档"}
# Every profile a transport may need, rendered once at approval.
ALL_PROFILES = (Profile.MP3, Profile.ASTERISK, Profile.RTP, Profile.WAV16K)
RECORDING_SUFFIXES = {".wav", ".mp3", ".ogg", ".oga", ".webm", ".m4a", ".aac", ".opus"}
# A kept recording is named by its content; an upload being checked has a name of its own until it passes.
RECORDING_NAME = re.compile(r"[0-9a-f]{64}\.[a-z0-9]{2,5}")
UPLOAD_PREFIX = ".upload-"
# An unused recording (or a half-done upload) younger than this is left alone by the sweep.
ORPHAN_GRACE_S = 3600.0
MAX_TITLE = 200


@dataclass(frozen=True)
class NoticeInput:
    kind: str
    title: str
    body: str
    township_id: int | None = None
    voice_engine: str | None = None
    voice_name: str | None = None
    voice_rate: str | None = None
    repeats: int | None = None


class DiskSpace(Protocol):
    """Raises (with a message for the user) when the disk is too full to take ``what`` (“上传录音”)."""

    def require_room(self, what: str) -> None: ...


class NoticeService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        producer: BroadcastProducer,
        cache: AudioCache,
        recordings_dir: Path,
        *,
        default_repeats: int = 2,
        emergency_engine: str = "espeak",
        max_chars: int = 5000,
        recording_max_bytes: int = 30 * 1024 * 1024,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._producer = producer
        self._cache = cache
        self.recordings_dir = recordings_dir
        self._default_repeats = default_repeats
        self._emergency_engine = emergency_engine
        self.max_chars = max_chars
        self.recording_max_bytes = recording_max_bytes
        self._schedule_listeners = ChangeListeners("schedule")
        self._disk_space: DiskSpace | None = None

    def on_schedule_change(self, listener: ChangeListener) -> None:
        """Call ``listener(schedule_id)`` for every schedule this service stops (the scheduler re-plans it)."""
        self._schedule_listeners.add(listener)

    def use_disk_space(self, disk_space: DiskSpace) -> None:
        """Uploads and approvals (which render audio) ask ``disk_space`` first; emergencies never wait on it."""
        self._disk_space = disk_space

    def _require_room(self, what: str) -> None:
        if self._disk_space is not None:
            self._disk_space.require_room(what)

    # -- validation -------------------------------------------------------------------------

    def _validate(self, principal: Principal, data: NoticeInput) -> NoticeInput:
        if data.kind not in NOTICE_KINDS:
            raise InvalidInput("通知类别不对", fields={"kind": "类别不存在"})
        if data.kind == "emergency" and not principal.can_emergency:
            raise PermissionDenied("只有具有应急广播权限的用户才能发布应急通知", code="notice.no_emergency")
        title = data.title.strip()
        body = data.body.strip()
        if not title:
            raise InvalidInput("标题不能为空", fields={"title": "不能为空"})
        if len(title) > MAX_TITLE:
            raise InvalidInput(f"标题不能超过{MAX_TITLE}个字", fields={"title": f"最多{MAX_TITLE}个字"})
        if len(title) + len(body) > self.max_chars:
            raise InvalidInput(f"通知太长了，最多{self.max_chars}个字", fields={"body": "太长"})
        repeats = data.repeats if data.repeats is not None else self._default_repeats
        if not 1 <= repeats <= 10:
            raise InvalidInput("重复次数应在1到10之间", fields={"repeats": "应在1到10之间"})
        if data.township_id is None:
            if not principal.county_wide:
                raise InvalidInput("请选择乡镇", fields={"township_id": "必填"})
        elif not principal.sees_township(data.township_id):
            raise InvalidInput("乡镇不存在", fields={"township_id": "乡镇不存在"})
        return NoticeInput(
            kind=data.kind,
            title=title,
            body=body,
            township_id=data.township_id,
            voice_engine=data.voice_engine or None,
            voice_name=data.voice_name or None,
            voice_rate=data.voice_rate or None,
            repeats=repeats,
        )

    async def _load(self, session: AsyncSession, principal: Principal, notice_id: int) -> Notice:
        notice = await session.get(Notice, notice_id)
        # A phone broadcast's item (手机喊话) is not a notice anyone in its township may open, edit, play again or
        # schedule: played again it would preempt notices without the permission, and its recording is a cadre's
        # voice, heard on 喊话记录 (approvers, audited). Only the desk reaches it, not through here.
        if notice is None or notice.kind == PHONECAST_KIND or not principal.sees_township(notice.township_id):
            raise NotFound("通知不存在")
        return notice

    # -- writing ----------------------------------------------------------------------------

    async def create(self, principal: Principal, data: NoticeInput) -> Notice:
        principal.require_role(*WRITER_ROLES)
        return await self._insert(principal, self._validate(principal, data))

    async def _insert(
        self, principal: Principal, data: NoticeInput, *, approved_with: ProductionResult | None = None
    ) -> Notice:
        """The one place a notice row is made (validated input, its township checked) with its audit entry.

        ``approved_with`` is an emergency's audio: such a notice is approved by its author the
        moment it is written, its audio ready (no four eyes: minutes matter).
        """
        now = self._clock.now()
        async with self._sessions.begin() as session:
            await self._township_exists(session, data.township_id)
            notice = Notice(
                township_id=data.township_id,
                kind=data.kind,
                title=data.title,
                body=data.body,
                source="tts",
                voice_engine=data.voice_engine,
                voice_name=data.voice_name,
                voice_rate=data.voice_rate,
                repeats=data.repeats,
                state="draft",
                author_id=principal.user_id,
                revision=1,
                created_at=now,
                updated_at=now,
            )
            if approved_with is None:
                action, detail = "notice.create", {"kind": data.kind, "title": data.title}
            else:
                notice.state = "approved"
                notice.voice_engine = approved_with.engine
                notice.approver_id = principal.user_id
                notice.submitted_at = notice.decided_at = now
                self._set_audio(notice, approved_with)
                action, detail = "notice.emergency", {"title": data.title, "engine": approved_with.engine}
            session.add(notice)
            await session.flush()
            audit.record(
                session,
                principal.actor,
                at=now,
                action=action,
                object_type="notice",
                object_id=notice.id,
                detail=detail,
            )
        return notice

    @staticmethod
    async def _township_exists(session: AsyncSession, township_id: int | None) -> None:
        if township_id is not None and await session.get(Township, township_id) is None:
            raise InvalidInput("乡镇不存在", fields={"township_id": "乡镇不存在"})

    def _after_edit(self, principal: Principal, notice: Notice) -> None:
        """An edit invalidates any approval: back to 待审核 (or 草稿), new revision, no audio; the editor is noted.

        A pending or approved notice whose new text may not be submitted (an ID number typed in, a phone
        number nobody has decided on) goes back to 草稿 instead: only what passes the check waits for approval.
        """
        if notice.state == "archived":
            raise Conflict("已归档的通知不能修改", code="notice.archived")
        notice.revision += 1
        notice.state = "pending" if notice.state in ("pending", "approved") else "draft"
        notice.audio_keys = None
        notice.audio_duration_s = None
        notice.audio_engine = None
        notice.spoken_text = None
        notice.approver_id = None
        notice.decided_at = None
        notice.updated_at = self._clock.now()
        if principal.user_id != notice.author_id and principal.user_id not in (notice.editor_ids or []):
            notice.editor_ids = [*(notice.editor_ids or []), principal.user_id]

    def _settle_state(self, notice: Notice) -> None:
        """After an edit: a pending notice that no longer passes the submit check waits as a draft."""
        if notice.state == "pending" and not self.review(notice).ready:
            notice.state = "draft"

    def review(self, notice: Notice) -> TextReview:
        """The notice's text as it will be read, its personal numbers and its author's decisions on them."""
        return review_text(notice.title, notice.body, decisions=notice.number_decisions, max_chars=self.max_chars)

    def _check_submittable(self, notice: Notice) -> None:
        review = self.review(notice)
        if notice.source == "recording" and review.spoken_error is not None and not review.blocking:
            return  # a recording is what plays: the text need not be speakable, only free of personal numbers
        refusal = review.refusal()
        if refusal is None:
            return
        if review.blocking:
            raise Conflict(refusal, code="notice.personal_numbers", fields={"body": "含有身份证号或银行卡号"})
        if review.undecided:
            raise Conflict(refusal, code="notice.phone_undecided", fields={"body": "手机号码待决定"})
        raise InvalidInput(refusal, code="notice.unspeakable", fields={"body": "不能播报"})

    async def update(self, principal: Principal, notice_id: int, data: NoticeInput) -> Notice:
        principal.require_role(*WRITER_ROLES)
        data = self._validate(principal, data)
        async with self._sessions.begin() as session:
            notice = await self._load(session, principal, notice_id)
            await self._township_exists(session, data.township_id)
            if data.township_id != notice.township_id and await session.scalar(
                select(Schedule.id).where(Schedule.notice_id == notice.id).limit(1)
            ):
                # Its schedules' targets were checked against the old township: they would play it elsewhere.
                raise Conflict(
                    "这条通知已有播出安排，不能改到别的乡镇；请另写一条通知", code="notice.scheduled_elsewhere"
                )
            before = notice.state
            self._after_edit(principal, notice)
            notice.kind = data.kind
            notice.title = data.title
            notice.body = data.body
            notice.township_id = data.township_id
            notice.voice_engine = data.voice_engine
            notice.voice_name = data.voice_name
            notice.voice_rate = data.voice_rate
            notice.repeats = data.repeats or self._default_repeats
            self._settle_state(notice)
            audit.record(
                session,
                principal.actor,
                at=notice.updated_at,
                action="notice.update",
                object_type="notice",
                object_id=notice.id,
                detail={"state": {"before": before, "after": notice.state}, "revision": notice.revision},
            )
        return notice

    async def mask_numbers(self, principal: Principal, notice_id: int, number: str | None = None) -> Notice:
        """The one-click fix: every ID and card number masked in place — or, given ``number``, that mobile number.

        Masking a mobile number is its author's decision too: recorded, so the approver sees it was hidden.
        """
        principal.require_role(*WRITER_ROLES)
        key = number_key(number) if number else None
        async with self._sessions.begin() as session:
            notice = await self._load(session, principal, notice_id)
            keys = [key] if key else []
            title = mask_numbers(notice.title, blocking=key is None, keys=keys)
            body = mask_numbers(notice.body, blocking=key is None, keys=keys)
            if (title, body) == (notice.title, notice.body):
                raise Conflict("没有需要隐去的号码（可能已经隐去了）", code="notice.nothing_to_mask")
            before = self.review(notice)
            masked = [f.masked for f in before.findings if (f.blocking if key is None else f.key == key)]
            self._after_edit(principal, notice)
            notice.title, notice.body = title, body
            if key:
                notice.number_decisions = {**(notice.number_decisions or {}), key: self._decision("mask", principal)}
            self._settle_state(notice)
            audit.record(
                session,
                principal.actor,
                at=notice.updated_at,
                action="notice.mask",
                object_type="notice",
                object_id=notice.id,
                detail={"masked": masked, "revision": notice.revision},
            )
        return notice

    async def keep_number(self, principal: Principal, notice_id: int, number: str) -> Notice:
        """Its author decides a full mobile number is a public contact phone: it stays, read digit by digit."""
        principal.require_role(*WRITER_ROLES)
        key = number_key(number)
        async with self._sessions.begin() as session:
            notice = await self._load(session, principal, notice_id)
            phones = {f.key for f in self.review(notice).findings if f.kind == "mobile_phone"}
            if key not in phones:
                raise InvalidInput("通知中没有这个手机号码", fields={"number": "没有这个号码"})
            self._after_edit(principal, notice)
            notice.number_decisions = {**(notice.number_decisions or {}), key: self._decision("keep", principal)}
            self._settle_state(notice)
            audit.record(
                session,
                principal.actor,
                at=notice.updated_at,
                action="notice.keep_number",
                object_type="notice",
                object_id=notice.id,
                detail={"number": key, "revision": notice.revision},
            )
        return notice

    def _decision(self, decision: str, principal: Principal) -> dict[str, Any]:
        return {
            "decision": decision,
            "by": principal.user_id,
            "by_name": principal.display_name,
            "at": self._clock.now().isoformat(timespec="seconds"),
        }

    async def set_recording(self, principal: Principal, notice_id: int, data: bytes, filename: str) -> Notice:
        """A person's recording replaces the TTS voice (uploaded, or recorded in the browser)."""
        principal.require_role(*WRITER_ROLES)
        self._require_room("上传录音")
        if not data:
            raise InvalidInput("录音文件是空的", fields={"recording": "空文件"})
        if len(data) > self.recording_max_bytes:
            limit = self.recording_max_bytes // (1024 * 1024)
            raise InvalidInput(f"录音文件太大，最多{limit} MB", fields={"recording": "太大"})
        suffix = Path(filename or "").suffix.lower() or ".webm"
        if suffix not in RECORDING_SUFFIXES:
            raise InvalidInput("请上传 WAV、MP3、OGG、WebM 或 M4A 格式的录音", fields={"recording": "格式不支持"})
        digest = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())  # up to 30 MB: not on the loop
        name = f"{digest}{suffix}"
        async with self._sessions() as session:
            await self._load(session, principal, notice_id)
        await self._store_recording(name, data)
        try:
            await self._keep_recording(principal, notice_id, name, digest, len(data))
        finally:
            await self.sweep_recordings()
        async with self._sessions() as session:
            return await self._load(session, principal, notice_id)

    async def _keep_recording(self, principal: Principal, notice_id: int, name: str, digest: str, size: int) -> None:
        async with self._sessions.begin() as session:
            notice = await self._load(session, principal, notice_id)
            self._after_edit(principal, notice)
            notice.source = "recording"
            notice.recording_file = name
            self._settle_state(notice)
            audit.record(
                session,
                principal.actor,
                at=notice.updated_at,
                action="notice.recording",
                object_type="notice",
                object_id=notice.id,
                detail={"sha256": digest, "bytes": size},
            )

    async def _store_recording(self, name: str, data: bytes) -> None:
        """Checked before it is kept: written aside, probed (is it audio, how long), then put in place or deleted."""
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        upload = self.recordings_dir / f"{UPLOAD_PREFIX}{secrets.token_hex(8)}{Path(name).suffix}"
        await asyncio.to_thread(atomic_write, upload, data)
        try:
            await self._producer.check_recording(upload)
            await asyncio.to_thread(os.replace, upload, self.recordings_dir / name)
        finally:
            upload.unlink(missing_ok=True)

    async def sweep_recordings(self, *, grace_s: float = ORPHAN_GRACE_S) -> list[str]:
        """Delete uploaded recordings no notice uses any more (replaced, back to TTS) and uploads left half-done.

        Only this service's own files are touched (``<sha256>.<suffix>`` and unfinished uploads, at the top of
        the directory); the hotline's call recordings live in dated folders below it and are never looked at.
        A file younger than ``grace_s`` stays: its notice may be committing right now.
        """
        async with self._sessions() as session:
            used = set(
                (await session.scalars(select(Notice.recording_file).where(Notice.recording_file.is_not(None)))).all()
            )
        cutoff = self._clock.now().timestamp() - grace_s

        def sweep() -> list[str]:
            removed: list[str] = []
            if not self.recordings_dir.is_dir():
                return removed
            for path in self.recordings_dir.iterdir():
                ours = RECORDING_NAME.fullmatch(path.name) or path.name.startswith(UPLOAD_PREFIX)
                if not ours or path.name in used or not path.is_file() or path.stat().st_mtime > cutoff:
                    continue
                path.unlink(missing_ok=True)
                removed.append(path.name)
            return removed

        removed = await asyncio.to_thread(sweep)
        if removed:
            log.info("swept %d recordings no notice uses", len(removed))
        return removed

    async def submit(self, principal: Principal, notice_id: int) -> Notice:
        """Sent for approval, once its text passes the check (no ID or card number, every phone decided)."""
        principal.require_role(*WRITER_ROLES)
        async with self._sessions.begin() as session:
            notice = await self._load(session, principal, notice_id)
            if notice.state not in ("draft", "rejected"):
                raise Conflict(f"{STATE_LABELS[notice.state]}的通知不能再提交审核", code="notice.state")
            self._check_submittable(notice)
            notice.state = "pending"
            notice.reject_reason = None
            notice.submitted_at = notice.updated_at = self._clock.now()
            audit.record(
                session,
                principal.actor,
                at=notice.updated_at,
                action="notice.submit",
                object_type="notice",
                object_id=notice.id,
                detail={"revision": notice.revision},
            )
        return notice

    @staticmethod
    def why_not_decider(principal: Principal, notice: Notice) -> str | None:
        """Why ``principal`` may not approve or reject ``notice`` (four eyes), or None."""
        if not principal.has_role(*APPROVER_ROLES):
            return "只有审核人才能审核通知"
        if notice.author_id == principal.user_id:
            return "不能审核自己写的通知，请由另一位审核人审核"
        if principal.user_id in (notice.editor_ids or []):
            return "您修改过这条通知，不能再审核它，请由另一位审核人审核"
        return None

    def _check_decider(self, principal: Principal, notice: Notice, revision: int | None) -> None:
        if notice.state != "pending":
            raise Conflict(f"只有待审核的通知才能审核，这条是“{STATE_LABELS[notice.state]}”", code="notice.state")
        reason = self.why_not_decider(principal, notice)
        if reason is not None:
            code = "notice.own_approval" if notice.author_id == principal.user_id else "notice.edited_by_approver"
            raise PermissionDenied(reason, code=code)
        if revision is not None and revision != notice.revision:
            raise Conflict(
                f"您看的是第 {revision} 版，通知已改为第 {notice.revision} 版：请重新阅读、试听后再审核",
                code="notice.changed",
            )

    async def approve(self, principal: Principal, notice_id: int, revision: int | None = None) -> Notice:
        """Approve the revision the approver read (``revision``), keeping the audio they heard (rendered if none).

        A notice that still carries an ID or card number, or an undecided phone number (it reached approval
        before the submit check existed), goes back to its author with the reason instead. When it must be
        rendered, it is refused (nothing rendered) if the item would be too long or the cache cannot keep it;
        its audio is kept from the moment it exists (a keep set until the approval is committed, then the
        approved notices' keeper): a full cache never evicts it before it airs.
        """
        principal.require_role(*APPROVER_ROLES)
        self._require_room("审核通过通知")
        async with self._sessions() as session:
            notice = await self._load(session, principal, notice_id)
            self._check_decider(principal, notice, revision)
            seen = notice.revision
            refusal = self.review(notice).refusal() if notice.source == "tts" else None
        if refusal is not None:
            await self.reject(principal, notice_id, f"系统审核未通过：{refusal}", revision=seen)
            raise Conflict(f"{refusal}。已退回给作者修改", code="notice.personal_numbers")
        with self._cache.keep_set(f"approval of notice {notice_id}") as keep:
            result = None
            if self._preview_complete(notice):
                keep.add((notice.audio_keys or {}).values())  # kept already as a pending preview: nothing new
            else:
                # Render before the state changes: an approved notice always has its audio.
                await self._room_for(notice)
                result = await self.render(notice, keep=keep)
                await self._cache.ensure_room(keep.keys)
            return await self._approved(principal, notice_id, seen, result)

    async def _room_for(self, notice: Notice) -> None:
        """Before rendering: the length cap, and room in the cache for the item's estimated size."""
        if notice.source == "recording" and notice.recording_file:
            return  # its length is known once decoded (the renderer checks it before encoding)
        spoken = await self._producer.spoken(notice_text({"title": notice.title, "body": notice.body}))
        estimate = self._producer.estimate_s(len(spoken), repeats=notice.repeats)
        self._producer.check_length(estimate, estimated=True, repeats=notice.repeats)
        await self._cache.ensure_room(extra_bytes=estimated_bytes(estimate, ALL_PROFILES))

    async def _approved(
        self, principal: Principal, notice_id: int, seen: int, result: ProductionResult | None
    ) -> Notice:
        async with self._sessions.begin() as session:
            notice = await self._load(session, principal, notice_id)
            self._check_decider(principal, notice, seen)
            if result is not None:
                self._set_audio(notice, result)
            elif not self._preview_complete(notice):
                raise Conflict("审核期间试听音频被修改了，请重新审核", code="notice.changed")
            notice.state = "approved"
            notice.approver_id = principal.user_id
            notice.decided_at = notice.updated_at = self._clock.now()
            audit.record(
                session,
                principal.actor,
                at=notice.decided_at,
                action="notice.approve",
                object_type="notice",
                object_id=notice.id,
                detail={
                    "revision": notice.revision,
                    "duration_s": notice.audio_duration_s,
                    "engine": notice.audio_engine,
                    "audio": notice.audio_keys.get(Profile.MP3.value) if notice.audio_keys else None,
                    "kept_numbers": sorted(f.key for f in self.review(notice).kept),
                },
            )
        return notice

    async def reject(self, principal: Principal, notice_id: int, reason: str, *, revision: int | None = None) -> Notice:
        principal.require_role(*APPROVER_ROLES)
        reason = reason.strip()
        if not reason:
            raise InvalidInput("驳回时请写明理由", fields={"reason": "不能为空"})
        async with self._sessions.begin() as session:
            notice = await self._load(session, principal, notice_id)
            self._check_decider(principal, notice, revision)
            notice.state = "rejected"
            notice.reject_reason = reason
            notice.approver_id = principal.user_id
            notice.decided_at = notice.updated_at = self._clock.now()
            audit.record(
                session,
                principal.actor,
                at=notice.decided_at,
                action="notice.reject",
                object_type="notice",
                object_id=notice.id,
                detail={"reason": reason, "revision": notice.revision},
            )
        return notice

    async def archive(self, principal: Principal, notice_id: int) -> Notice:
        principal.require_role(*WRITER_ROLES, *APPROVER_ROLES)
        async with self._sessions.begin() as session:
            notice = await self._load(session, principal, notice_id)
            if notice.state == "archived":
                return notice
            notice.state = "archived"
            notice.updated_at = self._clock.now()
            # Its schedules stop with it: left running, each slot would add a 已取消 line every day.
            stopped = (
                await session.scalars(select(Schedule).where(Schedule.notice_id == notice.id, Schedule.enabled))
            ).all()
            for schedule in stopped:
                schedule.enabled = False
                schedule.updated_at = notice.updated_at
            audit.record(
                session,
                principal.actor,
                at=notice.updated_at,
                action="notice.archive",
                object_type="notice",
                object_id=notice.id,
                detail={"schedules_stopped": [schedule.id for schedule in stopped]},
            )
        for schedule in stopped:
            await self._schedule_listeners.notify(schedule.id)
        return notice

    async def create_emergency(
        self, principal: Principal, *, title: str, body: str, township_id: int | None, official: bool = False
    ) -> Notice:
        """Write, approve and render an emergency notice in one step (no four eyes: minutes matter).

        ``official``: the text is an official warning's (CAP), read as published: the personal-number guard
        does not block it (the alerts page shows what it found instead).
        """
        if not principal.can_emergency:
            raise PermissionDenied("您没有应急广播权限", code="emergency.forbidden")
        data = self._validate(
            principal,
            NoticeInput(kind="emergency", title=title, body=body, township_id=township_id, repeats=3),
        )
        # No waiting for a decision on a phone number (minutes matter), but never an ID or card on air.
        if not official and review_text(data.title, data.body, max_chars=self.max_chars).blocking:
            raise Conflict("应急通知中含有身份证号或银行卡号，不能播出", code="notice.personal_numbers")
        draft = Notice(kind="emergency", title=data.title, body=data.body, source="tts", repeats=data.repeats)
        with self._cache.keep_set("emergency being written") as keep:
            result = await self.render(draft, emergency=True, keep=keep)
            # Never refused or delayed for space: kept over the limit, the overflow reported (/healthz, 待办).
            await self._cache.ensure_room(keep.keys, overflow=True)
            return await self._insert(principal, data, approved_with=result)

    async def create_phone_recording(
        self, author: Actor, *, title: str, township_id: int | None, recording: Path, repeats: int
    ) -> Notice:
        """A cadre's recording from the phone (手机喊话), made an approved item at once: chime, loudness, repeats,
        the length cap, like any recording; reviewed afterwards (事后审核) on the 喊话记录 page, not before.

        Asks for disk space first (:class:`common.errors.InsufficientStorage`); a recording too long for one item
        is :class:`broadcast.production.ItemTooLong`. The row is of the phone's kind, so no notice page offers
        it for writing or scheduling.
        """
        self._require_room("手机喊话")
        data = await asyncio.to_thread(recording.read_bytes)
        if not data:
            raise InvalidInput("录音是空的", fields={"recording": "空文件"})
        suffix = recording.suffix.lower() or ".wav"
        digest = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        name = f"{digest}{suffix}"
        await self._store_recording(name, data)
        draft = Notice(
            kind=PHONECAST_KIND, title=title, body="", source="recording", recording_file=name, repeats=repeats
        )
        with self._cache.keep_set("phone broadcast being made") as keep:
            result = await self.render(draft, keep=keep)
            await self._cache.ensure_room(keep.keys, overflow=True)
            now = self._clock.now()
            async with self._sessions.begin() as session:
                await self._township_exists(session, township_id)
                notice = Notice(
                    township_id=township_id,
                    kind=PHONECAST_KIND,
                    title=title,
                    body="",
                    source="recording",
                    recording_file=name,
                    repeats=repeats,
                    state="approved",
                    author_id=author.user_id,
                    approver_id=author.user_id,
                    revision=1,
                    created_at=now,
                    updated_at=now,
                    submitted_at=now,
                    decided_at=now,
                )
                self._set_audio(notice, result)
                session.add(notice)
                await session.flush()
                audit.record(
                    session,
                    author,
                    at=now,
                    action="notice.phonecast",
                    object_type="notice",
                    object_id=notice.id,
                    detail={"title": title, "sha256": digest, "duration_s": notice.audio_duration_s},
                )
        return notice

    # -- audio ------------------------------------------------------------------------------

    async def render(self, notice: Notice, *, emergency: bool = False, keep: KeepSet | None = None) -> ProductionResult:
        if notice.source == "recording" and notice.recording_file:
            return await self._producer.render_recording(
                self.recordings_dir / notice.recording_file, repeats=notice.repeats, profiles=ALL_PROFILES, keep=keep
            )
        engine = self._emergency_engine if emergency else notice.voice_engine
        voice = VoiceRequest(engine=engine, voice=None if emergency else notice.voice_name, rate=notice.voice_rate)
        return await self._producer.render_text(
            notice_text({"title": notice.title, "body": notice.body}),
            voice=voice,
            repeats=notice.repeats,
            profiles=ALL_PROFILES,
            keep=keep,
        )

    async def preview(self, principal: Principal, notice_id: int) -> Notice:
        """Render this revision's audio for listening (试听), unless it is there; the same files approval keeps.

        Writers listen before submitting, approvers before deciding. The files stay with the revision (an
        edit drops them); a pending notice's are kept from eviction until the decision (:meth:`kept_audio_keys`).
        """
        principal.require_role(*WRITER_ROLES, *APPROVER_ROLES)
        async with self._sessions() as session:
            notice = await self._load(session, principal, notice_id)
        if notice.state == "archived":
            raise Conflict("已归档的通知不能试听", code="notice.archived")
        if self._preview_complete(notice):
            return notice
        result = await self.render(notice, emergency=notice.kind == "emergency" and notice.state == "approved")
        async with self._sessions.begin() as session:
            current = await self._load(session, principal, notice_id)
            if current.revision != notice.revision:
                raise Conflict("生成试听期间通知被修改了，请刷新页面后再试听", code="notice.changed")
            if not self._preview_complete(current):
                self._set_audio(current, result)
        return current

    def _preview_complete(self, notice: Notice) -> bool:
        """Whether every profile of this revision's audio is in the cache (so listening and airing need no render)."""
        keys = notice.audio_keys or {}
        return all(
            profile.value in keys and self._cache.get(keys[profile.value], touch=False) is not None
            for profile in ALL_PROFILES
        )

    def has_preview(self, notice: Notice) -> bool:
        """Whether the page can offer this revision's audio to listen to now."""
        key = (notice.audio_keys or {}).get(Profile.MP3.value)
        return key is not None and self._cache.get(key, touch=False) is not None

    @staticmethod
    def _set_audio(notice: Notice, result: ProductionResult) -> None:
        notice.audio_keys = {profile.value: key for profile, key in result.keys.items()}
        notice.audio_duration_s = round(result.duration_s, 3)
        notice.audio_engine = result.engine
        notice.spoken_text = result.spoken_text

    async def audio_files(self, notice: Notice, keep: KeepSet | None = None) -> tuple[dict[Profile, Path], float]:
        """The rendered files of an approved notice, put in ``keep``; rendered again if they are missing.

        (Approved notices' audio is kept, so this happens only when the files were lost some
        other way — a disk restored without them, a hand that cleaned the directory.)
        """
        if notice.state != "approved" or not notice.audio_keys:
            raise Conflict("通知尚未审核通过，不能播出", code="notice.not_approved")
        if keep is not None:
            keep.add(notice.audio_keys.values())
        files: dict[Profile, Path] = {}
        for profile in ALL_PROFILES:
            entry = self._cache.get(notice.audio_keys.get(profile.value, ""))
            if entry is None:
                log.warning("audio of notice %s is missing from the cache; rendering it again", notice.id)
                result = await self.render(notice, emergency=notice.kind == "emergency", keep=keep)
                return dict(result.files), result.duration_s
            files[profile] = entry.path
        return files, float(notice.audio_duration_s or 0.0)

    def keep_set(self, name: str) -> KeepSet:
        """A keep set in the audio cache (the dispatcher holds one per playing zone)."""
        return self._cache.keep_set(name)

    async def cache_health(self) -> dict[str, Any]:
        """The audio cache's state (for the admins' 待办: whether approvals are refused for space)."""
        return await self._cache.health()

    async def audio_path(
        self, principal: Principal, notice_id: int, profile: Profile = Profile.MP3, *, revision: int | None = None
    ) -> Path:
        """This revision's audio (``revision``, when given, must still be the current one: no stale preview)."""
        async with self._sessions() as session:
            notice = await self._load(session, principal, notice_id)
        if revision is not None and revision != notice.revision:
            raise NotFound("通知已经修改，这段试听已作废：请刷新页面后重新试听", code="notice.changed")
        if not notice.audio_keys:
            raise NotFound("这条通知还没有生成试听音频", code="notice.no_audio")
        entry = self._cache.get(notice.audio_keys.get(profile.value, ""))
        if entry is None:
            if notice.state != "approved":
                raise NotFound("试听音频已过期，请重新生成试听", code="notice.no_audio")
            files, _ = await self.audio_files(notice)
            return files[profile]
        return entry.path

    async def kept_audio_keys(self) -> set[str]:
        """Audio the cache must keep, as the database says: approved notices' items (emergencies among them,
        until archived), pending notices' previews (until the decision: the approver hears, and approval keeps,
        exactly these files), and what is waiting or playing now (its notice may have changed since)."""
        async with self._sessions() as session:
            notices = await session.scalars(select(Notice.audio_keys).where(Notice.state.in_(("approved", "pending"))))
            on_air = await session.scalars(
                select(Broadcast.audio_keys).where(Broadcast.state.in_((RUN_WAITING, RUN_PLAYING)))
            )
            return {key for keys in [*notices.all(), *on_air.all()] if keys for key in keys.values()}

    # -- reading ----------------------------------------------------------------------------

    async def get(self, principal: Principal, notice_id: int) -> Notice:
        async with self._sessions() as session:
            return await self._load(session, principal, notice_id)

    async def list_notices(
        self, principal: Principal, *, state: str | None = None, kinds: Sequence[str] = ()
    ) -> list[Notice]:
        statement = select(Notice).order_by(Notice.updated_at.desc(), Notice.id.desc())
        scope = principal.township_filter()
        if scope is not None:
            statement = statement.where(Notice.township_id.in_(scope))
        if state:
            statement = statement.where(Notice.state == state)
        if kinds:
            statement = statement.where(Notice.kind.in_(kinds))
        else:
            # Phone broadcasts are listed on the 喊话记录 page, not among the notices written here.
            statement = statement.where(Notice.kind != PHONECAST_KIND)
        async with self._sessions() as session:
            return list((await session.scalars(statement.limit(500))).all())


def notice_json(notice: Notice) -> dict[str, Any]:
    return {
        "id": notice.id,
        "township_id": notice.township_id,
        "kind": notice.kind,
        "kind_label": KIND_LABELS[notice.kind],
        "priority": PRIORITY_OF_KIND[notice.kind],
        "title": notice.title,
        "body": notice.body,
        "source": notice.source,
        "voice_engine": notice.voice_engine,
        "voice_name": notice.voice_name,
        "voice_rate": notice.voice_rate,
        "repeats": notice.repeats,
        "state": notice.state,
        "state_label": STATE_LABELS[notice.state],
        "reject_reason": notice.reject_reason,
        "author_id": notice.author_id,
        "approver_id": notice.approver_id,
        "revision": notice.revision,
        "audio_duration_s": notice.audio_duration_s,
        "audio_engine": notice.audio_engine,
        "spoken_text": notice.spoken_text,
        "has_audio": bool(notice.audio_keys),
        "editor_ids": list(notice.editor_ids or []),
        "number_decisions": dict(notice.number_decisions or {}),
        "created_at": notice.created_at,
        "updated_at": notice.updated_at,
        "decided_at": notice.decided_at,
    }


__all__ = [
    "ALL_PROFILES",
    "PROFILES",
    "NoticeInput",
    "NoticeService",
    "notice_json",
]
