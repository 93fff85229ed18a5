"""Speech as a part of the service: its configuration from the settings, and its pieces built and wired.

engines → chain (fallback, breaker, background prober) → cache → renderer
(loudness by measurement and limiter). Every process runs the chain's prober
(``services``): every process renders. Nothing here is for the elected worker
alone. Broadcast production (chime, repeats, profiles) is broadcasting's
(``broadcast.part``), built on top of this.

Like every part (see ``server.py``): ``SpeechConfig.from_settings`` reads the
settings once, :func:`build_speech` builds from that config and the
dependencies handed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from common.clock import Clock
from common.health import HealthRegistry
from common.lifecycle import Service
from settings import AudioSettings, Settings, SettingsError, TtsSettings
from tts.audio import AudioTools
from tts.cache import AudioCache
from tts.chain import SpeechChain
from tts.engine_errors import BadVoice
from tts.engines import EdgeEngine, EspeakEngine, SpeechEngine
from tts.render import AudioRenderer, LoudnessPolicy


@dataclass(frozen=True)
class SpeechConfig:
    tts: TtsSettings
    audio: AudioSettings
    # Rendered audio, content-addressed (<data_dir>/audio).
    cache_dir: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> SpeechConfig:
        return cls(tts=settings.tts, audio=settings.audio, cache_dir=settings.data_dir / "audio")


@dataclass
class Speech:
    tools: AudioTools
    cache: AudioCache
    chain: SpeechChain
    renderer: AudioRenderer
    # Run in every process while the service runs (the engine prober).
    services: list[Service] = field(default_factory=list)


def _engines(config: TtsSettings) -> list[SpeechEngine]:
    engines: list[SpeechEngine] = []
    for name in config.engines:
        try:
            if name == "edge":
                engines.append(
                    EdgeEngine(
                        voice=config.edge_voice,
                        rate=config.edge_rate,
                        volume=config.edge_volume,
                        pitch=config.edge_pitch,
                        proxy=config.edge_proxy,
                        connect_timeout_s=config.edge_connect_timeout_s,
                        receive_timeout_s=config.edge_receive_timeout_s,
                        timeout_s=config.synthesis_timeout_s,
                        max_connections=config.edge_max_connections,
                    )
                )
            else:
                engines.append(
                    EspeakEngine(
                        binary=config.espeak_binary,
                        voice=config.espeak_voice,
                        speed_wpm=config.espeak_speed_wpm,
                        timeout_s=min(config.espeak_timeout_s, config.synthesis_timeout_s),
                    )
                )
        except BadVoice as exc:
            raise SettingsError(f"bad setting CUNXIANG_TTS_{name.upper()}_VOICE: {exc.detail}") from None
    return engines


def build_speech(config: SpeechConfig, *, clock: Clock, health: HealthRegistry | None = None) -> Speech:
    """The speech part; ``health`` (when the service runs) gets the chain's ``tts`` probe."""
    tts, audio = config.tts, config.audio
    cache = AudioCache(config.cache_dir, max_bytes=audio.cache_max_mb * 1024 * 1024)
    chain = SpeechChain(
        _engines(tts),
        cache,
        clock=clock,
        open_period_s=tts.breaker_open_s,
        probe_interval_s=tts.probe_interval_s,
        probe_timeout_s=tts.probe_timeout_s,
    )
    tools = AudioTools(
        ffmpeg=audio.ffmpeg_binary,
        ffprobe=audio.ffprobe_binary,
        timeout_s=audio.ffmpeg_timeout_s,
        niceness=audio.ffmpeg_niceness,
    )
    loudness = LoudnessPolicy(
        target_lufs=audio.loudness_target_lufs,
        ceiling_dbtp=audio.true_peak_ceiling_dbtp,
        headroom_db=audio.limiter_headroom_db,
    )
    if health is not None:
        health.register("tts", chain.health_probe)
        # "degraded" when what must be kept does not fit (approvals refused) or emergencies overflow it.
        health.register("audio_cache", cache.health)
    return Speech(tools, cache, chain, AudioRenderer(cache, tools, loudness), services=[chain])
