"""Working-day counting switched on in the settings reaches every deadline the workflow sets (issue: cases, clocks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.clock import ManualClock
from settings import CasesSettings, Settings
from tests.cases.conftest import CaseMaker, County, People, advance_days
from tests.conftest import make_settings


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "data", database_url, cases=CasesSettings(day_counting="working"))


async def test_with_working_days_the_deadlines_skip_weekends_and_holidays_and_count_make_up_saturdays(
    county: County, people: People, hotline_case: CaseMaker, clock: ManualClock
) -> None:
    case = await hotline_case(township_id=county.township_a)  # Monday 2 March 2026
    operator = people.operator_a.client
    base = f"/api/v1/cases/{case.id}"
    # 15 working days after 2 March: 3–6, 9–13, 16–20 March (14), Monday 23 March (15).
    assert (await operator.get_json(base))["acceptance_due"] == "2026-03-23T16:00:00+00:00"
    advance_days(clock, 1)
    accepted = await operator.post_json(f"{base}/accept", {})
    # 60 working days after Tuesday 3 March: 20 in March; April without Monday 6 (清明) 21 → 41; May without
    # 1, 4, 5 (劳动节) but with Saturday 9 (调休上班): 6–8 (44), 9 (45), 11–15 (50), 18–22 (55), 25–29 (60).
    assert accepted["resolution_due"] == "2026-05-29T16:00:00+00:00"
    assert accepted["days_left"] == 60
