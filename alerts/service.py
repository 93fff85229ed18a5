"""Official warnings from intake to loudspeaker: one message at a time, used whole or refused with its reason.

:meth:`AlertService.receive` is the one way in, whatever the source (push, feed, folder, a test injected from
the page): parse and validate (``alerts.cap``), de-duplicate by sender and identifier, then by ``msgType``:

* Alert — match villages (``alerts.areas``), decide by the policy table (``alerts.policy``): 自动播出 goes to
  the emergency path at once; 待审核 waits for an approver; 仅记录 is kept and shown;
* Update — what it references is stopped and marked 已更新, then it is handled as an Alert;
* Cancel — what it references (from the same sender only) is stopped wherever it is queued or playing and
  marked 已撤销;
* Ack, Error — recorded only. ``status`` System is a heartbeat; Draft is recorded; Test and Exercise play
  only in zones an admin marked 测试分区.

What broadcasting must do for us crosses through :class:`AlertBroadcaster`, a Protocol this package defines
and ``server.py`` satisfies with the emergency path (notices and the dispatcher). Every decision is audited.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.principal import Principal
from alerts.areas import Place, match_places
from alerts.cap import DEFAULT_MAX_BYTES, CapMessage, CapRefused, parse_cap
from alerts.policy import (
    CERTAINTY_LABELS,
    SEVERITY_LABELS,
    URGENCY_LABELS,
    PolicyRow,
    decide,
    level_of,
    spoken_text,
)
from alerts.signatures import load_certificate, verify_signature
from areas.addresses import hash_token
from common.clock import Clock
from common.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from settings import Settings
from storage import audit
from storage.audit import Actor
from storage.models import (
    ALERT_ACTIONS,
    AlertFeedEntry,
    AlertMessage,
    AlertPolicyRule,
    AlertRefusal,
    AlertSource,
    Township,
    User,
    Village,
    Zone,
)

SYSTEM_ACTOR = Actor(user_id=None, username="system:alerts")
# The account auto-aired alerts are written by (notices need an author); it cannot sign in (inactive, no password).
SYSTEM_USERNAME = "system.alerts"
SYSTEM_DISPLAY_NAME = "预警自动播出（系统）"
# Statuses that may reach a loudspeaker, and where.
AIRING_STATUSES = {"Actual", "Test", "Exercise"}
TEST_STATUSES = {"Test", "Exercise"}
EXCERPT_CHARS = 500
# What the as-run says of a play stopped because its alert reached its expires.
EXPIRED_REASON = "预警已到失效时间"


class AlertBroadcaster(Protocol):
    """What alerts need from broadcasting: air a text now as an emergency, and stop what was aired."""

    async def air(self, *, author_id: int, title: str, text: str, zone_ids: Sequence[int]) -> tuple[int, int]:
        """Render and queue ``text`` in ``zone_ids`` at emergency priority; returns (notice id, broadcast id)."""
        ...

    async def stop(self, broadcast_id: int, reason: str) -> None:
        """Take the broadcast out of every queue and stop it where it plays, recording ``reason``."""
        ...

    async def replay(self, *, notice_id: int, zone_ids: Sequence[int], author_id: int) -> int:
        """Queue the same (already rendered) notice again in ``zone_ids`` at emergency priority; the broadcast id."""
        ...


@dataclass(frozen=True)
class AlertsConfig:
    max_bytes: int = DEFAULT_MAX_BYTES
    # The spoken text's cap (headline and instruction first, then as much description as fits).
    max_spoken_chars: int = 600
    # Wall-clock rules (the townships' quiet hours, for repeats) are in this zone.
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertsConfig:
        return cls(
            max_bytes=settings.alerts.max_message_bytes,
            max_spoken_chars=settings.alerts.max_spoken_chars,
            zone=settings.zone,
        )


class _AlreadyReceived(Exception):
    """Another copy of the message was recorded between our look and our insert (sender + identifier)."""


@dataclass(frozen=True)
class Receipt:
    """What became of one message (the push endpoint's answer)."""

    message_id: int
    duplicate: bool
    state: str
    reason: str


class AlertService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        config: AlertsConfig,
        broadcaster: AlertBroadcaster | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self.config = config
        self._broadcaster = broadcaster

    def use_broadcaster(self, broadcaster: AlertBroadcaster) -> None:
        """Broadcasting is built after this part in some set-ups; ``server.py`` connects it here."""
        self._broadcaster = broadcaster

    # -- sources ------------------------------------------------------------------------------

    async def create_source(
        self,
        actor: Actor,
        *,
        name: str,
        kind: str,
        url: str | None = None,
        folder: str | None = None,
        poll_interval_s: int = 60,
        silent_after_s: int | None = None,
        certificate_pem: str | None = None,
    ) -> tuple[AlertSource, str | None]:
        """A new source; a push source's token is returned once (only its hash is kept).

        With ``certificate_pem`` every message from it must be signed by that certificate's key.
        """
        name = _checked_source(name, kind, url, folder, certificate_pem)
        token = secrets.token_urlsafe(32) if kind == "push" else None
        now = self._clock.now()
        source = AlertSource(
            name=name,
            kind=kind,
            active=True,
            token_hash=hash_token(token) if token else None,
            url=url,
            folder=folder,
            poll_interval_s=poll_interval_s,
            silent_after_s=silent_after_s,
            certificate_pem=certificate_pem or None,
            created_at=now,
        )
        try:
            async with self._sessions.begin() as session:
                session.add(source)
                await session.flush()
                audit.record(
                    session, actor, at=now, action="alert_source.create", object_type="alert_source",
                    object_id=source.id, detail={"name": name, "kind": kind, "url": url, "folder": folder},
                )  # fmt: skip
        except IntegrityError:
            raise Conflict("已有同名的预警来源", code="alert_source.exists", fields={"name": "已存在"}) from None
        return source, token

    async def update_source(
        self,
        actor: Actor,
        source_id: int,
        *,
        name: str,
        active: bool,
        url: str | None = None,
        folder: str | None = None,
        poll_interval_s: int = 60,
        silent_after_s: int | None = None,
        certificate_pem: str | None = None,
    ) -> AlertSource:
        """Change a source (its kind and token stay): switched off, it takes nothing (a push is refused with 401,
        a feed or folder is not read). Audited with what changed (a certificate as set or removed)."""
        now = self._clock.now()
        try:
            async with self._sessions.begin() as session:
                source = await session.get(AlertSource, source_id)
                if source is None or source.kind == "manual":
                    raise NotFound("预警来源不存在")
                name = _checked_source(name, source.kind, url, folder, certificate_pem)
                changes: dict[str, Any] = {
                    "name": name,
                    "active": active,
                    "url": url if source.kind == "pull" else source.url,
                    "folder": folder if source.kind == "folder" else source.folder,
                    "poll_interval_s": poll_interval_s,
                    "silent_after_s": silent_after_s,
                    "certificate_pem": certificate_pem or None,
                }
                diff: dict[str, Any] = {}
                for field_name, value in changes.items():
                    before = getattr(source, field_name)
                    if before != value:
                        shown = (
                            (lambda v: "已设置" if v else "无") if field_name == "certificate_pem" else (lambda v: v)
                        )
                        diff[field_name] = {"before": shown(before), "after": shown(value)}
                        setattr(source, field_name, value)
                if "url" in diff:  # another feed: what the old one said is no guide
                    source.etag = source.last_modified = None
                if diff:
                    await session.flush()
                    audit.record(
                        session, actor, at=now, action="alert_source.update", object_type="alert_source",
                        object_id=source.id, detail=diff,
                    )  # fmt: skip
        except IntegrityError:
            raise Conflict("已有同名的预警来源", code="alert_source.exists", fields={"name": "已存在"}) from None
        return source

    async def get_source(self, source_id: int) -> AlertSource:
        async with self._sessions() as session:
            source = await session.get(AlertSource, source_id)
        if source is None or source.kind == "manual":
            raise NotFound("预警来源不存在")
        return source

    async def sources_of_kind(self, kind: str) -> list[AlertSource]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(AlertSource)
                .where(AlertSource.kind == kind, AlertSource.active.is_(True))
                .order_by(AlertSource.id)
            )
            return list(rows.all())

    async def note_poll(
        self, source_id: int, *, error: str | None = None, etag: str | None = None, last_modified: str | None = None
    ) -> None:
        """A poll or scan happened: its time, its error (None clears it), the feed's validators for next time."""
        async with self._sessions.begin() as session:
            source = await session.get(AlertSource, source_id)
            if source is None:
                return
            source.last_polled_at = self._clock.now()
            source.last_error = error
            if etag is not None:
                source.etag = etag[:255]
            if last_modified is not None:
                source.last_modified = last_modified[:64]

    async def feed_links_seen(self, source_id: int, links: Sequence[str]) -> set[str]:
        """Which of a feed's entry links this source fetched before (in this process or before a restart)."""
        if not links:
            return set()
        by_hash = {_link_hash(link): link for link in links}
        async with self._sessions() as session:
            found = await session.scalars(
                select(AlertFeedEntry.link_hash).where(
                    AlertFeedEntry.source_id == source_id, AlertFeedEntry.link_hash.in_(list(by_hash))
                )
            )
            return {by_hash[digest] for digest in found.all()}

    async def remember_feed_link(self, source_id: int, link: str) -> None:
        """An entry link fetched and handed to :meth:`receive` (taken or refused): never fetched again."""
        try:
            async with self._sessions.begin() as session:
                session.add(
                    AlertFeedEntry(
                        source_id=source_id, link_hash=_link_hash(link), link=link[:1024], seen_at=self._clock.now()
                    )
                )
        except IntegrityError:
            pass  # remembered already (two rounds raced): once is enough

    async def silent_sources(self) -> list[AlertSource]:
        """Active sources that have sent nothing (not even a heartbeat) for longer than their setting."""
        now = self._clock.now()
        return [
            source
            for source in await self.list_sources()
            if source.active
            and source.silent_after_s is not None
            and (now - (source.last_message_at or source.created_at)).total_seconds() > source.silent_after_s
        ]

    async def health(self) -> dict[str, Any]:
        """/healthz: a silent source makes alerts down (warnings may be missed); a failed poll degraded."""
        silent = await self.silent_sources()
        failing = [source for source in await self.list_sources() if source.active and source.last_error]
        problems = [
            f"{source.name}: silent since {(source.last_message_at or source.created_at).isoformat(timespec='seconds')}"
            for source in silent
        ] + [f"{source.name}: {source.last_error}" for source in failing]
        status = "down" if silent else "degraded" if failing else "ok"
        result: dict[str, Any] = {"status": status, "required": False}
        if problems:
            result["detail"] = "; ".join(problems)
        return result

    async def source_for_token(self, authorization: str | None) -> AlertSource:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("缺少预警来源令牌（Authorization: Bearer 令牌）", code="alert_source.token_missing")
        digest = hash_token(token.strip())
        async with self._sessions() as session:
            source = await session.scalar(
                select(AlertSource).where(AlertSource.token_hash == digest, AlertSource.kind == "push")
            )
        if source is None or not source.active or not hmac.compare_digest(source.token_hash or "", digest):
            raise Unauthenticated("预警来源令牌不正确或已停用", code="alert_source.bad_token")
        return source

    async def manual_source(self) -> int:
        """The source that messages injected from the page (tests, hand-made alerts) are recorded under."""
        async with self._sessions.begin() as session:
            found = await session.scalar(select(AlertSource.id).where(AlertSource.kind == "manual"))
            if found is not None:
                return found
            source = AlertSource(name="页面注入", kind="manual", active=True, created_at=self._clock.now())
            session.add(source)
            await session.flush()
            return source.id

    # -- intake ---------------------------------------------------------------------------------

    async def receive(self, source_id: int, data: bytes, *, origin: str = "") -> Receipt:
        """Use one message whole, or refuse it (:class:`CapRefused`, recorded with its reason) and use none of it."""
        now = self._clock.now()
        async with self._sessions() as session:
            certificate = await session.scalar(select(AlertSource.certificate_pem).where(AlertSource.id == source_id))
        try:
            # Off the event loop: schema validation and signature checks of a large message are CPU work.
            message = await asyncio.to_thread(parse_cap, data, max_bytes=self.config.max_bytes)
            if certificate:
                await asyncio.to_thread(verify_signature, data, certificate)
        except CapRefused as refused:
            await self._refuse(source_id, refused, data, origin, now)
            raise
        async with self._sessions.begin() as session:
            existing = await session.scalar(
                select(AlertMessage).where(
                    AlertMessage.sender == message.sender, AlertMessage.identifier == message.identifier
                )
            )
            if existing is not None:
                return Receipt(existing.id, True, existing.state, "重复的消息（同一发布者、同一标识），已忽略")
        try:
            return await self._handle(source_id, message, data, now)
        except _AlreadyReceived:
            # The same message arriving twice at once: the other copy was recorded first.
            async with self._sessions() as session:
                existing = await session.scalar(
                    select(AlertMessage).where(
                        AlertMessage.sender == message.sender, AlertMessage.identifier == message.identifier
                    )
                )
            assert existing is not None
            return Receipt(existing.id, True, existing.state, "重复的消息（同一发布者、同一标识），已忽略")

    async def _refuse(self, source_id: int, refused: CapRefused, data: bytes, origin: str, now: datetime) -> None:
        async with self._sessions.begin() as session:
            refusal = AlertRefusal(
                source_id=source_id,
                received_at=now,
                code=refused.code[:32],
                reason=refused.reason,
                origin=origin[:1024],
                excerpt=data[:EXCERPT_CHARS].decode("utf-8", "replace"),
            )
            session.add(refusal)
            await session.flush()
            audit.record(
                session, SYSTEM_ACTOR, at=now, action="alert.refuse", object_type="alert_refusal",
                object_id=refusal.id, detail={"source_id": source_id, "code": refused.code, "reason": refused.reason},
            )  # fmt: skip

    async def _handle(self, source_id: int, message: CapMessage, data: bytes, now: datetime) -> Receipt:
        row = self._row(source_id, message, data, now)
        async with self._sessions.begin() as session:
            source = await session.get(AlertSource, source_id)
            if source is not None:
                source.last_message_at = now
                if message.status == "System":
                    source.last_heartbeat_at = now
            session.add(row)
            try:
                await session.flush()
            except IntegrityError:
                raise _AlreadyReceived from None
            audit.record(
                session, SYSTEM_ACTOR, at=now, action="alert.receive", object_type="alert", object_id=row.id,
                detail={"source_id": source_id, "identifier": message.identifier, "sender": message.sender,
                        "status": message.status, "msg_type": message.msg_type},
            )  # fmt: skip
            closed: list[int] = []
            if message.msg_type in ("Update", "Cancel"):
                closed = await self._close_referenced(session, message, row, now)
            if message.msg_type in ("Alert", "Update") and message.status in AIRING_STATUSES:
                await self._decide(session, message, row, now)
            else:
                row.state, row.state_reason = "recorded", _recorded_reason(message)
            message_id = row.id
        for broadcast_id in await self._broadcasts_of(closed):
            await self._stop(broadcast_id, "预警已撤销" if message.msg_type == "Cancel" else "预警已更新")
        if row.action == "auto" and row.state == "aired":
            await self._air(message_id)
        async with self._sessions() as session:
            final = await session.get(AlertMessage, message_id)
            assert final is not None
            return Receipt(message_id, False, final.state, final.state_reason)

    def _row(self, source_id: int, message: CapMessage, data: bytes, now: datetime) -> AlertMessage:
        info = message.chosen_info()
        return AlertMessage(
            source_id=source_id,
            identifier=message.identifier,
            sender=message.sender,
            sent=message.sent,
            status=message.status,
            msg_type=message.msg_type,
            references=[[ref.sender, ref.identifier, ref.sent] for ref in message.references],
            event=(info.event if info else "")[:255],
            severity=info.severity if info else "",
            urgency=info.urgency if info else "",
            certainty=info.certainty if info else "",
            headline=info.headline if info else "",
            level=level_of(info) if info else "",
            expires=info.expires if info else None,
            received_at=now,
            xml=data.decode("utf-8", "replace"),
            state="recorded",
            state_reason="",
            matched=[],
            zone_ids=[],
            broadcast_ids=[],
            plays=0,
        )

    async def _close_referenced(
        self, session: AsyncSession, message: CapMessage, row: AlertMessage, now: datetime
    ) -> list[int]:
        """Mark what an Update or Cancel refers to (same sender only); returns the alerts it ended."""
        ended: list[int] = []
        state = "cancelled" if message.msg_type == "Cancel" else "superseded"
        for reference in message.references:
            if reference.sender != message.sender:
                continue  # one sender may not cancel another's warning
            earlier = await session.scalar(
                select(AlertMessage).where(
                    AlertMessage.sender == reference.sender, AlertMessage.identifier == reference.identifier
                )
            )
            if earlier is None or earlier.state in ("cancelled", "superseded"):
                continue
            ended.append(earlier.id)
            earlier.state = state
            earlier.state_reason = f"被 {message.identifier} {'撤销' if state == 'cancelled' else '更新'}"
            earlier.replaced_by_id = row.id
            earlier.ended_at = now
            earlier.next_play_at = None  # its remaining repeats are cancelled with it (recorded below)
            audit.record(
                session, SYSTEM_ACTOR, at=now, action=f"alert.{state}", object_type="alert", object_id=earlier.id,
                detail={"by": row.id, "broadcasts_stopped": earlier.broadcast_ids or [], "plays": earlier.plays},
            )  # fmt: skip
        return ended

    async def _decide(self, session: AsyncSession, message: CapMessage, row: AlertMessage, now: datetime) -> None:
        info = message.chosen_info()
        assert info is not None  # our rules require an info for an airing status
        if info.expires is not None and info.expires <= now:
            row.state, row.state_reason = "expired", "收到时已过失效时间，不播出"
            return
        matches = match_places([area for area in info.areas], await _places(session))
        row.matched = [
            {"village_id": m.place.village_id, "village": m.place.village, "township": m.place.township, "why": m.why}
            for m in matches
        ]
        test = message.status in TEST_STATUSES
        zone_ids = await _zones(session, [m.place.village_id for m in matches], test_only=test)
        row.zone_ids = zone_ids
        rule = decide(await self.policy_rows(session), info)
        row.policy_rule_id = rule.id if rule else None
        row.action = rule.action if rule else "record"
        lead, body = spoken_text(info, max_chars=self.config.max_spoken_chars, test=test)
        row.spoken_lead, row.spoken_text = lead, body
        if not matches:
            row.state, row.state_reason = "recorded", "预警区域没有匹配到本县的村，仅记录"
        elif not zone_ids:
            row.state = "recorded"
            row.state_reason = "测试/演练消息只在测试分区播出，匹配的村没有测试分区" if test else "匹配的村没有播出分区"
        elif row.action == "auto":
            row.state, row.state_reason = "aired", "按策略自动播出"
        elif row.action == "review":
            row.state, row.state_reason = "pending", "按策略等待审核人放行"
        else:
            row.state, row.state_reason = "recorded", "按策略仅记录"
        row.decided_at = now
        audit.record(
            session, SYSTEM_ACTOR, at=now, action="alert.decide", object_type="alert", object_id=row.id,
            detail={"action": row.action, "rule_id": row.policy_rule_id, "state": row.state,
                    "villages": len(matches), "zones": zone_ids},
        )  # fmt: skip

    async def _air(self, message_id: int) -> None:
        """Hand the alert to broadcasting; a failure there is recorded on the alert, never lost silently."""
        if self._broadcaster is None:
            raise RuntimeError("alerts: no broadcaster connected")
        author_id = await self._system_user()
        async with self._sessions() as session:
            row = await session.get(AlertMessage, message_id)
            assert row is not None
            title, text, zone_ids = row.spoken_lead or row.event, row.spoken_text or "", list(row.zone_ids)
        try:
            notice_id, broadcast_id = await self._broadcaster.air(
                author_id=author_id, title=title, text=text, zone_ids=zone_ids
            )
        except Exception as exc:
            reason = getattr(exc, "message", None) or type(exc).__name__
            async with self._sessions.begin() as session:
                row = await session.get(AlertMessage, message_id)
                assert row is not None
                row.state, row.state_reason = "recorded", f"未能播出：{reason}"
                audit.record(
                    session, SYSTEM_ACTOR, at=self._clock.now(), action="alert.air_failed", object_type="alert",
                    object_id=message_id, detail={"error": str(exc)},
                )  # fmt: skip
            raise
        async with self._sessions.begin() as session:
            row = await session.get(AlertMessage, message_id)
            assert row is not None
            row.notice_id = notice_id
            row.broadcast_ids = [*(row.broadcast_ids or []), broadcast_id]
            row.plays = 1
            row.next_play_at = None if row.ended_at else self._next_play(row, await self._rule(session, row))
            audit.record(
                session, SYSTEM_ACTOR, at=self._clock.now(), action="alert.air", object_type="alert",
                object_id=message_id, detail={"notice_id": notice_id, "broadcast_id": broadcast_id},
            )  # fmt: skip
        await self._stop_if_ended(message_id, broadcast_id)

    @staticmethod
    async def _rule(session: AsyncSession, row: AlertMessage) -> AlertPolicyRule | None:
        return await session.get(AlertPolicyRule, row.policy_rule_id) if row.policy_rule_id else None

    def _next_play(self, row: AlertMessage, rule: AlertPolicyRule | None) -> datetime | None:
        """When the next repeat is due: every ``repeat_every_min``, at most ``max_plays`` in all, before ``expires``."""
        if rule is None or not rule.repeat_every_min or row.plays >= rule.max_plays:
            return None
        due = self._clock.now() + timedelta(minutes=rule.repeat_every_min)
        return None if row.expires is not None and due >= row.expires else due

    async def end_expired(self) -> int:
        """End what reached its ``expires``: an alert still on air is stopped wherever it plays or waits (the
        as-run says 预警已到失效时间) and its remaining repeats are cancelled; one still waiting for an approver
        becomes 已过期. Each recorded (``alert.expired``). Returns how many alerts were ended."""
        now = self._clock.now()
        async with self._sessions() as session:
            due = (
                await session.scalars(
                    select(AlertMessage.id).where(
                        AlertMessage.state.in_(("aired", "pending")),
                        AlertMessage.ended_at.is_(None),
                        AlertMessage.expires <= now,
                    )
                )
            ).all()
        ended = 0
        for message_id in due:
            async with self._sessions.begin() as session:
                row = await session.get(AlertMessage, message_id)
                if row is None or row.ended_at is not None or row.state not in ("aired", "pending"):
                    continue  # cancelled or ended by someone else meanwhile
                aired = row.state == "aired"
                at = (row.expires or now).astimezone(self.config.zone)
                if row.state == "pending":
                    row.state, row.state_reason = "expired", f"等待审核时已过失效时间（{at:%m-%d %H:%M}），不再播出"
                else:
                    row.state_reason = f"{row.state_reason}；{at:%m-%d %H:%M} 到失效时间，播出结束"
                row.ended_at, row.next_play_at = now, None
                audit.record(
                    session, SYSTEM_ACTOR, at=now, action="alert.expired", object_type="alert", object_id=row.id,
                    detail={"broadcasts_stopped": list(row.broadcast_ids or []) if aired else [], "plays": row.plays},
                )  # fmt: skip
            for broadcast_id in await self._broadcasts_of([message_id]) if aired else []:
                await self._stop(broadcast_id, EXPIRED_REASON)
            ended += 1
        return ended

    async def repeat_due(self) -> int:
        """Play every repeat that is due (the repeat runner's step); returns how many were queued.

        A repeat skips the zones whose township is in quiet hours unless the policy row says repeats may sound
        then (the first play ignores quiet hours: it is an emergency). An alert past ``expires`` has its
        remaining repeats cancelled, recorded.
        """
        if self._broadcaster is None:
            return 0
        now = self._clock.now()
        async with self._sessions() as session:
            due = (
                await session.scalars(
                    select(AlertMessage.id).where(AlertMessage.state == "aired", AlertMessage.next_play_at <= now)
                )
            ).all()
        queued = 0
        for message_id in due:
            queued += await self._repeat(message_id, now)
        return queued

    async def _repeat(self, message_id: int, now: datetime) -> int:
        assert self._broadcaster is not None
        async with self._sessions.begin() as session:
            row = await session.get(AlertMessage, message_id)
            if row is None or row.state != "aired" or row.next_play_at is None or row.notice_id is None:
                return 0
            rule = await self._rule(session, row)
            if row.expires is not None and row.expires <= now:
                row.next_play_at = None
                audit.record(
                    session, SYSTEM_ACTOR, at=now, action="alert.repeats_cancelled", object_type="alert",
                    object_id=row.id, detail={"why": "expired", "plays": row.plays},
                )  # fmt: skip
                return 0
            quiet_ok = rule is not None and rule.repeats_in_quiet_hours
            zone_ids = list(row.zone_ids) if quiet_ok else await self._zones_out_of_quiet(session, row.zone_ids, now)
            row.plays += 1
            row.next_play_at = self._next_play(row, rule)
            notice_id = row.notice_id
            skipped = sorted(set(row.zone_ids) - set(zone_ids))
        broadcast_id = None
        if zone_ids:
            broadcast_id = await self._broadcaster.replay(
                notice_id=notice_id, zone_ids=zone_ids, author_id=await self._system_user()
            )
        async with self._sessions.begin() as session:
            row = await session.get(AlertMessage, message_id)
            assert row is not None
            if broadcast_id is not None:
                row.broadcast_ids = [*(row.broadcast_ids or []), broadcast_id]
            audit.record(
                session, SYSTEM_ACTOR, at=now, action="alert.repeat", object_type="alert", object_id=message_id,
                detail={"play": row.plays, "broadcast_id": broadcast_id, "quiet_zones_skipped": skipped},
            )  # fmt: skip
        if broadcast_id is None:
            return 0
        await self._stop_if_ended(message_id, broadcast_id)
        return 1

    async def _zones_out_of_quiet(self, session: AsyncSession, zone_ids: Sequence[int], now: datetime) -> list[int]:
        local = now.astimezone(self.config.zone).time()
        rows = await session.execute(
            select(Zone.id, Township.quiet_start, Township.quiet_end)
            .join(Village, Zone.village_id == Village.id)
            .join(Township, Village.township_id == Township.id)
            .where(Zone.id.in_(list(zone_ids)))
        )
        return sorted(zone_id for zone_id, start, end in rows.all() if not in_quiet_hours(local, start, end))

    async def _stop(self, broadcast_id: int, reason: str) -> None:
        if self._broadcaster is not None:
            await self._broadcaster.stop(broadcast_id, reason)

    # Whoever adds a broadcast to an alert and whoever ends the alert (expiry, a Cancel or Update, an admin) each
    # commit their write first and read the other's afterwards: of two such commits the later one's reader sees
    # the earlier's, so a broadcast queued while the alert was being ended is always stopped by one of them (both
    # stopping it is harmless). Reading inside the writing transaction is not enough: SQLite reads before its
    # write lock, PostgreSQL reads committed rows, and the two writes touch different columns.

    async def _stop_if_ended(self, message_id: int, broadcast_id: int) -> None:
        """``broadcast_id`` was just recorded on the alert: stop it if the alert was ended meanwhile."""
        async with self._sessions() as session:
            row = await session.get(AlertMessage, message_id)
        if row is None or row.ended_at is None:
            return
        if row.state == "cancelled":
            await self._stop(broadcast_id, "预警已撤销")
        elif row.state == "superseded":
            await self._stop(broadcast_id, "预警已更新")
        else:
            await self._stop(broadcast_id, EXPIRED_REASON)

    async def _broadcasts_of(self, message_ids: Sequence[int]) -> list[int]:
        """The broadcasts recorded on these alerts, read after the ending transaction committed."""
        if not message_ids:
            return []
        async with self._sessions() as session:
            lists = (
                await session.scalars(select(AlertMessage.broadcast_ids).where(AlertMessage.id.in_(message_ids)))
            ).all()
        return [broadcast_id for ids in lists for broadcast_id in ids or []]

    async def _system_user(self) -> int:
        async with self._sessions() as session:
            found = await session.scalar(select(User.id).where(User.username == SYSTEM_USERNAME))
        if found is not None:
            return found
        try:
            async with self._sessions.begin() as session:
                user = User(
                    username=SYSTEM_USERNAME,
                    display_name=SYSTEM_DISPLAY_NAME,
                    password_hash="!",  # never a valid hash: nobody signs in as the system
                    active=False,
                    county_wide=True,
                    can_emergency=True,
                    created_at=self._clock.now(),
                )
                session.add(user)
                await session.flush()
                return user.id
        except IntegrityError:
            async with self._sessions() as session:
                again = await session.scalar(select(User.id).where(User.username == SYSTEM_USERNAME))
            assert again is not None
            return again

    async def audit_injection(self, actor: Actor, message_id: int) -> None:
        """Who injected a test alert from the page (the message itself is recorded as any other)."""
        async with self._sessions.begin() as session:
            audit.record(
                session, actor, at=self._clock.now(), action="alert.inject_test", object_type="alert",
                object_id=message_id,
            )  # fmt: skip

    # -- people's decisions -------------------------------------------------------------------------

    async def release(self, principal: Principal, message_id: int) -> AlertMessage:
        """An approver releases a 待审核 alert: it airs now, by the emergency path."""
        principal.require_role("approver", "admin")
        now = self._clock.now()
        async with self._sessions.begin() as session:
            row = await self._load(session, message_id)
            if row.state != "pending":
                raise Conflict("只有待审核的预警才能放行", code="alert.not_pending")
            if row.expires is not None and row.expires <= now:
                row.state, row.state_reason = "expired", "已过失效时间，不再播出"
                return row
            row.state, row.state_reason = "aired", f"由{principal.display_name}放行播出"
            row.decided_by, row.decided_at = principal.user_id, now
            audit.record(
                session, principal.actor, at=now, action="alert.release", object_type="alert", object_id=row.id
            )
        await self._air(message_id)
        return await self.get(message_id)

    async def reject(self, principal: Principal, message_id: int) -> AlertMessage:
        principal.require_role("approver", "admin")
        now = self._clock.now()
        async with self._sessions.begin() as session:
            row = await self._load(session, message_id)
            if row.state != "pending":
                raise Conflict("只有待审核的预警才能不予放行", code="alert.not_pending")
            row.state, row.state_reason = "rejected", f"{principal.display_name}决定不播出"
            row.decided_by, row.decided_at = principal.user_id, now
            audit.record(session, principal.actor, at=now, action="alert.reject", object_type="alert", object_id=row.id)
        return await self.get(message_id)

    async def replay_by_hand(self, principal: Principal, message_id: int) -> AlertMessage:
        """An admin plays an alert that aired once more, now, in its zones (audited; not counted as a repeat)."""
        principal.require_role("admin")
        if self._broadcaster is None:
            raise RuntimeError("alerts: no broadcaster connected")
        async with self._sessions() as session:
            row = await self._load(session, message_id)
        if row.notice_id is None or row.state in ("cancelled", "superseded"):
            raise Conflict("只有播出过、且未被撤销或更新的预警才能重播", code="alert.not_replayable")
        broadcast_id = await self._broadcaster.replay(
            notice_id=row.notice_id, zone_ids=list(row.zone_ids), author_id=principal.user_id
        )
        async with self._sessions.begin() as session:
            row = await self._load(session, message_id)
            row.broadcast_ids = [*(row.broadcast_ids or []), broadcast_id]
            audit.record(
                session, principal.actor, at=self._clock.now(), action="alert.replay", object_type="alert",
                object_id=message_id, detail={"broadcast_id": broadcast_id},
            )  # fmt: skip
        return await self.get(message_id)

    async def cancel(self, principal: Principal, message_id: int) -> AlertMessage:
        """An admin cancels an alert by hand: out of every queue, stopped where it plays (audited)."""
        principal.require_role("admin")
        now = self._clock.now()
        async with self._sessions.begin() as session:
            row = await self._load(session, message_id)
            if row.state not in ("aired", "pending"):
                raise Conflict("这条预警没有在播出或等待，无需撤销", code="alert.not_active")
            row.state, row.state_reason = "cancelled", f"由{principal.display_name}手动撤销"
            row.ended_at = now
            row.next_play_at = None
            audit.record(
                session, principal.actor, at=now, action="alert.cancel", object_type="alert", object_id=row.id,
                detail={"broadcasts_stopped": list(row.broadcast_ids or [])},
            )  # fmt: skip
        for broadcast_id in await self._broadcasts_of([message_id]):
            await self._stop(broadcast_id, f"预警由{principal.display_name}手动撤销")
        return await self.get(message_id)

    # -- reading ---------------------------------------------------------------------------------

    async def _load(self, session: AsyncSession, message_id: int) -> AlertMessage:
        row = await session.get(AlertMessage, message_id)
        if row is None:
            raise NotFound("预警信息不存在")
        return row

    async def get(self, message_id: int) -> AlertMessage:
        async with self._sessions() as session:
            return await self._load(session, message_id)

    async def list_messages(self, *, limit: int = 200) -> list[AlertMessage]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(AlertMessage).order_by(AlertMessage.received_at.desc(), AlertMessage.id.desc()).limit(limit)
            )
            return list(rows.all())

    async def list_refusals(self, *, limit: int = 50) -> list[AlertRefusal]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(AlertRefusal).order_by(AlertRefusal.received_at.desc(), AlertRefusal.id.desc()).limit(limit)
            )
            return list(rows.all())

    async def list_sources(self) -> list[AlertSource]:
        async with self._sessions() as session:
            return list((await session.scalars(select(AlertSource).order_by(AlertSource.id))).all())

    async def policy_rules(self) -> list[AlertPolicyRule]:
        async with self._sessions() as session:
            rows = await session.scalars(select(AlertPolicyRule).order_by(AlertPolicyRule.position, AlertPolicyRule.id))
            return list(rows.all())

    async def save_policy_rule(self, actor: Actor, rule_id: int | None, rule: PolicyRuleInput) -> AlertPolicyRule:
        """Add a row (``rule_id`` None) or change one; audited with what changed. Messages already decided keep
        their decision; the next message is decided by the table as it is now."""
        rule.check()
        now = self._clock.now()
        values = rule.values()
        async with self._sessions.begin() as session:
            if rule_id is None:
                row = AlertPolicyRule(**values, updated_at=now)
                session.add(row)
                await session.flush()
                audit.record(
                    session, actor, at=now, action="alert_policy.create", object_type="alert_policy_rule",
                    object_id=row.id, detail=values,
                )  # fmt: skip
                return row
            found = await session.get(AlertPolicyRule, rule_id)
            if found is None:
                raise NotFound("策略行不存在")
            diff = {
                key: {"before": getattr(found, key), "after": value}
                for key, value in values.items()
                if getattr(found, key) != value
            }
            for key, value in values.items():
                setattr(found, key, value)
            found.updated_at = now
            if diff:
                audit.record(
                    session, actor, at=now, action="alert_policy.update", object_type="alert_policy_rule",
                    object_id=found.id, detail=diff,
                )  # fmt: skip
            return found

    async def delete_policy_rule(self, actor: Actor, rule_id: int) -> None:
        """Remove a row (the alerts it decided keep their decision; their link to it is cleared)."""
        now = self._clock.now()
        async with self._sessions.begin() as session:
            found = await session.get(AlertPolicyRule, rule_id)
            if found is None:
                raise NotFound("策略行不存在")
            gone = PolicyRuleInput.of(found).values()
            await session.delete(found)
            audit.record(
                session, actor, at=now, action="alert_policy.delete", object_type="alert_policy_rule",
                object_id=rule_id, detail=gone,
            )  # fmt: skip

    async def policy_rows(self, session: AsyncSession | None = None) -> list[PolicyRow]:
        if session is None:
            async with self._sessions() as own:
                return await self.policy_rows(own)
        rules = (await session.scalars(select(AlertPolicyRule).order_by(AlertPolicyRule.position))).all()
        return [
            PolicyRow(
                id=rule.id,
                event=rule.event,
                severities=tuple(rule.severities or ()),
                urgencies=tuple(rule.urgencies or ()),
                certainties=tuple(rule.certainties or ()),
                action=rule.action,
                repeat_every_min=rule.repeat_every_min,
                max_plays=rule.max_plays,
                repeats_in_quiet_hours=rule.repeats_in_quiet_hours,
            )
            for rule in rules
        ]


@dataclass(frozen=True)
class PolicyRuleInput:
    """One row of the policy table as an admin writes it (checked by :meth:`check` before anything is saved)."""

    position: int
    action: str
    event: str | None = None
    severities: tuple[str, ...] = ()
    urgencies: tuple[str, ...] = ()
    certainties: tuple[str, ...] = ()
    repeat_every_min: int | None = None
    max_plays: int = 1
    repeats_in_quiet_hours: bool = False
    note: str = ""

    @classmethod
    def of(cls, rule: AlertPolicyRule) -> PolicyRuleInput:
        return cls(
            position=rule.position, action=rule.action, event=rule.event, severities=tuple(rule.severities or ()),
            urgencies=tuple(rule.urgencies or ()), certainties=tuple(rule.certainties or ()),
            repeat_every_min=rule.repeat_every_min, max_plays=rule.max_plays,
            repeats_in_quiet_hours=rule.repeats_in_quiet_hours, note=rule.note,
        )  # fmt: skip

    def check(self) -> None:
        fields: dict[str, str] = {}
        if self.action not in ALERT_ACTIONS:
            fields["action"] = "只能是自动播出、待审核或仅记录"
        for name, allowed in (
            ("severities", SEVERITY_LABELS), ("urgencies", URGENCY_LABELS), ("certainties", CERTAINTY_LABELS)
        ):  # fmt: skip
            if set(getattr(self, name)) - set(allowed):
                fields[name] = "含有 CAP 1.2 没有的取值"
        if self.event is not None and len(self.event.strip()) > 64:
            fields["event"] = "最多64个字"
        if not 1 <= self.max_plays <= 20:
            fields["max_plays"] = "1到20次"
        if self.repeat_every_min is not None and not 5 <= self.repeat_every_min <= 1440:
            fields["repeat_every_min"] = "5到1440分钟"
        if self.max_plays > 1 and self.repeat_every_min is None and self.action != "record":
            fields["repeat_every_min"] = "播出多于一次时需要重复间隔"
        if fields:
            raise InvalidInput("策略行有误：" + "；".join(fields.values()), fields=fields)

    def values(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "action": self.action,
            "event": (self.event or "").strip() or None,
            "severities": sorted(set(self.severities), key=list(SEVERITY_LABELS).index),
            "urgencies": sorted(set(self.urgencies), key=list(URGENCY_LABELS).index),
            "certainties": sorted(set(self.certainties), key=list(CERTAINTY_LABELS).index),
            "repeat_every_min": self.repeat_every_min,
            "max_plays": self.max_plays,
            "repeats_in_quiet_hours": self.repeats_in_quiet_hours,
            "note": self.note.strip()[:255],
        }


def _shown(field_name: str, value: Any) -> Any:
    """A source's field as the audit log keeps it (a certificate only as set or not: it is long)."""
    if field_name == "certificate_pem":
        return "已设置" if value else "无"
    return value


def _checked_source(name: str, kind: str, url: str | None, folder: str | None, certificate_pem: str | None) -> str:
    """A source's fields as the add and change forms check them alike; the name, trimmed."""
    name = name.strip()
    if not name or len(name) > 64:
        raise InvalidInput("来源名称不能为空，最多64个字", fields={"name": "1到64个字"})
    if kind == "pull" and not (url and url.startswith(("http://", "https://"))):
        raise InvalidInput("订阅拉取的来源需要 http 或 https 地址", fields={"url": "需要网址"})
    if kind == "folder" and not folder:
        raise InvalidInput("文件夹来源需要文件夹路径", fields={"folder": "需要路径"})
    if certificate_pem:
        try:
            load_certificate(certificate_pem)
        except ValueError:
            raise InvalidInput("证书不是有效的 PEM 格式", fields={"certificate_pem": "不是有效的证书"}) from None
    return name


def _link_hash(link: str) -> str:
    return hashlib.sha256(link.encode()).hexdigest()


def in_quiet_hours(clock: time, quiet_start: time, quiet_end: time) -> bool:
    """[quiet_start, quiet_end) in wall-clock time, wrapping past midnight (broadcasting's rule, the same)."""
    if quiet_start == quiet_end:
        return False
    if quiet_start < quiet_end:
        return quiet_start <= clock < quiet_end
    return clock >= quiet_start or clock < quiet_end


def _recorded_reason(message: CapMessage) -> str:
    if message.status == "System":
        return "系统消息（心跳），仅记录"
    if message.status == "Draft":
        return "草稿消息，不播出"
    if message.msg_type == "Cancel":
        return "撤销消息"
    return f"{message.msg_type} 消息，仅记录"


async def _places(session: AsyncSession) -> list[Place]:
    rows = await session.execute(
        select(Village.id, Village.name, Township.name, Village.code, Village.latitude, Village.longitude)
        .join(Township, Village.township_id == Township.id)
        .order_by(Village.id)
    )
    return [Place(*row) for row in rows.all()]


async def _zones(session: AsyncSession, village_ids: Sequence[int], *, test_only: bool) -> list[int]:
    if not village_ids:
        return []
    statement = select(Zone.id).where(Zone.village_id.in_(village_ids))
    if test_only:
        statement = statement.where(Zone.is_test.is_(True))
    return list((await session.scalars(statement.order_by(Zone.id))).all())


def receipt_json(receipt: Receipt) -> dict[str, Any]:
    return {
        "message_id": receipt.message_id,
        "duplicate": receipt.duplicate,
        "state": receipt.state,
        "reason": receipt.reason,
    }
