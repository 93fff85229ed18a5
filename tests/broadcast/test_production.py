"""The broadcast item, asserted on real audio with ffprobe and ffmpeg's own EBU R128 meter."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from broadcast.production import ProductionResult
from common.clock import ManualClock
from tests.support.edge_server import EdgeServer
from tests.support.speech import (
    SpeechKit,
    decode_pcm,
    ebur128,
    edge_engine,
    espeak_engine,
    espeak_wav,
    ffprobe,
    make_kit,
    tone_power,
)
from tts.audio import PROFILES, Profile
from tts.chime import CHIME_FREQUENCIES_HZ, chime_duration_s
from tts.engine_errors import BadParameter, BadRecording

TEXT = "各位村民请注意，明天上午9:30在村委会开会。"
TARGET_LUFS = -16.0
CEILING_DBTP = -1.5
# ffprobe durations of MP3s include encoder padding; a frame or two either way.
DURATION_TOLERANCE_S = 0.1


def speech_duration(kit: SpeechKit, result: ProductionResult) -> float:
    """The length of the spoken message alone, from the engine's own WAV in the cache."""
    entry = kit.cache.get(result.speech_keys[0])
    assert entry is not None
    return ffprobe(entry.path).duration_s


def frame_s(kit: SpeechKit, *, chime: bool = True) -> float:
    """Everything around the readings: lead-in, chime and its pause, tail."""
    settings = kit.settings
    around = settings.lead_in_ms + settings.tail_ms
    if chime:
        around += settings.chime_gap_ms + round(chime_duration_s() * 1000)
    return around / 1000


@pytest.mark.slow
async def test_every_profile_is_real_audio_at_its_rate_and_on_loudness_target(kit: SpeechKit) -> None:
    result = await kit.producer.render_text(TEXT, repeats=2, profiles=list(Profile))

    assert result.engine == "espeak"
    expected = {
        Profile.MP3: ("mp3", 24000),
        Profile.ASTERISK: ("pcm_s16le", 8000),
        Profile.RTP: ("pcm_mulaw", 8000),
        Profile.WAV16K: ("pcm_s16le", 16000),
    }
    for profile, path in result.files.items():
        input_args = PROFILES[profile].input_args
        probe = ffprobe(path, *input_args)
        assert (probe.codec, probe.sample_rate, probe.channels) == (*expected[profile], 1), profile
        assert abs(probe.duration_s - result.duration_s) <= DURATION_TOLERANCE_S, profile
        loudness = ebur128(path, *input_args)
        assert abs(loudness.integrated_lufs - TARGET_LUFS) <= 1.0, (profile, loudness)
        assert loudness.true_peak_dbtp <= CEILING_DBTP, (profile, loudness)
    # What the result reports is what a meter reads on the master-rate file.
    assert abs(result.integrated_lufs - ebur128(result.files[Profile.WAV16K]).integrated_lufs) <= 0.3
    assert result.true_peak_dbtp <= CEILING_DBTP


async def test_the_chime_rings_before_the_speech(kit: SpeechKit) -> None:
    with_chime = await kit.producer.render_text(TEXT, repeats=1, profiles=[Profile.ASTERISK])
    without = await kit.producer.render_text(TEXT, repeats=1, chime=False, profiles=[Profile.ASTERISK])

    def chime_band_power(result: ProductionResult) -> float:
        # The window where the chime belongs: right after the lead-in silence.
        window = decode_pcm(
            result.files[Profile.ASTERISK],
            rate=8000,
            start_s=kit.settings.lead_in_ms / 1000,
            length_s=chime_duration_s(),
        )
        return sum(tone_power(window, frequency, 8000) for frequency in CHIME_FREQUENCIES_HZ)

    assert chime_band_power(with_chime) > 50 * chime_band_power(without)
    lead_in = decode_pcm(with_chime.files[Profile.ASTERISK], rate=8000, length_s=kit.settings.lead_in_ms / 1000)
    assert max(abs(sample) for sample in lead_in) < 50  # the lead-in is silence
    chime_s = with_chime.duration_s - without.duration_s
    assert chime_s == pytest.approx(chime_duration_s() + kit.settings.chime_gap_ms / 1000, abs=0.01)


@pytest.mark.slow
async def test_the_message_is_repeated_with_gaps(kit: SpeechKit) -> None:
    once = await kit.producer.render_text(TEXT, repeats=1, profiles=[Profile.ASTERISK])
    thrice = await kit.producer.render_text(TEXT, repeats=3, profiles=[Profile.ASTERISK])

    speech_s = speech_duration(kit, once)
    gap_s = kit.settings.gap_ms / 1000
    measured_once = ffprobe(once.files[Profile.ASTERISK]).duration_s
    measured_thrice = ffprobe(thrice.files[Profile.ASTERISK]).duration_s
    assert measured_once == pytest.approx(frame_s(kit) + speech_s, abs=DURATION_TOLERANCE_S)
    assert measured_thrice == pytest.approx(frame_s(kit) + 3 * speech_s + 2 * gap_s, abs=DURATION_TOLERANCE_S)
    assert thrice.repeats == 3


async def test_a_closing_line_is_read_once_after_the_repeats(kit: SpeechKit) -> None:
    plain = await kit.producer.render_text(TEXT, repeats=2, profiles=[Profile.ASTERISK])
    closed = await kit.producer.render_text(TEXT, repeats=2, closing_text="特此通知。", profiles=[Profile.ASTERISK])

    closing_entry = kit.cache.get(closed.speech_keys[1])
    assert closing_entry is not None
    closing_s = ffprobe(closing_entry.path).duration_s
    added = ffprobe(closed.files[Profile.ASTERISK]).duration_s - ffprobe(plain.files[Profile.ASTERISK]).duration_s
    assert added == pytest.approx(kit.settings.gap_ms / 1000 + closing_s, abs=DURATION_TOLERANCE_S)


def _recording(tmp_path: Path, container: str) -> Path:
    """A 'person's recording': speech at 48 kHz, 20 dB too quiet, in a browser or phone format."""
    wav = espeak_wav("我是村主任，今天下午三点停水，请大家提前储水。", tmp_path / "voice.wav")
    out = tmp_path / f"recording.{container}"
    codec = {"wav": ["-c:a", "pcm_s16le"], "mp3": ["-c:a", "libmp3lame"], "ogg": ["-c:a", "libopus"]}
    codec["webm"] = ["-c:a", "libopus"]
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(wav), "-af", "volume=-20dB", "-ar", "48000", *codec[container], str(out)],
        check=True,
    )
    return out


@pytest.mark.slow
@pytest.mark.parametrize("container", ["wav", "mp3", "ogg", "webm"])
async def test_a_human_recording_goes_through_the_same_pipeline(kit: SpeechKit, tmp_path: Path, container: str) -> None:
    recording = _recording(tmp_path, container)
    recording_s = ffprobe(recording).duration_s

    result = await kit.producer.render_recording(recording, repeats=2, profiles=[Profile.MP3, Profile.ASTERISK])

    assert result.engine == "recording"
    assert result.voice is None
    gap_s = kit.settings.gap_ms / 1000
    for profile, path in result.files.items():
        assert ffprobe(path).duration_s == pytest.approx(
            frame_s(kit) + 2 * recording_s + gap_s, abs=DURATION_TOLERANCE_S + 0.05
        ), profile
        loudness = ebur128(path)
        assert abs(loudness.integrated_lufs - TARGET_LUFS) <= 1.0, (profile, loudness)
        assert loudness.true_peak_dbtp <= CEILING_DBTP


async def test_the_same_recording_uploaded_twice_is_produced_once(kit: SpeechKit, tmp_path: Path) -> None:
    recording = _recording(tmp_path, "wav")
    first = await kit.producer.render_recording(recording.read_bytes(), repeats=1)
    second = await kit.producer.render_recording(recording, repeats=1)
    assert second.cached and second.files == first.files


async def test_a_silent_recording_is_refused(kit: SpeechKit, tmp_path: Path) -> None:
    silent = tmp_path / "silent.wav"
    await asyncio.to_thread(
        subprocess.run,
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "3", str(silent)],
        check=True,
    )
    with pytest.raises(BadRecording) as raised:
        await kit.producer.render_recording(silent)
    assert "没有声音" in raised.value.message


@pytest.mark.parametrize("content", [b"", b"definitely not audio" * 50])
async def test_an_empty_or_unreadable_recording_is_refused(kit: SpeechKit, content: bytes) -> None:
    with pytest.raises(BadRecording):
        await kit.producer.render_recording(content)


async def test_a_recording_over_the_limit_is_refused(tmp_path: Path, clock: ManualClock, speech_programs: None) -> None:
    from broadcast.production import ProductionSettings

    kit = make_kit(tmp_path, clock, settings=ProductionSettings(max_recording_s=2.0))
    with pytest.raises(BadRecording) as raised:
        await kit.producer.render_recording(_recording(tmp_path, "wav"))
    assert "太长" in raised.value.message


@pytest.mark.parametrize("repeats", [0, 11])
async def test_a_repeat_count_out_of_range_is_refused(kit: SpeechKit, repeats: int) -> None:
    with pytest.raises(BadParameter):
        await kit.producer.render_text(TEXT, repeats=repeats)


@pytest.mark.slow
async def test_online_speech_goes_through_the_same_pipeline_and_the_engine_is_recorded(
    edge_server: EdgeServer, tmp_path: Path, clock: ManualClock, speech_programs: None
) -> None:
    kit = make_kit(tmp_path, clock, [edge_engine(), espeak_engine()])

    result = await kit.producer.render_text(TEXT, repeats=2, profiles=[Profile.MP3])

    assert result.engine == "edge"
    assert result.voice is not None and result.voice["name"] == "zh-CN-XiaoxiaoNeural"
    loudness = ebur128(result.files[Profile.MP3])
    assert abs(loudness.integrated_lufs - TARGET_LUFS) <= 1.0
    assert loudness.true_peak_dbtp <= CEILING_DBTP
    # The server was asked for the spoken form, not the raw text.
    assert edge_server.requests[0].text == "各位村民请注意，明天上午九点三十分在村委会开会。"
