"""Speech engines behind one small async interface.

An engine turns already-normalised text into audio bytes::

    engine.resolve(VoiceRequest(rate="-10%"))  -> Voice      (validates; fills in defaults)
    await engine.synthesize(text, voice)       -> Speech     (audio bytes + their format)
    await engine.probe()                       -> None       (raises EngineFailure when it cannot speak)

Two engines exist: :class:`EdgeEngine` (Microsoft's online voices through
edge-tts; good Mandarin, but an outside service that fails in waves) and
:class:`EspeakEngine` (espeak-ng on this machine; robotic but always there).
Neither takes SSML, so the text must already be speakable (``tts.normalize``);
prosody is limited to rate, volume and pitch, given the way edge-tts spells
them: ``"-15%"``, ``"+0%"``, ``"+0Hz"``, always with a sign.

Failures are translated at this boundary into :mod:`tts.engine_errors`
(``EngineUnavailable``, ``NoAudio``; ``BadVoice``/``BadParameter`` before any
call is made), so the chain can fall back without knowing any library.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import aiohttp
import edge_tts
import edge_tts.exceptions

from tts.engine_errors import BadParameter, BadVoice, EngineUnavailable, NoAudio, ProgramMissing
from tts.normalize import split_sentences
from tts.process import run_program

AudioFormat = Literal["wav", "mp3"]

# Text the probes speak: short, so a probe costs almost nothing.
PROBE_TEXT: Final = "您好"

_PERCENT: Final = re.compile(r"([+-])(\d{1,3})%")
_HERTZ: Final = re.compile(r"([+-])(\d{1,3})Hz")
# Bounds that still give intelligible speech; edge-tts itself would pass anything through.
RATE_RANGE: Final = (-50, 100)
VOLUME_RANGE: Final = (-50, 50)
PITCH_RANGE: Final = (-50, 50)
# How the pages name the engines (an official reads 云端/本机, not edge or espeak-ng).
ENGINE_LABELS: Final = {"edge": "在线语音（云端）", "espeak": "本机语音（离线）", "recording": "人声录音"}


@dataclass(frozen=True)
class VoiceRequest:
    """What a caller asks for; ``None`` means "the engine's default"."""

    engine: str | None = None
    voice: str | None = None
    rate: str | None = None
    volume: str | None = None
    pitch: str | None = None


# "Everything by default"; frozen, so one shared instance is safe as a default argument.
DEFAULT_REQUEST: Final = VoiceRequest()


@dataclass(frozen=True)
class Voice:
    """A fully resolved voice for one engine: everything that changes the audio."""

    engine: str
    name: str
    rate: str = "+0%"
    volume: str = "+0%"
    pitch: str = "+0Hz"

    def as_dict(self) -> dict[str, str]:
        return {"engine": self.engine, "name": self.name, "rate": self.rate, "volume": self.volume, "pitch": self.pitch}


@dataclass(frozen=True)
class Speech:
    audio: bytes = field(repr=False)
    format: AudioFormat
    voice: Voice

    @property
    def engine(self) -> str:
        return self.voice.engine


class SpeechEngine(Protocol):
    name: str

    def knows_voice(self, voice: str) -> bool: ...

    def resolve(self, request: VoiceRequest) -> Voice:
        """Validate ``request`` for this engine and fill in the defaults; raises BadVoice/BadParameter."""
        ...

    async def synthesize(self, text: str, voice: Voice) -> Speech: ...

    async def probe(self) -> None:
        """Speak a word; raise :class:`EngineFailure` if the engine cannot."""
        ...


# -- prosody ------------------------------------------------------------------------------


def parse_percent(value: str, *, field_name: Literal["rate", "volume"]) -> int:
    """``"-15%"`` -> -15; a value without a sign or out of range is a :class:`BadParameter`."""
    label = "语速" if field_name == "rate" else "音量"
    low, high = RATE_RANGE if field_name == "rate" else VOLUME_RANGE
    match = _PERCENT.fullmatch(value.strip())
    if match is None:
        message = f"{label}写法不对：“{value}”。请写成带正负号的百分数，例如 -15% 或 +10%。"
        raise BadParameter(
            message, detail=f"{field_name} {value!r} is not a signed percentage", fields={field_name: message}
        )
    number = int(match[2]) * (-1 if match[1] == "-" else 1)
    if not low <= number <= high:
        message = f"{label} {value} 超出范围，只能在 {low:+d}% 到 {high:+d}% 之间。"
        raise BadParameter(
            message, detail=f"{field_name} {value!r} outside {low}..{high}%", fields={field_name: message}
        )
    return number


def parse_hertz(value: str) -> int:
    """``"+5Hz"`` -> 5; like :func:`parse_percent`, for pitch."""
    low, high = PITCH_RANGE
    match = _HERTZ.fullmatch(value.strip())
    if match is None:
        message = f"音调写法不对：“{value}”。请写成带正负号的赫兹数，例如 +0Hz 或 -5Hz。"
        raise BadParameter(message, detail=f"pitch {value!r} is not signed hertz", fields={"pitch": message})
    number = int(match[2]) * (-1 if match[1] == "-" else 1)
    if not low <= number <= high:
        message = f"音调 {value} 超出范围，只能在 {low:+d}Hz 到 {high:+d}Hz 之间。"
        raise BadParameter(message, detail=f"pitch {value!r} outside {low}..{high} Hz", fields={"pitch": message})
    return number


def _canonical_percent(number: int) -> str:
    return f"{number:+d}%"


def _resolve_prosody(request: VoiceRequest, defaults: Voice) -> Voice:
    """Validate and canonicalise (``"+010%"`` -> ``"+10%"``, so equal requests share a cache key)."""
    rate = parse_percent(request.rate if request.rate is not None else defaults.rate, field_name="rate")
    volume = parse_percent(request.volume if request.volume is not None else defaults.volume, field_name="volume")
    pitch = parse_hertz(request.pitch if request.pitch is not None else defaults.pitch)
    return replace(defaults, rate=_canonical_percent(rate), volume=_canonical_percent(volume), pitch=f"{pitch:+d}Hz")


def _unknown_voice(engine: str, voice: str, known: tuple[str, ...], hint: str = "") -> BadVoice:
    message = f"语音引擎 {engine} 没有叫“{voice}”的声音。可用的有：{'、'.join(known)}。{hint}"
    return BadVoice(message, detail=f"{engine} has no voice {voice!r}", fields={"voice": message})


# -- edge-tts -------------------------------------------------------------------------------

# Mainland Mandarin voices of Microsoft's online service, with the two regional
# voices the county asked for (Liaoning and Shaanxi accents are close to the local speech).
EDGE_VOICES: Final = (
    "zh-CN-XiaoxiaoNeural",
    "zh-CN-XiaoyiNeural",
    "zh-CN-YunjianNeural",
    "zh-CN-YunxiNeural",
    "zh-CN-YunxiaNeural",
    "zh-CN-YunyangNeural",
    "zh-CN-liaoning-XiaobeiNeural",
    "zh-CN-shaanxi-XiaoniNeural",
)


# edge-tts sends a long text in pieces of at most 4,096 bytes (about 1,300 Chinese characters),
# each cut at the last newline or space. Chinese has neither, and then edge-tts 7.3.1 does not
# cut at all (its fallback looks for a UTF-8 boundary in the whole remaining text, not in the
# first 4,096 bytes): a 2,000-character notice goes out as one 6,000-byte message. We hand it
# the text one sentence per line, in lines of at most this many characters (4 bytes each at
# worst once XML-escaped), so every piece fits and every cut falls between sentences.
EDGE_LINE_CHARS: Final = 400


def edge_text(text: str) -> str:
    """``text`` one sentence (or comma clause, for a very long sentence) per line, for edge-tts."""
    return "\n".join(split_sentences(text, max_len=EDGE_LINE_CHARS))


class EdgeEngine:
    """Microsoft's online voices through edge-tts (a websocket per call, MP3 back).

    At most ``max_connections`` calls run at once (a semaphore): the service
    treats around 40 parallel connections as abuse, and a county needs few.
    """

    name = "edge"

    def __init__(
        self,
        *,
        voice: str = "zh-CN-XiaoxiaoNeural",
        rate: str = "-15%",
        volume: str = "+0%",
        pitch: str = "+0Hz",
        proxy: str = "",
        connect_timeout_s: int = 5,
        receive_timeout_s: int = 30,
        timeout_s: float = 180.0,
        max_connections: int = 3,
    ) -> None:
        if voice not in EDGE_VOICES:
            raise _unknown_voice(self.name, voice, EDGE_VOICES)
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._defaults = _resolve_prosody(VoiceRequest(), Voice(self.name, voice, rate, volume, pitch))
        self._proxy = proxy or None
        self._connect_timeout_s = int(connect_timeout_s)
        self._receive_timeout_s = int(receive_timeout_s)
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        # Created lazily: a semaphore belongs to the event loop that first uses it.
        self._slots: asyncio.Semaphore | None = None

    @property
    def default_voice(self) -> Voice:
        return self._defaults

    @property
    def _first_answer_s(self) -> float:
        return min(self._timeout_s, 2.0 * self._connect_timeout_s)

    def knows_voice(self, voice: str) -> bool:
        return voice in EDGE_VOICES

    def resolve(self, request: VoiceRequest) -> Voice:
        defaults = self._defaults
        if request.voice is not None:
            if request.voice not in EDGE_VOICES:
                raise _unknown_voice(self.name, request.voice, EDGE_VOICES)
            defaults = replace(defaults, name=request.voice)
        return _resolve_prosody(request, defaults)

    async def synthesize(self, text: str, voice: Voice) -> Speech:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_connections)
        async with self._slots:
            audio = await self._stream(text, voice)
        return Speech(audio, "mp3", voice)

    async def probe(self) -> None:
        await self.synthesize(PROBE_TEXT, self._defaults)

    async def _stream(self, text: str, voice: Voice) -> bytes:
        communicate = edge_tts.Communicate(
            edge_text(text),
            voice.name,
            rate=voice.rate,
            volume=voice.volume,
            pitch=voice.pitch,
            proxy=self._proxy,
            connect_timeout=self._connect_timeout_s,
            receive_timeout=self._receive_timeout_s,
        )
        chunks: list[bytes] = []
        answered = False
        try:
            async with asyncio.timeout(self._timeout_s):
                # aiohttp's connect timeout covers the TCP connect, not the name lookup; an offline
                # router can keep that hanging for tens of seconds. So the service must answer (name,
                # connection, handshake, first audio) within twice the connect timeout.
                async with asyncio.timeout(self._first_answer_s) as waiting:
                    async for message in communicate.stream():
                        if not answered:
                            answered = True
                            waiting.reschedule(None)
                        if message["type"] == "audio":
                            chunks.append(message["data"])
        except edge_tts.exceptions.NoAudioReceived as exc:
            raise NoAudio("在线语音服务没有返回声音。", engine=self.name, detail=f"NoAudioReceived: {exc}") from exc
        except aiohttp.WSServerHandshakeError as exc:
            raise EngineUnavailable(
                f"在线语音服务拒绝连接（HTTP {exc.status}）。",
                engine=self.name,
                detail=f"websocket handshake refused with HTTP {exc.status}: {exc.message}",
            ) from exc
        except TimeoutError as exc:
            detail = (
                f"no complete answer within {self._timeout_s:g} s"
                if answered
                else f"no answer within {self._first_answer_s:g} s (name lookup, connection or first audio)"
            )
            raise EngineUnavailable("在线语音服务超时。", engine=self.name, detail=detail) from exc
        except (aiohttp.ClientError, OSError, edge_tts.exceptions.EdgeTTSException, ValueError) as exc:
            # ClientError covers DNS failures, refused and dropped connections; EdgeTTSException
            # covers the protocol surprises (UnexpectedResponse, WebSocketError, clock skew).
            raise EngineUnavailable(
                "连不上在线语音服务。", engine=self.name, detail=f"{type(exc).__name__}: {exc}"
            ) from exc
        audio = b"".join(chunks)
        # edge-tts ends quietly when the server closes the socket before "turn.end": the audio
        # is then cut short. It adds a text chunk's bytes to cumulative_audio_bytes only when that
        # chunk's turn.end arrives, so a shortfall means some chunk never finished.
        completed = _state_int(communicate, "cumulative_audio_bytes")
        if completed != len(audio):
            raise EngineUnavailable(
                "在线语音服务的连接中途断开。",
                engine=self.name,
                detail=f"connection closed before turn.end: {len(audio)} bytes received, {completed} confirmed",
            )
        if not audio:
            raise NoAudio("在线语音服务没有返回声音。", engine=self.name, detail="stream ended without audio")
        return audio


def _state_int(communicate: Any, key: str) -> int:
    value = communicate.state[key]
    return int(value)


# -- espeak-ng ------------------------------------------------------------------------------

ESPEAK_VOICES: Final = ("cmn-latn-pinyin",)
_ESPEAK_DEFAULT_AMPLITUDE: Final = 100
_ESPEAK_DEFAULT_PITCH: Final = 50


class EspeakEngine:
    """espeak-ng on this machine, voice ``cmn-latn-pinyin``, WAV (22.05 kHz mono) out.

    Rate, volume and pitch are mapped onto espeak-ng's own scales: rate scales
    the words-per-minute setting, volume the amplitude (100 = +0%), pitch moves
    espeak-ng's 0-99 pitch by half a step per hertz (an approximation: espeak
    has no hertz scale).
    """

    name = "espeak"

    def __init__(
        self,
        *,
        binary: str = "espeak-ng",
        voice: str = "cmn-latn-pinyin",
        speed_wpm: int = 150,
        timeout_s: float = 60.0,
    ) -> None:
        if voice not in ESPEAK_VOICES:
            raise _unknown_voice(self.name, voice, ESPEAK_VOICES, _espeak_hint(voice))
        self._binary = binary
        self._speed_wpm = speed_wpm
        self._timeout_s = timeout_s
        self._defaults = Voice(self.name, voice)

    @property
    def default_voice(self) -> Voice:
        return self._defaults

    def knows_voice(self, voice: str) -> bool:
        return voice in ESPEAK_VOICES

    def resolve(self, request: VoiceRequest) -> Voice:
        defaults = self._defaults
        if request.voice is not None:
            if request.voice not in ESPEAK_VOICES:
                raise _unknown_voice(self.name, request.voice, ESPEAK_VOICES, _espeak_hint(request.voice))
            defaults = replace(defaults, name=request.voice)
        return _resolve_prosody(request, defaults)

    def command(self, voice: Voice, out: Path) -> list[str]:
        """The espeak-ng command line for ``voice``, writing a WAV file to ``out``; text comes on stdin."""
        rate = parse_percent(voice.rate, field_name="rate")
        volume = parse_percent(voice.volume, field_name="volume")
        pitch = parse_hertz(voice.pitch)
        speed = max(80, min(450, round(self._speed_wpm * (100 + rate) / 100)))
        amplitude = max(0, min(200, round(_ESPEAK_DEFAULT_AMPLITUDE * (100 + volume) / 100)))
        espeak_pitch = max(0, min(99, _ESPEAK_DEFAULT_PITCH + round(pitch / 2)))
        return [
            self._binary,
            "-v",
            voice.name,
            "-s",
            str(speed),
            "-a",
            str(amplitude),
            "-p",
            str(espeak_pitch),
            "-b",
            "1",  # the input is UTF-8
            "-w",
            str(out),
            "--stdin",
        ]

    async def synthesize(self, text: str, voice: Voice) -> Speech:
        with tempfile.TemporaryDirectory(prefix="cunxiang-espeak-") as scratch:
            out = Path(scratch) / "speech.wav"
            try:
                completed = await run_program(
                    self.command(voice, out), program="espeak-ng", timeout_s=self._timeout_s, stdin=text.encode()
                )
            except ProgramMissing as exc:
                raise EngineUnavailable(exc.message, engine=self.name, detail=exc.detail) from exc
            except TimeoutError as exc:
                raise EngineUnavailable(
                    "离线语音引擎 espeak-ng 超时。",
                    engine=self.name,
                    detail=f"espeak-ng ran past {self._timeout_s:g} s",
                ) from exc
            if completed.returncode != 0:
                raise EngineUnavailable(
                    "离线语音引擎 espeak-ng 出错。",
                    engine=self.name,
                    detail=f"espeak-ng exited with {completed.returncode}: {completed.stderr_tail()}",
                )
            audio = out.read_bytes() if out.exists() else b""
        # A WAV header alone is 44 bytes: anything that short carries no speech.
        if len(audio) <= 44:
            raise NoAudio(
                "离线语音引擎 espeak-ng 没有生成声音。", engine=self.name, detail="espeak-ng wrote no samples"
            )
        return Speech(audio, "wav", voice)

    async def probe(self) -> None:
        await self.synthesize(PROBE_TEXT, self._defaults)


def _espeak_hint(voice: str) -> str:
    if voice in ("cmn", "zh", "zh-cmn", "Mandarin"):
        return "espeak-ng 1.51 的 cmn 声音会把拼音当英文读，请用 cmn-latn-pinyin。"
    return ""
