"""Every case page renders in Chinese for the roles that use it, and the header shows each role its links."""

from __future__ import annotations

import re

from server import Runtime
from tests.cases.conftest import CaseMaker, County, People

PAGES = {
    "/cases": ("admin", "staff_a", "approver_a", "operator_county", "operator_a", "inspector", "leader"),
    "/cases?deadline=overdue&sort=due": ("leader", "operator_a"),
    "/cases?status=new&township_id=1&q=桥&created_from=2026-01-01": ("operator_county",),
    "/cases/reminders": ("leader", "operator_a", "staff_a"),
    "/cases/new": ("operator_county", "staff_a", "inspector"),
    "/missed-calls": ("operator_county", "inspector"),
    "/missed-calls?state=all": ("operator_a",),
    "/dashboard": ("leader", "operator_county", "inspector", "admin"),
    "/admin/holidays": ("admin",),
}
REFUSED = {
    "/cases/new": ("leader", "approver_a", "admin"),
    "/missed-calls": ("leader", "staff_a"),
    "/dashboard": ("staff_a", "approver_a"),
    "/admin/holidays": ("operator_county", "leader"),
}


async def test_every_case_page_renders_for_its_roles_and_refuses_the_others(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker
) -> None:
    case = await hotline_case(township_id=county.township_a)
    everyone = people.all()
    for path, roles in {**PAGES, f"/cases/{case.id}": tuple(PAGES["/cases"])}.items():
        for role in roles:
            response = await everyone[role].client.get(path)
            html = await response.text()
            assert response.status == 200, (path, role, html[:300])
            assert '<html lang="zh-CN">' in html and re.search("[\u4e00-\u9fff]", html)
            assert " style=" not in html and "<script>" not in html, (path, "inline style or script")
    for path, roles in REFUSED.items():
        for role in roles:
            assert (await everyone[role].client.get(path)).status == 403, (path, role)


async def test_the_header_links_follow_the_roles(people: People) -> None:
    expected = {
        "operator_county": {"案件台账", "未接来电", "统计"},
        "leader": {"案件台账", "统计"},
        "inspector": {"案件台账", "未接来电", "统计"},
        "staff_a": {"案件台账"},
        "admin": {"案件台账", "统计", "节假日"},
    }
    for role, links in expected.items():
        html = await (await people.all()[role].client.get("/cases")).text()
        nav = html.split("<nav", 1)[1].split("</nav>", 1)[0]
        shown = {label for label in ("案件台账", "未接来电", "统计", "节假日") if f">{label}<" in nav}
        assert shown == links, role


async def test_the_ledger_says_which_phone_cases_can_be_replayed_yet(
    county: County, people: People, hotline_case: CaseMaker
) -> None:
    # A call's case is listed at the hang-up and its message is attached a moment later: an operator sees which.
    recorded = await hotline_case(township_id=county.township_a, caller="13800002222")
    waiting = await hotline_case(township_id=county.township_a, caller="13800003333", recording=False)
    html = await (await people.operator_a.client.get("/cases")).text()
    rows = {
        number: row
        for row in re.findall(r"<tr>(.*?)</tr>", html, flags=re.S)
        for number in (recorded.number, waiting.number)
        if f">{number}</a>" in row
    }
    assert ">录音</span>" in rows[recorded.number] and "（待听录音）" in rows[recorded.number]
    assert ">录音</span>" not in rows[waiting.number] and "（录音未到）" in rows[waiting.number]
