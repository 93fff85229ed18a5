"""An in-process asyncio FastAGI server: the dialplan's ``AGI(agi://host:port/NAME,args…)`` calls land here.

Protocol (Asterisk's ``res_agi``): Asterisk connects, sends ``agi_*: value``
lines and a blank line; we answer with commands (``SET VARIABLE name "value"``),
each acknowledged by a status line (``200 result=1``); closing the connection
ends the AGI and the dialplan goes on. When the caller hangs up during a
request Asterisk sends a ``HANGUP`` line and refuses further commands (511).

Transport and commands are apart: :class:`FastAgiServer` accepts connections,
reads the request and dispatches by script name (``/message``, ``/status``…)
to a handler; the handler talks back through :class:`AgiSession`. Nothing a
caller or a broken peer sends can take the server down: a request that is
garbage, too long, incomplete within ``request_timeout_s``, names no known
script, or whose handler fails, is logged and closed, and the dialplan sees
``CX_RESULT=error`` where that is still possible.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from common.clock import Clock
from common.health import ComponentHealth
from common.tasks import BackgroundTasks, TaskGroupClosed

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 8192
MAX_ENV_LINES = 200
_STATUS = re.compile(r"^(\d{3})([ -])(.*)$")


class AgiError(Exception):
    """Base of what goes wrong inside one AGI request (never escapes the server)."""


class AgiHangup(AgiError):
    """The channel is gone; commands are refused."""


class BadAgiRequest(AgiError):
    """The request is missing something the handler needs, or carries nonsense."""


@dataclass(frozen=True)
class AgiRequest:
    script: str
    args: tuple[str, ...]
    env: Mapping[str, str] = field(repr=False)

    def arg(self, index: int, default: str = "") -> str:
        """The 1-based AGI argument, stripped; ``default`` when absent."""
        return self.args[index - 1].strip() if len(self.args) >= index else default

    def require(self, index: int, what: str) -> str:
        value = self.arg(index)
        if not value:
            raise BadAgiRequest(f"{self.script}: argument {index} ({what}) is missing")
        return value

    @property
    def uniqueid(self) -> str:
        return self.env.get("agi_uniqueid", "")

    @property
    def channel(self) -> str:
        return self.env.get("agi_channel", "")

    @property
    def caller_number(self) -> str:
        return self.env.get("agi_callerid", "")

    @property
    def caller_name(self) -> str:
        return self.env.get("agi_calleridname", "")

    @property
    def caller_presentation(self) -> str:
        return self.env.get("agi_callingpres", "")


def parse_request(env: Mapping[str, str]) -> AgiRequest:
    """The script name and arguments of a FastAGI request (``agi_network_script``, ``agi_arg_N``)."""
    script = env.get("agi_network_script", "")
    if not script:
        script = urlsplit(env.get("agi_request", "")).path
    script = script.strip("/").split("?", 1)[0]
    args: list[str] = []
    while f"agi_arg_{len(args) + 1}" in env:
        args.append(env[f"agi_arg_{len(args) + 1}"])
    return AgiRequest(script=script, args=tuple(args), env=dict(env))


def quote(value: str) -> str:
    # The AGI parser splits on spaces unless quoted; inside quotes \" and \\ are escapes.
    if "\n" in value or "\r" in value:
        raise ValueError("an AGI value must not contain a line break")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class AgiSession:
    """Commands back to Asterisk during one request."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout_s: float) -> None:
        self._reader = reader
        self._writer = writer
        self._timeout_s = timeout_s
        self.hung_up = False

    async def command(self, text: str, *, timeout_s: float | None = None) -> tuple[int, str]:
        """Send one command line; returns (status code, rest of the status line).

        ``timeout_s``: for a command that lasts as long as the caller takes (GET DATA, RECORD FILE), longer
        than the request timeout that suits a quick answer.
        """
        if self.hung_up:
            raise AgiHangup("the channel hung up")
        self._writer.write(text.encode("utf-8") + b"\n")
        async with asyncio.timeout(timeout_s if timeout_s is not None else self._timeout_s):
            await self._writer.drain()
            while True:
                raw = await self._reader.readline()
                if not raw:
                    raise AgiHangup("Asterisk closed the AGI connection")
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if line == "HANGUP":
                    self.hung_up = True
                    continue
                match = _STATUS.match(line)
                if match is None:
                    continue  # the usage text of a 520 answer
                if match[2] == "-":
                    continue  # "520-Invalid command syntax." starts a multi-line answer
                code = int(match[1])
                if code == 511:
                    self.hung_up = True
                    raise AgiHangup(match[3])
                return code, match[3]

    async def set_variable(self, name: str, value: str) -> None:
        code, rest = await self.command(f"SET VARIABLE {name} {quote(value)}")
        if code != 200:
            raise AgiError(f"SET VARIABLE {name} answered {code} {rest}")

    async def set_variables(self, values: Mapping[str, str]) -> None:
        for name, value in values.items():
            await self.set_variable(name, value)


AgiHandler = Callable[[AgiRequest, AgiSession], Awaitable[None]]


class FastAgiServer:
    name = "fastagi"

    def __init__(
        self,
        host: str,
        port: int,
        handlers: Mapping[str, AgiHandler],
        *,
        clock: Clock,
        request_timeout_s: float = 10.0,
        retry_bind_s: float = 5.0,
        health: ComponentHealth | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._handlers = dict(handlers)
        self._clock = clock
        self._timeout_s = request_timeout_s
        self._retry_bind_s = retry_bind_s
        self.health = health or ComponentHealth("fastagi", status="standby", detail="only the active worker listens")
        self.health.extra.update({"listen": f"{host}:{port}", "requests": 0, "failed": 0})
        self._server: asyncio.Server | None = None
        self._tasks: BackgroundTasks | None = None
        self.requests = 0
        self.failed = 0

    async def start(self) -> None:
        """Listen; if the port is taken, say so on /healthz and keep trying (the service still starts)."""
        if self._tasks is not None:
            return
        self._tasks = BackgroundTasks("fastagi")
        if not await self._bind():
            self._tasks.spawn(self._keep_binding(), "bind")

    async def _bind(self) -> bool:
        try:
            self._server = await asyncio.start_server(self._accept, self.host, self.port, limit=MAX_LINE_BYTES)
        except OSError as exc:
            self.health.set("down", "cannot listen", at=self._clock.now(), error=f"{self.host}:{self.port}: {exc}")
            return False
        self.health.set("ok", "listening", at=self._clock.now())
        return True

    async def _keep_binding(self) -> None:
        # Retrying is the design: nothing signals when the port becomes free.
        while not await self._bind():  # noqa: ASYNC110
            await asyncio.sleep(self._retry_bind_s)

    async def stop(self) -> None:
        if self._tasks is None:
            return
        if self._server is not None:
            self._server.close()
        await self._tasks.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        self._tasks = None
        self.health.set("standby", "stopped", at=self._clock.now())

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._tasks is None:
            writer.close()
            return
        try:
            self._tasks.spawn(self._serve(reader, writer), "request")
        except TaskGroupClosed:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests += 1
        self.health.extra["requests"] = self.requests
        session = AgiSession(reader, writer, self._timeout_s)
        script = "?"
        try:
            try:
                async with asyncio.timeout(self._timeout_s):
                    env = await _read_environment(reader)
            except (TimeoutError, ValueError, ConnectionError, asyncio.IncompleteReadError) as exc:
                self._failed(f"unreadable request: {exc!r}")
                return
            request = parse_request(env)
            script = request.script
            handler = self._handlers.get(script)
            if handler is None:
                self._failed(f"no handler for script {script!r}")
                await _try_result(session, "error")
                return
            await handler(request, session)
        except AgiHangup:
            log.debug("AGI %s: the channel hung up during the request", script)
        except BadAgiRequest as exc:
            self._failed(str(exc))
            await _try_result(session, "error")
        except Exception:
            self.failed += 1
            self.health.extra["failed"] = self.failed
            log.exception("AGI %s failed", script)
            await _try_result(session, "error")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _failed(self, reason: str) -> None:
        self.failed += 1
        self.health.extra["failed"] = self.failed
        log.warning("FastAGI request refused: %s", reason)


async def _read_environment(reader: asyncio.StreamReader) -> dict[str, str]:
    env: dict[str, str] = {}
    for _ in range(MAX_ENV_LINES):
        raw = await reader.readline()
        if not raw:
            raise ConnectionResetError("closed before the request ended")
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if not env:
                raise ValueError("empty request")
            return env
        key, separator, value = line.partition(": ")
        if not separator or not key.startswith("agi_"):
            raise ValueError(f"not an AGI request line: {line[:60]!r}")
        env[key] = value
    raise ValueError(f"more than {MAX_ENV_LINES} request lines")


async def _try_result(session: AgiSession, result: str) -> None:
    """Tell the dialplan it failed, if the channel is still there to hear it."""
    with contextlib.suppress(AgiError, OSError, TimeoutError, ValueError):
        await session.set_variable("CX_RESULT", result)
