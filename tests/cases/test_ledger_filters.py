"""The ledger's filters, each against cases whose answer the test knows: words, numbers, places, dates, deadlines."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest

from common.clock import ManualClock
from server import Runtime
from tests.cases.conftest import CaseMaker, County, People, advance_days
from tests.conftest import BOTH_DATABASES

pytestmark = pytest.mark.parametrize("db_kind", BOTH_DATABASES)


async def test_every_filter_and_sort_of_the_case_list_selects_exactly_the_cases_it_names(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker, clock: ManualClock
) -> None:
    workflow = runtime.cases.workflow
    operator = people.operator_county.principal
    land = await hotline_case(township_id=county.township_a, village_id=county.village_a, caller="13800001111")
    await workflow.triage(operator, land.id, category="land", summary="草场边界争议，占了100%的牧道")
    advance_days(clock, 1)
    wages = await workflow.create(
        operator, channel="walk_in", summary="拖欠工资_三个月", township_id=county.township_b,
        village_id=county.village_b, category="wages", caller_number="13900002222", caller_name="王大娘",
    )  # fmt: skip
    advance_days(clock, 4)
    fresh = await hotline_case(township_id=county.township_a, caller="13700003333")

    await workflow.assign(operator, land.id, unit_id=county.unit_a, leader_name="张书记")
    await workflow.resolve(operator, land.id, outcome="resolved", result="已划界", told_via="visit")
    await workflow.assign(operator, wages.id, unit_id=county.department_id, leader_name="李局长")
    await workflow.request_extension(operator, wages.id, days=10, reason="等劳动仲裁")

    client = people.operator_county.client

    async def ids(**query: object) -> list[int]:
        body = await client.get_json("/api/v1/cases?" + urlencode(query, doseq=True))
        return [item["id"] for item in body["items"]]

    everything = [fresh.id, wages.id, land.id]  # newest first
    assert await ids() == everything
    assert await ids(sort="oldest") == everything[::-1]
    # By resolution deadline (the same day for both: accepted together; then the older first), none last.
    assert await ids(sort="due") == [land.id, wages.id, fresh.id]
    queries: list[tuple[dict[str, object], list[int]]] = [
        ({"q": "13800001111"}, [land.id]),  # a caller's number, whole
        ({"q": wages.number}, [wages.id]),  # a case number, whole
        ({"q": "1380000"}, []),  # digits are a number or nothing: never a LIKE over a million rows
        ({"q": "王大娘"}, [wages.id]),
        ({"q": "牧道"}, [land.id]),
        ({"q": "100%"}, [land.id]),  # % is a character here, not a wildcard
        ({"q": "%"}, [land.id]),
        ({"q": "_三"}, [wages.id]),  # and so is _
        ({"q": "_"}, [wages.id]),
        ({"category": "wages"}, [wages.id]),
        ({"channel": "walk_in"}, [wages.id]),
        ({"channel": "hotline"}, [fresh.id, land.id]),
        ({"township_id": county.township_a}, [fresh.id, land.id]),
        ({"village_id": county.village_b}, [wages.id]),
        ({"unit_id": county.department_id}, [wages.id]),
        ({"status": ["new", "resolved"]}, [fresh.id, land.id]),
        ({"status": "in_progress"}, [wages.id]),
        ({"created_from": "2026-03-03", "created_to": "2026-03-03"}, [wages.id]),
        ({"created_from": "2026-03-03"}, [fresh.id, wages.id]),
        ({"created_to": "2026-03-02"}, [land.id]),
        ({"deadline": "extension_pending"}, [wages.id]),
        ({"deadline": "followup_due"}, []),  # resolved today: the follow-up is due from tomorrow
        ({"township_id": county.township_a, "status": "new"}, [fresh.id]),
    ]
    for query, expected in queries:
        assert await ids(**query) == expected, query
    bad = await client.get("/api/v1/cases?status=done")
    assert bad.status == 400
    clock.set(clock.now().replace(hour=0, minute=0) + timedelta(days=1))
    assert await ids(deadline="followup_due") == [land.id]
    listed = await client.get_json("/api/v1/cases?limit=2&offset=2")
    assert [item["id"] for item in listed["items"]] == [land.id]
    assert (listed["total"], listed["total_capped"]) == (3, False)
