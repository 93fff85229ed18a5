"""The engine chain: fallback to espeak-ng, the circuit breaker, the background probe, health."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from common.clock import ManualClock
from tests.support.edge_server import EdgeServer, Mode
from tests.support.speech import SpeechKit, edge_engine, espeak_engine, make_kit
from tts.engine_errors import EngineUnavailable, NoEngineAvailable
from tts.engines import Speech, Voice, VoiceRequest

OPEN_PERIOD_S = 300.0


@pytest.fixture
def edge_then_espeak(tmp_path: Path, clock: ManualClock, speech_programs: None) -> SpeechKit:
    return make_kit(tmp_path, clock, [edge_engine(), espeak_engine()], open_period_s=OPEN_PERIOD_S)


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait for a background task's effect, bounded so a broken prober fails the test instead of hanging it."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_edge_speaks_when_it_works(edge_server: EdgeServer, edge_then_espeak: SpeechKit) -> None:
    spoken = await edge_then_espeak.chain.speak("各位村民请注意")

    assert spoken.engine == "edge"
    assert spoken.entry.path.read_bytes() == edge_server.audio
    assert spoken.entry.meta["voice"]["engine"] == "edge"


@pytest.mark.parametrize("mode", ["forbidden", "close_mid_stream", "abort_mid_stream", "no_audio"])
async def test_a_failing_edge_falls_back_to_espeak_and_opens_its_breaker(
    edge_server: EdgeServer, edge_then_espeak: SpeechKit, mode: Mode
) -> None:
    edge_server.mode = mode
    edge_server.chunk_size = 512
    chain = edge_then_espeak.chain

    spoken = await chain.speak("各位村民请注意")

    assert spoken.engine == "espeak"
    assert spoken.entry.path.read_bytes()[:4] == b"RIFF"
    assert chain.breaker_open("edge")
    health = chain.health()
    assert health["status"] == "degraded"
    assert health["engines"]["edge"]["status"] == "down"
    assert health["engines"]["edge"]["breaker"] == "open"
    assert health["engines"]["edge"]["last_error"]
    assert health["engines"]["espeak"]["status"] == "ok"


async def test_an_open_breaker_skips_edge_for_the_configured_period(
    edge_server: EdgeServer, edge_then_espeak: SpeechKit, clock: ManualClock
) -> None:
    chain = edge_then_espeak.chain
    edge_server.mode = "forbidden"
    await chain.speak("第一条通知")
    handshakes = edge_server.handshakes
    edge_server.mode = "ok"  # the service is back, but the chain does not know yet

    clock.advance(OPEN_PERIOD_S - 1)
    second = await chain.speak("第二条通知")

    assert second.engine == "espeak"
    assert edge_server.handshakes == handshakes, "edge was not even tried while its breaker was open"

    clock.advance(2)  # the period is over: without a prober, the next request tries edge again
    third = await chain.speak("第三条通知")

    assert third.engine == "edge"
    assert chain.breaker_state("edge") == "closed"


async def test_an_engine_is_known_to_work_only_once_it_has_answered(
    edge_server: EdgeServer, edge_then_espeak: SpeechKit, clock: ManualClock
) -> None:
    chain = edge_then_espeak.chain
    assert chain.breaker_state("edge") == "closed" and not chain.known_working("edge"), "fresh: nothing heard yet"
    await chain.startup_probe_finished()  # the prober is not running: returns at once

    edge_server.mode = "forbidden"
    await chain.speak("第一条通知")
    assert not chain.known_working("edge") and chain.known_working("espeak")

    edge_server.mode = "ok"
    await chain.start()
    try:
        await chain.startup_probe_finished()
        clock.advance(OPEN_PERIOD_S)
        await chain.probe_due()
        assert chain.known_working("edge")
    finally:
        await chain.stop()


async def test_the_background_probe_closes_the_breaker_when_edge_recovers(
    edge_server: EdgeServer, edge_then_espeak: SpeechKit, clock: ManualClock
) -> None:
    chain = edge_then_espeak.chain
    edge_server.mode = "forbidden"
    await chain.start()
    try:
        # The first probe runs at start: a machine without the service learns it before any notice.
        await eventually(lambda: chain.breaker_open("edge"), "edge found failing by the start-up probe")
        assert (await chain.speak("第一条通知")).engine == "espeak"

        edge_server.mode = "ok"
        requests_before = len(edge_server.requests)
        await asyncio.sleep(0.1)  # several probe intervals: still inside the skip period, so no probe
        assert len(edge_server.requests) == requests_before
        assert chain.breaker_open("edge")

        clock.advance(OPEN_PERIOD_S)
        assert chain.breaker_state("edge") == "half-open"
        await eventually(lambda: chain.breaker_state("edge") == "closed", "breaker closed by the background probe")
        assert len(edge_server.requests) == requests_before + 1  # exactly one probe
        assert chain.health()["engines"]["edge"]["status"] == "ok"
        assert (await chain.speak("第二条通知")).engine == "edge"
    finally:
        await chain.stop()


async def test_a_probe_that_fails_again_keeps_edge_skipped_for_another_period(
    edge_server: EdgeServer, edge_then_espeak: SpeechKit, clock: ManualClock
) -> None:
    chain = edge_then_espeak.chain
    edge_server.mode = "forbidden"
    await chain.speak("第一条通知")
    await chain.start()
    try:
        handshakes = edge_server.handshakes
        clock.advance(OPEN_PERIOD_S)
        await eventually(lambda: edge_server.handshakes > handshakes, "a probe after the period")
        await eventually(lambda: chain.breaker_state("edge") == "open", "breaker reopened")
        assert (await chain.speak("第二条通知")).engine == "espeak"
    finally:
        await chain.stop()


async def test_nothing_is_probed_at_construction_only_after_start(
    edge_server: EdgeServer, tmp_path: Path, clock: ManualClock, speech_programs: None
) -> None:
    kit = make_kit(tmp_path, clock, [edge_engine(), espeak_engine()])
    await asyncio.sleep(0.1)
    assert edge_server.handshakes == 0
    await kit.chain.start()
    try:
        await eventually(lambda: edge_server.handshakes == 1, "the start-up probe")
    finally:
        await kit.chain.stop()
    handshakes = edge_server.handshakes
    await asyncio.sleep(0.1)
    assert edge_server.handshakes == handshakes, "nothing runs after stop()"


async def test_a_request_naming_an_engine_uses_only_that_engine(
    edge_server: EdgeServer, edge_then_espeak: SpeechKit
) -> None:
    edge_server.mode = "forbidden"
    with pytest.raises(NoEngineAvailable) as raised:
        await edge_then_espeak.chain.speak("各位村民", VoiceRequest(engine="edge"))
    assert [failure.engine for failure in raised.value.failures] == ["edge"]

    spoken = await edge_then_espeak.chain.speak("各位村民", VoiceRequest(engine="espeak"))
    assert spoken.engine == "espeak"


async def test_a_voice_only_edge_knows_still_falls_back_to_espeaks_own_voice(
    edge_server: EdgeServer, edge_then_espeak: SpeechKit
) -> None:
    edge_server.mode = "forbidden"
    spoken = await edge_then_espeak.chain.speak("各位村民", VoiceRequest(voice="zh-CN-shaanxi-XiaoniNeural"))
    assert spoken.engine == "espeak"
    assert spoken.voice.name == "cmn-latn-pinyin"


async def test_when_every_engine_fails_the_error_lists_each_one(
    edge_server: EdgeServer, tmp_path: Path, clock: ManualClock, speech_programs: None
) -> None:
    edge_server.mode = "forbidden"
    kit = make_kit(tmp_path, clock, [edge_engine(), espeak_engine(binary=str(tmp_path / "no-espeak-ng"))])

    with pytest.raises(NoEngineAvailable) as raised:
        await kit.chain.speak("各位村民")

    assert [failure.engine for failure in raised.value.failures] == ["edge", "espeak"]
    assert "espeak-ng" in raised.value.message
    assert kit.chain.health()["status"] == "down"


class FlakyEspeak:
    """espeak-ng that fails its first call (a passing hiccup), then works."""

    name = "espeak"

    def __init__(self) -> None:
        self.inner = espeak_engine()
        self.calls = 0

    def knows_voice(self, voice: str) -> bool:
        return self.inner.knows_voice(voice)

    def resolve(self, request: VoiceRequest) -> Voice:
        return self.inner.resolve(request)

    async def synthesize(self, text: str, voice: Voice) -> Speech:
        self.calls += 1
        if self.calls == 1:
            raise EngineUnavailable("离线语音引擎出错。", engine=self.name, detail="first call fails")
        return await self.inner.synthesize(text, voice)

    async def probe(self) -> None:
        await self.inner.probe()


async def test_skipped_engines_are_still_tried_before_giving_up(
    edge_server: EdgeServer, tmp_path: Path, clock: ManualClock, speech_programs: None
) -> None:
    """Skipping is an optimisation: with every breaker open, the chain still tries rather than stay silent."""
    edge_server.mode = "forbidden"
    flaky = FlakyEspeak()
    kit = make_kit(tmp_path, clock, [edge_engine(), flaky])
    with pytest.raises(NoEngineAvailable):
        await kit.chain.speak("第一条")
    assert kit.chain.breaker_open("edge") and kit.chain.breaker_open("espeak")
    assert kit.chain.health()["status"] == "down"

    spoken = await kit.chain.speak("第二条")

    assert spoken.engine == "espeak"
    assert flaky.calls == 2
    assert kit.chain.breaker_state("espeak") == "closed"
