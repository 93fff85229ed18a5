"""espeak-ng for real: a WAV out, of a plausible length, at its own sample rate; and the process runner."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.support.speech import espeak_engine, ffprobe
from tts.engine_errors import BadVoice, EngineUnavailable, ProgramMissing
from tts.engines import VoiceRequest
from tts.process import run_program

# Normalised text, as the chain hands it to engines: 28 characters.
TEXT = "各位村民请注意明天上午九点三十分在村委会召开全体村民大会"


async def test_espeak_writes_a_real_wav_of_plausible_length(tmp_path: Path, speech_programs: None) -> None:
    engine = espeak_engine()

    speech = await engine.synthesize(TEXT, engine.resolve(VoiceRequest()))

    assert speech.format == "wav"
    assert speech.engine == "espeak"
    path = tmp_path / "speech.wav"
    path.write_bytes(speech.audio)
    probe = ffprobe(path)
    assert (probe.codec, probe.sample_rate, probe.channels) == ("pcm_s16le", 22050, 1)
    # Mandarin for old listeners is read at roughly 150-200 characters a minute; allow a wide margin.
    assert len(TEXT) / 6 < probe.duration_s < len(TEXT) / 1.5


async def test_a_faster_rate_gives_shorter_speech(tmp_path: Path, speech_programs: None) -> None:
    engine = espeak_engine()
    slow = await engine.synthesize(TEXT, engine.resolve(VoiceRequest(rate="-30%")))
    fast = await engine.synthesize(TEXT, engine.resolve(VoiceRequest(rate="+50%")))
    (tmp_path / "slow.wav").write_bytes(slow.audio)
    (tmp_path / "fast.wav").write_bytes(fast.audio)

    assert ffprobe(tmp_path / "fast.wav").duration_s < 0.8 * ffprobe(tmp_path / "slow.wav").duration_s


async def test_text_starting_with_a_dash_is_spoken_not_taken_for_an_option(speech_programs: None) -> None:
    engine = espeak_engine()
    speech = await engine.synthesize("-v 零下五摄氏度", engine.resolve(VoiceRequest()))
    assert len(speech.audio) > 10_000


async def test_a_missing_espeak_binary_names_the_program_and_its_package(tmp_path: Path) -> None:
    engine = espeak_engine(binary=str(tmp_path / "bin" / "espeak-ng"))

    with pytest.raises(EngineUnavailable) as raised:
        await engine.synthesize(TEXT, engine.resolve(VoiceRequest()))

    assert "espeak-ng" in raised.value.message
    assert "apt-get install espeak-ng" in raised.value.message


def test_the_broken_cmn_voice_is_refused_with_the_reason() -> None:
    with pytest.raises(BadVoice) as raised:
        espeak_engine().resolve(VoiceRequest(voice="cmn"))
    assert "cmn-latn-pinyin" in raised.value.message
    assert "英文" in raised.value.message


async def test_a_program_past_its_time_limit_is_stopped_and_reaped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with pytest.raises(TimeoutError):
        await run_program(["sh", "-c", f"echo $$ > {pid_file}; exec sleep 30"], program="sh", timeout_s=0.5)
    _assert_gone(int(pid_file.read_text()))


async def test_a_cancelled_render_stops_its_program(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    task = asyncio.create_task(
        run_program(["sh", "-c", f"echo $$ > {pid_file}; exec sleep 30"], program="sh", timeout_s=60)
    )
    for _ in range(500):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    _assert_gone(int(pid_file.read_text()))


async def test_a_missing_program_is_program_missing(tmp_path: Path) -> None:
    with pytest.raises(ProgramMissing) as raised:
        await run_program([str(tmp_path / "ffmpeg")], program="ffmpeg", timeout_s=5)
    assert raised.value.package == "ffmpeg"


def _assert_gone(pid: int) -> None:
    """The child was terminated and waited for: not running, not a zombie."""
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
