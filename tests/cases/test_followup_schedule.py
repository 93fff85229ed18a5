"""Which resolved cases the automated follow-up would call now, and when: no Asterisk needed to decide that.

The calls themselves, answered 1, 2 and 3 or not at all, are in ``tests/cases/asterisk/test_calls.py`` (which
calls at any hour); here the default calling hours, the cases never called, and the retry rules.
"""

from __future__ import annotations

import dataclasses
import secrets
from datetime import UTC, datetime, time, timedelta

from cases.survey import SurveyRunner
from common.clock import ManualClock
from server import Runtime
from storage.models import Case, SurveyAttempt
from tests.cases.conftest import SHANGHAI, CaseMaker, County, People


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, 3, hour, minute, tzinfo=SHANGHAI)


def test_follow_up_calls_go_out_only_between_nine_and_eight_by_default(runtime: Runtime) -> None:
    surveys = runtime.cases.surveys
    assert (surveys.config.call_start, surveys.config.call_end) == (time(9, 0), time(20, 0))
    assert [surveys.calling_hours(at(hour, minute)) for hour, minute in [(8, 59), (9, 0), (19, 59), (20, 0)]] == [
        False, True, True, False
    ]  # fmt: skip
    # The window is local time: 01:00 UTC is 09:00 in Shanghai, 00:59 UTC is 08:59.
    assert surveys.calling_hours(datetime(2026, 3, 3, 1, 0, tzinfo=UTC))
    assert not surveys.calling_hours(datetime(2026, 3, 3, 0, 59, tzinfo=UTC))
    night = dataclasses.replace(surveys.config, call_start=time(20, 0), call_end=time(8, 0))
    overnight = SurveyRunner(runtime.sessions, runtime.clock, runtime.cases.workflow, None, night)
    assert [overnight.calling_hours(at(hour)) for hour in (7, 8, 12, 20, 23)] == [True, False, False, True, True]
    always = dataclasses.replace(surveys.config, call_start=time(0, 0), call_end=time(0, 0))
    anytime = SurveyRunner(runtime.sessions, runtime.clock, runtime.cases.workflow, None, always)
    assert all(anytime.calling_hours(at(hour)) for hour in range(24))


async def resolved(runtime: Runtime, county: County, people: People, make: CaseMaker, **extra: object) -> Case:
    case = await make(township_id=county.township_a, **extra)
    actor = people.inspector.principal if case.sealed else people.operator_county.principal
    await runtime.cases.workflow.assign(actor, case.id, unit_id=county.unit_a, leader_name="张书记")
    await runtime.cases.workflow.resolve(actor, case.id, outcome="resolved", result="已修好", told_via="phone")
    return case


async def attempt(runtime: Runtime, case_id: int, number: int, ended: datetime, state: str = "no_answer") -> None:
    async with runtime.sessions() as session:
        session.add(
            SurveyAttempt(case_id=case_id, round=0, attempt=number, channel_id=f"sv-{secrets.token_hex(8)}",
                          state=state, placed_at=ended - timedelta(minutes=1),
                          ended_at=None if state in ("placing", "answered") else ended)
        )  # fmt: skip
        await session.commit()


async def test_only_due_callable_cases_are_called_and_unanswered_ones_are_retried_a_few_times_apart(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker, clock: ManualClock
) -> None:
    surveys = runtime.cases.surveys
    assert (surveys.config.attempts, surveys.config.retry_interval_s) == (3, 7200.0)
    plain = await resolved(runtime, county, people, hotline_case)
    await resolved(runtime, county, people, hotline_case, category="discipline")  # the reporter: never
    await resolved(runtime, county, people, hotline_case, test_call=True)  # a dial test: never
    await resolved(runtime, county, people, hotline_case, caller=None)  # a withheld number: cannot
    busy = await resolved(runtime, county, people, hotline_case)

    async def due() -> list[int]:
        return [case_id for case_id, _round in await surveys.due_cases(clock.now(), 50)]

    assert await due() == []  # resolved today (Monday 2 March): the follow-up is from tomorrow
    clock.set(datetime(2026, 3, 3, 0, 0, tzinfo=SHANGHAI))
    assert await due() == [plain.id, busy.id]

    await attempt(runtime, busy.id, 1, clock.now(), state="placing")  # on the phone now: not twice at once
    assert await due() == [plain.id]
    clock.advance(timedelta(minutes=5))
    await attempt(runtime, plain.id, 1, clock.now())
    assert await due() == []  # plain rang out a moment ago: it waits retry_interval_s
    clock.advance(timedelta(seconds=7199))
    assert plain.id not in await due()
    clock.advance(timedelta(seconds=1))
    assert plain.id in await due()
    await attempt(runtime, plain.id, 2, clock.now(), state="busy")
    clock.advance(timedelta(hours=2))
    await attempt(runtime, plain.id, 3, clock.now(), state="no_key")
    clock.advance(timedelta(days=2))
    assert plain.id not in await due()  # three tries: it waits for an operator (人工回访)
