"""The CAP fixtures (tests/fixtures/cap): the OASIS CAP 1.2 specification's examples and Chinese warnings."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

CAP_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cap"
OASIS_EXAMPLES = sorted(path.name for path in CAP_FIXTURES.glob("oasis-*.xml"))
FIXTURE_SENT = "2026-12-05T06:00:00+08:00"
FIXTURE_EXPIRES = "2026-12-06T06:00:00+08:00"


def cap_bytes(name: str, *, now: datetime | None = None, expires_in: timedelta = timedelta(hours=6)) -> bytes:
    """A fixture as bytes; with ``now``, sent just before it and expires ``expires_in`` after (CAP's format)."""
    text = (CAP_FIXTURES / name).read_text(encoding="utf-8")
    if now is not None:
        local = now.astimezone().replace(microsecond=0)
        text = text.replace(f"<sent>{FIXTURE_SENT}</sent>", f"<sent>{local.isoformat()}</sent>")
        text = text.replace(FIXTURE_EXPIRES, (local + expires_in).isoformat())
    return text.encode("utf-8")
