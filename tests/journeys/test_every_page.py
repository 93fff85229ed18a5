"""Every page every role can reach, in Chinese, accessible and laid out right (issue 16, "Done when").

For each demo account the test signs in and walks the service as a person clicking around would: from the
home page, every link of the header (its menus too) and of every page it reaches, on this service, that shows
a page (not a download, not the API). On each page it checks

* that nothing shown is English (``Journey.check_chinese``): the values people typed — user names, speaker
  addresses, phone endpoints, area codes — are registered as typed;
* axe-core's WCAG 2 A/AA rules (``Journey.check_accessible``), none switched off;
* the look (``Journey.check_look``): the header on one line at 1366 pixels, no short label broken.

Pages of one kind (a case, a township) are visited twice at most: the second shows what differs between
two of a kind (a case in another state), more would only repeat. Every problem of every page is collected
and reported together, so one run shows all that is wrong.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from server import Runtime
from storage.models import County, Speaker, Township, User
from tests.support.journey import Journey, journeys, keep_screenshot

pytestmark = pytest.mark.browser

ACCOUNTS = ("demo.admin", "demo.staff", "demo.approver", "demo.operator", "demo.inspector", "demo.leader")
# Links that are not pages: downloads, the API, files.
NOT_PAGES = re.compile(r"^/(api|static|healthz|openapi)\b|\.(csv|xlsx|wav|mp3|json)$|/audio\b|download=")
# Reached by a form, not a link: a filter as its users would set it.
FORM_PAGES = {
    "demo.admin": ("/admin/audit?action=user.create", "/broadcast/speakers?status=offline&page=2"),
    "demo.operator": ("/cases?test_calls=only", "/cases?q=13800002000"),
    "demo.inspector": ("/cases?sealed_only=true",),
    "demo.leader": ("/cases?deadline=overdue&sort=due",),
}
PER_KIND = 2


def kind_of(path: str) -> str:
    """Pages of one kind: the same path with its numbers taken out, and the same query keys."""
    parts = urlsplit(path)
    keys = sorted({pair.split("=", 1)[0] for pair in parts.query.split("&") if pair})
    return re.sub(r"\d+", "N", parts.path) + ("?" + "&".join(keys) if keys else "")


async def typed_values(runtime: Runtime) -> list[str]:
    """What people typed that pages show back: user names, speaker addresses, phone endpoints, area codes."""
    async with runtime.sessions() as session:
        users = (await session.scalars(select(User))).all()
        values = [user.username for user in users] + [user.phone_endpoint or "" for user in users]
        values += list((await session.scalars(select(Speaker.address))).all())
        values += [code or "" for code in (await session.scalars(select(Township.code))).all()]
        values += [code or "" for code in (await session.scalars(select(County.code))).all()]
    return values


async def links_on(person: Journey) -> list[str]:
    hrefs: list[str] = await person.page.eval_on_selector_all(
        "a[href]", "links => links.map(link => link.getAttribute('href'))"
    )
    found = []
    for href in hrefs:
        if href.startswith(person.base):
            href = href[len(person.base) :]
        href = href.split("#", 1)[0]
        if href.startswith("/") and not href.startswith("//") and not NOT_PAGES.search(href):
            found.append(href)
    return found


@pytest.mark.parametrize("account", ACCOUNTS)
async def test_every_page_a_role_reaches_is_chinese_accessible_and_laid_out_right(
    account: str, server: TestServer, runtime: Runtime, passwords: dict[str, str], tmp_path: Path
) -> None:
    async with journeys(str(server.make_url("/")), tmp_path / "shots") as open_journey:
        person = await open_journey(account.removeprefix("demo."))
        person.typed(*await typed_values(runtime))
        await person.sign_in(account, passwords[account])
        queue = ["/", *FORM_PAGES.get(account, ())]
        seen: set[str] = set()
        kinds: dict[str, int] = {}
        problems: list[str] = []
        visited: list[str] = []
        while queue:
            path = queue.pop(0)
            kind = kind_of(path)
            if path in seen or kinds.get(kind, 0) >= PER_KIND:
                continue
            seen.add(path)
            kinds[kind] = kinds.get(kind, 0) + 1
            response = await person.page.goto(person.url(path))
            visited.append(path)
            status = response.status if response else 0
            if status != 200:
                problems.append(f"{path}: answered {status}")
                continue
            for check in (person.check_chinese, person.check_accessible, person.check_look):
                try:
                    await check()
                except AssertionError as failed:
                    problems.append(f"{path}: {failed}")
            queue.extend(link for link in await links_on(person) if link not in seen)
        await keep_screenshot(person.page, tmp_path / "shots" / f"{account}-last.png")
    assert len(visited) >= 5, visited
    assert not problems, f"{account} visited {len(visited)} pages; problems:\n" + "\n".join(problems)
