"""A feed polled with conditional requests from a server of our own on loopback, and a drop folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select

from alerts.sources import FeedPoller, FolderWatcher, feed_links
from server import Runtime, build_runtime
from storage.models import AlertMessage, AlertRefusal, AlertSource
from tests.alerts.fixtures import cap_bytes
from tests.alerts.support import RecordingBroadcaster, coded_county
from tests.conftest import SYSTEM


class Feed:
    """An Atom feed of two CAP messages (one broken), answering 304 to a request that has seen its ETag."""

    def __init__(self, now_messages: dict[str, bytes]) -> None:
        self.messages = now_messages
        self.requests: list[tuple[str, str | None]] = []
        self.failing = False
        self.version = '"v1"'

    def atom(self, base: str) -> bytes:
        entries = "".join(
            f'<entry><id>{name}</id><title>{name}</title><link href="{base}/cap/{name}"/></entry>'
            for name in self.messages
        )
        return (
            f'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>{entries}</feed>'.encode()
        )

    async def feed(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, request.headers.get("If-None-Match")))
        if self.failing:
            return web.Response(status=503)
        if request.headers.get("If-None-Match") == self.version:
            return web.Response(status=304)
        base = f"http://{request.host}"
        return web.Response(body=self.atom(base), content_type="application/atom+xml", headers={"ETag": self.version})

    async def message(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, None))
        return web.Response(body=self.messages[request.match_info["name"]], content_type="application/xml")


@pytest.fixture
async def feed(runtime: Runtime) -> AsyncIterator[tuple[Feed, str]]:
    now = runtime.clock.now()
    served = Feed({"red.xml": cap_bytes("cn-red-rainstorm.xml", now=now), "bad.xml": cap_bytes("cn-malformed.xml")})
    app = web.Application()
    app.router.add_get("/feed.atom", served.feed)
    app.router.add_get("/cap/{name}", served.message)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield served, str(server.make_url("/feed.atom"))
    await server.close()


def test_feed_links_reads_atom_and_rss_and_leaves_a_cap_message_alone() -> None:
    atom = b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><link href="http://x/1.xml"/></entry></feed>'
    rss = b"<rss><channel><item><link>http://x/2.xml</link></item></channel></rss>"
    assert feed_links(atom) == ["http://x/1.xml"]
    assert feed_links(rss) == ["http://x/2.xml"]
    assert feed_links(cap_bytes("cn-red-rainstorm.xml")) is None
    assert feed_links(b"<!DOCTYPE feed><feed/>") == []


async def test_a_feed_is_polled_with_conditional_requests_and_each_message_used_once(
    runtime: Runtime, feed: tuple[Feed, str]
) -> None:
    served, url = feed
    await coded_county(runtime)
    service = runtime.alerts.service
    service.use_broadcaster(RecordingBroadcaster())
    source, _ = await service.create_source(SYSTEM, name="省预警中心订阅", kind="pull", url=url, poll_interval_s=0)
    poller = FeedPoller(service, runtime.clock)
    await poller.open()
    try:
        await poller.poll_due()
        await poller.poll_due()
    finally:
        await poller.close()
    assert served.requests[0] == ("/feed.atom", None)
    assert ("/feed.atom", '"v1"') in served.requests  # the second poll asked conditionally, and got 304
    assert sorted(path for path, _ in served.requests if path.startswith("/cap/")) == ["/cap/bad.xml", "/cap/red.xml"]
    async with runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(AlertMessage)) == 1
        refusal = await session.scalar(select(AlertRefusal))
        kept = await session.get(AlertSource, source.id)
    assert refusal is not None and refusal.origin.endswith("/cap/bad.xml") and "CAP 1.2" in refusal.reason
    assert kept is not None and kept.etag == '"v1"' and kept.last_error is None


async def test_after_a_restart_the_feed_fetches_only_its_new_entries(runtime: Runtime, feed: tuple[Feed, str]) -> None:
    served, url = feed
    await coded_county(runtime)
    service = runtime.alerts.service
    service.use_broadcaster(RecordingBroadcaster())
    source, _ = await service.create_source(SYSTEM, name="省预警中心订阅", kind="pull", url=url, poll_interval_s=0)
    poller = FeedPoller(service, runtime.clock)
    await poller.open()
    try:
        await poller.poll_due()
    finally:
        await poller.close()
    # The service restarts (a new runtime on the same database: nothing kept in memory survives); meanwhile the
    # feed changed (a new ETag) and lists a new warning beside the two it listed before.
    served.messages["gale.xml"] = cap_bytes("cn-orange-gale.xml", now=runtime.clock.now())
    served.version = '"v2"'
    restarted = build_runtime(runtime.settings)
    try:
        again = restarted.alerts.service
        again.use_broadcaster(recorder := RecordingBroadcaster())
        poller = FeedPoller(again, restarted.clock)
        await poller.open()
        try:
            await poller.poll_due()
        finally:
            await poller.close()
    finally:
        await restarted.engine.dispose()
    fetched = sorted(path for path, _ in served.requests if path.startswith("/cap/"))
    assert fetched == ["/cap/bad.xml", "/cap/gale.xml", "/cap/red.xml"]  # each entry once, across the restart
    assert [aired.title for aired in recorder.aired] == ["请注意，以下是示例县气象局发布的大风橙色预警"]
    async with runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(AlertMessage)) == 2
        # The broken entry is not fetched again, so its refusal is not recorded twice.
        assert await session.scalar(select(func.count()).select_from(AlertRefusal)) == 1
        kept = await session.get(AlertSource, source.id)
    assert kept is not None and kept.etag == '"v2"'


async def test_a_failing_feed_backs_off_and_shows_in_healthz(runtime: Runtime, feed: tuple[Feed, str]) -> None:
    served, url = feed
    served.failing = True
    service = runtime.alerts.service
    source, _ = await service.create_source(SYSTEM, name="省预警中心订阅", kind="pull", url=url, poll_interval_s=60)
    poller = FeedPoller(service, runtime.clock)
    await poller.open()
    try:
        await poller.poll_due()
    finally:
        await poller.close()
    assert poller.wait_s(source.id) == 120
    health = await service.health()
    assert health["status"] == "degraded" and "503" in health["detail"]


async def test_a_drop_folder_is_emptied_into_processed_and_refused(runtime: Runtime, tmp_path: Path) -> None:
    await coded_county(runtime)
    service = runtime.alerts.service
    service.use_broadcaster(recorder := RecordingBroadcaster())
    folder = tmp_path / "usb"
    folder.mkdir()
    (folder / "red.xml").write_bytes(cap_bytes("cn-red-rainstorm.xml", now=runtime.clock.now()))
    (folder / "xxe.xml").write_bytes(cap_bytes("cn-dtd-external-entity.xml"))
    (folder / "readme.txt").write_text("不是预警")
    await service.create_source(SYSTEM, name="U盘", kind="folder", folder=str(folder))
    assert await FolderWatcher(service).scan() == 2
    assert sorted(p.name for p in (folder / "processed").iterdir()) == ["red.xml"]
    assert sorted(p.name for p in (folder / "refused").iterdir()) == ["xxe.xml"]
    assert (folder / "readme.txt").exists() and len(recorder.aired) == 1
    async with runtime.sessions() as session:
        refusal = await session.scalar(select(AlertRefusal))
    assert refusal is not None and refusal.code == "cap.dtd" and refusal.origin.endswith("xxe.xml")
    assert await FolderWatcher(service).scan() == 0


async def test_a_source_silent_longer_than_its_setting_is_down_in_healthz(runtime: Runtime) -> None:
    service = runtime.alerts.service
    await service.create_source(SYSTEM, name="市气象局推送", kind="push", silent_after_s=0)
    health = await service.health()
    assert health["status"] == "down" and "silent since" in health["detail"]
