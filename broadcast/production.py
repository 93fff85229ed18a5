"""The broadcast item: what a village loudspeaker actually plays for one notice.

    [lead-in silence] [chime] [pause] message [gap] message … [gap] [closing line] [tail]

The message is spoken (by the TTS chain) or recorded by a person (an uploaded
WAV/MP3/OGG/WebM); either way it takes the same path, the generic renderer of
:mod:`tts.render`: decoded and measured by ffmpeg, brought to the loudness
target with a true-peak limit, laid out here (this module's only own work:
where the chime, the readings and the pauses go), assembled and encoded by one
ffmpeg run into every requested output profile and stored in the audio cache.
An item's cache key covers everything that shapes its sound (the speech's own
key, repeats, pauses, chime, loudness policy, versions), so rendering the same
notice twice costs one lookup.

Nothing of it runs on the event loop that paces RTP: the audio itself is only
ever in ffmpeg (files in, files out), and the CPU work in Python — normalising
a long text, synthesising the chime, hashing a recording — runs in a thread.

**One length cap** (``ProductionSettings.max_item_s``, the setting
``audio.max_item_s``, 30 minutes by default) bounds every item, whatever makes
it — a notice at approval, an emergency, an upload, and later CAP alerts and
phone broadcasts. A text is refused *before* anything is spoken, from a lower
bound of its spoken length (:func:`spoken_length_s`: at least
:data:`FASTEST_CHARS_PER_S` a second); a recording, or a text the estimate let
through, is refused once its real length is known and before it is encoded
(:class:`ItemTooLong`, a clear Chinese message with the minutes).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from tts.audio import PROFILES, WORKING_RATE, NormalizedClip, Profile, Segment, Silence, wav_bytes
from tts.cache import KeepSet
from tts.chain import SpeechChain, SpokenAudio
from tts.chime import CHIME_VERSION, chime, chime_duration_s
from tts.engine_errors import BadParameter, BadRecording, NoAudio
from tts.engines import DEFAULT_REQUEST, VoiceRequest
from tts.normalize import normalize
from tts.render import AudioRenderer, BadSource, Source, Timeline

# Part of every item's cache key: bump it when the same inputs would now produce different audio.
PRODUCTION_VERSION: Final = "item-1"
# The chime's loudness relative to the speech. Level with it, so the whole item stays on the
# loudness target however short the message is (a chime 3 LU softer pulled a 5 s IVR-length
# item 1 LU under the target).
CHIME_RELATIVE_LU: Final = 0.0
RECORDING_ENGINE: Final = "recording"
MAX_REPEATS: Final = 10
# A lower bound of how fast any of our voices reads Chinese (espeak-ng at 150 wpm reads about 3 characters
# a second, edge-tts at -15% about 4): a text refused for its length by this estimate is certainly too long.
FASTEST_CHARS_PER_S: Final = 5.0
# Bytes a second of audio takes in the cache, per profile (MP3 is variable: a generous figure for speech).
MP3_BYTES_PER_S: Final = 8000


class ItemTooLong(BadParameter):
    """An item would be longer than the one cap on an item's length (``audio.max_item_s``)."""

    default_code = "audio.item_too_long"


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
    # The longest item, however it is made (audio.max_item_s).
    max_item_s: float = 1800.0


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


def spoken_length_s(characters: int) -> float:
    """A lower bound of how long ``characters`` of (normalised) text take to read aloud, in seconds."""
    return characters / FASTEST_CHARS_PER_S


def estimated_bytes(duration_s: float, profiles: Sequence[Profile]) -> int:
    """How much an item of ``duration_s`` takes in the audio cache in ``profiles`` (PCM exactly, MP3 roughly)."""
    per_second = 0
    for profile in profiles:
        spec = PROFILES[profile]
        per_second += (
            MP3_BYTES_PER_S if profile is Profile.MP3 else spec.sample_rate * (1 if "mulaw" in spec.codec else 2)
        )
    return round(duration_s * per_second)


class BroadcastProducer:
    def __init__(self, chain: SpeechChain, renderer: AudioRenderer, settings: ProductionSettings) -> None:
        self._chain = chain
        self._renderer = renderer
        self._settings = settings
        self._chime_wav: bytes | None = None

    @property
    def settings(self) -> ProductionSettings:
        return self._settings

    # -- public ----------------------------------------------------------------------------------

    async def spoken(self, text: str) -> str:
        """``text`` normalised for speech (in a thread: a 5,000-character notice is tens of milliseconds of CPU)."""
        return await asyncio.to_thread(normalize, text, max_chars=self._settings.max_chars)

    def estimate_s(
        self, spoken_chars: int, *, repeats: int | None = None, closing_chars: int = 0, chime: bool | None = None
    ) -> float:
        """A lower bound of an item's length: its readings at the fastest rate, plus its fixed parts."""
        settings = self._settings
        repeats = self._repeats(repeats)
        use_chime = settings.chime if chime is None else chime
        fixed_ms = settings.lead_in_ms + settings.tail_ms + settings.gap_ms * (repeats - 1)
        if use_chime:
            fixed_ms += settings.chime_gap_ms + round(chime_duration_s() * 1000)
        if closing_chars:
            fixed_ms += settings.gap_ms
        return spoken_length_s(spoken_chars * repeats + closing_chars) + fixed_ms / 1000

    def check_length(self, duration_s: float, *, estimated: bool, repeats: int) -> None:
        """Refuse an item longer than ``max_item_s`` with the minutes it would take (estimated: at least)."""
        cap = self._settings.max_item_s
        if duration_s <= cap:
            return
        minutes = duration_s / 60
        said = f"至少要{minutes:.0f}分钟" if estimated else f"要{minutes:.1f}分钟"
        message = f"这条广播读{repeats}遍{said}，超过了单条广播最长{cap / 60:g}分钟的限制。请删减内容或减少重复次数。"
        raise ItemTooLong(
            message,
            detail=f"item of {'at least ' if estimated else ''}{duration_s:.0f} s > audio.max_item_s {cap:g} s",
            fields={"body": message},
        )

    async def render_text(
        self,
        text: str,
        *,
        voice: VoiceRequest = DEFAULT_REQUEST,
        repeats: int | None = None,
        closing_text: str | None = None,
        chime: bool | None = None,
        profiles: Sequence[Profile] = (Profile.MP3,),
        keep: KeepSet | None = None,
    ) -> ProductionResult:
        """Speak ``text`` (plain notice text; it is normalised here) and produce the broadcast item.

        Refused before anything is spoken when even the fastest reading would pass the length cap.
        With ``keep``, the item (and its speech) are kept in the cache from the moment they exist.
        """
        repeats = self._repeats(repeats)
        spoken = await self.spoken(text)
        closing_spoken = await self.spoken(closing_text) if closing_text else None
        estimate = self.estimate_s(len(spoken), repeats=repeats, closing_chars=len(closing_spoken or ""), chime=chime)
        self.check_length(estimate, estimated=True, repeats=repeats)
        message = await self._chain.speak(spoken, voice)
        if keep is not None:
            keep.add([message.key])
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
            if keep is not None:
                keep.add([closing.key])
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
                keep=keep,
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
        keep: KeepSet | None = None,
    ) -> ProductionResult:
        """A person's recording (WAV, MP3, OGG, WebM…) through the same chime/repeat/loudness pipeline."""
        repeats = self._repeats(repeats)
        # Read and hashed in a thread: a recording may be tens of megabytes.
        digest, size = await asyncio.to_thread(_digest, recording)
        if not size:
            raise BadRecording("录音文件是空的。", detail="empty recording")
        source = Source(recording, "recording", max_duration_s=self._settings.max_recording_s)
        try:
            return await self._produce(
                {"recording": digest},
                [source],
                repeats,
                chime,
                profiles,
                meta={"engine": RECORDING_ENGINE, "voice": None, "spoken_text": None},
                parents=[],
                keep=keep,
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

    async def _chime_source(self) -> Source:
        """The chime, as a source like any other (synthesised once, in a thread: half a second of arithmetic)."""
        if self._chime_wav is None:
            self._chime_wav = await asyncio.to_thread(lambda: wav_bytes(chime(WORKING_RATE)))
        return Source(self._chime_wav, "chime", relative_lu=CHIME_RELATIVE_LU)

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
        keep: KeepSet | None,
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
            has_chime=use_chime,
        )
        parts = {
            **content,
            "layout": PRODUCTION_VERSION,
            "chime": CHIME_VERSION if use_chime else None,
            **asdict(layout),
        }
        all_sources = [*sources, await self._chime_source()] if use_chime else list(sources)

        async def place(pieces: Sequence[NormalizedClip]) -> Timeline:
            timeline = layout.place(pieces)
            # The real length, known now that every piece is decoded: refused before anything is encoded.
            self.check_length(timeline.duration_s, estimated=False, repeats=repeats)
            return timeline

        rendered = await self._renderer.render(
            parts,
            all_sources,
            place,
            profiles,
            meta={**meta, "repeats": repeats},
            parents=parents,
            keep=keep,
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


@dataclass(frozen=True)
class _ItemLayout:
    """Where everything goes: [lead-in] [chime] [pause] message ([gap] message)… [gap closing] [tail].

    The pieces come in the order of the sources: the message, the closing line if any, the chime if any.
    """

    repeats: int
    lead_in_ms: int
    chime_gap_ms: int
    gap_ms: int
    tail_ms: int
    has_closing: bool
    has_chime: bool = True

    def place(self, pieces: Sequence[NormalizedClip]) -> Timeline:
        message = pieces[0]
        closing = pieces[1] if self.has_closing else None
        bell = pieces[-1] if self.has_chime else None
        peaks = [piece.loudness.true_peak_dbtp for piece in pieces]
        segments: list[Segment] = [Silence(self.lead_in_ms)]
        if bell is not None:
            segments += [bell.clip, Silence(self.chime_gap_ms)]
        for reading in range(self.repeats):
            if reading:
                segments.append(Silence(self.gap_ms))
            segments.append(message.clip)
        if closing is not None:
            segments += [Silence(self.gap_ms), closing.clip]
        segments.append(Silence(self.tail_ms))
        return Timeline(segments, max(peaks))


def _digest(recording: Path | bytes) -> tuple[str, int]:
    data = recording.read_bytes() if isinstance(recording, Path) else recording
    return hashlib.sha256(data).hexdigest(), len(data)


def _recording_error(exc: BadSource, max_recording_s: float) -> BadRecording:
    if exc.reason == "too_long":
        return BadRecording(f"录音太长了，最长 {max_recording_s / 60:g} 分钟。", detail=exc.detail)
    if exc.reason == "silent":
        return BadRecording("录音里几乎没有声音，请重新录制。", detail=exc.detail)
    return BadRecording("无法读取这段录音，请上传 WAV、MP3、OGG 或 WebM 格式的音频。", detail=exc.detail)


def notice_text(notice: Mapping[str, Any]) -> str:
    """What is read out for a notice: its title, then its body."""
    title = str(notice.get("title") or "").strip()
    body = str(notice.get("body") or "").strip()
    if title and body:
        return f"{title}。{body}"
    return title or body
