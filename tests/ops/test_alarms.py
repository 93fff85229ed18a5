"""Alarms without a phone: when one is raised, that a flapping state raises one, the duty list and its page.

The calls themselves (press 1, escalation to the next officer) are tested on the real Asterisk in
``tests/ops/asterisk/test_alarm_calls.py``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.clock import ManualClock
from common.periodic import every
from hotline.call_files import SpoolOutcome
from ops.alarms import AlarmConfig, AlarmService, Trouble, WorkerWatch, on_duty
from server import Runtime
from storage.models import AlarmCall, AuditEntry, DutyOfficer, OpsAlarm, WorkerHeartbeat
from tests.conftest import ClientFactory, UserFactory
from tests.support.http import ApiClient

START = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai


class Switch:
    """A trouble the test turns on and off (a disk filling and emptying, a link flapping)."""

    def __init__(self, trouble: Trouble) -> None:
        self.trouble = trouble
        self.on = False

    async def __call__(self) -> list[Trouble]:
        return [self.trouble] if self.on else []


def service(runtime: Runtime, clock: ManualClock, *checks: Switch, **config: float) -> AlarmService:
    return AlarmService(
        runtime.sessions,
        clock,
        AlarmConfig(**config),  # type: ignore[arg-type]
        timezone=ZoneInfo("Asia/Shanghai"),
        checks=list(checks),
        line=None,
        speak=None,
    )


async def alarms(runtime: Runtime) -> list[OpsAlarm]:
    async with runtime.sessions() as session:
        return list((await session.scalars(select(OpsAlarm).order_by(OpsAlarm.id))).all())


async def audited(runtime: Runtime, prefix: str) -> list[str]:
    async with runtime.sessions() as session:
        rows = await session.scalars(select(AuditEntry.action).where(AuditEntry.action.startswith(prefix)))
        return list(rows.all())


async def test_a_flapping_state_raises_one_alarm_within_the_quiet_time_and_a_short_blip_none(runtime: Runtime) -> None:
    clock = ManualClock(START)
    disk = Switch(Trouble("disk", "disk", "服务器磁盘空间快满了。"))
    alarms_service = service(runtime, clock, disk, after_s=30, quiet_s=600)

    async def at(seconds: float, on: bool) -> list[tuple[str, str]]:
        clock.advance(seconds)
        disk.on = on
        await alarms_service.run_once()
        return [(alarm.kind, alarm.state) for alarm in await alarms(runtime)]

    assert await at(0, True) == []  # not yet lasted alarm_after_s
    assert await at(20, False) == []  # a blip: gone before it counted
    assert await at(10, True) == []
    assert await at(30, True) == [("disk", "open")]
    assert await at(10, False) == [("disk", "cleared")]  # went away before anybody acknowledged it
    # It flaps: on again for long enough, off, on … — within the quiet time no second alarm, no second call.
    for _ in range(5):
        assert await at(40, True) == [("disk", "cleared")]
        assert await at(10, False) == [("disk", "cleared")]
    # After the quiet time the same trouble is worth a new alarm.
    await at(400, True)
    assert await at(40, True) == [("disk", "cleared"), ("disk", "open")]
    assert sorted(await audited(runtime, "ops.alarm.")) == [
        "ops.alarm.cleared",
        "ops.alarm.raised",
        "ops.alarm.raised",
    ]


async def test_a_failed_emergency_stays_open_until_acknowledged_and_a_failing_check_does_not_stop_the_others(
    runtime: Runtime,
) -> None:
    clock = ManualClock(START)
    failed = Switch(Trouble("emergency_failed", "17", "紧急广播“山洪”有3个喇叭没有播出，请尽快检查。"))
    failed.on = True

    async def broken() -> list[Trouble]:
        raise RuntimeError("a check with a bug")

    alarms_service = service(runtime, clock, failed, after_s=300)
    alarms_service.add_check(broken)
    await alarms_service.run_once()
    failed.on = False  # an event, not a state: it does not clear by itself
    clock.advance(60)
    await alarms_service.run_once()
    (alarm,) = await alarms(runtime)
    assert (alarm.kind, alarm.state, alarm.calls_made) == ("emergency_failed", "open", 0)  # no line: nobody phoned
    assert await alarms_service.open_count() == 1


def test_who_is_on_duty_by_time_of_day_including_a_night_shift() -> None:
    def officer(start: str, end: str) -> DutyOfficer:
        return DutyOfficer(on_from=time.fromisoformat(start), on_until=time.fromisoformat(end))

    day, night, always = officer("08:00", "18:00"), officer("18:00", "08:00"), officer("00:00", "00:00")
    assert [on_duty(each, time(9, 0)) for each in (day, night, always)] == [True, False, True]
    assert [on_duty(each, time(23, 0)) for each in (day, night, always)] == [False, True, True]
    assert [on_duty(each, time(3, 0)) for each in (day, night, always)] == [False, True, True]
    assert [on_duty(each, time(18, 0)) for each in (day, night, always)] == [False, True, True]


async def test_a_round_that_fails_is_logged_and_the_next_one_runs(caplog: pytest.LogCaptureFixture) -> None:
    rounds = 0
    done = asyncio.Event()

    async def round_() -> None:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            raise OSError("the database restarted")
        if rounds == 3:
            done.set()

    task = asyncio.create_task(every(0.01, round_, "test-watch"))
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        task.cancel()
    assert rounds >= 3
    assert "test-watch: a round failed" in caplog.text


def _form(client: ApiClient, **fields: str) -> dict[str, str]:
    return {"csrf_token": client.csrf, **fields}


async def test_admins_keep_the_duty_list_on_the_page_a_refusal_keeps_what_was_typed_and_others_are_refused(
    runtime: Runtime, admin: ApiClient, new_client: ClientFactory, make_user: UserFactory
) -> None:
    page = await admin.get("/admin/alarms")
    assert page.status == 200
    text = await page.text()
    assert "值班名单是空的" in text and "还没有告警" in text

    added = await admin.post(
        "/admin/alarms/officers",
        data=_form(admin, name="张值班", phone="13900001111", on_from="08:00", on_until="18:00"),
        allow_redirects=False,
    )
    assert added.status == 303
    refused = await admin.post(
        "/admin/alarms/officers", data=_form(admin, name="李夜班", phone="打我电话", on_from="18:00", on_until="08:00")
    )
    assert refused.status == 400
    text = await refused.text()
    assert "没有保存" in text and "电话" in text
    assert 'value="李夜班"' in text and 'value="打我电话"' in text and 'value="18:00"' in text
    listed = await (await admin.get("/admin/alarms")).text()
    assert "张值班" in listed and "13900001111" in listed and "08:00–18:00" in listed and "李夜班" not in listed

    clerk = await (await new_client()).login(*await make_user("staff", county_wide=True))
    assert (await clerk.get("/admin/alarms")).status == 403
    response = await clerk.post(
        "/admin/alarms/officers", data=_form(clerk, name="冒充", phone="13900002222", on_from="00:00", on_until="00:00")
    )
    assert response.status == 403

    (officer,) = await runtime.ops.alarms.officers()
    removed = await admin.post(f"/admin/alarms/officers/{officer.id}/delete", data=_form(admin), allow_redirects=False)
    assert removed.status == 303
    assert await runtime.ops.alarms.officers() == []
    assert sorted(await audited(runtime, "ops.duty.")) == ["ops.duty.added", "ops.duty.removed"]


async def test_an_open_alarm_is_in_the_admins_todo_and_acknowledged_on_the_page(
    runtime: Runtime, admin: ApiClient, tmp_path: Path
) -> None:
    clock = ManualClock(datetime.now(UTC) - timedelta(seconds=5))
    failed = Switch(Trouble("emergency_failed", "9", "紧急广播“停水”有1个喇叭没有播出，请尽快检查。"))
    failed.on = True
    await service(runtime, clock, failed).run_once()
    home = await (await admin.get("/")).text()
    assert "告警未确认" in home
    page = await (await admin.get("/admin/alarms")).text()
    assert "紧急广播失败" in page and "停水" in page and "呼叫中" in page
    (alarm,) = await alarms(runtime)
    response = await admin.post(f"/admin/alarms/{alarm.id}/acknowledge", data=_form(admin), allow_redirects=False)
    assert response.status == 303
    page = await (await admin.get("/admin/alarms")).text()
    assert re.search(r"已确认（[^）]*admin", page)
    assert "告警未确认" not in await (await admin.get("/")).text()
    assert "ops.alarm.acknowledged" in await audited(runtime, "ops.alarm.")


async def test_a_call_the_previous_worker_left_under_way_ends_unknown_is_never_placed_again_and_the_alarm_stays(
    runtime: Runtime,
) -> None:
    clock = ManualClock(START)
    async with runtime.sessions() as session:
        alarm = OpsAlarm(
            kind="disk",
            subject="disk",
            open_key="disk:disk",
            message="服务器磁盘空间快满了。",
            state="open",
            raised_at=START,
            round=1,
            next_position=1,
            next_call_at=None,
            calls_made=1,
        )
        session.add(alarm)
        await session.flush()
        session.add(
            AlarmCall(
                alarm_id=alarm.id,
                officer_name="张一",
                phone="13900001111",
                round=1,
                channel_id="al-left",
                state="ringing",
                placed_at=START,
            )
        )
        await session.commit()
    disk = Switch(Trouble("disk", "disk", "服务器磁盘空间快满了。"))
    disk.on = True  # still wrong, though the new worker has not yet seen it last alarm_after_s
    taking_over = service(runtime, clock, disk, after_s=300)
    await taking_over.start()
    await taking_over.run_once()
    await taking_over.stop()
    async with runtime.sessions() as session:
        (call,) = (await session.scalars(select(AlarmCall))).all()
        reloaded = await session.get(OpsAlarm, alarm.id)
    assert (call.state, call.detail) == ("unknown", "the worker stopped during the call")
    # The alarm goes on with the next officer on the list (position 1), never the cut call again.
    assert reloaded is not None and reloaded.state == "open" and reloaded.next_call_at == START
    assert reloaded.next_position == 1


class FakeSpool:
    """Asterisk's call-file spool as ops sees it (hotline.call_files.CallFiles), with outcomes the test sets."""

    def __init__(self) -> None:
        self.placed: list[str] = []
        self.outcomes: dict[str, SpoolOutcome] = {}
        self.still_queued: set[str] = set()
        self.forgotten: list[str] = []

    async def place(
        self, *, dial: str, call_id: str, context: str, ring_s: float, variables: Mapping[str, str]
    ) -> None:
        assert context == "cx-alarm-spool" and "CX_ALARM_ID" in variables
        self.placed.append(call_id)
        self.still_queued.add(call_id)

    async def outcome(self, call_id: str) -> SpoolOutcome:
        return self.outcomes.get(call_id, SpoolOutcome("pending"))

    async def withdraw(self, call_id: str) -> bool:
        if call_id in self.still_queued:
            self.still_queued.discard(call_id)
            return True
        return False

    async def leftovers(self) -> list[str]:
        return []

    async def forget(self, call_id: str) -> None:
        self.forgotten.append(call_id)


async def add_officers(runtime: Runtime, *names: str) -> None:
    async with runtime.sessions() as session:
        for position, name in enumerate(names, start=1):
            session.add(
                DutyOfficer(
                    name=name,
                    phone=f"1390000000{position}",
                    on_from=time(0, 0),
                    on_until=time(0, 0),
                    position=position,
                    active=True,
                    created_at=START,
                )
            )
        await session.commit()


async def calls_made(runtime: Runtime) -> list[tuple[str, str, str]]:
    async with runtime.sessions() as session:
        calls = (await session.scalars(select(AlarmCall).order_by(AlarmCall.id))).all()
    return [(call.officer_name, call.state, call.via) for call in calls]


async def beat(runtime: Runtime, at: datetime, *, stopped: bool = False) -> None:
    async with runtime.sessions.begin() as session:
        row = await session.get(WorkerHeartbeat, "dispatcher")
        if row is None:
            row = WorkerHeartbeat(name="dispatcher", alive_at=at)
            session.add(row)
        row.alive_at, row.stopped_at = at, at if stopped else None


async def test_a_silent_worker_is_raised_once_whichever_processes_watch_and_cleared_when_it_beats_again(
    runtime: Runtime,
) -> None:
    clock = ManualClock(START)
    spool = FakeSpool()
    await add_officers(runtime, "张一", "李二")

    def a_process() -> WorkerWatch:
        alarms_service = AlarmService(
            runtime.sessions,
            clock,
            AlarmConfig(after_s=300),
            timezone=ZoneInfo("Asia/Shanghai"),
            checks=[],
            line=None,
            speak=None,
            spool=spool,
        )
        return WorkerWatch(alarms_service, runtime.sessions, clock, heartbeat="dispatcher", after_s=60, interval_s=1)

    web, second_web = a_process(), a_process()
    await web.run_once()
    assert await alarms(runtime) == []  # no worker ever beat here: nothing to miss

    await beat(runtime, START)
    clock.advance(59)
    await web.run_once()
    assert await alarms(runtime) == []  # not silent long enough
    clock.advance(2)
    await asyncio.gather(web.run_once(), second_web.run_once())
    assert [(alarm.kind, alarm.state) for alarm in await alarms(runtime)] == [("worker_down", "open")]
    assert await audited(runtime, "ops.alarm.raised") == ["ops.alarm.raised"]
    # Called once (by call file: the link is the worker's), however many processes look.
    await asyncio.gather(web.run_once(), second_web.run_once())
    assert await calls_made(runtime) == [("张一", "placing", "spool")]
    assert len(spool.placed) == 1
    # A worker taking over meanwhile does not ring a second phone while that call file is under way.
    taking_over = service_with_spool(runtime, clock, spool)
    await taking_over.orphan_worker_calls("the worker stopped during the call")  # what its start does first
    await taking_over.place_due("spool")
    await web.run_once()
    assert await calls_made(runtime) == [("张一", "placing", "spool")] and len(spool.placed) == 1

    await beat(runtime, clock.now())  # a worker is back
    await asyncio.gather(web.run_once(), second_web.run_once())
    assert [(alarm.kind, alarm.state) for alarm in await alarms(runtime)] == [("worker_down", "cleared")]
    assert await audited(runtime, "ops.alarm.cleared") == ["ops.alarm.cleared"]


async def test_a_call_file_is_settled_from_what_asterisk_wrote_and_one_never_taken_is_withdrawn(
    runtime: Runtime,
) -> None:
    clock = ManualClock(START)
    spool = FakeSpool()
    await add_officers(runtime, "张一", "李二", "王三")
    disk = Switch(Trouble("disk", "disk", "服务器磁盘空间快满了。"))
    disk.on = True
    # No AMI link at all (line=None) and no wait for one: straight to call files.
    worker = service_with_spool(runtime, clock, spool, disk)
    await worker.run_once()
    assert await calls_made(runtime) == [("张一", "placing", "spool")]

    # Asterisk never took the file (it is down too): after the ring time and its grace it is withdrawn — known
    # not to ring later — and the next officer is called.
    clock.advance(40 + 31)
    await worker.run_once()
    assert await calls_made(runtime) == [("张一", "failed", "spool"), ("李二", "placing", "spool")]
    second = spool.placed[1]
    spool.outcomes[second] = SpoolOutcome("not_answered", "call file expired")
    clock.advance(1)
    await worker.run_once()
    third = spool.placed[2]
    spool.outcomes[third] = SpoolOutcome("answered")
    clock.advance(1)
    await worker.run_once()
    assert await calls_made(runtime) == [
        ("张一", "failed", "spool"),
        ("李二", "no_answer", "spool"),
        ("王三", "ringing", "spool"),
    ]
    spool.outcomes[third] = SpoolOutcome("acknowledged", "pressed 1")
    await asyncio.gather(worker.run_once(), worker.settle_spool_calls())  # settled once, whoever looks
    assert (await calls_made(runtime))[-1] == ("王三", "acknowledged", "spool")
    (alarm,) = await alarms(runtime)
    assert alarm.state == "acknowledged" and alarm.acknowledged_by == "王三（13900000003）"
    assert await audited(runtime, "ops.alarm.call") == ["ops.alarm.call"] * 3
    assert sorted(spool.forgotten) == sorted(spool.placed)


def service_with_spool(
    runtime: Runtime, clock: ManualClock, spool: FakeSpool, *checks: Switch, **config: float
) -> AlarmService:
    return AlarmService(
        runtime.sessions,
        clock,
        AlarmConfig(**{"after_s": 0, "ring_s": 40, **config}),  # type: ignore[arg-type]
        timezone=ZoneInfo("Asia/Shanghai"),
        checks=list(checks),
        line=None,
        speak=None,
        spool=spool,
    )


async def test_admins_change_an_officer_and_the_calling_order_audited_and_a_refused_change_keeps_what_was_typed(
    runtime: Runtime, admin: ApiClient, new_client: ClientFactory, make_user: UserFactory
) -> None:
    await add_officers(runtime, "张一", "李二", "王三")
    zhang, li, wang = await runtime.ops.alarms.officers()

    form = await (await admin.get(f"/admin/alarms/officers/{li.id}/edit")).text()
    assert 'value="李二"' in form and 'value="13900000002"' in form
    refused = await admin.post(
        f"/admin/alarms/officers/{li.id}/edit",
        data=_form(admin, name="李二改", phone="没号码", on_from="18:00", on_until="08:00"),
    )
    assert refused.status == 400
    text = await refused.text()
    assert "没有保存" in text and 'value="李二改"' in text and 'value="没号码"' in text and 'value="18:00"' in text
    assert (await runtime.ops.alarms.officer(li.id)).name == "李二"  # type: ignore[union-attr]
    saved = await admin.post(
        f"/admin/alarms/officers/{li.id}/edit",
        data=_form(admin, name="李二", phone="13900009999", on_from="18:00", on_until="08:00"),
        allow_redirects=False,
    )
    assert saved.status == 303
    listed = await (await admin.get("/admin/alarms")).text()
    assert "13900009999" in listed and "18:00–08:00" in listed and "已保存李二的值班信息" in listed

    moved = await admin.post(
        f"/admin/alarms/officers/{wang.id}/move", data=_form(admin, direction="up"), allow_redirects=False
    )
    assert moved.status == 303
    assert [officer.name for officer in await runtime.ops.alarms.officers()] == ["张一", "王三", "李二"]
    # Already first: refused, nothing moved; a direction that is neither is refused too.
    await admin.post(f"/admin/alarms/officers/{zhang.id}/move", data=_form(admin, direction="up"))
    await admin.post(f"/admin/alarms/officers/{zhang.id}/move", data=_form(admin, direction="sideways"))
    assert [officer.name for officer in await runtime.ops.alarms.officers()] == ["张一", "王三", "李二"]
    assert (await admin.post("/admin/alarms/officers/999/move", data=_form(admin, direction="up"))).status == 200

    clerk = await (await new_client()).login(*await make_user("staff", county_wide=True))
    assert (await clerk.get(f"/admin/alarms/officers/{li.id}/edit")).status == 403
    response = await clerk.post(
        f"/admin/alarms/officers/{li.id}/edit",
        data=_form(clerk, name="冒充", phone="13900002222", on_from="00:00", on_until="00:00"),
    )
    assert response.status == 403
    assert (await clerk.post(f"/admin/alarms/officers/{li.id}/move", data=_form(clerk, direction="up"))).status == 403

    async with runtime.sessions() as session:
        entries = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action.startswith("ops.duty.")).order_by(AuditEntry.id)
            )
        ).all()
    assert [(entry.action, entry.detail) for entry in entries] == [
        (
            "ops.duty.changed",
            {
                "before": {"name": "李二", "phone": "13900000002", "on_from": "00:00", "on_until": "00:00"},
                "after": {"name": "李二", "phone": "13900009999", "on_from": "18:00", "on_until": "08:00"},
            },
        ),
        ("ops.duty.moved", {"name": "王三", "direction": "up", "from": 3, "to": 2}),
    ]


async def test_a_process_looking_between_another_ones_claim_and_its_call_row_rings_nobody_else(
    runtime: Runtime,
) -> None:
    # Two processes watching a silent worker (a full run under load caught it: 张一 and 李二 both rang): one
    # claimed the alarm and was about to write its call row when the other's orphan sweep re-armed "an alarm
    # with no call in flight" and called the next officer. Here the second process looks in exactly that gap.
    clock = ManualClock(START)
    spool = FakeSpool()
    await add_officers(runtime, "张一", "李二")
    claimer, looker = service_with_spool(runtime, clock, spool), service_with_spool(runtime, clock, spool)
    await claimer.raise_now(Trouble("worker_down", "worker", "村响后台服务停止工作了。"))
    real_sessions = runtime.sessions
    gap_seen: list[bool] = []

    def sessions_with_a_look_after_the_claim() -> AsyncSession:
        session = real_sessions()
        commit = session.commit

        async def commit_then_let_the_other_look() -> None:
            await commit()
            if not gap_seen:
                gap_seen.append(True)
                await looker.orphan_worker_calls("the worker went silent during the call")
                await looker.place_due("spool")

        session.commit = commit_then_let_the_other_look  # type: ignore[method-assign]
        return session

    claimer._sessions = sessions_with_a_look_after_the_claim  # type: ignore[assignment]
    await claimer.place_due("spool")
    assert gap_seen == [True]
    assert await calls_made(runtime) == [("张一", "placing", "spool")] and len(spool.placed) == 1


async def test_with_no_pause_between_rounds_a_process_looking_during_the_round_change_rings_nobody_twice(
    runtime: Runtime,
) -> None:
    # A full suite run through the real Asterisk caught it (ops.alarm_round_interval_s = 0): the one officer was
    # called twice in round 2. The round change was committed with the alarm due at once, before the call row
    # that goes with it; a look in between claimed the alarm and called the new round's first officer too.
    clock = ManualClock(START)
    spool = FakeSpool()
    await add_officers(runtime, "张一")
    claimer = service_with_spool(runtime, clock, spool, round_interval_s=0, rounds=2)
    looker = service_with_spool(runtime, clock, spool, round_interval_s=0, rounds=2)
    await claimer.raise_now(Trouble("worker_down", "worker", "村响后台服务停止工作了。"))
    await claimer.place_due("spool")
    spool.outcomes[spool.placed[0]] = SpoolOutcome("heard", "answered, no key")
    await claimer.settle_spool_calls()
    assert await calls_made(runtime) == [("张一", "heard", "spool")]

    real_sessions = runtime.sessions
    looks: list[int] = []

    def sessions_with_a_look_after_every_commit() -> AsyncSession:
        session = real_sessions()
        commit = session.commit

        async def commit_then_let_the_other_look() -> None:
            await commit()
            looks.append(len(spool.placed))
            await looker.place_due("spool")

        session.commit = commit_then_let_the_other_look  # type: ignore[method-assign]
        return session

    claimer._sessions = sessions_with_a_look_after_every_commit  # type: ignore[assignment]
    await claimer.place_due("spool")
    assert looks, "the other process looked between the claimer's commits"
    assert await calls_made(runtime) == [("张一", "heard", "spool"), ("张一", "placing", "spool")]
    assert len(spool.placed) == 2
    (alarm,) = await alarms(runtime)
    assert (alarm.round, alarm.next_position, alarm.calls_made) == (2, 1, 2)
