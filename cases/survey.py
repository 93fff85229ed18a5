"""回访: the automated satisfaction follow-up call after a case is resolved.

The elected worker (this is one of its ``worker_services``) looks every
``followup_poll_s`` for cases that are 已办结, whose follow-up day has come,
and which may be called now:

* only between ``followup_call_start`` and ``followup_call_end`` local time
  (09:00–20:00 by default: nobody rings an old person at dawn);
* never a sealed case (a discipline report's caller is protected; inspectors
  follow those up themselves), a test call, or a withheld number;
* at most ``followup_attempts`` calls per resolution, ``followup_retry_interval_s``
  apart, and at most ``followup_concurrent_calls`` at once.

The call (``Originate`` into the ``cx-survey`` context, the villager's line
from ``dial_template``) plays a greeting, a sentence about this case (made by
our TTS: 您在…月…日反映的问题，已经办理完毕), and asks 满意请按1，基本满意请按2，
不满意请按3. The key comes back as ``UserEvent CxSurvey``; 1 and 2 complete the
follow-up, 3 reopens the case (the workflow does both, as for a follow-up an
operator records by hand). Every attempt is kept, with why it failed; one
placed and then lost to an AMI outage is ``unknown`` and counts as an attempt
(it is never re-sent blindly). After the last attempt the case waits on the
人工回访 list.

Calls go out through the hotline's :class:`cases.placing.CallLine`; the
lifecycle is :class:`cases.placing.CallRunner`'s, the same as the callbacks'.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import PurePosixPath

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cases.placing import CallLine, CallRunner, PlacedCall, dial_string
from cases.workflow import FOLLOWUP_RUNNER, Workflow
from common.clock import Clock
from common.errors import CunxiangError
from common.health import ComponentHealth
from storage.models import SATISFACTION_KEYS, SURVEY_OPEN, SURVEY_STATES, Case, CaseLedger, SurveyAttempt

log = logging.getLogger(__name__)

SentenceRenderer = Callable[[str], Awaitable[PurePosixPath]]


@dataclass(frozen=True)
class SurveyConfig:
    enabled: bool = True
    call_start: time = time(9, 0)
    call_end: time = time(20, 0)
    attempts: int = 3
    retry_interval_s: float = 7200.0
    ring_s: float = 40.0
    poll_s: float = 60.0
    concurrent_calls: int = 2
    result_timeout_s: float = 900.0
    dial_template: str = "PJSIP/{number}@trunk"


def survey_sentence(created_local: datetime) -> str:
    return f"您在{created_local.month}月{created_local.day}日反映的问题，已经办理完毕。"


class SurveyRunner(CallRunner[SurveyConfig]):
    name = "follow-up-calls"
    attempts_model = SurveyAttempt
    open_states = SURVEY_OPEN

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        workflow: Workflow,
        line: CallLine | None,
        config: SurveyConfig,
        *,
        sentences: SentenceRenderer | None = None,
    ) -> None:
        super().__init__(
            sessions,
            clock,
            line,
            config,
            health=ComponentHealth("follow_up_calls", status="standby", detail="only the active worker calls"),
            working="calling",
        )
        self._workflow = workflow
        self._sentences = sentences
        self._in_flight: set[int] = set()
        workflow.on_change(self._changed)

    async def _changed(self, _case_id: int, kind: str) -> None:
        if kind == "resolved":
            self.wake()

    def disabled_because(self) -> str | None:
        return None if self.config.enabled else "automated follow-up calls are switched off"

    def stopped(self) -> None:
        self._in_flight.clear()

    # -- one round --------------------------------------------------------------------------

    def calling_hours(self, now: datetime) -> bool:
        local = now.astimezone(self._workflow.policy.zone).time()
        start, end = self.config.call_start, self.config.call_end
        if start == end:
            return True  # the same start and end: any hour (a site that calls round the clock, and the tests)
        if start < end:
            return start <= local < end
        return local >= start or local < end  # a window across midnight, should a site want one

    async def due_cases(self, now: datetime, limit: int) -> list[tuple[int, int]]:
        """(case id, round) of cases to call now: due, callable, attempts left, the last one long enough ago."""
        this_round = and_(SurveyAttempt.case_id == Case.id, SurveyAttempt.round == CaseLedger.reopen_count)
        tries = select(func.count()).where(this_round).correlate(Case, CaseLedger).scalar_subquery()
        open_calls = (
            select(func.count())
            .where(this_round, SurveyAttempt.state.in_(SURVEY_OPEN))
            .correlate(Case, CaseLedger)
            .scalar_subquery()
        )
        last_end = select(func.max(SurveyAttempt.ended_at)).where(this_round).correlate(Case, CaseLedger)
        retry_before = now - timedelta(seconds=self.config.retry_interval_s)
        statement = (
            select(Case.id, CaseLedger.reopen_count)
            .join(CaseLedger, CaseLedger.case_id == Case.id)
            .where(
                Case.status == "resolved",
                CaseLedger.followup_due <= now,
                Case.sealed.is_(False),
                Case.test_call.is_(False),
                Case.caller_number.is_not(None),
                Case.caller_withheld.is_(False),
                tries < self.config.attempts,
                open_calls == 0,
                or_(last_end.scalar_subquery().is_(None), last_end.scalar_subquery() <= retry_before),
            )
            .order_by(CaseLedger.followup_due, Case.id)
            .limit(limit)
        )
        async with self._sessions() as session:
            return [(case_id, round_) for case_id, round_ in (await session.execute(statement))]

    async def run_once(self) -> int:
        """Place the calls that are due now (within the limits); returns how many were placed."""
        if self._line is None or not self._line.connected or self._tasks is None:
            return 0
        now = self._clock.now()
        if not self.calling_hours(now):
            return 0
        room = self.config.concurrent_calls - len(self._in_flight)
        if room <= 0:
            return 0
        placed = 0
        for case_id, round_ in await self.due_cases(now, room + len(self._in_flight)):
            if case_id in self._in_flight:
                continue
            if await self._place(case_id, round_):
                placed += 1
            if placed >= room:
                break
        return placed

    async def _place(self, case_id: int, round_: int) -> bool:
        assert self._line is not None
        now = self._clock.now()
        async with self._sessions() as session:
            case = await session.get(Case, case_id)
            if case is None or case.caller_number is None:
                return False
            tries = await session.scalar(
                select(func.count()).where(SurveyAttempt.case_id == case_id, SurveyAttempt.round == round_)
            )
            attempt = SurveyAttempt(
                case_id=case_id,
                round=round_,
                attempt=int(tries or 0) + 1,
                channel_id=f"sv-{secrets.token_hex(8)}",
                state="placing",
                placed_at=now,
            )
            session.add(attempt)
            await session.commit()
            number, created = case.caller_number, case.created_at
        self._in_flight.add(case_id)
        prompt = ""
        if self._sentences is not None:
            try:
                local = created.astimezone(self._workflow.policy.zone)
                prompt = str(await self._sentences(survey_sentence(local)))
            except (CunxiangError, OSError) as exc:  # the greeting and the question still work without this sentence
                log.warning("follow-up for case %s: no case sentence (%s); calling without it", case_id, exc)
        call = await self._line.place(
            dial=dial_string(self.config.dial_template, number),
            call_id=attempt.channel_id,
            context="cx-survey",
            ring_s=self.config.ring_s,
            variables={
                "__CX_MARKER": "survey",
                "__CX_CASE_ID": str(case_id),
                "CX_SURVEY_ID": str(attempt.id),
                "CX_SURVEY_PROMPT": prompt,
            },
        )
        if call.placement != "sent":
            call.close()
            self._in_flight.discard(case_id)
            if call.placement == "not_sent":
                await self._finish(attempt.id, "failed", detail=f"not sent: {call.detail}")
            else:
                await self._finish(attempt.id, "unknown", detail=call.detail)
            return False
        self.spawn(self._follow(attempt.id, case_id, round_, call), f"survey-{attempt.id}")
        return True

    async def _follow(self, attempt_id: int, case_id: int, round_: int, call: PlacedCall) -> None:
        try:
            answered = await call.first_answer(self.config.ring_s + 30)
            if answered == "unknown":
                await self._finish(attempt_id, "unknown", detail=call.detail)
                return
            if answered != "answered":
                await call.wait_end(10.0)
                state = answered if answered in ("busy", "no_answer") else "failed"
                await self._finish(attempt_id, state, detail=call.detail)
                return
            await self._set(attempt_id, state="answered")
            ended = await call.wait_end(self.config.result_timeout_s)
            answer = None
            for event in call.dialplan_events("CxSurvey"):
                if event.get("Attempt") == str(attempt_id):
                    answer = event.get("Answer")
            satisfaction = SATISFACTION_KEYS.get(answer or "")
            if satisfaction is None:
                outcome = "no_key" if ended else "unknown"
                await self._finish(attempt_id, outcome, detail=None if ended else "the call did not end in time")
                return
            applied = await self._workflow.record_survey_answer(
                case_id, round=round_, satisfaction=satisfaction, attempt_id=attempt_id
            )
            await self._finish(
                attempt_id, "completed", answer=answer, detail=None if applied else "answer came after a change"
            )
        finally:
            call.close()
            self._in_flight.discard(case_id)

    async def _finish(
        self, attempt_id: int, state: str, *, detail: str | None = None, answer: str | None = None
    ) -> None:
        async with self._sessions() as session:
            attempt = await session.get(SurveyAttempt, attempt_id)
            if attempt is None:
                return
            attempt.state = state
            attempt.answer = answer
            attempt.detail = (detail or "")[:255] or None
            attempt.ended_at = self._clock.now()
            case_id, number = attempt.case_id, attempt.attempt
            await session.commit()
        if state != "completed":
            label = SURVEY_STATES.get(state, state)
            try:
                await self._workflow.record_call(
                    case_id, "survey", FOLLOWUP_RUNNER, {"attempt_id": attempt_id, "attempt": number, "state": state},
                    f"自动回访第{number}次：{label}",
                )  # fmt: skip
            except Exception:
                log.exception("follow-up %s: could not add it to case %s's history", attempt_id, case_id)
        log.info("follow-up call %s for case %s: %s %s", attempt_id, case_id, state, answer or "")

    async def attempts(self, case_id: int) -> list[SurveyAttempt]:
        async with self._sessions() as session:
            statement = select(SurveyAttempt).where(SurveyAttempt.case_id == case_id).order_by(SurveyAttempt.id)
            return list((await session.scalars(statement)).all())
