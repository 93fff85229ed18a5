"""An operator works a real hotline call in Chromium: plays the villager's recording, seeks, assigns, resolves."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Page

from hotline.dialtest import VillagerScript
from server import Runtime
from tests.cases.conftest import County
from tests.conftest import UserFactory
from tests.support.asterisk import Hotline
from tests.support.browser import chromium
from tests.support.journey import journeys, keep_screenshot

pytestmark = pytest.mark.browser


async def headline(page: Page, base: str, figure: str) -> str:
    await page.goto(f"{base}/dashboard")
    return (await page.inner_text(f"[data-headline={figure}]")).strip()


async def test_an_operator_plays_seeks_assigns_and_resolves_a_hotline_call_and_the_dashboard_moves(
    hotline: Hotline, server: TestServer, runtime: Runtime, county: County, make_user: UserFactory, tmp_path: Path
) -> None:
    username, password = await make_user("operator", county_wide=True)
    base = str(server.make_url("/")).rstrip("/")
    async with chromium() as browser:
        page = await browser.new_page()
        page.set_default_timeout(30_000)
        await page.goto(f"{base}/login")
        await page.fill("input[name=username]", username)
        await page.fill("input[name=password]", password)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/")
        received_before = int(await headline(page, base, "received"))
        resolved_before = int(await headline(page, base, "resolved"))

        # A real villager's call, not a dial test: dial tests are left out of the ledger and the figures.
        script = VillagerScript(keys=("1",), audio=hotline.media.villager, test_call=False)
        call = await hotline.telephony.villager.call(script, timeout_s=120)
        outcome = await hotline.settled(call.linkedid)
        assert outcome["case"]["test_call"] is False
        number = outcome["case"]["number"]

        await page.goto(f"{base}/cases")
        await page.click(f"text={number}")
        await page.wait_for_selector("#recordings .player")
        assert "来电留言" in await page.inner_text("#recordings")

        player = page.locator(".player").first
        await player.locator("button.play").click()
        await page.wait_for_function(
            "() => { const p = document.querySelector('.player');"
            " return p.dataset.state === 'playing' && parseFloat(p.dataset.position) > 0.3; }"
        )
        await player.locator("select.rate").select_option("1.25")
        assert await page.eval_on_selector(".player audio", "audio => audio.playbackRate") == 1.25
        await page.eval_on_selector(
            ".player input.seek", "el => { el.value = '3'; el.dispatchEvent(new Event('change')); }"
        )
        await page.wait_for_function(
            "() => { const a = document.querySelector('.player audio'); return a.currentTime >= 3 && !a.seeking; }"
        )
        await player.locator("button.back").click()
        back = await page.eval_on_selector(".player audio", "audio => audio.currentTime")
        assert back < 3
        await player.locator("button.forward").click()
        assert await page.eval_on_selector(".player audio", "audio => audio.currentTime") > back + 1
        await player.locator("select.rate").select_option("0.75")
        assert await page.eval_on_selector(".player audio", "audio => audio.playbackRate") == 0.75
        await keep_screenshot(page, tmp_path / "case.png")

        await page.select_option("#triage-form select[name=township_id]", str(county.township_a))
        await page.fill("#triage-form textarea[name=summary]", "村口的桥裂了，孩子上学危险")
        await page.click("#triage-form button[type=submit]")
        await page.wait_for_selector("text=已保存分拣信息")
        await page.select_option("#assign-form select[name=unit_id]", str(county.unit_a))
        await page.fill("#assign-form input[name=leader_name]", "张书记")
        await page.click("#assign-form button[type=submit]")
        await page.wait_for_selector("text=已交办")
        assert "办理中" in await page.inner_text("h1")
        await page.fill("#resolve-form textarea[name=result]", "已封闭危桥，修建便桥，告知了王大娘")
        await page.click("#resolve-form button[type=submit]")
        await page.wait_for_selector("text=已办结")
        history = await page.inner_text("#history")
        for step in ("分拣", "受理", "交办", "办结"):
            assert step in history

        assert int(await headline(page, base, "received")) == received_before + 1
        assert int(await headline(page, base, "resolved")) == resolved_before + 1
        await keep_screenshot(page, tmp_path / "dashboard.png")


async def test_an_operator_sees_which_caller_still_has_to_be_told_her_case_number(
    hotline: Hotline, server: TestServer, runtime: Runtime, make_user: UserFactory, tmp_path: Path
) -> None:
    """She hung up as her number began to be read back: the case is there, and its page asks for a call to tell it."""
    username, password = await make_user("operator", county_wide=True)
    script = VillagerScript(
        caller="13800002222",
        caller_name="赵大妈",
        keys=("1",),
        audio=hotline.media.villager,
        hangup_at="readback",
        test_call=False,  # a real caller's case: in the ledger the operator works from
    )
    call = await hotline.telephony.villager.call(script, timeout_s=120)
    assert call.read_back is None  # she never heard it to the end
    case = (await hotline.settled(call.linkedid))["case"]
    assert case["number_told"] is False
    async with journeys(str(server.make_url("/")), tmp_path / "shots") as open_journey:
        operator = await open_journey("operator")
        await operator.sign_in(username, password)
        await operator.goto("/cases")
        await operator.page.click(f"text={case['number']}")
        await operator.page.wait_for_selector("#tell-number")
        told = await operator.page.inner_text("#tell-number")
        assert "待回电告知" in told and case["number"] in told, told
        assert "赵大妈" in await operator.page.inner_text("#summary")
        assert "来电" in await operator.page.inner_text("#summary")
        await operator.step("case-to-be-told-its-number")
        await operator.check_accessible()
