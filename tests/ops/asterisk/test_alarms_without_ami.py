"""Alarms that ring when the AMI link, or the whole worker, is what is down: calls by Asterisk call file.

The alarm calls normally go out through the worker's AMI link (``test_alarm_calls.py``). Here the link is cut
under the service (a proxy the test cuts, as in ``tests/hotline/asterisk/test_outages.py``), or the worker's
services are stopped altogether (no heartbeat, no link, no FastAGI): the calls go into Asterisk's outgoing spool
as call files and the answer comes back as a file the dialplan writes. The duty officers are the sandbox's
stand-ins (``Local/noanswer@cx-test-operator`` never answers; ``Local/s@villager`` presses 1 when asked), driven
on the test's own AMI link straight to Asterisk — the service's link is the one that is down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from sqlalchemy import select

from common.lifecycle import ServiceGroup
from server import Runtime
from settings import BroadcastSettings, OpsSettings, Settings
from storage.models import AlarmCall, AuditEntry, OpsAlarm
from tests.conftest import UserFactory
from tests.ops.asterisk.test_alarm_calls import (
    NOBODY_ANSWERS,
    PRESSES_ONE,
    PressesOne,
    add_officer,
    admin_client,
    eventually,
)
from tests.support.asterisk import Hotline, SandboxInstance, Villagers
from tests.support.http import ApiClient
from tests.support.tcp_proxy import CuttableProxy


@pytest.fixture
def ops_settings() -> OpsSettings:
    # A second for a state to last (the link down, the worker silent), short rings, one round: the route the
    # call takes is the point, not the waiting. worker_down_after_s is five of the tests' heartbeats (below).
    return OpsSettings(
        alarm_interval_s=0.3,
        alarm_after_s=1,
        alarm_ring_s=4,
        alarm_round_interval_s=0,
        alarm_rounds=1,
        worker_down_after_s=1.5,
    )


@pytest.fixture
async def ami_proxy(asterisk_instance: SandboxInstance) -> AsyncIterator[CuttableProxy]:
    proxy = CuttableProxy("127.0.0.1", asterisk_instance.ami_port)
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture
def settings(asterisk_settings: Settings, ops_settings: OpsSettings, ami_proxy: CuttableProxy) -> Settings:
    """The service reaches AMI through a proxy the test can cut; the worker beats every 0.3 s."""
    ami = asterisk_settings.ami.model_copy(update={"port": ami_proxy.port})
    broadcast = BroadcastSettings(pending_poll_s=0.2, lower_priority_wait_s=60, heartbeat_s=0.3)
    return asterisk_settings.model_copy(update={"ops": ops_settings, "ami": ami, "broadcast": broadcast})


@pytest.fixture
def presses_one(villagers: Villagers) -> Iterator[PressesOne]:
    presser = PressesOne(villagers.link)
    yield presser
    presser.close()


async def settled(runtime: Runtime, kind: str) -> tuple[OpsAlarm, list[AlarmCall]] | None:
    async with runtime.sessions() as session:
        alarm = await session.scalar(select(OpsAlarm).where(OpsAlarm.kind == kind))
        if alarm is None or alarm.state == "open":
            return None
        calls = list(
            (
                await session.scalars(select(AlarmCall).where(AlarmCall.alarm_id == alarm.id).order_by(AlarmCall.id))
            ).all()
        )
    if any(call.state in ("placing", "ringing") for call in calls):
        return None
    return alarm, calls


def spool_files(instance: SandboxInstance) -> list[str]:
    spool = instance.directory / "spool"
    return sorted(
        path.name
        for folder in ("outgoing", "outgoing_done", "cunxiang-outgoing")
        if (spool / folder).is_dir()
        for path in (spool / folder).iterdir()
    ) + sorted(path.name for path in (spool / "cunxiang").glob("cx_alarm_*"))


async def no_files_left(instance: SandboxInstance) -> bool:
    return spool_files(instance) == []


async def test_with_the_ami_link_cut_the_alarm_about_it_rings_by_call_file_and_pressing_1_acknowledges_it(
    hotline: Hotline,
    runtime: Runtime,
    asterisk_instance: SandboxInstance,
    ami_proxy: CuttableProxy,
    new_client: Callable[[], Awaitable[ApiClient]],
    make_user: UserFactory,
    presses_one: PressesOne,
) -> None:
    admin = await admin_client(new_client, make_user)
    await add_officer(admin, "张一", NOBODY_ANSWERS)
    await add_officer(admin, "李二", PRESSES_ONE)

    ami_proxy.cut()  # the service's link, and only it: Asterisk itself is up

    alarm, calls = await eventually(lambda: settled(runtime, "ami_down"), what="the ami_down alarm acknowledged")
    assert alarm.state == "acknowledged" and alarm.acknowledged_by == f"李二（{PRESSES_ONE}）"
    assert [(call.officer_name, call.state, call.via) for call in calls] == [
        ("张一", "no_answer", "spool"),  # the call file expired unanswered: the next officer is called
        ("李二", "acknowledged", "spool"),
    ]
    assert presses_one.pressed == 1
    async with runtime.sessions() as session:
        assert (await session.scalars(select(OpsAlarm.kind))).all() == ["ami_down"]  # the worker was fine
    assert not hotline.telephony.link.connected  # acknowledged without the link ever coming back
    # One file per call, and none left behind once settled (the last is archived when its thanks are said).
    await eventually(lambda: no_files_left(asterisk_instance), 30, "the spool emptied")
    async with runtime.sessions() as session:
        details = (await session.scalars(select(AuditEntry.detail).where(AuditEntry.action == "ops.alarm.call"))).all()
    assert sorted(str(detail["via"]) for detail in details) == ["spool", "spool"]


async def test_with_the_worker_gone_another_process_raises_worker_down_calls_and_the_call_is_acknowledged(
    hotline: Hotline,
    runtime: Runtime,
    asterisk_instance: SandboxInstance,
    new_client: Callable[[], Awaitable[ApiClient]],
    make_user: UserFactory,
    presses_one: PressesOne,
) -> None:
    admin = await admin_client(new_client, make_user)
    await add_officer(admin, "李二", PRESSES_ONE)

    # The worker is gone: its services stop (no heartbeat, no AMI link, no FastAGI, no alarm rounds); what is
    # left is this process's web side, as a standby would be.
    await ServiceGroup(runtime.worker_services).stop()
    assert not hotline.telephony.link.connected and runtime.ops.alarms.health.status == "standby"

    alarm, calls = await eventually(lambda: settled(runtime, "worker_down"), what="the worker_down alarm answered")
    assert alarm.state == "acknowledged" and alarm.acknowledged_by == f"李二（{PRESSES_ONE}）"
    assert [(call.officer_name, call.state, call.via) for call in calls] == [("李二", "acknowledged", "spool")]
    assert presses_one.pressed == 1
    await eventually(lambda: no_files_left(asterisk_instance), 30, "the spool emptied")
    # The page says what it was.
    page = await (await admin.get("/admin/alarms")).text()
    assert "后台服务停止" in page and "已确认（李二" in page
