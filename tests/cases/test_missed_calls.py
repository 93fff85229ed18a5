"""未接来电待回拨 without a telephone: who sees which missed call, masked numbers, 无需回拨, refusals writing nothing.

Returning a missed call through the real Asterisk is in ``tests/cases/asterisk/test_calls.py``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from cases.callback import CallbackService
from common.clock import ManualClock
from common.errors import Conflict, InvalidInput
from server import Runtime
from storage.models import AuditEntry, Case, MissedCall
from tests.cases.conftest import County, People

_linkedids = itertools.count(1)


async def missed_call(runtime: Runtime, clock: ManualClock, **fields: Any) -> MissedCall:
    values: dict[str, Any] = {
        "linkedid": f"missed-{next(_linkedids)}", "caller_number": "13800002222", "caller_withheld": False,
        "at": clock.now(), "stage": "welcome", "reason": "hung_up_at_welcome", "sealed": False,
        "callback_state": "pending", "callback_attempts": 0, "test_call": False, "created_at": clock.now(),
    }  # fmt: skip
    async with runtime.sessions() as session:
        missed = MissedCall(**(values | fields))
        session.add(missed)
        await session.commit()
        return missed


@dataclass
class Missed:
    in_a: MissedCall
    in_b: MissedCall
    sealed: MissedCall
    test_call: MissedCall


@pytest.fixture
async def missed(runtime: Runtime, county: County, clock: ManualClock) -> Missed:
    return Missed(
        in_a=await missed_call(runtime, clock, township_id=county.township_a, caller_number="13800001111"),
        in_b=await missed_call(runtime, clock, township_id=county.township_b),
        sealed=await missed_call(
            runtime, clock, township_id=county.township_a, sealed=True, ivr_choice="3", caller_number="13900009999"
        ),
        test_call=await missed_call(runtime, clock, township_id=county.township_a, test_call=True),
    )


async def cases(runtime: Runtime) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Case)) or 0)


async def test_each_role_sees_its_own_missed_calls_with_numbers_masked_as_the_cases_are(
    people: People, missed: Missed
) -> None:
    async def listed(person: str) -> dict[int, str | None]:
        body = await people.all()[person].client.get_json("/api/v1/missed-calls")
        return {item["id"]: item["caller"] for item in body["items"]}

    assert await listed("operator_a") == {missed.in_a.id: "13800001111"}
    assert await listed("operator_county") == {missed.in_a.id: "13800001111", missed.in_b.id: "13800002222"}
    assert await listed("inspector") == {
        missed.in_a.id: "13800001111", missed.in_b.id: "13800002222", missed.sealed.id: "13900009999"
    }  # fmt: skip
    assert (await people.leader.client.get("/api/v1/missed-calls")).status == 403
    page = await (await people.operator_county.client.get("/missed-calls")).text()
    assert "13800001111" in page and "13900009999" not in page and "139****9999" not in page


async def test_without_telephony_a_missed_call_cannot_be_returned_and_no_case_is_left_behind(
    runtime: Runtime, people: People, missed: Missed
) -> None:
    assert not runtime.cases.callbacks.available
    operator = people.operator_county.client
    response = await operator.post(f"/api/v1/missed-calls/{missed.in_a.id}/callback")
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "callback.no_telephony"
    assert await cases(runtime) == 0
    page = await (await operator.get("/missed-calls")).text()
    assert f"/missed-calls/{missed.in_a.id}/callback" not in page and "无需回拨" in page


class StubLink:
    """Enough of an AMI link for asking a callback: the request is only queued, never placed here."""

    connected = False

    def add_listener(self, _listener: Any) -> None:
        pass


async def test_an_operator_without_a_phone_gets_a_message_and_no_case_while_one_with_a_phone_gets_both(
    runtime: Runtime, people: People, missed: Missed, clock: ManualClock
) -> None:
    link: Any = StubLink()
    callbacks = CallbackService(runtime.sessions, clock, runtime.cases.workflow, link, runtime.cases.callbacks.config)
    with pytest.raises(InvalidInput) as no_phone:
        await callbacks.request_for_missed(people.operator_a.principal, missed.in_a.id)
    assert no_phone.value.code == "callback.no_operator_phone"
    assert await cases(runtime) == 0
    case, attempt = await callbacks.request_for_missed(people.operator_county.principal, missed.in_a.id)
    assert (case.channel, case.caller_number, attempt.state) == ("hotline", "13800001111", "requested")
    # Asked again while the first is waiting: the same case, and one callback at a time.
    with pytest.raises(Conflict):
        await callbacks.request_for_missed(people.operator_county.principal, missed.in_a.id)
    assert await cases(runtime) == 1


async def test_no_callback_needed_takes_a_reason_once_and_a_sealed_missed_call_is_not_there_for_operators(
    runtime: Runtime, people: People, missed: Missed
) -> None:
    operator = people.operator_county.client
    base = f"/api/v1/missed-calls/{missed.in_a.id}/dismiss"
    empty = await operator.post(base, json={"reason": " "})
    assert empty.status == 400 and "原因" in (await empty.json())["error"]["message"]
    done = await operator.post_json(base, {"reason": "打错了"})
    assert done["callback_state"] == "not_needed"
    assert (await operator.post(base, json={"reason": "再来一次"})).status == 409
    sealed = await operator.post(f"/api/v1/missed-calls/{missed.sealed.id}/dismiss", json={"reason": "x"})
    assert sealed.status == 404
    await runtime.cases.access.denials.flush()  # refusals are written by their own queue
    async with runtime.sessions() as session:
        statement = select(AuditEntry.action).where(AuditEntry.action.like("missed_call.%")).order_by(AuditEntry.id)
        actions = (await session.scalars(statement)).all()
    assert list(actions) == ["missed_call.dismiss", "missed_call.sealed_denied"]
    assert (await people.inspector.client.get_json("/api/v1/missed-calls?state=not_needed"))["total"] == 1
