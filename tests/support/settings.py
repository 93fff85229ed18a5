"""Settings for tests: cheap password hashing, a fast worker election, no Asterisk unless a test asks for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from settings import DatabaseSettings, SecuritySettings, Settings, WorkerSettings


def make_settings(data_dir: Path, database_url: str, **overrides: Any) -> Settings:
    """Settings for tests: cheap password hashing, no Asterisk unless a test asks for it."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "asterisk": "none",
        "database": DatabaseSettings(url=database_url),
        "security": SecuritySettings(
            password_time_cost=1, password_memory_kib=1024, password_parallelism=1, login_base_delay_s=1.0
        ),
        "worker": WorkerSettings(election_interval_s=0.2),
    }
    values.update(overrides)
    return Settings(**values)
