"""The look every page shares (the base template, the shared CSS, the header), as a person sees it in Chromium.

At 1366 pixels — the county office's laptops — an admin's header stays on one line; a short label is never
squeezed to one character per line beside a long text; and no button is drawn in the colour of its background.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from accounts.principal import Principal
from accounts.service import principal_of
from broadcast.notices import NoticeInput
from server import Runtime
from storage.models import User
from tests.conftest import UserFactory
from tests.foundation.seed import seed_tree
from tests.support.journey import journeys

pytestmark = pytest.mark.browser

LONG_NOTE = (
    "电话联系了当事人两次，第一次无人接听，第二次说明情况后当事人同意等乡里派人到现场再商量赔偿的具体数额和方式，"
    "双方都表示愿意接受调解，约定下周二上午在村委会当面协商，由包村干部主持并做好记录。"
)


async def principal(runtime: Runtime, username: str) -> Principal:
    async with runtime.sessions() as session:
        user = await session.scalar(select(User).where(User.username == username))
        assert user is not None
        return principal_of(user)


async def test_the_header_fits_one_line_labels_stay_whole_and_every_button_can_be_seen(
    server: TestServer, runtime: Runtime, make_user: UserFactory, tmp_path: Path
) -> None:
    tree = await seed_tree(runtime)
    admin = await make_user("admin", county_wide=True, can_emergency=True)
    operator = await make_user("operator", county_wide=True)
    staff = await make_user("staff", township_ids=[tree.township_ids[0]])
    writer = await principal(runtime, staff[0])
    notice = await runtime.broadcasting.notices.create(
        writer, NoticeInput("disclosure_village", "村务公开：道路维修", "本月支出六千五百元。", tree.township_ids[0])
    )
    case = await runtime.cases.workflow.create(
        await principal(runtime, operator[0]),
        channel="walk_in",
        summary="邻居家的狗多次咬伤我家羊羔，协商不成。",
        township_id=tree.township_ids[0],
        caller_name="乌云",
    )
    await runtime.cases.workflow.add_note(await principal(runtime, operator[0]), case.id, text=LONG_NOTE)

    async with journeys(str(server.make_url("/")), tmp_path / "shots") as open_journey:
        head = await open_journey("admin")
        head.typed("seed-admin", "seed", admin[0], operator[0], staff[0])  # the user list shows every user name
        await head.sign_in(*admin)
        await head.check_look()  # an admin has the most links of all
        await head.goto(f"/broadcast/notices/{notice.id}")
        await head.step("draft-notice")
        archive = head.page.locator(f"form[action='/broadcast/notices/{notice.id}/archive'] button")
        assert await archive.is_visible()
        await head.check_accessible()
        await head.page.click("header.top summary:has-text('系统管理')")
        await head.page.click("header.top a:has-text('用户')")
        await head.page.wait_for_url(head.url("/admin/users"))
        await head.step("users-through-the-menu")
        await head.check_look()

        clerk = await open_journey("operator")
        await clerk.sign_in(*operator)
        await clerk.goto(f"/cases/{case.id}")
        await clerk.step("case-with-a-long-note")
        await clerk.check_look()  # 登记, 备注 and the operator's name beside the long note
