"""回拨 and 回访 through the real Asterisk: the operator's phone first, then the villager; surveys answered 1, 2, 3."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select

from server import Runtime
from storage.models import Call, Case, CaseLedger, MissedCall, Recording, SurveyAttempt, User
from tests.cases.asterisk.conftest import NOBODY_ANSWERS, VILLAGER_PRESSES, KeyPresser
from tests.cases.conftest import CaseMaker, County, People
from tests.support.asterisk import Hotline

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T | None]], timeout_s: float = 90.0, what: str = "") -> T:
    """Poll until ``check`` returns something (the calls take as long as a loaded machine makes them)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    while True:
        result = await check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s:g} s: {what}")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 1.0)


async def finished_callback(client: Any, case_id: int) -> dict[str, Any]:
    """The case's latest callback attempt once it has ended (answered and hung up, or failed)."""

    async def check() -> dict[str, Any] | None:
        items = (await client.get_json(f"/api/v1/cases/{case_id}/callbacks"))["items"]
        latest: dict[str, Any] | None = items[-1] if items else None
        if latest is None or latest["state"] in ("requested", "placing", "ringing") or not latest["ended_at"]:
            return None
        return latest

    return await eventually(check, what=f"a finished callback on case {case_id}")


async def recordings(runtime: Runtime, case_id: int, kind: str) -> list[Recording]:
    async with runtime.sessions() as session:
        statement = select(Recording).where(Recording.case_id == case_id, Recording.kind == kind)
        return list((await session.scalars(statement)).all())


async def test_a_callback_rings_the_operator_then_the_villager_and_the_conversation_is_kept_with_the_case(
    hotline: Hotline, runtime: Runtime, county: County, people: People, hotline_case: CaseMaker
) -> None:
    case = await hotline_case(township_id=county.township_a)
    operator = people.operator_county.client
    requested = await operator.post(f"/api/v1/cases/{case.id}/callbacks")
    body = await requested.json()
    assert requested.status == 202 and body["state"] == "requested" and body["channel_id"].startswith("cb-")
    again = await operator.post(f"/api/v1/cases/{case.id}/callbacks")
    assert again.status == 409  # one callback at a time per case

    attempt = await finished_callback(operator, case.id)
    assert (attempt["state"], attempt["dial_status"]) == ("answered", "ANSWER")
    await hotline.telephony.tracker.wait_idle(30)
    kept = await eventually(lambda: _nonempty(recordings(runtime, case.id, "callback")), what="callback recording")
    assert kept[0].linkedid == attempt["channel_id"] and kept[0].duration_s > 1.0 and not kept[0].empty
    detail = await operator.get_json(f"/api/v1/cases/{case.id}")
    assert detail["status"] == "new"  # a callback changes no state; it is in the history
    assert detail["history"][-1]["kind"] == "callback" and "已接通" in detail["history"][-1]["note"]
    assert any(item["kind"] == "callback" for item in detail["recordings"])
    async with runtime.sessions() as session:
        calls = await session.scalar(select(func.count()).where(Call.linkedid == attempt["channel_id"]))
        cases = await session.scalar(select(func.count()).select_from(Case))
    assert calls == 1 and cases == 1  # recorded as a placed call, never a new case


async def _nonempty(found: Awaitable[list[T]]) -> list[T] | None:
    result = await found
    return result or None


@pytest.mark.ivr(callback_ring_s=5)
async def test_unanswered_callbacks_are_kept_as_attempts_and_never_placed_again(
    hotline: Hotline, runtime: Runtime, county: County, people: People, hotline_case: CaseMaker
) -> None:
    callbacks = runtime.cases.callbacks
    callbacks.config = dataclasses.replace(callbacks.config, dial_template=NOBODY_ANSWERS, operator_ring_s=3.0)
    case = await hotline_case(township_id=county.township_a)
    operator = people.operator_county.client

    async def operator_phone(endpoint: str) -> None:
        async with runtime.sessions() as session:
            user = await session.scalar(select(User).where(User.username == people.operator_county.username))
            assert user is not None
            user.phone_endpoint = endpoint
            await session.commit()

    # The operator picks up and waits on the line (the villager stand-in answers and stays); nobody answers
    # the villager's phone within ivr.callback_ring_s.
    await operator_phone(VILLAGER_PRESSES)
    assert (await operator.post(f"/api/v1/cases/{case.id}/callbacks")).status == 202
    attempt = await finished_callback(operator, case.id)
    assert attempt["state"] == "villager_unanswered" and attempt["dial_status"] == "NOANSWER"
    # The operator's own phone is not answered: the villager is never dialled.
    await operator_phone(NOBODY_ANSWERS)
    assert (await operator.post(f"/api/v1/cases/{case.id}/callbacks")).status == 202
    second = await finished_callback(operator, case.id)
    assert second["id"] != attempt["id"] and second["state"] == "operator_unanswered"
    await asyncio.sleep(2 * callbacks.config.poll_s + 0.5)
    history = (await operator.get_json(f"/api/v1/cases/{case.id}"))["callbacks"]
    assert [item["state"] for item in history] == ["villager_unanswered", "operator_unanswered"]

    no_phone = await people.operator_a.client.post(f"/api/v1/cases/{case.id}/callbacks")
    assert no_phone.status == 400
    assert "电话" in (await no_phone.json())["error"]["message"]


async def test_a_missed_call_is_returned_becomes_a_case_and_leaves_the_to_call_list(
    hotline: Hotline, runtime: Runtime, county: County, people: People
) -> None:
    async with runtime.sessions() as session:
        missed = MissedCall(
            linkedid="missed-test-1", caller_number="13800002222", caller_withheld=False, township_id=county.township_a,
            at=datetime.now(UTC), stage="welcome", reason="hung_up_at_welcome", sealed=False,
            callback_state="pending", callback_attempts=0, test_call=False, created_at=datetime.now(UTC),
        )  # fmt: skip
        session.add(missed)
        await session.commit()
    operator = people.operator_county.client
    listed = await operator.get_json("/api/v1/missed-calls")
    assert [item["id"] for item in listed["items"]] == [missed.id]
    returned = await operator.post(f"/api/v1/missed-calls/{missed.id}/callback")
    body = await returned.json()
    assert returned.status == 202, body
    attempt = await finished_callback(operator, body["case_id"])
    assert attempt["state"] == "answered"
    async with runtime.sessions() as session:
        refreshed = await session.get(MissedCall, missed.id)
    assert refreshed is not None and refreshed.case_id == body["case_id"]
    assert (refreshed.callback_state, refreshed.callback_attempts) == ("called_back", 1)
    assert (await operator.get_json("/api/v1/missed-calls"))["items"] == []
    case = await operator.get_json(f"/api/v1/cases/{body['case_id']}")
    assert case["channel"] == "hotline" and case["history"][0]["note"] == "回拨未接来电，转为案件"


async def _resolved(runtime: Runtime, people: People, county: County, make: CaseMaker, **extra: Any) -> Case:
    case = await make(township_id=county.township_a, **extra)
    actor = people.inspector.principal if case.sealed else people.operator_county.principal
    workflow = runtime.cases.workflow
    await workflow.assign(actor, case.id, unit_id=county.unit_a, leader_name="张书记")
    await workflow.resolve(actor, case.id, outcome="resolved", result="已修好", told_via="phone")
    return case


async def _ledger(runtime: Runtime, case_id: int) -> tuple[str, str | None, str | None]:
    async with runtime.sessions() as session:
        case = await session.get(Case, case_id)
        ledger = await session.get(CaseLedger, case_id)
    assert case is not None and ledger is not None
    return case.status, ledger.satisfaction, ledger.followup_method


async def _attempts(runtime: Runtime, case_id: int) -> list[SurveyAttempt]:
    async with runtime.sessions() as session:
        statement = select(SurveyAttempt).where(SurveyAttempt.case_id == case_id).order_by(SurveyAttempt.id)
        return list((await session.scalars(statement)).all())


async def test_the_follow_up_call_asks_and_the_villagers_keys_1_2_3_update_the_case(
    hotline: Hotline,
    runtime: Runtime,
    county: County,
    people: People,
    hotline_case: CaseMaker,
    key_presser: KeyPresser,
) -> None:
    surveys = runtime.cases.surveys
    surveys.config = dataclasses.replace(surveys.config, dial_template=VILLAGER_PRESSES)
    sealed = await _resolved(runtime, people, county, hotline_case, category="discipline")
    test_call = await _resolved(runtime, people, county, hotline_case, test_call=True)
    cases = {}
    for key in ("1", "2", "3"):
        case = await _resolved(runtime, people, county, hotline_case)
        key_presser.keys[case.id] = key
        cases[key] = case.id

    async def all_answered() -> bool:
        states = [await _ledger(runtime, case_id) for case_id in cases.values()]
        return all(status != "resolved" for status, _satisfaction, _method in states)

    await eventually(all_answered, 120, "three follow-ups answered")
    assert await _ledger(runtime, cases["1"]) == ("followed_up", "satisfied", "auto_call")
    assert await _ledger(runtime, cases["2"]) == ("followed_up", "basically_satisfied", "auto_call")
    assert await _ledger(runtime, cases["3"]) == ("in_progress", "unsatisfied", "auto_call")
    for key, case_id in cases.items():
        attempts = await _attempts(runtime, case_id)
        assert [(attempt.state, attempt.answer) for attempt in attempts] == [("completed", key)]
    reopened = await people.operator_county.client.get_json(f"/api/v1/cases/{cases['3']}")
    assert [event["kind"] for event in reopened["history"]][-2:] == ["followed_up", "reopened"]
    assert reopened["history"][-2]["username"] == "system:followup"
    # Never a sealed case's reporter, never a dial test's phone.
    assert await _attempts(runtime, sealed.id) == [] and await _attempts(runtime, test_call.id) == []
    await hotline.telephony.tracker.wait_idle(30)
    kept = await eventually(lambda: _nonempty(recordings(runtime, cases["1"], "survey")), what="survey recording")
    assert kept[0].duration_s > 1.0


@pytest.mark.ivr(survey_timeout_s=2.0)
async def test_an_unanswered_follow_up_is_tried_again_and_counts_when_answered(
    hotline: Hotline,
    runtime: Runtime,
    county: County,
    people: People,
    hotline_case: CaseMaker,
    key_presser: KeyPresser,
) -> None:
    surveys = runtime.cases.surveys
    surveys.config = dataclasses.replace(surveys.config, dial_template=NOBODY_ANSWERS, ring_s=3.0, attempts=3)
    case = await _resolved(runtime, people, county, hotline_case)

    async def first_failed() -> SurveyAttempt | None:
        attempts = await _attempts(runtime, case.id)
        return attempts[0] if attempts and attempts[0].state not in ("placing", "answered") else None

    first = await eventually(first_failed, what="the first follow-up call to ring out")
    assert first.state in ("no_answer", "failed") and first.attempt == 1
    key_presser.keys[case.id] = "1"
    surveys.config = dataclasses.replace(surveys.config, dial_template=VILLAGER_PRESSES)

    async def answered() -> bool:
        return (await _ledger(runtime, case.id))[0] == "followed_up"

    await eventually(answered, 120, "the retried follow-up answered")
    attempts = await _attempts(runtime, case.id)
    assert [attempt.attempt for attempt in attempts] == [1, 2]
    assert attempts[1].state == "completed" and attempts[1].answer == "1"
    history = (await people.operator_county.client.get_json(f"/api/v1/cases/{case.id}"))["history"]
    assert "自动回访第1次" in (history[-2]["note"] or "") and history[-1]["kind"] == "followed_up"
