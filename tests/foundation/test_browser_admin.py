"""Administration in Chromium on the demo county (issue: Journeys II, items 13–15).

An admin edits a user through the page and it saves; disables the account from the page and the user is out;
reads the audit log in Chinese (actions, objects by name with links, details as lines, filters by name); and
finds a speaker among five hundred by township and status, a page at a time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from areas.demo import load_demo
from server import Runtime
from storage.models import Speaker, User
from tests.support.journey import journeys

pytestmark = pytest.mark.browser


@pytest.fixture
async def demo_logins(runtime: Runtime, tmp_path: Path) -> dict[str, str]:
    """The demo county's places and accounts (no notices or cases: these pages do not need them)."""
    result = await load_demo(runtime.sessions, runtime.accounts, runtime.clock, tmp_path / "logins.txt")
    return result.new_logins


async def test_an_admin_edits_a_user_disables_the_account_and_reads_what_happened_in_chinese(
    server: TestServer, runtime: Runtime, demo_logins: dict[str, str], tmp_path: Path
) -> None:
    async with runtime.sessions() as session:
        staff = await session.scalar(select(User).where(User.username == "demo.staff2"))
        assert staff is not None
    async with journeys(str(server.make_url("/")), tmp_path / "shots") as open_journey:
        clerk = await open_journey("staff2")
        await clerk.sign_in("demo.staff2", demo_logins["demo.staff2"])

        admin = await open_journey("admin")
        admin.typed(*demo_logins, "admin")
        admin.page.on("dialog", lambda dialog: dialog.accept())
        await admin.sign_in("demo.admin", demo_logins["demo.admin"])
        await admin.goto(f"/admin/users/{staff.id}")
        form = admin.page.locator("#user-form")
        await form.locator("input[name=display_name]").fill("乡镇干部·孙示例（调岗）")
        await form.locator("input[name=roles][value=approver]").check()
        await form.locator("input[name=township_ids]").nth(2).check()
        await form.locator("button[type=submit]").click()
        await admin.page.wait_for_selector("text=已保存")
        await admin.step("user-saved")
        async with runtime.sessions() as session:
            saved = await session.get(User, staff.id)
            assert saved is not None
            assert saved.display_name == "乡镇干部·孙示例（调岗）"
            assert sorted(role.role for role in saved.roles) == ["approver", "staff"]
            assert len(saved.townships) == 2

        await admin.page.click("#account-state button:has-text('停用账号')")
        await admin.page.wait_for_selector("text=已停用账号 demo.staff2")
        assert "已停用" in await admin.page.inner_text("h1")
        await admin.step("user-disabled")
        await clerk.goto("/cases")
        assert clerk.page.url.startswith(clerk.url("/login"))  # signed out everywhere
        await clerk.page.fill("input[name=username]", "demo.staff2")
        await clerk.page.fill("input[name=password]", demo_logins["demo.staff2"])
        await clerk.page.click("button[type=submit]")
        assert clerk.page.url.startswith(clerk.url("/login"))

        await admin.page.click("header.top summary:has-text('系统管理')")
        await admin.page.click("header.top a:has-text('审计日志')")
        await admin.page.wait_for_url(admin.url("/admin/audit"))
        await admin.step("audit-log")  # no English: actions, objects and details in Chinese
        table = await admin.page.inner_text("table.audit")
        renamed = "姓名：乡镇干部·孙示例 → 乡镇干部·孙示例（调岗）"
        for shown in ("修改用户", "新建用户", "登录", renamed, "账号可用：是 → 否"):
            assert shown in table, shown
        link = admin.page.locator("table.audit a", has_text="乡镇干部·孙示例（调岗）（demo.staff2）").first
        assert await link.get_attribute("href") == f"/admin/users/{staff.id}"
        await admin.page.select_option("#audit-filters select[name=action]", label="修改用户")
        await admin.page.click("#audit-filters button[type=submit]")
        await admin.step("audit-log-filtered")
        actions = await admin.page.locator("table.audit tbody tr td:nth-child(3)").all_inner_texts()
        assert actions and set(actions) == {"修改用户"}
        await admin.check_accessible()


async def test_five_hundred_speakers_are_grouped_by_township_filtered_by_status_and_paged(
    server: TestServer, runtime: Runtime, demo_logins: dict[str, str], tmp_path: Path
) -> None:
    async with runtime.sessions() as session:
        speakers = (await session.scalars(select(Speaker))).all()
        four_g = [speaker for speaker in speakers if speaker.transport == "http"]
    assert len(speakers) > 500
    async with journeys(str(server.make_url("/")), tmp_path / "shots") as open_journey:
        admin = await open_journey("admin")
        admin.typed(*(speaker.address for speaker in speakers))
        await admin.sign_in("demo.admin", demo_logins["demo.admin"])
        await admin.goto("/broadcast/speakers")
        await admin.step("speakers")
        height = await admin.page.evaluate("document.documentElement.scrollHeight")
        assert height < 4000, f"the speakers page is {height} px tall"
        groups = await admin.page.locator("tr.group th").all_inner_texts()
        assert groups and groups[0].startswith("示例东风镇")

        await admin.page.select_option("#speaker-filters select[name=status]", "offline")
        await admin.page.click("#speaker-filters button[type=submit]")
        await admin.step("offline")
        assert f"符合条件的 {len(four_g)} 个" in await admin.page.inner_text("main")
        statuses = await admin.page.locator("table.speakers td .badge").all_inner_texts()
        assert statuses and set(statuses) == {"离线"}  # never seen: 4G terminals only

        await admin.page.click(".pager a:has-text('下一页')")
        await admin.page.wait_for_url("**/broadcast/speakers?status=offline&page=2")
        assert set(await admin.page.locator("table.speakers td .badge").all_inner_texts()) == {"离线"}
        await admin.check_accessible()
