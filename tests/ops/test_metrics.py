"""/metrics: Prometheus's text format, only for the scraper the settings allow, and never a 500."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import text

from server import Runtime
from settings import OpsSettings, Settings
from tests.conftest import ClientFactory, make_settings
from tests.ops.metrics_text import names, parse, value

TOKEN = "scrape-me-0123456789"


@pytest.fixture
def ops_settings() -> OpsSettings:
    return OpsSettings()


@pytest.fixture
def settings(tmp_path: Path, database_url: str, ops_settings: OpsSettings) -> Settings:
    return make_settings(tmp_path / "data", database_url, ops=ops_settings)


@pytest.mark.parametrize("db_kind", ["sqlite", "postgresql"], indirect=True)
async def test_a_scraper_on_this_machine_reads_every_source_in_the_prometheus_format(
    new_client: ClientFactory, server: TestServer
) -> None:
    client = await new_client()
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = parse(await response.text())
    for source in ("service", "database", "health", "disk", "clock", "cache"):
        assert value(samples, "cunxiang_metrics_source_up", source=source) == 1, source
    assert {
        "cunxiang_info",
        "cunxiang_disk_free_bytes",
        "cunxiang_component_status",
        "cunxiang_worker_active",
        "cunxiang_tts_breaker",
        "cunxiang_audio_cache_limit_bytes",
        "cunxiang_hangup_to_case_seconds_samples",
    } <= names(samples)
    for folder in ("data", "recordings", "audio", "uploads", "spool"):
        assert value(samples, "cunxiang_disk_free_bytes", folder=folder) > 0, folder
    assert value(samples, "cunxiang_component_status", component="database", state="ok") == 1


@pytest.mark.parametrize("ops_settings", [OpsSettings(metrics_token=TOKEN)])
async def test_with_a_token_set_a_scraper_without_it_is_refused(new_client: ClientFactory) -> None:
    client = await new_client()
    refused = await client.get("/metrics")
    assert refused.status == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status == 401
    allowed = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert allowed.status == 200 and "cunxiang_info" in await allowed.text()


@pytest.mark.parametrize("ops_settings", [OpsSettings(metrics_allow_from=("10.0.0.0/8",))])
async def test_without_a_token_a_scraper_from_an_address_not_allowed_is_refused(new_client: ClientFactory) -> None:
    response = await (await new_client()).get("/metrics")
    assert response.status == 403
    assert "cunxiang_" not in await response.text()


async def test_with_a_table_gone_the_other_sources_still_answer_and_the_database_is_marked_down(
    new_client: ClientFactory, runtime: Runtime
) -> None:
    async with runtime.engine.begin() as connection:
        await connection.execute(text("ALTER TABLE calls RENAME TO calls_moved_away"))
    response = await (await new_client()).get("/metrics")
    assert response.status == 200
    samples = parse(await response.text())
    assert value(samples, "cunxiang_metrics_source_up", source="database") == 0
    assert value(samples, "cunxiang_metrics_source_up", source="disk") == 1
    assert value(samples, "cunxiang_disk_free_bytes", folder="recordings") > 0


DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "cunxiang-dashboard.json"
# Exposed only while their source has something to say: the worker's telephony and queues (another process, or
# telephony off, has none), the clock's figures when the system told them.
CONDITIONAL = {
    "cunxiang_ami_connected",
    "cunxiang_ami_connections_total",
    "cunxiang_dispatcher_waiting",
    "cunxiang_dispatcher_zones_playing",
    "cunxiang_scheduler_schedules",
    "cunxiang_clock_synchronized",
    "cunxiang_clock_offset_seconds",
}


def exposed_names(text: str) -> set[str]:
    """Every series name the exposition declares (a counter ``x`` is scraped as ``x_total``)."""
    found = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _hash, _type, name, kind = line.split()
            found.add(f"{name}_total" if kind == "counter" and not name.endswith("_total") else name)
        elif line and not line.startswith("#"):
            found.add(line.split("{", 1)[0].split(" ", 1)[0])
    return found


async def test_the_example_grafana_dashboard_asks_only_for_metrics_that_exist(new_client: ClientFactory) -> None:
    dashboard = json.loads(await asyncio.to_thread(DASHBOARD.read_text, encoding="utf-8"))
    asked = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"cunxiang_[a-z_]+", target["expr"])
    }
    response = await (await new_client()).get("/metrics")
    missing = asked - exposed_names(await response.text()) - CONDITIONAL
    assert not missing, f"the dashboard asks for metrics /metrics does not have: {sorted(missing)}"


async def test_a_source_that_hangs_is_marked_down_and_the_rest_still_answers(
    new_client: ClientFactory, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The health of a part that never answers (a probe stuck on a lock) costs its source, not the scrape."""

    async def stuck() -> dict[str, object]:
        await asyncio.sleep(3600)
        return {"status": "ok"}

    monkeypatch.setattr("ops.metrics.SOURCE_TIMEOUT_S", 0.2)
    runtime.health.register("stuck", stuck)
    response = await (await new_client()).get("/metrics")
    assert response.status == 200
    samples = parse(await response.text())
    assert value(samples, "cunxiang_metrics_source_up", source="health") == 0
    assert value(samples, "cunxiang_metrics_source_up", source="database") == 1
    assert value(samples, "cunxiang_disk_free_bytes", folder="data") > 0
