"""The hotline operator's day on the demo county: a dial test's case worked from the call to 销号 (issue 16).

The operator rang the hotline from a test phone to check it works (a dial test: kept out of the ledger and
the figures). Its case is found by the number the operator was told, typed with a space as people do; its
message is played, sought ten seconds on and back, and heard faster; the case is placed, accepted, called
back — the operator's own phone cannot be rung, and the page says so in Chinese, under the operator's name —
assigned, resolved, followed up and closed, each step through the page and each shown back.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from cases.callback import CallbackService
from server import Runtime
from storage.models import AuditEntry
from tests.journeys.calls import call_with_a_message
from tests.support.journey import journeys
from tests.support.refusing_line import RefusingLine

pytestmark = pytest.mark.browser


async def test_the_operator_finds_a_dial_test_by_its_number_listens_and_works_it_to_closed(
    server: TestServer, runtime: Runtime, passwords: dict[str, str], tmp_path: Path
) -> None:
    case, _recording_id = await call_with_a_message(
        runtime, "operator-journey-1", caller="13800008888", choice="1", seconds=30.0, test_call=True
    )
    # The callbacks as the elected worker runs them, over a line whose Asterisk cannot ring the operator's phone.
    callbacks = CallbackService(
        runtime.sessions, runtime.clock, runtime.cases.workflow, RefusingLine(), runtime.cases.callbacks.config
    )
    runtime.cases.callbacks = callbacks
    await callbacks.start()
    try:
        async with journeys(str(server.make_url("/")), tmp_path / "shots") as open_journey:
            operator = await open_journey("operator")
            operator.typed("operator1")  # the operator's phone, as the admin typed it
            await operator.sign_in("demo.operator", passwords["demo.operator"])
            await operator.page.click("header.top a:has-text('案件台账')")
            await operator.page.wait_for_url(operator.url("/cases"))
            assert case.number not in await operator.page.inner_text("main")  # a dial test is not in the ledger
            spaced = f"{case.number[:4]} {case.number[4:]}"
            operator.typed(*spaced.split())
            await operator.page.fill("#case-filters input[name=q]", spaced)
            await operator.page.click("#case-filters button[type=submit]")
            await operator.step("found-by-number")
            numbers = await operator.page.locator("table.cases td:first-child a").all_inner_texts()
            assert [number.strip() for number in numbers] == [case.number]
            await operator.page.click(f"table.cases a:has-text('{case.number}')")
            await operator.page.wait_for_url(operator.url(f"/cases/{case.id}"))
            assert "拨测" in await operator.page.inner_text("h1")
            await operator.check_accessible()

            player = operator.page.locator(".player").first
            audio = ".player audio"
            await player.locator("button.play").click()
            await operator.page.wait_for_function(
                "() => parseFloat(document.querySelector('.player').dataset.position) > 0.3"
            )
            await player.locator("button.forward").click()  # ten seconds on
            await operator.page.wait_for_function(f"() => document.querySelector('{audio}').currentTime >= 10")
            await player.locator("button.back").click()  # and back
            assert await operator.page.eval_on_selector(audio, "a => a.currentTime") < 10
            await player.locator("select.rate").select_option("1.25")
            assert await operator.page.eval_on_selector(audio, "a => a.playbackRate") == 1.25
            await player.locator("button.play").click()  # pause
            await operator.step("listened")

            await operator.page.select_option("#triage-form select[name=township_id]", index=1)
            await operator.page.fill(
                "#triage-form textarea[name=summary]", "拨测：热线留言录音清楚，分拣办理流程演练。"
            )
            await operator.page.click("#triage-form button[type=submit]")
            await operator.page.wait_for_selector("text=已保存分拣信息")
            await operator.page.click("#actions form[action$='/accept'] button")
            await operator.page.wait_for_selector(".flash:has-text('已受理')")
            await operator.step("accepted")

            await operator.page.click("#callback-button")
            await operator.page.locator("#callbacks tr[data-callback]").first.wait_for()  # asked for: on the page
            # The page follows the attempt and shows its end, with why, without a reload by hand.
            await operator.page.locator("#callbacks td.reason", has_text="打不通您的电话（operator1）").wait_for()
            await operator.page.locator(".flash", has_text="正在回拨").wait_for(state="detached")
            await operator.step("callback-failed")
            row = await operator.page.locator("#history tr.event-callback").first.inner_text()
            assert "呼叫失败" in row and "接线员·王示例" in row

            await operator.page.select_option("#assign-form select[name=unit_id]", index=1)
            await operator.page.fill("#assign-form input[name=leader_name]", "副乡长·示例")
            await operator.page.click("#assign-form button[type=submit]")
            await operator.page.wait_for_selector(".flash:has-text('已交办')")
            assert "办理中" in await operator.page.inner_text("h1")
            await operator.page.fill(
                "#resolve-form textarea[name=result]", "拨测通过：录音、回拨失败提示、交办均正常。"
            )
            await operator.page.click("#resolve-form button[type=submit]")
            await operator.page.wait_for_selector(".flash:has-text('已办结')")
            assert "已办结" in await operator.page.inner_text("h1")
            await operator.step("resolved")

            follow_up = operator.page.locator("form[action$='/follow-up']")
            await follow_up.locator("select[name=satisfaction]").select_option("satisfied")
            await follow_up.locator("input[name=note]").fill("电话回访，测试人满意。")
            await follow_up.locator("button[type=submit]").click()
            await operator.page.wait_for_selector(".flash:has-text('已记录回访')")
            assert "已回访" in await operator.page.inner_text("h1")
            close = operator.page.locator("form[action$='/close']")
            await close.locator("input[name=note]").fill("拨测完成。")
            await close.locator("button[type=submit]").click()
            await operator.page.wait_for_selector(".flash:has-text('已销号')")
            assert "已销号" in await operator.page.inner_text("h1")
            await operator.step("closed")
            history = await operator.page.inner_text("#history")
            for step in ("分拣", "受理", "回拨", "交办", "办结", "回访", "销号"):
                assert step in history, step
            await operator.check_accessible()
    finally:
        await callbacks.stop()

    async with runtime.sessions() as session:
        plays = (await session.scalars(select(AuditEntry).where(AuditEntry.action.like("recording.play%")))).all()
    assert [entry.username for entry in plays] == ["demo.operator"]  # one listening, one play on record
