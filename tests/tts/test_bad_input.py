"""Bad input through the whole render: a clear error naming the problem, and nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from broadcast.production import ProductionSettings
from common.clock import ManualClock
from common.errors import CunxiangError
from tests.support.speech import SpeechKit, entries, espeak_engine, leftovers, make_kit
from tts.audio import AudioTools, Profile
from tts.engine_errors import BadParameter, BadVoice, NoEngineAvailable, ProgramMissing
from tts.engines import VoiceRequest
from tts.errors import (
    TEXT_CONTROL_CHARS,
    TEXT_EMPTY,
    TEXT_NO_SPEAKABLE,
    TEXT_TOO_LONG,
    TEXT_UNSUPPORTED_SCRIPT,
    TextError,
)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", TEXT_EMPTY),
        ("  \n\t ", TEXT_EMPTY),
        ("开会" * 2501, TEXT_TOO_LONG),
        ("！！！。。。……", TEXT_NO_SPEAKABLE),
        ("🎉🎉👍", TEXT_NO_SPEAKABLE),
        ("明天\x07开会", TEXT_CONTROL_CHARS),
        ("明天开会ᠮᠣᠩᠭᠣᠯ", TEXT_UNSUPPORTED_SCRIPT),
        ("通知Привет", TEXT_UNSUPPORTED_SCRIPT),
    ],
    ids=["empty", "whitespace", "over-5000", "punctuation", "emoji", "control-char", "mongolian", "cyrillic"],
)
async def test_unspeakable_text_is_refused_before_any_engine_runs(kit: SpeechKit, text: str, code: str) -> None:
    with pytest.raises(TextError) as raised:
        await kit.producer.render_text(text)

    assert raised.value.code == code
    assert raised.value.message  # Chinese, for the clerk
    assert entries(kit.cache) == [] and leftovers(kit.cache) == []


async def test_the_length_limit_is_a_setting(tmp_path: Path, clock: ManualClock, speech_programs: None) -> None:
    kit = make_kit(tmp_path, clock, settings=ProductionSettings(max_chars=20))
    with pytest.raises(TextError) as raised:
        await kit.producer.render_text("各位村民请注意，明天上午九点在村委会召开全体村民大会。")
    assert raised.value.code == TEXT_TOO_LONG
    assert "20" in raised.value.message


async def test_an_unknown_voice_is_refused(kit: SpeechKit) -> None:
    with pytest.raises(BadVoice) as raised:
        await kit.producer.render_text("请注意。", voice=VoiceRequest(voice="zh-CN-NobodyNeural"))
    assert "zh-CN-NobodyNeural" in raised.value.message
    assert entries(kit.cache) == []


async def test_an_unknown_engine_is_refused(kit: SpeechKit) -> None:
    with pytest.raises(BadVoice) as raised:
        await kit.producer.render_text("请注意。", voice=VoiceRequest(engine="festival"))
    assert "festival" in raised.value.message


async def test_a_rate_without_a_sign_is_refused(kit: SpeechKit) -> None:
    with pytest.raises(BadParameter) as raised:
        await kit.producer.render_text("请注意。", voice=VoiceRequest(rate="10%"))
    assert "10%" in raised.value.message
    assert raised.value.fields.keys() == {"rate"}
    assert entries(kit.cache) == []


async def test_a_missing_ffmpeg_is_named_with_its_package(
    tmp_path: Path, clock: ManualClock, speech_programs: None
) -> None:
    kit = make_kit(tmp_path, clock, tools=AudioTools(ffmpeg="/nonexistent/bin/ffmpeg"))
    with pytest.raises(ProgramMissing) as raised:
        await kit.producer.render_text("请注意。")
    assert "ffmpeg" in raised.value.message and "apt-get install ffmpeg" in raised.value.message
    assert leftovers(kit.cache) == []
    # Only the finished speech is kept; no rendered item was published.
    assert all('"kind": "speech"' in (path / "meta.json").read_text() for path in entries(kit.cache))


async def test_a_missing_espeak_ng_is_named_with_its_package(
    tmp_path: Path, clock: ManualClock, speech_programs: None
) -> None:
    kit = make_kit(tmp_path, clock, [espeak_engine(binary="/nonexistent/bin/espeak-ng")])
    with pytest.raises(NoEngineAvailable) as raised:
        await kit.producer.render_text("请注意。")
    assert "espeak-ng" in raised.value.message and "apt-get install espeak-ng" in raised.value.message
    assert entries(kit.cache) == [] and leftovers(kit.cache) == []


async def test_every_error_here_is_one_of_ours(kit: SpeechKit) -> None:
    """Nothing above tts/ should have to catch a library's exception."""
    for call in (
        kit.producer.render_text(""),
        kit.producer.render_text("请注意。", voice=VoiceRequest(pitch="high")),
        kit.producer.render_recording(b"not audio at all" * 10),
    ):
        with pytest.raises(CunxiangError):
            await call


async def test_latin_letters_among_chinese_are_spoken_not_refused(kit: SpeechKit) -> None:
    """Latin letters (a brand, an abbreviation) pass the normaliser; espeak-ng spells them out.

    Other scripts (Mongolian, Cyrillic, …) are refused above: the Mandarin voices read them as noise.
    """
    result = await kit.producer.render_text("请到村委会领取WiFi密码和CCTV节目单。", repeats=1, profiles=[Profile.MP3])
    assert result.duration_s > 3
