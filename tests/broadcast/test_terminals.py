"""The 4G terminal side: every poll is a heartbeat, but last_seen_at is not rewritten on every poll."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from broadcast.terminals import TerminalEvents, TerminalService
from common.clock import ManualClock
from server import Runtime
from storage.models import Speaker
from tests.support.broadcasting import build_place, make_principal


async def _last_seen(runtime: Runtime, speaker_id: int) -> datetime | None:
    async with runtime.sessions() as session:
        speaker = await session.get(Speaker, speaker_id)
        assert speaker is not None
        return speaker.last_seen_at


async def test_polls_mark_a_terminal_online_but_write_last_seen_only_when_it_is_a_quarter_timeout_old(
    runtime: Runtime,
) -> None:
    admin = await make_principal(runtime, "terminal-admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "甲乡", [[]])
    speaker, token = await runtime.areas.create_speaker(
        admin, zone_id=place.zone_ids[0], name="4G音箱", transport="http", address="t00001"
    )
    assert token is not None
    clock = ManualClock(datetime(2026, 11, 25, 7, 0, tzinfo=UTC))
    terminals = TerminalService(
        runtime.sessions,
        clock,
        runtime.speech.cache,
        TerminalEvents(),
        poll_interval_s=5,
        heartbeat_timeout_s=60,
    )
    bearer = f"Bearer {token}"
    assert await _last_seen(runtime, speaker.id) is None

    await terminals.now(bearer)
    first = clock.now()
    assert await _last_seen(runtime, speaker.id) == first

    # Polls every 5 s within the quarter timeout (15 s) leave the row alone …
    for _ in range(2):
        clock.advance(timedelta(seconds=5))
        await terminals.now(bearer)
        assert await _last_seen(runtime, speaker.id) == first
    # … and the terminal still shows online: what was written is well within the timeout.
    async with runtime.sessions() as session:
        row = await session.get(Speaker, speaker.id)
        assert row is not None and terminals.online(row)

    clock.advance(timedelta(seconds=5))  # 15 s after the write: written again
    await terminals.heartbeat(bearer, {})
    assert await _last_seen(runtime, speaker.id) == clock.now()

    # A terminal that falls silent shows offline once the timeout has passed.
    clock.advance(timedelta(seconds=61))
    async with runtime.sessions() as session:
        row = await session.get(Speaker, speaker.id)
        assert row is not None and not terminals.online(row)
