"""The broadcast item: what a village loudspeaker actually plays for one notice.

    [lead-in silence] [chime] [pause] message [gap] message … [gap] [closing line] [tail]

The message is spoken (by the TTS chain) or recorded by a person (an uploaded
WAV/MP3/OGG/WebM); either way it takes the same path, the generic renderer of
:mod:`tts.render`: decoded and measured by ffmpeg, brought to the loudness
target with a true-peak limit, laid out here (this module's only own work:
where the chime, the readings and the pauses go), encoded once into every
requested output profile and stored in the audio cache. An item's cache key
covers everything that shapes its sound (the speech's own key, repeats,
pauses, chime, loudness policy, versions), so rendering the same notice twice
costs one lookup.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tts.audio import SAMPLE_WIDTH, WORKING_RATE, Normalized, Pcm, Profile
from tts.chain import SpeechChain, SpokenAudio
from tts.chime import CHIME_VERSION, chime
from tts.engine_errors import BadParameter, BadRecording, NoAudio
from tts.engines import DEFAULT_REQUEST, VoiceRequest
from tts.normalize import normalize
from tts.render import AudioRenderer, BadSource, Source, Timeline

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
    """How an item is laid out (the loudness target and ceiling belong to the renderer)."""

    chime: bool = True
    lead_in_ms: int = 500
    chime_gap_ms: int = 700
    gap_ms: int = 1500
    tail_ms: int = 300
    default_repeats: int = 2
    max_chars: int = 5000
    max_recording_s: float = 900.0


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


class BroadcastProducer:
    def __init__(self, chain: SpeechChain, renderer: AudioRenderer, settings: ProductionSettings) -> None:
        self._chain = chain
        self._renderer = renderer
        self._settings = settings
        self._chime_audio: Normalized | None = None

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
        sources = [Source(message.entry.path, "message")]
        if closing is not None:
            sources.append(Source(closing.entry.path, "closing"))
        content = {"speech": message.key, "closing": closing.key if closing else None}
        try:
            return await self._produce(
                content,
                sources,
                repeats,
                chime,
                profiles,
                meta={"engine": message.engine, "voice": message.voice.as_dict(), "spoken_text": spoken},
                parents=[message.key] + ([closing.key] if closing else []),
            )
        except BadSource as exc:
            # Cached speech that decodes to nothing: the engine's fault, not the clerk's.
            raise NoAudio("语音引擎生成的音频无法使用。", engine=message.engine, detail=exc.detail) from exc

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
        data = await asyncio.to_thread(recording.read_bytes) if isinstance(recording, Path) else recording
        if not data:
            raise BadRecording("录音文件是空的。", detail="empty recording")
        source = Source(data, "recording", max_duration_s=self._settings.max_recording_s)
        try:
            return await self._produce(
                {"recording": hashlib.sha256(data).hexdigest()},
                [source],
                repeats,
                chime,
                profiles,
                meta={"engine": RECORDING_ENGINE, "voice": None, "spoken_text": None},
                parents=[],
            )
        except BadSource as exc:
            raise _recording_error(exc, self._settings.max_recording_s) from exc

    async def check_recording(self, path: Path) -> float:
        """Refuse, before it is kept, a file that is not audio or runs past ``max_recording_s``; its seconds."""
        limit = self._settings.max_recording_s
        seconds = await self._renderer.tools.audio_seconds(path, limit_s=limit)
        if seconds is None:
            raise BadRecording(
                "这个文件里没有可以播放的声音，请上传 WAV、MP3、OGG、WebM 或 M4A 格式的录音。",
                detail=f"no readable audio stream in {path.name}",
                fields={"recording": "不是录音文件"},
            )
        if seconds > limit:
            raise BadRecording(
                f"录音太长了（{seconds / 60:.0f} 分钟），最长 {limit / 60:g} 分钟。",
                detail=f"{seconds:.1f} s",
                fields={"recording": "太长"},
            )
        return seconds

    # -- the pipeline ----------------------------------------------------------------------------

    def _repeats(self, repeats: int | None) -> int:
        value = self._settings.default_repeats if repeats is None else repeats
        if not 1 <= value <= MAX_REPEATS:
            message = f"重复次数应在 1 到 {MAX_REPEATS} 之间，现在是 {value}。"
            raise BadParameter(message, detail=f"repeats {value} outside 1..{MAX_REPEATS}", fields={"repeats": message})
        return value

    async def _produce(
        self,
        content: Mapping[str, Any],
        sources: Sequence[Source],
        repeats: int,
        chime_on: bool | None,
        profiles: Sequence[Profile],
        *,
        meta: Mapping[str, Any],
        parents: Sequence[str],
    ) -> ProductionResult:
        settings = self._settings
        use_chime = settings.chime if chime_on is None else chime_on
        layout = _ItemLayout(
            repeats=repeats,
            lead_in_ms=settings.lead_in_ms,
            chime_gap_ms=settings.chime_gap_ms if use_chime else 0,
            gap_ms=settings.gap_ms,
            tail_ms=settings.tail_ms,
            has_closing=len(sources) > 1,
        )
        parts = {
            **content,
            "layout": PRODUCTION_VERSION,
            "chime": CHIME_VERSION if use_chime else None,
            **asdict(layout),
        }
        chime_audio = self._chime if use_chime else None
        rendered = await self._renderer.render(
            parts,
            sources,
            lambda pieces: layout.place(pieces, chime_audio),
            profiles,
            meta={**meta, "repeats": repeats},
            parents=parents,
        )
        return ProductionResult(
            files=rendered.files,
            keys=rendered.keys,
            duration_s=rendered.duration_s,
            integrated_lufs=rendered.integrated_lufs,
            true_peak_dbtp=rendered.true_peak_dbtp,
            engine=str(rendered.meta["engine"]),
            voice=rendered.meta.get("voice"),
            repeats=int(rendered.meta["repeats"]),
            spoken_text=rendered.meta.get("spoken_text"),
            cached=rendered.cached,
            speech_keys=tuple(rendered.meta.get("parents", [])),
        )

    async def _chime(self) -> Normalized:
        """The chime at the loudness target (made once per producer: one short ffmpeg measurement)."""
        if self._chime_audio is None:
            self._chime_audio = await self._renderer.normalized_pcm(chime(WORKING_RATE), relative_lu=CHIME_RELATIVE_LU)
        return self._chime_audio


@dataclass(frozen=True)
class _ItemLayout:
    """Where everything goes: [lead-in] [chime] [pause] message ([gap] message)… [gap closing] [tail]."""

    repeats: int
    lead_in_ms: int
    chime_gap_ms: int
    gap_ms: int
    tail_ms: int
    has_closing: bool

    async def place(
        self, pieces: Sequence[Normalized], chime_audio: Callable[[], Awaitable[Normalized]] | None
    ) -> Timeline:
        from pydub import AudioSegment  # imported late: pydub warns at import time when ffmpeg is missing

        def silence(ms: int) -> AudioSegment:
            return AudioSegment.silent(duration=ms, frame_rate=WORKING_RATE)

        message = _audio_segment(pieces[0].pcm)
        peaks = [piece.loudness.true_peak_dbtp for piece in pieces]
        item = silence(self.lead_in_ms)
        if chime_audio is not None:
            bell = await chime_audio()
            item += _audio_segment(bell.pcm) + silence(self.chime_gap_ms)
            peaks.append(bell.loudness.true_peak_dbtp)
        for reading in range(self.repeats):
            if reading:
                item += silence(self.gap_ms)
            item += message
        if self.has_closing:
            item += silence(self.gap_ms) + _audio_segment(pieces[1].pcm)
        item += silence(self.tail_ms)
        return Timeline(Pcm(item.set_sample_width(SAMPLE_WIDTH).set_channels(1).raw_data, WORKING_RATE), max(peaks))


def _recording_error(exc: BadSource, max_recording_s: float) -> BadRecording:
    if exc.reason == "too_long":
        return BadRecording(f"录音太长了，最长 {max_recording_s / 60:g} 分钟。", detail=exc.detail)
    if exc.reason == "silent":
        return BadRecording("录音里几乎没有声音，请重新录制。", detail=exc.detail)
    return BadRecording("无法读取这段录音，请上传 WAV、MP3、OGG 或 WebM 格式的音频。", detail=exc.detail)


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
