"""The petition workflow through the API on a clock the test moves: every state, clocks, refusals writing nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from common.clock import ManualClock
from hotline.intake import CallFacts
from server import Runtime
from storage.models import Case, CaseEvent, CaseLedger
from tests.cases.conftest import CaseMaker, County, People, advance_days
from tests.conftest import BOTH_DATABASES as BOTH
from tests.support.http import ApiClient


async def snapshot(runtime: Runtime, case_id: int) -> tuple[Any, ...]:
    """Everything a refused action must leave as it was: the case row, its ledger row, its history."""
    async with runtime.sessions() as session:
        case = await session.get(Case, case_id)
        ledger = await session.get(CaseLedger, case_id)
        events = await session.scalar(select(func.count()).where(CaseEvent.case_id == case_id))
        assert case is not None
        case_state = {column.name: getattr(case, column.key) for column in Case.__table__.columns}
        ledger_state = (
            {column.name: getattr(ledger, column.key) for column in CaseLedger.__table__.columns} if ledger else None
        )
        return case_state, ledger_state, events


async def refused(client: ApiClient, path: str, body: dict[str, Any], status: int) -> dict[str, Any]:
    response = await client.post(path, json=body)
    data = await response.json()
    assert response.status == status, (response.status, data)
    assert set(data["error"]) == {"code", "message", "fields"}
    assert any("\u4e00" <= ch <= "\u9fff" for ch in data["error"]["message"]), data
    error: dict[str, Any] = data["error"]
    return error


@pytest.mark.parametrize("db_kind", BOTH)
async def test_a_hotline_case_goes_from_new_to_closed_with_every_step_in_its_history(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker, clock: ManualClock
) -> None:
    case = await hotline_case()
    operator, staff = people.operator_county.client, people.staff_a.client
    base = f"/api/v1/cases/{case.id}"
    detail = await operator.get_json(base)
    assert detail["status"] == "new" and detail["deadline_kind"] == "受理"
    assert detail["acceptance_due"] == "2026-03-17T16:00:00+00:00"  # end of 17 March, Shanghai

    await operator.post_json(f"{base}/triage", {"township_id": county.township_a, "village_id": county.village_a,
                                                 "category": "infrastructure", "summary": "村口的桥裂了"})  # fmt: skip
    advance_days(clock, 1)
    accepted = await operator.post_json(f"{base}/accept", {"note": "属实，受理"})
    assert accepted["status"] == "accepted"
    # Accepted on 3 March: 60 days is 2 May, a holiday (1–5 May): due Wednesday 6 May.
    assert accepted["resolution_due"] == "2026-05-06T16:00:00+00:00"
    assigned = await operator.post_json(f"{base}/assign", {"unit_id": county.unit_a, "leader_name": "张书记"})
    assert (assigned["status"], assigned["unit_name"], assigned["leader_name"]) == ("in_progress", "甲乡政府", "张书记")

    advance_days(clock, 10)
    resolved = await staff.post_json(f"{base}/resolve", {"outcome": "partly_resolved", "result": "已加固，明年重建",
                                                         "told_via": "phone"})  # fmt: skip
    assert resolved["status"] == "resolved" and resolved["outcome"] == "partly_resolved"
    assert resolved["followup_due"] == "2026-03-13T16:00:00+00:00"  # from the start of the next day

    followed = await operator.post_json(f"{base}/follow-up", {"satisfaction": "basically_satisfied"})
    assert followed["status"] == "followed_up" and followed["satisfaction"] == "basically_satisfied"
    closed = await operator.post_json(f"{base}/close", {"note": "销号"})
    assert closed["status"] == "closed"

    history = closed["history"]
    assert [event["kind"] for event in history] == [
        "triaged", "accepted", "assigned", "resolved", "followed_up", "closed"
    ]  # fmt: skip
    assert [(event["from_status"], event["to_status"]) for event in history[1:]] == [
        ("new", "accepted"), ("accepted", "in_progress"), ("in_progress", "resolved"),
        ("resolved", "followed_up"), ("followed_up", "closed"),
    ]  # fmt: skip
    assert history[0]["before"]["township_id"] is None and history[0]["after"]["township_id"] == county.township_a
    assert history[3]["username"] == people.staff_a.username
    page = await (await operator.get(f"/cases/{case.id}")).text()
    assert "办理记录" in page and "包案领导：（空） → 张书记" in page


async def test_assigning_a_new_case_accepts_it_too_and_an_unhappy_villager_reopens_it(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker, clock: ManualClock
) -> None:
    case = await hotline_case(township_id=county.township_a)
    operator = people.operator_a.client
    base = f"/api/v1/cases/{case.id}"
    assigned = await operator.post_json(f"{base}/assign", {"unit_id": county.department_id, "leader_name": "李局长"})
    assert [event["kind"] for event in assigned["history"]] == ["accepted", "assigned"]
    advance_days(clock, 20)
    await operator.post_json(f"{base}/resolve", {"outcome": "resolved", "result": "已办", "told_via": "visit"})
    advance_days(clock, 1)
    reopened = await operator.post_json(f"{base}/follow-up", {"satisfaction": "unsatisfied", "note": "没修好"})
    assert reopened["status"] == "in_progress" and reopened["reopen_count"] == 1
    assert reopened["resolved_at"] is None and reopened["satisfaction"] == "unsatisfied"
    # 20 days were used of 60 (due 1 May → shifted to 6 May): the clock paused while waiting for the follow-up.
    assert [event["kind"] for event in reopened["history"]][-2:] == ["followed_up", "reopened"]
    assert reopened["resolution_due"] == "2026-05-07T16:00:00+00:00"
    again = await refused(operator, f"{base}/follow-up", {"satisfaction": "satisfied"}, 409)
    assert again["code"] == "case.illegal_transition"


@pytest.mark.parametrize("db_kind", BOTH)
async def test_illegal_transitions_are_a_chinese_409_and_write_nothing(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker
) -> None:
    case = await hotline_case(township_id=county.township_a)
    operator = people.operator_county.client
    base = f"/api/v1/cases/{case.id}"
    before = await snapshot(runtime, case.id)
    error = await refused(operator, f"{base}/close", {}, 409)
    assert "待受理" in error["message"] and "销号" in error["message"]
    await refused(operator, f"{base}/resolve", {"outcome": "resolved", "result": "x", "told_via": "phone"}, 409)
    await refused(operator, f"{base}/transfer", {"unit_id": county.unit_b, "reason": "x"}, 409)
    await refused(operator, f"{base}/follow-up", {"satisfaction": "satisfied"}, 409)
    await refused(operator, f"{base}/extension", {"days": 10, "reason": "x"}, 409)
    await refused(people.approver_a.client, f"{base}/extension/decision", {"approve": True}, 409)
    assert await snapshot(runtime, case.id) == before

    await operator.post_json(f"{base}/reject", {"reason": "不属于本县受理范围"})
    rejected = await snapshot(runtime, case.id)
    await refused(operator, f"{base}/accept", {}, 409)
    await refused(operator, f"{base}/assign", {"unit_id": county.unit_a, "leader_name": "张"}, 409)
    assert await snapshot(runtime, case.id) == rejected


async def test_one_extension_of_at_most_thirty_days_with_an_approvers_consent(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker
) -> None:
    case = await hotline_case(township_id=county.township_a)
    operator, staff, approver = people.operator_county.client, people.staff_a.client, people.approver_a.client
    base = f"/api/v1/cases/{case.id}"
    assigned = await operator.post_json(f"{base}/assign", {"unit_id": county.unit_a, "leader_name": "张书记"})
    due = assigned["resolution_due"]
    state = await snapshot(runtime, case.id)
    too_long = await refused(staff, f"{base}/extension", {"days": 31, "reason": "要鉴定"}, 400)
    assert too_long["code"] == "extension.too_long" and "30" in too_long["message"]
    await refused(staff, f"{base}/extension", {"days": 0, "reason": "要鉴定"}, 400)
    assert await snapshot(runtime, case.id) == state

    requested = await staff.post_json(f"{base}/extension", {"days": 30, "reason": "需要做土地鉴定"})
    assert requested["extension"]["state"] == "requested" and requested["resolution_due"] == due
    await refused(staff, f"{base}/extension", {"days": 5, "reason": "again"}, 409)
    not_approver = await refused(operator, f"{base}/extension/decision", {"approve": True}, 403)
    assert not_approver["code"] == "case.action_not_allowed"
    approved = await approver.post_json(f"{base}/extension/decision", {"approve": True, "note": "同意"})
    assert approved["extension"] == approved["extension"] | {"state": "approved", "days": 30}
    # 6 May + 30 days = 5 June (a Friday).
    assert approved["resolution_due"] == "2026-06-05T16:00:00+00:00"
    second = await refused(staff, f"{base}/extension", {"days": 5, "reason": "还要延"}, 409)
    assert second["code"] == "extension.already_extended" and "已经延期过一次" in second["message"]


async def test_an_approver_cannot_approve_their_own_request(
    runtime: Runtime, county: County, make_user: Any, new_client: Any, people: People, hotline_case: CaseMaker
) -> None:
    username, password = await make_user("operator", "approver", county_wide=True)
    both = await (await new_client()).login(username, password)
    case = await hotline_case(township_id=county.township_a)
    base = f"/api/v1/cases/{case.id}"
    await both.post_json(f"{base}/assign", {"unit_id": county.unit_a, "leader_name": "张书记"})
    await both.post_json(f"{base}/extension", {"days": 10, "reason": "等材料"})
    own = await refused(both, f"{base}/extension/decision", {"approve": True}, 403)
    assert own["code"] == "extension.own_request"
    denied = await people.approver_a.client.post_json(
        f"{base}/extension/decision", {"approve": False, "note": "不同意"}
    )
    assert denied["extension"]["state"] == "denied"
    # Refused once, the unit may ask again (only an approved extension uses up the one allowed).
    again = await both.post_json(f"{base}/extension", {"days": 5, "reason": "补充材料"})
    assert again["extension"]["state"] == "requested"
    # Resolved while the request waits: the request lapses, and the history says so.
    resolved = await both.post_json(f"{base}/resolve", {"outcome": "resolved", "result": "已办", "told_via": "phone"})
    assert resolved["extension"]["state"] == "none"
    last = resolved["history"][-1]
    assert (last["before"]["extension_state"], last["after"]["extension_state"]) == ("requested", "none")


async def test_a_transfer_needs_a_real_unit_and_a_reason(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker
) -> None:
    case = await hotline_case(township_id=county.township_a)
    operator = people.operator_county.client
    base = f"/api/v1/cases/{case.id}"
    await operator.post_json(f"{base}/assign", {"unit_id": county.unit_a, "leader_name": "张书记"})
    state = await snapshot(runtime, case.id)
    missing = await refused(operator, f"{base}/transfer", {"unit_id": 99999, "reason": "需县民政局办理"}, 400)
    assert missing["fields"] == {"unit_id": "没有这个单位"}
    await refused(operator, f"{base}/transfer", {"unit_id": county.unit_a, "reason": "同一个"}, 400)
    await refused(operator, f"{base}/transfer", {"unit_id": county.department_id, "reason": "  "}, 400)
    empty = await refused(operator, f"{base}/transfer", {"unit_id": county.department_id, "reason": ""}, 400)
    assert empty["message"] == "请填写转办理由" and empty["fields"] == {"reason": "必填"}
    assert await snapshot(runtime, case.id) == state
    moved = await operator.post_json(f"{base}/transfer", {"unit_id": county.department_id, "reason": "需县民政局办理"})
    assert moved["unit_name"] == "县民政局"
    assert moved["history"][-1]["before"]["unit_name"] == "甲乡政府"


async def test_a_note_of_a_hundred_thousand_characters_is_refused_and_writes_nothing(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker
) -> None:
    case = await hotline_case(township_id=county.township_a)
    operator = people.operator_county.client
    base = f"/api/v1/cases/{case.id}"
    state = await snapshot(runtime, case.id)
    latin = await refused(operator, f"{base}/notes", {"text": "x" * 100_000}, 400)
    assert latin["code"] == "text.too_long" and "5000" in latin["message"]
    chinese = await operator.post(f"{base}/notes", json={"text": "字" * 100_000})
    assert chinese.status == 413  # 300 KB of UTF-8: over the API's body limit before it is even read
    await refused(operator, f"{base}/notes", {"text": "x" * 100_001}, 400)
    assert await snapshot(runtime, case.id) == state
    ok = await operator.post_json(f"{base}/notes", {"text": "x" * 5000})
    assert ok["history"][-1]["kind"] == "noted"


async def test_staff_file_walk_in_and_grid_cases_and_the_channel_is_kept(
    runtime: Runtime, county: County, people: People
) -> None:
    staff = people.staff_a.client
    created = await staff.post_json(
        "/api/v1/cases",
        {"channel": "grid", "summary": "三组邻里为宅基地争执", "township_id": county.township_a,
         "village_id": county.village_a, "category": "neighbour", "caller_number": "+86 139-0000-2222",
         "caller_name": "王大娘"},
        expect=201,
    )  # fmt: skip
    assert created["channel"] == "grid" and created["status"] == "new"
    assert created["caller"] == "139****2222"  # staff see numbers masked
    assert created["history"][0]["kind"] == "created"
    operator_view = await people.operator_county.client.get_json(f"/api/v1/cases/{created['id']}")
    assert operator_view["caller"] == "13900002222"
    outside = await staff.post("/api/v1/cases", json={"channel": "walk_in", "summary": "x",
                                                      "township_id": county.township_b})  # fmt: skip
    assert outside.status == 400
    hotline = await staff.post("/api/v1/cases", json={"channel": "hotline", "summary": "x",
                                                      "township_id": county.township_a})  # fmt: skip
    assert hotline.status == 400
    leader = await people.leader.client.post("/api/v1/cases", json={"channel": "walk_in", "summary": "x",
                                                                     "township_id": county.township_a})  # fmt: skip
    assert leader.status == 403


async def test_triage_into_a_discipline_report_seals_the_case_from_the_operator_too(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker
) -> None:
    case = await hotline_case()
    operator = people.operator_county.client
    base = f"/api/v1/cases/{case.id}"
    sealed = await operator.post(f"{base}/triage", json={"township_id": county.township_a, "category": "discipline"})
    assert sealed.status == 200
    gone = await operator.get(base)
    assert gone.status == 404
    inspector = await people.inspector.client.get_json(base)
    assert inspector["sealed"] is True and inspector["category"] == "discipline"
    unseal = await refused(people.inspector.client, f"{base}/triage", {"category": "petition"}, 409)
    assert unseal["code"] == "case.sealed_forever"


async def test_the_overdue_and_due_soon_lists_move_with_the_clock(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker, clock: ManualClock
) -> None:
    fresh = await hotline_case(township_id=county.township_a)
    leader = people.leader.client

    async def listed(deadline: str) -> list[int]:
        body = await leader.get_json(f"/api/v1/cases?deadline={deadline}")
        return [item["id"] for item in body["items"]]

    assert await listed("overdue") == [] and await listed("due_soon") == []
    advance_days(clock, 13)  # 15 March, deadline end of 17 March: within the 3-day window
    assert await listed("due_soon") == [fresh.id] and await listed("overdue") == []
    clock.set(clock.now().replace(hour=15, minute=59, second=59) + timedelta(days=2))  # 17 March 23:59:59 Shanghai
    assert await listed("overdue") == []
    clock.advance(1)
    assert await listed("overdue") == [fresh.id]
    overdue = await leader.get_json(f"/api/v1/cases/{fresh.id}")
    assert overdue["overdue"] is True
    # Accepting late leaves the mark: it counts as overdue in the statistics for good.
    accepted = await people.operator_county.client.post_json(f"/api/v1/cases/{fresh.id}/accept", {})
    assert accepted["late"] is True and accepted["overdue"] is True
    assert await listed("overdue") == []  # the list shows what is overdue now

    reminders = await leader.get_json("/api/v1/cases/reminders")
    assert reminders == {"total": 0, "overdue": 0, "shown": 0, "units": []}
    await people.operator_county.client.post_json(f"/api/v1/cases/{fresh.id}/assign",
                                                  {"unit_id": county.unit_a, "leader_name": "张书记"})  # fmt: skip
    advance_days(clock, 61)  # accepted 18 March: due 18 May (17 May is a Sunday); now 18 May
    reminders = await leader.get_json("/api/v1/cases/reminders")
    assert [group["unit"] for group in reminders["units"]] == ["甲乡政府"]
    assert reminders["units"][0]["items"][0]["id"] == fresh.id
    html = await (await leader.get("/cases/reminders")).text()
    assert "甲乡政府" in html and fresh.number in html


async def test_saved_views_keep_filters_privately_or_shared(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker
) -> None:
    in_a = await hotline_case(township_id=county.township_a)
    await hotline_case(township_id=county.township_b)
    operator = people.operator_county.client
    view = await operator.post_json(
        "/api/v1/case-views",
        {"name": "甲乡待受理", "shared": False, "filters": {"township_id": county.township_a, "status": ["new"]}},
        expect=201,
    )
    listed = await operator.get_json(f"/api/v1/cases?view_id={view['id']}")
    assert [item["id"] for item in listed["items"]] == [in_a.id]
    assert (await people.leader.client.get(f"/api/v1/cases?view_id={view['id']}")).status == 404
    shared = await operator.post_json("/api/v1/case-views", {"name": "全县", "shared": True, "filters": {}}, 201)
    names = [v["name"] for v in await people.leader.client.get_json("/api/v1/case-views")]
    assert names == ["全县"]
    duplicate = await operator.post("/api/v1/case-views", json={"name": "全县", "filters": {}})
    assert duplicate.status == 409
    assert (await people.leader.client.delete(f"/api/v1/case-views/{shared['id']}")).status == 404
    page = await (await operator.get(f"/cases?view_id={view['id']}")).text()
    assert in_a.number in page and "甲乡待受理" in page


async def test_a_call_the_service_learnt_of_late_dates_its_case_and_its_clocks_from_the_call(
    runtime: Runtime, county: County, people: People, clock: ManualClock
) -> None:
    # The call came in on Saturday morning; the service, down all weekend, learns of it on Monday.
    called = clock.now() - timedelta(days=2)
    facts = CallFacts("late-call", caller_raw="13800001111", started_at=called, stage="recorded", choice="1")
    ticket = await runtime.hotline.intake.open_case(facts, via="reconcile")
    operator = people.operator_county.client
    detail = await operator.get_json(f"/api/v1/cases/{ticket.case_id}")
    assert detail["created_at"] == called.isoformat() and detail["learnt_at"] == clock.now().isoformat()
    # 15 days from Saturday 28 February is Sunday 15 March: due on Monday 16 March, not Tuesday 17.
    assert detail["acceptance_due"] == "2026-03-16T16:00:00+00:00"
    # Nobody has told her the number yet: the case asks for that call.
    assert detail["number_told"] is False and detail["tell_number"]
    page = await (await operator.get(f"/cases/{ticket.case_id}")).text()
    assert "待回电告知" in page and ticket.number in page and "才登记，期限从来电时算起" in page
