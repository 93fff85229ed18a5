"""The AMI link against a replaying fake (text recorded from the real sandbox): bad input never breaks it.

Everything a real Asterisk does is tested against the real one (tests/hotline/asterisk/); the fake is for
what it will not do on demand: refuse a login, send garbage or half a message, go silent, drop mid-action.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from common.clock import SystemClock
from common.health import Status
from hotline.ami import AmiActionFailed, AmiConfig, AmiConnectionLost, AmiLink, AmiNotConnected, AmiTimeout, Message
from tests.support.fake_ami import FakeAmi

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmi]:
    server = FakeAmi()
    await server.start()
    yield server
    await server.stop()


def link_to(fake: FakeAmi, **overrides: float) -> AmiLink:
    values: dict[str, float] = {
        "connect_timeout_s": 2.0,
        "login_timeout_s": 2.0,
        "action_timeout_s": 2.0,
        "ping_interval_s": 0.3,
        "ping_timeout_s": 0.5,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.4,
        "event_list_timeout_s": 1.0,
        "boot_timeout_s": 2.0,
    }
    values.update(overrides)
    return AmiLink(AmiConfig("127.0.0.1", fake.port, "cunxiang", "secret", **values), clock=SystemClock())


def status(link: AmiLink) -> Status:
    """The link's status now. A call, not an attribute: mypy would keep an attribute's narrowing across the
    awaits that change it."""
    return link.health.status


async def until(condition: object, timeout_s: float = 10.0) -> None:
    assert callable(condition)
    async with asyncio.timeout(timeout_s):
        # Any condition on the link or the fake server, most of which nothing signals: polled.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_the_link_logs_in_waits_for_fully_booted_and_reports_ok(fake: FakeAmi) -> None:
    link = link_to(fake)
    await link.start()
    try:
        await link.wait_connected(5)
        assert status(link) == "ok"
        response = await link.action("Ping")
        assert response["Ping"] == "Pong"
        assert await link.live_channels() == []
    finally:
        await link.stop()
    assert status(link) == "standby"


async def test_a_refused_login_is_reported_and_retried_without_crashing_the_link(fake: FakeAmi) -> None:
    fake.refuse_login = True
    link = link_to(fake, reconnect_max_s=0.2)
    await link.start()
    try:
        await until(lambda: fake.logins >= 2)
        assert status(link) == "down" and link.health.detail == "login refused"
        assert "Authentication failed" in (link.health.last_error or "")
        with pytest.raises(AmiNotConnected):
            await link.action("Ping")
        fake.refuse_login = False
        await link.wait_connected(5)
        assert status(link) == "ok"
    finally:
        await link.stop()


async def test_a_failed_response_is_an_exception_never_a_flag(fake: FakeAmi) -> None:
    link = link_to(fake)
    await link.start()
    try:
        await link.wait_connected(5)
        with pytest.raises(AmiActionFailed) as failure:
            await link.action("Command", Command="core show version")
        assert failure.value.response["Message"] == "Permission denied"
    finally:
        await link.stop()


async def test_garbage_and_a_message_cut_in_half_leave_the_link_working(fake: FakeAmi) -> None:
    link = link_to(fake)
    seen: list[Message] = []
    link.add_listener(seen.append)
    await link.start()
    try:
        await link.wait_connected(5)
        await fake.send(b"\x00\xffgarbage without a key\r\nmore\r\n\r\nEvent: UserEvent\r\nUserEvent: CxSt")
        # The rest of that message never comes: the peer drops the connection half way through it.
        await asyncio.sleep(0.1)
        fake.drop()
        await until(lambda: fake.connections >= 2 and link.connected)
        await fake.send(fake.recorded_events())
        await until(lambda: any(event.get("Event") == "Hangup" for event in seen))
        assert all(event.get("UserEvent") != "CxSt" for event in seen)
        assert (await link.action("Ping"))["Ping"] == "Pong"
    finally:
        await link.stop()


async def test_a_chinese_caller_name_dribbled_one_byte_at_a_time_arrives_intact(fake: FakeAmi) -> None:
    link = link_to(fake)
    seen: list[Message] = []
    link.add_listener(seen.append)
    await link.start()
    try:
        await link.wait_connected(5)
        event = "Event: UserEvent\r\nUserEvent: CxStage\r\nCallerIDName: 王大娘\r\nStage: 举报违纪\r\n\r\n".encode()
        await fake.send(event, dribble=True)
        await until(lambda: any(item.get("UserEvent") == "CxStage" for item in seen))
        (stage,) = [item for item in seen if item.get("UserEvent") == "CxStage"]
        assert stage["CallerIDName"] == "王大娘" and stage["Stage"] == "举报违纪"
    finally:
        await link.stop()


async def test_an_originate_in_flight_when_the_link_drops_fails_and_is_never_sent_again(fake: FakeAmi) -> None:
    fake.answer_originate = False
    link = link_to(fake)
    await link.start()
    try:
        await link.wait_connected(5)
        placing = asyncio.ensure_future(
            link.originate(channel="Local/s@hotline", channel_id="once-only", context="villager", exten="s")
        )
        await until(lambda: fake.actions["Originate"] == 1)
        fake.drop()
        with pytest.raises(AmiConnectionLost):
            await placing
        await until(lambda: fake.connections >= 2 and link.connected)
        await asyncio.sleep(0.5)  # several ping periods on the new connection
        assert fake.actions["Originate"] == 1
    finally:
        await link.stop()


async def test_an_event_list_that_never_completes_times_out(fake: FakeAmi) -> None:
    fake.complete_lists = False
    link = link_to(fake)
    await link.start()
    try:
        await link.wait_connected(5)
        with pytest.raises(AmiTimeout):
            await link.live_channels()
        assert (await link.action("Ping"))["Ping"] == "Pong"
    finally:
        await link.stop()


async def test_a_listener_that_raises_does_not_stop_the_link(fake: FakeAmi) -> None:
    link = link_to(fake)
    seen: list[Message] = []

    def broken(event: Message) -> None:
        raise RuntimeError("a bug in one handler")

    link.add_listener(broken)
    link.add_listener(seen.append)
    await link.start()
    try:
        await link.wait_connected(5)
        await fake.send(fake.recorded_events())
        await until(lambda: any(event.get("Event") == "Hangup" for event in seen))
        assert link.connected and (await link.action("Ping"))["Ping"] == "Pong"
    finally:
        await link.stop()


async def test_a_silent_asterisk_is_found_by_the_ping_and_the_link_reconnects(fake: FakeAmi) -> None:
    link = link_to(fake)
    await link.start()
    try:
        await link.wait_connected(5)
        fake.answer_pings = False
        await until(lambda: fake.connections >= 2)
        fake.answer_pings = True
        await link.wait_connected(5)
        assert link.connections >= 2
    finally:
        await link.stop()


async def test_reconnecting_backs_off_while_asterisk_is_away(fake: FakeAmi) -> None:
    link = link_to(fake, reconnect_min_s=0.05, reconnect_max_s=0.4)
    await fake.stop()
    await link.start()
    waits: list[float] = []
    try:
        async with asyncio.timeout(10):
            while len(waits) < 5:
                await asyncio.sleep(0.01)
                wait = link.health.extra.get("retry_in_s")
                if isinstance(wait, float) and (not waits or wait != waits[-1]):
                    waits.append(wait)
        assert status(link) == "down"
        # Doubling (with ±20 % jitter) up to the ceiling.
        assert waits[0] < 0.1 and max(waits) <= 0.4 * 1.2 and waits[-1] > waits[0] * 2
    finally:
        await link.stop()


class SlowBootingAmi(FakeAmi):
    """Accepts the login but says FullyBooted only when the test lets it (an Asterisk still loading modules)."""

    booted = False

    def fully_booted(self) -> bytes:
        return next(block for block in self._session if block.startswith(b"Event: FullyBooted"))

    def _answer(self, action: str, action_id: bytes) -> bytes:
        answer = super()._answer(action, action_id)
        if action == "Login" and not self.booted:
            answer = answer.replace(self.fully_booted(), b"")
        return answer


async def test_the_link_is_not_ready_until_asterisk_says_it_is_fully_booted() -> None:
    fake = SlowBootingAmi()
    await fake.start()
    link = link_to(fake, boot_timeout_s=5.0)
    await link.start()
    try:
        await until(lambda: fake.logins >= 1)
        await asyncio.sleep(0.5)
        assert not link.connected and status(link) != "ok"
        with pytest.raises(AmiNotConnected):
            await link.action("Ping")
        fake.booted = True
        await fake.send(fake.fully_booted())
        await link.wait_connected(5)
        assert status(link) == "ok" and fake.logins == 1
    finally:
        await link.stop()
        await fake.stop()


async def test_an_asterisk_that_never_finishes_booting_is_reported_and_tried_again() -> None:
    fake = SlowBootingAmi()
    await fake.start()
    link = link_to(fake, boot_timeout_s=0.3)
    await link.start()
    try:
        await until(lambda: fake.logins >= 2)
        assert not link.connected and status(link) == "down"
        assert "FullyBooted" in f"{link.health.detail} {link.health.last_error}"
    finally:
        await link.stop()
        await fake.stop()
