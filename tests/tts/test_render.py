"""The generic renderer, used the way the hotline will use it: a one-sentence IVR prompt, no chime."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.support.speech import SpeechKit, ebur128, espeak_wav, ffprobe
from tts.audio import NormalizedClip, Profile, Silence
from tts.render import AudioRenderer, BadSource, LoudnessPolicy, Source, Timeline

LEAD_IN_MS = 250  # of silence before the prompt


async def prompt_layout(pieces: Sequence[NormalizedClip]) -> Timeline:
    [prompt] = pieces
    return Timeline([Silence(LEAD_IN_MS), prompt.clip], prompt.loudness.true_peak_dbtp)


async def test_a_prompt_renders_to_asterisks_format_on_the_loudness_target(kit: SpeechKit, tmp_path: Path) -> None:
    spoken = await kit.chain.speak("您好，这里是示例县群众诉求热线。")
    renderer = AudioRenderer(kit.cache, kit.tools, LoudnessPolicy(target_lufs=-18.0, ceiling_dbtp=-3.0))

    rendered = await renderer.render(
        {"speech": spoken.key, "layout": "prompt-test"},
        [Source(spoken.entry.path, "prompt")],
        prompt_layout,
        [Profile.ASTERISK],
        meta={"engine": spoken.engine},
        parents=[spoken.key],
    )

    path = rendered.files[Profile.ASTERISK]
    probe = ffprobe(path)
    assert (probe.codec, probe.sample_rate, probe.channels) == ("pcm_s16le", 8000, 1)
    assert probe.duration_s == pytest.approx(ffprobe(spoken.entry.path).duration_s + 0.25, abs=0.05)
    loudness = ebur128(path)
    assert abs(loudness.integrated_lufs - -18.0) <= 1.0
    assert loudness.true_peak_dbtp <= -3.0
    assert rendered.meta["engine"] == "espeak" and rendered.meta["parents"] == [spoken.key]

    again = await renderer.render(
        {"speech": spoken.key, "layout": "prompt-test"},
        [Source(spoken.entry.path, "prompt")],
        prompt_layout,
        [Profile.ASTERISK],
    )
    assert again.cached and again.files == rendered.files


def test_a_different_loudness_policy_is_a_different_rendering(kit: SpeechKit) -> None:
    parts = {"speech": "abc"}
    quiet = AudioRenderer(kit.cache, kit.tools, LoudnessPolicy(target_lufs=-23.0))
    loud = AudioRenderer(kit.cache, kit.tools, LoudnessPolicy(target_lufs=-16.0))
    assert quiet.keys(parts, [Profile.MP3]) != loud.keys(parts, [Profile.MP3])


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"not audio" * 100, "unreadable"), (None, "silent"), ("long", "too_long")],
)
async def test_a_bad_source_says_which_and_why(
    kit: SpeechKit, tmp_path: Path, content: bytes | str | None, reason: str
) -> None:
    renderer = AudioRenderer(kit.cache, kit.tools, LoudnessPolicy())
    if content is None:
        source = Source(_silent_wav(tmp_path / "silent.wav").read_bytes(), "upload")
    elif content == "long":
        source = Source(espeak_wav("请注意，今天下午停水。", tmp_path / "speech.wav"), "upload", max_duration_s=1.0)
    else:
        assert isinstance(content, bytes)
        source = Source(content, "upload")

    with pytest.raises(BadSource) as raised:
        await renderer.render({"test": reason}, [source], prompt_layout, [Profile.MP3])

    assert (raised.value.label, raised.value.reason) == ("upload", reason)


def _silent_wav(path: Path) -> Path:
    import struct

    data = b"\0\0" * 16000
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
    header += struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
    path.write_bytes(header + b"data" + struct.pack("<I", len(data)) + data)
    return path
