"""A person signs in with a real browser and administers the area tree through the pages."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from server import Runtime
from tests.conftest import UserFactory
from tests.foundation.seed import COUNTY_READER, seed_tree
from tests.support.browser import chromium

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
        await page.screenshot(path=str(tmp_path / "township.png"), full_page=True)

        await page.click("button:has-text('退出')")
        await page.wait_for_url(f"{base}/login")
    villages = await runtime.areas.list_villages(COUNTY_READER)
    assert "新建示例村" in {village.name for village in villages}


async def test_a_clerk_signs_out_a_forgotten_browser_from_another_one(
    server: TestServer, make_user: UserFactory
) -> None:
    """Signed in at the office and at home; from home, 退出其他所有设备; the office browser is signed out."""
    username, password = await make_user("staff", county_wide=True)
    base = str(server.make_url("/")).rstrip("/")

    async with chromium() as browser:
        office = await (await browser.new_context()).new_page()
        home = await (await browser.new_context()).new_page()
        for page in (office, home):
            await page.goto(f"{base}/login")
            await page.fill("input[name=username]", username)
            await page.fill("input[name=password]", password)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{base}/")

        await home.click("text=登录设备")
        await home.wait_for_url(f"{base}/account/sessions")
        rows = home.locator("table.sessions tbody tr")
        assert await rows.count() == 2
        assert "（当前）" in await home.inner_text("table.sessions tr.current")
        home.on("dialog", lambda dialog: dialog.accept())
        await home.click("button:has-text('退出其他所有设备')")
        await home.wait_for_selector("text=已退出其他 1 处登录")
        assert await rows.count() == 1

        await office.goto(f"{base}/admin/areas")
        assert office.url.startswith(f"{base}/login")
        assert "登录" in await office.inner_text("main")
        # The one left signed in still works.
        await home.goto(f"{base}/")
        assert username in await home.inner_text("header")
