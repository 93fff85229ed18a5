"""The case page's forms, posted as a browser posts them: each action, its checkboxes, its refusals as a message."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from server import Runtime
from storage.models import AuditEntry, CaseEvent
from tests.cases.conftest import CaseMaker, County, People
from tests.support.http import ApiClient


async def post_form(client: ApiClient, path: str, **fields: str) -> str:
    """Post a form on the case page and return the page it lands on (with its message)."""
    response = await client.post(path, data=fields)
    assert response.status == 200, path
    return await response.text()


async def state(client: ApiClient, case_id: int) -> dict[str, Any]:
    case: dict[str, Any] = await client.get_json(f"/api/v1/cases/{case_id}")
    return case


async def events(runtime: Runtime, case_id: int) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).where(CaseEvent.case_id == case_id)) or 0)


async def test_every_action_form_on_the_case_page_works_and_a_refusal_is_a_message_writing_nothing(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker
) -> None:
    case = await hotline_case(township_id=county.township_a)
    operator, staff, approver = people.operator_a.client, people.staff_a.client, people.approver_a.client
    page = f"/cases/{case.id}"

    html = await post_form(operator, f"{page}/reject", reason="")
    assert "请填写不予受理的理由" in html and (await state(operator, case.id))["status"] == "new"
    html = await post_form(operator, f"{page}/assign", unit_id=str(county.unit_a), leader_name="张书记")
    assert "已交办" in html and (await state(operator, case.id))["status"] == "in_progress"

    written = await events(runtime, case.id)
    html = await post_form(staff, f"{page}/extension", days="31", reason="要鉴定")
    assert "1到30天" in html and await events(runtime, case.id) == written
    html = await post_form(staff, f"{page}/extension", days="10", reason="要鉴定")
    assert "已提交延期申请" in html
    html = await (await approver.get(page)).text()
    assert "延期申请：10 天" in html and 'name="approve" checked' in html
    # The box unticked is a refusal, and a refusal needs a reason.
    html = await post_form(approver, f"{page}/extension-decision", note="")
    assert "请填写审批意见" in html
    assert (await state(approver, case.id))["extension"]["state"] == "requested"
    html = await post_form(approver, f"{page}/extension-decision", approve="on", note="同意")
    assert "已审批延期申请" in html
    assert (await state(approver, case.id))["extension"]["state"] == "approved"

    html = await post_form(operator, f"{page}/transfer", unit_id=str(county.department_id), reason="属民政")
    assert "已转办" in html and (await state(operator, case.id))["unit_name"] == "县民政局"
    html = await post_form(operator, f"{page}/urge", note="请本周内办结")
    assert "已催办" in html
    html = await post_form(staff, f"{page}/resolve", outcome="resolved", result="已发放救助金", told_via="visit")
    assert "已办结" in html

    html = await post_form(operator, f"{page}/follow-up", satisfaction="unsatisfied", method="phone", note="")
    assert "请填写回访记录" in html and (await state(operator, case.id))["status"] == "resolved"
    html = await post_form(operator, f"{page}/follow-up", satisfaction="unsatisfied", method="phone", note="钱没到")
    assert "已记录回访" in html and (await state(operator, case.id))["status"] == "in_progress"

    await post_form(staff, f"{page}/resolve", outcome="partly_resolved", result="已补发一半", told_via="phone")
    html = await post_form(operator, f"{page}/close", note="")
    assert "还没有回访" in html and (await state(operator, case.id))["status"] == "resolved"
    html = await post_form(operator, f"{page}/close", unreachable="on", note="三次电话均无人接")
    assert "已销号" in html and (await state(operator, case.id))["status"] == "closed"
    kinds = [event["kind"] for event in (await state(operator, case.id))["history"]]
    assert kinds == [
        "accepted", "assigned", "extension_requested", "extension_approved", "transferred", "urged", "resolved",
        "followed_up", "reopened", "resolved", "closed",
    ]  # fmt: skip
    assert (await operator.post(f"{page}/no-such-action", data={})).status == 404


async def test_a_form_posted_on_a_sealed_case_by_anyone_but_an_inspector_is_turned_away_and_logged(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker
) -> None:
    sealed = await hotline_case(township_id=county.township_a, category="discipline")
    html = await post_form(people.operator_county.client, f"/cases/{sealed.id}/notes", text="看看")
    assert "案件已不在您的权限范围内" in html and sealed.number not in html
    assert await events(runtime, sealed.id) == 0
    await runtime.cases.access.denials.flush()  # refusals are written by their own queue
    async with runtime.sessions() as session:
        denied = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "case.sealed_denied"))).all()
    assert [(entry.username, entry.object_id) for entry in denied] == [
        (people.operator_county.username, str(sealed.id))
    ]
    html = await post_form(people.inspector.client, f"/cases/{sealed.id}/notes", text="已核实")
    assert "已添加备注" in html and await events(runtime, sealed.id) == 1


async def test_a_view_saved_from_the_list_page_filters_the_list_and_its_owner_deletes_it(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker
) -> None:
    in_a = await hotline_case(township_id=county.township_a)
    in_b = await hotline_case(township_id=county.township_b)
    operator = people.operator_county.client
    query = f"township_id={county.township_a}&status=new&offset=50"
    html = await post_form(operator, "/cases/views", name="甲乡新来电", shared="on", query=query)
    assert "已保存视图“甲乡新来电”" in html and in_a.number in html and in_b.number not in html
    views = await operator.get_json("/api/v1/case-views")
    assert [(v["name"], v["shared"], v["filters"]) for v in views] == [
        ("甲乡新来电", True, {"township_id": county.township_a, "status": ["new"]})
    ]
    html = await post_form(operator, "/cases/views", name="  ", query="")
    assert "视图名称" in html
    html = await post_form(people.leader.client, f"/cases/views/{views[0]['id']}/delete")
    assert "视图不存在" in html  # shared with everyone, deleted only by its owner
    html = await post_form(operator, f"/cases/views/{views[0]['id']}/delete")
    assert "已删除视图" in html and await operator.get_json("/api/v1/case-views") == []
