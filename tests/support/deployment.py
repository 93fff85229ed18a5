"""A real installation for fault tests: `cunxiang init`, a small county prepared through the domain services,
and `cunxiang serve` processes that the test kills, stops and starts while RTP receivers count.

Everything stays on this machine: the service is told to play to loopback RTP receivers
(:mod:`tests.support.receivers`). The test's own runtime (same database, same data directory)
prepares places and notices and reads the as-run log; it never runs the dispatcher itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select

from server import Runtime, build_runtime
from settings import AudioSettings, BroadcastSettings, SchedulerSettings, Settings, TtsSettings
from storage.models import RUN_PLAYING, RUN_UNPROCESSED, RUN_WAITING, Broadcast, BroadcastSpeaker, BroadcastZone, Notice
from tests.support.cli import environment, run
from tests.support.receivers import item_payloads
from tests.support.settings import make_settings
from tts.cache import AudioCache

T = TypeVar("T")

# The service's settings in these tests, as environment variables (the test's own runtime gets the same).
FAULT_ENVIRONMENT = {
    "CUNXIANG_TTS_ENGINES": "espeak",
    "CUNXIANG_AUDIO_DEFAULT_REPEATS": "1",
    "CUNXIANG_BROADCAST_PENDING_POLL_S": "0.2",
    "CUNXIANG_BROADCAST_HEARTBEAT_S": "0.5",
    "CUNXIANG_SCHEDULER_RESYNC_S": "0.5",
}


@dataclass
class Deployment:
    """One installation: its data directory, database, and the environment its `serve` processes get."""

    data_dir: Path
    database_url: str
    extra_environment: Mapping[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return environment(
            self.data_dir, CUNXIANG_DATABASE_URL=self.database_url, **FAULT_ENVIRONMENT, **self.extra_environment
        )

    @property
    def settings(self) -> Settings:
        grace = float(self.extra_environment.get("CUNXIANG_SCHEDULER_CATCH_UP_GRACE_S", 600))
        return make_settings(
            self.data_dir,
            self.database_url,
            tts=TtsSettings(engines=("espeak",)),
            audio=AudioSettings(default_repeats=1),
            broadcast=BroadcastSettings(pending_poll_s=0.2, heartbeat_s=0.5),
            scheduler=SchedulerSettings(resync_s=0.5, catch_up_grace_s=grace),
        )

    def init(self) -> None:
        done = run(["init"], self.env)
        assert done.returncode == 0, done.stderr

    def call(self, job: Callable[[Runtime], Awaitable[T]]) -> T:
        """Run ``job`` with a runtime of this installation (from a synchronous test), then dispose of it."""

        async def main() -> T:
            runtime = build_runtime(self.settings)
            try:
                return await job(runtime)
            finally:
                await runtime.engine.dispose()

        return asyncio.run(main())

    def zone_rows(self, **where: Any) -> list[BroadcastZone]:
        async def read(runtime: Runtime) -> list[BroadcastZone]:
            async with runtime.sessions() as session:
                statement = select(BroadcastZone).order_by(BroadcastZone.id)
                for key, value in where.items():
                    statement = statement.where(getattr(BroadcastZone, key) == value)
                return list((await session.scalars(statement)).all())

        return self.call(read)

    def idle(self) -> bool:
        """Nothing requested, waiting, playing or left to replay, as the database says.

        (Read from the tables, not /healthz: its details are for signed-in admins.)
        """

        async def read(runtime: Runtime) -> bool:
            async with runtime.sessions() as session:
                open_zones = await session.scalars(
                    select(BroadcastZone.id)
                    .where(BroadcastZone.state.in_((RUN_WAITING, RUN_PLAYING)) | BroadcastZone.replay_pending.is_(True))
                    .limit(1)
                )
                requested = await session.scalars(
                    select(Broadcast.id).where(Broadcast.state == RUN_UNPROCESSED).limit(1)
                )
                return open_zones.first() is None and requested.first() is None

        return self.call(read)

    def speaker_rows(self, zone_run_id: int) -> list[BroadcastSpeaker]:
        async def read(runtime: Runtime) -> list[BroadcastSpeaker]:
            async with runtime.sessions() as session:
                statement = select(BroadcastSpeaker).where(BroadcastSpeaker.zone_run_id == zone_run_id)
                return list((await session.scalars(statement.order_by(BroadcastSpeaker.id))).all())

        return self.call(read)

    def payloads(self, notice: Notice) -> tuple[str, ...]:
        """The packets ``notice``'s item is sent as (its RTP file in this installation's audio cache)."""
        assert notice.audio_keys is not None
        entry = AudioCache(self.data_dir / "audio", max_bytes=1).get(notice.audio_keys["rtp"], touch=False)
        assert entry is not None, f"notice {notice.id}'s RTP audio is not in the cache"
        return item_payloads(entry.path)
