"""手机喊话 in Chromium on the demo county, as the people involved walk it.

* The admin grants 可电话喊话 to a township cadre with a village and their mobile; a mistyped number is refused
  and nothing ticked or typed is lost; then prints the cadre's card (the line's number, what to press, the
  village's 喊话编号), and later resets the PIN.
* The cadre sets their 6-digit PIN on their own page (a mistyped confirmation is refused first).
* The approver reviews a phone broadcast afterwards on the 喊话记录 page: hears the recording, is told a flag
  needs a reason, flags it with one; the flagged broadcast reaches the admin's 待办.
* The approver reads a live call (实时喊话) there: how long, how it ended, that the 4G terminals play its
  recording afterwards, and hears the recording.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import expect
from sqlalchemy import select

from hotline.phonecast import Cadre, LiveEnd, LiveStatus, PinVerdict, SubmitStatus
from server import Runtime
from settings import PhonecastSettings, Settings
from storage.models import PhoneBroadcast, Township, User, Village
from tests.phonecast.helpers import make_cadre, tone_wav
from tests.phonecast.test_live import FakeRooms
from tests.support.broadcasting import demo_county, journey_settings, principal
from tests.support.journey import journeys

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LINE = "04715550100"
MOBILE = "13912345678"
PIN = "480726"
NOTE = "喊话内容与村务无关"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # submit waits at most 5 s for the demo's loudspeakers (its 4G terminals never poll here).
    return journey_settings(
        tmp_path / "data", database_url, phonecast=PhonecastSettings(line_number=LINE, start_wait_s=5)
    )


async def test_an_admin_grants_phone_broadcasting_a_cadre_sets_a_pin_and_an_approver_flags_a_broadcast(
    server: TestServer, runtime: Runtime, tmp_path: Path
) -> None:
    logins = await demo_county(runtime, tmp_path / "logins.txt")
    async with runtime.sessions() as session:
        township = await session.scalar(select(Township).order_by(Township.id).limit(1))
        assert township is not None
        village = await session.scalar(
            select(Village).where(Village.township_id == township.id).order_by(Village.id).limit(1)
        )
        staff = await session.scalar(select(User).where(User.username == "demo.staff"))
        assert village is not None and staff is not None
    async with journeys(str(server.make_url("/")), tmp_path / "shots") as open_journey:
        # The admin grants the permission; a mistyped number is refused, and what was ticked and typed stays.
        admin = await open_journey("admin")
        await admin.sign_in("demo.admin", logins["demo.admin"])
        admin.typed(*logins)  # the user picker shows each account's user name, as the admin made them
        await admin.page.click("summary:has-text('系统管理')")
        await admin.page.click("a:has-text('喊话人员')")
        await expect(admin.page.locator("main")).to_contain_text("还没有人有电话喊话权限")
        form = admin.page.locator("#grant form")
        await form.locator("select[name=user_id]").select_option(str(staff.id))
        await form.locator(f"input[name=village_ids][value='{village.id}']").check()
        await form.locator("textarea[name=numbers]").fill("13912")
        await form.locator("button[type=submit]").click()
        await expect(admin.page.locator("#grant [role=alert]")).to_have_text("“13912”不是有效的电话号码")
        form = admin.page.locator("#grant form")
        await expect(form.locator("select[name=user_id]")).to_have_value(str(staff.id))
        await expect(form.locator(f"input[name=village_ids][value='{village.id}']")).to_be_checked()
        await expect(form.locator("textarea[name=numbers]")).to_have_value("13912")
        await admin.step("bad-number-refused-and-kept")
        await admin.check_accessible()
        await form.locator("textarea[name=numbers]").fill(MOBILE)
        await form.locator("button[type=submit]").click()
        await expect(admin.page.locator(".flash.ok")).to_contain_text("已保存 乡镇干部·张示例 的电话喊话权限")
        row = admin.page.locator(f"tr[data-cadre='{staff.id}']")
        await expect(row).to_contain_text(MOBILE)
        await expect(row).to_contain_text(f"{village.name}（{village.phonecast_code or ''}")
        await expect(row).to_contain_text("未设置")
        await admin.check_look()
        await admin.step("granted")
        # The printable card: the line's number, what to press, the village with its 喊话编号.
        await row.locator("a:has-text('打印喊话卡')").click()
        await expect(admin.page.locator("[data-line]")).to_have_text(LINE)
        card = admin.page.locator("article.phonecast-card")
        await expect(card).to_contain_text("输入您的6位喊话密码")
        await expect(card).to_contain_text("按 1：本村")
        async with runtime.sessions() as session:
            code = await session.scalar(select(Village.phonecast_code).where(Village.id == village.id))
        await expect(card.locator("table").first).to_contain_text(f"{village.name}{code}")
        await admin.step("card")

        # The cadre sets their PIN on their own page; a mistyped confirmation is refused first.
        cadre_page = await open_journey("cadre")
        await cadre_page.sign_in("demo.staff", logins["demo.staff"])
        await cadre_page.page.click("summary:has-text('手机喊话')")
        await cadre_page.page.click("a:has-text('我的喊话密码')")
        await cadre_page.check_look()
        await expect(cadre_page.page.locator("main")).to_contain_text("您还没有设置喊话密码")
        await cadre_page.page.fill("input[name=pin]", PIN)
        await cadre_page.page.fill("input[name=confirm]", "480727")
        await cadre_page.page.click("button:has-text('保存')")
        await expect(cadre_page.page.locator("[role=alert]")).to_have_text("两次输入的喊话密码不一致")
        await cadre_page.step("pin-mismatch")
        await cadre_page.page.fill("input[name=pin]", PIN)
        await cadre_page.page.fill("input[name=confirm]", PIN)
        await cadre_page.page.click("button:has-text('保存')")
        await expect(cadre_page.page.locator(".flash.ok")).to_have_text("喊话密码已设置")
        await cadre_page.step("pin-set")
        cadre = Cadre(user_id=staff.id, name=staff.display_name)
        assert await runtime.phonecast.desk.check_pin(cadre, MOBILE, PIN) is PinVerdict.ACCEPTED

        # The cadre broadcasts from the phone (the desk, as the line calls it). The demo township's quiet
        # hours (21:30–06:30 county time) would refuse it for a third of the day: the test must not depend
        # on when it runs, so this township has none.
        async with runtime.sessions() as session, session.begin():
            quiet = await session.get(Township, township.id)
            assert quiet is not None
            quiet.quiet_start = quiet.quiet_end
        target = (await runtime.phonecast.desk.targets(cadre)).villages[0]
        result = await runtime.phonecast.desk.submit(
            cadre, MOBILE, target, tone_wav(tmp_path / "said.wav", 1.0), call_id="journey-call"
        )
        assert result.record_id is not None and result.status is not SubmitStatus.REFUSED, result

        # The approver reviews it afterwards: hears it, is told a flag needs a reason, flags it.
        approver = await open_journey("approver")
        await approver.sign_in("demo.approver", logins["demo.approver"])
        await expect(approver.page.locator(".todo")).to_contain_text("待事后审核的手机喊话")
        await approver.page.click("a:has-text('待事后审核的手机喊话')")
        await approver.check_look()
        line = approver.page.locator(f"tr[data-record='{result.record_id}']")
        await expect(line).to_contain_text("乡镇干部·张示例")
        await expect(line).to_contain_text("139****5678")
        audio = await line.locator("audio").get_attribute("src")
        heard = await approver.page.request.get(approver.url(audio or "/"))
        assert heard.status == 200 and len(await heard.body()) > 1000
        await line.locator("button:has-text('有问题')").click()
        await expect(approver.page.locator("[role=alert]")).to_have_text("标记有问题时请写明原因")
        await approver.step("flag-needs-a-reason")
        line = approver.page.locator(f"tr[data-record='{result.record_id}']")
        await line.locator("input[name=note]").fill(NOTE)
        approver.typed(NOTE)
        await line.locator("button:has-text('有问题')").click()
        await expect(approver.page.locator(".flash.ok")).to_contain_text("已标记为有问题")
        line = approver.page.locator(f"tr[data-record='{result.record_id}']")
        await expect(line.locator("[data-review]")).to_contain_text(f"有问题：{NOTE}")
        await approver.check_accessible()
        await approver.step("flagged")

        # The flagged broadcast is in the admin's 待办; the admin resets the cadre's PIN.
        await admin.goto("/")
        await expect(admin.page.locator(".todo")).to_contain_text("被标记有问题的手机喊话")
        await admin.step("todo-flagged")
        await admin.goto("/phonecast/cadres")
        admin.page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await admin.page.locator(f"tr[data-cadre='{staff.id}'] button:has-text('重置喊话密码')").click()
        await expect(admin.page.locator(".flash.ok")).to_contain_text("喊话密码已重置")
        await expect(admin.page.locator(f"tr[data-cadre='{staff.id}']")).to_contain_text("未设置")
        await admin.step("pin-reset")
    async with runtime.sessions() as session:
        record = await session.get(PhoneBroadcast, result.record_id)
        assert record is not None and (record.review_state, record.review_note) == ("flagged", NOTE)


async def test_an_approver_sees_a_live_call_on_the_records_page_with_how_it_ended_and_what_the_4g_terminals_got(
    server: TestServer, runtime: Runtime, tmp_path: Path
) -> None:
    """A cadre spoke live (the hotline's rooms faked: legs answer at once); the approver reads the record."""
    logins = await demo_county(runtime, tmp_path / "logins.txt")
    runtime.broadcasting.dispatcher.use_live_rooms(FakeRooms(runtime.clock))
    async with runtime.sessions() as session:
        village = await session.scalar(select(Village).order_by(Village.id).limit(1))
        assert village is not None
    admin = await principal(runtime, "demo.admin")
    # With the emergency permission: the demo's quiet hours (21:30–06:30) must not decide whether the test runs.
    cadre = await make_cadre(runtime, admin, "live.cadre", MOBILE, villages=[village.id], pin=PIN, can_emergency=True)
    target = (await runtime.phonecast.desk.targets(cadre)).villages[0]
    started = await runtime.phonecast.desk.go_live(cadre, MOBILE, target, call_id="live-call", room="cx-live-1")
    assert started.status is LiveStatus.ON_AIR and started.after > 0
    await runtime.phonecast.desk.live_ended("live-call", LiveEnd.CALLER, tone_wav(tmp_path / "live.wav", 1.0))
    async with journeys(str(server.make_url("/")), tmp_path / "shots") as open_journey:
        approver = await open_journey("approver")
        await approver.sign_in("demo.approver", logins["demo.approver"])
        approver.typed("live.cadre")  # the cadre's name, as the admin typed it
        await approver.goto("/phonecast/records")
        line = approver.page.locator(f"tr[data-record='{started.record_id}']")
        await expect(line.locator("[data-mode]")).to_contain_text("实时喊话")
        await expect(line.locator("[data-mode]")).to_contain_text("时长")
        await expect(line.locator("[data-status]")).to_contain_text(f"已播出，{started.speakers}个喇叭")
        await expect(line.locator("[data-status]")).to_contain_text("喊话人结束")
        # The sound card played the recording at once; the demo's 4G terminal never polls here.
        after = line.locator("[data-after]")
        await expect(after).to_contain_text(f"终端在喊话结束后播放录音（{started.after}个）")
        await expect(after).to_contain_text("1个已播放")
        audio = await line.locator("audio").get_attribute("src")
        heard = await approver.page.request.get(approver.url(audio or "/"))
        assert heard.status == 200 and len(await heard.body()) > 1000
        await approver.check_look()
        await approver.check_accessible()
        await approver.step("live-record")
