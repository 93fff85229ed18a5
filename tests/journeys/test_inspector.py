"""The discipline inspector's day on the demo county: a sealed report and its recording; others are refused.

A villager pressed 3 on the hotline (a report of misconduct) and left a message: the case is sealed from the
moment the call becomes one. The inspector finds it among the sealed reports, listens to it, takes it on and
notes what comes next. An operator who has the case's address is refused with the same 404 as for a case
that does not exist, and the attempt is on record.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from server import Runtime
from storage.models import AuditEntry
from tests.journeys.calls import call_with_a_message
from tests.support.journey import journeys

pytestmark = pytest.mark.browser


async def test_the_inspector_reads_and_hears_a_sealed_report_and_the_operator_is_refused_by_its_address(
    server: TestServer, runtime: Runtime, passwords: dict[str, str], tmp_path: Path
) -> None:
    case, recording_id = await call_with_a_message(
        runtime, "inspector-journey-1", caller="13800007777", choice="3", seconds=14.0
    )
    assert case.sealed  # a report of misconduct is sealed from the moment the call becomes a case
    async with journeys(str(server.make_url("/")), tmp_path / "shots") as open_journey:
        inspector = await open_journey("inspector")
        await inspector.sign_in("demo.inspector", passwords["demo.inspector"])
        assert "待受理的案件" in await inspector.page.inner_text("[data-live=todo]")
        await inspector.page.click("header.top a:has-text('案件台账')")
        await inspector.page.check("#case-filters input[name=sealed_only]")
        await inspector.page.click("#case-filters button[type=submit]")
        await inspector.step("sealed-reports")
        rows = await inspector.page.locator("table.cases tbody tr").all_inner_texts()
        assert len(rows) == 2 and all("密封" in row for row in rows)  # the demo's letter and this call
        await inspector.page.click(f"table.cases a:has-text('{case.number}')")
        await inspector.page.wait_for_url(inspector.url(f"/cases/{case.id}"))
        assert "违纪举报·密封" in await inspector.page.inner_text("h1")
        assert "13800007777" in await inspector.page.inner_text("#summary")  # the inspector sees the number

        player = inspector.page.locator(".player").first
        await player.locator("button.play").click()
        await inspector.page.wait_for_function(
            "() => parseFloat(document.querySelector('.player').dataset.position) > 0.5"
        )
        await player.locator("button.forward").click()
        await player.locator("button.play").click()  # pause
        await inspector.step("listened")
        await inspector.check_accessible()

        await inspector.page.select_option("#triage-form select[name=township_id]", index=1)
        await inspector.page.fill("#triage-form textarea[name=summary]", "反映村干部发放补贴优亲厚友（来电留言）。")
        await inspector.page.click("#triage-form button[type=submit]")
        await inspector.page.wait_for_selector("text=已保存分拣信息")
        await inspector.page.fill("#assign-form input[name=leader_name]", "纪委书记·示例")
        await inspector.page.select_option("#assign-form select[name=unit_id]", index=1)
        await inspector.page.click("#assign-form button[type=submit]")
        await inspector.page.wait_for_selector("text=已交办")
        await inspector.page.fill("form[action$='/notes'] input[name=text]", "约谈村干部前先调取补贴发放名册。")
        await inspector.page.click("form[action$='/notes'] button[type=submit]")
        await inspector.page.wait_for_selector("text=已添加备注")
        await inspector.step("taken-on")
        history = await inspector.page.inner_text("#history")
        assert "交办" in history and "约谈村干部" in history

        operator = await open_journey("operator")
        await operator.sign_in("demo.operator", passwords["demo.operator"])
        response = await operator.page.goto(operator.url(f"/cases/{case.id}"))
        assert response is not None and response.status == 404
        await operator.step("refused")
        refused = await operator.page.inner_text("main")
        assert "不存在" in refused
        missing = await operator.page.goto(operator.url("/cases/99999999"))
        assert missing is not None and missing.status == 404
        assert await operator.page.inner_text("main") == refused  # the same answer as for no case at all
        audio = await operator.page.goto(operator.url(f"/api/v1/cases/{case.id}/recordings/{recording_id}/audio"))
        assert audio is not None and audio.status == 404

    await runtime.cases.access.denials.flush()
    async with runtime.sessions() as session:
        entries = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.object_id == str(case.id)).order_by(AuditEntry.id)
            )
        ).all()
    by_whom = [(entry.username, entry.action) for entry in entries]
    assert ("demo.operator", "case.sealed_denied") in by_whom
    assert ("demo.inspector", "case.view_sealed") in by_whom
    async with runtime.sessions() as session:
        plays = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "recording.play_sealed"))).all()
    assert [entry.username for entry in plays] == ["demo.inspector"]  # one listening, one play on record
