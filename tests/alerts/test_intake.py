"""From message to decision: de-duplication, the policy, Update and Cancel, test messages, refusals.

Broadcasting is the :class:`alerts.service.AlertBroadcaster` seam here (a recorder); the real emergency path
and an RTP receiver are in test_rtp.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts.cap import CapRefused
from alerts.service import AlertService
from common.clock import ManualClock
from common.errors import Conflict
from server import Runtime
from storage.models import AlertMessage, AlertRefusal, AlertSource, AuditEntry, Township
from tests.alerts.fixtures import OASIS_EXAMPLES, cap_bytes
from tests.alerts.support import RecordingBroadcaster, Tree, coded_county
from tests.conftest import SYSTEM
from tests.support.broadcasting import make_principal


@pytest.fixture
async def tree(runtime: Runtime) -> Tree:
    return await coded_county(runtime)


@pytest.fixture
def recorder(runtime: Runtime) -> RecordingBroadcaster:
    recorder = RecordingBroadcaster()
    runtime.alerts.service.use_broadcaster(recorder)
    return recorder


@pytest.fixture
async def source(runtime: Runtime) -> int:
    created, _token = await runtime.alerts.service.create_source(SYSTEM, name="市气象局推送", kind="push")
    return created.id


def _service(runtime: Runtime) -> AlertService:
    return runtime.alerts.service


async def _receive(runtime: Runtime, source: int, name: str) -> AlertMessage:
    service = _service(runtime)
    receipt = await service.receive(source, cap_bytes(name, now=runtime.clock.now()))
    return await service.get(receipt.message_id)


async def test_a_red_warning_for_the_county_airs_by_itself_in_every_village_with_the_level_spoken(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int
) -> None:
    row = await _receive(runtime, source, "cn-red-rainstorm.xml")
    assert (row.state, row.action) == ("aired", "auto")
    assert {match["village_id"] for match in row.matched} == {*tree.east_villages, tree.willow_village}
    assert all("区划代码 159901" in match["why"] for match in row.matched)
    (aired,) = recorder.aired
    # Actual messages play in the villages' zones; the 测试分区 is a zone of a matched village too.
    assert set(aired.zone_ids) == {*tree.east_zones, tree.willow_zone, tree.test_zone}
    assert aired.title == "请注意，以下是示例县气象局发布的暴雨红色预警"
    assert aired.text.startswith("示例县气象局发布暴雨红色预警信号。请立即停止户外活动")
    assert row.broadcast_ids == [2001] and row.notice_id == 1001


async def test_the_same_message_twice_is_recorded_once(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int
) -> None:
    data = cap_bytes("cn-red-rainstorm.xml", now=runtime.clock.now())
    first = await _service(runtime).receive(source, data)
    again = await _service(runtime).receive(source, data)
    assert not first.duplicate and again.duplicate and again.message_id == first.message_id
    assert len(recorder.aired) == 1
    async with runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(AlertMessage)) == 1


async def test_a_township_code_reaches_only_that_townships_villages(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int
) -> None:
    row = await _receive(runtime, source, "cn-orange-gale.xml")
    assert row.state == "aired"
    assert {match["village_id"] for match in row.matched} == set(tree.east_villages)
    assert tree.willow_zone not in recorder.aired[0].zone_ids


async def test_a_polygon_reaches_the_villages_inside_it(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int
) -> None:
    row = await _receive(runtime, source, "cn-fire-polygon.xml")
    assert {match["village_id"] for match in row.matched} == set(tree.east_villages)
    assert all("多边形" in match["why"] for match in row.matched)


async def test_a_yellow_warning_waits_for_an_approver_who_releases_it(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int
) -> None:
    row = await _receive(runtime, source, "cn-yellow-snowstorm.xml")
    assert (row.state, row.action) == ("pending", "review") and not recorder.aired
    approver = await make_principal(runtime, "alert-approver", "approver", county_wide=True)
    released = await _service(runtime).release(approver, row.id)
    assert released.state == "aired" and released.decided_by == approver.user_id
    assert "alert-approver放行" in released.state_reason
    assert len(recorder.aired) == 1
    async with runtime.sessions() as session:
        actions = set((await session.scalars(select(AuditEntry.action).where(AuditEntry.object_type == "alert"))).all())
    assert {"alert.receive", "alert.decide", "alert.release", "alert.air"} <= actions


async def test_an_approver_may_decline_and_then_nothing_airs(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int
) -> None:
    row = await _receive(runtime, source, "cn-yellow-snowstorm.xml")
    approver = await make_principal(runtime, "alert-approver", "approver", county_wide=True)
    declined = await _service(runtime).reject(approver, row.id)
    assert declined.state == "rejected" and not recorder.aired


async def test_a_blue_warning_is_only_recorded(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int
) -> None:
    row = await _receive(runtime, source, "cn-blue-coldwave.xml")
    assert (row.state, row.action, row.state_reason) == ("recorded", "record", "按策略仅记录")
    assert len(row.matched) == 3 and not recorder.aired


async def test_an_update_replaces_the_warning_it_references(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int
) -> None:
    red = await _receive(runtime, source, "cn-red-rainstorm.xml")
    update = await _receive(runtime, source, "cn-red-rainstorm-update.xml")
    red = await _service(runtime).get(red.id)
    assert red.state == "superseded" and red.replaced_by_id == update.id
    assert recorder.stopped == [(2001, "预警已更新")]
    assert update.state == "aired" and len(recorder.aired) == 2
    assert "请立即转移到安全地带" in recorder.aired[1].text


async def test_a_cancel_stops_the_warning_and_records_it_cancelled(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int
) -> None:
    red = await _receive(runtime, source, "cn-red-rainstorm.xml")
    cancel = await _receive(runtime, source, "cn-red-rainstorm-cancel.xml")
    red = await _service(runtime).get(red.id)
    assert red.state == "cancelled" and red.replaced_by_id == cancel.id and red.ended_at is not None
    assert recorder.stopped == [(2001, "预警已撤销")]
    assert cancel.state == "recorded" and len(recorder.aired) == 1


async def test_another_sender_cannot_cancel_a_warning(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int
) -> None:
    red = await _receive(runtime, source, "cn-red-rainstorm.xml")
    forged = cap_bytes("cn-red-rainstorm-cancel.xml", now=runtime.clock.now()).replace(
        b"<sender>qxj159901@alerts.example.cn</sender>", b"<sender>someone@else.example.cn</sender>"
    )
    await _service(runtime).receive(source, forged)
    assert (await _service(runtime).get(red.id)).state == "aired" and not recorder.stopped


async def test_a_test_message_plays_only_in_the_test_zone(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int
) -> None:
    row = await _receive(runtime, source, "cn-test.xml")
    assert row.state == "aired"
    assert recorder.aired[0].zone_ids == [tree.test_zone]
    assert recorder.aired[0].title.startswith("这是一条测试预警信息")


async def test_a_test_message_where_no_zone_is_marked_for_tests_never_airs(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int
) -> None:
    only_willow = cap_bytes("cn-test.xml", now=runtime.clock.now()).replace(b">159901<", b">159901202<")
    receipt = await _service(runtime).receive(source, only_willow)
    assert receipt.state == "recorded" and "测试分区" in receipt.reason and not recorder.aired


async def test_an_admin_cancels_by_hand_and_it_is_audited(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int
) -> None:
    row = await _receive(runtime, source, "cn-red-rainstorm.xml")
    admin = await make_principal(runtime, "alert-admin", "admin", county_wide=True)
    cancelled = await _service(runtime).cancel(admin, row.id)
    assert cancelled.state == "cancelled" and recorder.stopped == [(2001, "预警由alert-admin手动撤销")]
    async with runtime.sessions() as session:
        entry = await session.scalar(select(AuditEntry).where(AuditEntry.action == "alert.cancel"))
    assert entry is not None and entry.username == "alert-admin"


@pytest.mark.parametrize(
    ("name", "code"), [("cn-malformed.xml", "cap.schema"), ("cn-dtd-external-entity.xml", "cap.dtd")]
)
async def test_a_bad_message_is_refused_with_its_reason_and_nothing_of_it_is_used(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int, name: str, code: str
) -> None:
    with pytest.raises(CapRefused) as refused:
        await _service(runtime).receive(source, cap_bytes(name), origin="folder/x.xml")
    assert refused.value.code == code
    async with runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(AlertMessage)) == 0
        refusal = await session.scalar(select(AlertRefusal))
    assert refusal is not None and refusal.code == code and refusal.reason == refused.value.reason
    assert refusal.origin == "folder/x.xml"


async def test_a_heartbeat_is_tracked_on_its_source(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int
) -> None:
    row = await _receive(runtime, source, "cn-heartbeat.xml")
    assert row.state == "recorded" and "心跳" in row.state_reason
    async with runtime.sessions() as session:
        kept = await session.get(AlertSource, source)
    assert kept is not None and kept.last_heartbeat_at is not None


async def test_a_warning_already_expired_on_arrival_is_not_aired(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int
) -> None:
    late = cap_bytes(
        "cn-red-rainstorm.xml", now=runtime.clock.now() - timedelta(hours=2), expires_in=timedelta(hours=1)
    )
    receipt = await _service(runtime).receive(source, late)
    assert receipt.state == "expired" and not recorder.aired


@pytest.mark.parametrize("name", OASIS_EXAMPLES)
async def test_the_specifications_examples_are_recorded_and_reach_no_village_here(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int, name: str
) -> None:
    receipt = await _service(runtime).receive(source, cap_bytes(name))
    row = await _service(runtime).get(receipt.message_id)
    assert row.matched == [] and not recorder.aired
    assert row.state in ("recorded", "expired")


async def test_repeats_every_n_minutes_at_most_the_set_count_skipping_quiet_townships_and_stop_on_cancel(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int
) -> None:
    clock = ManualClock(runtime.clock.now())
    service = AlertService(runtime.sessions, clock, _service(runtime).config, recorder)
    receipt = await service.receive(source, cap_bytes("cn-red-rainstorm.xml", now=clock.now()))
    red = await service.get(receipt.message_id)
    assert red.plays == 1 and red.next_play_at == clock.now() + timedelta(minutes=30)  # the default: 30 min, 3 plays
    assert await service.repeat_due() == 0  # not yet
    # 红柳乡 goes quiet: the repeat skips its zone (only the first play is an emergency that ignores quiet hours).
    local = (clock.now() + timedelta(minutes=30)).astimezone(runtime.settings.zone)
    async with runtime.sessions.begin() as session:
        await session.execute(
            update(Township)
            .where(Township.name == "示例红柳乡")
            .values(quiet_start=(local - timedelta(minutes=5)).time(), quiet_end=(local + timedelta(minutes=5)).time())
        )
    clock.advance(timedelta(minutes=30))
    assert await service.repeat_due() == 1
    assert recorder.replayed == [(1001, sorted({*tree.east_zones, tree.test_zone}))]
    clock.advance(timedelta(minutes=30))
    assert await service.repeat_due() == 1
    row = await service.get(red.id)
    assert row.plays == 3 and row.next_play_at is None and row.broadcast_ids == [2001, 3001, 3002]
    clock.advance(timedelta(minutes=30))
    assert await service.repeat_due() == 0  # at most three plays


async def test_a_cancel_cancels_the_remaining_repeats(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int
) -> None:
    red = await _receive(runtime, source, "cn-red-rainstorm.xml")
    assert red.next_play_at is not None
    await _receive(runtime, source, "cn-red-rainstorm-cancel.xml")
    assert (await _service(runtime).get(red.id)).next_play_at is None


async def test_an_admin_replays_an_alert_that_aired_and_it_is_audited(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int
) -> None:
    row = await _receive(runtime, source, "cn-orange-gale.xml")
    admin = await make_principal(runtime, "alert-admin", "admin", county_wide=True)
    replayed = await _service(runtime).replay_by_hand(admin, row.id)
    assert recorder.replayed == [(1001, list(row.zone_ids))] and replayed.broadcast_ids == [2001, 3001]
    async with runtime.sessions() as session:
        entry = await session.scalar(select(AuditEntry).where(AuditEntry.action == "alert.replay"))
    assert entry is not None and entry.username == "alert-admin"
    blue = await _receive(runtime, source, "cn-blue-coldwave.xml")
    with pytest.raises(Conflict):
        await _service(runtime).replay_by_hand(admin, blue.id)


async def test_an_alert_still_on_air_at_its_expires_is_stopped_and_a_pending_one_expires(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int
) -> None:
    clock = ManualClock(runtime.clock.now())
    service = AlertService(runtime.sessions, clock, _service(runtime).config, recorder)
    red = await service.receive(
        source, cap_bytes("cn-red-rainstorm.xml", now=clock.now(), expires_in=timedelta(minutes=10))
    )
    yellow = await service.receive(
        source, cap_bytes("cn-yellow-snowstorm.xml", now=clock.now(), expires_in=timedelta(minutes=10))
    )
    assert (red.state, yellow.state) == ("aired", "pending")
    assert await service.end_expired() == 0  # not yet
    clock.advance(timedelta(minutes=10))
    assert await service.end_expired() == 2
    ended = await service.get(red.message_id)
    # Stopped where it plays or waits, with the reason the as-run line shows; no repeat is left.
    assert recorder.stopped == [(2001, "预警已到失效时间")]
    assert ended.state == "aired" and ended.ended_at == clock.now() and ended.next_play_at is None
    assert "到失效时间，播出结束" in ended.state_reason
    waited = await service.get(yellow.message_id)
    assert waited.state == "expired" and "等待审核时已过失效时间" in waited.state_reason
    async with runtime.sessions() as session:
        entries = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "alert.expired"))).all()
    assert len(entries) == 2
    assert await service.end_expired() == 0  # ended once


class _CommitHeld:
    """Sessions whose next write transaction, its reads done, waits before committing until ``release`` is set."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self.hold = False
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    def __call__(self) -> AsyncSession:
        return self._sessions()

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions.begin() as session:
            yield session
            if self.hold:
                self.hold = False
                self.reached.set()
                await self.release.wait()


async def test_an_alert_ended_while_its_broadcast_is_being_recorded_still_stops_it(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int
) -> None:
    # The other interleaving of the one below: the clock's end_expired (another task, another process) reads the
    # alert before the airing has recorded its broadcast, and commits its end after it. Each read its own
    # transaction's view and stopped nothing: the warning played on to its end (the RTP expiry test, under load).
    clock = ManualClock(runtime.clock.now())
    config = _service(runtime).config
    service = AlertService(runtime.sessions, clock, config, recorder)
    held = _CommitHeld(runtime.sessions)
    clock_runner = AlertService(held, clock, config, recorder)  # type: ignore[arg-type]
    air = recorder.air
    ending: asyncio.Future[int] | None = None

    async def air_while_it_is_being_ended(**kwargs: Any) -> tuple[int, int]:
        nonlocal ending
        aired = await air(**kwargs)
        clock.advance(timedelta(minutes=10))
        held.hold = True
        ending = asyncio.ensure_future(clock_runner.end_expired())
        await held.reached.wait()  # it has read the alert (no broadcast known) and is about to commit its end
        return aired

    recorder.air = air_while_it_is_being_ended  # type: ignore[method-assign]
    red = await service.receive(
        source, cap_bytes("cn-red-rainstorm.xml", now=clock.now(), expires_in=timedelta(minutes=10))
    )
    held.release.set()
    assert ending is not None and await ending == 1
    ended = await service.get(red.message_id)
    assert recorder.stopped == [(2001, "预警已到失效时间")]
    assert ended.broadcast_ids == [2001] and ended.ended_at is not None and ended.next_play_at is None


async def test_an_alert_whose_expires_passes_while_it_is_being_aired_is_still_stopped(
    runtime: Runtime, tree: Tree, recorder: RecordingBroadcaster, source: int
) -> None:
    # Rendering and queueing the warning takes a while (a loaded machine: seconds); its expires passes meanwhile
    # and the clock's end_expired runs before the alert knows its broadcast. The broadcast, already playing,
    # must still be stopped (it played to its end: the RTP expiry test timed out under load, 2 of 5 full runs).
    clock = ManualClock(runtime.clock.now())
    service = AlertService(runtime.sessions, clock, _service(runtime).config, recorder)
    air = recorder.air

    async def air_while_it_expires(**kwargs: Any) -> tuple[int, int]:
        aired = await air(**kwargs)
        clock.advance(timedelta(minutes=10))
        assert await service.end_expired() == 1  # ended, with no broadcast of it known yet
        return aired

    recorder.air = air_while_it_expires  # type: ignore[method-assign]
    red = await service.receive(
        source, cap_bytes("cn-red-rainstorm.xml", now=clock.now(), expires_in=timedelta(minutes=10))
    )
    ended = await service.get(red.message_id)
    assert recorder.stopped == [(2001, "预警已到失效时间")]
    assert ended.broadcast_ids == [2001] and ended.ended_at is not None and ended.next_play_at is None
    assert "到失效时间，播出结束" in ended.state_reason
