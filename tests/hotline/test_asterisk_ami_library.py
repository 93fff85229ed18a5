"""Why the hotline does not use the ``asterisk-ami`` library: its failures, reproduced.

The plan was to use asterisk-ami, wrapped into asyncio, unless a test proved it could not be made
reliable. These tests are that proof (docs/decisions/0001-our-own-ami-client.md has the decision and
the figures). Each one drives asterisk-ami 0.1.7 the way its own documentation asks — AutoReconnect
wrapping the client *before* login — against the replaying fake, and shows a failure our own client
(``hotline.ami``) does not have; test_ami_link.py shows ours surviving the same conditions.

If a new asterisk-ami release fixes these, the tests fail: time to look again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asterisk.ami as ami
import pytest

from tests.support.fake_ami import FakeAmi

# Evidence for a decision taken, not a check of our code: run it with ``-m evidence``.
pytestmark = [pytest.mark.evidence, pytest.mark.timeout(90)]


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmi]:
    server = FakeAmi()
    await server.start()
    yield server
    await server.stop()


def logged_in_client(port: int, listener: Any = None) -> Any:
    client = ami.AMIClient(address="127.0.0.1", port=port)
    if listener is not None:
        client.add_event_listener(listener)
    # AutoReconnect must wrap the client before login() (it replaces login).
    ami.AutoReconnect(client)
    response = client.login(username="cunxiang", secret="secret").response
    assert response is not None and response.status == "Success"
    return client


def ping(client: Any) -> Any:
    return client.send_action(ami.SimpleAction("Ping")).response


async def test_asterisk_ami_loses_its_listener_for_good_when_asterisk_is_silent_for_longer_than_3_s(
    fake: FakeAmi,
) -> None:
    client = await asyncio.to_thread(logged_in_client, fake.port)
    try:
        assert (await asyncio.to_thread(ping, client)).status == "Success"
        # A busy or briefly stopped Asterisk: no answer to anything for a few seconds.
        fake.answer_pings = False
        await asyncio.sleep(4.5)
        fake.answer_pings = True
        # Asterisk answers again, but the library's listener thread died on its 3 s socket timeout and
        # AutoReconnect keeps pinging over the same dead session: it never reconnects.
        deadline = time.monotonic() + 10
        # Watching ten seconds for a reconnection that must not come: polling is the point.
        while time.monotonic() < deadline and fake.connections == 1:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        assert fake.connections == 1
        assert not client._thread.is_alive()
        assert await asyncio.to_thread(ping, client) is None
    finally:
        await asyncio.to_thread(client.logoff)
        await asyncio.to_thread(client.disconnect)


async def test_asterisk_ami_stops_listening_when_one_event_callback_raises(fake: FakeAmi) -> None:
    def broken(event: Any, source: Any) -> None:
        raise RuntimeError("a bug in one handler")

    client = await asyncio.to_thread(logged_in_client, fake.port, broken)
    try:
        await fake.send(fake.recorded_events())
        await asyncio.sleep(0.5)
        assert not client._thread.is_alive()
        assert await asyncio.to_thread(ping, client) is None
    finally:
        await asyncio.to_thread(client.logoff)
        await asyncio.to_thread(client.disconnect)
