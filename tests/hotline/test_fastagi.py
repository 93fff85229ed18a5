"""The FastAGI server facing bad input: garbage, missing variables, a hang-up mid-request. It never goes down.

Asterisk will not send garbage on demand, so these speak the FastAGI protocol from a plain socket,
the way res_agi does: ``agi_*`` lines, a blank line, then a status line for every command we send.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import PurePosixPath

import pytest

from common.clock import SystemClock
from hotline.fastagi import AgiRequest, AgiSession, FastAgiServer
from hotline.ivr import HotlineAgi
from server import Runtime
from storage.audit import Actor
from tests.support.cli import free_port

pytestmark = pytest.mark.timeout(60)


def request_lines(script: str, *args: str, caller: str = "13800001111") -> bytes:
    lines = [
        f"agi_request: agi://127.0.0.1/{script}",
        "agi_channel: Local/s@hotline-00000001;2",
        "agi_uniqueid: dt-1-ivr",
        f"agi_callerid: {caller}",
        "agi_calleridname: 王大娘",
        "agi_callingpres: 0",
        f"agi_network_script: {script}",
        *(f"agi_arg_{index}: {value}" for index, value in enumerate(args, start=1)),
    ]
    return ("\n".join(lines) + "\n\n").encode()


class Asterisk:
    """One FastAGI connection as Asterisk makes it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Asterisk:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def commands(self, *, hang_up_after: int | None = None) -> list[str]:
        """Answer every command with 200 (or HANGUP/511 after ``hang_up_after``) until the server closes."""
        received: list[str] = []
        async with asyncio.timeout(10):
            while line := await self.reader.readline():
                received.append(line.decode().strip())
                if hang_up_after is not None and len(received) > hang_up_after:
                    self.writer.write(b"HANGUP\n511 result=-1 Command Not Permitted on a dead channel\n")
                else:
                    self.writer.write(b"200 result=1\n")
                await self.writer.drain()
        await self.close()
        return received

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
async def agi(runtime: Runtime) -> AsyncIterator[FastAgiServer]:
    async def echo(request: AgiRequest, session: AgiSession) -> None:
        await session.set_variable("ECHO", ",".join(request.args))
        await session.set_variable("CALLER", request.caller_name)

    handlers = HotlineAgi(runtime.hotline.intake, PurePosixPath("/prompts"), clock=SystemClock()).handlers()
    handlers["echo"] = echo
    server = FastAgiServer("127.0.0.1", free_port(), handlers, clock=SystemClock(), request_timeout_s=1.0)
    await server.start()
    assert server.health.status == "ok"
    yield server
    await server.stop()


async def test_a_well_formed_request_is_answered(agi: FastAgiServer) -> None:
    asterisk = await Asterisk.connect(agi.port)
    asterisk.writer.write(request_lines("echo", "a", "", "c"))
    assert await asterisk.commands() == ['SET VARIABLE ECHO "a,,c"', 'SET VARIABLE CALLER "王大娘"']


async def test_a_request_missing_its_arguments_gets_an_error_result_and_the_server_carries_on(
    agi: FastAgiServer,
) -> None:
    asterisk = await Asterisk.connect(agi.port)
    asterisk.writer.write(request_lines("message"))  # no linkedid
    assert await asterisk.commands() == ['SET VARIABLE CX_RESULT "error"']
    asterisk = await Asterisk.connect(agi.port)
    asterisk.writer.write(request_lines("status", "not a linkedid!", "12345678"))
    assert await asterisk.commands() == ['SET VARIABLE CX_RESULT "error"']
    assert agi.failed == 2 and agi.health.status == "ok"


async def test_the_case_number_is_handed_back_as_its_digit_prompts_and_a_withheld_caller_gets_her_pin(
    agi: FastAgiServer, runtime: Runtime
) -> None:
    """What the dialplan reads back (twice: see test_asterisk_config) is exactly the number's digits, in order."""

    async def ask(linkedid: str, caller: str) -> dict[str, str]:
        asterisk = await Asterisk.connect(agi.port)
        asterisk.writer.write(request_lines("transfer", linkedid, "0", "1", caller=caller))
        told = {}
        for command in await asterisk.commands():
            name, _, value = command.removeprefix("SET VARIABLE ").partition(" ")
            told[name] = value.strip('"')
        return told

    told = await ask("agi-readback-1", "13800001111")
    number = told["CX_CASENO"]
    assert told["CX_RESULT"] == "case" and told["CX_READBACK_DIGITS"] == number
    assert told["CX_READBACK"] == "&".join(f"/prompts/digit_{digit}" for digit in number)
    assert told["CX_PIN_READBACK"] == ""
    withheld = await ask("agi-readback-2", "anonymous")
    found = await runtime.cases.ledger.by_number(withheld["CX_CASENO"], viewer=Actor(None, "test"), via="test")
    assert found is not None and found.caller_withheld
    assert withheld["CX_PIN_READBACK"] == "&".join(f"/prompts/digit_{digit}" for digit in found.pin)


async def test_an_unknown_script_gets_an_error_result(agi: FastAgiServer) -> None:
    asterisk = await Asterisk.connect(agi.port)
    asterisk.writer.write(request_lines("format-the-disk"))
    assert await asterisk.commands() == ['SET VARIABLE CX_RESULT "error"']


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x00\xff\xfe\n\n",
        b"\n",
        b"agi_request: " + b"x" * 20000 + b"\n\n",
        b"agi_network_script: echo\n",  # and then nothing: the request never ends
    ],
)
async def test_garbage_is_dropped_and_the_next_request_still_works(agi: FastAgiServer, garbage: bytes) -> None:
    asterisk = await Asterisk.connect(agi.port)
    asterisk.writer.write(garbage)
    async with asyncio.timeout(5):
        assert await asterisk.reader.read() == b""  # closed by the server, without a command
    await asterisk.close()
    good = await Asterisk.connect(agi.port)
    good.writer.write(request_lines("echo", "ok"))
    assert (await good.commands())[0] == 'SET VARIABLE ECHO "ok"'


async def test_a_caller_hanging_up_mid_request_ends_that_request_only(agi: FastAgiServer) -> None:
    asterisk = await Asterisk.connect(agi.port)
    asterisk.writer.write(request_lines("echo", "x"))
    assert await asterisk.commands(hang_up_after=0) == ['SET VARIABLE ECHO "x"']
    half = await Asterisk.connect(agi.port)
    half.writer.write(b"agi_request: agi://127.0.0.1/echo\nagi_chan")
    await half.close()
    good = await Asterisk.connect(agi.port)
    good.writer.write(request_lines("echo", "still here"))
    assert (await good.commands())[0] == 'SET VARIABLE ECHO "still here"'


async def test_a_taken_port_is_reported_and_the_service_starts_anyway(agi: FastAgiServer) -> None:
    second = FastAgiServer("127.0.0.1", agi.port, {}, clock=SystemClock(), retry_bind_s=0.05)
    await second.start()
    try:
        assert second.health.status == "down" and "cannot listen" in second.health.detail
    finally:
        await second.stop()
