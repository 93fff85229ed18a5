"""The documentation holds together: every relative link resolves, and it cites nothing outside the repository.

Checked: every Markdown file of the repository (README.md, docs/, bench/README.md, deploy/…). A link is
``[text](target)`` or a reference definition ``[label]: target`` outside code; a relative target must
name an existing file or folder, and a ``#fragment`` must name a heading of the target page, spelled the
way GitHub spells heading anchors.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIPPED_FOLDERS = {".venv", "data", "build", "node_modules", "__pycache__"}
QUICK_START = (
    "./quickstart.sh run     # set up everything, load the demo county, start the service; "
    "prints the URL and where the demo logins are\n"
    "./quickstart.sh test    # set up everything, then run the whole test suite "
    "(ruff, mypy, pytest on SQLite and PostgreSQL)\n"
)

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def markdown_files() -> list[Path]:
    return sorted(
        path
        for path in ROOT.rglob("*.md")
        if not any(part in SKIPPED_FOLDERS or part.startswith(".") for part in path.relative_to(ROOT).parts)
    )


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code spans blanked."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        lines.append("" if fenced else CODE_SPAN.sub("", line))
    return lines


def links(text: str) -> list[str]:
    found: list[str] = []
    for line in prose_lines(text):
        found.extend(match.group(1) for match in INLINE_LINK.finditer(line))
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            found.append(definition.group(1))
    return found


def heading_text(markdown: str) -> str:
    """A heading as GitHub renders it: code, emphasis and link syntax gone, their text kept."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    text = re.sub(r"`([^`]*)`", r"\1", text)
    return re.sub(r"(\*\*|__|\*|_)(\S(?:.*?\S)?)\1", r"\2", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case; letters, marks, digits, '_', '-' and spaces kept; space → '-'."""
    kept = "".join(
        char
        for char in heading_text(heading).lower()
        if char in " -" or unicodedata.category(char)[0] in "LMN" or unicodedata.category(char) == "Pc"
    )
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        heading = None if fenced else HEADING.match(line)
        if heading is None:
            continue
        base = slug(heading.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def broken_links(path: Path) -> list[str]:
    problems = []
    for target in links(path.read_text(encoding="utf-8")):
        if SCHEME.match(target) or target.startswith("//"):
            continue  # a web address: not ours to check offline
        file_part, _, fragment = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            problems.append(f"{target}: no such file")
            continue
        if not destination.is_relative_to(ROOT):
            problems.append(f"{target}: outside the repository")
            continue
        if fragment and destination.suffix == ".md" and fragment not in anchors(destination):
            problems.append(f"{target}: no heading #{fragment} in {destination.relative_to(ROOT)}")
    return problems


def test_the_readme_and_the_docs_pages_exist() -> None:
    found = {path.relative_to(ROOT).as_posix() for path in markdown_files()}
    assert {"README.md", "bench/README.md", "docs/terminal-protocol.md", "docs/decisions/README.md"} <= found


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: path.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves_to_a_file_and_a_heading(path: Path) -> None:
    assert broken_links(path) == []


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: path.relative_to(ROOT).as_posix())
def test_no_document_cites_a_file_outside_the_repository(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "../shared" not in text
    assert "design.md" not in text


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    reachable: set[Path] = set()
    todo = [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        if page in reachable:
            continue
        reachable.add(page)
        for target in links(page.read_text(encoding="utf-8")):
            file_part = target.partition("#")[0]
            if file_part and not SCHEME.match(target) and file_part.endswith(".md"):
                todo.append((page.parent / file_part).resolve())
    pages = set((ROOT / "docs").rglob("*.md")) | {ROOT / "bench" / "README.md"}
    assert sorted(p.relative_to(ROOT).as_posix() for p in pages - reachable) == []


def test_the_quick_start_commands_are_the_ones_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "```sh\n" + QUICK_START + "```" in readme
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "./quickstart.sh test" in ci


def test_the_anchor_rules_match_githubs() -> None:
    assert slug("Connecting a site's own Asterisk") == "connecting-a-sites-own-asterisk"
    assert slug("Speaker test (拨测)") == "speaker-test-拨测"
    assert slug("Settings (sections `ami`, `fastagi`)") == "settings-sections-ami-fastagi"
    assert slug("One process, one active worker") == "one-process-one-active-worker"
    assert slug("The 待办 panel on the home page") == "the-待办-panel-on-the-home-page"
    assert slug("0001 — Our own AMI client") == "0001--our-own-ami-client"
