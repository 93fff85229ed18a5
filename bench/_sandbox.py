"""A whole hotline service on a throwaway Asterisk sandbox instance, for the hotline benchmarks.

The same parts the tests use (tests/support/asterisk.py): a fresh instance with free ports, our
configuration and prompts (espeak-ng, spoken fast), a database (SQLite in the work directory unless
``database_url`` names another, e.g. a throwaway PostgreSQL cluster's), and the service itself
listening on a free port with its elected worker connected to Asterisk.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from aiohttp import web

from hotline.part import Telephony, sandbox_up
from hotline.recordings import inspect
from server import Runtime, build_runtime, create_app, settle_heap
from settings import DatabaseSettings, SecuritySettings, Settings, WorkerSettings
from storage.migrate import upgrade
from tests.support.asterisk import SandboxInstance, free_port, provision

VILLAGER_SENTENCE = "我是东村的王大娘。村口那座桥裂了一道大口子，娃娃们上学天天走，太危险了，请你们快来看看。"


@dataclass
class Service:
    settings: Settings
    runtime: Runtime
    telephony: Telephony
    instance: SandboxInstance
    url: str
    villager_audio: PurePosixPath
    villager_seconds: float


@asynccontextmanager
async def hotline_service(
    workdir: Path, database_url: str | None = None, *, hotline: Mapping[str, Any] | None = None, **ivr: Any
) -> AsyncIterator[Service]:
    """``hotline``: settings of the hotline section to change (the live benchmark turns 实时喊话 on)."""
    instance = SandboxInstance.new(provision())
    values = instance.settings_values(**ivr)
    if hotline:
        values["hotline"] = values["hotline"].model_copy(update=dict(hotline))
    database = database_url or f"sqlite+aiosqlite:///{workdir / 'data' / 'cunxiang.db'}"
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    settings = Settings(
        data_dir=workdir / "data",
        database=DatabaseSettings(url=database),
        security=SecuritySettings(password_time_cost=1, password_memory_kib=1024, password_parallelism=1),
        worker=WorkerSettings(election_interval_s=0.2),
        **values,
    )
    await upgrade(database)
    runner: web.AppRunner | None = None
    try:
        await sandbox_up(settings, provision=False)
        runtime = build_runtime(settings)
        telephony = runtime.hotline.telephony
        assert telephony is not None and telephony.prompts is not None and telephony.media is not None
        telephony.paths.prepare()
        await telephony.prompts.install()
        audio = await telephony.media.sentence(VILLAGER_SENTENCE, "bench-villager")
        seconds = inspect(telephony.paths.media.to_host(f"{audio}.wav")).duration_s
        runner = web.AppRunner(create_app(settings, runtime=runtime), handle_signals=False, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await telephony.link.wait_connected(60)
        settle_heap()  # as ``serve`` does once the service is up
        yield Service(settings, runtime, telephony, instance, f"http://127.0.0.1:{port}", audio, seconds)
    finally:
        if runner is not None:
            await runner.cleanup()
        await asyncio.to_thread(instance.stop_and_remove)
