"""Operations, built from its settings: the disk watch, the clock watch, what /metrics reads, and the alarms.

The alarms phone people through the hotline's line and speak through its TTS (``ops.alarms.AlarmLine`` and
``Speaker``, the protocols defined there); ``server.py`` hands both in (None with ``asterisk = none``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.clock import Clock
from common.health import HealthRegistry
from common.lifecycle import Service
from ops.alarms import (
    AlarmConfig,
    AlarmLine,
    AlarmService,
    Speaker,
    SpoolLine,
    WorkerWatch,
    disk_trouble,
    emergency_failures,
    health_troubles,
)
from ops.clock import ClockWatch
from ops.disk import MIB, DiskLimits, DiskWatch
from ops.metrics import MetricsSources
from settings import OpsSettings, Settings

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class OpsConfig:
    ops: OpsSettings
    data_dir: Path
    # 4G terminals heard from within this long count as online (broadcast.terminal_heartbeat_timeout_s).
    terminal_timeout_s: float
    cache_limit_bytes: int
    timezone: ZoneInfo

    @classmethod
    def from_settings(cls, settings: Settings) -> OpsConfig:
        return cls(
            ops=settings.ops,
            data_dir=settings.data_dir,
            terminal_timeout_s=settings.broadcast.terminal_heartbeat_timeout_s,
            cache_limit_bytes=settings.audio.cache_max_mb * MIB,
            timezone=settings.zone,
        )

    @property
    def alarms(self) -> AlarmConfig:
        ops = self.ops
        return AlarmConfig(
            interval_s=ops.alarm_interval_s,
            after_s=ops.alarm_after_s,
            quiet_s=ops.alarm_quiet_s,
            ring_s=ops.alarm_ring_s,
            round_interval_s=ops.alarm_round_interval_s,
            rounds=ops.alarm_rounds,
            dial_template=ops.alarm_dial_template,
        )

    @property
    def disk_limits(self) -> DiskLimits:
        ops = self.ops
        return DiskLimits(
            warn_free_percent=ops.disk_warn_free_percent,
            warn_free_bytes=ops.disk_warn_free_mb * MIB,
            refuse_free_percent=ops.disk_refuse_free_percent,
            refuse_free_bytes=ops.disk_refuse_free_mb * MIB,
        )

    @property
    def metrics_networks(self) -> tuple[IPNetwork, ...]:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in self.ops.metrics_allow_from)


@dataclass
class Ops:
    config: OpsConfig
    disk: DiskWatch
    clock_watch: ClockWatch
    metrics: MetricsSources
    alarms: AlarmService
    worker_watch: WorkerWatch
    # Every process watches (every process takes uploads and approvals, and answers /metrics).
    services: list[Service] = field(default_factory=list)
    # Only the elected worker raises alarms and phones people (one call, never two).
    worker_services: list[Service] = field(default_factory=list)


def build_ops(
    config: OpsConfig,
    *,
    watched: Mapping[str, Path],
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    health: HealthRegistry,
    cache_bytes: Callable[[], int],
    version: str,
    line: AlarmLine | None = None,
    speak: Speaker | None = None,
    spool: SpoolLine | None = None,
    worker_heartbeat: str = "dispatcher",
) -> Ops:
    """``watched``: the folders the parts write to, by name (data, recordings, audio, uploads, spool).

    ``spool``: calls placed without AMI (by the worker when its link is down, by any process when the worker is);
    ``worker_heartbeat``: the name of the worker's heartbeat row the worker watch reads.
    """
    ops = config.ops
    disk = DiskWatch(
        {"data": config.data_dir, **watched}, config.disk_limits, interval_s=ops.disk_interval_s, clock=clock
    )
    clock_watch = ClockWatch(
        timedatectl=ops.timedatectl,
        chronyc=ops.chronyc,
        max_offset_s=ops.clock_max_offset_ms / 1000,
        interval_s=ops.clock_interval_s,
        command_timeout_s=ops.clock_command_timeout_s,
        clock=clock,
    )
    health.register_component(disk.health)
    health.register_component(clock_watch.health)
    metrics = MetricsSources(
        sessions=sessions,
        health=health,
        disk=disk,
        clock_watch=clock_watch,
        clock=clock,
        cache_bytes=cache_bytes,
        cache_limit_bytes=config.cache_limit_bytes,
        terminal_timeout_s=config.terminal_timeout_s,
        version=version,
    )
    alarms = AlarmService(
        sessions,
        clock,
        config.alarms,
        timezone=config.timezone,
        checks=[
            emergency_failures(sessions, clock, ops.alarm_emergency_lookback_s),
            disk_trouble(disk),
            health_troubles(health),
        ],
        line=line,
        speak=speak,
        spool=spool,
    )
    health.register_component(alarms.health)
    worker_watch = WorkerWatch(
        alarms,
        sessions,
        clock,
        heartbeat=worker_heartbeat,
        after_s=ops.worker_down_after_s,
        interval_s=ops.alarm_interval_s,
    )
    return Ops(
        config,
        disk,
        clock_watch,
        metrics,
        alarms,
        worker_watch,
        services=[disk, clock_watch, worker_watch],
        worker_services=[alarms],
    )
