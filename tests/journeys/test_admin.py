"""The admin's day on the demo county: a user edited and disabled through the pages, the audit log read in Chinese.

(issue 16 items 13 and 14) The user page saves what the admin changed — roles ticked, a township added, the
name — and disables the account with its own button: the clerk is signed out on the spot and cannot sign in
again. The audit log then tells what happened in Chinese: actions by name, the objects by name with links,
the details as lines, and its filters offer the actions by their names.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from server import Runtime
from storage.models import User
from tests.support.journey import journeys

pytestmark = pytest.mark.browser


async def test_an_admin_edits_a_user_disables_the_account_and_reads_what_happened_in_chinese(
    server: TestServer, runtime: Runtime, passwords: dict[str, str], tmp_path: Path
) -> None:
    async with runtime.sessions() as session:
        staff = await session.scalar(select(User).where(User.username == "demo.staff2"))
        assert staff is not None
    async with journeys(str(server.make_url("/")), tmp_path / "shots") as open_journey:
        clerk = await open_journey("staff2")
        await clerk.sign_in("demo.staff2", passwords["demo.staff2"])

        admin = await open_journey("admin")
        admin.typed(*passwords, "admin")
        admin.page.on("dialog", lambda dialog: dialog.accept())
        await admin.sign_in("demo.admin", passwords["demo.admin"])
        await admin.page.click("header.top summary:has-text('系统管理')")
        await admin.page.click("header.top a:has-text('用户')")
        await admin.page.wait_for_url(admin.url("/admin/users"))
        await admin.step("users")
        await admin.page.click("table a:has-text('demo.staff2')")
        await admin.page.wait_for_url(admin.url(f"/admin/users/{staff.id}"))
        await admin.step("user")
        await admin.check_accessible()
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
        await clerk.page.fill("input[name=password]", passwords["demo.staff2"])
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
