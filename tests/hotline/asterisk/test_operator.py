"""Key 0: the operator's conversation is recorded into the call's case; nobody answering means a message."""

from __future__ import annotations

import pytest

from tests.support.asterisk import OPERATOR_SENTENCE, Hotline


@pytest.mark.ivr(operator_dial="Local/answer@cx-test-operator")
async def test_a_transfer_to_the_operator_is_recorded_into_the_same_case(hotline: Hotline) -> None:
    call = await hotline.call(keys=("0",), speak=False)
    assert "transfer" in call.stages and "talked" in call.stages
    outcome = await hotline.settled(call.linkedid)
    case = outcome["case"]
    assert case["ivr_choice"] == "0" and call.read_back == case["number"]
    (recording,) = case["recordings"]
    assert recording["kind"] == "transfer" and not recording["empty"]
    # The operator stand-in says one sentence and hangs up: the recording is about that long.
    assert hotline.telephony.media is not None
    operator = await hotline.telephony.media.sentence(OPERATOR_SENTENCE, "test-operator")
    from hotline.recordings import inspect

    spoken = inspect(hotline.telephony.paths.media.to_host(f"{operator}.wav")).duration_s
    assert spoken - 0.5 <= recording["duration_s"] <= spoken + 2.0


@pytest.mark.ivr(operator_dial="Local/answer@cx-test-operator")
async def test_a_caller_who_hangs_up_while_talking_to_the_operator_still_gets_a_case_with_the_recording(
    hotline: Hotline,
) -> None:
    call = await hotline.call(keys=("0",), speak=False, hangup_at="talked")
    assert call.stages[-1] == "talked" and call.read_back is None
    outcome = await hotline.settled(call.linkedid)
    assert outcome["outcome"] == "case"
    case = outcome["case"]
    assert case["ivr_choice"] == "0" and case["category"] == "petition"
    (recording,) = case["recordings"]
    assert recording["kind"] == "transfer"  # MixMonitor's file, moved once it was closed
    assert hotline.spool() == []


@pytest.mark.ivr(operator_dial="Local/noanswer@cx-test-operator", operator_ring_s=2)
async def test_an_operator_who_does_not_answer_gets_a_message_instead(hotline: Hotline) -> None:
    call = await hotline.call(keys=("0",))
    assert call.stages[:4] == ["welcome", "menu", "transfer", "recording"]
    outcome = await hotline.settled(call.linkedid)
    case = outcome["case"]
    assert case["ivr_choice"] == "0" and call.read_back == case["number"]
    (recording,) = case["recordings"]
    assert recording["kind"] == "message" and not recording["empty"]


async def test_with_no_operator_configured_key_0_takes_a_message(hotline: Hotline) -> None:
    call = await hotline.call(keys=("0",))
    assert call.stages[:4] == ["welcome", "menu", "transfer", "recording"]
    assert (await hotline.settled(call.linkedid))["outcome"] == "case"


@pytest.mark.ivr(operator_dial="Local/noanswer@cx-test-operator", operator_ring_s=60)
async def test_a_caller_who_hangs_up_while_the_operator_rings_is_a_missed_call_to_return(hotline: Hotline) -> None:
    call = await hotline.call(keys=("0",), speak=False, hangup_at="transfer")
    assert call.stages[-1] == "transfer"
    outcome = await hotline.settled(call.linkedid)
    assert outcome["outcome"] == "missed" and "case" not in outcome
    missed = outcome["missed_call"]
    assert missed["reason"] == "operator_not_reached" and missed["ivr_choice"] == "0"
    assert missed["callback_state"] == "pending" and missed["caller_number"] == "13800001111"
