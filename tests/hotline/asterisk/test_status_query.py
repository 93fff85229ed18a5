"""The status query (key 2): only to the phone that filed the case or with its PIN, never for a sealed case."""

from __future__ import annotations

from typing import Any

from tests.support.asterisk import Hotline


async def filed_case(
    hotline: Hotline, *, keys: tuple[str, ...] = ("1",), caller: str = "13800001111"
) -> dict[str, Any]:
    call = await hotline.call(keys=keys, caller=caller)
    case: dict[str, Any] = (await hotline.settled(call.linkedid))["case"]
    return case


async def test_the_filing_phone_hears_the_status_of_its_case(hotline: Hotline) -> None:
    case = await filed_case(hotline)
    call = await hotline.call(keys=("2", f"{case['number']}#"), speak=False)
    assert call.status_results[-1]["Result"] == "found"
    assert call.status_results[-1]["Status"] == "new"
    assert call.status_results[-1]["Playback"] == "SUCCESS"  # she heard the status sentence itself
    outcome = await hotline.settled(call.linkedid)
    # A question about a case is neither a new case nor a missed call.
    assert outcome["outcome"] == "status_query" and "case" not in outcome and "missed_call" not in outcome


async def test_a_mistyped_number_gets_not_found_and_another_try(hotline: Hotline) -> None:
    case = await filed_case(hotline)
    number = case["number"]
    typo = number[:3] + number[4] + number[3] + number[5:] if number[3] != number[4] else number[:-1] + "9"
    call = await hotline.call(keys=("2", f"{typo}#", f"{number}#"), speak=False)
    assert [result["Result"] for result in call.status_results] == ["not_found", "found"]


async def test_another_phone_needs_the_pin(hotline: Hotline) -> None:
    case = await filed_case(hotline)
    async with hotline.runtime.sessions() as session:
        from storage.models import Case

        filed = await session.get(Case, case["id"])
        assert filed is not None
        pin = filed.pin
    wrong_pin = "0000" if pin != "0000" else "1111"
    call = await hotline.call(
        keys=("2", f"{case['number']}#", f"{wrong_pin}#", f"{pin}#"), speak=False, caller="13911112222"
    )
    assert [result["Result"] for result in call.status_results] == ["wrong_pin", "found"]
    assert call.stages.count("pin") == 2


async def test_a_sealed_case_is_never_read_out_even_to_the_phone_that_filed_it(hotline: Hotline) -> None:
    case = await filed_case(hotline, keys=("3",))
    call = await hotline.call(keys=("2", f"{case['number']}#"), speak=False)
    assert [result["Result"] for result in call.status_results] == ["confidential"]
