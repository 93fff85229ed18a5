"""手机喊话 desk tests against the real Asterisk sandbox; its fixtures are the plugin ``tests/support/asterisk.py``.

``settings`` here points the service at this test process's instance, so the usual
``runtime``/``app``/``server``/``new_client`` fixtures give a service whose
elected worker runs the AMI link, FastAGI, the tracker and reconciliation.
``hotline`` waits until that worker is connected and gives the test a
:class:`~tests.support.asterisk.Hotline` harness; a test module sets other IVR
timings with ``pytestmark = pytest.mark.ivr(operator_dial=…)``. These tests run
on SQLite. The collection hook marks them ``asterisk`` and ``slow``.
"""

from __future__ import annotations

import pytest

from settings import Settings


@pytest.fixture
def settings(asterisk_settings: Settings) -> Settings:
    return asterisk_settings


@pytest.fixture(autouse=True)
def _clean_instance(clean_asterisk_instance: None) -> None:
    """Each test starts on an empty spool and CDR file, with its own IVR settings rendered."""
