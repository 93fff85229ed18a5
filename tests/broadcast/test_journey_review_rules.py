"""The rules around a decision, as the people involved see them in Chromium on the demo county.

* Four eyes across edits: a user who is both staff and approver edits a colleague's pending notice; from then
  on the page tells them someone else must decide, the approval waits for others, and the API refuses them.
* A rejected notice goes back to its author, with the reason, in the author's 待办.
* A refused save keeps what was typed (a notice pasted longer than a notice may be).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import expect
from sqlalchemy import select

from server import Runtime
from settings import Settings
from storage.models import Notice, Township
from tests.conftest import UserFactory
from tests.support.broadcasting import demo_county, journey_settings
from tests.support.journey import journeys

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TITLE = "村务公开：村道维修"
BODY = "本月村道维修支出6,500元。"
REASON = "请写明维修的路段"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return journey_settings(tmp_path / "data", database_url)


async def test_an_approver_who_edited_a_notice_cannot_decide_it_and_a_rejection_reaches_its_author_with_the_reason(
    server: TestServer, runtime: Runtime, make_user: UserFactory, tmp_path: Path
) -> None:
    logins = await demo_county(runtime, tmp_path / "logins.txt")
    async with runtime.sessions() as session:
        first = await session.scalar(select(Township.id).order_by(Township.id).limit(1))
    both = await make_user("staff", "approver", township_ids=[first], username="both.zhou")
    async with journeys(str(server.make_url("/")), tmp_path / "shots") as open_journey:
        staff = await open_journey("staff")
        await staff.sign_in("demo.staff", logins["demo.staff"])

        # A notice pasted longer than a notice may be is refused, and nothing typed is lost.
        await staff.goto("/broadcast/notices")
        form = staff.page.locator("form[data-notice-editor]")
        await form.locator("input[name=title]").fill(TITLE)
        await form.locator("textarea[name=body]").fill("村" * 5001)
        await form.locator("button[type=submit]").click()
        await expect(staff.page.locator("[role=alert]")).to_contain_text("通知太长了，最多5000个字")
        form = staff.page.locator("form[data-notice-editor]")
        await expect(form.locator("input[name=title]")).to_have_value(TITLE)
        assert await form.locator("textarea[name=body]").input_value() == "村" * 5001
        staff.typed(TITLE)
        await staff.step("too-long-refused-and-kept")

        await form.locator("textarea[name=body]").fill(BODY)
        await form.locator("button[type=submit]").click()
        await staff.page.click("button:has-text('提交审核')")
        await expect(staff.page.locator("[data-state]")).to_have_text("待审核")
        notice_id = int(staff.page.url.split("/broadcast/notices/")[1].split("#")[0])

        # A colleague who is staff and approver rewrites it: from then on it is not theirs to approve.
        colleague = await open_journey("colleague")
        await colleague.sign_in(*both)
        await colleague.goto(f"/broadcast/notices/{notice_id}")
        await expect(colleague.page.locator("button:has-text('审核通过')")).to_be_visible()
        edit = colleague.page.locator("#edit form")
        await edit.locator("textarea[name=body]").fill(BODY + "路段见村务公开栏。")
        await edit.locator("button[type=submit]").click()
        await expect(colleague.page.locator(".flash.ok")).to_contain_text("已保存（第 2 版，待审核）")
        await expect(colleague.page.locator("[data-not-decider]")).to_have_text(
            "您修改过这条通知，不能再审核它，请由另一位审核人审核"
        )
        await expect(colleague.page.locator("button:has-text('审核通过')")).to_have_count(0)
        await colleague.step("edited-so-cannot-approve")
        await colleague.goto("/")
        await expect(colleague.page.locator("main")).to_contain_text("您好")
        await expect(colleague.page.locator(".todo li", has_text="待我审核的通知")).to_have_count(0)
        csrf = await colleague.page.locator("body").get_attribute("data-csrf")
        forged = await colleague.page.request.post(
            colleague.url(f"/api/v1/notices/{notice_id}/approve"), data={}, headers={"X-CSRF-Token": csrf or ""}
        )
        assert forged.status == 403 and (await forged.json())["error"]["code"] == "notice.edited_by_approver"

        # The approver sees who edited it, and rejects it with a reason.
        approver = await open_journey("approver")
        await approver.sign_in("demo.approver", logins["demo.approver"])
        approver.typed(both[0])  # a colleague's user name, shown as who edited it
        await approver.goto(f"/broadcast/notices/{notice_id}")
        await expect(approver.page.locator("main > p").nth(1)).to_contain_text("修改过：both.zhou")
        await approver.page.fill("input[name=reason]", REASON)
        await approver.page.click("button:has-text('驳回')")
        await expect(approver.page.locator(".flash.ok")).to_contain_text("已驳回")
        await approver.step("rejected")

        # The author finds it in her 待办, with the reason, and on the notice itself (who edited it, too).
        staff.typed(both[0])
        await staff.goto("/")
        todo = staff.page.locator(".todo li", has_text=TITLE)
        await expect(todo).to_contain_text(f"被驳回，待修改：{TITLE}（理由：{REASON}）")
        await staff.step("rejection-in-her-todo")
        await todo.locator("a").click()
        await expect(staff.page.locator("[data-reject-reason]")).to_have_text(f"驳回理由：{REASON}")
        await expect(staff.page.locator("[data-state]")).to_have_text("已驳回")
        await staff.step("the-rejected-notice")

    async with runtime.sessions() as session:
        notice = await session.get(Notice, notice_id)
        assert notice is not None and notice.state == "rejected" and notice.reject_reason == REASON
