"""Fixtures and helpers for the speech tests (tts/ and broadcast production).

Import the fixtures a module needs by name (``from tests.support.speech import edge_server``).
Audio is asserted with ffprobe and ffmpeg's own ebur128 meter, never with our code's own figures.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import struct
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import edge_tts.communicate
import pytest
from aiohttp.test_utils import TestServer
from edge_tts.drm import DRM

from broadcast.production import BroadcastProducer, ProductionSettings
from common.clock import ManualClock
from tests.support import required
from tests.support.edge_server import EdgeServer, start_edge_server
from tts.audio import AudioTools
from tts.cache import AudioCache
from tts.chain import SpeechChain
from tts.engines import EdgeEngine, EspeakEngine, SpeechEngine
from tts.render import AudioRenderer, LoudnessPolicy

REQUIRED_PROGRAMS = ("espeak-ng", "ffmpeg", "ffprobe")


def require_programs() -> None:
    missing = [program for program in REQUIRED_PROGRAMS if shutil.which(program) is None]
    if missing:
        required.missing(f"not installed: {', '.join(missing)} (apt-get install espeak-ng ffmpeg)")


# -- independent measurements ---------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    duration_s: float
    sample_rate: int
    channels: int
    codec: str
    format: str


def ffprobe(path: Path, *input_args: str) -> Probe:
    output = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            *input_args,
            "-show_entries",
            "format=duration,format_name:stream=codec_name,sample_rate,channels",
            "-of",
            "json",
            str(path),
        ],
        check=True,
        capture_output=True,
    ).stdout
    report = json.loads(output)
    stream = report["streams"][0]
    return Probe(
        float(report["format"]["duration"]),
        int(stream["sample_rate"]),
        int(stream["channels"]),
        stream["codec_name"],
        report["format"]["format_name"],
    )


@dataclass(frozen=True)
class Ebur128:
    integrated_lufs: float
    true_peak_dbtp: float


def ebur128(path: Path, *input_args: str) -> Ebur128:
    """ffmpeg's own EBU R128 meter, run on the file as a listener would receive it."""
    stderr = subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-nostats",
            *input_args,
            "-i",
            str(path),
            "-af",
            "ebur128=peak=true:framelog=verbose",
            "-f",
            "null",
            "-",
        ],
        check=True,
        capture_output=True,
    ).stderr.decode()
    summary = stderr[stderr.rindex("Summary:") :]
    integrated = re.search(r"I:\s+(-?[\d.]+) LUFS", summary)
    peak = re.search(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary)
    assert integrated and peak, summary
    return Ebur128(float(integrated[1]), float(peak[1]))


def decode_pcm(
    path: Path, *input_args: str, rate: int = 16000, start_s: float = 0, length_s: float | None = None
) -> list[int]:
    """Samples of ``path`` as mono 16-bit at ``rate`` (decoded by ffmpeg)."""
    window = ["-ss", f"{start_s}"] + (["-t", f"{length_s}"] if length_s is not None else [])
    raw = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            *input_args,
            "-i",
            str(path),
            *window,
            "-ac",
            "1",
            "-ar",
            str(rate),
            "-f",
            "s16le",
            "-c:a",
            "pcm_s16le",
            "-",
        ],
        check=True,
        capture_output=True,
    ).stdout
    return list(struct.unpack(f"<{len(raw) // 2}h", raw))


def tone_power(samples: list[int], frequency: float, rate: int) -> float:
    """Goertzel: the power of one frequency in ``samples``, normalised by their count."""
    coefficient = 2 * math.cos(2 * math.pi * frequency / rate)
    previous = before = 0.0
    for sample in samples:
        previous, before = sample + coefficient * previous - before, previous
    power = previous * previous + before * before - coefficient * previous * before
    return power / max(1, len(samples)) ** 2


def espeak_wav(text: str, out: Path, *, speed: int = 150) -> Path:
    subprocess.run(["espeak-ng", "-v", "cmn-latn-pinyin", "-s", str(speed), "-w", str(out), text], check=True)
    return out


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def speech_programs() -> None:
    require_programs()


@pytest.fixture(scope="session")
def edge_like_mp3(tmp_path_factory: pytest.TempPathFactory, speech_programs: None) -> bytes:
    """Real MP3 speech in the format Microsoft sends (24 kHz mono 48 kbit/s), made here from espeak-ng."""
    directory = tmp_path_factory.mktemp("edge-audio")
    wav = espeak_wav("各位村民请注意", directory / "speech.wav")
    mp3 = directory / "speech.mp3"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(wav),
            "-ar",
            "24000",
            "-ac",
            "1",
            "-c:a",
            "libmp3lame",
            "-b:a",
            "48k",
            str(mp3),
        ],
        check=True,
    )
    return mp3.read_bytes()


@pytest.fixture
async def edge_server(edge_like_mp3: bytes, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[EdgeServer]:
    """The local protocol server, with edge-tts pointed at it instead of Microsoft."""
    edge, server = await start_edge_server(edge_like_mp3)
    monkeypatch.setattr(edge_tts.communicate, "WSS_URL", f"ws://127.0.0.1:{edge.port}/edge/v1?TrustedClientToken=local")
    # edge-tts honours *_PROXY variables (trust_env); a CI proxy must not intercept loopback.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    # A 403 makes edge-tts correct a process-wide clock skew from the Date header; put it back after.
    monkeypatch.setattr(DRM, "clock_skew_seconds", DRM.clock_skew_seconds)
    try:
        yield edge
    finally:
        edge.release.set()
        await _close(server)


async def _close(server: TestServer) -> None:
    await server.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 25, 7, 0, tzinfo=UTC))


def edge_engine(**overrides: Any) -> EdgeEngine:
    values: dict[str, Any] = {"connect_timeout_s": 2, "receive_timeout_s": 5, "timeout_s": 10.0}
    values.update(overrides)
    return EdgeEngine(**values)


def espeak_engine(**overrides: Any) -> EspeakEngine:
    return EspeakEngine(**overrides)


@dataclass
class SpeechKit:
    cache: AudioCache
    chain: SpeechChain
    tools: AudioTools
    renderer: AudioRenderer
    producer: BroadcastProducer
    settings: ProductionSettings


def make_kit(
    root: Path,
    clock: ManualClock,
    engines: list[SpeechEngine] | None = None,
    *,
    settings: ProductionSettings | None = None,
    max_bytes: int = 10**9,
    tools: AudioTools | None = None,
    open_period_s: float = 300.0,
    probe_interval_s: float = 0.02,
    loudness: LoudnessPolicy | None = None,
) -> SpeechKit:
    cache = AudioCache(root / "audio", max_bytes=max_bytes)
    chain = SpeechChain(
        engines if engines is not None else [espeak_engine()],
        cache,
        clock=clock,
        open_period_s=open_period_s,
        probe_interval_s=probe_interval_s,
        probe_timeout_s=5.0,
    )
    tools = tools or AudioTools()
    settings = settings or ProductionSettings()
    renderer = AudioRenderer(cache, tools, loudness or LoudnessPolicy())
    return SpeechKit(cache, chain, tools, renderer, BroadcastProducer(chain, renderer, settings), settings)


@pytest.fixture
def kit(tmp_path: Path, clock: ManualClock, speech_programs: None) -> Iterator[SpeechKit]:
    """Chain (espeak only), cache and producer with default production settings, in a temp dir."""
    yield make_kit(tmp_path, clock)


def leftovers(cache: AudioCache) -> list[Path]:
    """Anything in the cache's staging area: must be empty once a render has finished or failed."""
    if not cache.staging_dir.exists():
        return []
    return list(cache.staging_dir.iterdir())


def entries(cache: AudioCache) -> list[Path]:
    if not cache.entries_dir.exists():
        return []
    return [directory for shard in cache.entries_dir.iterdir() for directory in shard.iterdir()]
