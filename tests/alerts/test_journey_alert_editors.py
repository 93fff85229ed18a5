"""The admin sets a county up for official warnings, in Chromium on the demo county.

She makes 寒潮 warnings wait for an approver (a mistyped row is refused and comes back as she typed it),
switches off a push source the weather bureau no longer uses, gives a village its twelve-digit code and its
coordinates (a code under another township is refused, what she typed kept), marks the loudspeaker in the
village office as the 测试分区, and injects a test alert that now plays there — and only there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import expect
from sqlalchemy import select

from server import Runtime
from settings import Settings
from storage.models import AlertMessage, Township, Village, Zone
from tests.support.broadcasting import demo_county, journey_settings
from tests.support.journey import journeys

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return journey_settings(tmp_path / "data", database_url)


async def test_the_admin_edits_the_policy_a_source_a_village_and_a_test_zone(
    server: TestServer, runtime: Runtime, tmp_path: Path
) -> None:
    logins = await demo_county(runtime, tmp_path / "logins.txt")
    async with runtime.sessions() as session:
        village, township = (
            await session.execute(
                select(Village, Township).join(Township).where(Township.code.is_not(None)).order_by(Village.id)
            )
        ).first()  # type: ignore[misc]
        zone = await session.scalar(select(Zone).where(Zone.village_id == village.id).order_by(Zone.id))
    assert zone is not None and township.code
    base = str(server.make_url("/"))
    async with journeys(base, tmp_path / "shots") as open_journey:
        admin = await open_journey("admin")
        await admin.sign_in("demo.admin", logins["demo.admin"])

        # The policy table: a row for 寒潮 that waits for an approver, first typed with three plays and no interval.
        await admin.goto("/alerts")
        await admin.page.click("a:has-text('预警策略表')")
        await expect(admin.page.locator("h1")).to_have_text("预警策略表")
        new = admin.page.locator("#new-rule")
        await new.locator("input[name=position]").fill("5")
        await new.locator("select[name=action]").select_option(label="待审核")
        await new.locator("input[name=event]").fill("寒潮")
        await new.locator("input[name=max_plays]").fill("3")
        await new.locator("input[name=note]").fill("寒潮预警先由人看一眼")
        admin.typed("寒潮预警先由人看一眼")
        await new.locator("button:has-text('添加')").click()
        new = admin.page.locator("#new-rule")
        await expect(new.locator(".flash.error")).to_contain_text("播出多于一次时需要重复间隔")
        await expect(new.locator("input[name=event]")).to_have_value("寒潮")
        await expect(new.locator("input[name=note]")).to_have_value("寒潮预警先由人看一眼")
        await admin.step("a-row-without-interval-is-refused-as-typed")
        await new.locator("input[name=repeat_every_min]").fill("120")
        await new.locator("button:has-text('添加')").click()
        await expect(admin.page.locator(".flash.ok")).to_contain_text("已添加策略行")
        first = admin.page.locator("section.card").first
        await expect(first.locator("input[name=event]")).to_have_value("寒潮")
        await expect(first.locator("select[name=action]")).to_have_value("review")
        await admin.step("the-cold-wave-row-comes-first")
        await admin.check_accessible()

        # A source added, then switched off.
        await admin.goto("/alerts")
        await admin.page.locator("form[action='/alerts/sources'] input[name=name]").fill("旧气象推送")
        admin.typed("旧气象推送")
        await admin.page.click("button:has-text('添加来源')")
        await admin.page.click("a:has-text('旧气象推送')")
        await admin.page.locator("input[name=active]").uncheck()
        await admin.page.click("button:has-text('保存')")
        await expect(admin.page.locator(".flash.ok")).to_contain_text("（已停用）")
        await expect(admin.page.locator("#source-state")).to_have_text("停用")
        await admin.step("switches-a-source-off")
        await admin.check_accessible()

        # The village's code and coordinates: a code under another township first.
        await admin.goto(f"/admin/villages/{village.id}")
        wrong = "159901999201"
        await admin.page.fill("input[name=code]", wrong)
        await admin.page.fill("input[name=latitude]", "41.12")
        await admin.page.fill("input[name=longitude]", "111.05")
        admin.typed(wrong, "41.12", "111.05")
        await admin.page.click("form[action^='/admin/villages'] button:has-text('保存')")
        await expect(admin.page.locator(".flash.error")).to_contain_text(f"应以所属乡镇的代码 {township.code} 开头")
        await expect(admin.page.locator("input[name=code]")).to_have_value(wrong)
        await expect(admin.page.locator("input[name=latitude]")).to_have_value("41.12")
        await admin.step("a-code-under-another-township-is-refused-as-typed")
        right = f"{township.code}299"
        admin.typed(right)
        await admin.page.fill("input[name=code]", right)
        await admin.page.click("form[action^='/admin/villages'] button:has-text('保存')")
        await expect(admin.page.locator(".flash.ok")).to_contain_text("已保存")
        await expect(admin.page.locator("input[name=code]")).to_have_value(right)
        await admin.step("the-village-has-its-code-and-place")
        await admin.check_accessible()

        # The village office's loudspeaker becomes the 测试分区; a test alert for the village plays there.
        await admin.page.click(f"a[href='/admin/zones/{zone.id}']")
        await admin.page.locator("input[name=is_test]").check()
        await admin.page.click("form[action^='/admin/zones'] button:has-text('保存')")
        await admin.goto(f"/admin/zones/{zone.id}")
        await expect(admin.page.locator("input[name=is_test]")).to_be_checked()
        await admin.goto(f"/admin/villages/{village.id}")
        await expect(admin.page.locator("tr", has_text=zone.name)).to_contain_text("（测试分区）")
        await admin.step("marks-the-test-zone")
        await admin.goto("/alerts")
        await admin.page.fill("input[name=area_code]", right)
        await admin.page.click("button:has-text('注入')")
        await expect(admin.page.locator(".flash.ok")).to_contain_text("测试预警已注入：已播出")
        await expect(admin.page.locator("#alert-state")).to_have_text("已播出")
        await admin.step("a-test-alert-plays-in-the-test-zone")
    async with runtime.sessions() as session:
        injected = await session.scalar(select(AlertMessage).where(AlertMessage.status == "Test"))
    assert injected is not None and injected.zone_ids == [zone.id]
