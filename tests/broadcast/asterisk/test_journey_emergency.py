"""A county leader sends an emergency to villages of two townships, in Chromium on the demo county, on the real
Asterisk: the grouped picker (search, a whole township, a whole village, the speakers counted), one confirmation
whose absence keeps the form, and a result that says what each loudspeaker did.

The demo's speakers are what a county has: SIP loudspeakers (paged through the sandbox, where none of them is
registered: 终端未应答), RTP columns (multicast groups, sent on loopback only) and 4G terminals (which never ask
here: 未取走). So the honest status is 部分成功, never 成功, and each failed speaker is listed with its reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import expect
from sqlalchemy import func, select

from broadcast.asrun import AsRunFilter
from broadcast.outcome import summarize
from server import Runtime
from settings import Settings
from storage.models import Broadcast, Speaker, Township, Village, Zone
from tests.support.asterisk import Hotline
from tests.support.broadcasting import demo_county, journey_settings, principal
from tests.support.journey import journeys

pytestmark = [pytest.mark.asterisk, pytest.mark.slow, pytest.mark.browser]

CHOSEN = (("示例红柳乡", "前进村"), ("示例白桦乡", "新华村"))
TITLE = "森林草原防火紧急通知"
BODY = "严禁一切野外用火。"


@pytest.fixture
def settings(asterisk_settings: Settings, tmp_path: Path) -> Settings:
    """This process's Asterisk, with the journey's short items and quick verdicts."""
    quick = journey_settings(tmp_path / "data", asterisk_settings.database.url)
    return asterisk_settings.model_copy(update={"broadcast": quick.broadcast, "audio": quick.audio})


async def chosen_speakers(runtime: Runtime) -> tuple[int, int]:
    """Zones and enabled speakers of the two chosen villages."""
    zones: list[int] = []
    async with runtime.sessions() as session:
        for township, village in CHOSEN:
            found = select(Zone.id).join(Village).join(Township)
            zones += (await session.scalars(found.where(Township.name == township, Village.name == village))).all()
        speakers = await session.scalar(
            select(func.count(Speaker.id)).where(Speaker.zone_id.in_(zones), Speaker.enabled.is_(True))
        )
    return len(zones), int(speakers or 0)


async def test_a_leader_sends_an_emergency_to_villages_of_two_townships_and_sees_each_speakers_outcome(
    hotline: Hotline, server: TestServer, runtime: Runtime, tmp_path: Path
) -> None:
    logins = await demo_county(runtime, tmp_path / "logins.txt")
    zones, speakers = await chosen_speakers(runtime)
    async with journeys(str(server.make_url("/")), tmp_path / "shots") as open_journey:
        leader = await open_journey("leader")
        await leader.sign_in("demo.leader", logins["demo.leader"])
        await leader.page.click("header nav a:has-text('应急广播')")
        picker = leader.page.locator("[data-zone-picker]")
        # The picker counts once its script has run; a box ticked before then is kept (broadcast.js).
        await expect(picker).to_have_attribute("data-zp-ready", "")
        townships = picker.locator("[data-zp-township]")
        await expect(townships).to_have_count(9)
        await expect(picker.locator("[data-zp-count]")).to_have_text("尚未选择播出分区")
        await leader.step("the-grouped-picker")

        # A whole township ticks its villages and counts its speakers; unticked, nothing is chosen.
        north = townships.filter(has_text="示例北滩乡")
        await north.locator("summary").click()
        await north.locator("input[data-zp-level=township]").check()
        await expect(north.locator("input[data-zp-level=zone]:not(:checked)")).to_have_count(0)
        await expect(picker.locator("[data-zp-count]")).to_contain_text("已选 11 个村")
        await north.locator("input[data-zp-level=township]").uncheck()
        await expect(picker.locator("[data-zp-count]")).to_have_text("尚未选择播出分区")

        # Search: 前进村 is in every township, and each shows under its own.
        await picker.locator("[data-zp-search]").fill("前进")
        await expect(picker.locator("[data-zp-village]:visible")).to_have_count(9)
        await leader.step("search-finds-each-township-s-village")
        for township, village in CHOSEN:
            await picker.locator("[data-zp-search]").fill(village[:2])
            group = townships.filter(has_text=township).locator("[data-zp-village]", has_text=village)
            await group.locator("input[data-zp-level=village]").check()
        await picker.locator("[data-zp-search]").fill("")
        summary = f"已选 2 个村、{zones} 个分区，共 {speakers} 个喇叭"
        await expect(picker.locator("[data-zp-count]")).to_have_text(summary)

        # One confirmation: without the tick nothing is sent, and nothing typed or ticked is lost.
        await leader.page.fill("input[name=title]", TITLE)
        await leader.page.fill("textarea[name=body]", BODY)
        await leader.page.click("button:has-text('立即播出应急广播')")
        await expect(leader.page.locator("[data-error]")).to_contain_text("请勾选“确认立即播出”")
        await expect(leader.page.locator("input[name=title]")).to_have_value(TITLE)
        await expect(leader.page.locator("textarea[name=body]")).to_have_value(BODY)
        await expect(picker.locator("[data-zp-count]")).to_have_text(summary)
        await leader.step("refused-without-the-tick-keeps-everything")
        await leader.check_accessible()
        async with runtime.sessions() as session:
            assert await session.scalar(select(func.count(Broadcast.id))) == 0

        await leader.page.check("input[name=confirm]")
        await leader.page.click("button:has-text('立即播出应急广播')")
        outcome = leader.page.locator("[data-outcome]")
        await expect(outcome).not_to_have_text("等待播出")
        await expect(outcome).not_to_contain_text("播出中", timeout=60_000)  # the page refreshes itself until done
        await leader.step("the-result")
        await leader.check_accessible()

        # What the page says is what each speaker's own row says.
        broadcast_id = int(leader.page.url.split("/broadcast/runs/")[1].split("#")[0])
        leader_principal = await principal(runtime, "demo.leader")
        result = await runtime.broadcasting.asrun.result(leader_principal, broadcast_id)
        assert len(result.speakers) == speakers
        truth = summarize(result.speakers)
        played = [s for s in result.speakers if s.played]
        assert {s.transport for s in played} == {"rtp"}, [(s.name, s.transport, s.reason) for s in result.speakers]
        assert truth.label == f"部分成功（{len(played)}/{speakers}）"
        await expect(outcome).to_have_text(truth.label)
        rows = leader.page.locator("[data-speakers] tbody tr")
        await expect(rows).to_have_count(speakers)
        shown = [line.split("\t") for line in (await rows.all_inner_texts())]
        assert sorted((row[1], row[2], row[3], row[6]) for row in shown) == sorted(
            (s.name, s.transport_label, s.state_label, s.reason) for s in result.speakers
        )
        not_played = leader.page.locator("[data-not-played] li")
        await expect(not_played).to_have_count(speakers - len(played))
        await expect(not_played.filter(has_text="SIP 寻呼").first).to_contain_text("终端未应答")
        await expect(not_played.filter(has_text="4G 终端").first).to_contain_text("终端未在规定时间内取走并开始播放")

        # The as-run log says the same, zone by zone: never 成功 for a zone where a speaker failed.
        await leader.page.click("a:has-text('播出记录')")
        lines = leader.page.locator("table.asrun tbody tr", has_text=TITLE)
        await expect(lines).to_have_count(zones)
        shown_lines = sorted(line.split("\t")[4] for line in await lines.all_inner_texts())
        logged = await runtime.broadcasting.asrun.lines(leader_principal, AsRunFilter(kind="emergency"))
        assert shown_lines == sorted(line.outcome.label for line in logged)
        assert all(label.startswith(("部分成功", "失败")) for label in shown_lines), shown_lines
        await leader.step("as-run-log")
        await leader.check_accessible()
