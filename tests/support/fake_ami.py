"""A replaying fake AMI server, for the malformed-message cases a real Asterisk will not produce on demand.

It answers with text recorded from the real sandbox (tests/hotline/fixtures/ami-*.txt): the banner, the
login answer and FullyBooted, Ping, CoreShowChannels, a refused Command, an accepted Originate and the
events of the call it placed. A test can then make it misbehave: refuse logins, inject garbage or a
message cut in half, stop answering, drop the connection, dribble bytes one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "hotline" / "fixtures"
TERMINATOR = b"\r\n\r\n"


def recorded_blocks(name: str) -> list[bytes]:
    data = (FIXTURES / name).read_bytes()
    _banner, _, rest = data.partition(b"\r\n")
    return [block + TERMINATOR for block in rest.split(TERMINATOR) if block.strip()]


def _field(block: bytes, key: bytes) -> bytes | None:
    match = re.search(rb"^" + re.escape(key) + rb": (.*)$", block, re.MULTILINE)
    return match.group(1).rstrip(b"\r") if match else None


@dataclass
class FakeAmi:
    refuse_login: bool = False
    answer_pings: bool = True
    answer_originate: bool = True
    complete_lists: bool = True
    actions: Counter[str] = field(default_factory=Counter)
    logins: int = 0
    connections: int = 0
    port: int = 0
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _session: list[bytes] = field(default_factory=lambda: recorded_blocks("ami-session.txt"))
    _refused: list[bytes] = field(default_factory=lambda: recorded_blocks("ami-login-refused.txt"))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop()

    def drop(self) -> None:
        for writer in self._writers:
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    def recorded(self, action_id: bytes) -> bytes:
        """The recorded answer with this ActionID (responses and list events)."""
        return b"".join(block for block in self._session if _field(block, b"ActionID") == action_id)

    def recorded_events(self) -> bytes:
        """The call events recorded after the Originate (Newchannel, Newexten, UserEvent, Hangup…)."""
        return b"".join(block for block in self._session if block.startswith(b"Event: ") and b"ActionID" not in block)

    async def send(self, data: bytes, *, dribble: bool = False) -> None:
        for writer in list(self._writers):
            if dribble:
                for index in range(len(data)):
                    writer.write(data[index : index + 1])
                    await writer.drain()
            else:
                writer.write(data)
                await writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        try:
            while True:
                block = await reader.readuntil(TERMINATOR)
                action = (_field(block, b"Action") or b"").decode()
                action_id = _field(block, b"ActionID") or b""
                self.actions[action] += 1
                answer = self._answer(action, action_id)
                if answer:
                    writer.write(answer)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            with contextlib.suppress(ValueError):
                self._writers.remove(writer)
            writer.close()

    def _answer(self, action: str, action_id: bytes) -> bytes:
        def replay(recorded_id: bytes) -> bytes:
            return self.recorded(recorded_id).replace(b"ActionID: " + recorded_id, b"ActionID: " + action_id)

        if action == "Login":
            self.logins += 1
            if self.refuse_login:
                return self._refused[0].replace(b"ActionID: L1", b"ActionID: " + action_id)
            fully_booted = next(block for block in self._session if block.startswith(b"Event: FullyBooted"))
            return replay(b"L1") + fully_booted
        if action == "Ping":
            return replay(b"P1") if self.answer_pings else b""
        if action == "CoreShowChannels":
            answer = replay(b"C1")
            return answer if self.complete_lists else answer.split(b"Event: CoreShowChannelsComplete")[0]
        if action == "Command":
            return replay(b"X1")
        if action == "Originate":
            return replay(b"O1") if self.answer_originate else b""
        return b"Response: Success\r\nActionID: " + action_id + b"\r\n\r\n"
