"""The IVR prompts: all written, rendered by our speech pipeline into Asterisk's format, re-rendered only on change."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import ValidationError

from common.clock import SystemClock
from hotline.prompts import PROMPTS, PromptInstaller, SpeechRenderer, catalog, chinese_number
from server import Runtime
from settings import IvrSettings
from storage.models import CASE_STATUSES
from tests.hotline.wavs import write_wav


class CountingRenderer:
    """Stands in for the TTS pipeline: writes a short WAV and remembers what it was asked to say."""

    def __init__(self, spoken_by: str) -> None:
        self.said: list[str] = []
        self.rate = "-15%"
        self.spoken_by = spoken_by
        self.preferred_works = True
        self.chain = self

    @property
    def engine_names(self) -> list[str]:
        return ["edge", "espeak"]

    def known_working(self, engine: str) -> bool:
        return self.preferred_works

    async def startup_probe_finished(self) -> None:
        return None

    def identity(self) -> dict[str, Any]:
        return {"engines": self.engine_names, "rate": self.rate}

    async def render(self, text: str, dest: Path, *, lead_in_ms: int = 0, tail_ms: int = 0) -> Any:
        from hotline.prompts import Rendered

        self.said.append(text)
        write_wav(dest, 0.1)
        return Rendered(0.1, self.spoken_by, {"engine": self.spoken_by})


def installer(renderer: CountingRenderer, target: Path, county: str = "示例县") -> PromptInstaller:
    return PromptInstaller(cast(SpeechRenderer, renderer), target, county=county, clock=SystemClock())


def test_the_record_warning_says_its_seconds_in_chinese_and_a_warning_longer_than_a_message_is_refused() -> None:
    assert [chinese_number(value) for value in (3, 10, 15, 30, 45)] == ["三", "十", "十五", "三十", "四十五"]
    said = {prompt.id: prompt.text for prompt in catalog("示例县", record_warning_s=15)}
    assert said["record_warning"] == "请在十五秒内说完。"
    assert "请在十秒内说完" in next(prompt.text for prompt in catalog("示例县") if prompt.id == "record_warning")
    with pytest.raises(ValidationError, match="record_warning_s"):
        IvrSettings(record_max_s=8, record_warning_s=10)


def test_every_case_status_has_a_sentence_and_digits_read_one_as_yao() -> None:
    assert {f"status_{status}" for status in CASE_STATUSES} <= set(PROMPTS)
    assert PROMPTS["digit_1"][1] == "幺"
    assert "示例县" in next(prompt.text for prompt in catalog("示例县") if prompt.id == "welcome")


async def test_prompts_are_rendered_once_and_again_only_when_their_text_or_voice_changes(tmp_path: Path) -> None:
    renderer = CountingRenderer(spoken_by="edge")
    target = tmp_path / "prompts"
    first = await installer(renderer, target).install()
    assert len(first.rendered) == len(PROMPTS) and not first.failed
    assert (await installer(renderer, target).install()).rendered == []
    # A new county name changes two sentences.
    renamed = await installer(renderer, target, county="另一个县").install()
    assert sorted(renamed.rendered) == ["survey_hello", "welcome"]
    # A file gone missing is made again, alone.
    (target / "menu.wav").unlink()
    assert (await installer(renderer, target, county="另一个县").install()).rendered == ["menu"]
    # Another voice: everything.
    renderer.rate = "-20%"
    assert len((await installer(renderer, target, county="另一个县").install()).rendered) == len(PROMPTS)
    manifest = installer(renderer, target).manifest()
    assert manifest["welcome"]["text"] == "您好，这里是另一个县群众诉求热线。"


async def test_prompts_spoken_by_a_fallback_engine_are_redone_once_the_preferred_one_works(tmp_path: Path) -> None:
    renderer = CountingRenderer(spoken_by="espeak")
    renderer.preferred_works = False  # edge unreachable (or not yet heard from since start): espeak spoke
    target = tmp_path / "prompts"
    await installer(renderer, target).install()
    assert (await installer(renderer, target).install()).rendered == []
    renderer.preferred_works = True
    renderer.spoken_by = "edge"
    assert len((await installer(renderer, target).install()).rendered) == len(PROMPTS)


async def test_a_prompt_is_8_khz_mono_16_bit_speech_from_our_tts(runtime: Runtime, tmp_path: Path) -> None:
    from tts.engines import VoiceRequest

    renderer = SpeechRenderer(runtime.speech.chain, runtime.speech.tools, voice=VoiceRequest(engine="espeak"))
    dest = tmp_path / "digit_1.wav"
    rendered = await renderer.render("幺", dest, lead_in_ms=0, tail_ms=250)
    with wave.open(str(dest)) as audio:
        assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (8000, 1, 2)
        assert abs(audio.getnframes() / 8000 - rendered.duration_s) < 0.01
    assert rendered.engine == "espeak" and rendered.duration_s > 0.25
