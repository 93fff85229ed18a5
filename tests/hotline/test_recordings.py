"""Recording files: what Asterisk writes, what we make of it (duration, emptiness, sound), and their names."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

from hotline.recordings import inspect, parse_spool_name
from tests.hotline.wavs import write_wav


def test_a_header_only_wav_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    write_wav(path, 0)
    facts = inspect(path)
    assert path.stat().st_size == 44 and facts.empty and facts.duration_s == 0 and facts.sound_s == 0


def test_silence_has_a_duration_but_no_sound_and_a_tone_has_both(tmp_path: Path) -> None:
    write_wav(tmp_path / "silence.wav", 3.0, loud=False)
    write_wav(tmp_path / "tone.wav", 2.0)
    silence, tone = inspect(tmp_path / "silence.wav"), inspect(tmp_path / "tone.wav")
    assert silence.duration_s == 3.0 and not silence.empty and silence.sound_s == 0
    assert not silence.has_speech(0.4)
    assert tone.duration_s == 2.0 and tone.sound_s >= 1.9 and tone.has_speech(0.4)


def test_a_recording_whose_header_was_never_finalised_is_measured_by_its_size(tmp_path: Path) -> None:
    path = tmp_path / "open.wav"
    write_wav(path, 2.0)
    data = bytearray(path.read_bytes())
    data[4:8] = struct.pack("<I", 0)  # RIFF size not yet written
    data[40:44] = struct.pack("<I", 0)  # data size not yet written
    path.write_bytes(bytes(data))
    assert inspect(path).duration_s == 2.0


def test_spool_names_say_which_call_and_what_kind() -> None:
    message = parse_spool_name("cx_discipline_message_main-1716200000.12.wav")
    assert message is not None and (message.category, message.kind, message.linkedid) == (
        "discipline",
        "message",
        "main-1716200000.12",
    )
    callback = parse_spool_name("cx_case42_callback_cb-7.wav")
    assert callback is not None and callback.case_id == 42 and callback.category is None
    for other in ("page_spk1_x.wav", "cx_petition_message_../../etc.wav", "cx_petition_selfie_x.wav", "x.wav"):
        assert parse_spool_name(other) is None


def test_a_window_is_sound_only_above_the_noise_floor_even_by_one_sample(tmp_path: Path) -> None:
    # 20 ms windows (160 samples at 8 kHz) of a square wave at the floor's RMS (330: not sound), one sample
    # louder than that (sound, though its RMS rounds down to 330), at 331, and at 329: 2 of 4 windows loud.
    window = [330, -330] * 80
    nudged = [331, *window[1:]]
    frames = [*window, *nudged, *([331, -331] * 80), *([329, -329] * 80)]
    path = tmp_path / "floor.wav"
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(8000)
        handle.writeframes(struct.pack(f"<{len(frames)}h", *frames))
    facts = inspect(path)
    assert facts.duration_s == 0.08 and facts.sound_s == 0.04
