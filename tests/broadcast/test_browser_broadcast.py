"""A clerk writes a notice, another person approves it, the clerk schedules and plays it: Chromium, real pages."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Page, expect

from server import Runtime
from settings import Settings
from tests.conftest import UserFactory
from tests.support.broadcasting import broadcasting_settings, build_place, make_principal
from tests.support.browser import chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return broadcasting_settings(tmp_path / "data", database_url)


async def sign_in(page: Page, base: str, username: str, password: str) -> None:
    await page.goto(f"{base}/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/")


async def test_write_approve_schedule_see_the_week_and_the_as_run_log_in_a_real_browser(
    server: TestServer, runtime: Runtime, make_user: UserFactory, tmp_path: Path
) -> None:
    admin = await make_principal(runtime, "place-admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "甲乡", [[("sink", "file:square")]])
    staff = await make_user("staff", township_ids=[place.township_id])
    approver = await make_user("approver", township_ids=[place.township_id])
    base = str(server.make_url("/")).rstrip("/")
    async with chromium() as browser:
        clerk = await (await browser.new_context()).new_page()
        await sign_in(clerk, base, *staff)
        await clerk.goto(f"{base}/broadcast/notices")
        form = "form[action='/broadcast/notices']"
        await clerk.select_option(f"{form} select[name=kind]", "disclosure_village")
        await clerk.fill(f"{form} input[name=title]", "村务公开：道路维修")
        await clerk.fill(f"{form} textarea[name=body]", "本月道路维修支出6,500元。身份证号150125195803121235")
        # The privacy warning and the spoken form appear while typing (the page calls the check API).
        await clerk.wait_for_selector("[data-findings] li.error")
        await clerk.fill(f"{form} textarea[name=body]", "本月道路维修支出6,500元。")
        await expect(clerk.locator("[data-findings] li")).to_have_count(0)
        await expect(clerk.locator("[data-spoken]")).to_contain_text("六千五百元")
        await clerk.fill(f"{form} input[name=repeats]", "1")
        await clerk.click(f"{form} button[type=submit]")
        await clerk.wait_for_selector("text=已保存为草稿")
        notice_url = clerk.url
        await clerk.click("button:has-text('提交审核')")
        await clerk.wait_for_selector("text=已提交审核")

        checker = await (await browser.new_context()).new_page()
        await sign_in(checker, base, *approver)
        await checker.goto(f"{base}/broadcast/approvals")
        await checker.click("text=村务公开：道路维修")
        await checker.click("button:has-text('审核通过')")
        await checker.wait_for_selector("text=已审核通过", timeout=60_000)
        assert await checker.locator("audio").count() == 1

        await clerk.goto(notice_url)
        await clerk.click("a:has-text('安排播出')")
        await clerk.wait_for_url("**/broadcast/schedules**")
        schedule_form = "form[data-schedule-editor]"
        await clerk.fill(f"{schedule_form} input[name=times]", "07:00,18:30")
        await clerk.wait_for_selector("[data-preview] li")
        await clerk.select_option(f"{schedule_form} select[name=zone_ids]", str(place.zone_ids[0]))
        await clerk.click(f"{schedule_form} button[type=submit]")
        await clerk.wait_for_selector("text=播出安排已保存")
        assert "每天 07:00、18:30" in await clerk.inner_text("table")
        # Edited on its own page: the editor comes filled in, previews the change, and saves it.
        await clerk.click("a:has-text('每天 07:00、18:30')")
        await expect(clerk.locator(f"{schedule_form} input[name=times]")).to_have_value("07:00,18:30")
        await clerk.fill(f"{schedule_form} input[name=times]", "07:00,12:00,18:30")
        await expect(clerk.locator("[data-preview]")).to_contain_text("12:00")  # the new slot, whatever the hour
        await clerk.click(f"{schedule_form} button[type=submit]")
        await clerk.wait_for_selector("text=播出安排已修改，立即生效")
        assert "每天 07:00、12:00、18:30" in await clerk.inner_text("[data-description]")

        await clerk.goto(f"{base}/broadcast/zones/{place.zone_ids[0]}/week")
        assert (await clerk.locator("text=村务公开：道路维修").count()) >= 14  # three a day for a week

        await clerk.goto(notice_url)
        await clerk.select_option("form[action$='/play'] select[name=zone_ids]", str(place.zone_ids[0]))
        clerk.on("dialog", lambda dialog: dialog.accept())
        await clerk.click("button:has-text('立即播出')")
        await clerk.wait_for_selector("text=已安排立即播出")
        for _attempt in range(60):
            await clerk.goto(f"{base}/broadcast/asrun")
            if "成功" in await clerk.inner_text("table.asrun"):
                break
            await clerk.wait_for_timeout(500)
        text = await clerk.inner_text("table.asrun")
        assert "村务公开：道路维修" in text and "成功" in text
        await clerk.screenshot(path=str(tmp_path / "asrun.png"), full_page=True)
