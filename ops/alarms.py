"""Alarms by phone: when something is wrong for long enough, the service phones the people on duty itself.

A county office has nobody watching a dashboard at night. The elected worker (this is one of its services)
looks every ``ops.alarm_interval_s`` for trouble:

* an emergency broadcast that failed on some speakers (``emergency_failed``, one alarm per broadcast);
* the disk below its warning level (``disk``), the AMI link down (``ami_down``), an official-warning source
  silent longer than its setting (``alert_source_silent``) — each only once it has lasted
  ``ops.alarm_after_s`` (a blip is not worth waking somebody), and *cleared* by itself if it goes away
  before anybody acknowledged it.

One trouble is one alarm (``ops_alarms.open_key`` is UNIQUE while it is open), and after an alarm another of
the same kind about the same thing is not raised within ``ops.alarm_quiet_s``: a state that flaps does not
become a storm of calls. An open alarm calls the duty officers on duty at this time of day, in the list's
order, one at a time: the phone says what is wrong (our TTS, in Chinese) and asks to press 1. Somebody pressing
1 acknowledges the alarm and the calls stop; an officer who does not answer, or answers without pressing 1,
passes it to the next one; after the whole list a new round starts ``ops.alarm_round_interval_s`` later, at
most ``ops.alarm_rounds`` rounds (then the alarm is 无人确认, still shown on the page and in 待办).

Every call is claimed (a row, committed) before its one Originate and never sent twice (decision 0009): a call
lost to an AMI outage, or cut by the worker stopping, ends 结果不明 and the next officer is called instead. The
alarm, each call's outcome and each acknowledgement are written to the audit log.

Calls go out through an :class:`AlarmLine`, the protocol defined here for what this needs (the hotline's
``OutboundCalls`` satisfies it; ``server.py`` hands it in); with ``asterisk = none`` there is no line: alarms are
still raised, shown and audited, and nobody is phoned.

When that line is what is down, the calls still ring, through a :class:`SpoolLine` (Asterisk call files:
``hotline.call_files.CallFiles``), which needs neither AMI nor the worker:

* the worker's AMI link down for ``ops.alarm_after_s``: the worker places its calls as call files;
* the worker itself silent (no heartbeat for ``ops.worker_down_after_s``): :class:`WorkerWatch`, in every
  process, raises ``worker_down`` (once: ``open_key``) and the processes that are up call by call file.

A call file's outcome is read back from files (:meth:`AlarmService.settle_spool_calls`) by whichever process
looks, and ended once (a conditional UPDATE): nothing about such a call lives in one process's memory.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import PurePosixPath
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.clock import Clock
from common.health import ComponentHealth, HealthRegistry
from common.periodic import every
from common.tasks import BackgroundTasks
from ops.disk import DiskWatch
from storage import audit
from storage.models import (
    ALARM_KIND_LABELS,
    RUN_FAILED,
    AlarmCall,
    Broadcast,
    BroadcastSpeaker,
    BroadcastZone,
    DutyOfficer,
    OpsAlarm,
    WorkerHeartbeat,
)

log = logging.getLogger(__name__)

SYSTEM = audit.Actor(None, "system:alarms")
# Troubles that last (and clear by themselves); the others are events, open until acknowledged.
LASTING_KINDS = frozenset({"disk", "ami_down", "alert_source_silent"})
IN_FLIGHT_CALLS = ("placing", "ringing")
Route = Literal["ami", "spool"]
# What Asterisk may take beyond the ring time to say a spool call was not answered (or to start it at all).
SPOOL_GRACE_S = 30.0
# How long a claimed alarm waits for its claimer to write the call row before another round may call.
CLAIM_LAPSE_S = 120.0
SPOOL_STATES = {"acknowledged": "acknowledged", "heard": "heard", "not_answered": "no_answer", "failed": "failed"}
WORKER_DOWN = "worker_down"
THANKS = "已确认收到，谢谢。"


# -- what ops needs from the phone system (satisfied by hotline.placing.OutboundCalls) ---------------------


class PlacedAlarmCall(Protocol):
    @property
    def placement(self) -> Literal["sent", "not_sent", "unknown"]: ...

    @property
    def detail(self) -> str: ...

    async def first_answer(self, timeout_s: float) -> Literal["answered", "busy", "no_answer", "failed", "unknown"]: ...

    async def wait_end(self, timeout_s: float) -> bool: ...

    def dialplan_events(self, name: str) -> Sequence[Mapping[str, str]]: ...

    def close(self) -> None: ...


class SpoolOutcome(Protocol):
    @property
    def state(self) -> Literal["pending", "answered", "acknowledged", "heard", "not_answered", "failed"]: ...

    @property
    def detail(self) -> str: ...


class SpoolLine(Protocol):
    """Calls placed without AMI (Asterisk call files: hotline.call_files.CallFiles), their outcome read back from
    files by whichever process looks: nothing about such a call lives in one process's memory."""

    async def place(
        self, *, dial: str, call_id: str, context: str, ring_s: float, variables: Mapping[str, str]
    ) -> None: ...

    async def outcome(self, call_id: str) -> SpoolOutcome: ...

    async def withdraw(self, call_id: str) -> bool: ...

    async def leftovers(self) -> list[str]: ...

    async def forget(self, call_id: str) -> None: ...


class AlarmLine(Protocol):
    @property
    def connected(self) -> bool: ...

    async def place(
        self, *, dial: str, call_id: str, context: str, ring_s: float, variables: Mapping[str, str]
    ) -> PlacedAlarmCall: ...


Speaker = Callable[[str], Awaitable[PurePosixPath]]


# -- what is wrong ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trouble:
    kind: str
    subject: str
    # What the phone says and the page shows (Chinese, no English: an officer hears it half asleep).
    message: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.subject}"


TroubleCheck = Callable[[], Awaitable[list[Trouble]]]


def emergency_failures(sessions: async_sessionmaker[AsyncSession], clock: Clock, lookback_s: float) -> TroubleCheck:
    """Emergency broadcasts of the last ``lookback_s`` with speakers that failed (one trouble per broadcast)."""

    async def check() -> list[Trouble]:
        since = clock.now() - timedelta(seconds=lookback_s)
        statement = (
            select(Broadcast.id, Broadcast.title, func.count(BroadcastSpeaker.id))
            .join(BroadcastZone, BroadcastZone.broadcast_id == Broadcast.id)
            .join(BroadcastSpeaker, BroadcastSpeaker.zone_run_id == BroadcastZone.id)
            .where(
                Broadcast.origin == "emergency",
                Broadcast.created_at >= since,
                BroadcastSpeaker.state == RUN_FAILED,
            )
            .group_by(Broadcast.id, Broadcast.title)
        )
        async with sessions() as session:
            rows = (await session.execute(statement)).all()
        return [
            Trouble(
                "emergency_failed",
                str(broadcast_id),
                f"紧急广播“{title}”有{failed}个喇叭没有播出，请尽快检查。",
            )
            for broadcast_id, title, failed in rows
        ]

    return check


def disk_trouble(disk: DiskWatch) -> TroubleCheck:
    async def check() -> list[Trouble]:
        worst = disk.worst
        if worst is None or worst.level == "ok":
            return []
        refused = "，已暂停上传录音和审核通知" if worst.level == "refuse" else ""
        return [Trouble("disk", "disk", f"服务器磁盘空间快满了{refused}，请尽快清理或扩容。")]

    return check


def health_troubles(health: HealthRegistry) -> TroubleCheck:
    """The phone link (AMI) down, an official-warning source silent: read from the components' health."""

    async def check() -> list[Trouble]:
        report = await health.report()
        found = []
        if report.get("ami", {}).get("status") in ("down", "degraded"):
            found.append(Trouble("ami_down", "ami", "村响与电话系统的连接断开了，热线可能无法接听，请尽快检查。"))
        if report.get("alerts", {}).get("status") == "down":
            found.append(Trouble("alert_source_silent", "alerts", "预警信息源长时间没有消息，请检查预警信息的接收。"))
        return found

    return check


async def _clear(session: AsyncSession, alarm: OpsAlarm, now: datetime) -> None:
    """The trouble went away: the alarm is cleared and audited, once, whichever process gets there first."""
    cleared = await session.execute(
        update(OpsAlarm)
        .where(OpsAlarm.id == alarm.id, OpsAlarm.state == "open")
        .values(state="cleared", open_key=None, closed_at=now, next_call_at=None)
    )
    if getattr(cleared, "rowcount", 0) == 1:
        audit.record(
            session,
            SYSTEM,
            at=now,
            action="ops.alarm.cleared",
            object_type="alarm",
            object_id=alarm.id,
            detail={"kind": alarm.kind, "subject": alarm.subject},
        )


def on_duty(officer: DutyOfficer, at: time) -> bool:
    start, end = officer.on_from, officer.on_until
    if start == end:
        return True
    if start < end:
        return start <= at < end
    return at >= start or at < end  # a night shift across midnight


@dataclass(frozen=True)
class AlarmConfig:
    interval_s: float = 15.0
    after_s: float = 300.0
    quiet_s: float = 3600.0
    ring_s: float = 40.0
    round_interval_s: float = 300.0
    rounds: int = 3
    dial_template: str = "PJSIP/{number}@trunk"
    # How long an answered alarm call may last (it plays the alarm three times at most).
    call_limit_s: float = 300.0


def dial_for(template: str, phone: str) -> str:
    return phone if "/" in phone else template.replace("{number}", phone)


class AlarmService:
    """The duty list, the alarms, and (on the elected worker) the rounds that raise them and phone people."""

    name = "alarms"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        config: AlarmConfig,
        *,
        timezone: ZoneInfo,
        checks: Sequence[TroubleCheck],
        line: AlarmLine | None,
        speak: Speaker | None,
        spool: SpoolLine | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self.config = config
        self._timezone = timezone
        self._checks = list(checks)
        self._line = line
        self._speak = speak
        self._spool = spool
        # Since when the worker's AMI link has been seen down (the calls go by call file once it lasts).
        self._link_down_since: datetime | None = None
        self._first_seen: dict[str, datetime] = {}
        self._tasks: BackgroundTasks | None = None
        self.health = ComponentHealth("alarms", status="standby", detail="only the active worker raises alarms")

    @property
    def can_call(self) -> bool:
        return self._line is not None or self._spool is not None

    @property
    def can_call_without_worker(self) -> bool:
        return self._spool is not None

    def add_check(self, check: TroubleCheck) -> None:
        self._checks.append(check)

    # -- the worker service ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks is not None:
            return
        await self._orphans()
        self._first_seen.clear()
        self._link_down_since = None
        self._tasks = BackgroundTasks(self.name)
        self._tasks.spawn(every(self.config.interval_s, self.run_once, self.name, first_at_once=True), "rounds")
        detail = "watching; calls the duty list" if self._line is not None else "watching; no telephony to call"
        self.health.set("ok", detail, at=self._clock.now())

    async def stop(self) -> None:
        if self._tasks is None:
            return
        tasks, self._tasks = self._tasks, None
        await tasks.close()
        self.health.set("standby", "stopped", at=self._clock.now())

    async def _orphans(self) -> None:
        await self.orphan_worker_calls("the worker stopped during the call")

    async def orphan_worker_calls(self, detail: str) -> None:
        """Calls a previous (or silent) worker left under way on its AMI link end 结果不明 (never re-sent); their
        alarms call the next one. A call file's outcome is read back from files by whoever looks: not an orphan,
        and its alarm keeps waiting for it (never two phones ringing about one alarm)."""
        now = self._clock.now()
        async with self._sessions() as session:
            orphaned = (
                await session.scalars(
                    update(AlarmCall)
                    .where(AlarmCall.state.in_(IN_FLIGHT_CALLS), AlarmCall.via == "ami")
                    .values(state="unknown", ended_at=now, detail=detail)
                    .returning(AlarmCall.alarm_id)
                )
            ).all()
            # Only the alarms whose call was just orphaned are due again. Re-arming every alarm "without a call in
            # flight" also caught one another process had just claimed and was about to call (its call row not yet
            # written): two phones rang about one alarm. An alarm left claimed by a process that died before its
            # call row comes due again by itself when its claim lapses (CLAIM_LAPSE_S, in _call_next).
            if orphaned:
                await session.execute(
                    update(OpsAlarm)
                    .where(OpsAlarm.state == "open", OpsAlarm.next_call_at.is_(None), OpsAlarm.id.in_(set(orphaned)))
                    .values(next_call_at=now)
                )
            await session.commit()

    async def run_once(self) -> None:
        """One round: what is wrong now, which alarms that opens or clears, and the calls that are due."""
        present, lasting = await self._troubles()
        await self._open_and_clear(present, lasting)
        await self.settle_spool_calls()
        await self._place_due_by_route()

    def _route(self) -> Route | None:
        """How the worker calls now: on its AMI link; by call file once the link has been down ``after_s``."""
        if self._line is not None and self._line.connected:
            self._link_down_since = None
            return "ami"
        if self._spool is None:
            return None
        now = self._clock.now()
        if self._link_down_since is None:
            self._link_down_since = now
        return "spool" if (now - self._link_down_since).total_seconds() >= self.config.after_s else None

    async def _place_due_by_route(self) -> None:
        route = self._route()
        if route is not None:
            # The worker_down alarm is the standby's to call about (WorkerWatch): the worker is back.
            await self.place_due(route, include_worker_down=False)

    async def _troubles(self) -> tuple[dict[str, Trouble], dict[str, Trouble]]:
        """What is wrong now, and of that what has lasted long enough to raise an alarm."""
        now = self._clock.now()
        found: dict[str, Trouble] = {}
        for check in self._checks:
            try:
                for trouble in await check():
                    found[trouble.key] = trouble
            except Exception:
                log.exception("alarms: a check failed; the others still count")
        for key in list(self._first_seen):
            if key not in found:
                del self._first_seen[key]
        lasting: dict[str, Trouble] = {}
        for key, trouble in found.items():
            first = self._first_seen.setdefault(key, now)
            if trouble.kind not in LASTING_KINDS or (now - first).total_seconds() >= self.config.after_s:
                lasting[key] = trouble
        return found, lasting

    async def _open_and_clear(self, present: dict[str, Trouble], lasting: dict[str, Trouble]) -> None:
        """Clear what is no longer wrong at all; raise what has lasted. (A worker that just took over has not
        yet seen a trouble last: an alarm its predecessor opened stays open while the trouble is still there.)"""
        now = self._clock.now()
        async with self._sessions() as session:
            open_alarms = (await session.scalars(select(OpsAlarm).where(OpsAlarm.state == "open"))).all()
            open_keys = {alarm.open_key for alarm in open_alarms}
            for alarm in open_alarms:
                if alarm.kind in LASTING_KINDS and alarm.open_key not in present:
                    await _clear(session, alarm, now)
            await session.commit()
        for key, trouble in lasting.items():
            if key in open_keys:
                continue
            await self._raise(trouble, now)

    async def raise_now(self, trouble: Trouble) -> None:
        """Raise an alarm about a trouble another watcher saw last long enough (once: open_key is UNIQUE)."""
        async with self._sessions() as session:
            already = await session.scalar(select(OpsAlarm.id).where(OpsAlarm.open_key == trouble.key))
        if already is None:
            await self._raise(trouble, self._clock.now())

    async def clear(self, kind: str) -> None:
        """The trouble went away: its open alarms are cleared (once, whichever process sees it first)."""
        now = self._clock.now()
        async with self._sessions() as session:
            alarms = (
                await session.scalars(select(OpsAlarm).where(OpsAlarm.kind == kind, OpsAlarm.state == "open"))
            ).all()
            for alarm in alarms:
                await _clear(session, alarm, now)
            await session.commit()

    async def _raise(self, trouble: Trouble, now: datetime) -> None:
        quiet_since = now - timedelta(seconds=self.config.quiet_s)
        async with self._sessions() as session:
            recent = await session.scalar(
                select(func.count())
                .select_from(OpsAlarm)
                .where(
                    OpsAlarm.kind == trouble.kind,
                    OpsAlarm.subject == trouble.subject,
                    OpsAlarm.raised_at >= quiet_since,
                )
            )
            if recent:
                return  # raised within the quiet time already: a flapping state phones once
            alarm = OpsAlarm(
                kind=trouble.kind,
                subject=trouble.subject,
                open_key=trouble.key,
                message=trouble.message,
                state="open",
                raised_at=now,
                round=1,
                next_position=0,
                next_call_at=now,
                calls_made=0,
            )
            session.add(alarm)
            try:
                await session.flush()
            except IntegrityError:
                await session.rollback()
                return  # open already (another round got there first)
            audit.record(
                session,
                SYSTEM,
                at=now,
                action="ops.alarm.raised",
                object_type="alarm",
                object_id=alarm.id,
                detail={"kind": trouble.kind, "subject": trouble.subject, "message": trouble.message},
            )
            await session.commit()
        log.warning("alarm %s raised: %s %s", alarm.id, ALARM_KIND_LABELS.get(trouble.kind), trouble.message)

    # -- calling the duty list ---------------------------------------------------------------------------

    async def on_duty_now(self) -> list[DutyOfficer]:
        local = self._clock.now().astimezone(self._timezone).time()
        async with self._sessions() as session:
            officers = (
                await session.scalars(
                    select(DutyOfficer)
                    .where(DutyOfficer.active.is_(True))
                    .order_by(DutyOfficer.position, DutyOfficer.id)
                )
            ).all()
        return [officer for officer in officers if on_duty(officer, local)]

    async def place_due(self, route: Route, *, include_worker_down: bool = True) -> None:
        now = self._clock.now()
        statement = select(OpsAlarm.id).where(OpsAlarm.state == "open", OpsAlarm.next_call_at <= now)
        if not include_worker_down:
            statement = statement.where(OpsAlarm.kind != WORKER_DOWN)
        async with self._sessions() as session:
            due = (await session.scalars(statement.order_by(OpsAlarm.id))).all()
        for alarm_id in due:
            await self._call_next(alarm_id, route)

    async def _call_next(self, alarm_id: int, route: Route) -> None:
        now = self._clock.now()
        officers = await self.on_duty_now()
        async with self._sessions() as session:
            # Claimed first (next_call_at moved past the claim's lapse, committed): two rounds looking at once never
            # call twice, and a process that dies before writing its call row leaves the alarm due again later
            # rather than waiting forever for a call that was never placed.
            claimed = await session.execute(
                update(OpsAlarm)
                .where(OpsAlarm.id == alarm_id, OpsAlarm.state == "open", OpsAlarm.next_call_at <= now)
                .values(next_call_at=now + timedelta(seconds=CLAIM_LAPSE_S))
            )
            await session.commit()
            if getattr(claimed, "rowcount", 0) != 1:
                return
            alarm = await session.get(OpsAlarm, alarm_id)
            if alarm is None:
                return
            if not officers:
                # Nobody on duty at this hour: shown on the page; looked at again after a round's interval.
                alarm.next_call_at = now + timedelta(seconds=max(self.config.round_interval_s, self.config.interval_s))
                await session.commit()
                return
            if alarm.next_position >= len(officers):
                if alarm.round >= self.config.rounds:
                    alarm.state, alarm.open_key, alarm.closed_at, alarm.next_call_at = "unanswered", None, now, None
                    audit.record(
                        session,
                        SYSTEM,
                        at=now,
                        action="ops.alarm.unanswered",
                        object_type="alarm",
                        object_id=alarm.id,
                        detail={"rounds": alarm.round, "calls": alarm.calls_made},
                    )
                    await session.commit()
                    return
                alarm.round += 1
                alarm.next_position = 0
                if self.config.round_interval_s > 0:
                    alarm.next_call_at = now + timedelta(seconds=self.config.round_interval_s)
                    await session.commit()
                    return
                # No pause between rounds: this claim goes on to the new round's first officer, and the round is
                # committed with her call row below. Committed now with the alarm due, a look in between claimed
                # it too and rang her twice.
            officer = officers[alarm.next_position]
            # Claimed before the one Originate: the alarm waits for this call (next_call_at NULL), the call is a row.
            call = AlarmCall(
                alarm_id=alarm.id,
                officer_id=officer.id,
                officer_name=officer.name,
                phone=officer.phone,
                round=alarm.round,
                channel_id=f"al-{secrets.token_hex(8)}",
                state="placing",
                placed_at=now,
                via=route,
            )
            session.add(call)
            alarm.next_position += 1
            alarm.calls_made += 1
            alarm.next_call_at = None
            message = alarm.message
            await session.commit()
            call_id, channel_id = call.id, call.channel_id
        variables = {"__CX_MARKER": "alarm", "CX_ALARM_ID": str(alarm_id)}
        try:
            if self._speak is not None:
                variables["CX_ALARM_PROMPT"] = str(await self._speak(f"村响系统告警。{message}请按1确认收到。"))
                variables["CX_ALARM_THANKS"] = str(await self._speak(THANKS))
        except Exception as exc:
            # Not placed: the next officer (or round) is tried; the alarm's text could not be spoken.
            log.exception("alarm %s: the alarm could not be spoken", alarm_id)
            await self._end_call(call_id, "failed", f"not sent: the alarm could not be spoken ({exc})", next_now=True)
            return
        if route == "spool":
            await self._place_by_call_file(call_id, channel_id, officer.phone, variables)
            return
        assert self._line is not None
        placed = await self._line.place(
            dial=dial_for(self.config.dial_template, officer.phone),
            call_id=channel_id,
            context="cx-alarm",
            ring_s=self.config.ring_s,
            variables=variables,
        )
        if placed.placement != "sent":
            placed.close()
            state = "failed" if placed.placement == "not_sent" else "unknown"
            await self._end_call(call_id, state, placed.detail, next_now=True)
            return
        assert self._tasks is not None
        self._tasks.spawn(self._follow(call_id, placed), f"alarm-call-{call_id}")

    async def _place_by_call_file(self, call_id: int, channel_id: str, phone: str, variables: dict[str, str]) -> None:
        """One call file for the one claimed call row; what became of it is read back by :meth:`settle_spool_calls`."""
        assert self._spool is not None
        try:
            await self._spool.place(
                dial=dial_for(self.config.dial_template, phone),
                call_id=channel_id,
                context="cx-alarm-spool",
                ring_s=self.config.ring_s,
                variables={"CX_ALARM_ID": variables["CX_ALARM_ID"], **_prompts(variables)},
            )
        except (OSError, ValueError) as exc:
            detail = f"not sent: the call file could not be written ({exc})"
            await self._end_call(call_id, "failed", detail, next_now=True)

    async def settle_spool_calls(self) -> None:
        """What became of the calls placed by call file, read from Asterisk's files (any process may do this; a
        call is ended once, by whichever process gets there first)."""
        if self._spool is None:
            return
        async with self._sessions() as session:
            calls = (
                await session.execute(
                    select(AlarmCall.id, AlarmCall.channel_id, AlarmCall.state, AlarmCall.placed_at).where(
                        AlarmCall.via == "spool", AlarmCall.state.in_(IN_FLIGHT_CALLS)
                    )
                )
            ).all()
        for call_id, channel_id, state, placed_at in calls:
            outcome = await self._spool.outcome(channel_id)
            now = self._clock.now()
            if outcome.state in ("pending", "answered"):
                answered = outcome.state == "answered" or state == "ringing"
                if outcome.state == "answered" and state == "placing":
                    async with self._sessions() as session:
                        await session.execute(
                            update(AlarmCall)
                            .where(AlarmCall.id == call_id, AlarmCall.state == "placing")
                            .values(state="ringing")
                        )
                        await session.commit()
                limit = self.config.ring_s + SPOOL_GRACE_S + (self.config.call_limit_s if answered else 0)
                if (now - placed_at).total_seconds() < limit:
                    continue
                # Asterisk said nothing in time. A file still waiting in the spool was never taken: withdrawn, it
                # is known not to ring later; otherwise what happened is not known.
                withdrawn = not answered and await self._spool.withdraw(channel_id)
                if withdrawn:
                    ended = await self._end_call(
                        call_id, "failed", "the call file was not taken by Asterisk in time; withdrawn", next_now=True
                    )
                else:
                    ended = await self._end_call(
                        call_id, "unknown", "no outcome from the call-file spool in time", next_now=True
                    )
            else:
                state_now = SPOOL_STATES[outcome.state]
                ended = await self._end_call(call_id, state_now, outcome.detail, next_now=state_now != "acknowledged")
            if ended:
                await self._spool.forget(channel_id)
        # Files of calls already settled (an acknowledged call is archived when it ends, after it was settled).
        leftovers = await self._spool.leftovers()
        if leftovers:
            async with self._sessions() as session:
                in_flight = set(
                    (
                        await session.scalars(
                            select(AlarmCall.channel_id).where(
                                AlarmCall.channel_id.in_(leftovers), AlarmCall.state.in_(IN_FLIGHT_CALLS)
                            )
                        )
                    ).all()
                )
            for channel_id in leftovers:
                if channel_id not in in_flight:
                    await self._spool.forget(channel_id)

    async def _follow(self, call_id: int, placed: PlacedAlarmCall) -> None:
        try:
            answer = await placed.first_answer(self.config.ring_s + 30)
            if answer != "answered":
                await placed.wait_end(10.0)
                await self._end_call(
                    call_id, answer if answer != "unknown" else "unknown", placed.detail, next_now=True
                )
                return
            async with self._sessions() as session:
                await session.execute(update(AlarmCall).where(AlarmCall.id == call_id).values(state="ringing"))
                await session.commit()
            ended = await placed.wait_end(self.config.call_limit_s)
            acknowledged = any(event.get("Ack") == "1" for event in placed.dialplan_events("CxAlarm"))
            if acknowledged:
                await self._end_call(call_id, "acknowledged", None, next_now=False)
            else:
                detail = None if ended else "the call did not end in time"
                await self._end_call(call_id, "heard", detail, next_now=True)
        finally:
            placed.close()

    async def _end_call(self, call_id: int, state: str, detail: str | None, *, next_now: bool) -> bool:
        """End a call under way, once (False: it had ended already, e.g. settled by another process)."""
        now = self._clock.now()
        async with self._sessions() as session:
            ended = await session.execute(
                update(AlarmCall)
                .where(AlarmCall.id == call_id, AlarmCall.state.in_(IN_FLIGHT_CALLS))
                .values(state=state, ended_at=now, detail=(detail or "")[:255] or None)
            )
            if getattr(ended, "rowcount", 0) != 1:
                await session.rollback()
                return False
            call = await session.get(AlarmCall, call_id)
            if call is None:
                return False
            alarm = await session.get(OpsAlarm, call.alarm_id)
            audit.record(
                session,
                SYSTEM,
                at=now,
                action="ops.alarm.call",
                object_type="alarm",
                object_id=call.alarm_id,
                detail={
                    "call_id": call.id,
                    "officer": call.officer_name,
                    "phone": call.phone,
                    "state": state,
                    "detail": detail,
                    "via": call.via,
                },
            )
            if alarm is not None and alarm.state == "open":
                if state == "acknowledged":
                    who = f"{call.officer_name}（{call.phone}）"
                    alarm.state, alarm.open_key, alarm.closed_at = "acknowledged", None, now
                    alarm.acknowledged_by, alarm.next_call_at = who, None
                    audit.record(
                        session,
                        SYSTEM,
                        at=now,
                        action="ops.alarm.acknowledged",
                        object_type="alarm",
                        object_id=alarm.id,
                        detail={"by": who, "call_id": call.id, "via": "phone"},
                    )
                elif next_now:
                    alarm.next_call_at = now
            await session.commit()
        log.info("alarm call %s: %s %s", call_id, state, detail or "")
        if next_now and self._tasks is not None:
            # The next officer is called at once, not a poll later (each phone already rang its ring time).
            # (A standby calling without the worker has no such tasks: its next look places the next call.)
            self._tasks.spawn(self._place_due_by_route(), f"alarm-next-{call_id}")
        return True

    # -- what admins do on the page ----------------------------------------------------------------------

    async def acknowledge(self, alarm_id: int, actor: audit.Actor) -> OpsAlarm | None:
        """An admin acknowledges on the page: the calls stop. None when there is no such open alarm."""
        now = self._clock.now()
        async with self._sessions() as session:
            alarm = await session.get(OpsAlarm, alarm_id)
            if alarm is None or alarm.state != "open":
                return None
            alarm.state, alarm.open_key, alarm.closed_at, alarm.next_call_at = "acknowledged", None, now, None
            alarm.acknowledged_by = actor.username
            audit.record(
                session,
                actor,
                at=now,
                action="ops.alarm.acknowledged",
                object_type="alarm",
                object_id=alarm.id,
                detail={"by": actor.username, "via": "page"},
            )
            await session.commit()
            return alarm

    async def officers(self) -> list[DutyOfficer]:
        async with self._sessions() as session:
            statement = select(DutyOfficer).order_by(DutyOfficer.position, DutyOfficer.id)
            return list((await session.scalars(statement)).all())

    async def add_officer(
        self, actor: audit.Actor, *, name: str, phone: str, on_from: time, on_until: time
    ) -> DutyOfficer:
        now = self._clock.now()
        async with self._sessions() as session:
            last = await session.scalar(select(func.max(DutyOfficer.position)))
            officer = DutyOfficer(
                name=name,
                phone=phone,
                on_from=on_from,
                on_until=on_until,
                position=(last or 0) + 1,
                active=True,
                created_at=now,
            )
            session.add(officer)
            await session.flush()
            audit.record(
                session,
                actor,
                at=now,
                action="ops.duty.added",
                object_type="duty_officer",
                object_id=officer.id,
                detail=_officer_detail(officer),
            )
            await session.commit()
            return officer

    async def officer(self, officer_id: int) -> DutyOfficer | None:
        async with self._sessions() as session:
            return await session.get(DutyOfficer, officer_id)

    async def change_officer(
        self, actor: audit.Actor, officer_id: int, *, name: str, phone: str, on_from: time, on_until: time
    ) -> DutyOfficer | None:
        """Name, phone, hours changed (audited with before and after); None when there is no such officer.

        Calls already made keep the name and phone they were made with (their rows copied them)."""
        now = self._clock.now()
        async with self._sessions() as session:
            officer = await session.get(DutyOfficer, officer_id)
            if officer is None:
                return None
            before = _officer_detail(officer)
            officer.name, officer.phone, officer.on_from, officer.on_until = name, phone, on_from, on_until
            after = _officer_detail(officer)
            if after != before:
                audit.record(
                    session,
                    actor,
                    at=now,
                    action="ops.duty.changed",
                    object_type="duty_officer",
                    object_id=officer.id,
                    detail={"before": before, "after": after},
                )
            await session.commit()
            return officer

    async def move_officer(self, actor: audit.Actor, officer_id: int, direction: Literal["up", "down"]) -> bool:
        """Swap places with the neighbour above or below in the calling order (audited). False: no such
        officer, or already first (up) / last (down)."""
        now = self._clock.now()
        async with self._sessions() as session:
            ordered = list(
                (await session.scalars(select(DutyOfficer).order_by(DutyOfficer.position, DutyOfficer.id))).all()
            )
            index = next((i for i, officer in enumerate(ordered) if officer.id == officer_id), None)
            if index is None:
                return False
            other = index - 1 if direction == "up" else index + 1
            if not 0 <= other < len(ordered):
                return False
            ordered[index], ordered[other] = ordered[other], ordered[index]
            # Positions rewritten 1…n: equal positions left by older lists cannot make a swap a no-op.
            for position, officer in enumerate(ordered, start=1):
                officer.position = position
            moved = ordered[other]
            audit.record(
                session,
                actor,
                at=now,
                action="ops.duty.moved",
                object_type="duty_officer",
                object_id=moved.id,
                detail={"name": moved.name, "direction": direction, "from": index + 1, "to": other + 1},
            )
            await session.commit()
            return True

    async def remove_officer(self, actor: audit.Actor, officer_id: int) -> bool:
        now = self._clock.now()
        async with self._sessions() as session:
            officer = await session.get(DutyOfficer, officer_id)
            if officer is None:
                return False
            audit.record(
                session,
                actor,
                at=now,
                action="ops.duty.removed",
                object_type="duty_officer",
                object_id=officer.id,
                detail=_officer_detail(officer),
            )
            await session.delete(officer)
            await session.commit()
            return True

    async def alarms(self, limit: int = 50) -> list[tuple[OpsAlarm, list[AlarmCall]]]:
        async with self._sessions() as session:
            alarms = (await session.scalars(select(OpsAlarm).order_by(OpsAlarm.id.desc()).limit(limit))).all()
            ids = [alarm.id for alarm in alarms]
            calls = (
                (
                    await session.scalars(select(AlarmCall).where(AlarmCall.alarm_id.in_(ids)).order_by(AlarmCall.id))
                ).all()
                if ids
                else []
            )
        by_alarm: dict[int, list[AlarmCall]] = {}
        for call in calls:
            by_alarm.setdefault(call.alarm_id, []).append(call)
        return [(alarm, by_alarm.get(alarm.id, [])) for alarm in alarms]

    async def open_count(self) -> int:
        async with self._sessions() as session:
            return int(
                await session.scalar(select(func.count()).select_from(OpsAlarm).where(OpsAlarm.state == "open")) or 0
            )


class WorkerWatch:
    """In every process: phones about a worker that stopped beating, without needing the worker.

    The worker (the one process elected to phone, broadcast and talk to Asterisk) writes a heartbeat every few
    seconds (``worker_heartbeats``, the dispatcher's). When it has been silent longer than ``after_s`` — the
    worker hung, failed to start its services, or no process holds the role — any process that is up raises
    ``worker_down`` (one alarm: its ``open_key`` is UNIQUE, so only one process raises it) and, while the worker
    stays silent, calls the duty list about every open alarm by call file (no AMI: the link is the worker's),
    reading the outcomes back from Asterisk's files. Once a worker beats again the alarm is cleared (unless
    someone acknowledged it) and the worker calls again.

    Before any worker ever beat (a new installation, a process that never elects) nothing is raised.
    """

    name = "worker-watch"

    def __init__(
        self,
        alarms: AlarmService,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        heartbeat: str,
        after_s: float,
        interval_s: float,
    ) -> None:
        self._alarms = alarms
        self._sessions = sessions
        self._clock = clock
        self._heartbeat = heartbeat
        self.after_s = after_s
        self._interval_s = interval_s
        self._tasks: BackgroundTasks | None = None

    async def start(self) -> None:
        if self._tasks is not None:
            return
        self._tasks = BackgroundTasks(self.name)
        self._tasks.spawn(every(self._interval_s, self.run_once, self.name, first_at_once=False), "watch")

    async def stop(self) -> None:
        if self._tasks is None:
            return
        tasks, self._tasks = self._tasks, None
        await tasks.close()

    async def silent_for(self) -> float | None:
        """Seconds since the worker's last sign of life (its clean stop counts as its last); None: never beat."""
        async with self._sessions() as session:
            beat = await session.get(WorkerHeartbeat, self._heartbeat)
            if beat is None:
                return None
            last = beat.stopped_at or beat.alive_at
        return max(0.0, (self._clock.now() - last).total_seconds())

    async def run_once(self) -> None:
        silent = await self.silent_for()
        if silent is None:
            return
        if silent < self.after_s:
            await self._alarms.clear(WORKER_DOWN)
            return
        await self._alarms.raise_now(
            Trouble(WORKER_DOWN, "worker", "村响后台服务停止工作了，广播和热线可能都已中断，请尽快检查服务器。")
        )
        if self._alarms.can_call_without_worker:
            # The worker's AMI link went with it: its calls under way are lost (结果不明), the next one is called.
            await self._alarms.orphan_worker_calls("the worker went silent during the call")
            await self._alarms.settle_spool_calls()
            await self._alarms.place_due("spool")


def _prompts(variables: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in variables.items() if name in ("CX_ALARM_PROMPT", "CX_ALARM_THANKS")}


def _officer_detail(officer: DutyOfficer) -> dict[str, Any]:
    return {
        "name": officer.name,
        "phone": officer.phone,
        "on_from": officer.on_from.strftime("%H:%M"),
        "on_until": officer.on_until.strftime("%H:%M"),
    }
