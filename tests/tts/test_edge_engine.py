"""The edge-tts adapter, tested at its protocol edge: a local server speaking Microsoft's websocket protocol."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.support.edge_server import EdgeServer, Mode
from tests.support.speech import edge_engine
from tts.engine_errors import BadParameter, BadVoice, EngineUnavailable, NoAudio
from tts.engines import VoiceRequest


async def test_edge_returns_exactly_the_audio_the_server_streamed(edge_server: EdgeServer) -> None:
    engine = edge_engine()
    voice = engine.resolve(VoiceRequest())

    speech = await engine.synthesize("各位村民请注意", voice)

    assert speech.audio == edge_server.audio
    assert speech.format == "mp3"
    assert speech.engine == "edge"
    [request] = edge_server.requests
    assert request.text == "各位村民请注意"
    # The defaults: Xiaoxiao, slower than normal for old listeners, volume and pitch untouched.
    assert request.voice == "Microsoft Server Speech Text to Speech Voice (zh-CN, XiaoxiaoNeural)"
    assert (request.rate, request.volume, request.pitch) == ("-15%", "+0%", "+0Hz")
    config = json.loads(request.config.split("\r\n\r\n", 1)[1])
    assert config["context"]["synthesis"]["audio"]["outputFormat"] == "audio-24khz-48kbitrate-mono-mp3"
    assert request.query["TrustedClientToken"] == "local"


async def test_a_long_text_reaches_the_service_in_pieces_cut_between_sentences(edge_server: EdgeServer) -> None:
    # 60 sentences, 6,120 bytes: more than edge-tts should send in one piece (4,096 bytes), and no
    # spaces or newlines, so left to itself edge-tts 7.3.1 sends the whole text as one message.
    sentence = "各位村民请注意，十一月二十六日至二十八日我县将出现六到八级大风天气。"
    text = sentence * 60
    engine = edge_engine()

    speech = await engine.synthesize(text, engine.resolve(VoiceRequest()))

    pieces = [request.text.strip() for request in edge_server.requests]
    assert len(pieces) >= 2
    assert all(piece.endswith("。") and len(piece.encode()) <= 4096 for piece in pieces)
    assert "".join(piece.replace("\n", "") for piece in pieces) == text
    # One answer per piece, joined in order.
    assert speech.audio == edge_server.audio * len(pieces)


async def test_edge_sends_the_requested_regional_voice_and_prosody(edge_server: EdgeServer) -> None:
    engine = edge_engine()
    voice = engine.resolve(VoiceRequest(voice="zh-CN-liaoning-XiaobeiNeural", rate="+10%", volume="-20%", pitch="-5Hz"))

    await engine.synthesize("明天上午开会", voice)

    [request] = edge_server.requests
    assert request.voice == "Microsoft Server Speech Text to Speech Voice (zh-CN-liaoning, XiaobeiNeural)"
    assert (request.rate, request.volume, request.pitch) == ("+10%", "-20%", "-5Hz")


async def test_a_403_on_the_handshake_is_engine_unavailable(edge_server: EdgeServer) -> None:
    edge_server.mode = "forbidden"
    engine = edge_engine()

    with pytest.raises(EngineUnavailable) as raised:
        await engine.synthesize("各位村民", engine.resolve(VoiceRequest()))

    assert "403" in raised.value.message
    assert raised.value.engine == "edge"
    # edge-tts retries once after correcting its clock from the Date header, as it does against Microsoft.
    assert edge_server.handshakes == 2


@pytest.mark.parametrize("mode", ["close_mid_stream", "abort_mid_stream"])
async def test_a_connection_dropped_mid_stream_is_engine_unavailable_not_short_audio(
    edge_server: EdgeServer, mode: Mode
) -> None:
    edge_server.mode = mode
    edge_server.chunk_size = 512  # several frames, so the drop lands after some audio
    engine = edge_engine()

    with pytest.raises(EngineUnavailable) as raised:
        await engine.synthesize("各位村民", engine.resolve(VoiceRequest()))

    assert raised.value.engine == "edge"
    assert edge_server.requests, "the server did get the request before dropping it"


async def test_turn_end_without_audio_is_no_audio(edge_server: EdgeServer) -> None:
    edge_server.mode = "no_audio"
    engine = edge_engine()

    with pytest.raises(NoAudio):
        await engine.synthesize("各位村民", engine.resolve(VoiceRequest()))


async def test_an_unreachable_endpoint_is_engine_unavailable(
    edge_server: EdgeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edge_tts.communicate

    # A port nothing listens on: the connection is refused at once.
    monkeypatch.setattr(edge_tts.communicate, "WSS_URL", "ws://127.0.0.1:9/edge/v1?TrustedClientToken=local")
    engine = edge_engine()

    with pytest.raises(EngineUnavailable):
        await engine.synthesize("各位村民", engine.resolve(VoiceRequest()))


async def test_the_proxy_setting_carries_the_connection(
    edge_server: EdgeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edge_tts.communicate

    # The service's name does not resolve here: only a proxy can reach it. The local server
    # plays the proxy too (a plain HTTP proxy gets the absolute URL and forwards the upgrade).
    monkeypatch.setattr(edge_tts.communicate, "WSS_URL", "ws://speech.invalid/edge/v1?TrustedClientToken=local")
    direct = edge_engine()
    with pytest.raises(EngineUnavailable):
        await direct.synthesize("各位村民", direct.resolve(VoiceRequest()))

    proxied = edge_engine(proxy=f"http://127.0.0.1:{edge_server.port}")
    speech = await proxied.synthesize("各位村民", proxied.resolve(VoiceRequest()))

    assert speech.audio == edge_server.audio
    assert [request.text for request in edge_server.requests] == ["各位村民"]


async def test_a_service_that_does_not_answer_fails_within_twice_the_connect_timeout(
    edge_server: EdgeServer,
) -> None:
    # The connection is made, then nothing comes (as when a name lookup or a proxy hangs):
    # give up after 2 × connect timeout, not after the 20 s receive timeout.
    edge_server.mode = "hold"
    engine = edge_engine(connect_timeout_s=1, receive_timeout_s=20, timeout_s=60.0)
    with pytest.raises(EngineUnavailable) as raised:
        await engine.synthesize("各位村民", engine.resolve(VoiceRequest()))

    # Which deadline fired, from the engine's own account (no wall-clock assertion): the answer deadline.
    assert raised.value.detail is not None and "no answer within 2 s" in raised.value.detail


async def test_no_more_than_the_configured_connections_are_open_at_once(edge_server: EdgeServer) -> None:
    edge_server.mode = "hold"
    engine = edge_engine(max_connections=2)
    voice = engine.resolve(VoiceRequest())

    calls = [asyncio.create_task(engine.synthesize(f"第{index}条", voice)) for index in range(6)]
    async with asyncio.timeout(10):
        await edge_server.wait_for_requests(2)
    await asyncio.sleep(0.05)  # room for a third connection to open, if the limit were broken
    assert edge_server.open_connections == 2
    edge_server.release.set()
    results = await asyncio.gather(*calls)

    assert all(result.audio == edge_server.audio for result in results)
    assert edge_server.most_open_connections == 2
    assert len(edge_server.requests) == 6


@pytest.mark.parametrize(
    ("request_", "problem"),
    [
        (VoiceRequest(rate="10%"), "语速"),
        (VoiceRequest(rate="-15"), "语速"),
        (VoiceRequest(rate="+300%"), "超出范围"),
        (VoiceRequest(volume="loud"), "音量"),
        (VoiceRequest(pitch="+5"), "音调"),
    ],
)
def test_malformed_prosody_is_refused_before_any_call(request_: VoiceRequest, problem: str) -> None:
    with pytest.raises(BadParameter) as raised:
        edge_engine().resolve(request_)
    assert problem in raised.value.message


def test_an_unknown_voice_is_refused_with_the_list_of_known_ones() -> None:
    with pytest.raises(BadVoice) as raised:
        edge_engine().resolve(VoiceRequest(voice="zh-CN-NobodyNeural"))
    assert "zh-CN-NobodyNeural" in raised.value.message
    assert "zh-CN-shaanxi-XiaoniNeural" in raised.value.message


def test_equal_prosody_written_differently_resolves_to_one_voice() -> None:
    engine = edge_engine()
    assert engine.resolve(VoiceRequest(rate="+010%")) == engine.resolve(VoiceRequest(rate="+10%"))
