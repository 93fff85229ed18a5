"""手机喊话 as a part of the service: its configuration from the settings (``[phonecast]``), the desk the line
asks, the admin side for the pages, and the follower that runs on the elected worker.

What it needs of broadcasting arrives as a :class:`phonecast.desk.PhoneAirer`, handed in by ``server.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.limiter import LimiterPolicy, LoginLimiter
from accounts.passwords import Passwords
from common.clock import Clock
from common.lifecycle import Service
from hotline.phonecast import PhonecastDesk
from phonecast.desk import Desk, DeskConfig, PhoneAirer, PhonecastFollower
from phonecast.service import PhonecastAdmin
from settings import Settings


def recordings_directory(settings: Settings) -> Path:
    """Where phone broadcasts' recordings are kept (backed up with the others)."""
    return settings.data_dir / "phonecast"


@dataclass(frozen=True)
class PhonecastConfig:
    desk: DeskConfig
    # The line's number, printed on the cadres' cards: the published number when it is set, otherwise the DID
    # the line answers on (hotline.phonecast_did), so a card never shows a number the line does not answer.
    line_number: str
    # PINs are hashed like passwords (``[security]`` argon2id cost).
    password_time_cost: int
    password_memory_kib: int
    password_parallelism: int

    @classmethod
    def from_settings(cls, settings: Settings) -> PhonecastConfig:
        section = settings.phonecast
        return cls(
            desk=DeskConfig(
                recordings_dir=recordings_directory(settings),
                zone=settings.zone,
                pin_policy=LimiterPolicy(
                    pair_free_attempts=section.pin_free_attempts,
                    name_free_attempts=section.pin_user_free_attempts,
                    address_free_attempts=section.pin_number_free_attempts,
                    base_delay_s=section.pin_base_delay_s,
                    max_delay_s=section.pin_max_delay_s,
                    window_s=section.pin_window_s,
                ),
                repeats=section.repeats,
                start_wait_s=section.start_wait_s,
                live_start_wait_s=section.live_start_wait_s,
                due_poll_s=section.due_poll_s,
            ),
            line_number=section.line_number or settings.hotline.phonecast_did,
            password_time_cost=settings.security.password_time_cost,
            password_memory_kib=settings.security.password_memory_kib,
            password_parallelism=settings.security.password_parallelism,
        )

    @property
    def zone(self) -> ZoneInfo:
        return self.desk.zone


@dataclass
class Phonecast:
    desk: Desk
    admin: PhonecastAdmin
    config: PhonecastConfig
    services: list[Service] = field(default_factory=list)
    worker_services: list[Service] = field(default_factory=list)

    @property
    def line_desk(self) -> PhonecastDesk:
        """The desk as the line sees it (typed by its Protocol, so the checker proves the desk satisfies it)."""
        return self.desk


def build_phonecast(
    config: PhonecastConfig,
    *,
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    airer: PhoneAirer,
) -> Phonecast:
    passwords = Passwords(
        time_cost=config.password_time_cost,
        memory_kib=config.password_memory_kib,
        parallelism=config.password_parallelism,
        min_length=6,
    )
    desk = Desk(sessions, clock, config.desk, passwords, airer)
    admin = PhonecastAdmin(sessions, clock, passwords, LoginLimiter(config.desk.pin_policy), config.desk.recordings_dir)
    return Phonecast(
        desk=desk,
        admin=admin,
        config=config,
        worker_services=[PhonecastFollower(desk, tick_s=config.desk.due_poll_s)],
    )
