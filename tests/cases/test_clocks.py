"""Petition clocks: calendar and working days, the holiday and make-up-day table, the overdue cutoff."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from cases.clocks import STATUTORY_DAYS_OFF, ClockPolicy, Deadlines, WorkCalendar, check_year
from common.clock import ManualClock
from server import Runtime
from tests.cases.conftest import SHANGHAI, People

pytestmark = pytest.mark.usefixtures("county")


def policy(**overrides: object) -> ClockPolicy:
    return ClockPolicy(zone=SHANGHAI, **overrides)  # type: ignore[arg-type]


async def deadlines(runtime: Runtime, **overrides: object) -> Deadlines:
    calendar = await runtime.cases.holidays.calendar()
    return Deadlines(policy(**overrides), calendar)


def at(day: str, hour: int = 10) -> datetime:
    return datetime.combine(date.fromisoformat(day), datetime.min.time(), SHANGHAI) + timedelta(hours=hour)


async def test_fifteen_calendar_days_start_the_day_after_and_end_at_local_midnight(runtime: Runtime) -> None:
    clocks = await deadlines(runtime)
    deadline = clocks.acceptance_deadline(at("2026-03-02", 23))
    assert clocks.local_date(deadline - timedelta(seconds=1)) == date(2026, 3, 17)
    assert deadline == datetime(2026, 3, 18, 0, 0, tzinfo=SHANGHAI)


async def test_a_calendar_deadline_on_a_holiday_moves_to_the_next_working_day(runtime: Runtime) -> None:
    clocks = await deadlines(runtime)
    # 60 days after 2 March is 1 May (劳动节, 1–5 May off): due on Wednesday 6 May.
    assert clocks.due_day(date(2026, 3, 2), 60) == date(2026, 5, 6)
    unshifted = await deadlines(runtime, shift_off_rest_days=False)
    assert unshifted.due_day(date(2026, 3, 2), 60) == date(2026, 5, 1)


async def test_working_days_skip_the_spring_festival_and_count_make_up_saturdays(runtime: Runtime) -> None:
    clocks = await deadlines(runtime, counting="working")
    # From Tuesday 10 February 2026: 11, 12, 13, 14 (Saturday, 调休上班) = 4; 15–23 off;
    # 24, 25, 26, 27, 28 (Saturday, 调休上班) = 9; 2, 3, 4, 5, 6 March = 14; 9 March = 15.
    assert clocks.due_day(date(2026, 2, 10), 15) == date(2026, 3, 9)
    assert clocks.calendar.is_working_day(date(2026, 2, 14))
    assert not clocks.calendar.is_working_day(date(2026, 2, 16))
    assert not clocks.calendar.is_working_day(date(2026, 3, 7))


def test_without_a_holiday_table_only_weekends_rest() -> None:
    clocks = Deadlines(policy(counting="working"), WorkCalendar())
    assert clocks.due_day(date(2026, 2, 13), 1) == date(2026, 2, 16)  # Friday → Monday


async def test_the_overdue_cutoff_agrees_with_each_cases_own_deadline_all_year(runtime: Runtime) -> None:
    for counting in ("calendar", "working"):
        clocks = await deadlines(runtime, counting=counting)
        now = at("2026-10-12", 8)
        cutoff = clocks.created_cutoff(now, 15)
        day = date(2026, 8, 1)
        while day <= date(2026, 10, 12):
            for hour in (0, 12, 23):
                created = at(day.isoformat(), hour)
                assert (created < cutoff) == (now >= clocks.acceptance_deadline(created)), (counting, created)
            day += timedelta(days=1)


async def test_an_extension_counts_from_the_old_due_day(runtime: Runtime) -> None:
    clocks = await deadlines(runtime)
    old = clocks.end_of(date(2026, 6, 1))
    extended = clocks.extend(old, 30)
    assert clocks.local_date(extended - timedelta(seconds=1)) == date(2026, 7, 1)


async def test_a_reopened_case_gets_back_the_days_it_had_left_but_at_least_the_minimum(runtime: Runtime) -> None:
    clocks = await deadlines(runtime, reopen_min_days=15)
    old = clocks.end_of(date(2026, 6, 30))
    plenty = clocks.reopened_deadline(at("2026-06-01"), old, at("2026-06-10"))
    assert clocks.local_date(plenty - timedelta(seconds=1)) == date(2026, 7, 9)  # 29 days left, from 10 June
    late = clocks.reopened_deadline(at("2026-06-29"), old, at("2026-07-06"))
    assert clocks.local_date(late - timedelta(seconds=1)) == date(2026, 7, 21)  # only 1 day left: 15 days


async def test_an_admin_edits_the_holiday_table_and_the_next_deadline_follows(
    runtime: Runtime, people: People, clock: ManualClock
) -> None:
    admin = people.admin.client
    seeded = await admin.get_json("/api/v1/holidays?year=2026")
    assert {"day": "2026-02-14", "kind": "workday", "kind_label": "调休上班", "name": "春节调休"} in seeded
    assert sum(1 for row in seeded if row["kind"] == "holiday") == 33
    # A local holiday declared on Tuesday 17 March (the day a case from 2 March is due): it moves to the 18th.
    await (await admin.client.put("/api/v1/holidays/2026-03-17", json={"kind": "holiday", "name": "旗庆"})).json()
    clocks = await runtime.cases.holidays.deadlines()
    assert clocks.due_day(date(2026, 3, 2), 15) == date(2026, 3, 18)
    response = await admin.delete("/api/v1/holidays/2026-03-17")
    assert response.status == 204
    clocks = await runtime.cases.holidays.deadlines()
    assert clocks.due_day(date(2026, 3, 2), 15) == date(2026, 3, 17)


async def test_only_admins_edit_the_holiday_table_and_a_weekday_cannot_be_a_make_up_day(people: People) -> None:
    refused = await people.operator_county.client.client.put(
        "/api/v1/holidays/2026-03-17", json={"kind": "holiday", "name": "x"}
    )
    assert refused.status == 403
    wrong = await people.admin.client.client.put("/api/v1/holidays/2026-03-17", json={"kind": "workday", "name": "x"})
    assert wrong.status == 400
    assert "周六或周日" in (await wrong.json())["error"]["message"]
    not_a_date = await people.admin.client.client.put(
        "/api/v1/holidays/..%2F..%2Fetc", json={"kind": "holiday", "name": "x"}
    )
    assert not_a_date.status == 404
    page = await people.admin.client.get("/admin/holidays?year=2026")
    html = await page.text()
    assert page.status == 200 and "春节调休" in html and "2026-10-10" in html


# The festivals' own dates, from the lunar calendar and 清明's solar term (not from the table under test):
# each holiday period must contain its festival.
FESTIVALS = {
    2025: {"元旦": "2025-01-01", "春节": "2025-01-29", "清明节": "2025-04-04", "劳动节": "2025-05-01",
           "端午节": "2025-05-31", "中秋节": "2025-10-06", "国庆节": "2025-10-01"},
    2026: {"元旦": "2026-01-01", "春节": "2026-02-17", "清明节": "2026-04-05", "劳动节": "2026-05-01",
           "端午节": "2026-06-19", "中秋节": "2026-09-25", "国庆节": "2026-10-01"},
}  # fmt: skip
# Days off in each year's published arrangement (国办发明电〔2024〕12号 and 〔2025〕7号): 2025 has 1 + 8 + 3
# + 5 + 3 + 8, 2026 has 3 + 9 + 3 + 5 + 3 + 3 + 7.
DAYS_OFF = {2025: 28, 2026: 33}


@pytest.mark.parametrize("year", [2025, 2026])
async def test_the_seeded_holiday_table_is_consistent_for_each_year(runtime: Runtime, year: int) -> None:
    rows = await runtime.cases.holidays.list_year(year)
    days_off = {row.day: row.name for row in rows if row.kind == "holiday"}
    make_up = {row.day: row.name for row in rows if row.kind == "workday"}
    assert len(days_off) == DAYS_OFF[year]
    # 调休上班 days are Saturdays or Sundays, each near a period of the festival it pays for.
    for day, name in make_up.items():
        assert day.weekday() >= 5, (day, name)
        festival = name.removesuffix("调休")
        near = [other for other, period in days_off.items() if festival in period and abs((other - day).days) <= 14]
        assert near, (day, name)
    for festival, day_text in FESTIVALS[year].items():
        day = date.fromisoformat(day_text)
        assert day in days_off and festival in days_off[day], (festival, day)
    # Each period is one unbroken run of days.
    for name in set(days_off.values()):
        period = sorted(day for day, other in days_off.items() if other == name)
        assert (period[-1] - period[0]).days == len(period) - 1, name
    check = check_year(year, [(row.day, row.kind) for row in rows])
    assert check.problems == () and check.net_days_off == STATUTORY_DAYS_OFF


def test_a_year_that_does_not_add_up_is_pointed_out() -> None:
    complete = [(date(2026, 10, 1) + timedelta(days=n), "holiday") for n in range(7)]
    # 国庆 alone: 5 weekdays off, 2 make-up Saturdays/Sundays → 3 days, not 13: the year is incomplete.
    rows = [*complete, (date(2026, 9, 20), "workday"), (date(2026, 10, 10), "workday")]
    check = check_year(2026, rows)
    assert check.net_days_off == 3 and any("13" in problem for problem in check.problems)
    wrong = check_year(2026, [*rows, (date(2026, 10, 12), "workday"), (date(2026, 11, 7), "holiday")])
    assert any("2026-10-12 是工作日" in problem for problem in wrong.problems)
    assert any("2026-11-07 是周末" in problem for problem in wrong.problems)
    assert check_year(2030, []).problems == ()
    # 2024 had 11 statutory days (its 元旦 alone, a Monday, is 1 of them).
    assert any(
        "2024年全国法定节假日是 11 天" in problem
        for problem in check_year(2024, [(date(2024, 1, 1), "holiday")]).problems
    )


async def test_the_holiday_page_says_to_verify_the_seeded_years_and_shows_a_missing_day(people: People) -> None:
    admin = people.admin.client
    page = await (await admin.get("/admin/holidays?year=2026")).text()
    assert "对照通知原文" in page and "实际少上班 13 天" in page and "请对照国务院办公厅的通知核对" not in page
    assert (await admin.delete("/api/v1/holidays/2026-10-07")).status == 204
    page = await (await admin.get("/admin/holidays?year=2026")).text()
    assert "实际少上班 12 天" in page and "请对照国务院办公厅的通知核对" in page
