"""Broadcasting as a part of the service: its configuration from the settings, and its pieces built and wired.

notices (approval, audio produced at approval) → dispatcher (zones,
priorities, preemption) → transports (RTP, SIP paging, HTTP-pull terminals,
sound card) → the as-run log; the speaker test (拨测) on the same transports.
Every process gets all of it (pages ask the notices, the as-run log, the
terminals); only the elected worker runs the dispatcher (``worker_services``).

What it needs from elsewhere arrives built: the speech part (``tts.part``)
and, for SIP paging, a :class:`broadcast.transports.PageOriginator` — the
hotline's pager, handed in by ``server.py`` (None with ``asterisk = none``).
The scheduler that feeds the dispatcher is the schedules part's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from areas.addresses import AddressPolicy
from broadcast.asrun import AsRunLog
from broadcast.dispatcher import Dispatcher, PendingReplays
from broadcast.notices import NoticeService
from broadcast.production import BroadcastProducer, ProductionSettings
from broadcast.rtp import RtpSender
from broadcast.speaker_test import SpeakerTester
from broadcast.terminals import HttpPullTransport, TerminalEvents, TerminalService
from broadcast.transports import (
    LiveRooms,
    PageOriginator,
    RtpTransport,
    SinkTransport,
    SipPagingTransport,
    Transport,
)
from common.clock import Clock
from common.health import HealthRegistry
from common.lifecycle import Service
from settings import BroadcastSettings, Settings
from tts.part import Speech


@dataclass(frozen=True)
class BroadcastConfig:
    broadcast: BroadcastSettings
    production: ProductionSettings
    zone: ZoneInfo
    # Uploaded and browser-recorded voice notices.
    recordings_dir: Path
    # Items "played" by sink speakers that are files (tests, a site's own player).
    sink_dir: Path
    # An item cut or left queued by the service's stop is replayed if the service is back within this
    # (the scheduler's catch-up grace: one window for both).
    replay_grace_s: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> BroadcastConfig:
        audio = settings.audio
        return cls(
            broadcast=settings.broadcast,
            production=ProductionSettings(
                chime=audio.chime,
                lead_in_ms=audio.lead_in_ms,
                chime_gap_ms=audio.chime_gap_ms,
                gap_ms=audio.gap_ms,
                tail_ms=audio.tail_ms,
                default_repeats=audio.default_repeats,
                max_chars=settings.tts.max_chars,
                max_recording_s=audio.max_recording_s,
                max_item_s=audio.max_item_s,
            ),
            zone=settings.zone,
            recordings_dir=settings.data_dir / "recordings",
            sink_dir=settings.data_dir / "sink",
            replay_grace_s=settings.scheduler.catch_up_grace_s,
        )


@dataclass
class Broadcasting:
    producer: BroadcastProducer
    notices: NoticeService
    dispatcher: Dispatcher
    rtp_sender: RtpSender
    transports: dict[str, Transport]
    terminals: TerminalService
    asrun: AsRunLog
    speaker_tester: SpeakerTester
    worker_services: list[Service] = field(default_factory=list)
    # Started by the worker after the scheduler has caught up: the replays of what a stop cut or left queued.
    after_catch_up_services: list[Service] = field(default_factory=list)


def build_producer(config: BroadcastConfig, speech: Speech) -> BroadcastProducer:
    """Broadcast items from text or a recording (chime, repeats, a closing line, every output profile)."""
    return BroadcastProducer(speech.chain, speech.renderer, config.production)


def build_broadcasting(
    config: BroadcastConfig,
    *,
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    health: HealthRegistry,
    speech: Speech,
    pager: PageOriginator | None,
    live_rooms: LiveRooms | None = None,
) -> Broadcasting:
    settings, production = config.broadcast, config.production
    producer = build_producer(config, speech)
    notices = NoticeService(
        sessions,
        clock,
        producer,
        speech.cache,
        config.recordings_dir,
        default_repeats=production.default_repeats,
        emergency_engine=settings.emergency_engine,
        max_chars=production.max_chars,
        recording_max_bytes=settings.recording_max_bytes,
    )
    # Approved notices' audio, and what waits or plays, is kept in the cache (never evicted) — see tts/cache.py.
    speech.cache.add_keeper("approved notices and broadcasts on air", notices.kept_audio_keys)
    sender = RtpSender(packet_ms=settings.rtp_packet_ms, multicast_interface=settings.rtp_multicast_interface)
    events = TerminalEvents()
    transports: dict[str, Transport] = {
        "rtp": RtpTransport(sender, clock, default_port=settings.rtp_port, default_ttl=settings.rtp_ttl),
        "sip": SipPagingTransport(pager, clock, timeout_s=settings.sip_page_timeout_s),
        "http": HttpPullTransport(
            sessions,
            clock,
            events,
            poll_interval_s=settings.http_poll_interval_s,
            start_timeout_s=settings.terminal_start_timeout_s,
            finish_grace_s=settings.terminal_finish_grace_s,
        ),
        "sink": SinkTransport(config.sink_dir, clock, player=settings.alsa_player),
    }
    # Transports switched off send nothing: their speakers fail with 未启用传输方式.
    transports = {name: transport for name, transport in transports.items() if name in settings.transports}
    dispatcher = Dispatcher(
        sessions,
        clock,
        config.zone,
        notices,
        transports,
        sender,
        wait_limit_s=settings.lower_priority_wait_s,
        requeue_interrupted=settings.requeue_interrupted,
        pending_poll_s=settings.pending_poll_s,
        default_rtp_port=settings.rtp_port,
        default_rtp_ttl=settings.rtp_ttl,
        replay_grace_s=config.replay_grace_s,
        heartbeat_s=settings.heartbeat_s,
        # 手机喊话 实时: the hotline's conference rooms reach the speakers (None: live calls are refused).
        live_rooms=live_rooms,
        multicast_interface=settings.rtp_multicast_interface,
    )
    health.register("dispatcher", dispatcher.health)
    terminals = TerminalService(
        sessions,
        clock,
        speech.cache,
        events,
        poll_interval_s=settings.http_poll_interval_s,
        heartbeat_timeout_s=settings.terminal_heartbeat_timeout_s,
    )
    tester = SpeakerTester(
        producer,
        transports,
        speech.cache,
        engine=settings.emergency_engine,
        timeout_s=settings.speaker_test_timeout_s,
        # The same rules as a speaker saved in the area tree (areas.addresses).
        address_policy=AddressPolicy.from_settings(settings),
    )
    return Broadcasting(
        producer=producer,
        notices=notices,
        dispatcher=dispatcher,
        rtp_sender=sender,
        transports=transports,
        terminals=terminals,
        asrun=AsRunLog(sessions, config.zone),
        speaker_tester=tester,
        worker_services=[dispatcher],
        after_catch_up_services=[PendingReplays(dispatcher)],
    )
