"""A person signs in with a real browser and administers the area tree through the pages."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from server import Runtime
from tests.conftest import UserFactory
from tests.foundation.seed import COUNTY_READER, seed_tree
from tests.support.browser import chromium
from tests.support.journey import journeys, keep_screenshot

pytestmark = pytest.mark.browser


async def test_an_admin_signs_in_and_adds_a_village_through_the_pages(
    server: TestServer, runtime: Runtime, make_user: UserFactory, tmp_path: Path
) -> None:
    tree = await seed_tree(runtime)
    username, password = await make_user("admin", county_wide=True)
    base = str(server.make_url("/")).rstrip("/")
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(f"{base}/admin/areas")
        assert page.url.startswith(f"{base}/login?next=")
        await page.fill("input[name=username]", username)
        await page.fill("input[name=password]", "wrong-password-here")
        await page.click("button[type=submit]")
        assert "用户名或密码不正确" in await page.inner_text("main")
        await page.fill("input[name=username]", username)
        await page.fill("input[name=password]", password)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/admin/areas")
        assert "甲乡" in await page.inner_text("main")

        await page.click("text=甲乡")
        await page.wait_for_url(f"{base}/admin/townships/{tree.township_ids[0]}")
        await page.fill("form[action='/admin/villages'] input[name=name]", "新建示例村")
        await page.click("form[action='/admin/villages'] button[type=submit]")
        await page.wait_for_selector("text=已添加")
        assert "新建示例村" in await page.inner_text("table")
        await keep_screenshot(page, tmp_path / "township.png")

        await page.click("button:has-text('退出')")
        await page.wait_for_url(f"{base}/login")
    villages = await runtime.areas.list_villages(COUNTY_READER)
    assert "新建示例村" in {village.name for village in villages}


async def test_a_clerk_signs_out_a_forgotten_browser_from_another_one(
    server: TestServer, make_user: UserFactory, tmp_path: Path
) -> None:
    """Signed in at the office and at home; from home, 退出其他所有设备; the office browser is signed out."""
    username, password = await make_user("staff", county_wide=True)
    async with journeys(str(server.make_url("/")), tmp_path / "shots") as open_journey:
        office, home = await open_journey("office"), await open_journey("home")
        await office.sign_in(username, password)
        await home.sign_in(username, password)

        await home.page.click("text=登录设备")
        await home.page.wait_for_url(home.url("/account/sessions"))
        await home.step("sessions")
        await home.check_accessible()
        rows = home.page.locator("table.sessions tbody tr")
        assert await rows.count() == 2
        current = await home.page.inner_text("table.sessions tr.current")
        assert "（当前）" in current and "谷歌浏览器 · 电脑" in current
        home.page.on("dialog", lambda dialog: dialog.accept())
        await home.page.click("button:has-text('退出其他所有设备')")
        await home.page.wait_for_selector("text=已退出其他 1 处登录")
        await home.step("others-ended")
        assert await rows.count() == 1

        # The office browser, still holding its cookie, is asked to sign in again.
        await office.goto("/admin/areas")
        assert office.page.url.startswith(office.url("/login"))
        await office.step("signed-out")
        await home.goto("/")
        assert username in await home.page.inner_text("header")

        # The admin sees the clerk's one remaining session on the clerk's page and ends it.
        admin_name, admin_password = await make_user("admin", county_wide=True)
        admin = await open_journey("admin")
        await admin.sign_in(admin_name, admin_password)
        await admin.goto("/admin/users")
        await admin.page.click(f"text={username}")
        admin.typed(username)
        await admin.page.wait_for_selector("text=登录中的设备")
        await admin.step("user-sessions")
        sessions = admin.page.locator("table.sessions tbody tr")
        assert await sessions.count() == 1
        admin.page.on("dialog", lambda dialog: dialog.accept())
        await sessions.locator("button:has-text('结束')").click()
        await admin.page.wait_for_selector("text=已结束这个登录")
        await admin.step("user-session-ended")
        assert "没有登录中的设备" in await admin.page.inner_text("table.sessions")
        await home.goto("/")
        assert home.page.url.startswith(home.url("/login"))
