"""The speakers page in Chromium on the demo county's places (issue: Journeys II, item 15).

An admin finds a speaker among five hundred by township and status, a page at a time. (Editing and disabling
a user, and reading the audit log, are the admin's journey: ``tests/journeys/test_admin.py``.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from areas.demo import load_demo
from server import Runtime
from storage.models import Speaker
from tests.support.journey import journeys

pytestmark = pytest.mark.browser


@pytest.fixture
async def demo_logins(runtime: Runtime, tmp_path: Path) -> dict[str, str]:
    """The demo county's places and accounts (no notices or cases: these pages do not need them)."""
    result = await load_demo(runtime.sessions, runtime.accounts, runtime.clock, tmp_path / "logins.txt")
    return result.new_logins


async def test_five_hundred_speakers_are_grouped_by_township_filtered_by_status_and_paged(
    server: TestServer, runtime: Runtime, demo_logins: dict[str, str], tmp_path: Path
) -> None:
    async with runtime.sessions() as session:
        speakers = (await session.scalars(select(Speaker))).all()
        four_g = [speaker for speaker in speakers if speaker.transport == "http"]
    assert len(speakers) > 500
    async with journeys(str(server.make_url("/")), tmp_path / "shots") as open_journey:
        admin = await open_journey("admin")
        admin.typed(*(speaker.address for speaker in speakers))
        await admin.sign_in("demo.admin", demo_logins["demo.admin"])
        await admin.goto("/broadcast/speakers")
        await admin.step("speakers")
        height = await admin.page.evaluate("document.documentElement.scrollHeight")
        assert height < 4000, f"the speakers page is {height} px tall"
        groups = await admin.page.locator("tr.group th").all_inner_texts()
        assert groups and groups[0].startswith("示例东风镇")

        await admin.page.select_option("#speaker-filters select[name=status]", "offline")
        await admin.page.click("#speaker-filters button[type=submit]")
        await admin.step("offline")
        assert f"符合条件的 {len(four_g)} 个" in await admin.page.inner_text("main")
        statuses = await admin.page.locator("table.speakers td .badge").all_inner_texts()
        assert statuses and set(statuses) == {"离线"}  # never seen: 4G terminals only

        await admin.page.click(".pager a:has-text('下一页')")
        await admin.page.wait_for_url("**/broadcast/speakers?status=offline&page=2")
        assert set(await admin.page.locator("table.speakers td .badge").all_inner_texts()) == {"离线"}
        await admin.check_accessible()
