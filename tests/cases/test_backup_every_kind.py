"""Backup → restore → compare, for every table and every file the service keeps, on SQLite and PostgreSQL.

``test_backup.py`` restores a county's cases and recordings; this test is about *everything else*: each kind
of data added since the backup tool was written — notice reviews, call times, the never-lost broadcast rows,
sessions and the login throttle, villagers' phones, official warnings (sources, messages, refusals, the policy),
the alarms by phone and their duty list, 手机喊话's cadres, numbers, scopes and records — round-trips row for row,
column for column, and the recordings, uploaded broadcast recordings, phone broadcasts' recordings and produced
audio byte for byte. A table left empty in the source fails the
test with its name: a later part that adds a table fills it here, so its data is known to survive a restore.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from common.clock import ManualClock
from server import Runtime, build_runtime
from settings import Settings
from storage.models import (
    AlarmCall,
    AlertFeedEntry,
    AlertMessage,
    AlertRefusal,
    AlertSource,
    Base,
    Broadcast,
    BroadcastSpeaker,
    BroadcastZone,
    CallbackAttempt,
    CaseView,
    DutyOfficer,
    HotlineState,
    LoginThrottle,
    MissedCall,
    Notice,
    OpsAlarm,
    PhoneBroadcast,
    PhonecastCadre,
    PhonecastNumber,
    PhonecastScope,
    Schedule,
    ScheduleTarget,
    SurveyAttempt,
    VillagerPhone,
    WorkerHeartbeat,
    ZoneBroadcastSettings,
)
from storage.models import Call as CallRow
from tests.cases.conftest import START, CaseMaker, County, People
from tests.cases.test_backup import cunxiang, env_for
from tests.conftest import BOTH_DATABASES, make_settings
from tests.support.cli import run
from tests.support.postgres import PostgresCluster

# A whole installation backed up and restored through the command line, twice (one per database).
pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_kind", BOTH_DATABASES)]


@pytest.fixture
def fresh_settings(tmp_path: Path, db_kind: str, request: pytest.FixtureRequest) -> Settings:
    if db_kind == "sqlite":
        return make_settings(tmp_path / "fresh", f"sqlite+aiosqlite:///{tmp_path / 'fresh' / 'cunxiang.db'}")
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    name = f"cx_kinds_{tmp_path.name[-12:].replace('-', '_').lower()}"
    cluster.psql(f"CREATE DATABASE {name}")
    return make_settings(tmp_path / "fresh", cluster.url(name))


async def fill_every_kind(runtime: Runtime, county: County, people: People, hotline_case: CaseMaker) -> None:
    """At least one row in every table, each with its columns filled as the parts fill them."""
    now = START.astimezone(UTC)
    case = await hotline_case(township_id=county.township_a)
    operator = people.operator_county.principal
    # The case's ledger and history, written by the workflow.
    await runtime.cases.workflow.assign(operator, case.id, unit_id=county.unit_a, leader_name="张书记")
    author, approver = people.staff_a.principal, people.approver_a.principal
    async with runtime.sessions() as session:
        # Notice reviews (0006): a revision heard and approved.
        notice = Notice(
            kind="service",
            title="开会通知",
            body="今晚七点在村委会开会。",
            author_id=author.user_id,
            township_id=county.township_a,
            state="approved",
            revision=2,
            approver_id=approver.user_id,
            audio_keys={"zh": "ab/abcdef"},
            audio_duration_s=12.5,
            audio_engine="espeak",
            spoken_text="今晚七点开会。",
            submitted_at=now,
            decided_at=now,
            created_at=now,
            updated_at=now,
        )
        session.add(notice)
        await session.flush()
        # The never-lost broadcast rows (0008): a broadcast, its zone run, one speaker's run.
        broadcast = Broadcast(
            notice_id=notice.id,
            origin="emergency",
            kind="emergency",
            priority=100,
            title="山洪预警",
            zone_ids=[county.tree.zone_ids[0]],
            audio_keys={"zh": "ab/abcdef"},
            duration_s=12.5,
            state=3,
            created_at=now,
            started_at=now,
            ended_at=now + timedelta(seconds=13),
        )
        session.add(broadcast)
        await session.flush()
        zone_run = BroadcastZone(
            broadcast_id=broadcast.id,
            zone_id=county.tree.zone_ids[0],
            village_id=county.village_a,
            township_id=county.township_a,
            kind="emergency",
            priority=100,
            scheduled_at=now,
            state=3,
        )
        session.add(zone_run)
        await session.flush()
        session.add(
            BroadcastSpeaker(
                zone_run_id=zone_run.id,
                speaker_id=county.tree.speaker_ids[0],
                transport="rtp",
                address="127.0.0.1:20000",
                state=4,
                error="超时",
                detail={"packets": 3},
                packets_sent=3,
                played_s=0.06,
                started_at=now,
                ended_at=now,
            )
        )
        # A weekly schedule of it, switched off (the running scheduler leaves it alone).
        schedule = Schedule(
            notice_id=notice.id,
            township_id=county.township_a,
            kind="weekly",
            times=["07:30"],
            weekdays=[1, 3],
            start_date=date(2026, 3, 1),
            end_date=date(2026, 6, 30),
            priority=50,
            enabled=False,
            created_by=author.user_id,
            created_at=now,
            updated_at=now,
        )
        session.add(schedule)
        await session.flush()
        session.add(ScheduleTarget(schedule_id=schedule.id, level="village", target_id=county.village_a))
        session.add(WorkerHeartbeat(name="an-old-worker", alive_at=now, stopped_at=now))
        session.add(ZoneBroadcastSettings(zone_id=county.tree.zone_ids[0], rtp_group="239.1.1.1", updated_at=now))
        # Call times (0007) and the hotline's own records.
        session.add(
            CallRow(
                linkedid=case.linkedid,
                kind="hotline",
                outcome="case",
                settled_by="tracker",
                case_id=case.id,
                caller_number="13800001111",
                started_at=now,
                ended_at=now + timedelta(seconds=40),
                created_at=now,
                updated_at=now,
            )
        )
        session.add(
            MissedCall(
                linkedid="missed-1", at=now, reason="hung_up_at_welcome", caller_number="13900002222", created_at=now
            )
        )
        session.add(HotlineState(key="reconcile.cdr_offset", value="1234", updated_at=now))
        session.add(VillagerPhone(number="13800001111", village_id=county.village_a, created_at=now, updated_at=now))
        session.add(
            CallbackAttempt(
                case_id=case.id,
                user_id=operator.user_id,
                operator_endpoint="op1",
                channel_id="cb-1",
                state="answered",
                requested_at=now,
                placed_at=now,
                ended_at=now,
                dial_status="ANSWER",
            )
        )
        session.add(SurveyAttempt(case_id=case.id, attempt=1, channel_id="sv-1", state="completed", placed_at=now))
        session.add(CaseView(user_id=operator.user_id, name="我的待办", created_at=now))
        # Sessions (0005): a throttled login (the people's logins left their sessions already).
        session.add(LoginThrottle(scope="user", key="somebody", failures=3, last_failure_at=now))
        # Official warnings (0009).
        # Switched off: the running worker would poll it (and nothing in a test reaches out).
        source = AlertSource(
            name="气象台",
            kind="pull",
            active=False,
            url="https://example.invalid/cap.xml",
            silent_after_s=3600,
            etag='"v1"',
            created_at=now,
        )
        session.add(source)
        await session.flush()
        session.add(
            AlertMessage(
                source_id=source.id,
                identifier="CAP-1",
                sender="weather@example.invalid",
                sent=now,
                status="Actual",
                msg_type="Alert",
                event="暴雨",
                severity="Severe",
                headline="暴雨黄色预警",
                received_at=now,
                xml="<alert/>",
                state="recorded",
                matched=[{"village_id": county.village_a}],
            )
        )
        session.add(
            AlertRefusal(source_id=source.id, received_at=now, code="signature", reason="没有签名", origin="feed")
        )
        # A feed's memory of the entries it has fetched (0011).
        session.add(
            AlertFeedEntry(source_id=source.id, link_hash="a" * 64, link="https://alerts.example/entry/1", seen_at=now)
        )
        # Alarms by phone (0010).
        officer = DutyOfficer(
            name="张值班", phone="13900001111", on_from=time(18, 0), on_until=time(8, 0), position=1, created_at=now
        )
        session.add(officer)
        await session.flush()
        alarm = OpsAlarm(
            kind="emergency_failed",
            subject=str(broadcast.id),
            message="紧急广播有1个喇叭没有播出。",
            state="acknowledged",
            raised_at=now,
            closed_at=now,
            calls_made=1,
            acknowledged_by="张值班（13900001111）",
        )
        session.add(alarm)
        await session.flush()
        session.add(
            AlarmCall(
                alarm_id=alarm.id,
                officer_id=officer.id,
                officer_name="张值班",
                phone="13900001111",
                round=1,
                channel_id="al-1",
                state="acknowledged",
                placed_at=now,
                ended_at=now,
            )
        )
        # 手机喊话 (0012): a cadre with scope, number and PIN, and one phone broadcast with its review.
        session.add(
            PhonecastCadre(
                user_id=author.user_id,
                pin_hash="$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
                pin_set_at=now,
                granted_by=people.admin.principal.user_id,
                granted_at=now,
            )
        )
        await session.flush()
        session.add(PhonecastScope(user_id=author.user_id, village_id=county.village_a))
        session.add(PhonecastNumber(user_id=author.user_id, number="13800005555", created_at=now))
        session.add(
            PhoneBroadcast(
                call_id="1733390000.42",
                user_id=author.user_id,
                caller_name="张书记",
                caller_masked="138****5555",
                target_kind="village",
                target_id=county.village_a,
                target_name="一村",
                target_code="001",
                zone_ids=[county.tree.zone_ids[0]],
                township_id=county.township_a,
                recording_file="phone-1.wav",
                recording_s=4.5,
                notice_id=notice.id,
                broadcast_id=broadcast.id,
                status="played",
                speakers=2,
                unanswered=1,
                quiet_exempt=False,
                created_at=now,
                started_at=now,
                ended_at=now,
                review_state="flagged",
                review_note="与村务无关",
                reviewed_by=approver.user_id,
                reviewed_at=now,
            )
        )
        await session.commit()
    # Files: produced audio and an uploaded broadcast recording, beside the case's message recording.
    audio = runtime.speech.cache.root / "ab" / "abcdef.mp3"
    audio.parent.mkdir(parents=True, exist_ok=True)
    audio.write_bytes(b"ID3" + bytes(range(256)) * 20)
    upload = runtime.broadcasting.notices.recordings_dir / f"notice-{notice.id}.wav"
    upload.parent.mkdir(parents=True, exist_ok=True)
    upload.write_bytes(b"RIFF" + bytes(range(256)) * 30)
    spoken = runtime.phonecast.desk.recordings_dir / "phone-1.wav"
    spoken.parent.mkdir(parents=True, exist_ok=True)
    spoken.write_bytes(b"RIFF" + bytes(range(255, -1, -1)) * 30)


def _plain(value: Any) -> Any:
    """A column's value in a form both databases give alike."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal | float):
        return round(float(value), 6)
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    if isinstance(value, bytes):
        return value.hex()
    return value


async def every_row(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    tables: dict[str, list[tuple[Any, ...]]] = {}
    async with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            rows = (await connection.execute(select(table))).all()
            tables[table.name] = sorted((tuple(_plain(value) for value in row) for row in rows), key=repr)
    return tables


def every_file(data_dir: Path, runtime: Runtime) -> dict[str, str]:
    roots = (
        runtime.hotline.store.root,
        runtime.speech.cache.root,
        runtime.broadcasting.notices.recordings_dir,
        runtime.phonecast.desk.recordings_dir,
    )
    found = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                found[str(path.relative_to(data_dir))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


async def test_every_kind_of_data_round_trips_through_backup_and_restore(
    runtime: Runtime,
    settings: Settings,
    fresh_settings: Settings,
    county: County,
    people: People,
    hotline_case: CaseMaker,
    tmp_path: Path,
) -> None:
    await fill_every_kind(runtime, county, people, hotline_case)
    original = await every_row(runtime.engine)
    empty = sorted(name for name, rows in original.items() if not rows)
    assert empty == [], f"fill these tables in fill_every_kind so a restore is known to keep them: {empty}"
    files = every_file(settings.data_dir, runtime)
    assert {path.split("/")[0] for path in files} >= {"recordings", "audio", "phonecast"} and len(files) >= 4

    target = tmp_path / "backup"
    code, _out, err = await cunxiang(["backup", str(target)], env_for(settings))
    assert code == 0, err
    fresh_env = env_for(fresh_settings)
    assert run(["init"], fresh_env).returncode == 0
    code, _out, err = await cunxiang(["restore", str(target)], fresh_env)
    assert code == 0, err

    restored = build_runtime(fresh_settings, clock=ManualClock(START))
    try:
        after = await every_row(restored.engine)
        for table, rows in original.items():
            assert after[table] == rows, f"{table} differs after the restore"
        assert every_file(fresh_settings.data_dir, restored) == files
        # The restored database goes on where the old one stopped: a new alarm gets a fresh id, not a clash.
        async with restored.sessions() as session:
            highest = await session.scalar(select(func.max(OpsAlarm.id)))
    finally:
        await restored.engine.dispose()
    assert highest is not None
