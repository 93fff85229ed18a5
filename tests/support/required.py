"""What to do when a real part the tests need (PostgreSQL, Chromium, espeak-ng, Asterisk) is missing."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(what: str) -> NoReturn:
    """Fail as root, skip otherwise.

    As root — the README's test command and CI — the set-up has installed every part, so a missing one
    is a failure, never a quiet skip of every test that needs it. A developer running a subset
    unprivileged may lack some and still run the rest.
    """
    if os.geteuid() == 0:
        pytest.fail(f"{what} (the README's test command installs and starts it)")
    pytest.skip(what)
