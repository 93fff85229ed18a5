"""Operations against the real Asterisk sandbox (the plugin ``tests/support/asterisk.py``): slow, SQLite."""

from __future__ import annotations

import pytest

from settings import BroadcastSettings, OpsSettings, Settings


@pytest.fixture
def ops_settings() -> OpsSettings:
    return OpsSettings()


@pytest.fixture
def settings(asterisk_settings: Settings, ops_settings: OpsSettings) -> Settings:
    fast_dispatch = BroadcastSettings(pending_poll_s=0.2, lower_priority_wait_s=60)
    return asterisk_settings.model_copy(update={"ops": ops_settings, "broadcast": fast_dispatch})


@pytest.fixture(autouse=True)
def _clean_instance(clean_asterisk_instance: None) -> None:
    """Each test starts on an empty spool and CDR file."""
