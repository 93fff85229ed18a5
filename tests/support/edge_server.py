"""A local websocket server speaking edge-tts 7.3's side of Microsoft's read-aloud protocol.

What the client sends (read from edge_tts/communicate.py): a text frame with
``Path:speech.config`` (JSON asking for ``audio-24khz-48kbitrate-mono-mp3``),
then a text frame with ``Path:ssml`` carrying
``<voice name='Microsoft Server Speech Text to Speech Voice (zh-CN, XiaoxiaoNeural)'>
<prosody pitch='+0Hz' rate='-15%' volume='+0%'>…``.

What the server answers: a ``Path:turn.start`` text frame, binary audio
frames (two bytes of big-endian header length, the headers ending in
``Path:audio\\r\\n``, then MP3 bytes), ``Path:audio.metadata`` text frames, and
finally ``Path:turn.end``. The modes below misbehave the ways the real service
does: refuse the handshake (403), drop the connection mid-stream, end the turn
without audio, or hold the connection (to count parallel connections).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

Mode = Literal["ok", "forbidden", "close_mid_stream", "abort_mid_stream", "no_audio", "hold"]

_VOICE = re.compile(r"<voice name='([^']*)'>")
_PROSODY = re.compile(r"<prosody pitch='([^']*)' rate='([^']*)' volume='([^']*)'>")
_TEXT = re.compile(r"<prosody[^>]*>(.*)</prosody>", re.DOTALL)


@dataclass
class SynthesisRequest:
    query: dict[str, str]
    config: str
    voice: str
    pitch: str
    rate: str
    volume: str
    text: str


@dataclass
class EdgeServer:
    audio: bytes
    mode: Mode = "ok"
    chunk_size: int = 4096
    handshakes: int = 0
    requests: list[SynthesisRequest] = field(default_factory=list)
    open_connections: int = 0
    most_open_connections: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0  # where start_edge_server listens
    requested: asyncio.Condition = field(default_factory=asyncio.Condition)  # notified at every request

    async def wait_for_requests(self, count: int) -> None:
        async with self.requested:
            await self.requested.wait_for(lambda: len(self.requests) >= count)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/edge/v1", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.handshakes += 1
        if self.mode == "forbidden":
            # The real service answers 403 when its token (Sec-MS-GEC) is not accepted.
            return web.Response(status=403, text="Forbidden")
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self.open_connections += 1
        self.most_open_connections = max(self.most_open_connections, self.open_connections)
        try:
            await self._converse(request, socket)
        finally:
            self.open_connections -= 1
        return socket

    async def _converse(self, request: web.Request, socket: web.WebSocketResponse) -> None:
        config = await socket.receive()
        ssml = await socket.receive()
        if config.type != WSMsgType.TEXT or ssml.type != WSMsgType.TEXT:
            await socket.close()
            return
        self.requests.append(_parse(dict(request.query), config.data, ssml.data))
        async with self.requested:
            self.requested.notify_all()
        request_id = uuid.uuid4().hex
        if self.mode == "hold":
            await self.release.wait()
        await socket.send_str(_text_frame(request_id, "turn.start", {"context": {"serviceTag": "local"}}))
        if self.mode == "no_audio":
            await socket.send_str(_text_frame(request_id, "turn.end", {}))
            await socket.close()
            return
        chunks = [self.audio[i : i + self.chunk_size] for i in range(0, len(self.audio), self.chunk_size)]
        for index, chunk in enumerate(chunks):
            if index == len(chunks) // 2 and self.mode in ("close_mid_stream", "abort_mid_stream"):
                if self.mode == "abort_mid_stream":
                    assert request.transport is not None
                    request.transport.abort()  # the TCP connection just goes away
                else:
                    await socket.close()  # a clean close, but before turn.end
                return
            await socket.send_bytes(_audio_frame(request_id, chunk))
        metadata = {
            "Metadata": [
                {
                    "Type": "SentenceBoundary",
                    "Data": {"Offset": 1000000, "Duration": 8750000, "text": {"Text": "x", "Length": 1}},
                }
            ]
        }
        await socket.send_str(_text_frame(request_id, "audio.metadata", metadata))
        # The real service ends the audio stream with an empty binary frame without a Content-Type.
        await socket.send_bytes(_audio_frame(request_id, b"", content_type=None))
        await socket.send_str(_text_frame(request_id, "turn.end", {}))
        await socket.close()


def _parse(query: dict[str, str], config: str, ssml: str) -> SynthesisRequest:
    voice = _VOICE.search(ssml)
    prosody = _PROSODY.search(ssml)
    text = _TEXT.search(ssml)
    assert voice and prosody and text, ssml
    return SynthesisRequest(
        query=query,
        config=config,
        voice=voice[1],
        pitch=prosody[1],
        rate=prosody[2],
        volume=prosody[3],
        text=text[1],
    )


def _text_frame(request_id: str, path: str, body: object) -> str:
    return (
        f"X-RequestId:{request_id}\r\nContent-Type:application/json; charset=utf-8\r\nPath:{path}\r\n\r\n"
        + json.dumps(body)
    )


def _audio_frame(request_id: str, data: bytes, *, content_type: str | None = "audio/mpeg") -> bytes:
    headers = f"X-RequestId:{request_id}\r\n"
    if content_type is not None:
        headers += f"Content-Type:{content_type}\r\n"
    headers += f"X-StreamId:{request_id}\r\nPath:audio\r\n"
    encoded = headers.encode()
    return len(encoded).to_bytes(2, "big") + encoded + data


async def start_edge_server(audio: bytes) -> tuple[EdgeServer, TestServer]:
    edge = EdgeServer(audio=audio)
    server = TestServer(edge.app(), host="127.0.0.1")
    await server.start_server()
    assert server.port is not None
    edge.port = server.port
    return edge, server
