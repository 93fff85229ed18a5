"""Official warnings as a part of the service: its configuration from the settings, and the service built.

The feed poller and the drop-folder watcher run on the elected worker. What it needs from broadcasting (air
now as an emergency, stop what aired) arrives as an :class:`alerts.service.AlertBroadcaster`, handed in by
``server.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts.service import AlertBroadcaster, AlertsConfig, AlertService
from alerts.sources import FeedPoller, FolderWatcher, RepeatRunner
from common.clock import Clock
from common.health import HealthRegistry
from common.lifecycle import Service


@dataclass
class Alerts:
    service: AlertService
    services: list[Service] = field(default_factory=list)
    worker_services: list[Service] = field(default_factory=list)


def build_alerts(
    config: AlertsConfig,
    *,
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    health: HealthRegistry,
    broadcaster: AlertBroadcaster,
) -> Alerts:
    service = AlertService(sessions, clock, config, broadcaster)
    health.register("alerts", service.health)
    # Only the elected worker fetches: two processes polling one feed would only find duplicates.
    return Alerts(
        service=service,
        worker_services=[FeedPoller(service, clock), FolderWatcher(service), RepeatRunner(service)],
    )
