"""One call at production timings: an old villager who presses nothing is waited for, then heard."""

from __future__ import annotations

import pytest

from settings import IvrSettings
from tests.support.asterisk import Hotline


@pytest.mark.ivr(production=True)
async def test_a_silent_caller_at_production_timings_is_waited_for_recorded_and_given_her_number(
    hotline: Hotline,
) -> None:
    defaults = IvrSettings()
    settings = hotline.runtime.settings.ivr
    assert (settings.menu_timeout_s, settings.record_silence_s) == (defaults.menu_timeout_s, defaults.record_silence_s)
    assert 15 <= settings.menu_timeout_s <= 20
    call = await hotline.call(keys=(), timeout_s=240)
    assert call.stages[:3] == ["welcome", "menu", "recording"]
    # She was really given the whole production wait (after the menu prompt itself) before being asked to speak.
    waited = call.stage_times[2] - call.stage_times[1]
    assert settings.menu_timeout_s <= waited <= settings.menu_timeout_s + 40, waited
    # The message ended on the production silence, not sooner: her sentence, then record_silence_s of quiet.
    assert call.stages[3] == "recorded"
    recorded = call.stage_times[3] - call.stage_times[2]
    assert recorded >= hotline.media.villager_duration_s + settings.record_silence_s - 1.0, recorded
    outcome = await hotline.settled(call.linkedid)
    case = outcome["case"]
    assert call.read_back == case["number"] and case["ivr_choice"] == ""
    (recording,) = case["recordings"]
    assert not recording["empty"]
    # Record's silence detection trims the silence that ended the message down to about a second.
    assert hotline.media.villager_duration_s - 0.5 <= recording["duration_s"] <= hotline.media.villager_duration_s + 3
