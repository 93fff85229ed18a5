"""The home page's 待办 panel: what waits for each user, counted in their scope, linking to where it is done."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func, select

from broadcast.notices import NoticeInput
from common.clock import ManualClock
from server import Runtime
from storage.models import AuditEntry
from tests.cases.conftest import CaseMaker, County, People


def todo_items(html: str) -> dict[str, tuple[int, str, bool]]:
    """Label → (count, link, urgent) for each line of the panel."""
    panel = html.split('<section class="todo"', 1)[1].split("</section>", 1)[0] if 'class="todo"' in html else ""
    items = {}
    for css, href, label, count in re.findall(
        r'<li( class="urgent")?><a href="([^"]+)">([^<]+)</a> <strong>(\d+)</strong> 件</li>', panel
    ):
        items[label] = (int(count), href.replace("&amp;", "&"), bool(css))
    return items


async def home(people: People, role: str) -> dict[str, tuple[int, str, bool]]:
    response = await people.all()[role].client.get("/")
    assert response.status == 200
    return todo_items(await response.text())


async def test_cases_waiting_are_counted_for_the_roles_that_act_on_them(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker, clock: ManualClock
) -> None:
    assert await home(people, "operator_county") == {}
    html = await (await people.operator_county.client.get("/")).text()
    assert "眼下没有等您处理的事项" in html

    await hotline_case(township_id=county.township_a)
    await hotline_case(township_id=county.township_b)
    await hotline_case(township_id=county.township_a, category="discipline")

    assert await home(people, "operator_county") == {"待受理的案件": (2, "/cases?status=new", False)}
    # Township-bound: only their own township's case; the sealed one is not theirs to know about.
    assert await home(people, "operator_a") == {"待受理的案件": (1, "/cases?status=new", False)}
    assert (await home(people, "inspector"))["待受理的案件"][0] == 3, "inspectors read every case, sealed ones too"
    assert await home(people, "leader") == {}, "leaders do not accept cases"

    # Past the acceptance deadline (15 working days): overdue, listed first and marked, for everyone who reads cases.
    clock.advance(timedelta(days=30))
    operator = await home(people, "operator_county")
    assert next(iter(operator)) == "超期案件" and operator["超期案件"] == (2, "/cases?deadline=overdue", True)
    assert (await home(people, "leader"))["超期案件"][0] == 2
    assert (await home(people, "staff_a"))["超期案件"][0] == 1

    # Counting is not showing: the inspector's home page opens no sealed case, so none is logged as seen.
    async with runtime.sessions() as session:
        logged = await session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action.like("case.%sealed%"))
        )
    assert logged == 0


async def test_notices_wait_for_another_approver_and_come_back_to_their_author(
    runtime: Runtime, county: County, people: People
) -> None:
    notices = runtime.broadcasting.notices
    body = "各位村民：本周六上午九点在村委会召开村民代表大会，请准时参加。"
    notice = await notices.create(
        people.staff_a.principal, NoticeInput("disclosure_village", "村民代表大会通知", body, county.township_a)
    )
    await notices.submit(people.staff_a.principal, notice.id)

    assert (await home(people, "approver_a"))["待我审核的通知"] == (1, "/broadcast/approvals", False)
    assert "待我审核的通知" not in await home(people, "staff_a")

    await notices.reject(people.approver_a.principal, notice.id, "时间写清楚是哪一天")
    assert "待我审核的通知" not in await home(people, "approver_a")
    # Back to its author, with the reason, first in her 待办.
    rejected = "被驳回，待修改：村民代表大会通知（理由：时间写清楚是哪一天）"
    assert (await home(people, "staff_a"))[rejected] == (1, f"/broadcast/notices/{notice.id}", True)
