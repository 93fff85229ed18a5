"""/metrics in the Prometheus text format: what the tables and the parts' health already know, read at scrape time.

Counters that must survive a restart and agree across processes (broadcasts, speaker runs, calls) are counted
from the database, the one place that knows them all: any process answers the same numbers, and a restart
resets nothing. Live state (AMI link, speech engines, scheduler, dispatcher, worker role) comes from the
health registry each part already fills; disk and clock from their watches.

Every source is read on its own: one that fails (the database down) is counted in
``cunxiang_metrics_source_up{source=…} 0`` and the rest is still answered — /metrics never answers 500,
because the moment a source breaks is the moment the operator scrapes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from statistics import median
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.clock import Clock
from common.health import HealthRegistry
from ops.clock import ClockWatch
from ops.disk import LEVEL_ORDER, DiskWatch
from storage.models import AlarmCall, Broadcast, BroadcastSpeaker, BroadcastZone, Call, Case, OpsAlarm, Speaker

log = logging.getLogger(__name__)

# Run states by name (the numbers are the as-run log's: storage.models.broadcast).
RUN_OUTCOMES = {
    0: "unprocessed",
    1: "waiting",
    2: "playing",
    3: "success",
    4: "failed",
    5: "cancelled",
    6: "interrupted",
    7: "missed",
    8: "skipped",
}
HEALTH_STATES = ("ok", "degraded", "down", "disabled", "standby")
BREAKER_STATES = ("closed", "half-open", "open")
# Lateness and hang-up → case latency are summarised over this window (a gauge each: median, p95, max).
RECENT = timedelta(hours=24)
# A source slower than this (a database under a lock) is marked down for this scrape: Prometheus gives up
# on the whole scrape after its own timeout (10 s by default), and the other sources must still arrive.
SOURCE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class MetricsSources:
    """Everything /metrics reads; the composition root hands it over."""

    sessions: async_sessionmaker[AsyncSession]
    health: HealthRegistry
    disk: DiskWatch
    clock_watch: ClockWatch
    clock: Clock
    cache_bytes: Callable[[], int]
    cache_limit_bytes: int
    terminal_timeout_s: float
    version: str


class _Families(Collector):
    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


async def scrape(sources: MetricsSources) -> bytes:
    """The whole exposition; a failing source is marked down and skipped, never raised."""
    families: list[Metric] = []
    source_up = GaugeMetricFamily(
        "cunxiang_metrics_source_up",
        "Whether a source of these metrics could be read (1) or not (0)",
        labels=["source"],
    )
    readers: list[tuple[str, Callable[[MetricsSources], Awaitable[list[Metric]]]]] = [
        ("service", _service),
        ("database", _database),
        ("health", _health),
        ("disk", _disk),
        ("clock", _clock),
        ("cache", _cache),
    ]
    for name, reader in readers:
        try:
            async with asyncio.timeout(SOURCE_TIMEOUT_S):
                families.extend(await reader(sources))
        except Exception as exc:  # noqa: BLE001 - one broken source must not hide the others, nor answer 500
            log.warning("metrics source %s failed: %r", name, exc)
            source_up.add_metric([name], 0)
        else:
            source_up.add_metric([name], 1)
    families.append(source_up)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


async def _service(sources: MetricsSources) -> list[Metric]:
    info = GaugeMetricFamily("cunxiang_info", "This process's version", labels=["version"])
    info.add_metric([sources.version], 1)
    return [info]


def _stats(name: str, help_text: str, values: list[float]) -> list[Metric]:
    """Median, p95 and max of ``values`` as one gauge with a ``stat`` label, and how many there were."""
    gauge = GaugeMetricFamily(name, help_text, labels=["stat"])
    count = GaugeMetricFamily(f"{name}_samples", f"How many values {name} summarises (last 24 h)")
    count.add_metric([], len(values))
    if values:
        ordered = sorted(values)
        gauge.add_metric(["median"], median(ordered))
        gauge.add_metric(["p95"], ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))])
        gauge.add_metric(["max"], ordered[-1])
    return [gauge, count]


async def _database(sources: MetricsSources) -> list[Metric]:
    now = sources.clock.now()
    since = now - RECENT
    async with sources.sessions() as session:
        speaker_runs = (
            await session.execute(
                select(BroadcastSpeaker.transport, BroadcastSpeaker.state, func.count()).group_by(
                    BroadcastSpeaker.transport, BroadcastSpeaker.state
                )
            )
        ).all()
        broadcasts = (
            await session.execute(
                select(Broadcast.origin, Broadcast.state, func.count()).group_by(Broadcast.origin, Broadcast.state)
            )
        ).all()
        speakers = (
            await session.execute(
                select(Speaker.transport, Speaker.enabled, func.count()).group_by(Speaker.transport, Speaker.enabled)
            )
        ).all()
        seen_since = now - timedelta(seconds=sources.terminal_timeout_s)
        online = (
            await session.execute(
                select(Speaker.transport, func.count())
                .where(Speaker.enabled.is_(True), Speaker.last_seen_at >= seen_since)
                .group_by(Speaker.transport)
            )
        ).all()
        starts = (
            await session.execute(
                select(BroadcastZone.scheduled_at, BroadcastZone.started_at).where(BroadcastZone.started_at >= since)
            )
        ).all()
        calls = (
            await session.execute(
                select(Call.kind, Call.outcome, Call.test_call, func.count()).group_by(
                    Call.kind, Call.outcome, Call.test_call
                )
            )
        ).all()
        cases = (
            await session.execute(select(Case.channel, Case.status, func.count()).group_by(Case.channel, Case.status))
        ).all()
        case_after_hangup = (
            await session.execute(
                select(Call.ended_at, Case.created_at)
                .join(Case, Case.id == Call.case_id)
                .where(Call.ended_at.is_not(None), Case.created_at >= since)
            )
        ).all()
        alarms = (
            await session.execute(
                select(OpsAlarm.kind, OpsAlarm.state, func.count()).group_by(OpsAlarm.kind, OpsAlarm.state)
            )
        ).all()
        alarm_calls = (await session.execute(select(AlarmCall.state, func.count()).group_by(AlarmCall.state))).all()

    runs = CounterMetricFamily(
        "cunxiang_broadcast_speaker_runs",
        "Broadcasts to one speaker, by transport and outcome (as-run log)",
        labels=["transport", "outcome"],
    )
    for transport, state, count in speaker_runs:
        runs.add_metric([transport, RUN_OUTCOMES.get(state, str(state))], count)
    by_origin = CounterMetricFamily(
        "cunxiang_broadcasts",
        "Broadcasts by origin (schedule, emergency, manual, test) and outcome",
        labels=["origin", "outcome"],
    )
    for origin, state, count in broadcasts:
        by_origin.add_metric([origin, RUN_OUTCOMES.get(state, str(state))], count)
    configured = GaugeMetricFamily(
        "cunxiang_speakers", "Speakers configured, by transport and whether enabled", labels=["transport", "enabled"]
    )
    for transport, enabled, count in speakers:
        configured.add_metric([transport, "true" if enabled else "false"], count)
    online_gauge = GaugeMetricFamily(
        "cunxiang_speakers_online",
        "Enabled speakers heard from within the heartbeat timeout (4G terminals report; SIP and RTP do not)",
        labels=["transport"],
    )
    for transport, count in online:
        online_gauge.add_metric([transport], count)
    lateness = [
        max(0.0, (started - scheduled).total_seconds()) for scheduled, started in starts if started and scheduled
    ]
    call_counter = CounterMetricFamily(
        "cunxiang_calls", "Hotline calls by kind and outcome (test calls apart)", labels=["kind", "outcome", "test"]
    )
    for kind, outcome, test_call, count in calls:
        call_counter.add_metric([kind, outcome, "true" if test_call else "false"], count)
    case_gauge = GaugeMetricFamily("cunxiang_cases", "Cases by channel and status", labels=["channel", "status"])
    for channel, status, count in cases:
        case_gauge.add_metric([channel, status], count)
    latency = [max(0.0, (created - ended).total_seconds()) for ended, created in case_after_hangup if ended]
    alarm_gauge = GaugeMetricFamily(
        "cunxiang_alarms", "Alarms by phone by kind and state (open: still calling)", labels=["kind", "state"]
    )
    for alarm_kind, alarm_state, count in alarms:
        alarm_gauge.add_metric([alarm_kind, alarm_state], count)
    alarm_call_counter = CounterMetricFamily(
        "cunxiang_alarm_calls", "Calls to duty officers by outcome (acknowledged: pressed 1)", labels=["state"]
    )
    for call_state, count in alarm_calls:
        alarm_call_counter.add_metric([call_state], count)
    return [
        runs,
        by_origin,
        configured,
        online_gauge,
        *_stats(
            "cunxiang_broadcast_start_lateness_seconds",
            "How late zone broadcasts started after their planned time, over the last 24 h",
            lateness,
        ),
        call_counter,
        case_gauge,
        *_stats(
            "cunxiang_hangup_to_case_seconds",
            "From a call's hang-up to its case existing, over the last 24 h",
            latency,
        ),
        alarm_gauge,
        alarm_call_counter,
    ]


async def _health(sources: MetricsSources) -> list[Metric]:
    report = await sources.health.report()
    status = GaugeMetricFamily(
        "cunxiang_component_status",
        "Each part's health state (1 for the state it is in)",
        labels=["component", "state"],
    )
    for component, entry in report.items():
        for state in HEALTH_STATES:
            status.add_metric([component, state], 1 if entry.get("status") == state else 0)
    families: list[Metric] = [status]
    worker = report.get("worker", {})
    active = GaugeMetricFamily("cunxiang_worker_active", "Whether this process is the active worker")
    active.add_metric([], 1 if worker.get("role") == "active" else 0)
    families.append(active)
    families.extend(_ami(report.get("ami")))
    families.extend(_tts(report.get("tts")))
    scheduler = report.get("scheduler", {})
    if "schedules" in scheduler:
        planned = GaugeMetricFamily("cunxiang_scheduler_schedules", "Schedules the active scheduler has planned")
        planned.add_metric([], scheduler["schedules"])
        families.append(planned)
    dispatcher = report.get("dispatcher", {})
    if "waiting" in dispatcher:
        waiting = GaugeMetricFamily("cunxiang_dispatcher_waiting", "Broadcasts queued behind a playing one, all zones")
        waiting.add_metric([], dispatcher["waiting"])
        playing = GaugeMetricFamily("cunxiang_dispatcher_zones_playing", "Zones playing a broadcast now")
        playing.add_metric([], dispatcher.get("zones_playing", 0))
        families.extend([waiting, playing])
    return families


def _ami(ami: dict[str, Any] | None) -> list[Metric]:
    if ami is None or ami.get("status") in ("standby", "disabled"):
        return []  # telephony off, or another process holds the link
    connected = GaugeMetricFamily("cunxiang_ami_connected", "Whether the AMI link to Asterisk is up")
    connected.add_metric([], 1 if ami.get("status") == "ok" else 0)
    connects = CounterMetricFamily(
        "cunxiang_ami_connections", "Successful AMI logins since this process became the worker (reconnects + 1)"
    )
    connects.add_metric([], ami.get("connections", 0))
    return [connected, connects]


def _tts(tts: dict[str, Any] | None) -> list[Metric]:
    if not tts:
        return []
    engines: dict[str, dict[str, Any]] = tts.get("engines", {})
    order: list[str] = tts.get("order", list(engines))
    breaker = GaugeMetricFamily(
        "cunxiang_tts_breaker", "Each speech engine's breaker (1 for its state)", labels=["engine", "state"]
    )
    spoken = CounterMetricFamily("cunxiang_tts_spoken", "Texts each engine spoke since start", labels=["engine"])
    in_use = GaugeMetricFamily(
        "cunxiang_tts_engine_in_use", "The engine new speech goes to first (the first not skipped)", labels=["engine"]
    )
    first_open = next((name for name in order if engines.get(name, {}).get("breaker") != "open"), None)
    for name in order:
        entry = engines.get(name, {})
        for state in BREAKER_STATES:
            breaker.add_metric([name, state], 1 if entry.get("breaker") == state else 0)
        spoken.add_metric([name], entry.get("spoken", 0))
        in_use.add_metric([name], 1 if name == first_open else 0)
    return [breaker, spoken, in_use]


async def _disk(sources: MetricsSources) -> list[Metric]:
    free = GaugeMetricFamily(
        "cunxiang_disk_free_bytes", "Free space for the service, by watched folder", labels=["folder"]
    )
    total = GaugeMetricFamily("cunxiang_disk_total_bytes", "Size of the disk holding each folder", labels=["folder"])
    level = GaugeMetricFamily(
        "cunxiang_disk_level", "0 enough space, 1 warning, 2 uploads and approvals refused", labels=["folder"]
    )
    for reading in sources.disk.readings:
        free.add_metric([reading.name], reading.free_bytes)
        total.add_metric([reading.name], reading.total_bytes)
        level.add_metric([reading.name], LEVEL_ORDER[reading.level])
    return [free, total, level]


async def _clock(sources: MetricsSources) -> list[Metric]:
    state = sources.clock_watch.state
    families: list[Metric] = []
    known = GaugeMetricFamily("cunxiang_clock_sync_known", "Whether the system said if its clock is synchronised")
    known.add_metric([], 0 if state.synchronized is None else 1)
    families.append(known)
    if state.synchronized is not None:
        synced = GaugeMetricFamily("cunxiang_clock_synchronized", "Whether the system clock is synchronised")
        synced.add_metric([], 1 if state.synchronized else 0)
        families.append(synced)
    if state.offset_s is not None:
        offset = GaugeMetricFamily("cunxiang_clock_offset_seconds", "The system clock's offset from its time servers")
        offset.add_metric([], state.offset_s)
        families.append(offset)
    return families


async def _cache(sources: MetricsSources) -> list[Metric]:
    used = GaugeMetricFamily("cunxiang_audio_cache_bytes", "Rendered audio kept in the cache")
    used.add_metric([], await asyncio.to_thread(sources.cache_bytes))  # a directory walk: off the loop
    limit = GaugeMetricFamily("cunxiang_audio_cache_limit_bytes", "The cache's size limit (audio.cache_max_mb)")
    limit.add_metric([], sources.cache_limit_bytes)
    return [used, limit]
