"""The ffmpeg blocks: loudness measurement and normalisation, encoding per profile, atomic files, the chime."""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import pytest

from tests.support.speech import ebur128, espeak_wav, ffprobe, tone_power
from tts.audio import (
    PROFILES,
    WORKING_RATE,
    AudioTools,
    Pcm,
    Profile,
    atomic_write,
    parse_ebur128_summary,
)
from tts.chime import CHIME_FREQUENCIES_HZ, chime, chime_duration_s
from tts.engine_errors import AudioToolFailed, ProgramMissing

# The ends of what ffmpeg 5.1 printed here for raw espeak-ng speech and for 2 s of silence (captured, not invented).
CAPTURED_SUMMARY = """\
[Parsed_ebur128_0 @ 0x56393d2b8880] Summary:

  Integrated loudness:
    I:         -18.6 LUFS
    Threshold: -28.7 LUFS

  Loudness range:
    LRA:         1.3 LU
    Threshold: -38.6 LUFS
    LRA low:   -19.4 LUFS
    LRA high:  -18.1 LUFS

  True peak:
    Peak:        0.0 dBFS
"""

CAPTURED_SILENCE = """\
[Parsed_ebur128_0 @ 0x5581c1b1a880] Summary:

  Integrated loudness:
    I:         -70.0 LUFS
    Threshold:   0.0 LUFS

  Loudness range:
    LRA:         0.0 LU
    Threshold:   0.0 LUFS
    LRA low:     0.0 LUFS
    LRA high:    0.0 LUFS

  True peak:
    Peak:       -inf dBFS
"""


def test_the_ebur128_summary_is_read_from_ffmpegs_real_output() -> None:
    loudness = parse_ebur128_summary("frame lines…\n" + CAPTURED_SUMMARY)
    assert loudness.integrated_lufs == -18.6
    assert loudness.true_peak_dbtp == 0.0
    assert not loudness.silent


def test_silence_reads_as_silent() -> None:
    loudness = parse_ebur128_summary(CAPTURED_SILENCE)
    assert loudness.silent
    assert loudness.true_peak_dbtp == -math.inf


def test_output_without_a_summary_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_ebur128_summary("Error while filtering")


@pytest.fixture
async def speech(tmp_path: Path, speech_programs: None) -> Path:
    return espeak_wav("各位村民请注意，明天上午九点三十分在村委会开会。", tmp_path / "speech.wav")


async def test_loud_peaky_speech_is_limited_to_the_target_and_under_the_ceiling(speech: Path, tmp_path: Path) -> None:
    tools = AudioTools()
    measured = await tools.decode(speech)
    assert measured.loudness.true_peak_dbtp > -1.0, "raw espeak-ng peaks near full scale: the limiter has work"

    result = await tools.normalize_loudness(measured, target_lufs=-16.0, limit_dbtp=-2.5)

    assert result.limiter_passes >= 1
    out = tmp_path / "limited.wav"
    await tools.encode(result.pcm, {Profile.WAV16K: out})
    independent = ebur128(out)
    assert abs(independent.integrated_lufs - -16.0) <= 0.5
    assert independent.true_peak_dbtp <= -2.0


async def test_quiet_speech_with_headroom_gets_a_plain_gain_without_a_limiter_pass(tmp_path: Path) -> None:
    tools = AudioTools()
    # A soft 440 Hz tone, 3 s: its peaks are far below the ceiling even after the gain.
    frames = 3 * WORKING_RATE
    samples = [round(1500 * math.sin(2 * math.pi * 440 * n / WORKING_RATE)) for n in range(frames)]
    pcm = Pcm(struct.pack(f"<{frames}h", *samples))
    measured = await tools.decode(_wav(tmp_path / "tone.wav", pcm))

    result = await tools.normalize_loudness(measured, target_lufs=-20.0, limit_dbtp=-2.5)

    assert result.limiter_passes == 0
    out = tmp_path / "out.wav"
    await tools.encode(result.pcm, {Profile.WAV16K: out})
    assert abs(ebur128(out).integrated_lufs - -20.0) <= 0.3


@pytest.mark.slow
async def test_every_profile_has_its_format_rate_and_channels(speech: Path, tmp_path: Path) -> None:
    tools = AudioTools()
    measured = await tools.decode(speech)
    outputs = {profile: tmp_path / f"out-{profile.value}.{PROFILES[profile].suffix}" for profile in Profile}

    await tools.encode(measured.pcm, outputs)

    expected = {
        Profile.MP3: ("mp3", 24000, "mp3"),
        Profile.ASTERISK: ("pcm_s16le", 8000, "wav"),
        Profile.RTP: ("pcm_mulaw", 8000, "mulaw"),
        Profile.WAV16K: ("pcm_s16le", 16000, "wav"),
    }
    for profile, path in outputs.items():
        probe = ffprobe(path, *PROFILES[profile].input_args)
        assert (probe.codec, probe.sample_rate, probe.format) == expected[profile], profile
        assert probe.channels == 1
        assert abs(probe.duration_s - measured.pcm.duration_s) < 0.1, profile
    # Asterisk reads plain RIFF files: the data chunk starts right after a 44-byte header.
    assert outputs[Profile.ASTERISK].read_bytes()[36:40] == b"data"
    # Raw mu-law: one byte per sample at 8 kHz, nothing else (160 bytes = one 20 ms RTP packet).
    assert abs(outputs[Profile.RTP].stat().st_size - 8000 * measured.pcm.duration_s) < 80


async def test_our_probe_agrees_with_ffprobe(speech: Path) -> None:
    info = await AudioTools().probe(speech)
    assert info.sample_rate == 22050
    assert info.duration_s == pytest.approx(ffprobe(speech).duration_s)


async def test_a_missing_ffmpeg_names_the_program_and_its_package(tmp_path: Path, speech: Path) -> None:
    tools = AudioTools(ffmpeg=str(tmp_path / "nowhere" / "ffmpeg"))
    with pytest.raises(ProgramMissing) as raised:
        await tools.decode(speech)
    assert "ffmpeg" in raised.value.message
    assert "apt-get install ffmpeg" in raised.value.message


async def test_audio_ffmpeg_cannot_read_is_a_tool_failure(tmp_path: Path, speech_programs: None) -> None:
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"this is not audio" * 100)
    with pytest.raises(AudioToolFailed):
        await AudioTools().decode(garbage)


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "out.mp3"
    dest.write_bytes(b"old")

    def broken_replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write(dest, b"new")

    assert dest.read_bytes() == b"old"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.mp3"]


def test_the_chime_is_ours_deterministic_and_rings_at_its_three_tones() -> None:
    first, second = chime(WORKING_RATE), chime(WORKING_RATE)
    assert first.data == second.data
    assert first.duration_s == pytest.approx(chime_duration_s(), abs=0.001)
    samples = list(struct.unpack(f"<{first.frames}h", first.data))
    tones = [tone_power(samples, frequency, WORKING_RATE) for frequency in CHIME_FREQUENCIES_HZ]
    off_tone = tone_power(samples, 1000.0, WORKING_RATE)
    assert min(tones) > 100 * off_tone
    assert max(abs(sample) for sample in samples) < 32767  # never clipped


def _wav(path: Path, pcm: Pcm) -> Path:
    header = b"RIFF" + struct.pack("<I", 36 + len(pcm.data)) + b"WAVEfmt "
    header += struct.pack("<IHHIIHH", 16, 1, 1, pcm.sample_rate, pcm.sample_rate * 2, 2, 16)
    path.write_bytes(header + b"data" + struct.pack("<I", len(pcm.data)) + pcm.data)
    return path
