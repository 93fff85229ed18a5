"""Alarms by phone through the real Asterisk: the duty list is called in order until somebody presses 1.

The duty officers' phones are the sandbox's stand-ins: one that rings and is never answered
(``Local/noanswer@cx-test-operator``), one that answers, speaks and hangs up without pressing anything
(``Local/answer@cx-test-phone``), and the simulated villager (``Local/s@villager``) who presses 1 when the
alarm asks for it (:class:`PressesOne`, on the dialplan's event — never after a fixed wait). The trouble is
real: the disk watch's warning level is raised above what any disk has free.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
from sqlalchemy import select

from hotline.ami import AmiError, AmiLink, Message
from ops.disk import DiskLimits
from server import Runtime
from settings import OpsSettings
from storage.models import AlarmCall, AuditEntry, OpsAlarm
from tests.conftest import UserFactory
from tests.ops.metrics_text import parse, value
from tests.support.asterisk import Hotline
from tests.support.http import ApiClient

T = TypeVar("T")

NOBODY_ANSWERS = "Local/noanswer@cx-test-operator"
ANSWERS_WITHOUT_PRESSING = "Local/answer@cx-test-phone"
PRESSES_ONE = "Local/s@villager"


@pytest.fixture
def ops_settings() -> OpsSettings:
    # Short rings and no pause between rounds: the escalation is the point, not the waiting (each unanswered
    # ring is ops.alarm_ring_s of the test's time).
    return OpsSettings(alarm_interval_s=0.3, alarm_after_s=0, alarm_ring_s=4, alarm_round_interval_s=0, alarm_rounds=2)


class PressesOne:
    """The simulated villager as a duty officer: presses 1 once the alarm says it is listening."""

    def __init__(self, link: AmiLink) -> None:
        self._link = link
        self._channels: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.pressed = 0
        link.add_listener(self._event)

    def close(self) -> None:
        self._link.remove_listener(self._event)

    def _event(self, event: Message) -> None:
        linkedid = event.get("Linkedid", "")
        if event.get("UserEvent") == "CxVillager" and event.get("Stage") == "ready":
            self._channels[linkedid] = event.get("Channel", "")
        elif event.get("UserEvent") == "CxStage" and event.get("Kind") == "alarm" and event.get("Stage") == "ask":
            channel = self._channels.get(linkedid)
            if channel:
                task = asyncio.get_running_loop().create_task(self._press(channel))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _press(self, channel: str) -> None:
        try:
            await self._link.action("Setvar", Channel=channel, Variable="CX_KEYS", Value="1")
            await self._link.action("Redirect", Channel=channel, Context="villager-act", Exten="keys", Priority=1)
            self.pressed += 1
        except AmiError:
            pass  # the call ended meanwhile


@pytest.fixture
def presses_one(hotline: Hotline) -> Iterator[PressesOne]:
    presser = PressesOne(hotline.telephony.link)
    yield presser
    presser.close()


async def eventually(check: Callable[[], Awaitable[T | None]], timeout_s: float = 90.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s:g} s: {what}")
        await asyncio.sleep(0.2)


async def admin_client(new_client: Callable[[], Awaitable[ApiClient]], make_user: UserFactory) -> ApiClient:
    return await (await new_client()).login(*await make_user("admin", county_wide=True))


async def add_officer(admin: ApiClient, name: str, phone: str) -> None:
    response = await admin.post(
        "/admin/alarms/officers",
        data={"csrf_token": admin.csrf, "name": name, "phone": phone, "on_from": "00:00", "on_until": "00:00"},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()


async def fill_the_disk(runtime: Runtime) -> None:
    """The warning level above what any disk has free: the disk watch's next measurement says so."""
    disk = runtime.ops.disk
    disk.limits = dataclasses.replace(disk.limits, warn_free_percent=100.0, warn_free_bytes=1 << 62)
    assert isinstance(disk.limits, DiskLimits)
    await disk.measure()


async def the_alarm(runtime: Runtime, *, ended: bool) -> tuple[OpsAlarm, list[AlarmCall]] | None:
    async with runtime.sessions() as session:
        alarm = await session.scalar(select(OpsAlarm).where(OpsAlarm.kind == "disk"))
        if alarm is None or (ended and alarm.state == "open"):
            return None
        calls = list((await session.scalars(select(AlarmCall).order_by(AlarmCall.id))).all())
    if ended and any(call.state in ("placing", "ringing") for call in calls):
        return None
    return alarm, calls


async def test_nobody_answers_the_first_phone_so_the_second_is_called_and_pressing_1_stops_the_alarm(
    hotline: Hotline,
    runtime: Runtime,
    new_client: Callable[[], Awaitable[ApiClient]],
    make_user: UserFactory,
    presses_one: PressesOne,
) -> None:
    admin = await admin_client(new_client, make_user)
    await add_officer(admin, "张一", NOBODY_ANSWERS)
    await add_officer(admin, "李二", PRESSES_ONE)
    await fill_the_disk(runtime)

    alarm, calls = await eventually(lambda: the_alarm(runtime, ended=True), what="the alarm acknowledged")
    assert alarm.state == "acknowledged" and alarm.acknowledged_by == f"李二（{PRESSES_ONE}）"
    assert [(call.officer_name, call.state, call.round) for call in calls] == [
        ("张一", "no_answer", 1),
        ("李二", "acknowledged", 1),
    ]
    assert presses_one.pressed == 1

    # It stays acknowledged while the disk stays full: further rounds raise nothing and call nobody.
    for _ in range(3):
        await runtime.ops.alarms.run_once()
    async with runtime.sessions() as session:
        assert len((await session.scalars(select(OpsAlarm))).all()) == 1
        assert len((await session.scalars(select(AlarmCall))).all()) == 2
        actions = (await session.scalars(select(AuditEntry.action).where(AuditEntry.object_type == "alarm"))).all()
    assert sorted(actions) == ["ops.alarm.acknowledged", "ops.alarm.call", "ops.alarm.call", "ops.alarm.raised"]

    page = await (await admin.get("/admin/alarms")).text()
    assert "磁盘空间不足" in page and "已确认（李二" in page
    assert "第1轮 张一" in page and "无人接听" in page and "已按1确认" in page
    # Prometheus sees it too.
    scraped = await (await new_client()).get("/metrics")
    samples = parse(await scraped.text())
    assert value(samples, "cunxiang_alarms", kind="disk", state="acknowledged") == 1
    assert value(samples, "cunxiang_alarm_calls_total", state="acknowledged") == 1
    assert value(samples, "cunxiang_alarm_calls_total", state="no_answer") == 1


@pytest.mark.ivr(survey_timeout_s=2.0)
async def test_an_officer_who_answers_without_pressing_1_is_called_again_and_after_the_last_round_it_is_unanswered(
    hotline: Hotline, runtime: Runtime, new_client: Callable[[], Awaitable[ApiClient]], make_user: UserFactory
) -> None:
    admin = await admin_client(new_client, make_user)
    await add_officer(admin, "王三", ANSWERS_WITHOUT_PRESSING)
    await fill_the_disk(runtime)

    alarm, calls = await eventually(lambda: the_alarm(runtime, ended=True), what="the alarm given up")
    assert alarm.state == "unanswered" and alarm.acknowledged_by is None
    # ops.alarm_rounds = 2: the one officer twice, each time heard and not acknowledged; never a third call.
    assert [(call.officer_name, call.state, call.round) for call in calls] == [
        ("王三", "heard", 1),
        ("王三", "heard", 2),
    ]
    assert len({call.channel_id for call in calls}) == 2
    home = await (await admin.get("/admin/alarms")).text()
    assert "无人确认" in home
