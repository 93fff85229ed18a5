"""Secrets generated once into the data directory: the cookie key, the AMI secret, the softphone password.

A secret the settings do not give is made on first use and written to a file
of its own, readable by the service user only (mode 0600), so every later
start — and every other process of the same installation — reads the same
one. The file is created exclusively (``O_EXCL``), never overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def generated_once(path: Path, make: Callable[[], str]) -> str:
    """The secret stored at ``path``; ``make()`` writes it there first if the file does not exist yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: never overwrite a secret another process has just written.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make())
    return path.read_text().strip()
