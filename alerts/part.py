"""Official warnings as a part of the service: its configuration from the settings, and the service built.

What it needs from broadcasting (air now as an emergency, stop what aired) arrives as an
:class:`alerts.service.AlertBroadcaster`, handed in by ``server.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts.service import AlertBroadcaster, AlertsConfig, AlertService
from common.clock import Clock
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
    broadcaster: AlertBroadcaster,
) -> Alerts:
    return Alerts(service=AlertService(sessions, clock, config, broadcaster))
