"""The desk behind the phone-broadcast line (手机喊话): who may, what they may reach, and what becomes of a recording.

It implements :class:`hotline.phonecast.PhonecastDesk` (the line's Protocol; this package imports nothing else of
the hotline). What it needs of broadcasting — make a recording an item, put it on the air — arrives as a
:class:`PhoneAirer`, satisfied in ``server.py``. The as-run tables are read, never written, here: what the
caller is told comes from what the dispatcher recorded for each speaker.

Caller id is never proof: a registered number only selects whose PIN is asked. PIN failures go through the
web login's limiter (:class:`accounts.limiter.LoginLimiter`, in the database, so every process counts the
same), under keys no sign-in name can spell: per (number, cadre), per cadre, per number.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import wave
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.limiter import LimiterPolicy, LoginLimiter
from accounts.passwords import Passwords
from common import phone_numbers
from common.clock import Clock
from common.tasks import BackgroundTasks
from hotline.phonecast import (
    Cadre,
    LiveEnd,
    LiveStart,
    LiveStatus,
    PhonecastTarget,
    PhonecastTargets,
    PinVerdict,
    SubmitResult,
    SubmitStatus,
    TargetKind,
)
from phonecast.codes import ensure_codes
from storage import audit
from storage.audit import Actor
from storage.models import (
    FINAL_RUN_STATES,
    LIVE_TRANSPORTS,
    RUN_INTERRUPTED,
    RUN_PLAYING,
    RUN_SUCCESS,
    RUN_UNPROCESSED,
    RUN_WAITING,
    Broadcast,
    BroadcastSpeaker,
    BroadcastZone,
    PhoneBroadcast,
    PhonecastCadre,
    PhonecastNumber,
    PhonecastScope,
    Speaker,
    Township,
    User,
    Village,
    Zone,
)

log = logging.getLogger(__name__)

# The limiter's keys: a control character no sign-in name or address can contain keeps them apart from web logins.
_KEY_PREFIX = "\x1d"
PIN_PATTERN = re.compile(r"[0-9]{6}")


class PhoneAirRefused(Exception):
    """The recording cannot become an item, or the item cannot go on the air; ``reason`` is one the line knows."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail


class PhoneAirer(Protocol):
    """What the desk asks of broadcasting (satisfied in ``server.py``).

    ``make_item`` raises :class:`PhoneAirRefused` with ``too_long`` (the item-length cap, or a recording past the
    recording limit), ``disk_full`` (the disk watch refuses) or ``failed`` (not audio); ``air`` queues it at the
    phone's priority class and returns the as-run broadcast id.
    """

    async def make_item(
        self, author: Actor, *, title: str, township_id: int | None, recording: Path, repeats: int
    ) -> int: ...

    async def air(
        self, *, item_id: int, zone_ids: Sequence[int], requested_by: int, quiet_exempt: bool, after_live: bool = False
    ) -> int:
        """``after_live``: a live call's recording, for the speakers that could not hear it live only."""
        ...

    async def go_live(
        self,
        *,
        zone_ids: Sequence[int],
        room: str,
        title: str,
        requested_by: int,
        quiet_exempt: bool,
        preempted: asyncio.Event,
    ) -> tuple[str, int | None]:
        """Holds the zones for a live call in the conference ``room``: (``on_air`` | ``busy`` | ``emergency`` |
        ``failed``, the as-run broadcast id). ``preempted`` is set when an emergency takes a zone back."""
        ...

    async def end_live(self, broadcast_id: int) -> None:
        """Releases a live call's zones; returns once their as-run rows are written."""
        ...


@dataclass(frozen=True)
class DeskConfig:
    recordings_dir: Path
    zone: ZoneInfo
    pin_policy: LimiterPolicy
    repeats: int = 1
    # How long submit waits for speakers to start (the caller is on the line).
    start_wait_s: float = 15.0
    # How often the follower looks for due and finished phone broadcasts.
    due_poll_s: float = 5.0
    # How often submit looks at the as-run log while it waits.
    look_interval_s: float = 0.2
    # How long go_live waits for the live speakers' legs to answer (the caller hears the chime after).
    live_start_wait_s: float = 10.0


@dataclass
class _Reach:
    """What a target reaches now: its zones, their townships, and the enabled speakers."""

    zone_ids: list[int]
    township_ids: set[int]
    speakers: int
    township_id: int | None  # the one township it lies in (None: more than one)
    live_speakers: int = 0  # of ``speakers``, those a live call reaches (SIP paging, RTP)


def in_quiet_hours(clock: time, start: time, end: time) -> bool:
    """Quiet hours may run past midnight (21:30–06:30); start == end means none (the dispatcher's rule)."""
    if start == end:
        return False
    if start < end:
        return start <= clock < end
    return clock >= start or clock < end


def limiter_keys(number: str, user_id: int) -> tuple[str, str]:
    """(address, name) for the login limiter: the calling number and the cadre."""
    return f"{_KEY_PREFIX}phone:{number}", f"{_KEY_PREFIX}phonecast:{user_id}"


class Desk:
    """The :class:`hotline.phonecast.PhonecastDesk` of this service."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        config: DeskConfig,
        passwords: Passwords,
        airer: PhoneAirer,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._config = config
        self._passwords = passwords
        self._airer = airer
        self._limiter = LoginLimiter(config.pin_policy)
        self.recordings_dir = config.recordings_dir
        # Live calls on the air in this process: call id → their as-run broadcast; and each call's preempted event.
        self._live_calls: dict[str, int] = {}
        self._preempted: dict[str, asyncio.Event] = {}

    # -- who is calling -----------------------------------------------------------------------

    async def identify(self, caller_number: str) -> Cadre | None:
        number = phone_numbers.normalise(caller_number)
        if number is None:
            return None
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(User.id, User.display_name)
                    .join(PhonecastNumber, PhonecastNumber.user_id == User.id)
                    .where(PhonecastNumber.number == number, User.active.is_(True))
                )
            ).first()
        return None if row is None else Cadre(user_id=row.id, name=row.display_name)

    async def check_pin(self, cadre: Cadre, caller_number: str, pin: str) -> PinVerdict:
        number = phone_numbers.normalise(caller_number) or "unknown"
        address, name = limiter_keys(number, cadre.user_id)
        actor = Actor(user_id=cadre.user_id, username=cadre.name, ip=None)
        masked = phone_numbers.mask(number)
        async with self._sessions.begin() as session:
            now = self._clock.now()
            if await self._limiter.wait_s(session, address, name, now) > 0:
                audit.record(
                    session, actor, at=now, action="phonecast.pin_locked", object_type="user",
                    object_id=cadre.user_id, detail={"number": masked},
                )  # fmt: skip
                return PinVerdict.LOCKED
            pin_hash = await session.scalar(
                select(PhonecastCadre.pin_hash)
                .join(User, User.id == PhonecastCadre.user_id)
                .where(PhonecastCadre.user_id == cadre.user_id, User.active.is_(True))
            )
        # argon2 in a thread (the Passwords helper): never on the loop, never inside a transaction.
        good = bool(PIN_PATTERN.fullmatch(pin)) and pin_hash is not None and await self._passwords.verify(pin_hash, pin)
        async with self._sessions.begin() as session:
            now = self._clock.now()
            if good:
                await self._limiter.succeeded(session, address, name)
                return PinVerdict.ACCEPTED
            await self._limiter.failed(session, address, name, now)
            audit.record(
                session, actor, at=now, action="phonecast.pin_wrong", object_type="user",
                object_id=cadre.user_id, detail={"number": masked},
            )  # fmt: skip
            if await self._limiter.wait_s(session, address, name, now) > 0:
                audit.record(
                    session, actor, at=now, action="phonecast.lockout", object_type="user",
                    object_id=cadre.user_id, detail={"number": masked},
                )  # fmt: skip
                return PinVerdict.LOCKED
        return PinVerdict.WRONG

    # -- what they may reach ------------------------------------------------------------------

    async def _scope(self, session: AsyncSession, user_id: int) -> tuple[set[int], set[int]] | None:
        """(village ids, township ids) of an active cadre's 可电话喊话 scope, or None without the permission."""
        granted = await session.scalar(
            select(PhonecastCadre.user_id)
            .join(User, User.id == PhonecastCadre.user_id)
            .where(PhonecastCadre.user_id == user_id, User.active.is_(True))
        )
        if granted is None:
            return None
        rows = (
            await session.execute(
                select(PhonecastScope.village_id, PhonecastScope.township_id).where(PhonecastScope.user_id == user_id)
            )
        ).all()
        return (
            {row.village_id for row in rows if row.village_id is not None},
            {row.township_id for row in rows if row.township_id is not None},
        )

    async def _speakers_in(
        self, session: AsyncSession, zone_ids: Iterable[int], *, transports: Sequence[str] | None = None
    ) -> int:
        ids = list(zone_ids)
        if not ids:
            return 0
        statement = select(func.count(Speaker.id)).where(Speaker.zone_id.in_(ids), Speaker.enabled.is_(True))
        if transports is not None:
            statement = statement.where(Speaker.transport.in_(transports))
        count = await session.scalar(statement)
        return int(count or 0)

    async def _reach(self, session: AsyncSession, kind: TargetKind, area_id: int) -> _Reach:
        """A village or township reaches its zones but the 测试分区 (the office's test loudspeakers); a zone itself."""
        statement = select(Zone.id, Village.township_id).join(Village, Village.id == Zone.village_id)
        if kind == "zone":
            statement = statement.where(Zone.id == area_id)
        elif kind == "village":
            statement = statement.where(Zone.village_id == area_id, Zone.is_test.is_(False))
        else:
            statement = statement.where(Village.township_id == area_id, Zone.is_test.is_(False))
        rows = (await session.execute(statement.order_by(Zone.id))).all()
        townships = {row.township_id for row in rows}
        if kind == "township":
            townships.add(area_id)
        elif kind == "village" and not rows:
            village = await session.get(Village, area_id)
            if village is not None:
                townships.add(village.township_id)
        zone_ids = [row.id for row in rows]
        return _Reach(
            zone_ids=zone_ids,
            township_ids=townships,
            speakers=await self._speakers_in(session, zone_ids),
            township_id=next(iter(townships)) if len(townships) == 1 else None,
            live_speakers=await self._speakers_in(session, zone_ids, transports=LIVE_TRANSPORTS),
        )

    async def _target(
        self, session: AsyncSession, kind: TargetKind, area: Township | Village | Zone
    ) -> PhonecastTarget:
        reach = await self._reach(session, kind, area.id)
        return PhonecastTarget(
            kind=kind, id=area.id, name=area.name, code=area.phonecast_code or "", speakers=reach.speakers
        )

    async def targets(self, cadre: Cadre) -> PhonecastTargets:
        await ensure_codes(self._sessions)
        async with self._sessions() as session:
            scope = await self._scope(session, cadre.user_id)
            if scope is None:
                return PhonecastTargets(villages=(), townships=())
            village_ids, township_ids = scope
            villages = (await session.scalars(select(Village).where(Village.id.in_(village_ids)))).all()
            townships = (await session.scalars(select(Township).where(Township.id.in_(township_ids)))).all()
            by_code = lambda area: (area.phonecast_code or "", area.id)  # noqa: E731
            return PhonecastTargets(
                villages=tuple([await self._target(session, "village", v) for v in sorted(villages, key=by_code)]),
                townships=tuple([await self._target(session, "township", t) for t in sorted(townships, key=by_code)]),
            )

    async def _zone_in_scope(self, session: AsyncSession, zone: Zone, scope: tuple[set[int], set[int]]) -> bool:
        village = await session.get(Village, zone.village_id)
        return village is not None and (village.id in scope[0] or village.township_id in scope[1])

    async def zone_by_code(self, cadre: Cadre, code: str) -> PhonecastTarget | None:
        if not code.isdigit():
            return None
        await ensure_codes(self._sessions)
        async with self._sessions() as session:
            scope = await self._scope(session, cadre.user_id)
            zone = await session.scalar(select(Zone).where(Zone.phonecast_code == code))
            if scope is None or zone is None or not await self._zone_in_scope(session, zone, scope):
                return None
            return await self._target(session, "zone", zone)

    async def _in_scope(self, session: AsyncSession, user_id: int, kind: TargetKind, area_id: int) -> bool:
        scope = await self._scope(session, user_id)
        if scope is None:
            return False
        if kind == "village":
            return area_id in scope[0]
        if kind == "township":
            return area_id in scope[1]
        zone = await session.get(Zone, area_id)
        return zone is not None and await self._zone_in_scope(session, zone, scope)

    # -- a recording to the loudspeakers --------------------------------------------------------

    async def submit(
        self,
        cadre: Cadre,
        caller_number: str,
        target: PhonecastTarget,
        recording: Path,
        *,
        call_id: str,
        at_local: time | None = None,
    ) -> SubmitResult:
        number = phone_numbers.normalise(caller_number) or ""
        actor = Actor(user_id=cadre.user_id, username=cadre.name, ip=None)
        row_id = await self._receive(cadre, number, target, call_id)
        if row_id is None:
            return await self._earlier_result(call_id)
        try:
            return await self._decide(row_id, cadre, actor, target, recording, at_local)
        except asyncio.CancelledError:
            await asyncio.shield(self._close_refused(row_id, actor, "failed", "the call's submit was cancelled"))
            raise
        except Exception:
            log.exception("phone broadcast %s (call %s) failed", row_id, call_id)
            return await self._close_refused(row_id, actor, "failed", "internal error")

    async def _receive(
        self, cadre: Cadre, number: str, target: PhonecastTarget, call_id: str, *, live: bool = False
    ) -> int | None:
        """The 喊话记录 row, written first: a second submit of the same call finds it (None) and plays nothing."""
        try:
            async with self._sessions.begin() as session:
                row = PhoneBroadcast(
                    call_id=call_id,
                    user_id=cadre.user_id,
                    caller_name=cadre.name,
                    caller_masked=phone_numbers.mask(number) or "",
                    target_kind=target.kind,
                    target_id=target.id,
                    target_name=target.name,
                    target_code=target.code,
                    zone_ids=[],
                    status="received",
                    speakers=0,
                    unanswered=0,
                    quiet_exempt=False,
                    created_at=self._clock.now(),
                    review_state="pending",
                    live=live,
                )
                session.add(row)
                await session.flush()
                return row.id
        except IntegrityError:
            return None

    async def _earlier_result(self, call_id: str) -> SubmitResult:
        """The first submit's result (waiting, bounded, for it to be known if it is still being decided)."""
        deadline = asyncio.get_running_loop().time() + self._config.start_wait_s * 2 + 60
        while True:
            async with self._sessions() as session:
                row = await session.scalar(select(PhoneBroadcast).where(PhoneBroadcast.call_id == call_id))
            assert row is not None
            if row.status != "received" or asyncio.get_running_loop().time() > deadline:
                return result_of(row)
            await asyncio.sleep(self._config.look_interval_s)

    async def _close_refused(self, row_id: int, actor: Actor, reason: str, detail: str = "") -> SubmitResult:
        async with self._sessions.begin() as session:
            row = await session.get(PhoneBroadcast, row_id)
            assert row is not None
            row.status, row.reason, row.ended_at = "refused", reason, self._clock.now()
            audit.record(
                session, actor, at=row.ended_at, action="phonecast.refused", object_type="phone_broadcast",
                object_id=row.id, detail={"reason": reason, "detail": detail, "target": row.target_name},
            )  # fmt: skip
            return result_of(row)

    async def _decide(
        self,
        row_id: int,
        cadre: Cadre,
        actor: Actor,
        target: PhonecastTarget,
        recording: Path,
        at_local: time | None,
    ) -> SubmitResult:
        now = self._clock.now()
        async with self._sessions() as session:
            if not await self._in_scope(session, cadre.user_id, target.kind, target.id):
                refusal: tuple[str, str] | None = ("not_in_scope", f"{target.kind} {target.id}")
            else:
                refusal = None
            reach = await self._reach(session, target.kind, target.id)
            may_emergency = bool(await session.scalar(select(User.can_emergency).where(User.id == cadre.user_id)))
            townships = (await session.scalars(select(Township).where(Township.id.in_(reach.township_ids)))).all()
        if refusal is not None:
            return await self._close_refused(row_id, actor, *refusal)
        if not reach.zone_ids or reach.speakers == 0:
            return await self._close_refused(row_id, actor, "no_speakers")
        play_at = self._play_at(at_local, now) if at_local is not None else None
        local = (play_at or now).astimezone(self._config.zone).time()
        quiet = [t.name for t in townships if in_quiet_hours(local, t.quiet_start, t.quiet_end)]
        if quiet and not may_emergency:
            return await self._close_refused(row_id, actor, "quiet_hours", f"{local:%H:%M} {'、'.join(quiet)}")
        kept = await self._keep(row_id, recording)
        async with self._sessions() as session:
            masked = await session.scalar(select(PhoneBroadcast.caller_masked).where(PhoneBroadcast.id == row_id))
        # The as-run log and the terminals show the item's title: who spoke, from which number (masked), to what.
        title = f"手机喊话：{cadre.name} {masked}（{target.name}）"
        try:
            item_id = await self._airer.make_item(
                actor, title=title, township_id=reach.township_id, recording=kept, repeats=self._config.repeats
            )
        except PhoneAirRefused as exc:
            return await self._close_refused(row_id, actor, exc.reason, exc.detail)
        async with self._sessions.begin() as session:
            row = await session.get(PhoneBroadcast, row_id)
            assert row is not None
            row.recording_file = kept.name
            row.notice_id = item_id
            row.zone_ids = reach.zone_ids
            row.township_id = reach.township_id
            row.speakers = reach.speakers
            row.quiet_exempt = bool(quiet)
            if play_at is not None:
                row.status, row.play_at = "scheduled", play_at
                audit.record(
                    session, actor, at=now, action="phonecast.scheduled", object_type="phone_broadcast",
                    object_id=row.id, detail={"target": row.target_name, "at": play_at.isoformat()},
                )  # fmt: skip
                return result_of(row)
        broadcast_id = await self._airer.air(
            item_id=item_id, zone_ids=reach.zone_ids, requested_by=cadre.user_id, quiet_exempt=bool(quiet)
        )
        async with self._sessions.begin() as session:
            await session.execute(
                update(PhoneBroadcast).where(PhoneBroadcast.id == row_id).values(broadcast_id=broadcast_id)
            )
        return await self._follow_start(row_id, broadcast_id, actor)

    def _play_at(self, at_local: time, now: datetime) -> datetime:
        """``at_local`` county time today, or tomorrow if it has passed (UTC)."""
        zone = self._config.zone
        today = now.astimezone(zone)
        candidate = datetime.combine(today.date(), at_local.replace(tzinfo=None), tzinfo=zone)
        if candidate <= today:
            candidate = datetime.combine(today.date() + timedelta(days=1), at_local.replace(tzinfo=None), tzinfo=zone)
        return candidate.astimezone(UTC)

    async def _keep(self, row_id: int, recording: Path) -> Path:
        """A copy of the line's recording, kept with the record (the line's file may go)."""
        suffix = recording.suffix.lower() or ".wav"
        kept = self.recordings_dir / f"phone-{row_id}{suffix}"

        def copy() -> None:
            self.recordings_dir.mkdir(parents=True, exist_ok=True)
            partial = kept.with_name(kept.name + ".part")
            shutil.copyfile(recording, partial)
            partial.replace(kept)

        await asyncio.to_thread(copy)
        return kept

    async def _follow_start(self, row_id: int, broadcast_id: int, actor: Actor) -> SubmitResult:
        """Waits (bounded) for what the dispatcher records: speakers started, queued behind another, or not played."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.start_wait_s
        while True:
            progress = await self._progress(broadcast_id)
            timed_out = loop.time() >= deadline
            if progress.settled or timed_out:
                break
            await asyncio.sleep(self._config.look_interval_s)
        async with self._sessions.begin() as session:
            row = await session.get(PhoneBroadcast, row_id)
            assert row is not None
            now = self._clock.now()
            if progress.playing_zones or progress.started:
                row.status = "started"
                row.speakers, row.unanswered = progress.started, progress.targeted - progress.started
                row.started_at = progress.started_at or now
                action = "phonecast.started"
            elif progress.all_final:
                row.status, row.ended_at = "refused", now
                row.reason = "quiet_hours" if progress.quiet else "failed"
                action = "phonecast.refused"
            else:
                row.status = "queued"
                action = "phonecast.queued"
            audit.record(
                session, actor, at=now, action=action, object_type="phone_broadcast", object_id=row.id,
                detail={"target": row.target_name, "broadcast_id": broadcast_id, "speakers": row.speakers,
                        "unanswered": row.unanswered, "reason": row.reason},
            )  # fmt: skip
            return result_of(row)

    async def _progress(self, broadcast_id: int) -> _Progress:
        async with self._sessions() as session:
            broadcast = await session.get(Broadcast, broadcast_id)
            assert broadcast is not None
            zones = (
                await session.scalars(select(BroadcastZone).where(BroadcastZone.broadcast_id == broadcast_id))
            ).all()
            progress = _Progress()
            if broadcast.state == RUN_UNPROCESSED or not zones:
                return progress
            latest: dict[int, BroadcastZone] = {}
            for zone_row in zones:
                if zone_row.zone_id not in latest or zone_row.attempt > latest[zone_row.zone_id].attempt:
                    latest[zone_row.zone_id] = zone_row
            waiting_behind = 0
            for zone_row in latest.values():
                if zone_row.state == RUN_PLAYING or zone_row.state in FINAL_RUN_STATES:
                    speakers = (
                        await session.scalars(
                            select(BroadcastSpeaker).where(BroadcastSpeaker.zone_run_id == zone_row.id)
                        )
                    ).all()
                    # Started is what the speakers said: a SIP speaker once it answered, a 4G terminal once it
                    # reported; one still ringing or not yet asking is not started (and not yet unanswered).
                    heard = sum(1 for s in speakers if s.state in HEARD_STATES)
                    if zone_row.state == RUN_PLAYING or heard:
                        # A short item may be over before the desk looks: what was heard still started.
                        progress.targeted += len(speakers)
                        progress.started += heard
                        progress.pending += sum(1 for s in speakers if s.state == RUN_WAITING)
                        if zone_row.started_at is not None:
                            progress.started_at = min(filter(None, [progress.started_at, zone_row.started_at]))
                if zone_row.state == RUN_PLAYING:
                    progress.playing_zones += 1
                elif zone_row.state in FINAL_RUN_STATES:
                    progress.final_zones += 1
                    progress.quiet = progress.quiet or "静默" in (zone_row.error or "")
                elif zone_row.state == RUN_WAITING:
                    other = await session.scalar(
                        select(func.count(BroadcastZone.id)).where(
                            BroadcastZone.zone_id == zone_row.zone_id,
                            BroadcastZone.state == RUN_PLAYING,
                            BroadcastZone.broadcast_id != broadcast_id,
                        )
                    )
                    waiting_behind += 1 if other else 0
            progress.all_final = progress.final_zones == len(latest)
            waiting = len(latest) - progress.playing_zones - progress.final_zones
            # Settled: every zone is playing with no speaker still to answer, or done, or waiting behind another.
            progress.settled = progress.all_final or (
                waiting == waiting_behind and (progress.playing_zones == 0 or progress.pending == 0)
            )
            return progress

    # -- 实时喊话: the caller's voice on the loudspeakers as they speak ----------------------------

    def live_preempted(self, call_id: str) -> asyncio.Event:
        event = self._preempted.get(call_id)
        if event is None:
            event = self._preempted[call_id] = asyncio.Event()
        return event

    def _live_keys(self) -> set[str]:
        return {live_key(call_id) for call_id in self._live_calls}

    async def go_live(
        self, cadre: Cadre, caller_number: str, target: PhonecastTarget, *, call_id: str, room: str
    ) -> LiveStart:
        number = phone_numbers.normalise(caller_number) or ""
        actor = Actor(user_id=cadre.user_id, username=cadre.name, ip=None)
        row_id = await self._receive(cadre, number, target, live_key(call_id), live=True)
        if row_id is None:
            return await self._earlier_live(call_id)
        try:
            return await self._decide_live(row_id, cadre, actor, target, call_id, room)
        except asyncio.CancelledError:
            await asyncio.shield(self._abandon_live(row_id, actor, call_id, "the call's go_live was cancelled"))
            raise
        except Exception:
            log.exception("live phone broadcast %s (call %s) failed", row_id, call_id)
            return await self._abandon_live(row_id, actor, call_id, "internal error")

    async def _abandon_live(self, row_id: int, actor: Actor, call_id: str, detail: str) -> LiveStart:
        await self._abandon_live_hold(call_id)
        return await self._refuse_live(row_id, actor, "failed", detail)

    async def _refuse_live(self, row_id: int, actor: Actor, reason: str, detail: str = "") -> LiveStart:
        await self._close_refused(row_id, actor, reason, detail)
        async with self._sessions() as session:
            row = await session.get(PhoneBroadcast, row_id)
        assert row is not None
        return live_result_of(row)

    async def _earlier_live(self, call_id: str) -> LiveStart:
        """The first go_live's result (waiting, bounded, while it is still being decided)."""
        deadline = asyncio.get_running_loop().time() + self._config.live_start_wait_s * 2 + 60
        while True:
            async with self._sessions() as session:
                row = await session.scalar(select(PhoneBroadcast).where(PhoneBroadcast.call_id == live_key(call_id)))
            assert row is not None
            if row.status != "received" or asyncio.get_running_loop().time() > deadline:
                return live_result_of(row)
            await asyncio.sleep(self._config.look_interval_s)

    async def _decide_live(
        self, row_id: int, cadre: Cadre, actor: Actor, target: PhonecastTarget, call_id: str, room: str
    ) -> LiveStart:
        """The recorded one's checks (scope, speakers, quiet hours; the hard limit is the line's), then the hold."""
        now = self._clock.now()
        async with self._sessions() as session:
            in_scope = await self._in_scope(session, cadre.user_id, target.kind, target.id)
            reach = await self._reach(session, target.kind, target.id)
            may_emergency = bool(await session.scalar(select(User.can_emergency).where(User.id == cadre.user_id)))
            townships = (await session.scalars(select(Township).where(Township.id.in_(reach.township_ids)))).all()
            masked = await session.scalar(select(PhoneBroadcast.caller_masked).where(PhoneBroadcast.id == row_id))
        if not in_scope:
            return await self._refuse_live(row_id, actor, "not_in_scope", f"{target.kind} {target.id}")
        # Only 4G terminals (or sound cards): nothing can hear the caller live; the caller may record instead.
        if not reach.zone_ids or reach.live_speakers == 0:
            return await self._refuse_live(row_id, actor, "no_speakers")
        local = now.astimezone(self._config.zone).time()
        quiet = [t.name for t in townships if in_quiet_hours(local, t.quiet_start, t.quiet_end)]
        if quiet and not may_emergency:
            return await self._refuse_live(row_id, actor, "quiet_hours", f"{local:%H:%M} {'、'.join(quiet)}")
        async with self._sessions.begin() as session:
            row = await session.get(PhoneBroadcast, row_id)
            assert row is not None
            row.zone_ids = reach.zone_ids
            row.township_id = reach.township_id
            row.speakers = reach.live_speakers
            row.after_speakers = reach.speakers - reach.live_speakers
            row.quiet_exempt = bool(quiet)
        preempted = self.live_preempted(call_id)
        verdict, broadcast_id = await self._airer.go_live(
            zone_ids=reach.zone_ids,
            room=room,
            title=f"手机喊话（实时）：{cadre.name} {masked}（{target.name}）",
            requested_by=cadre.user_id,
            quiet_exempt=bool(quiet),
            preempted=preempted,
        )
        if verdict != "on_air" or broadcast_id is None:
            reason = verdict if verdict in ("busy", "emergency") else "failed"
            return await self._refuse_live(row_id, actor, reason, f"dispatcher: {verdict}")
        self._live_calls[call_id] = broadcast_id
        async with self._sessions.begin() as session:
            await session.execute(
                update(PhoneBroadcast).where(PhoneBroadcast.id == row_id).values(broadcast_id=broadcast_id)
            )
        started, started_at = await self._follow_live(broadcast_id, preempted)
        if preempted.is_set():
            await self._abandon_live_hold(call_id)
            return await self._refuse_live(row_id, actor, "emergency", "an emergency took a zone before the start")
        if started == 0:
            await self._abandon_live_hold(call_id)
            return await self._refuse_live(row_id, actor, "failed", "no live speaker answered")
        async with self._sessions.begin() as session:
            row = await session.get(PhoneBroadcast, row_id)
            assert row is not None
            hung_up = row.ended_by is not None
            if not hung_up:
                row.status, row.started_at = "started", started_at or self._clock.now()
                row.unanswered = max(0, row.speakers - started)
                row.speakers = started
            audit.record(
                session, actor, at=self._clock.now(), action="phonecast.live_started", object_type="phone_broadcast",
                object_id=row.id, detail={"target": row.target_name, "broadcast_id": broadcast_id,
                                          "speakers": row.speakers, "unanswered": row.unanswered,
                                          "after": row.after_speakers, "hung_up": hung_up},
            )  # fmt: skip
            result = live_result_of(row)
        if hung_up:
            # The caller left while the speakers were being reached; live_ended may have come before the hold was
            # known here: the hold must not outlive the call.
            await self._abandon_live_hold(call_id)
        return result

    async def _abandon_live_hold(self, call_id: str) -> None:
        broadcast_id = self._live_calls.pop(call_id, None)
        if broadcast_id is not None:
            await self._airer.end_live(broadcast_id)

    async def _follow_live(self, broadcast_id: int, preempted: asyncio.Event) -> tuple[int, datetime | None]:
        """Waits (bounded) until every live speaker's leg answered or failed: (speakers hearing the caller, since)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.live_start_wait_s
        while True:
            async with self._sessions() as session:
                zones = (
                    await session.scalars(select(BroadcastZone).where(BroadcastZone.broadcast_id == broadcast_id))
                ).all()
                speakers = (
                    await session.scalars(
                        select(BroadcastSpeaker).where(BroadcastSpeaker.zone_run_id.in_([z.id for z in zones]))
                    )
                ).all()
            heard = [s for s in speakers if s.state in HEARD_STATES]
            # Settled: every zone holds the call (or is done) and no speaker is still being reached.
            settled = all(z.state == RUN_PLAYING or z.state in FINAL_RUN_STATES for z in zones) and not any(
                s.state == RUN_WAITING for s in speakers
            )
            if settled or preempted.is_set() or loop.time() >= deadline:
                since = min((s.started_at for s in heard if s.started_at is not None), default=None)
                return len(heard), since
            await asyncio.sleep(self._config.look_interval_s)

    async def live_ended(self, call_id: str, ended_by: LiveEnd, recording: Path | None) -> None:
        key = live_key(call_id)
        async with self._sessions.begin() as session:
            claimed = await session.execute(
                update(PhoneBroadcast)
                .where(PhoneBroadcast.call_id == key, PhoneBroadcast.ended_by.is_(None))
                .values(ended_by=ended_by.value)
            )
            row = await session.scalar(select(PhoneBroadcast).where(PhoneBroadcast.call_id == key))
        self._preempted.pop(call_id, None)
        if getattr(claimed, "rowcount", 0) != 1 or row is None:
            return  # ended before (or never began): nothing twice
        try:
            await self._close_live(call_id, row, ended_by, recording)
        finally:
            # Until its row says how it ended, the call counts as on the air here: the follower's close_finished
            # would otherwise close it from the cut broadcast's state (未播出) over what live_ended found (a full
            # run under load caught a live call an emergency cut recorded as not played).
            self._live_calls.pop(call_id, None)

    async def _close_live(self, call_id: str, row: PhoneBroadcast, ended_by: LiveEnd, recording: Path | None) -> None:
        broadcast_id = self._live_calls.get(call_id)
        if broadcast_id is not None:
            await self._airer.end_live(broadcast_id)
        actor = Actor(user_id=row.user_id, username=row.caller_name, ip=None)
        kept: Path | None = None
        if recording is not None and row.status != "refused":
            try:
                kept = await self._keep(row.id, recording)
            except OSError:
                log.exception("live phone broadcast %s: its recording %s could not be kept", row.id, recording)
        heard = await self._heard_live(row.broadcast_id)
        now = self._clock.now()
        async with self._sessions.begin() as session:
            fresh = await session.get(PhoneBroadcast, row.id)
            assert fresh is not None
            if fresh.status != "refused":
                fresh.status = "played" if heard else "not_played"
                fresh.ended_at = now
            if kept is not None:
                fresh.recording_file = kept.name
                fresh.recording_s = await asyncio.to_thread(wav_seconds, kept)
            audit.record(
                session, actor, at=now, action="phonecast.live_ended", object_type="phone_broadcast",
                object_id=fresh.id, detail={"target": fresh.target_name, "ended_by": ended_by.value,
                                            "broadcast_id": fresh.broadcast_id, "recording": fresh.recording_file},
            )  # fmt: skip
            after, township_id = fresh.after_speakers, fresh.township_id
            # Only the zones with a speaker that could not hear it live: the others heard it already.
            zone_ids = list(
                (
                    await session.scalars(
                        select(Speaker.zone_id)
                        .where(
                            Speaker.zone_id.in_(fresh.zone_ids),
                            Speaker.enabled.is_(True),
                            Speaker.transport.not_in(LIVE_TRANSPORTS),
                        )
                        .distinct()
                        .order_by(Speaker.zone_id)
                    )
                ).all()
            )
            exempt, masked, target_name = fresh.quiet_exempt, fresh.caller_masked, fresh.target_name
        if kept is not None and after > 0 and zone_ids and row.status != "refused":
            await self._air_after(row.id, actor, kept, zone_ids, township_id, exempt, masked, target_name)

    async def _air_after(
        self,
        row_id: int,
        actor: Actor,
        kept: Path,
        zone_ids: list[int],
        township_id: int | None,
        exempt: bool,
        masked: str,
        target_name: str,
    ) -> None:
        """The call's recording, at 手机喊话's priority, for the speakers that could not hear it live."""
        title = f"手机喊话（实时喊话录音）：{actor.username} {masked}（{target_name}）"
        try:
            item_id = await self._airer.make_item(
                actor, title=title, township_id=township_id, recording=kept, repeats=self._config.repeats
            )
        except PhoneAirRefused as exc:
            async with self._sessions.begin() as session:
                audit.record(
                    session, actor, at=self._clock.now(), action="phonecast.after_refused",
                    object_type="phone_broadcast", object_id=row_id,
                    detail={"reason": exc.reason, "detail": exc.detail},
                )  # fmt: skip
            return
        broadcast_id = await self._airer.air(
            item_id=item_id, zone_ids=zone_ids, requested_by=actor.user_id or 0, quiet_exempt=exempt, after_live=True
        )
        async with self._sessions.begin() as session:
            await session.execute(
                update(PhoneBroadcast)
                .where(PhoneBroadcast.id == row_id)
                .values(notice_id=item_id, after_broadcast_id=broadcast_id)
            )

    async def _heard_live(self, broadcast_id: int | None) -> int:
        if broadcast_id is None:
            return 0
        async with self._sessions() as session:
            count = await session.scalar(
                select(func.count(BroadcastSpeaker.id))
                .join(BroadcastZone, BroadcastZone.id == BroadcastSpeaker.zone_run_id)
                .where(BroadcastZone.broadcast_id == broadcast_id, BroadcastSpeaker.state.in_(HEARD_STATES))
            )
        return int(count or 0)

    # -- the follower: scheduled ones when due, and the end of every phone broadcast ------------------

    async def air_due(self) -> int:
        """Puts scheduled phone broadcasts that are due on the air (each claimed once, whoever looks); how many."""
        now = self._clock.now()
        async with self._sessions() as session:
            due = (
                await session.scalars(
                    select(PhoneBroadcast.id).where(PhoneBroadcast.status == "scheduled", PhoneBroadcast.play_at <= now)
                )
            ).all()
        aired = 0
        for row_id in due:
            async with self._sessions.begin() as session:
                claimed = await session.execute(
                    update(PhoneBroadcast)
                    .where(PhoneBroadcast.id == row_id, PhoneBroadcast.status == "scheduled")
                    .values(status="queued")
                )
                if getattr(claimed, "rowcount", 0) != 1:
                    continue
                row = await session.get(PhoneBroadcast, row_id)
                assert row is not None and row.notice_id is not None
                item_id, zone_ids, user_id, exempt = row.notice_id, list(row.zone_ids), row.user_id, row.quiet_exempt
            broadcast_id = await self._airer.air(
                item_id=item_id, zone_ids=zone_ids, requested_by=user_id, quiet_exempt=exempt
            )
            async with self._sessions.begin() as session:
                await session.execute(
                    update(PhoneBroadcast).where(PhoneBroadcast.id == row_id).values(broadcast_id=broadcast_id)
                )
            aired += 1
        return aired

    async def close_finished(self) -> int:
        """Phone broadcasts whose as-run broadcast has ended: played or not, with the end audited; how many."""
        # A live call on the air here is closed by its own end (live_ended), even when an emergency took every
        # zone a moment before; one whose process died is closed here, its end unknown (线路故障). Taken before
        # the rows are read: a call live_ended finished after this is no longer "started" in what is read.
        on_air_here = self._live_keys()
        async with self._sessions.begin() as session:
            rows = (
                await session.execute(
                    select(PhoneBroadcast, Broadcast)
                    .join(Broadcast, Broadcast.id == PhoneBroadcast.broadcast_id)
                    .where(PhoneBroadcast.status.in_(("started", "queued")), Broadcast.state.in_(FINAL_RUN_STATES))
                )
            ).all()
            closing = [(row, broadcast) for row, broadcast in rows if row.call_id not in on_air_here]
            for row, broadcast in closing:
                if row.live and row.ended_by is None:
                    row.ended_by = LiveEnd.FAILED.value
                row.status = "played" if broadcast.state == RUN_SUCCESS else "not_played"
                row.ended_at = broadcast.ended_at or self._clock.now()
                if row.started_at is None:
                    row.started_at = broadcast.started_at
                audit.record(
                    session, Actor(user_id=row.user_id, username=row.caller_name, ip=None), at=row.ended_at,
                    action="phonecast.ended", object_type="phone_broadcast", object_id=row.id,
                    detail={"target": row.target_name, "broadcast_id": broadcast.id, "state": broadcast.state},
                )  # fmt: skip
            return len(closing)


# A speaker that played some of the item: playing, played whole, or cut after it began.
HEARD_STATES = frozenset({RUN_PLAYING, RUN_SUCCESS, RUN_INTERRUPTED})


@dataclass
class _Progress:
    playing_zones: int = 0
    final_zones: int = 0
    targeted: int = 0
    started: int = 0
    pending: int = 0  # speakers of playing zones still to answer or report
    started_at: datetime | None = None
    all_final: bool = False
    quiet: bool = False
    settled: bool = False


def live_key(call_id: str) -> str:
    """A live call's 喊话记录 key: apart from the call's own, so a caller told 该区域正在喊话 may still record."""
    return f"live:{call_id}"


def wav_seconds(path: Path) -> float | None:
    """A WAV recording's length (None for another format or a broken file)."""
    try:
        with wave.open(str(path), "rb") as reader:
            rate = reader.getframerate()
            return round(reader.getnframes() / rate, 1) if rate else None
    except (wave.Error, EOFError, OSError):
        return None


def live_result_of(row: PhoneBroadcast) -> LiveStart:
    """What the line is told of a live 喊话记录 row (the same for the first go_live and any repeat of it)."""
    if row.status in ("refused", "received"):
        status = {"busy": LiveStatus.BUSY, "emergency": LiveStatus.EMERGENCY}.get(row.reason or "", LiveStatus.REFUSED)
        reason = None if status is not LiveStatus.REFUSED else (row.reason or "failed")
        return LiveStart(status, row.id, speakers=row.speakers, after=row.after_speakers, unanswered=0, reason=reason)
    return LiveStart(
        LiveStatus.ON_AIR, row.id, speakers=row.speakers, after=row.after_speakers, unanswered=row.unanswered
    )


def result_of(row: PhoneBroadcast) -> SubmitResult:
    """What the line is told of a 喊话记录 row (the same for the first submit and any repeat of it)."""
    if row.status == "refused" or row.status == "received":
        return SubmitResult(
            SubmitStatus.REFUSED, row.id, speakers=row.speakers, unanswered=0, reason=row.reason or "failed"
        )
    if row.status == "scheduled":
        return SubmitResult(SubmitStatus.SCHEDULED, row.id, speakers=row.speakers, unanswered=0, at=row.play_at)
    if row.status == "queued":
        return SubmitResult(SubmitStatus.QUEUED, row.id, speakers=row.speakers, unanswered=0)
    return SubmitResult(SubmitStatus.STARTED, row.id, speakers=row.speakers, unanswered=row.unanswered)


class PhonecastFollower:
    """On the elected worker: airs scheduled phone broadcasts when due, and closes those that ended."""

    name = "phonecast-follower"

    def __init__(self, desk: Desk, *, tick_s: float) -> None:
        self._desk = desk
        self._tick_s = tick_s
        self._tasks: BackgroundTasks | None = None
        self._stopping = asyncio.Event()
        self.rounds = 0

    async def start(self) -> None:
        if self._tasks is not None:
            return
        self._stopping.clear()
        self._tasks = BackgroundTasks(self.name)
        self._tasks.spawn(self._loop(), "follow")

    async def stop(self) -> None:
        if self._tasks is None:
            return
        self._stopping.set()
        tasks, self._tasks = self._tasks, None
        await tasks.close()

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._desk.air_due()
                await self._desk.close_finished()
            except Exception:
                log.exception("following phone broadcasts failed; will retry")
            self.rounds += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._tick_s):
                    await self._stopping.wait()
