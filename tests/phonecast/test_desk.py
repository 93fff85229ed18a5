"""The 手机喊话 desk without audio: who the caller is, the PIN and its lockout, what they may reach, refusals.

Everything here is decided before a recording is rendered (the tests that play are in test_on_air.py).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from common.errors import Conflict, InvalidInput, NotFound
from hotline.phonecast import PhonecastTarget, PinVerdict, SubmitStatus
from schedules.service import ScheduleInput
from server import Runtime
from storage.models import LoginThrottle, PhoneBroadcast, Township, Village, Zone
from tests.phonecast.helpers import audit_actions, make_cadre, principal_of_cadre, record_of, tone_wav
from tests.support.broadcasting import build_place, make_principal


async def test_thirty_two_cadres_are_each_known_by_their_own_numbers_and_nobody_else_is(runtime: Runtime) -> None:
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "甲乡", [[("sink", "file:a")]])
    cadres = {}
    for index in range(32):
        number = f"1380000{index:04d}"
        cadres[number] = await make_cadre(
            runtime, admin, f"cadre{index}", number, villages=[place.village_id], pin=None
        )
    desk = runtime.phonecast.desk
    for number, cadre in cadres.items():
        # However the carrier writes it, the number finds its cadre.
        assert await desk.identify(f"+86 {number[:3]}-{number[3:7]}-{number[7:]}") == cadre
    assert await desk.identify("13900001111") is None
    assert await desk.identify("anonymous") is None


async def test_a_number_belongs_to_one_user_and_a_bad_number_or_empty_scope_is_refused(runtime: Runtime) -> None:
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "甲乡", [[("sink", "file:a")]])
    await make_cadre(runtime, admin, "first", "13800001111", villages=[place.village_id])
    second = await make_principal(runtime, "second", "staff", township_ids=[place.township_id])
    grant = runtime.phonecast.admin.grant
    with pytest.raises(Conflict) as taken:
        await grant(admin, second.user_id, village_ids=[place.village_id], township_ids=[], numbers=["138 0000 1111"])
    assert taken.value.fields == {"numbers": "号码 13800001111 已登记给 first"}
    with pytest.raises(InvalidInput):
        await grant(admin, second.user_id, village_ids=[place.village_id], township_ids=[], numbers=["12"])
    with pytest.raises(InvalidInput):
        await grant(admin, second.user_id, village_ids=[], township_ids=[], numbers=["13800002222"])
    assert await runtime.phonecast.desk.identify("13800002222") is None


async def test_wrong_pins_across_calls_lock_the_cadre_in_the_database_and_an_admin_reset_lifts_it(
    runtime: Runtime,
) -> None:
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "甲乡", [[("sink", "file:a")]])
    cadre = await make_cadre(runtime, admin, "cadre", "13800001111", villages=[place.village_id])
    desk = runtime.phonecast.desk
    assert await desk.check_pin(cadre, "13800001111", "258036") is PinVerdict.ACCEPTED
    # A first call: three wrong PINs (the line hangs up after them).
    assert [await desk.check_pin(cadre, "13800001111", "111222") for _ in range(3)] == [PinVerdict.WRONG] * 3
    # A second call: the fifth failure (phonecast.pin_free_attempts) locks phone broadcasting for this cadre.
    assert await desk.check_pin(cadre, "13800001111", "111223") is PinVerdict.WRONG
    assert await desk.check_pin(cadre, "13800001111", "111224") is PinVerdict.LOCKED
    # Even the right PIN now: locked, and the lock is in the database (every process sees it).
    assert await desk.check_pin(cadre, "13800001111", "258036") is PinVerdict.LOCKED
    async with runtime.sessions() as session:
        blocked = await session.scalar(
            select(func.count()).select_from(LoginThrottle).where(LoginThrottle.blocked_until.is_not(None))
        )
    assert blocked and blocked >= 1
    actions = await audit_actions(runtime)
    assert actions.count("phonecast.pin_wrong") == 5
    assert "phonecast.lockout" in actions and "phonecast.pin_locked" in actions
    # The admin resets the PIN: the lock goes with it, and the cadre sets a new one.
    await runtime.phonecast.admin.reset_pin(admin, cadre.user_id)
    assert await desk.check_pin(cadre, "13800001111", "258036") is PinVerdict.WRONG  # no PIN until they set one
    user = await principal_of_cadre(runtime, cadre)
    await runtime.phonecast.admin.set_own_pin(user, "480726", "480726")
    assert await desk.check_pin(cadre, "13800001111", "480726") is PinVerdict.ACCEPTED


async def test_a_weak_or_mistyped_pin_is_refused_with_the_reason(runtime: Runtime) -> None:
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "甲乡", [[("sink", "file:a")]])
    cadre = await make_cadre(runtime, admin, "cadre", "13800001111", villages=[place.village_id], pin=None)
    user = await principal_of_cadre(runtime, cadre)
    for pin, confirm, message in [
        ("12345", "12345", "喊话密码必须是6位数字"),
        ("123456", "123456", "喊话密码太简单（相同或连续的数字），请换一个"),
        ("480726", "480727", "两次输入的喊话密码不一致"),
    ]:
        with pytest.raises(InvalidInput) as refused:
            await runtime.phonecast.admin.set_own_pin(user, pin, confirm)
        assert refused.value.fields == {"pin": message}


async def test_targets_are_the_cadres_own_villages_and_townships_ordered_by_code_with_their_speakers(
    runtime: Runtime,
) -> None:
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    east = await build_place(runtime, admin, "东乡", [[("sink", "file:a"), ("sink", "file:b")], [("sink", "file:c")]])
    west = await build_place(runtime, admin, "西乡", [[("sink", "file:d")]])
    cadre = await make_cadre(
        runtime,
        admin,
        "cadre",
        "13800001111",
        villages=[west.village_id, east.village_id],
        townships=[east.township_id],
    )
    targets = await runtime.phonecast.desk.targets(cadre)
    assert [(t.kind, t.name, t.speakers) for t in targets.villages] == [
        ("village", "东乡一村", 3),
        ("village", "西乡一村", 1),
    ]
    assert [(t.kind, t.name, t.speakers) for t in targets.townships] == [("township", "东乡", 3)]
    codes = [t.code for t in targets.villages]
    assert codes == sorted(codes) and all(code.isdigit() for code in codes)


async def test_a_zone_by_its_code_only_within_the_cadres_scope(runtime: Runtime) -> None:
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    east = await build_place(runtime, admin, "东乡", [[("sink", "file:a")]])
    west = await build_place(runtime, admin, "西乡", [[("sink", "file:b")]])
    cadre = await make_cadre(runtime, admin, "cadre", "13800001111", townships=[east.township_id])
    await runtime.phonecast.admin.set_code(admin, "zone", east.zone_ids[0], "7001")
    await runtime.phonecast.admin.set_code(admin, "zone", west.zone_ids[0], "7002")
    desk = runtime.phonecast.desk
    found = await desk.zone_by_code(cadre, "7001")
    assert found == PhonecastTarget(kind="zone", id=east.zone_ids[0], name="分区1", code="7001", speakers=1)
    assert await desk.zone_by_code(cadre, "7002") is None  # exists, but not theirs: nothing tells it exists
    assert await desk.zone_by_code(cadre, "9999") is None
    assert await desk.zone_by_code(cadre, "7*") is None
    with pytest.raises(Conflict):
        await runtime.phonecast.admin.set_code(admin, "zone", west.zone_ids[0], "7001")


async def test_codes_are_back_filled_for_areas_made_after_the_migration_and_unique_per_kind(runtime: Runtime) -> None:
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    for index, name in enumerate(("一乡", "二乡", "三乡")):
        await build_place(runtime, admin, name, [[("sink", f"file:a{index}")], [("sink", f"file:b{index}")]])
    from phonecast.codes import ensure_codes

    await ensure_codes(runtime.sessions)
    async with runtime.sessions() as session:
        for model, width in ((Township, 2), (Village, 3), (Zone, 4)):
            codes = list((await session.scalars(select(model.phonecast_code))).all())
            assert all(code and len(code) == width for code in codes), codes
            assert len(set(codes)) == len(codes)


async def test_refusals_before_anything_plays_are_recorded_once_per_call(runtime: Runtime, tmp_path: Path) -> None:
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    mine = await build_place(runtime, admin, "东乡", [[("sink", "file:a")]])
    other = await build_place(runtime, admin, "西乡", [[("sink", "file:b")]])
    empty = await build_place(runtime, admin, "南乡", [[]])
    cadre = await make_cadre(runtime, admin, "cadre", "13800001111", villages=[mine.village_id, empty.village_id])
    desk = runtime.phonecast.desk
    wav = tone_wav(tmp_path / "said.wav")
    not_mine = PhonecastTarget(kind="village", id=other.village_id, name="西乡一村", code="002", speakers=1)
    refused = await desk.submit(cadre, "13800001111", not_mine, wav, call_id="call-1")
    assert (refused.status, refused.reason) == (SubmitStatus.REFUSED, "not_in_scope")
    # The same call again: the same answer, no second record.
    assert await desk.submit(cadre, "13800001111", not_mine, wav, call_id="call-1") == refused
    silent = (await desk.targets(cadre)).villages
    nobody = next(target for target in silent if target.id == empty.village_id)
    no_speakers = await desk.submit(cadre, "13800001111", nobody, wav, call_id="call-2")
    assert (no_speakers.status, no_speakers.reason) == (SubmitStatus.REFUSED, "no_speakers")
    row = await record_of(runtime, refused.record_id or 0)
    assert (row.caller_masked, row.caller_name, row.status) == ("138****1111", "cadre", "refused")
    async with runtime.sessions() as session:
        assert await session.scalar(select(func.count(PhoneBroadcast.id))) == 2


async def test_quiet_hours_refuse_a_cadre_without_the_emergency_permission(runtime: Runtime, tmp_path: Path) -> None:
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "甲乡", [[("sink", "file:a")]])
    now = datetime.now(runtime.settings.zone)
    async with runtime.sessions.begin() as session:
        township = await session.get(Township, place.township_id)
        assert township is not None
        # Quiet hours around this very minute, whenever the test runs.
        township.quiet_start = (now - timedelta(hours=1)).time().replace(second=0, microsecond=0)
        township.quiet_end = (now + timedelta(hours=1)).time().replace(second=0, microsecond=0)
    cadre = await make_cadre(runtime, admin, "cadre", "13800001111", villages=[place.village_id])
    target = (await runtime.phonecast.desk.targets(cadre)).villages[0]
    result = await runtime.phonecast.desk.submit(
        cadre, "13800001111", target, tone_wav(tmp_path / "said.wav"), call_id="quiet-1"
    )
    assert (result.status, result.reason) == (SubmitStatus.REFUSED, "quiet_hours")
    # A time typed for later inside the quiet hours is refused too.
    later = (now + timedelta(minutes=30)).time().replace(second=0, microsecond=0)
    scheduled = await runtime.phonecast.desk.submit(
        cadre, "13800001111", target, tone_wav(tmp_path / "said2.wav"), call_id="quiet-2", at_local=later
    )
    assert (scheduled.status, scheduled.reason) == (SubmitStatus.REFUSED, "quiet_hours")
    assert (await audit_actions(runtime)).count("phonecast.refused") == 2


def test_a_time_of_day_is_today_or_tomorrow_if_it_has_passed() -> None:
    from zoneinfo import ZoneInfo

    from accounts.limiter import LimiterPolicy
    from phonecast.desk import Desk, DeskConfig

    zone = ZoneInfo("Asia/Shanghai")
    config = DeskConfig(recordings_dir=Path("/nonexistent"), zone=zone, pin_policy=LimiterPolicy())
    desk = Desk.__new__(Desk)
    desk._config = config  # only _play_at is used
    now = datetime(2026, 12, 5, 15, 0, tzinfo=zone)
    assert desk._play_at(time(16, 30), now) == datetime(2026, 12, 5, 16, 30, tzinfo=zone)
    assert desk._play_at(time(9, 0), now) == datetime(2026, 12, 6, 9, 0, tzinfo=zone)


def test_a_cadres_card_shows_the_number_the_line_answers_on_unless_the_county_publishes_another(
    tmp_path: Path,
) -> None:
    from phonecast.part import PhonecastConfig
    from settings import HotlineSettings, PhonecastSettings
    from tests.support.settings import make_settings

    url = f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"
    answered = make_settings(tmp_path, url, hotline=HotlineSettings(phonecast_did="12399"))
    assert PhonecastConfig.from_settings(answered).line_number == "12399"
    published = make_settings(
        tmp_path,
        url,
        hotline=HotlineSettings(phonecast_did="12399"),
        phonecast=PhonecastSettings(line_number="0471-12399"),
    )
    assert PhonecastConfig.from_settings(published).line_number == "0471-12399"


async def test_a_phone_broadcasts_item_cannot_be_opened_played_again_or_scheduled_as_a_notice(
    runtime: Runtime, tmp_path: Path
) -> None:
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "东乡", [[("sink", "file:a")]])
    cadre = await make_cadre(runtime, admin, "cadre", "13800001111", villages=[place.village_id])
    target = (await runtime.phonecast.desk.targets(cadre)).villages[0]
    later = (runtime.clock.now() + timedelta(hours=2)).astimezone(runtime.settings.zone).time().replace(microsecond=0)
    result = await runtime.phonecast.desk.submit(
        cadre, "13800001111", target, tone_wav(tmp_path / "said.wav"), call_id="later-1", at_local=later
    )
    assert result.status is SubmitStatus.SCHEDULED
    notice_id = (await record_of(runtime, result.record_id or 0)).notice_id
    assert notice_id is not None
    # Township staff (and even an admin) reach it neither as a notice nor as something to schedule: played
    # again through 立即播出 it would preempt notices at 手机喊话's priority without the permission.
    staff = await make_principal(runtime, "writer", "staff", township_ids=[place.township_id])
    notices = runtime.broadcasting.notices
    for who in (staff, admin):
        with pytest.raises(NotFound):
            await notices.get(who, notice_id)
        with pytest.raises(NotFound):
            await notices.archive(who, notice_id)
    with pytest.raises(InvalidInput):
        await runtime.schedules.service.create(
            staff,
            ScheduleInput(notice_id=notice_id, kind="daily", times=("07:00",), targets=(("zone", place.zone_ids[0]),)),
        )
