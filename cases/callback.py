"""回拨: an operator calls a villager back through Asterisk — the operator's own phone first, then the villager.

The button on the case page (any process) only writes a ``requested``
attempt; the elected worker, which holds the AMI link, places it:

1. The attempt is claimed (``requested`` → ``placing``, committed) *before*
   the Originate is sent, and the Originate is sent exactly once. If the link
   drops afterwards the attempt ends ``unknown`` — it is never sent again
   (a second Originate is a second call to an old person).
2. ``Originate Channel=<the operator's phone> Context=cx-callback`` with a
   ``ChannelId`` we choose, which becomes the call's Linkedid: every event
   and the recording's file name carry it. The operator's phone rings for
   ``callback_operator_ring_s``; once answered the dialplan records the call
   (MixMonitor) and dials the villager (``ivr.callback_ring_s``).
3. ``OriginateResponse`` says whether the operator answered, ``DialEnd``
   whether the villager did; when the call's last channel hangs up the
   attempt gets its final state and an event in the case's history. The
   recording is moved onto the case by the hotline's call tracker, like any
   other (the file is named ``cx_case<ID>_callback_<linkedid>.wav``).

The call goes out through the :class:`cases.placing.CallLine` the hotline
provides; the lifecycle (started on the elected worker, orphans closed as
``unknown``, a poll every ``poll_s``) is the one :class:`cases.placing.CallRunner`
gives both placed-call runners.

A request nobody could place within ``callback_request_ttl_s`` expires
instead of ringing somebody's phone long after the operator gave up.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.principal import Principal
from cases.placing import CallLine, CallRunner, PlacedCall, dial_string
from cases.workflow import CALLBACK_RUNNER, Actor, Workflow
from common.clock import Clock
from common.errors import Conflict, InvalidInput
from common.health import ComponentHealth
from storage.models import CALLBACK_ATTEMPT_STATES, CallbackAttempt, Case, MissedCall, User

log = logging.getLogger(__name__)

IN_FLIGHT = ("requested", "placing", "ringing", "answered")
# How an attempt's ``detail`` begins when the operator's own phone (the first leg) is what failed.
OPERATOR_LEG = "operator's phone"
NOT_SENT = "not sent"
NO_NUMBER = "the case has no caller number"
# The villager's leg as Asterisk's DIALSTATUS says it, in words an operator acts on.
_VILLAGER_DIAL_STATUS = {
    "CHANUNAVAIL": "打不通群众的电话（空号、停机、关机或不在服务区）",
    "CONGESTION": "线路拥塞，群众的电话没有打通，请稍后再试",
    "BUSY": "群众的电话占线",
    "NOANSWER": "群众的电话响铃后无人接听",
}


def failure_reason(attempt: CallbackAttempt, *, operator_ring_s: float) -> str | None:
    """Why a callback did not reach the villager, for the operator (None while under way or when answered).

    Derived from what Asterisk said (the attempt's state, the villager leg's dial status, and which leg
    failed, kept in ``detail``): the page shows this, the API keeps the raw ``detail`` beside it.
    """
    detail = attempt.detail or ""
    phone = attempt.operator_endpoint
    if attempt.state in IN_FLIGHT:
        return None
    if attempt.state == "operator_unanswered":
        return f"您的电话（{phone}）响了 {operator_ring_s:.0f} 秒没有人接，所以没有拨打群众"
    if attempt.state == "expired":
        return "电话系统一直没有连上，请求过期，电话没有拨出"
    if attempt.state == "unknown":
        return "与电话系统的连接中断，不知道电话是否已经打出；系统不会自动重拨"
    if attempt.state == "not_connected":
        return "还没接通群众，通话就结束了（例如您先挂断了）"
    if attempt.state in ("busy", "villager_unanswered"):
        return _VILLAGER_DIAL_STATUS["BUSY" if attempt.state == "busy" else "NOANSWER"]
    if detail.startswith(OPERATOR_LEG):
        if detail.endswith("busy"):
            return f"您的电话（{phone}）占线，所以没有拨打群众"
        return f"打不通您的电话（{phone}）：话机没有登录或不存在，请检查话机后再回拨"
    if detail.startswith(NOT_SENT):
        return "电话系统没有连上，电话没有拨出"
    if detail == NO_NUMBER:
        return "案件没有来电号码"
    return _VILLAGER_DIAL_STATUS.get(attempt.dial_status or "", "电话系统报告呼叫失败")


@dataclass(frozen=True)
class CallbackConfig:
    dial_template: str = "PJSIP/{number}@trunk"
    operator_ring_s: float = 30.0
    request_ttl_s: float = 120.0
    poll_s: float = 1.0
    result_timeout_s: float = 4 * 3600.0


def operator_channel(endpoint: str) -> str:
    """``users.phone_endpoint`` as a dial string: a bare endpoint name (``operator1``) is a PJSIP endpoint."""
    return endpoint if "/" in endpoint else f"PJSIP/{endpoint}"


class CallbackService(CallRunner[CallbackConfig]):
    """Requests (any process) and placing (the elected worker's ``start``)."""

    name = "callbacks"
    attempts_model = CallbackAttempt
    open_states = ("placing", "ringing", "answered")

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        workflow: Workflow,
        line: CallLine | None,
        config: CallbackConfig,
    ) -> None:
        super().__init__(
            sessions,
            clock,
            line,
            config,
            health=ComponentHealth("callbacks", status="standby", detail="only the active worker places calls"),
            working="placing callbacks",
        )
        self._workflow = workflow

    @property
    def available(self) -> bool:
        """Whether this installation can place calls at all (``asterisk = none`` cannot)."""
        return self._line is not None

    # -- asking for a callback (any process) ------------------------------------------------

    async def request(
        self, principal: Principal, case_id: int, *, missed_call_id: int | None = None
    ) -> CallbackAttempt:
        case = await self._workflow.visible_case(principal, case_id, via="case.callback")
        self._workflow.access.require(principal, "callback", sealed=case.sealed)
        endpoint = await self._operator_phone(principal)
        if case.caller_number is None:
            raise Conflict("这个案件没有来电号码，无法回拨", code="callback.no_number")
        now = self._clock.now()
        async with self._sessions() as session:
            busy = await session.scalar(
                select(func.count())
                .select_from(CallbackAttempt)
                .where(CallbackAttempt.case_id == case.id, CallbackAttempt.state.in_(IN_FLIGHT))
            )
            if busy:
                raise Conflict("这个案件正在回拨中，请等这次通话结束", code="callback.in_progress")
            attempt = CallbackAttempt(
                case_id=case.id,
                missed_call_id=missed_call_id,
                user_id=principal.user_id,
                operator_endpoint=endpoint,
                channel_id=f"cb-{secrets.token_hex(8)}",
                state="requested",
                requested_at=now,
            )
            session.add(attempt)
            await session.commit()
        self.wake()
        return attempt

    async def _operator_phone(self, principal: Principal) -> str:
        """The operator's own phone to ring first; refused (writing nothing) when no call can be placed."""
        if self._line is None:
            raise Conflict("本系统没有接电话系统（asterisk = none），不能回拨", code="callback.no_telephony")
        async with self._sessions() as session:
            user = await session.get(User, principal.user_id)
            endpoint = (user.phone_endpoint or "").strip() if user is not None else ""
        if not endpoint:
            raise InvalidInput(
                "您还没有登记自己的电话（分机），请管理员在用户设置里填写后再回拨",
                code="callback.no_operator_phone",
            )
        return endpoint

    async def request_for_missed(self, principal: Principal, missed_call_id: int) -> tuple[Case, CallbackAttempt]:
        """未接来电回拨: the missed call becomes a case (once), then the same callback.

        Whether a call can be placed at all is asked first: a refusal must not leave a new case behind.
        """
        await self._operator_phone(principal)
        case = await self._workflow.case_from_missed_call(principal, missed_call_id)
        return case, await self.request(principal, case.id, missed_call_id=missed_call_id)

    async def attempts(self, case_id: int) -> list[CallbackAttempt]:
        async with self._sessions() as session:
            statement = select(CallbackAttempt).where(CallbackAttempt.case_id == case_id).order_by(CallbackAttempt.id)
            return list((await session.scalars(statement)).all())

    async def attempt(self, attempt_id: int) -> CallbackAttempt | None:
        async with self._sessions() as session:
            return await session.get(CallbackAttempt, attempt_id)

    # -- placing them (the elected worker) --------------------------------------------------

    async def run_once(self) -> int:
        """Expire stale requests and place the fresh ones; returns how many were placed."""
        now = self._clock.now()
        oldest = now - timedelta(seconds=self.config.request_ttl_s)
        placed = 0
        async with self._sessions() as session:
            await session.execute(
                update(CallbackAttempt)
                .where(CallbackAttempt.state == "requested", CallbackAttempt.requested_at < oldest)
                .values(state="expired", ended_at=now, detail="not placed in time (no connection to Asterisk)")
            )
            await session.commit()
            waiting = (
                await session.scalars(
                    select(CallbackAttempt).where(CallbackAttempt.state == "requested").order_by(CallbackAttempt.id)
                )
            ).all()
        for attempt in waiting:
            if await self._place(attempt.id):
                placed += 1
        return placed

    async def _claim(self, attempt_id: int) -> tuple[CallbackAttempt, Case] | None:
        async with self._sessions() as session:
            claimed = await session.execute(
                update(CallbackAttempt)
                .where(CallbackAttempt.id == attempt_id, CallbackAttempt.state == "requested")
                .values(state="placing", placed_at=self._clock.now())
            )
            await session.commit()
            if getattr(claimed, "rowcount", 0) != 1:
                return None
            attempt = await session.get(CallbackAttempt, attempt_id)
            assert attempt is not None
            case = await session.get(Case, attempt.case_id)
            assert case is not None
            return attempt, case

    async def _place(self, attempt_id: int) -> bool:
        assert self._line is not None
        if not self._line.connected:
            return False  # stays requested until the link is up, or expires
        claimed = await self._claim(attempt_id)
        if claimed is None:
            return False
        attempt, case = claimed
        if case.caller_number is None:
            await self._finish(attempt.id, "failed", detail=NO_NUMBER)
            return False
        call = await self._line.place(
            dial=operator_channel(attempt.operator_endpoint),
            call_id=attempt.channel_id,
            context="cx-callback",
            ring_s=self.config.operator_ring_s,
            variables={
                "__CX_MARKER": "callback",
                "__CX_CASE_ID": str(case.id),
                "CX_CALLBACK_ID": str(attempt.id),
                "CX_DIAL": dial_string(self.config.dial_template, case.caller_number),
            },
        )
        if call.placement != "sent":
            call.close()
            if call.placement == "not_sent":
                await self._finish(attempt.id, "failed", detail=f"{NOT_SENT}: {call.detail}")
            else:
                # Sent, but we cannot tell what became of it: never send it again.
                await self._finish(attempt.id, "unknown", detail=call.detail)
            return False
        self.spawn(self._follow(attempt.id, call), f"callback-{attempt.id}")
        return True

    async def _follow(self, attempt_id: int, call: PlacedCall) -> None:
        try:
            answer = await call.first_answer(self.config.operator_ring_s + 30)
            if answer == "unknown":
                await self._finish(attempt_id, "unknown", detail=call.detail)
                return
            if answer != "answered":
                await call.wait_end(10.0)
                # The operator's phone, not the villager's: busy there is no 群众占线.
                state = "operator_unanswered" if answer == "no_answer" else "failed"
                await self._finish(attempt_id, state, detail=f"{OPERATOR_LEG}: {call.detail}, {answer}")
                return
            await self._set(attempt_id, state="ringing")
            ended = await call.wait_end(self.config.result_timeout_s)
            dial_status, answered = call.dial_status, call.reached
            # The dialplan reports the villager's leg itself (the operator's phone bridges it).
            for event in call.dialplan_events("CxCallback"):
                if event.get("DialStatus"):
                    dial_status = event["DialStatus"]
                    answered = answered or dial_status == "ANSWER"
            if not ended:
                await self._finish(attempt_id, "unknown", detail="the call did not end in time", status=dial_status)
            elif answered:
                await self._finish(attempt_id, "answered", status="ANSWER", answered=True)
            elif dial_status in ("BUSY",):
                await self._finish(attempt_id, "busy", status=dial_status)
            elif dial_status in ("NOANSWER",):
                await self._finish(attempt_id, "villager_unanswered", status=dial_status)
            elif dial_status in (None, "CANCEL"):
                await self._finish(attempt_id, "not_connected", status=dial_status)
            else:
                await self._finish(attempt_id, "failed", status=dial_status)
        finally:
            call.close()

    async def _finish(
        self,
        attempt_id: int,
        state: str,
        *,
        detail: str | None = None,
        status: str | None = None,
        answered: bool = False,
    ) -> None:
        now = self._clock.now()
        async with self._sessions() as session:
            attempt = await session.get(CallbackAttempt, attempt_id)
            if attempt is None:
                return
            attempt.state = state
            attempt.ended_at = now
            attempt.dial_status = status
            attempt.detail = (detail or "")[:255] or None
            if answered:
                attempt.answered_at = now
            reason = failure_reason(attempt, operator_ring_s=self.config.operator_ring_s)
            operator = await session.get(User, attempt.user_id) if attempt.user_id is not None else None
            if attempt.missed_call_id is not None:
                missed = await session.get(MissedCall, attempt.missed_call_id)
                if missed is not None:
                    missed.callback_attempts += 1
                    if answered:
                        missed.callback_state = "called_back"
            case_id, user_id = attempt.case_id, attempt.user_id
            await session.commit()
        label = CALLBACK_ATTEMPT_STATES.get(state, state)
        note = f"回拨：{label}" + ("（通话已录音，附在案件录音里）" if answered else f"。{reason}" if reason else "")
        # The history names the operator who asked for the call (the runner only dialled it for them).
        actor = Actor(operator.id, operator.username, operator.display_name) if operator else CALLBACK_RUNNER
        try:
            await self._workflow.record_call(
                case_id, "callback", actor, {"attempt_id": attempt_id, "state": state, "by_user": user_id}, note
            )
        except Exception:
            log.exception("callback %s: could not add it to case %s's history", attempt_id, case_id)
        log.info("callback %s for case %s: %s", attempt_id, case_id, state)
