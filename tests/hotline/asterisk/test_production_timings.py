"""One call at production timings: an old villager who presses nothing is waited for, then heard."""

from __future__ import annotations

import pytest

from settings import IvrSettings
from tests.hotline.asterisk.conftest import Hotline


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
    outcome = await hotline.settled(call.linkedid)
    case = outcome["case"]
    assert call.read_back == case["number"] and case["ivr_choice"] == ""
    (recording,) = case["recordings"]
    assert not recording["empty"]
    # Record's silence detection trims the silence that ended the message down to about a second.
    assert hotline.media.villager_duration_s - 0.5 <= recording["duration_s"] <= hotline.media.villager_duration_s + 3
