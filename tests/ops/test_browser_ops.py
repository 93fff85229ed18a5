"""A disk nearly full, a clock far off or an alarm, as people see it: the admin warned in 待办, on 系统状态 and on
值班告警 (where she keeps the duty list), an approver refused in Chinese.

Real Chromium, real pages, the real disk measured (the refusal threshold is set above what any disk has free).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from broadcast.notices import NoticeInput
from common.clock import ManualClock
from ops.alarms import Trouble
from server import Runtime
from settings import OpsSettings, Settings
from storage.models import AuditEntry, Notice
from tests.conftest import UserFactory
from tests.ops.test_alarms import Switch, service
from tests.ops.test_clock import CHRONY_FAR_OFF, program
from tests.support.broadcasting import broadcasting_settings, build_place, make_principal
from tests.support.journey import journeys

pytestmark = pytest.mark.browser


@pytest.fixture
def chronyc_output() -> str | None:
    """What a stand-in ``chronyc`` prints; None: the disk is the trouble (its thresholds above any disk's)."""
    return None


@pytest.fixture
def settings(tmp_path: Path, database_url: str, chronyc_output: str | None) -> Settings:
    if chronyc_output is None:
        ops = OpsSettings(disk_warn_free_percent=100, disk_refuse_free_percent=100)
    else:
        programs = tmp_path / "programs"
        ops = OpsSettings(chronyc=program(programs, "chronyc", chronyc_output), timedatectl=str(programs / "none"))
    return broadcasting_settings(tmp_path / "data", database_url, ops=ops)


async def test_with_the_disk_nearly_full_the_admin_is_warned_and_an_approval_is_refused_with_the_reason(
    server: TestServer, runtime: Runtime, make_user: UserFactory, tmp_path: Path
) -> None:
    admin = await make_principal(runtime, "place-admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "甲乡", [[("sink", "file:a")]])
    clerk = await make_principal(runtime, "clerk", "staff", township_ids=[place.township_id])
    notices = runtime.broadcasting.notices
    notice = await notices.create(
        clerk, NoticeInput(kind="service", title="停水通知", body="明天停水。", township_id=place.township_id)
    )
    await notices.submit(clerk, notice.id)
    admin_login = await make_user("admin", county_wide=True)
    approver_login = await make_user("approver", township_ids=[place.township_id])

    async with journeys(str(server.make_url("/")), tmp_path / "shots") as open_journey:
        duty = await open_journey("admin")
        await duty.sign_in(*admin_login)
        todo = duty.page.locator("section.todo")
        warning = await todo.inner_text()
        assert "磁盘空间不足" in warning and "已暂停上传录音和审核通过通知" in warning
        await todo.locator("a", has_text="磁盘空间不足").click()
        await duty.page.wait_for_url(duty.url("/admin/status"))
        await duty.step("status")
        main = await duty.page.inner_text("main")
        assert "磁盘快满了：已暂停上传录音和审核通过通知，剩下的空间留给热线录音" in main
        assert "热线录音" in main and "不足，已暂停上传和审核" in main
        await duty.check_accessible()

        approver = await open_journey("approver")
        await approver.sign_in(*approver_login)
        approver.typed("clerk")  # the author's name, shown on the notice
        await approver.goto(f"/broadcast/notices/{notice.id}")
        await approver.page.click("button:has-text('审核通过')")
        await approver.page.wait_for_selector("text=磁盘空间不足")
        await approver.step("refused")
        shown = await approver.page.inner_text("main")
        assert "暂时不能审核通过通知" in shown and "剩下的空间要留给热线录音" in shown
    async with runtime.sessions() as session:
        stored = await session.get(Notice, notice.id)
        assert stored is not None and stored.state == "pending" and stored.audio_keys is None


@pytest.mark.parametrize("chronyc_output", [CHRONY_FAR_OFF])
async def test_with_the_clock_far_off_the_admin_is_warned_in_todo_and_on_the_status_page(
    server: TestServer, make_user: UserFactory, tmp_path: Path
) -> None:
    async with journeys(str(server.make_url("/")), tmp_path / "shots") as open_journey:
        duty = await open_journey("admin")
        await duty.sign_in(*await make_user("admin", county_wide=True))
        todo = await duty.page.locator("section.todo").inner_text()
        assert "时钟未同步：服务器时钟与时间服务器相差 2500 毫秒，定时广播可能不准" in todo
        await duty.page.locator("section.todo a", has_text="时钟未同步").click()
        await duty.page.wait_for_url(duty.url("/admin/status"))
        await duty.step("clock")
        assert "服务器时钟与时间服务器相差 2500 毫秒" in await duty.page.inner_text("main")
        await duty.check_accessible()


@pytest.mark.parametrize("chronyc_output", [CHRONY_FAR_OFF])
async def test_the_admin_keeps_the_duty_list_and_acknowledges_an_alarm_from_todo(
    server: TestServer, runtime: Runtime, make_user: UserFactory, tmp_path: Path
) -> None:
    # An alarm as the worker raises it (no telephony here: it stays open, shown, nobody phoned).
    failed = Switch(Trouble("emergency_failed", "7", "紧急广播“山洪预警”有2个喇叭没有播出，请尽快检查。"))
    failed.on = True
    await service(runtime, ManualClock(datetime.now(UTC)), failed).run_once()

    async with journeys(str(server.make_url("/")), tmp_path / "shots") as open_journey:
        duty = await open_journey("admin")
        await duty.sign_in(*await make_user("admin", county_wide=True))
        todo = duty.page.locator("section.todo")
        assert "告警未确认，正在电话通知值班人员" in await todo.inner_text()
        await todo.locator("a", has_text="告警未确认").click()
        await duty.page.wait_for_url(duty.url("/admin/alarms"))
        await duty.step("alarms")
        main = await duty.page.inner_text("main")
        assert "紧急广播失败" in main and "山洪预警" in main and "呼叫中" in main
        assert "值班名单是空的" in main and "不会打电话" in main  # no telephony: said, not hidden

        form = duty.page.locator("form[data-add-officer]")
        duty.typed("赵值班", "1390000", "12:00")
        await form.locator("input[name=name]").fill("赵值班")
        await form.locator("input[name=phone]").fill("1390000x")
        duty.typed("1390000x")
        await form.locator("input[name=on_from]").fill("00:00")
        await form.locator("input[name=on_until]").fill("00:00")
        await form.locator("button[type=submit]").click()
        await duty.page.wait_for_selector("[data-error]")
        await duty.step("refused")
        assert "电话" in await duty.page.inner_text("[data-error]")
        assert await form.locator("input[name=name]").input_value() == "赵值班"
        assert await form.locator("input[name=phone]").input_value() == "1390000x"
        await form.locator("input[name=phone]").fill("13900001234")
        await form.locator("button[type=submit]").click()
        await duty.page.wait_for_selector("text=已把赵值班加入值班名单")
        officers = await duty.page.inner_text("[data-officers]")
        assert "赵值班" in officers and "13900001234" in officers and "全天" in officers and "当班" in officers

        await duty.page.click("button:has-text('我已知道，停止打电话')")
        await duty.page.wait_for_selector("text=已确认告警，不再打电话")
        await duty.step("acknowledged")
        assert "已确认" in await duty.page.inner_text("[data-alarms]")
        await duty.check_accessible()
        await duty.goto("/")
        assert "告警未确认" not in await duty.page.locator("main").inner_text()


async def test_the_admin_corrects_an_officer_and_puts_the_night_shift_first(
    server: TestServer, runtime: Runtime, make_user: UserFactory, tmp_path: Path
) -> None:
    admin_user = await make_user("admin", county_wide=True)
    async with journeys(str(server.make_url("/")), tmp_path / "shots") as open_journey:
        duty = await open_journey("admin")
        await duty.sign_in(*admin_user)
        await duty.goto("/admin/alarms")
        form = duty.page.locator("form[data-add-officer]")
        for name, phone in (("赵白班", "13900001111"), ("钱夜班", "13900002222")):
            duty.typed(name, phone)
            await form.locator("input[name=name]").fill(name)
            await form.locator("input[name=phone]").fill(phone)
            await form.locator("button[type=submit]").click()
            await duty.page.wait_for_selector(f"text=已把{name}加入值班名单")

        # 钱夜班's hours were wrong and her number mistyped: the form refuses it and keeps what she typed.
        await duty.page.click("a[aria-label='修改钱夜班']")
        await duty.page.wait_for_selector("form[data-edit-officer]")
        edit = duty.page.locator("form[data-edit-officer]")
        assert await edit.locator("input[name=phone]").input_value() == "13900002222"
        duty.typed("1390000222O", "18:00", "08:00")
        await edit.locator("input[name=phone]").fill("1390000222O")
        await edit.locator("input[name=on_from]").fill("18:00")
        await edit.locator("input[name=on_until]").fill("08:00")
        await edit.locator("button[type=submit]").click()
        await duty.page.wait_for_selector("[data-error]")
        await duty.step("change refused")
        assert "电话" in await duty.page.inner_text("[data-error]")
        assert await edit.locator("input[name=phone]").input_value() == "1390000222O"
        assert await edit.locator("input[name=on_from]").input_value() == "18:00"
        await duty.check_accessible()
        await edit.locator("input[name=phone]").fill("13900002220")
        await edit.locator("button[type=submit]").click()
        await duty.page.wait_for_selector("text=已保存钱夜班的值班信息")
        officers = duty.page.locator("[data-officers]")
        assert "13900002220" in await officers.inner_text() and "18:00–08:00" in await officers.inner_text()

        # The night shift is called first.
        await duty.page.click("button[aria-label='把钱夜班上移']")
        await duty.page.wait_for_selector("text=已调整值班名单的顺序")
        await duty.step("reordered")
        rows = await officers.locator("tbody tr").all_inner_texts()
        assert rows[0].startswith("1") and "钱夜班" in rows[0] and "赵白班" in rows[1]
        await duty.check_accessible()
    async with runtime.sessions() as session:
        actions = (
            await session.scalars(select(AuditEntry.action).where(AuditEntry.action.startswith("ops.duty.")))
        ).all()
    assert sorted(actions) == ["ops.duty.added", "ops.duty.added", "ops.duty.changed", "ops.duty.moved"]
