"""Villagers calling the hotline through the real Asterisk: each call becomes exactly one case or missed call."""

from __future__ import annotations

import asyncio
from pathlib import PurePosixPath

import pytest
from sqlalchemy import func, select

from hotline.ami import Message
from hotline.dialtest import SimulatedVillager, VillagerScript
from storage.models import Call, Case, MissedCall
from tests.support.asterisk import Hotline


def assert_about(actual: float, expected: float, *, below: float = 0.5, above: float = 3.0) -> None:
    assert expected - below <= actual <= expected + above, (actual, expected)


async def test_a_complaint_becomes_a_case_with_its_recording_and_the_number_is_read_back(hotline: Hotline) -> None:
    names: set[str] = set()

    def listen(event: Message) -> None:
        names.add(event.get("CallerIDName", ""))

    hotline.telephony.link.add_listener(listen)
    try:
        call = await hotline.call(keys=("1",), caller_name="王大娘")
    finally:
        hotline.telephony.link.remove_listener(listen)
    outcome = await hotline.settled(call.linkedid)
    assert outcome["outcome"] == "case"
    case = outcome["case"]
    # A Chinese caller name crosses AMI (the service's link) and FastAGI intact.
    assert "王大娘" in names and case["caller_name"] == "王大娘"
    assert call.read_back == case["number"] and call.read_back_playback == "SUCCESS"
    assert not call.pin_read_back
    assert case["status"] == "new" and case["category"] == "petition" and not case["sealed"]
    assert case["caller_number"] == "13800001111" and case["ivr_choice"] == "1" and case["test_call"]
    (recording,) = case["recordings"]
    assert recording["kind"] == "message" and not recording["empty"]
    # The villager's sentence plus what is left of the silence that ends a message.
    assert_about(recording["duration_s"], hotline.media.villager_duration_s)
    assert hotline.spool() == []


async def test_a_caller_who_presses_nothing_is_asked_to_speak_and_still_recorded(hotline: Hotline) -> None:
    call = await hotline.call(keys=())
    assert call.stages[:3] == ["welcome", "menu", "recording"]
    outcome = await hotline.settled(call.linkedid)
    case = outcome["case"]
    assert case["ivr_choice"] == "" and case["category"] == "petition"
    assert call.read_back == case["number"]
    (recording,) = case["recordings"]
    assert_about(recording["duration_s"], hotline.media.villager_duration_s)


async def test_star_repeats_the_menu_and_after_three_wrong_keys_she_is_simply_asked_to_speak(
    hotline: Hotline,
) -> None:
    attempts = hotline.runtime.settings.ivr.menu_attempts
    assert attempts == 3
    call = await hotline.call(keys=("*", "7", "8", "9"))
    # "*" brings the menu again without counting as a wrong key; the third wrong key ends the menu.
    assert call.stages[:6] == ["welcome", "menu", "menu", "menu", "menu", "recording"]
    assert call.pressed == ["*", "7", "8", "9"]
    case = (await hotline.settled(call.linkedid))["case"]
    assert case["ivr_choice"] == "" and case["category"] == "petition" and call.read_back == case["number"]


async def test_a_caller_who_hangs_up_during_the_recording_keeps_her_message(hotline: Hotline) -> None:
    call = await hotline.call(keys=("1",), hangup_at="recording")
    assert call.read_back is None  # she was gone before the number could be read
    outcome = await hotline.settled(call.linkedid)
    assert outcome["outcome"] == "case"
    (recording,) = outcome["case"]["recordings"]
    assert not recording["empty"]
    assert_about(recording["duration_s"], hotline.media.villager_duration_s, above=1.0)


async def test_a_caller_who_hangs_up_at_the_welcome_becomes_a_missed_call_to_return(hotline: Hotline) -> None:
    call = await hotline.call(hangup_at="welcome", speak=False)
    outcome = await hotline.settled(call.linkedid)
    assert outcome["outcome"] == "missed" and "case" not in outcome
    missed = outcome["missed_call"]
    assert missed["reason"] == "hung_up_at_welcome" and missed["caller_number"] == "13800001111"
    assert missed["callback_state"] == "pending"


async def test_a_caller_who_hangs_up_between_two_prompts_is_kept_as_ended_by_her_not_by_the_system(
    hotline: Hotline,
) -> None:
    # Her hang-up reaches the IVR's channel while it runs dialplan that reads no audio (as between any
    # two priorities; made long here, cx-test-unread-hangup): it is queued, unread, when the hang-up
    # handler decides who ended the call. Read as "no cause", it was taken for Asterisk stopping (an
    # outage test hanging up just as the read-back began caught it under load, 2 of 5 full runs).
    villager = SimulatedVillager(hotline.telephony.link, hotline="Local/s@cx-test-unread-hangup")
    script = VillagerScript(caller="13800001111", keys=(), audio=None, hangup_at="welcome")
    call = await villager.call(script, timeout_s=60)
    assert call.ended and call.stages == ["welcome"]
    outcome = await hotline.settled(call.linkedid)
    assert outcome["call"]["ended_by"] == "caller"
    assert outcome["missed_call"]["reason"] == "hung_up_at_welcome"


async def test_a_caller_who_hangs_up_at_the_menu_becomes_a_missed_call_too(hotline: Hotline) -> None:
    call = await hotline.call(hangup_at="menu", speak=False)
    missed = (await hotline.settled(call.linkedid))["missed_call"]
    assert missed["reason"] == "hung_up_at_menu" and missed["callback_state"] == "pending"


async def test_a_caller_who_never_speaks_is_asked_again_then_kept_as_a_missed_call_with_the_silence(
    hotline: Hotline,
) -> None:
    attempts = hotline.runtime.settings.ivr.record_attempts
    call = await hotline.call(keys=("1",), speak=False)
    assert call.stages.count("recording") == attempts and call.read_back is None
    outcome = await hotline.settled(call.linkedid)
    assert outcome["outcome"] == "missed" and "case" not in outcome
    missed = outcome["missed_call"]
    assert missed["reason"] == "nothing_said" and missed["ivr_choice"] == "1"
    (recording,) = missed["recordings"]  # both tries appended to one file, kept for the operator
    assert recording["kind"] == "message" and recording["duration_s"] > 0
    assert hotline.spool() == []


async def test_a_discipline_report_is_sealed_from_the_first_moment(hotline: Hotline) -> None:
    call = await hotline.call(keys=("3",))
    outcome = await hotline.settled(call.linkedid)
    case = outcome["case"]
    assert case["category"] == "discipline" and case["sealed"] and case["ivr_choice"] == "3"
    assert outcome["call"]["settled_by"] == "fastagi"  # created sealed by the first writer
    assert call.read_back == case["number"]
    (recording,) = case["recordings"]
    assert recording["kind"] == "message" and not recording["empty"]


async def test_a_withheld_number_gets_a_case_and_hears_its_pin(hotline: Hotline) -> None:
    call = await hotline.call(keys=("1",), caller="anonymous")
    outcome = await hotline.settled(call.linkedid)
    case = outcome["case"]
    assert case["caller_number"] is None and case["caller_withheld"]
    assert call.pin_read_back  # she cannot be recognised by her number at a status query


async def test_ten_calls_at_once_make_ten_cases_each_with_its_own_recording(hotline: Hotline) -> None:
    callers = [f"1390000{index:04d}" for index in range(10)]
    calls = await asyncio.gather(
        *(hotline.call(keys=("1",) if index % 2 else (), caller=caller) for index, caller in enumerate(callers))
    )
    numbers = set()
    for call, caller in zip(calls, callers, strict=True):
        outcome = await hotline.settled(call.linkedid)
        case = outcome["case"]
        assert case["caller_number"] == caller and call.read_back == case["number"]
        (recording,) = case["recordings"]
        assert not recording["empty"]
        numbers.add(case["number"])
    assert len(numbers) == 10
    async with hotline.runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Case)) == 10
        assert await session.scalar(select(func.count()).select_from(Call)) == 10
        assert await session.scalar(select(func.count()).select_from(MissedCall)) == 0
    assert hotline.spool() == []


@pytest.mark.ivr(record_max_s=6, record_warning_s=3)
async def test_a_caller_still_speaking_at_the_limit_hears_a_warning_and_that_her_message_was_cut(
    hotline: Hotline,
) -> None:
    telephony = hotline.telephony
    assert telephony.prompts is not None
    await telephony.prompts.install()  # the warning says this test's seconds
    assert telephony.prompts.manifest()["record_warning"]["text"] == "请在三秒内说完。"
    played: list[str] = []
    limit: list[str] = []

    def listen(event: Message) -> None:
        if event.get("Event") == "Newexten" and event.get("Application") == "Playback":
            played.extend(part.rsplit("/", 1)[-1] for part in event.get("AppData", "").split("&"))
        if event.get("UserEvent") == "CxRecordLimit":
            limit.append(event.get("Stage", ""))

    # She talks on and on: her sentence three times over, far past the six seconds a message may last.
    audio = PurePosixPath("&".join([str(hotline.media.villager)] * 3))
    telephony.link.add_listener(listen)
    try:
        call = await telephony.villager.call(VillagerScript(caller="13800003333", keys=("1",), audio=audio))
    finally:
        telephony.link.remove_listener(listen)
    assert limit == ["warned", "cut"]
    # A short tone and 请在三秒内说完 before the limit; at it, that the message was cut; then her number.
    order = [played.index(name) for name in ("beep", "record_warning", "record_cut", "recorded", "case_number_is")]
    assert order == sorted(order), played
    case = (await hotline.settled(call.linkedid))["case"]
    assert call.read_back == case["number"] and case["number_told"] is True
    (recording,) = case["recordings"]
    # Both parts of her message, in one file: up to the warning, and the three seconds after it.
    assert 5.0 <= recording["duration_s"] <= 6.5, recording
