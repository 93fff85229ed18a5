"""The admin's and the approver's day with official warnings, in Chromium on the demo county.

The admin adds a push source and hands its token (shown once) to the warning system; a yellow snowstorm
warning arrives (pushed over HTTP, as the system would), waits for release, and the approver finds it in
待办, reads which villages it matched and why and what will be said, and releases it; a malformed message
shows among the refused with its reason in Chinese; a test alert injected from the page reaches no
loudspeaker, because no zone of the demo county is a 测试分区.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from playwright.async_api import expect

from server import Runtime
from settings import Settings
from tests.alerts.fixtures import cap_bytes
from tests.support.broadcasting import demo_county, journey_settings
from tests.support.journey import journeys

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SENDER = "qxj159901@alerts.example.cn"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return journey_settings(tmp_path / "data", database_url)


async def _push(server: TestServer, token: str, data: bytes) -> int:
    async with ClientSession() as http:
        response = await http.post(
            server.make_url("/api/v1/alerts/cap"),
            data=data,
            headers={"Content-Type": "application/xml", "Authorization": f"Bearer {token}"},
        )
        return response.status


async def test_a_warning_arrives_waits_for_the_approver_who_reads_where_and_what_and_releases_it(
    server: TestServer, runtime: Runtime, tmp_path: Path
) -> None:
    logins = await demo_county(runtime, tmp_path / "logins.txt")
    base = str(server.make_url("/"))
    async with journeys(base, tmp_path / "shots") as open_journey:
        admin = await open_journey("admin")
        await admin.sign_in("demo.admin", logins["demo.admin"])
        await admin.goto("/alerts")
        await expect(admin.page.locator("h1")).to_have_text("预警信息")
        await admin.page.locator("form[action='/alerts/sources'] input[name=name]").fill("市气象局推送")
        admin.typed("市气象局推送")
        await admin.page.click("button:has-text('添加来源')")
        token = (await admin.page.locator("#new-token").inner_text()).strip()
        assert len(token) > 30
        admin.typed(token)
        await admin.step("adds-a-push-source-and-sees-its-token-once")
        await admin.check_accessible()

        # The warning system pushes a yellow warning for the county, and a broken message.
        assert await _push(server, token, cap_bytes("cn-yellow-snowstorm.xml", now=runtime.clock.now())) == 202
        assert await _push(server, token, cap_bytes("cn-malformed.xml")) == 400

        approver = await open_journey("approver")
        approver.typed(SENDER)
        await approver.sign_in("demo.approver", logins["demo.approver"])
        todo = approver.page.locator("a:has-text('待放行的预警信息')")
        await expect(todo).to_be_visible()
        await todo.click()
        row = approver.page.locator("tr", has_text="暴雪黄色预警")
        await expect(row).to_contain_text("待审核")
        await approver.step("finds-the-warning-waiting")
        await row.locator("a").click()
        await expect(approver.page.locator("#alert-state")).to_have_text("待审核")
        await expect(approver.page.locator("#alert-reason")).to_have_text("按策略等待审核人放行")
        await expect(approver.page.locator("#alert-spoken")).to_contain_text(
            "请注意，以下是示例县气象局发布的暴雪黄色预警。示例县气象局发布暴雪黄色预警信号。"
        )
        matched = approver.page.locator("tr", has_text="示例东风镇").first
        await expect(matched).to_contain_text("区划代码 159901 包含本村 159901101")
        await approver.step("reads-where-and-what")
        await approver.check_accessible()
        await approver.page.click("button:has-text('放行播出')")
        await expect(approver.page.locator(".flash.ok")).to_contain_text("已放行，正在播出")
        await expect(approver.page.locator("#alert-state")).to_have_text("已播出")
        await expect(approver.page.locator("#alert-reason")).to_contain_text("放行播出")
        await approver.step("released")

        await admin.goto("/alerts")
        refused = admin.page.locator("tr", has_text="不符合 CAP 1.2 规范")
        await expect(refused).to_contain_text("「范围」出现的位置不对")
        await admin.step("sees-the-refused-message-and-why")
        await admin.page.fill("input[name=area_code]", "159901")
        admin.typed("159901")
        await admin.page.click("button:has-text('注入')")
        await expect(admin.page.locator(".flash.ok")).to_contain_text("测试预警已注入：已记录")
        await expect(admin.page.locator("#alert-reason")).to_contain_text("测试分区")
        await admin.step("a-test-alert-reaches-no-loudspeaker")
