"""End to end: a pushed warning plays on an RTP receiver on loopback by itself, and its Cancel stops it mid-play.

The real service (espeak-ng speech, the dispatcher elected and running, RTP to our own receiver on
127.0.0.1); the message arrives over HTTP with the source's token, as from the warning system.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from alerts.sources import RepeatRunner
from server import Runtime
from settings import Settings
from storage.models import RUN_CANCELLED, RUN_SUCCESS, Broadcast, Notice
from tests.alerts.fixtures import cap_bytes
from tests.alerts.support import coded_county
from tests.broadcast.test_rtp import Listener
from tests.conftest import ClientFactory
from tests.support.broadcasting import broadcasting_settings, speaker_rows, wait_for_rows
from tests.support.http import ApiClient

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return broadcasting_settings(tmp_path / "data", database_url)


async def _token(admin: ApiClient) -> str:
    created = await admin.post_json("/api/v1/alert-sources", {"name": "市气象局推送"}, expect=201)
    return str(created["token"])


async def _push(client: ApiClient, token: str, data: bytes) -> dict[str, object]:
    response = await client.client.post(
        "/api/v1/alerts/cap",
        data=data,
        headers={"Content-Type": "application/xml", "Authorization": f"Bearer {token}"},
    )
    body: dict[str, object] = await response.json()
    assert response.status == 202, body
    return body


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    """An RTP receiver on loopback, closed after the test however it ends (a failed test left its socket open,
    and the warning for it fell on whichever test ran next in that process)."""
    receiver = Listener()
    receiver.attach()
    yield receiver
    receiver.close()


async def _first_packet(listener: Listener) -> None:
    async with asyncio.timeout(60):
        # The receiver (tests/broadcast) records packets from a socket reader and offers no event to wait on.
        while not listener.packets:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_a_red_warning_plays_on_the_rtp_receiver_by_itself_with_its_spoken_text(
    runtime: Runtime, server: TestServer, new_client: ClientFactory, admin: ApiClient, listener: Listener
) -> None:
    tree = await coded_county(runtime, speakers=[("rtp", f"127.0.0.1:{listener.port}")])
    token = await _token(admin)
    receipt = await _push(await new_client(), token, cap_bytes("cn-orange-gale.xml", now=runtime.clock.now()))
    assert receipt["state"] == "aired"
    await _first_packet(listener)
    rows = await wait_for_rows(runtime, lambda rows: rows and all(row.state not in (1, 2) for row in rows), timeout=120)
    listener.close()
    played = next(row for row in rows if row.zone_id == tree.east_zones[0])
    assert played.state == RUN_SUCCESS and played.kind == "emergency"
    assert [speaker.state for speaker in await speaker_rows(runtime, played.id)] == [RUN_SUCCESS]
    async with runtime.sessions() as session:
        notice = await session.scalar(select(Notice))
    assert notice is not None and notice.kind == "emergency" and notice.state == "approved"
    assert notice.title == "请注意，以下是示例县气象局发布的大风橙色预警"
    assert notice.body.startswith("示例县气象局发布大风橙色预警信号。请加固围栏")
    # The page shows it with the outcome derived from the speakers.
    page = await admin.get(f"/alerts/{receipt['message_id']}")
    html = await page.text()
    assert page.status == 200 and "已播出" in html and "示例东风镇" in html


async def test_a_cancel_stops_the_warning_mid_play(
    runtime: Runtime, server: TestServer, new_client: ClientFactory, admin: ApiClient, listener: Listener
) -> None:
    tree = await coded_county(runtime, speakers=[("rtp", f"127.0.0.1:{listener.port}")])
    token = await _token(admin)
    machine = await new_client()
    red = await _push(machine, token, cap_bytes("cn-red-rainstorm.xml", now=runtime.clock.now()))
    await _first_packet(listener)
    await _push(machine, token, cap_bytes("cn-red-rainstorm-cancel.xml", now=runtime.clock.now()))
    rows = await wait_for_rows(
        runtime, lambda rows: any(r.zone_id == tree.east_zones[0] and r.state == RUN_CANCELLED for r in rows)
    )
    listener.close()
    cancelled = next(row for row in rows if row.zone_id == tree.east_zones[0])
    assert cancelled.error == "预警已撤销"
    async with runtime.sessions() as session:
        broadcast = await session.scalar(select(Broadcast))
    assert broadcast is not None and broadcast.duration_s is not None
    # Far fewer packets than the whole item (20 ms each): it stopped part-way.
    assert 0 < len(listener.packets) * 0.02 < broadcast.duration_s / 2
    alert = await admin.get_json(f"/api/v1/alerts/{red['message_id']}")
    assert alert["state"] == "cancelled" and alert["state_label"] == "已撤销"


async def test_a_warning_still_playing_at_its_expires_is_stopped_there(
    runtime: Runtime, server: TestServer, new_client: ClientFactory, admin: ApiClient, listener: Listener
) -> None:
    tree = await coded_county(runtime, speakers=[("rtp", f"127.0.0.1:{listener.port}")])
    token = await _token(admin)
    # The repeat runner ends what has expired on its own tick; on a machine loaded enough that the warning's
    # speech takes longer to render than its few seconds, it ended the alert before its first packet and this
    # test waited for one in vain. Here the runner's step is taken by hand, once the warning is on air.
    runner = next(service for service in runtime.alerts.worker_services if isinstance(service, RepeatRunner))
    await runner.stop()
    # Expiring a few seconds after it is sent (CAP times are whole seconds): the red warning's text plays far
    # longer, so it is on air when its expires passes.
    data = cap_bytes("cn-red-rainstorm.xml", now=runtime.clock.now(), expires_in=timedelta(seconds=4))
    red = await _push(await new_client(), token, data)
    await _first_packet(listener)
    row = await runtime.alerts.service.get(int(str(red["message_id"])))
    assert row.expires is not None
    async with asyncio.timeout(30):
        while runtime.clock.now() < row.expires:  # noqa: ASYNC110 - the service's clock, not an event
            await asyncio.sleep(0.2)
    await runner.run_due()  # the repeat runner's step: what has expired is ended
    rows = await wait_for_rows(
        runtime, lambda rows: any(r.zone_id == tree.east_zones[0] and r.state == RUN_CANCELLED for r in rows)
    )
    listener.close()
    stopped = next(row for row in rows if row.zone_id == tree.east_zones[0])
    assert stopped.error == "预警已到失效时间"
    alert = await admin.get_json(f"/api/v1/alerts/{red['message_id']}")
    assert alert["state"] == "aired" and "到失效时间，播出结束" in alert["state_reason"]
