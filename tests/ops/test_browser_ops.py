"""A disk nearly full or a clock far off, as people see it: the admin warned in 待办 and on 系统状态, an approver
refused in Chinese.

Real Chromium, real pages, the real disk measured (the refusal threshold is set above what any disk has free).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from broadcast.notices import NoticeInput
from server import Runtime
from settings import OpsSettings, Settings
from storage.models import Notice
from tests.conftest import UserFactory
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
