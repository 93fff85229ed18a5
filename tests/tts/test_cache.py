"""The audio cache: rendered once under concurrency, distinct keys, eviction, nothing half-written."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from common.clock import ManualClock
from tests.support.edge_server import EdgeServer
from tests.support.speech import edge_engine, entries, espeak_engine, leftovers, make_kit
from tts.audio import AudioTools, Profile
from tts.cache import AudioCache, CacheFull
from tts.chain import SpeechChain
from tts.engine_errors import EngineUnavailable, NoEngineAvailable, ProgramMissing
from tts.engines import Speech, Voice, VoiceRequest


class CountingEngine:
    """espeak-ng behind a gate: counts calls and holds them until released."""

    name = "espeak"

    def __init__(self) -> None:
        self.inner = espeak_engine()
        self.calls = 0
        self.gate = asyncio.Event()

    def knows_voice(self, voice: str) -> bool:
        return self.inner.knows_voice(voice)

    def resolve(self, request: VoiceRequest) -> Voice:
        return self.inner.resolve(request)

    async def synthesize(self, text: str, voice: Voice) -> Speech:
        self.calls += 1
        await self.gate.wait()
        return await self.inner.synthesize(text, voice)

    async def probe(self) -> None:
        return None


class FailingMidwayEngine(CountingEngine):
    async def synthesize(self, text: str, voice: Voice) -> Speech:
        self.calls += 1
        await asyncio.sleep(0)  # part of the work done…
        raise EngineUnavailable("离线语音引擎出错。", engine=self.name, detail="failed mid-way")


async def test_the_same_text_rendered_five_times_at_once_is_synthesised_once(
    tmp_path: Path, clock: ManualClock, speech_programs: None
) -> None:
    engine = CountingEngine()
    kit = make_kit(tmp_path, clock, [engine])

    renders = [asyncio.create_task(kit.chain.speak("各位村民请注意")) for _ in range(5)]
    await asyncio.sleep(0.05)
    engine.gate.set()
    spoken = await asyncio.gather(*renders)

    assert engine.calls == 1
    assert len({item.entry.path for item in spoken}) == 1
    assert sum(not item.cached for item in spoken) == 1
    assert len(entries(kit.cache)) == 1
    assert leftovers(kit.cache) == []


async def test_the_same_notice_produced_five_times_at_once_is_produced_once(
    tmp_path: Path, clock: ManualClock, speech_programs: None
) -> None:
    engine = CountingEngine()
    engine.gate.set()
    kit = make_kit(tmp_path, clock, [engine])

    results = await asyncio.gather(*(kit.producer.render_text("请注意。", repeats=1) for _ in range(5)))

    assert engine.calls == 1
    assert len({result.files[Profile.MP3] for result in results}) == 1
    assert sum(not result.cached for result in results) == 1
    assert len(entries(kit.cache)) == 2  # the speech and the one MP3 item


async def test_a_second_render_is_a_cache_hit_without_the_engine(
    tmp_path: Path, clock: ManualClock, speech_programs: None
) -> None:
    engine = CountingEngine()
    engine.gate.set()
    kit = make_kit(tmp_path, clock, [engine])
    first = await kit.producer.render_text("请注意。", repeats=1)

    second = await kit.producer.render_text("请注意。", repeats=1)

    assert second.cached and not first.cached
    assert second.files == first.files
    assert engine.calls == 1


def test_anything_that_changes_the_sound_changes_the_key() -> None:
    chain_key = SpeechChain.speech_key
    base = Voice("edge", "zh-CN-XiaoxiaoNeural", "-15%", "+0%", "+0Hz")
    keys = {
        chain_key("请注意", base),
        chain_key("请注意！", base),
        chain_key("请注意", Voice("edge", "zh-CN-YunxiNeural", "-15%", "+0%", "+0Hz")),
        chain_key("请注意", Voice("edge", "zh-CN-XiaoxiaoNeural", "-10%", "+0%", "+0Hz")),
        chain_key("请注意", Voice("edge", "zh-CN-XiaoxiaoNeural", "-15%", "+5%", "+0Hz")),
        chain_key("请注意", Voice("edge", "zh-CN-XiaoxiaoNeural", "-15%", "+0%", "+2Hz")),
        chain_key("请注意", Voice("espeak", "cmn-latn-pinyin", "-15%", "+0%", "+0Hz")),
    }
    assert len(keys) == 7
    assert chain_key("请注意", base) == chain_key(
        "请注意", Voice("edge", "zh-CN-XiaoxiaoNeural", "-15%", "+0%", "+0Hz")
    )


@pytest.mark.slow
async def test_production_parameters_and_profiles_change_the_item_key(
    tmp_path: Path, clock: ManualClock, speech_programs: None
) -> None:
    kit = make_kit(tmp_path, clock)
    once = await kit.producer.render_text("请注意。", repeats=1)
    twice = await kit.producer.render_text("请注意。", repeats=2)
    no_chime = await kit.producer.render_text("请注意。", repeats=1, chime=False)
    slower = await kit.producer.render_text("请注意。", repeats=1, voice=VoiceRequest(rate="-20%"))
    phone = await kit.producer.render_text("请注意。", repeats=1, profiles=[Profile.ASTERISK])

    item_keys = {once.keys[Profile.MP3], twice.keys[Profile.MP3], no_chime.keys[Profile.MP3]}
    item_keys |= {slower.keys[Profile.MP3], phone.keys[Profile.ASTERISK]}
    assert len(item_keys) == 5
    assert once.speech_keys == twice.speech_keys == no_chime.speech_keys == phone.speech_keys
    assert slower.speech_keys != once.speech_keys


async def _put(cache: AudioCache, key: str, size: int, *, parents: list[str] | None = None) -> None:
    async with cache.staging() as staging:
        path = staging.audio_path("wav")
        path.write_bytes(b"\0" * size)
        await cache.commit(key, staging, path, {"kind": "test", "parents": parents or []})


def _last_used(cache: AudioCache, key: str, when: float) -> None:
    os.utime(cache.entry_dir(key) / "meta.json", (when, when))


async def test_eviction_keeps_under_the_limit_least_recently_used_first(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path / "audio", max_bytes=25_000)
    for index, key in enumerate(["a" * 64, "b" * 64, "c" * 64, "d" * 64]):
        await _put(cache, key, 10_000)
        _last_used(cache, key, 1_000_000 + index)
    _last_used(cache, "a" * 64, 2_000_000)  # "a" was just used again

    report = await cache.evict()

    assert report.total_bytes <= 25_000
    assert cache.get("a" * 64) is not None
    assert cache.get("b" * 64) is None and cache.get("c" * 64) is None
    assert cache.get("d" * 64) is not None
    assert report.removed == 2


async def test_eviction_never_removes_what_is_kept_or_its_parents(tmp_path: Path) -> None:
    speech, item, playing, other = "s" * 64, "i" * 64, "p" * 64, "o" * 64

    async def approved() -> set[str]:
        return {item}

    cache = AudioCache(tmp_path / "audio", max_bytes=1)
    cache.add_keeper("approved", approved)
    await _put(cache, speech, 10_000)
    await _put(cache, item, 10_000, parents=[speech])
    await _put(cache, playing, 10_000)
    await _put(cache, other, 10_000)

    with cache.keep_set("a zone playing") as keep:
        keep.add([playing])
        report = await cache.evict()
        assert cache.get(playing) is not None  # kept while in the set

    assert cache.get(item) is not None
    assert cache.get(speech) is not None  # the item was made from it
    assert cache.get(other) is None
    assert report.total_bytes > cache.max_bytes  # over the limit, but everything left is kept
    assert report.kept_bytes == report.total_bytes
    await cache.evict()
    assert cache.get(playing) is None  # the set closed: no longer kept


async def test_new_kept_audio_that_does_not_fit_is_refused_with_the_space_needed_and_health_says_full(
    tmp_path: Path,
) -> None:
    kept, new = "k" * 64, "n" * 64
    cache = AudioCache(tmp_path / "audio", max_bytes=25_000)

    async def approved() -> set[str]:
        return {kept}

    cache.add_keeper("approved", approved)
    await _put(cache, kept, 20_000)
    await _put(cache, new, 10_000)
    assert (await cache.health())["full"] is False

    with pytest.raises(CacheFull) as refused:
        await cache.ensure_room([new])
    assert refused.value.needed_bytes == 5_000 + len_meta(cache, new) + len_meta(cache, kept)
    assert "还需要腾出约" in refused.value.message and "MB" in refused.value.message
    health = await cache.health()
    assert health["status"] == "degraded" and health["full"] is True and "needed_mb" in health
    # Nothing was evicted to make room: the kept audio and the refused audio are both still there.
    assert cache.get(kept) is not None and cache.get(new) is not None

    # An emergency is never refused: kept over the limit, and the overflow reported.
    with cache.keeping([new], "emergency"):
        await cache.ensure_room([new], overflow=True)
        usage = await cache.usage(fresh=True)
        assert usage.overflow_bytes > 0
        health = await cache.health()
        assert health["status"] == "degraded" and health["overflow_mb"] >= 0


def len_meta(cache: AudioCache, key: str) -> int:
    """The bytes an entry takes beyond its audio (its meta.json)."""
    return (cache.entry_dir(key) / "meta.json").stat().st_size


@pytest.mark.slow
async def test_producing_keeps_the_cache_under_its_limit(
    tmp_path: Path, clock: ManualClock, speech_programs: None
) -> None:
    kit = make_kit(tmp_path, clock, max_bytes=300_000)
    for index in range(4):
        await kit.producer.render_text(f"第{index + 1}条通知，请注意。", repeats=1)
    assert kit.cache.total_bytes() <= 300_000


async def test_a_render_failing_mid_way_leaves_nothing_in_the_cache(
    tmp_path: Path, clock: ManualClock, speech_programs: None
) -> None:
    kit = make_kit(tmp_path, clock, [FailingMidwayEngine()])

    with pytest.raises(NoEngineAvailable):
        await kit.producer.render_text("请注意。")

    assert entries(kit.cache) == []
    assert leftovers(kit.cache) == []


async def test_a_stream_dropped_mid_way_leaves_no_edge_entry(
    edge_server: EdgeServer, tmp_path: Path, clock: ManualClock, speech_programs: None
) -> None:
    edge_server.mode = "close_mid_stream"
    edge_server.chunk_size = 512
    kit = make_kit(tmp_path, clock, [edge_engine()])

    with pytest.raises(NoEngineAvailable):
        await kit.chain.speak("各位村民请注意")

    assert entries(kit.cache) == []
    assert leftovers(kit.cache) == []


async def test_an_encoder_failing_after_the_speech_leaves_no_item(
    tmp_path: Path, clock: ManualClock, speech_programs: None
) -> None:
    kit = make_kit(tmp_path, clock, tools=AudioTools(ffmpeg=str(tmp_path / "no-ffmpeg")))

    with pytest.raises(ProgramMissing):
        await kit.producer.render_text("请注意。")

    kinds = [(directory / "meta.json").read_text() for directory in entries(kit.cache)]
    assert len(kinds) == 1 and '"kind": "speech"' in kinds[0]  # the finished speech is kept, no item
    assert leftovers(kit.cache) == []


async def test_two_processes_publishing_the_same_key_leave_one_whole_entry(tmp_path: Path) -> None:
    """Two caches on one directory stand for two processes: the second rename loses quietly."""
    first, second = AudioCache(tmp_path / "audio", max_bytes=10**9), AudioCache(tmp_path / "audio", max_bytes=10**9)
    key = "k" * 64
    async with first.staging() as one, second.staging() as two:
        (one.directory / "audio.wav").write_bytes(b"1" * 1000)
        (two.directory / "audio.wav").write_bytes(b"2" * 1000)
        await first.commit(key, one, one.directory / "audio.wav", {"kind": "test"})
        entry = await second.commit(key, two, two.directory / "audio.wav", {"kind": "test"})

    assert entry.path.read_bytes() == b"1" * 1000
    assert leftovers(first) == []
