"""Case pages in Chromium, as an operator and an inspector use them (issue: Journeys II, items 9–12).

A dial test's case is found by its number; triage offers the chosen township's villages; a deadline reads the
same day wherever it is shown; a failed callback says why, under the operator's name; a letter is called a
letter; a recording is logged as played once per listening, not per request.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Route
from sqlalchemy import select

from accounts.service import principal_of
from cases.callback import CallbackService
from hotline.intake import CallFacts
from server import Runtime
from storage.models import AuditEntry, User
from tests.cases.conftest import CaseMaker, County
from tests.conftest import UserFactory
from tests.support.journey import Journey, journeys
from tests.support.refusing_line import RefusingLine

pytestmark = pytest.mark.browser


def shots(tmp_path: Path) -> Path:
    return tmp_path / "shots"


async def test_a_dial_test_case_is_found_by_its_number_and_under_the_dial_test_filter(
    server: TestServer, county: County, hotline_case: CaseMaker, make_user: UserFactory, tmp_path: Path
) -> None:
    real = await hotline_case(township_id=county.township_a)
    dial_test = await hotline_case(test_call=True)
    operator = await make_user("operator", county_wide=True)
    async with journeys(str(server.make_url("/")), shots(tmp_path)) as open_journey:
        person = await open_journey("operator")
        await person.sign_in(*operator)
        await person.goto("/cases")
        table = person.page.locator("table.cases")
        assert real.number in await table.inner_text()
        assert dial_test.number not in await table.inner_text()  # test calls stay out of the ordinary list

        await person.page.fill("#case-filters input[name=q]", f"{dial_test.number[:4]} {dial_test.number[4:]}")
        person.typed(dial_test.number[:4], dial_test.number[4:])
        await person.page.click("#case-filters button[type=submit]")
        await person.step("found-by-number")
        assert [dial_test.number] == await case_numbers(person)

        await person.page.fill("#case-filters input[name=q]", "")
        await person.page.select_option("#case-filters select[name=test_calls]", "only")
        await person.page.click("#case-filters button[type=submit]")
        await person.step("dial-tests-only")
        assert [dial_test.number] == await case_numbers(person)
        await person.page.click(f"text={dial_test.number}")
        await person.page.wait_for_url(person.url(f"/cases/{dial_test.id}"))
        assert "拨测" in await person.page.inner_text("h1")


async def case_numbers(person: Journey) -> list[str]:
    return [text.strip() for text in await person.page.locator("table.cases td:first-child a").all_inner_texts()]


async def test_triage_offers_the_townships_villages_a_deadline_reads_one_day_and_a_failed_callback_says_why(
    server: TestServer, runtime: Runtime, county: County, hotline_case: CaseMaker, make_user: UserFactory,
    tmp_path: Path,
) -> None:  # fmt: skip
    case = await hotline_case()  # not placed yet: the operator places it
    operator = await make_user("operator", county_wide=True, phone_endpoint="operator1")
    # The callbacks as the elected worker runs them, over a line whose Asterisk refuses the operator's phone.
    callbacks = CallbackService(
        runtime.sessions, runtime.clock, runtime.cases.workflow, RefusingLine(), runtime.cases.callbacks.config
    )
    runtime.cases.callbacks = callbacks
    await callbacks.start()
    try:
        async with journeys(str(server.make_url("/")), shots(tmp_path)) as open_journey:
            person = await open_journey("operator")
            await person.sign_in(*operator)
            await person.goto(f"/cases/{case.id}")
            villages = "#triage-form select[name=village_id] option"
            await person.page.select_option("#triage-form select[name=township_id]", str(county.township_b))
            offered = await person.page.locator(villages).all_inner_texts()
            assert offered == ["（不改）", "乙镇一村"]
            await person.page.select_option("#triage-form select[name=township_id]", str(county.township_a))
            assert await person.page.locator(villages).all_inner_texts() == ["（不改）", "甲乡一村"]
            await person.page.select_option("#triage-form select[name=village_id]", str(county.village_a))
            await person.page.fill("#triage-form textarea[name=summary]", "村口的桥裂了")
            await person.page.click("#triage-form button[type=submit]")
            await person.page.wait_for_selector("text=已保存分拣信息")
            await person.page.click("#actions form[action$='/accept'] button")
            await person.page.wait_for_selector("text=已受理")
            await person.step("accepted")
            due = (await person.page.inner_text("#resolution-due")).strip()
            accepted_row = await person.page.locator("#history tr.event-accepted").inner_text()
            assert f"办理期限：{due}" in accepted_row  # the summary and the history give one day

            await person.page.click("#callback-button")
            await person.page.locator("#callbacks tr[data-callback]").first.wait_for()  # asked for: on the page
            # The page follows the attempt and shows its end without a reload by hand.
            reason = person.page.locator("#callbacks td.reason", has_text="打不通您的电话（operator1）")
            await reason.wait_for()
            # "正在回拨" said on the way in is taken down: the call is over, and the page says so.
            await person.page.locator(".flash", has_text="正在回拨").wait_for(state="detached")
            await person.step("callback-failed")
            row = await person.page.locator("#history tr.event-callback").inner_text()
            assert "呼叫失败" in row and "打不通您的电话" in row
            assert operator[0] in row and "回拨" not in row.split("\t")[2]  # 人员 is the operator, not 回拨
    finally:
        await callbacks.stop()


async def test_a_sealed_letter_is_called_a_letter(
    server: TestServer, runtime: Runtime, county: County, make_user: UserFactory, tmp_path: Path
) -> None:
    inspector = await make_user("inspector", county_wide=True)
    async with journeys(str(server.make_url("/")), shots(tmp_path)) as open_journey:
        person = await open_journey("inspector")
        await person.sign_in(*inspector)
        await person.goto("/cases/new")
        await person.page.select_option("#new-case select[name=channel]", "letter")
        await person.page.select_option("#new-case select[name=category]", "discipline")
        await person.page.fill("#new-case input[name=caller_number]", "13800000109")
        await person.page.fill("#new-case textarea[name=summary]", "反映某村干部在发放补贴时优亲厚友。")
        await person.page.click("#new-case button[type=submit]")
        await person.page.wait_for_selector("text=已登记")
        await person.step("sealed-letter")
        summary = await person.page.inner_text("#summary")
        assert "来信" in summary and "联系电话" in summary
        assert "来访" not in await person.page.inner_text("main")
        assert "来电" not in summary
        assert "来信登记的诉求没有录音" in await person.page.inner_text("#recordings")


async def plays(runtime: Runtime) -> list[AuditEntry]:
    async with runtime.sessions() as session:
        statement = select(AuditEntry).where(AuditEntry.action.like("recording.play%")).order_by(AuditEntry.id)
        return list((await session.scalars(statement)).all())


async def test_opening_a_case_logs_no_play_and_one_listening_is_one_play_however_it_is_sought(
    server: TestServer, runtime: Runtime, county: County, hotline_case: CaseMaker, make_user: UserFactory,
    tmp_path: Path,
) -> None:  # fmt: skip
    case = await hotline_case(township_id=county.township_a, seconds=30.0)
    operator = await make_user("operator", county_wide=True)
    async with journeys(str(server.make_url("/")), shots(tmp_path)) as open_journey:
        person = await open_journey("operator")
        await person.sign_in(*operator)
        await person.goto(f"/cases/{case.id}")
        await person.page.wait_for_load_state("networkidle")
        assert await plays(runtime) == []  # the page opened: nobody has listened yet

        player = person.page.locator(".player").first
        await player.locator("button.play").click()
        await person.page.wait_for_function(
            "() => parseFloat(document.querySelector('.player').dataset.position) > 0.3"
        )
        await player.locator("button.forward").click()
        await person.page.wait_for_function("() => document.querySelector('.player audio').currentTime > 10")
        await player.locator("button.back").click()
        await player.locator("select.rate").select_option("1.25")
        await person.page.eval_on_selector(
            ".player input.seek", "el => { el.value = '20'; el.dispatchEvent(new Event('change')); }"
        )
        await person.page.wait_for_function(
            "() => { const a = document.querySelector('.player audio'); return a.currentTime >= 20 && !a.seeking; }"
        )
        await person.step("listened")
        await player.locator("button.play").click()  # pause
        logged = await plays(runtime)
        assert [(entry.username, entry.action) for entry in logged] == [(operator[0], "recording.play")]
        assert logged[0].detail["listening"]


async def test_a_change_committed_while_the_case_page_loads_shows_once_its_stream_listens(
    server: TestServer, runtime: Runtime, county: County, hotline_case: CaseMaker, make_user: UserFactory,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The page is rendered, then its script subscribes: a change in between (a callback ending as the page
    loads, on a busy machine) was published to nobody the page could hear, and its history stayed short."""
    case = await hotline_case(township_id=county.township_a)
    operator = await make_user("operator", county_wide=True)
    async with runtime.sessions() as session:
        row = await session.scalar(select(User).where(User.username == operator[0]))
        assert row is not None
        principal = principal_of(row)
    stream_may_start = asyncio.Event()

    async def hold_the_stream(route: Route) -> None:
        await stream_may_start.wait()
        await route.continue_()

    async with journeys(str(server.make_url("/")), shots(tmp_path)) as open_journey:
        person = await open_journey("operator")
        person.typed(operator[0])  # the operator's name in the history
        await person.sign_in(*operator)
        await person.page.route("**/cases/changes*", hold_the_stream)
        await person.goto(f"/cases/{case.id}")  # rendered; its stream not yet listening
        with runtime.cases.changes.subscribe() as elsewhere:
            await runtime.cases.workflow.add_note(principal, case.id, text="已打电话给村委会")
            published = await elsewhere.next(10.0)  # published before the page listens
            assert isinstance(published, list) and case.id in [change.case_id for change in published]
        assert await person.page.locator("#history tr.event-noted").count() == 0
        stream_may_start.set()
        await person.page.wait_for_selector("body[data-live-state=listening]")
        await person.page.locator("#history tr.event-noted", has_text="已打电话给村委会").wait_for(timeout=10_000)
        await person.step("note-made-while-loading")


async def live(person: Journey, path: str) -> None:
    """Open a page and wait until it listens for changes (the stream is up)."""
    await person.goto(path)
    await person.page.wait_for_selector("body[data-live-state=listening]")


async def test_the_ledger_the_todo_counts_and_a_case_page_update_themselves(
    server: TestServer, runtime: Runtime, county: County, make_user: UserFactory, tmp_path: Path
) -> None:
    operator = await make_user("operator", county_wide=True)
    colleague = await make_user("operator", county_wide=True)
    async with runtime.sessions() as session:
        colleague_row = await session.scalar(select(User).where(User.username == colleague[0]))
        assert colleague_row is not None
        worker = principal_of(colleague_row)
    open_case = await runtime.cases.workflow.create(
        worker, channel="walk_in", summary="邻居家的狗咬伤了羊羔", township_id=county.township_a
    )
    async with journeys(str(server.make_url("/")), shots(tmp_path)) as open_journey:
        home, ledger, case_page, polling = [await open_journey(name) for name in ("home", "ledger", "case", "poll")]
        for person in (home, ledger, case_page, polling):
            person.typed(colleague[0])  # the colleague's name in the history
            await person.sign_in(*operator)
        await live(home, "/")
        waiting = home.page.locator("[data-live=todo] li", has_text="待受理的案件").locator("strong")
        before = int(await waiting.inner_text())
        await live(ledger, "/cases")
        await live(case_page, f"/cases/{open_case.id}")
        # The fallback: no event stream to be had (a proxy in the way); the page polls on its own clock.
        await polling.page.route("**/cases/changes*", lambda route: route.abort())
        await polling.page.clock.install()
        await polling.goto("/cases")
        await polling.page.wait_for_selector("body[data-live-state=polling]")

        # A call ends and the hotline's intake writes its case: every screen shows it without a reload.
        ticket = await runtime.hotline.intake.open_case(
            CallFacts("live-call-1", caller_raw="13800005555", choice="1", stage="recorded"), via="fastagi"
        )
        number = ledger.page.locator("table.cases td a", has_text=ticket.number)
        await number.wait_for(timeout=10_000)
        # Listed at the hang-up, before its message is attached: the row says so rather than offering a replay.
        assert "（录音未到）" in await ledger.page.locator("table.cases tr", has_text=ticket.number).inner_text()
        await ledger.step("new-call-listed")
        await home.page.wait_for_function(
            "([before]) => [...document.querySelectorAll('[data-live=todo] li')].some(li =>"
            " li.textContent.includes('待受理的案件') && parseInt(li.querySelector('strong').textContent) > before)",
            arg=[before],
            timeout=10_000,
        )
        await home.step("todo-counted")
        assert int(await waiting.inner_text()) == before + 1
        # Not this case page's case: it did not reload for it.
        assert await case_page.page.get_attribute("body", "data-live-refreshed") is None

        # A colleague places and accepts the case on the open page: it shows, status and history.
        await runtime.cases.workflow.triage(worker, open_case.id, summary="狗咬羊羔，双方协商不成")
        await runtime.cases.workflow.accept(worker, open_case.id)
        await case_page.page.wait_for_selector("h1 .badge:has-text('已受理')", timeout=10_000)
        assert "狗咬羊羔，双方协商不成" in await case_page.page.inner_text("#summary")
        assert "受理" in await case_page.page.inner_text("#history")
        await case_page.step("changed-by-a-colleague")

        assert await polling.page.locator("table.cases td a", has_text=ticket.number).count() == 0
        await polling.page.clock.fast_forward("00:31")
        await polling.page.locator("table.cases td a", has_text=ticket.number).wait_for(timeout=10_000)
        await polling.step("polled")
