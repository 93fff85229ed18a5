"""The journey tools themselves: the English scan and the accessibility check catch what they should."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Error as PlaywrightError

from tests.support.journey import english_words, journeys

pytestmark = pytest.mark.browser

GOOD = """<!doctype html><html lang="zh-CN"><head><title>通知</title></head>
<body><main><h1>村务公开</h1><p>已提交审核。SIP 寻呼、RTP、4G 终端：共3个喇叭。</p>
<label for="who">姓名</label><input id="who" placeholder="请输入姓名"></main></body></html>"""
BAD = """<!doctype html><html><head><title>Notice</title></head>
<body><p>Submitted</p><img src="x.png"><input placeholder="Search"></body></html>"""


def test_english_words_are_found_except_the_allowed_ones_and_what_was_typed() -> None:
    text = "已发送到 SIP 寻呼和 4G 终端。操作人 demo.staff，状态 pending，导出 CSV 或 Excel。"
    assert english_words(text, typed={"demo.staff"}) == ["pending"]
    assert english_words("地址 127.0.0.1:5004，编号 2026-12-05") == []


@pytest.fixture
async def pages() -> AsyncIterator[str]:
    async def good(_request: web.Request) -> web.Response:
        return web.Response(text=GOOD, content_type="text/html")

    async def bad(_request: web.Request) -> web.Response:
        return web.Response(text=BAD, content_type="text/html")

    app = web.Application()
    app.router.add_get("/good", good)
    app.router.add_get("/bad", bad)
    server = TestServer(app)
    await server.start_server()
    yield str(server.make_url("/"))
    await server.close()


async def test_a_chinese_accessible_page_passes_and_an_english_inaccessible_one_fails(
    pages: str, tmp_path: Path
) -> None:
    async with journeys(pages, tmp_path / "shots") as open_journey:
        person = await open_journey("staff")
        await person.goto("/good")
        shot = await person.step("good")
        assert shot.exists() and shot.name == "staff-01-good.png"
        await person.check_accessible()

        await person.goto("/bad")
        with pytest.raises(AssertionError, match=r"Notice.*Search.*Submitted"):
            await person.step("bad")
        with pytest.raises(AssertionError, match="image-alt") as failed:
            await person.check_accessible()
        assert "html-has-lang" in str(failed.value)
        await person.check_accessible({"image-alt": "a test", "html-has-lang": "a test", "label": "a test"})


async def test_a_screenshot_chromium_cannot_capture_never_fails_the_journey(
    pages: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    unable = "Protocol error (Page.captureScreenshot): Unable to capture screenshot"
    async with journeys(pages, tmp_path / "shots") as open_journey:
        person = await open_journey("staff")
        await person.goto("/good")
        screenshot = person.page.screenshot
        asked: list[bool] = []

        async def full_page_fails(*, path: str, full_page: bool = False) -> bytes:
            asked.append(full_page)
            if full_page:
                raise PlaywrightError(unable)
            return await screenshot(path=path, full_page=full_page)

        monkeypatch.setattr(person.page, "screenshot", full_page_fails)
        shot = await person.step("good")
        assert shot.exists() and asked == [True, True, False]  # the viewport, after the full page twice

        async def nothing_captured(*, path: str, full_page: bool = False) -> bytes:
            raise PlaywrightError(unable)

        monkeypatch.setattr(person.page, "screenshot", nothing_captured)
        shot = await person.step("good-again")
        assert not shot.exists() and "no screenshot staff-02-good-again.png" in caplog.text
        # What the step asserts still runs.
        await person.goto("/bad")
        with pytest.raises(AssertionError, match=r"Notice.*Search.*Submitted"):
            await person.step("bad")
