"""A person's way through the pages, in Debian's Chromium: a screenshot per step, and checks on what they see.

A journey test opens one :class:`Journey` per person (each its own browser context, so its own cookies),
walks the task as that person would — clicking and typing, never calling the API behind the page — and
after each step calls :meth:`Journey.step`, which

* keeps a screenshot, numbered, under the test's temporary folder (a failed journey shows where it broke);
* fails if the page shows English: any ASCII word but the few a Chinese user reads as words of their own
  (:data:`ALLOWED_WORDS`) and the values somebody typed (user names, addresses, endpoint names), which
  the journey is told with :meth:`Journey.typed` (signing in registers the user name itself).

:meth:`Journey.check_accessible` runs axe-core (the copy the axe-playwright-python wheel ships) on the page
for WCAG 2.0/2.1 A and AA; a rule may be switched off only by naming it with the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from axe_playwright_python.base import AXE_FILE_PATH
from playwright.async_api import Browser, Page
from playwright.async_api import Error as PlaywrightError

from tests.support.browser import chromium

log = logging.getLogger(__name__)

# ASCII words a Chinese interface may show (names of standards, file types and units people know by these names).
ALLOWED_WORDS = frozenset({"SIP", "RTP", "IP", "4G", "PIN", "CSV", "Excel", "MB", "GB", "CAP", "XML"})
# A word: letters and digits with at least one letter ("4G" is one word, "2026" none).
_WORD = re.compile(r"[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*")
# What a user sees besides the text of elements: placeholders, tooltips, button values.
_SHOWN_ATTRIBUTES_SCRIPT = """
() => Array.from(document.querySelectorAll(
    '[placeholder], [title], input[type=submit][value], input[type=button][value]'))
  .filter(element => element.offsetParent !== null)
  .map(element => [element.getAttribute('placeholder'), element.getAttribute('title'),
                   element.matches('input[type=submit], input[type=button]') ? element.value : null])
  .flat().filter(Boolean)
"""
WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
# How the page is laid out where a person reads it: the header on one line (on a screen at least 1366 pixels
# wide), and no short label — a word of up to six characters with nothing else in its element — broken over
# lines (a table squeezing 类别 to one character per line).
_LOOK_SCRIPT = """
() => {
  const problems = [];
  const shown = (element) => element.offsetParent !== null || element.getClientRects().length > 0;
  const header = document.querySelector("header.top");
  if (header && window.innerWidth >= 1366) {
    const parts = [...header.querySelectorAll(".brand, nav > a, nav > details > summary, .who")].filter(shown);
    const middles = parts.map((part) => { const box = part.getBoundingClientRect(); return box.top + box.height / 2; });
    if (middles.length && Math.max(...middles) - Math.min(...middles) > 6) {
      problems.push(`the header takes more than one line at ${window.innerWidth} pixels`);
    }
  }
  for (const element of document.body.querySelectorAll("*")) {
    if (element.closest("svg, select, script, style, template") || !shown(element)) continue;
    if (![...element.childNodes].every((node) => node.nodeType === Node.TEXT_NODE)) continue;
    const text = element.textContent.trim();
    if (text.length < 2 || text.length > 6 || /\\s/.test(text)) continue;
    const range = document.createRange();
    range.selectNodeContents(element);
    const boxes = [...range.getClientRects()].filter((box) => box.width > 0);
    const lines = new Set(boxes.map((box) => Math.round(box.top)));
    if (lines.size > 1) problems.push(`“${text}” is broken over ${lines.size} lines (${element.tagName})`);
  }
  return problems;
}
"""


def english_words(text: str, typed: Iterable[str] = ()) -> list[str]:
    """The ASCII words in ``text`` that a Chinese user should not see (after removing what was typed)."""
    for value in sorted(typed, key=len, reverse=True):  # longest first: "demo.staff" before "demo"
        if value:
            text = text.replace(value, " ")
    return [word for word in _WORD.findall(text) if word not in ALLOWED_WORDS]


async def keep_screenshot(page: Page, shot: Path) -> bool:
    """A full-page screenshot of ``page`` at ``shot``, kept as evidence; whether one was captured.

    Never fails a test: a screenshot Chromium could not capture (under load, ``Page.captureScreenshot: Unable
    to capture screenshot``, mostly for a full page) is taken again, then of the viewport only, and if none
    can be, logged.
    """
    failures: list[str] = []
    for full_page in (True, True, False):
        try:
            await page.screenshot(path=str(shot), full_page=full_page)
            return True
        except PlaywrightError as exc:
            failures.append(exc.message.splitlines()[0] if exc.message else type(exc).__name__)
            await asyncio.sleep(0.2)  # a busy renderer: give it a moment before the next try
    log.warning("no screenshot %s: %s", shot.name, "; ".join(failures))
    return False


@dataclass
class Journey:
    """One person in one browser context."""

    page: Page
    base: str
    shots: Path
    who: str
    typed_values: set[str] = field(default_factory=set)
    steps: int = 0

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def typed(self, *values: str) -> None:
        """Values this person (or the test, for them) typed or chose: shown back to them, not English text."""
        self.typed_values.update(value for value in values if value)

    async def goto(self, path: str) -> None:
        await self.page.goto(self.url(path))

    async def sign_in(self, username: str, password: str) -> None:
        self.typed(username)
        await self.goto("/login")
        await self.page.fill("input[name=username]", username)
        await self.page.fill("input[name=password]", password)
        await self.page.click("button[type=submit]")
        await self.page.wait_for_url(self.url("/"))
        await self.step("signed-in")

    async def step(self, name: str, *, chinese: bool = True) -> Path:
        """Keep a screenshot of this step and check that nothing shown is English.

        The screenshot is evidence, not what the journey asserts (:func:`keep_screenshot`): if none could be
        captured, the returned path does not exist.
        """
        self.steps += 1
        shot = self.shots / f"{self.who}-{self.steps:02d}-{name}.png"
        await keep_screenshot(self.page, shot)
        if chinese:
            await self.check_chinese(name)
        return shot

    async def shown_text(self) -> str:
        body = await self.page.inner_text("body")
        attributes: list[str] = await self.page.evaluate(_SHOWN_ATTRIBUTES_SCRIPT)
        return "\n".join([await self.page.title(), body, *attributes])

    async def check_chinese(self, where: str = "") -> None:
        words = english_words(await self.shown_text(), self.typed_values)
        assert not words, f"English shown to {self.who} at {where or self.page.url}: {sorted(set(words))}"

    async def check_look(self) -> None:
        """The header on one line at 1366 pixels and no short label broken over lines (see ``_LOOK_SCRIPT``)."""
        problems: list[str] = await self.page.evaluate(_LOOK_SCRIPT)
        assert not problems, f"layout on {self.page.url}: " + "; ".join(sorted(set(problems)))

    async def check_accessible(self, switched_off: Mapping[str, str] | None = None) -> None:
        """No WCAG 2 A/AA violation on the current page; ``switched_off`` maps a rule id to why it is off.

        Text in exactly the colour of its background counts as a violation too: axe files a 1:1 contrast
        under "needs review" (taking it for text hidden on purpose), but on these pages it is a button nobody
        can see (归档, white on white).
        """
        await self.page.evaluate(await asyncio.to_thread(Path(AXE_FILE_PATH).read_text, encoding="utf-8"))
        options = {
            "runOnly": {"type": "tag", "values": list(WCAG_TAGS)},
            "rules": {rule: {"enabled": False} for rule in switched_off or {}},
            "resultTypes": ["violations", "incomplete"],
        }
        results = await self.page.evaluate(f"axe.run(document, {json.dumps(options)})")
        violations = [
            f"{violation['id']} ({violation['impact']}): {violation['help']} — "
            + "; ".join(" ".join(node["target"]) for node in violation["nodes"][:5])
            for violation in results["violations"]
        ]
        invisible = [
            " ".join(node["target"])
            for finding in results["incomplete"]
            if finding["id"] == "color-contrast"
            for node in finding["nodes"]
            if any(check.get("data", {}).get("messageKey") == "equalRatio" for check in node.get("any", []))
        ]
        if invisible:
            violations.append("color-contrast: text in the colour of its background — " + "; ".join(invisible[:5]))
        assert not violations, f"accessibility on {self.page.url}:\n" + "\n".join(violations)


OpenJourney = Callable[[str], Awaitable[Journey]]


@asynccontextmanager
async def journeys(base: str, shots: Path, *, viewport: tuple[int, int] = (1366, 900)) -> AsyncIterator[OpenJourney]:
    """Opens journeys, one browser context each, in one Chromium (zh-CN, so native controls speak Chinese)."""
    await asyncio.to_thread(shots.mkdir, parents=True, exist_ok=True)
    async with chromium() as browser:

        async def open_journey(who: str) -> Journey:
            return await _new_journey(browser, base, shots, who, viewport)

        yield open_journey


async def _new_journey(browser: Browser, base: str, shots: Path, who: str, viewport: tuple[int, int]) -> Journey:
    context = await browser.new_context(
        locale="zh-CN", timezone_id="Asia/Shanghai", viewport={"width": viewport[0], "height": viewport[1]}
    )
    return Journey(await context.new_page(), base.rstrip("/"), shots, who)
