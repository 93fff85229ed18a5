"""The county leader's day: the dashboard of last year, the demo county's year in figures (issue 16 item 17).

The demo county carries a year's ledger sized like the county this service was built for: that year it found
192 disputes and requests, resolved 169 (化解率 88 %), and 96 % of those asked at follow-up were satisfied.
Those figures are written here as data (from the county's own report), not read from anywhere, and the
dashboard must show exactly them for that year.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from server import Runtime
from tests.support.journey import journeys

pytestmark = pytest.mark.browser

# The county's year, as its report gave it.
FOUND = 192
RESOLVED = 169
RESOLUTION_RATE = "88.0%"
SATISFACTION_RATE = "96.0%"


async def test_the_leader_reads_last_years_figures_and_the_months_and_townships_behind_them(
    server: TestServer, runtime: Runtime, passwords: dict[str, str], tmp_path: Path
) -> None:
    last_year = runtime.clock.now().astimezone(runtime.settings.zone).year - 1
    async with journeys(str(server.make_url("/")), tmp_path / "shots") as open_journey:
        leader = await open_journey("leader")
        await leader.sign_in("demo.leader", passwords["demo.leader"])
        await leader.page.click("header.top a:has-text('统计')")
        await leader.page.wait_for_url(leader.url("/dashboard"))
        await leader.step("dashboard-this-year")
        await leader.page.click(f"#periods a:has-text('去年（{last_year}年）')")
        await leader.page.wait_for_url(leader.url(f"/dashboard?date_from={last_year}-01-01&date_to={last_year}-12-31"))
        await leader.step("dashboard-last-year")

        async def headline(figure: str) -> str:
            return (await leader.page.inner_text(f"[data-headline={figure}]")).strip()

        assert await headline("received") == str(FOUND)
        assert await headline("resolved") == str(RESOLVED)
        assert f"化解率 {RESOLUTION_RATE}" in await leader.page.inner_text("#headline")
        assert await headline("satisfaction") == SATISFACTION_RATE

        # Spread over the year, the townships, the categories and the channels, not one heap.
        months = leader.page.locator("table.stats[data-dimension=month] tbody tr")
        received = [int(text) for text in await months.locator("td[data-figure=received]").all_inner_texts()]
        assert len(received) == 13 and received[-1] == FOUND  # twelve months and the total
        assert all(count > 0 for count in received[:12])
        for dimension, at_least in (("township", 9), ("category", 8), ("channel", 5)):
            rows = leader.page.locator(f"table.stats[data-dimension={dimension}] tbody tr")
            assert await rows.count() >= at_least + 1, dimension  # the groups and the total
        await leader.check_accessible()
        await leader.check_look()
