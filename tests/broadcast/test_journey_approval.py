"""The staff's and the approver's day with a notice, in Chromium on the demo county (issue: approval journeys).

Staff write a notice, listen to it, submit it, are stopped by the privacy guard, mask the ID number with one
click, keep the committee's public phone, listen again and submit; the approver reads the full text and the
spoken form with the phone marked where it is read, sees the author's decision, listens to exactly the audio
that will air, and approves; staff then play it now through the grouped zone picker. Every page each person
reaches is screenshotted and scanned for English.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import expect
from sqlalchemy import func, select

from server import Runtime
from settings import Settings
from storage.models import AuditEntry, Notice, Speaker, Township, Village, Zone
from tests.support.broadcasting import demo_county, journey_settings
from tests.support.journey import Journey, journeys

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TITLE = "示例村2026年第四季度低保对象公示"
BODY = (
    "经村民代表会议评议，拟确定以下2户为低保对象：张某某，一组，家庭人口2人；"
    "李某某，三组，家庭人口1人，身份证号150125195803121235。"
    "对公示对象有异议的，请拨打村监委会主任电话13912345678反映。"
)

ID_SPOKEN = "幺五零幺二五幺九五八零三幺二幺二三五"  # the ID number, as the voice would read it


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return journey_settings(tmp_path / "data", database_url)


async def village_size(runtime: Runtime, township: str, village: str) -> tuple[int, int]:
    """How many zones, and enabled speakers, a demo village has."""
    async with runtime.sessions() as session:
        zones = (
            await session.scalars(
                select(Zone.id).join(Village).join(Township).where(Township.name == township, Village.name == village)
            )
        ).all()
        speakers = await session.scalar(
            select(func.count(Speaker.id)).where(Speaker.zone_id.in_(zones), Speaker.enabled.is_(True))
        )
    return len(zones), int(speakers or 0)


async def listen(person: Journey) -> str:
    """Play the page's preview from the start (a click, as a person would) and return the audio's SHA-256."""
    audio = person.page.locator("audio[data-preview-audio]")
    await expect(audio).to_be_visible()
    await audio.evaluate("element => element.load()")
    await person.page.wait_for_function(
        "() => document.querySelector('audio[data-preview-audio]').readyState >= 1", timeout=30_000
    )
    await audio.scroll_into_view_if_needed()
    box = await audio.bounding_box()
    assert box is not None
    await person.page.mouse.click(box["x"] + 18, box["y"] + box["height"] / 2)  # the play button, at the left
    await person.page.wait_for_function(
        "() => document.querySelector('audio[data-preview-audio]').currentTime > 0.2", timeout=30_000
    )
    source = await audio.get_attribute("src")
    assert source is not None
    fetched = await person.page.request.get(person.url(source))
    assert fetched.ok and fetched.headers["content-type"] == "audio/mpeg"
    return hashlib.sha256(await fetched.body()).hexdigest()


async def test_staff_write_listen_submit_are_stopped_mask_and_submit_and_the_approver_reads_listens_approves(
    server: TestServer, runtime: Runtime, tmp_path: Path
) -> None:
    logins = await demo_county(runtime, tmp_path / "logins.txt")
    base = str(server.make_url("/"))
    async with journeys(base, tmp_path / "shots") as open_journey:
        staff = await open_journey("staff")
        await staff.sign_in("demo.staff", logins["demo.staff"])

        # Writes the notice: the editor shows, as she types, what will be read and where the numbers are.
        await staff.goto("/broadcast/notices")
        form = staff.page.locator("form[data-notice-editor]")
        await form.locator("select[name=kind]").select_option(label="村务公开")
        await form.locator("input[name=title]").fill(TITLE)
        await form.locator("textarea[name=body]").fill(BODY)
        staff.typed(TITLE)
        await expect(form.locator("[data-spoken] mark.blocking")).to_have_text(ID_SPOKEN)
        await expect(form.locator("[data-spoken] mark.undecided")).to_have_text("幺三九幺二三四五六七八")
        await staff.step("writes-and-sees-the-numbers-marked")
        await form.locator("button[type=submit]").click()
        await expect(staff.page.locator(".flash.ok")).to_contain_text("已保存为草稿")
        notice_id = int(staff.page.url.split("/broadcast/notices/")[1].split("#")[0])

        # The full text and its spoken form, each number marked where it stands.
        check = staff.page.locator("#check")
        await expect(check.locator("[data-full-body] mark.blocking")).to_have_text("150125195803121235")
        await expect(check.locator("[data-full-body] mark.undecided")).to_have_text("13912345678")
        await expect(check.locator("[data-spoken-review] mark.blocking")).to_have_text(ID_SPOKEN)
        await staff.step("draft-with-findings-in-place")

        # Listens before submitting.
        await staff.page.click("button:has-text('生成试听')")
        await expect(staff.page.locator(".flash.ok")).to_contain_text("试听已生成")
        await listen(staff)
        await staff.step("listens-to-the-draft")

        # Submits, and is stopped: the ID number is named, marked in place, with a one-click fix.
        await staff.page.click("button:has-text('提交审核')")
        error = staff.page.locator("[data-error]")
        await expect(error).to_contain_text("不能提交审核")
        await expect(error).to_contain_text("身份证号 150125********1235")
        await expect(staff.page.locator("[data-state]")).to_have_text("草稿")
        await expect(staff.page.locator("#check [data-full-body] mark.blocking")).to_have_text("150125195803121235")
        await staff.step("stopped-by-the-id-number")
        await staff.check_accessible()

        await staff.page.click("[data-mask-all]")
        await expect(staff.page.locator(".flash.ok")).to_contain_text("已隐去身份证号")
        await expect(staff.page.locator("#check [data-full-body]")).to_contain_text("身份证号150125********1235")
        await expect(staff.page.locator("#check mark.blocking")).to_have_count(0)
        await staff.step("masked-with-one-click")

        # The committee's phone is public: she keeps it, to be read digit by digit.
        await staff.page.click("#check form[action$='/keep'] button")
        await expect(staff.page.locator(".flash.ok")).to_contain_text("已保留手机号码 13912345678")
        await expect(staff.page.locator("#check [data-full-body] mark.kept")).to_have_text("13912345678")
        await expect(staff.page.locator("[data-decisions]")).to_contain_text("139****5678：保留（公开电话，逐位读出）")
        await staff.page.click("button:has-text('生成试听')")
        heard_by_staff = await listen(staff)
        await staff.page.click("button:has-text('提交审核')")
        await expect(staff.page.locator(".flash.ok")).to_contain_text("已提交审核")
        await expect(staff.page.locator("[data-state]")).to_have_text("待审核")
        await staff.step("submitted")
        async with runtime.sessions() as session:
            notice = await session.get(Notice, notice_id)
            assert notice is not None and notice.audio_keys is not None
            previewed = dict(notice.audio_keys)

        # The approver: it waits in her 待办; she reads it all, and sees the author's decision.
        approver = await open_journey("approver")
        await approver.sign_in("demo.approver", logins["demo.approver"])
        await expect(approver.page.locator(".todo")).to_contain_text("待我审核的通知")
        await approver.page.click(".todo a:has-text('待我审核的通知')")
        await approver.step("approvals")
        await approver.page.click(f"a:has-text('{TITLE}')")
        body = approver.page.locator("#check [data-full-body]")
        await expect(body).to_contain_text("家庭人口1人，身份证号150125********1235。")
        await expect(body.locator("mark.kept")).to_have_text("13912345678")
        await expect(body.locator("mark.masked")).to_have_text("150125********1235")
        spoken = approver.page.locator("[data-spoken-review]")
        await expect(spoken.locator("mark.masked")).to_have_text("已隐去")
        await expect(spoken).to_contain_text("身份证号已隐去")
        await expect(spoken.locator("mark.kept")).to_have_text("幺三九幺二三四五六七八")
        decisions = approver.page.locator("[data-decisions]")
        await expect(decisions).to_contain_text("保留（公开电话，逐位读出） · 乡镇干部·张示例")
        await approver.step("reads-full-text-and-spoken-form")
        await approver.check_accessible()

        # Listens to exactly what the author heard, and approves that revision.
        heard_by_approver = await listen(approver)
        assert heard_by_approver == heard_by_staff
        await approver.page.click("button:has-text('审核通过')")
        await expect(approver.page.locator(".flash.ok")).to_contain_text("已审核通过第 3 版：播出的就是试听的音频")
        await expect(approver.page.locator("[data-state]")).to_have_text("已通过")
        await approver.step("approved")

        # Staff play it now, in one village, through the grouped picker; a missing tick keeps the choice.
        await staff.goto(f"/broadcast/notices/{notice_id}")
        picker = staff.page.locator("#play [data-zone-picker]")
        # The picker counts once its script has run; a box ticked before then is kept (broadcast.js).
        await expect(picker).to_have_attribute("data-zp-ready", "")
        await expect(picker.locator("[data-zp-township]")).to_have_count(1)  # the notice's own township only
        village = picker.locator("[data-zp-village]", has_text="前进村")
        await village.locator("input[data-zp-level=village]").check()
        zones, speakers = await village_size(runtime, "示例东风镇", "前进村")
        summary = f"已选 1 个村、{zones} 个分区，共 {speakers} 个喇叭"
        await expect(picker.locator("[data-zp-count]")).to_have_text(summary)
        await staff.page.click("#play button:has-text('立即播出')")
        await expect(staff.page.locator("[data-error]")).to_contain_text("请勾选“确认立即播出”")
        await expect(picker.locator("[data-zp-count]")).to_have_text(summary)
        await expect(village.locator("input[data-zp-level=zone]:checked")).to_have_count(zones)
        await staff.step("play-now-refused-keeps-the-choice")
        await staff.check_accessible()
        await staff.page.check("#play input[name=confirm]")
        await staff.page.click("#play button:has-text('立即播出')")
        await expect(staff.page.locator("h1")).to_have_text(TITLE)
        await expect(staff.page.locator("[data-speakers] tbody tr")).to_have_count(speakers)
        await staff.step("play-now-result-page")

    async with runtime.sessions() as session:
        notice = await session.get(Notice, notice_id)
        assert notice is not None and notice.state == "approved"
        # What airs is what was heard: the preview's files, kept, not rendered again at approval.
        assert notice.audio_keys == previewed
        approval = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "notice.approve", AuditEntry.object_id == str(notice_id))
        )
        assert approval is not None and approval.detail["kept_numbers"] == ["13912345678"]
    entry = runtime.speech.cache.get(previewed["mp3"])
    assert entry is not None and hashlib.sha256(entry.path.read_bytes()).hexdigest() == heard_by_staff
