"""Helpers for the broadcasting and scheduling tests: settings, a small tree, principals, approved notices.

Rendering is real (espeak-ng only: the edge cloud is unreachable here and would
only add a timeout per notice); loudspeakers are real transports (file sinks,
RTP to local receivers, HTTP terminals driven by a real client).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from accounts.principal import Principal
from accounts.service import principal_of
from broadcast.notices import NoticeInput
from server import Runtime
from settings import AudioSettings, BroadcastSettings, SchedulerSettings, Settings, TtsSettings
from storage.models import BroadcastSpeaker, BroadcastZone, Notice, User
from tests.conftest import SYSTEM, make_settings

SHORT_TEXT = "各位村民请注意。"
# A speaker test's text under the fast settings below: a word or two read at 400 words a minute without the chime
# is shorter than loudness measurement's 400 ms block (refused as silent) and than a second of RTP packets.
SPEAKER_TEST_TEXT = "拨测，村响广播测试，听到请回复。"


# Read fast (espeak-ng's words a minute; the production default is 150) and without the chime: an item's length
# proves nothing in the dispatcher, API and page tests (each waits on the item's end), so a zone plays for
# seconds, not half a minute. The chime is proved by tests/broadcast/test_production.py; tests that need the
# chime's shared beginning or the production rate (the replay, cache-size and long-item tests) pass their own.
FAST_SPEECH = TtsSettings(engines=("espeak",), espeak_speed_wpm=400)
FAST_AUDIO = AudioSettings(default_repeats=1, chime=False, lead_in_ms=0, gap_ms=300, tail_ms=0)
# What the tests above had before (the production rate, the chime): for tests whose evidence needs them.
PRODUCTION_SPEECH = TtsSettings(engines=("espeak",))


def broadcasting_settings(data_dir: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "tts": FAST_SPEECH,
        "audio": FAST_AUDIO,
        "broadcast": BroadcastSettings(
            lower_priority_wait_s=60,
            pending_poll_s=0.2,
            http_poll_interval_s=0.5,
            terminal_start_timeout_s=5,
            terminal_finish_grace_s=5,
        ),
        "scheduler": SchedulerSettings(resync_s=3600),
    }
    values.update(overrides)
    return make_settings(data_dir, database_url, **values)


async def principal(runtime: Runtime, username: str) -> Principal:
    async with runtime.sessions() as session:
        user = await session.scalar(select(User).where(User.username == username))
        assert user is not None
        return principal_of(user)


async def make_principal(
    runtime: Runtime,
    username: str,
    *roles: str,
    township_ids: list[int] | None = None,
    county_wide: bool = False,
    can_emergency: bool = False,
) -> Principal:
    await runtime.accounts.create_user(
        SYSTEM,
        username=username,
        display_name=username,
        password="Broadcast-test-pass-1",
        roles=list(roles),
        county_wide=county_wide,
        township_ids=township_ids or [],
        can_emergency=can_emergency,
    )
    return await principal(runtime, username)


@dataclass(frozen=True)
class Place:
    township_id: int
    village_id: int
    zone_ids: tuple[int, ...]
    speaker_ids: tuple[int, ...]


async def build_place(
    runtime: Runtime, admin: Principal, name: str, speakers: list[list[tuple[str, str]]], county_id: int | None = None
) -> Place:
    """One township, one village, a zone per entry of ``speakers`` ([(transport, address), …] each)."""
    areas = runtime.areas
    if county_id is None:
        existing = await areas.list_counties()
        county_id = existing[0].id if existing else (await areas.create_county(admin, name="测试县")).id
    # No quiet hours unless a test is about them: plays started "now" must not depend on the hour the tests run.
    township = await areas.create_township(
        admin, county_id=county_id, name=name, quiet_start=time(0, 0), quiet_end=time(0, 0)
    )
    village = await areas.create_village(admin, township_id=township.id, name=f"{name}一村")
    zone_ids, speaker_ids = [], []
    for index, zone_speakers in enumerate(speakers):
        zone = await areas.create_zone(admin, village_id=village.id, name=f"分区{index + 1}")
        zone_ids.append(zone.id)
        for number, (transport, address) in enumerate(zone_speakers):
            speaker, _token = await areas.create_speaker(
                admin, zone_id=zone.id, name=f"喇叭{number + 1}", transport=transport, address=address
            )
            speaker_ids.append(speaker.id)
    return Place(township.id, village.id, tuple(zone_ids), tuple(speaker_ids))


async def approved_notice(
    runtime: Runtime,
    author: Principal,
    approver: Principal,
    *,
    township_id: int | None,
    kind: str = "disclosure_village",
    title: str = "测试通知",
    body: str = SHORT_TEXT,
) -> Notice:
    notices = runtime.broadcasting.notices
    notice = await notices.create(
        author, NoticeInput(kind=kind, title=title, body=body, township_id=township_id, repeats=1)
    )
    await notices.submit(author, notice.id)
    return await notices.approve(approver, notice.id)


async def zone_rows(runtime: Runtime, **where: Any) -> list[BroadcastZone]:
    async with runtime.sessions() as session:
        statement = select(BroadcastZone).order_by(BroadcastZone.id)
        for key, value in where.items():
            statement = statement.where(getattr(BroadcastZone, key) == value)
        return list((await session.scalars(statement)).all())


async def speaker_rows(runtime: Runtime, zone_run_id: int) -> list[BroadcastSpeaker]:
    async with runtime.sessions() as session:
        statement = select(BroadcastSpeaker).where(BroadcastSpeaker.zone_run_id == zone_run_id)
        return list((await session.scalars(statement.order_by(BroadcastSpeaker.id))).all())


async def count_zone_rows(runtime: Runtime) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count(BroadcastZone.id))) or 0)


async def wait_for_rows(
    runtime: Runtime,
    predicate: Any,
    timeout: float = 30.0,  # noqa: ASYNC109 - a budget every test shares, applied with asyncio.timeout inside
    **where: Any,
) -> list[BroadcastZone]:
    """Re-read the as-run rows on every dispatcher change until ``predicate(rows)`` holds."""
    dispatcher = runtime.broadcasting.dispatcher
    rows: list[BroadcastZone] = []

    async def check() -> bool:
        nonlocal rows
        rows = await zone_rows(runtime, **where)
        return bool(predicate(rows))

    async with asyncio.timeout(timeout):
        while not await check():
            # And every half second: a change made between the read and the wait would be missed.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await dispatcher.changed()
    return rows


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def shanghai(text: str) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("Asia/Shanghai"))


def journey_settings(data_dir: Path, database_url: str, **overrides: Any) -> Settings:
    """Broadcasting settings for a journey on the demo county: short items, quick verdicts, loopback only.

    The demo's RTP speakers are multicast groups: sent on loopback (``IP_MULTICAST_IF`` 127.0.0.1, TTL 0),
    nothing leaves the machine. A 4G terminal that never asks fails within a second and a half; items have
    no chime and short pauses, read fast, so a zone plays for a few seconds, not a minute.
    """
    values: dict[str, Any] = {
        "tts": FAST_SPEECH,
        "audio": FAST_AUDIO,
        "broadcast": BroadcastSettings(
            lower_priority_wait_s=60,
            pending_poll_s=0.2,
            http_poll_interval_s=0.5,
            terminal_start_timeout_s=1,
            terminal_finish_grace_s=1,
            rtp_multicast_interface="127.0.0.1",
            rtp_ttl=0,
        ),
        "scheduler": SchedulerSettings(resync_s=3600),
    }
    values.update(overrides)
    return make_settings(data_dir, database_url, **values)


async def demo_county(runtime: Runtime, logins_file: Path) -> dict[str, str]:
    """The demo county (places, speakers, accounts) as ``cunxiang demo`` loads it; returns user name → password."""
    from areas.demo import load_demo

    result = await load_demo(runtime.sessions, runtime.accounts, runtime.clock, logins_file)
    return result.new_logins
