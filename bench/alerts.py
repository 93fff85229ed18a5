"""Official warnings: a CAP message received → the first RTP packet at a loudspeaker, cold and warm speech cache.

    .venv/bin/python -m bench.alerts [--samples 100]

Each sample hands one CAP 1.2 message (an Actual 暴雨红色预警 for the county, policy 自动播出) to the alerts
service as a source would (``AlertService.receive``: size and DTD checks, the CAP 1.2 schema, our rules, the
de-duplication, the area match, the policy), through the real emergency path (a rendered emergency notice,
the dispatcher, the RTP sender) to a receiver on 127.0.0.1, and takes the time from the call to the first
packet. Then the alert is cancelled by hand and the zone left idle before the next sample.

* **cold**: every message's text differs (a number in the headline), so its speech is synthesised (espeak-ng),
  produced (ffmpeg) and cached before it plays;
* **warm**: the same text each time (only the identifier differs), so the speech is a cache hit.

The baseline, in the same run, interleaved sample by sample: the same text aired directly as an emergency
(what ``server.EmergencyAirer.air`` does for an alert) without the CAP intake — so the ratio is what taking a
warning in costs on top of airing it. Figures: count, median, p95, p99 (with ≥ 100 samples) and max per cache
state and path, the median and p99 ratios, the whole process's peak memory (and its ffmpeg children's).
The environment's ``CUNXIANG_*`` variables are ignored (the run's settings are its own); speech is the offline
engine only (espeak-ng), never a cloud.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any

COUNTY_CODE = "159901"
WARM_HEADLINE = "示例县气象局发布暴雨红色预警信号（第0号）"


def _cap(identifier: str, sent: datetime, headline: str) -> bytes:
    sent = sent.astimezone(UTC).replace(microsecond=0)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>qxj159901@bench.example.cn</sender>
  <sent>{sent.isoformat()}</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>zh-CN</language>
    <category>Met</category>
    <event>暴雨红色预警</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Observed</certainty>
    <expires>{(sent + timedelta(hours=6)).isoformat()}</expires>
    <senderName>示例县气象局</senderName>
    <headline>{headline}</headline>
    <description>过去三小时全县降雨量已达一百毫米以上，预计未来三小时仍有强降雨。</description>
    <instruction>请立即停止户外活动，远离河道和山洪沟，低洼地带人员转移到安全地方。</instruction>
    <parameter><valueName>预警级别</valueName><value>红色</value></parameter>
    <area>
      <areaDesc>示例县</areaDesc>
      <geocode><valueName>GB/T 2260</valueName><value>{COUNTY_CODE}</value></geocode>
    </area>
  </info>
</alert>
""".encode()


class FirstPacket:
    """A UDP receiver on loopback that tells when the next packet arrives (after the socket is drained)."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.setblocking(False)
        self.port: int = self.socket.getsockname()[1]
        self._arrived: asyncio.Future[float] | None = None
        asyncio.get_running_loop().add_reader(self.socket.fileno(), self._read)

    def _read(self) -> None:
        while True:
            try:
                self.socket.recv(2048)
            except BlockingIOError:
                return
            if self._arrived is not None and not self._arrived.done():
                self._arrived.set_result(time.perf_counter())

    def expect(self) -> asyncio.Future[float]:
        self._read()  # what is still in flight from the last play does not count
        self._arrived = asyncio.get_running_loop().create_future()
        return self._arrived

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.socket.fileno())
        self.socket.close()


def summary(values: list[float]) -> dict[str, Any]:
    """count, median, p95, p99 (only with at least 100 samples) and max, in milliseconds."""
    ordered = sorted(value * 1000 for value in values)
    found: dict[str, Any] = {"count": len(ordered), "max_ms": round(ordered[-1], 1) if ordered else None}
    if len(ordered) >= 100:
        found["median_ms"] = round(statistics.median(ordered), 1)
        found["p95_ms"] = round(ordered[int(0.95 * (len(ordered) - 1))], 1)
        found["p99_ms"] = round(ordered[int(0.99 * (len(ordered) - 1))], 1)
    elif ordered:
        found["median_ms"] = round(statistics.median(ordered), 1)  # a median only: too few for percentiles
    return found


async def run(samples: int) -> dict[str, Any]:
    for name in [name for name in os.environ if name.startswith("CUNXIANG_")]:
        del os.environ[name]  # the run's settings are its own, whatever the shell has set

    from sqlalchemy import select, update

    from accounts.service import principal_of
    from server import EmergencyAirer, build_runtime
    from settings import AudioSettings, DatabaseSettings, SecuritySettings, Settings, TtsSettings
    from storage.audit import Actor
    from storage.migrate import upgrade
    from storage.models import User, Village

    directory = Path(tempfile.mkdtemp(prefix="cx-bench-alerts-"))
    url = f"sqlite+aiosqlite:///{directory / 'cunxiang.db'}"
    await upgrade(url)
    settings = Settings(
        data_dir=directory,
        asterisk="none",
        database=DatabaseSettings(url=url),
        security=SecuritySettings(password_time_cost=1, password_memory_kib=1024, password_parallelism=1),
        tts=TtsSettings(engines=("espeak",)),
        audio=AudioSettings(default_repeats=1),
    )
    runtime = build_runtime(settings)
    receiver = FirstPacket()
    actor = Actor(user_id=None, username="bench")
    await runtime.accounts.create_user(
        actor, username="admin", display_name="管理员", password="Bench-pass-123", roles=["admin"], county_wide=True
    )
    async with runtime.sessions() as session:
        admin = principal_of((await session.scalars(select(User).where(User.username == "admin"))).one())
    areas = runtime.areas
    county = await areas.create_county(admin, name="示例县", code=COUNTY_CODE)
    # No quiet hours: the benchmark runs whatever the hour in Shanghai.
    township = await areas.create_township(
        admin,
        county_id=county.id,
        name="示例镇",
        code=f"{COUNTY_CODE}101",
        quiet_start=dt_time(0),
        quiet_end=dt_time(0),
    )
    village = await areas.create_village(admin, township_id=township.id, name="前进村")
    async with runtime.sessions.begin() as session:
        await session.execute(update(Village).where(Village.id == village.id).values(code=f"{COUNTY_CODE}101201"))
    zone = await areas.create_zone(admin, village_id=village.id, name="村委会广场")
    await areas.create_speaker(
        admin, zone_id=zone.id, name="音柱", transport="rtp", address=f"127.0.0.1:{receiver.port}"
    )

    service = runtime.alerts.service
    source, _ = await service.create_source(actor, name="基准推送", kind="push")
    dispatcher = runtime.broadcasting.dispatcher
    airer = EmergencyAirer(runtime.broadcasting)
    await dispatcher.start()

    async def until_idle() -> None:
        async with asyncio.timeout(60):
            await dispatcher.wait_until(dispatcher.idle)

    async def alert_path(number: int, headline: str) -> float:
        arrived = receiver.expect()
        started = time.perf_counter()
        receipt = await service.receive(source.id, _cap(f"BENCH-{number}", runtime.clock.now(), headline))
        async with asyncio.timeout(120):
            first = await arrived
        if receipt.state != "aired":
            raise RuntimeError(f"sample {number}: {receipt.state} {receipt.reason}")
        await service.cancel(admin, receipt.message_id)
        await until_idle()
        return first - started

    async def direct_path(headline: str) -> float:
        row = await service.get((await service.list_messages(limit=1))[0].id)  # the same title and text as aired
        author = await _system_user_id(runtime)
        arrived = receiver.expect()
        started = time.perf_counter()
        title = row.spoken_lead or ""
        text = (row.spoken_text or "").replace(row.headline, headline) if row.headline else row.spoken_text or ""
        _notice_id, broadcast_id = await airer.air(author_id=author, title=title, text=text, zone_ids=[zone.id])
        async with asyncio.timeout(120):
            first = await arrived
        await dispatcher.cancel(broadcast_id, "基准测试")
        await until_idle()
        return first - started

    results: dict[str, Any] = {}
    number = 0
    try:
        for state in ("cold", "warm"):
            ours: list[float] = []
            baseline: list[float] = []
            if state == "warm":  # one unmeasured round puts both texts in the cache
                number += 1
                await alert_path(number, WARM_HEADLINE)
                await direct_path(WARM_HEADLINE)
            for index in range(samples):
                number += 1
                text_number = number if state == "cold" else 0
                # Interleaved: load on the machine hits both paths alike. The baseline's text differs from the
                # alert's in the cold state (its own number) so that it too is rendered, not found in the cache.
                ours.append(await alert_path(number, f"示例县气象局发布暴雨红色预警信号（第{text_number}号）"))
                base_number = -number if state == "cold" else 0
                baseline.append(await direct_path(f"示例县气象局发布暴雨红色预警信号（第{base_number}号）"))
                if (index + 1) % 20 == 0:
                    print(f"  {state}: {index + 1}/{samples}", flush=True)
            mine, theirs = summary(ours), summary(baseline)
            results[state] = {
                "alert_received_to_first_packet": mine,
                "baseline_direct_emergency": theirs,
                "median_ratio": round(mine["median_ms"] / theirs["median_ms"], 2),
                "p99_ratio": round(mine["p99_ms"] / theirs["p99_ms"], 2) if "p99_ms" in mine else None,
            }
    finally:
        receiver.close()
        await dispatcher.stop()
        await runtime.engine.dispose()
    results["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    results["peak_rss_children_mib"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    return results


async def _system_user_id(runtime: Any) -> int:
    from sqlalchemy import select

    from alerts.service import SYSTEM_USERNAME
    from storage.models import User

    async with runtime.sessions() as session:
        found = await session.scalar(select(User.id).where(User.username == SYSTEM_USERNAME))
    assert found is not None  # written by the first alert that aired
    return int(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=100, help="per cache state and path (≥ 100 for p95/p99)")
    args = parser.parse_args()
    print("alerts, received → first RTP packet:", asyncio.run(run(args.samples)), flush=True)


if __name__ == "__main__":
    main()
