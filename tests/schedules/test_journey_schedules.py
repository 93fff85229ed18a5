"""Staff schedule a notice in Chromium on the demo county (with its sample notices and schedules).

The editor shows only the fields of the chosen mode, weekday boxes with their names, and — as it is filled
in — the next times, the refusal a time in quiet hours will meet, and the schedules it would overlap. A
refused save keeps everything chosen; saving an overlap is allowed and says so. The zone's week reads in
Chinese (12月6日 周六) with each item's true end time.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import expect
from sqlalchemy import select

from cli.service import load_demo_broadcasting
from schedules.rules import end_label
from server import Runtime
from settings import Settings
from storage.models import Notice, Schedule, Township, Village, Zone
from tests.support.broadcasting import demo_county, journey_settings
from tests.support.journey import journeys

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CIVILITY = "移风易俗 红白喜事简办倡议"
FINANCE = "示例村2026年10月村级财务收支公开"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return journey_settings(tmp_path / "data", database_url)


async def test_staff_schedule_with_an_overlap_warning_and_a_quiet_hours_refusal_that_keeps_the_form(
    server: TestServer, runtime: Runtime, tmp_path: Path
) -> None:
    logins = await demo_county(runtime, tmp_path / "logins.txt")
    await load_demo_broadcasting(runtime)
    async with runtime.sessions() as session:
        civility = await session.scalar(select(Notice).where(Notice.title == CIVILITY))
        finance = await session.scalar(select(Notice).where(Notice.title == FINANCE))
        square = await session.scalar(
            select(Zone.id)
            .join(Village)
            .join(Township)
            .where(Township.name == "示例东风镇", Village.name == "前进村", Zone.name == "村委会广场")
        )
        existing = len((await session.scalars(select(Schedule.id))).all())
    assert civility is not None and finance is not None and finance.audio_duration_s and square is not None

    async with journeys(str(server.make_url("/")), tmp_path / "shots") as open_journey:
        staff = await open_journey("staff")
        await staff.sign_in("demo.staff", logins["demo.staff"])
        await staff.page.click("header nav a:has-text('播出安排')")
        form = staff.page.locator("form[data-schedule-editor]")
        weekdays = form.locator("fieldset.weekdays")
        once = form.locator("input[name=once_at]")
        times = form.locator("input[name=times]")

        # Only the chosen mode's fields are shown; the weekday boxes carry their names.
        await expect(times).to_be_visible()
        await expect(weekdays).to_be_hidden()
        await expect(once).to_be_hidden()
        await form.locator("select[name=kind]").select_option(label="只播一次")
        await expect(once).to_be_visible()
        await expect(times).to_be_hidden()
        await form.locator("select[name=kind]").select_option(label="每周几")
        await expect(weekdays).to_be_visible()
        await expect(weekdays.locator("label")).to_have_text(["周一", "周二", "周三", "周四", "周五", "周六", "周日"])
        await staff.step("editor-fields-by-mode")

        # A weekly slot at 12:00 in 前进村: the preview lists the next times and the schedules it overlaps.
        await form.locator("select[name=notice_id]").select_option(label=f"{CIVILITY}（文明新风）")
        await weekdays.get_by_label("周一").check()
        await weekdays.get_by_label("周三").check()
        await times.fill("12:00")
        village = form.locator("[data-zp-village]", has_text="前进村")
        await village.locator("input[data-zp-level=village]").check()
        await expect(form.locator("[data-preview] li").first).to_have_text(re.compile(r"^\d+月\d+日 周[一三] 12:00$"))
        warnings = form.locator("[data-preview-warnings] li")
        await expect(warnings.filter(has_text=FINANCE)).to_have_count(1)
        await expect(warnings.filter(has_text=FINANCE)).to_contain_text("前进村·村委会广场")
        await staff.step("preview-warns-of-the-overlap")

        # 22:00 is in the township's quiet hours: the preview says saving will be refused, and it is —
        # with the notice, the mode, the days, the time and the village all still chosen.
        await times.fill("22:00")
        quiet = "22:00 在示例东风镇的静默时段（21:30–06:30）内"
        await expect(form.locator("[data-preview-error]")).to_contain_text(f"保存时会被拒绝：{quiet}")
        await form.locator("button[type=submit]").click()
        await expect(staff.page.locator("[data-error]")).to_contain_text(quiet)
        form = staff.page.locator("form[data-schedule-editor]")
        await expect(form.locator("select[name=notice_id]")).to_have_value(str(civility.id))
        await expect(form.locator("select[name=kind]")).to_have_value("weekly")
        await expect(form.locator("input[name=times]")).to_have_value("22:00")
        await expect(form.locator("input[name=weekdays]:checked")).to_have_count(2)
        await expect(form.locator("input[name=weekdays][value='1']")).to_be_checked()
        await expect(form.locator("input[name=weekdays][value='3']")).to_be_checked()
        village = form.locator("[data-zp-village]", has_text="前进村")
        await expect(village.locator("input[data-zp-level=village]")).to_be_checked()
        await staff.step("quiet-hours-refusal-keeps-the-form")
        await staff.check_accessible()
        async with runtime.sessions() as session:
            assert len((await session.scalars(select(Schedule.id))).all()) == existing

        # Back to noon: saved, with the overlap named (allowed: the higher priority plays first).
        await form.locator("input[name=times]").fill("12:00")
        await form.locator("button[type=submit]").click()
        await expect(staff.page.locator(".flash.ok")).to_contain_text("播出安排已保存，立即生效")
        await expect(staff.page.locator(".flash.warn").filter(has_text=FINANCE)).to_contain_text("时间重叠")
        await expect(staff.page.locator("[data-description]")).to_have_text("每周周一、周三 12:00")
        await staff.step("saved-with-the-overlap-named")

        # The zone's week: days in Chinese, each item from its start to its true end.
        await staff.goto(f"/broadcast/zones/{square}/week")
        days = await staff.page.locator("section.card h2").all_inner_texts()
        assert len(days) >= 7 and all(re.fullmatch(r"\d+月\d+日 周[一二三四五六日]", day) for day in days), days
        ends = end_label(
            runtime.clock.now().replace(hour=4, minute=0, second=0, microsecond=0)
            + timedelta(seconds=finance.audio_duration_s),
            runtime.settings.zone,
        )  # 12:00 in Beijing is 04:00 UTC
        row = staff.page.locator("tr", has_text=FINANCE).filter(has_text="12:00–").first
        await expect(row.locator("[data-span]")).to_have_text(f"12:00–{ends}")
        assert ends != "12:01" or finance.audio_duration_s == 60
        await expect(staff.page.locator("tr.conflict", has_text=CIVILITY).first).to_contain_text("冲突")
        await staff.step("the-zone-s-week")
        await staff.check_accessible()
