"""Schedules as a part of the service: its configuration from the settings, and its pieces built and wired.

The schedule service (rules, previews, the week view, conflicts) in every
process; the scheduler, which fires due occurrences, on the elected worker
only (``worker_services``). What plays an occurrence is an
:class:`schedules.scheduler.OccurrenceHandler` — the broadcast dispatcher,
handed in by ``server.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.clock import Clock
from common.health import HealthRegistry
from common.lifecycle import Service
from schedules.scheduler import OccurrenceHandler, Scheduler
from schedules.service import ScheduleService
from settings import SchedulerSettings, Settings


@dataclass(frozen=True)
class SchedulesConfig:
    scheduler: SchedulerSettings
    zone: ZoneInfo
    # How early an occurrence is handed to its handler (the broadcast dispatcher's pre-roll).
    lead_s: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SchedulesConfig:
        return cls(scheduler=settings.scheduler, zone=settings.zone, lead_s=settings.broadcast.preroll_s)


@dataclass
class Schedules:
    service: ScheduleService
    scheduler: Scheduler
    worker_services: list[Service] = field(default_factory=list)


def build_schedules(
    config: SchedulesConfig,
    *,
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    health: HealthRegistry,
    occurrences: OccurrenceHandler,
) -> Schedules:
    timing = config.scheduler
    service = ScheduleService(
        sessions, clock, config.zone, plan_days=timing.plan_days, preview_limit=timing.preview_limit
    )
    scheduler = Scheduler(
        sessions,
        clock,
        config.zone,
        occurrences,
        service,
        catch_up_grace_s=timing.catch_up_grace_s,
        missed_lookback_h=timing.missed_lookback_h,
        misfire_grace_s=timing.misfire_grace_s,
        resync_s=timing.resync_s,
        lead_s=config.lead_s,
    )
    # A schedule saved in this process takes effect at once (other processes: the scheduler's resync).
    service.on_change(scheduler.schedule_changed)
    health.register("scheduler", scheduler.health)
    return Schedules(service, scheduler, worker_services=[scheduler])
