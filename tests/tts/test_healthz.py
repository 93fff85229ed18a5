"""/healthz shows each speech engine's state: the real app, edge-tts pointed at the local protocol server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from server import Runtime
from settings import Settings, TtsSettings
from tests.conftest import ClientFactory, make_settings
from tests.support.edge_server import EdgeServer
from tests.support.http import ApiClient
from tts.audio import Profile

# Long enough that a loaded machine still sees the breaker open between two probes; short enough that the
# test waits little for edge to come back.
BREAKER_OPEN_S = 2.0


@pytest.fixture
def settings(tmp_path: Path, database_url: str, edge_server: EdgeServer, speech_programs: None) -> Settings:
    # Microsoft refuses our token (403) from the start: the app's first probe finds edge down.
    edge_server.mode = "forbidden"
    tts = TtsSettings(engines=("edge", "espeak"), breaker_open_s=BREAKER_OPEN_S, probe_interval_s=0.05)
    return make_settings(tmp_path / "data", database_url, tts=tts)


async def tts_health(admin: ApiClient) -> dict[str, Any]:
    # The engines' details (errors, retry times) are for signed-in admins; anyone else sees statuses only.
    report = await admin.get_json("/healthz")
    tts: dict[str, Any] = report["components"]["tts"]
    return tts


async def wait_for(admin: ApiClient, engine: str, status: str, breaker: str | None = None) -> dict[str, Any]:
    """The first /healthz report showing ``engine`` in ``status`` (and its breaker in ``breaker``, if given).

    A report is one consistent snapshot; between two probes the breaker is half-open for a moment, so a test
    about the open breaker waits for a report that shows it open rather than taking whichever came first.
    """
    async with asyncio.timeout(10 + BREAKER_OPEN_S):
        while True:
            tts = await tts_health(admin)
            report = tts["engines"][engine]
            if report["status"] == status and breaker in (None, report["breaker"]):
                return tts
            await asyncio.sleep(0.05)


async def test_healthz_shows_edge_skipped_while_espeak_speaks_and_edge_back_once_it_answers(
    admin: ApiClient, new_client: ClientFactory, runtime: Runtime, edge_server: EdgeServer
) -> None:
    tts = await wait_for(admin, "edge", "down", breaker="open")

    assert tts["status"] == "degraded"
    assert tts["order"] == ["edge", "espeak"]
    edge, espeak = tts["engines"]["edge"], tts["engines"]["espeak"]
    assert edge["breaker"] == "open"
    assert "retry_at" in edge and "403" in edge["last_error"]
    assert (espeak["status"], espeak["breaker"]) == ("ok", "closed")

    # While edge is down a notice renders on espeak, and the engine that spoke is counted.
    # (That a skipped edge is not even asked is tested on the chain with a manual clock.)
    item = await runtime.broadcasting.producer.render_text("各位村民请注意。", repeats=1, profiles=[Profile.ASTERISK])
    assert item.engine == "espeak"
    assert (await tts_health(admin))["engines"]["espeak"]["spoken"] == 1
    # Anyone sees the state without the details. Rendering may outlast the breaker's open period, and while
    # the next probe is asked the breaker is half-open for a moment: wait (bounded) for a report with it open.
    anonymous_client = await new_client()
    async with asyncio.timeout(10 + BREAKER_OPEN_S):
        while True:
            anonymous = await anonymous_client.get_json("/healthz")
            if anonymous["components"]["tts"] == {"status": "degraded"}:
                break
            await asyncio.sleep(0.05)

    # Microsoft accepts us again: the background probe puts edge back once its period is over.
    edge_server.mode = "ok"
    tts = await wait_for(admin, "edge", "ok")
    assert tts["status"] == "ok"
    assert tts["engines"]["edge"]["breaker"] == "closed"
    assert "retry_at" not in tts["engines"]["edge"]
