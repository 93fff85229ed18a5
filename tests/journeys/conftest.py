"""Journeys run on the demo county: each test gets its own copy of it (``tests.support.demo``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.demo import DemoCounty


@pytest.fixture
def database_url(tmp_path: Path, demo_county: DemoCounty) -> str:
    """This test's copy of the demo county, in the data directory its settings use (``tmp_path / "data"``)."""
    return demo_county.copy_to(tmp_path / "data")


@pytest.fixture
def passwords(demo_county: DemoCounty) -> dict[str, str]:
    """The demo accounts' passwords by user name (demo.admin, demo.operator, …)."""
    return demo_county.passwords
