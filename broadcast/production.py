"""The broadcast item: what a village loudspeaker actually plays for one notice.

    [lead-in silence] [chime] [pause] message [gap] message … [gap] [closing line] [tail]

The message is spoken (by the TTS chain) or recorded by a person (an uploaded
WAV/MP3/OGG/WebM); either way it takes the same path: decoded and measured by
ffmpeg, brought to the loudness target with a true-peak limit
(:meth:`tts.audio.AudioTools.normalize_loudness`), repeated with pydub, then
encoded once into every requested output profile and stored in the audio
cache. An item's cache key covers everything that shapes its sound (the
speech's own key, repeats, pauses, chime, loudness target and ceiling,
production version), so rendering the same notice twice costs one lookup.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tts.audio import PROFILES, SAMPLE_WIDTH, WORKING_RATE, AudioTools, Measured, Normalized, Pcm, Profile
from tts.cache import AudioCache, CacheEntry, cache_key
from tts.chain import SpeechChain, SpokenAudio
from tts.chime import CHIME_VERSION, chime
from tts.engine_errors import AudioToolFailed, BadParameter, BadRecording, NoAudio
from tts.engines import DEFAULT_REQUEST, VoiceRequest
from tts.normalize import normalize

if TYPE_CHECKING:
    from pydub import AudioSegment

# Part of every item's cache key: bump it when the same inputs would now produce different audio.
PRODUCTION_VERSION: Final = "item-1"
# The chime's loudness relative to the speech. Level with it, so the whole item stays on the
# loudness target however short the message is (a chime 3 LU softer pulled a 5 s IVR-length
# item 1 LU under the target).
CHIME_RELATIVE_LU: Final = 0.0
RECORDING_ENGINE: Final = "recording"
MAX_REPEATS: Final = 10


@dataclass(frozen=True)
class ProductionSettings:
    loudness_target_lufs: float = -16.0
    true_peak_ceiling_dbtp: float = -1.5
    limiter_headroom_db: float = 1.0
    chime: bool = True
    lead_in_ms: int = 500
    chime_gap_ms: int = 700
    gap_ms: int = 1500
    tail_ms: int = 300
    default_repeats: int = 2
    max_chars: int = 5000
    max_recording_s: float = 900.0

    @property
    def limit_dbtp(self) -> float:
        """Where the limiter aims: under the ceiling by the headroom codecs and resamplers need."""
        return self.true_peak_ceiling_dbtp - self.limiter_headroom_db


@dataclass(frozen=True)
class ProductionResult:
    """One produced item: a file per profile (in the audio cache) and what it measured."""

    files: Mapping[Profile, Path]
    keys: Mapping[Profile, str]
    duration_s: float
    integrated_lufs: float
    true_peak_dbtp: float
    engine: str  # the engine that spoke, or "recording"
    voice: Mapping[str, str] | None
    repeats: int
    spoken_text: str | None
    cached: bool
    speech_keys: Sequence[str] = field(default=())


@dataclass(frozen=True)
class _Segment:
    """A piece of speech to normalise: read from a cache entry or from raw bytes."""

    source: Path | bytes
    label: str


class BroadcastProducer:
    def __init__(self, chain: SpeechChain, cache: AudioCache, tools: AudioTools, settings: ProductionSettings) -> None:
        self._chain = chain
        self._cache = cache
        self._tools = tools
        self._settings = settings
        self._chimes: dict[tuple[float, float], Normalized] = {}

    @property
    def settings(self) -> ProductionSettings:
        return self._settings

    # -- public ----------------------------------------------------------------------------------

    async def render_text(
        self,
        text: str,
        *,
        voice: VoiceRequest = DEFAULT_REQUEST,
        repeats: int | None = None,
        closing_text: str | None = None,
        chime: bool | None = None,
        profiles: Sequence[Profile] = (Profile.MP3,),
    ) -> ProductionResult:
        """Speak ``text`` (plain notice text; it is normalised here) and produce the broadcast item."""
        repeats = self._repeats(repeats)
        spoken = normalize(text, max_chars=self._settings.max_chars)
        closing_spoken = normalize(closing_text, max_chars=self._settings.max_chars) if closing_text else None
        message = await self._chain.speak(spoken, voice)
        closing: SpokenAudio | None = None
        if closing_spoken is not None:
            # Same engine and voice as the message: one item, one voice.
            same_voice = VoiceRequest(
                engine=message.engine,
                voice=message.voice.name,
                rate=message.voice.rate,
                volume=message.voice.volume,
                pitch=message.voice.pitch,
            )
            closing = await self._chain.speak(closing_spoken, same_voice)
        parts = self._item_parts(repeats, chime, {"speech": message.key, "closing": closing.key if closing else None})
        segments = [_Segment(message.entry.path, "message")]
        if closing is not None:
            segments.append(_Segment(closing.entry.path, "closing"))
        return await self._produce(
            parts,
            segments,
            profiles,
            engine=message.engine,
            voice=message.voice.as_dict(),
            spoken_text=spoken,
            speech_keys=[message.key] + ([closing.key] if closing else []),
            has_closing=closing is not None,
        )

    async def render_recording(
        self,
        recording: Path | bytes,
        *,
        repeats: int | None = None,
        chime: bool | None = None,
        profiles: Sequence[Profile] = (Profile.MP3,),
    ) -> ProductionResult:
        """A person's recording (WAV, MP3, OGG, WebM…) through the same chime/repeat/loudness pipeline."""
        repeats = self._repeats(repeats)
        data = recording.read_bytes() if isinstance(recording, Path) else recording
        if not data:
            raise BadRecording("录音文件是空的。", detail="empty recording")
        parts = self._item_parts(repeats, chime, {"recording": hashlib.sha256(data).hexdigest()})
        return await self._produce(
            parts,
            [_Segment(data, "recording")],
            profiles,
            engine=RECORDING_ENGINE,
            voice=None,
            spoken_text=None,
            speech_keys=[],
            has_closing=False,
        )

    # -- the pipeline ----------------------------------------------------------------------------

    def _repeats(self, repeats: int | None) -> int:
        value = self._settings.default_repeats if repeats is None else repeats
        if not 1 <= value <= MAX_REPEATS:
            message = f"重复次数应在 1 到 {MAX_REPEATS} 之间，现在是 {value}。"
            raise BadParameter(message, detail=f"repeats {value} outside 1..{MAX_REPEATS}", fields={"repeats": message})
        return value

    def _item_parts(self, repeats: int, chime_on: bool | None, content: Mapping[str, Any]) -> dict[str, Any]:
        settings = self._settings
        use_chime = settings.chime if chime_on is None else chime_on
        return {
            **content,
            "repeats": repeats,
            "chime": CHIME_VERSION if use_chime else None,
            "lead_in_ms": settings.lead_in_ms,
            "chime_gap_ms": settings.chime_gap_ms if use_chime else 0,
            "gap_ms": settings.gap_ms,
            "tail_ms": settings.tail_ms,
            "target_lufs": settings.loudness_target_lufs,
            "limit_dbtp": settings.limit_dbtp,
            "version": PRODUCTION_VERSION,
        }

    async def _produce(
        self,
        parts: dict[str, Any],
        segments: Sequence[_Segment],
        profiles: Sequence[Profile],
        *,
        engine: str,
        voice: Mapping[str, str] | None,
        spoken_text: str | None,
        speech_keys: Sequence[str],
        has_closing: bool,
    ) -> ProductionResult:
        wanted = list(dict.fromkeys(profiles))
        if not wanted:
            raise ValueError("ask for at least one profile")
        keys = {profile: cache_key("item", {**parts, "profile": profile.value}) for profile in wanted}
        async with self._cache.lock(cache_key("item", parts)):
            found = {profile: self._cache.get(key) for profile, key in keys.items()}
            missing = [profile for profile, entry in found.items() if entry is None]
            if not missing:
                return self._result(found, keys, cached=True)
            master, true_peak = await self._master(parts, segments, has_closing=has_closing)
            meta = {
                "kind": "item",
                "engine": engine,
                "voice": dict(voice) if voice else None,
                "repeats": parts["repeats"],
                "spoken_text": spoken_text,
                "duration_s": round(master.duration_s, 3),
                "true_peak_dbtp": round(true_peak, 2),
                "parents": list(speech_keys),
            }
            async with self._cache.staging() as staging:
                outputs = {
                    profile: staging.audio_path(f"{profile.value}.{PROFILES[profile].suffix}") for profile in missing
                }
                loudness = await self._tools.encode(master, outputs)
                for profile, path in outputs.items():
                    # One staging directory per entry: commit consumes what it is given.
                    async with self._cache.staging() as own:
                        own_path = own.audio_path(PROFILES[profile].suffix)
                        path.rename(own_path)
                        found[profile] = await self._cache.commit(
                            keys[profile],
                            own,
                            own_path,
                            {**meta, "profile": profile.value, "integrated_lufs": round(loudness.integrated_lufs, 2)},
                        )
        await self._cache.maybe_evict()
        return self._result(found, keys, cached=False)

    async def _master(
        self, parts: Mapping[str, Any], segments: Sequence[_Segment], *, has_closing: bool
    ) -> tuple[Pcm, float]:
        """The whole item as working PCM at the loudness target, and its true peak."""
        from pydub import AudioSegment  # imported late: pydub warns at import time when ffmpeg is missing

        normalized = [await self._normalized_segment(segment) for segment in segments]
        message = _audio_segment(normalized[0].pcm)
        gap = AudioSegment.silent(duration=parts["gap_ms"], frame_rate=WORKING_RATE)
        item = AudioSegment.silent(duration=parts["lead_in_ms"], frame_rate=WORKING_RATE)
        peaks = [piece.loudness.true_peak_dbtp for piece in normalized]
        if parts["chime"] is not None:
            chime_audio = await self._chime()
            item += _audio_segment(chime_audio.pcm)
            item += AudioSegment.silent(duration=parts["chime_gap_ms"], frame_rate=WORKING_RATE)
            peaks.append(chime_audio.loudness.true_peak_dbtp)
        for reading in range(parts["repeats"]):
            if reading:
                item += gap
            item += message
        if has_closing:
            item += gap + _audio_segment(normalized[1].pcm)
        item += AudioSegment.silent(duration=parts["tail_ms"], frame_rate=WORKING_RATE)
        master = Pcm(item.set_sample_width(SAMPLE_WIDTH).set_channels(1).raw_data, WORKING_RATE)
        return master, max(peaks)

    async def _normalized_segment(self, segment: _Segment) -> Normalized:
        settings = self._settings
        is_recording = segment.label == "recording"
        max_duration = settings.max_recording_s + 1 if is_recording else None
        try:
            measured = await self._tools.decode(segment.source, max_duration_s=max_duration)
        except AudioToolFailed as exc:
            if is_recording:
                raise BadRecording(
                    "无法读取这段录音，请上传 WAV、MP3、OGG 或 WebM 格式的音频。", detail=exc.detail
                ) from exc
            raise
        if is_recording and measured.pcm.duration_s > settings.max_recording_s:
            limit_min = settings.max_recording_s / 60
            raise BadRecording(
                f"录音太长了，最长 {limit_min:g} 分钟。",
                detail=f"recording longer than {settings.max_recording_s:g} s",
            )
        if measured.loudness.silent or measured.pcm.frames == 0:
            if is_recording:
                raise BadRecording("录音里几乎没有声音，请重新录制。", detail="recording is silent")
            raise NoAudio("语音引擎生成的音频没有声音。", engine=segment.label, detail="engine output is silent")
        return await self._tools.normalize_loudness(
            measured, target_lufs=settings.loudness_target_lufs, limit_dbtp=settings.limit_dbtp
        )

    async def _chime(self) -> Normalized:
        settings = self._settings
        target = settings.loudness_target_lufs + CHIME_RELATIVE_LU
        key = (target, settings.limit_dbtp)
        if key not in self._chimes:
            pcm = chime(WORKING_RATE)
            measured = Measured(pcm, await self._tools.measure(pcm))
            self._chimes[key] = await self._tools.normalize_loudness(
                measured, target_lufs=target, limit_dbtp=settings.limit_dbtp
            )
        return self._chimes[key]

    @staticmethod
    def _result(
        found: Mapping[Profile, CacheEntry | None], keys: Mapping[Profile, str], *, cached: bool
    ) -> ProductionResult:
        entries = {profile: entry for profile, entry in found.items() if entry is not None}
        first = next(iter(entries.values())).meta
        return ProductionResult(
            files={profile: entry.path for profile, entry in entries.items()},
            keys=dict(keys),
            duration_s=float(first["duration_s"]),
            integrated_lufs=float(first["integrated_lufs"]),
            true_peak_dbtp=float(first["true_peak_dbtp"]),
            engine=str(first["engine"]),
            voice=first.get("voice"),
            repeats=int(first["repeats"]),
            spoken_text=first.get("spoken_text"),
            cached=cached,
            speech_keys=tuple(first.get("parents", [])),
        )


def _audio_segment(pcm: Pcm) -> AudioSegment:
    from pydub import AudioSegment

    return AudioSegment(data=pcm.data, sample_width=SAMPLE_WIDTH, frame_rate=pcm.sample_rate, channels=1)


def notice_text(notice: Mapping[str, Any]) -> str:
    """What is read out for a notice: its title, then its body."""
    title = str(notice.get("title") or "").strip()
    body = str(notice.get("body") or "").strip()
    if title and body:
        return f"{title}。{body}"
    return title or body
