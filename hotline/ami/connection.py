"""The AMI transport: one TCP connection, framed into messages. No login, no commands, no reconnecting.

It is an :class:`asyncio.Protocol`, so reading costs no thread and no
hand-off: bytes arrive in the event loop, the parser turns them into messages
and the whole batch goes to ``on_messages`` in one call. ``on_messages`` runs
in the loop and must not block; if it raises, the error is logged and the
connection carries on (one bad handler must not take the telephone link down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from hotline.ami.errors import AmiNotConnected, AmiProtocolError
from hotline.ami.protocol import DEFAULT_MAX_MESSAGE_BYTES, AmiParser, FramingError, Message

log = logging.getLogger(__name__)

MessageSink = Callable[[list[Message]], None]


class AmiConnection(asyncio.Protocol):
    def __init__(self, on_messages: MessageSink, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self._on_messages = on_messages
        self._parser = AmiParser(max_message_bytes=max_message_bytes)
        self._transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self._banner: asyncio.Future[str] = loop.create_future()
        self._closed: asyncio.Future[BaseException | None] = loop.create_future()
        self.bytes_received = 0

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        on_messages: MessageSink,
        timeout_s: float,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> AmiConnection:
        """Connect and wait for the banner; OSError/TimeoutError/AmiProtocolError if that fails."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout_s):
            _transport, connection = await loop.create_connection(
                lambda: cls(on_messages, max_message_bytes=max_message_bytes), host, port
            )
            try:
                await asyncio.shield(connection._banner)
            except BaseException:
                connection.abort()
                raise
        return connection

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        try:
            messages = self._parser.feed(data)
        except FramingError as exc:
            error = AmiProtocolError(str(exc))
            if not self._banner.done():
                self._banner.set_exception(error)
            self._fail(error)
            return
        if not self._banner.done() and self._parser.banner is not None:
            self._banner.set_result(self._parser.banner)
        if messages:
            try:
                self._on_messages(messages)
            except Exception:
                log.exception("AMI message handler failed; the connection carries on")

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self._banner.done():
            self._banner.set_exception(ConnectionResetError("closed before the AMI banner"))
        if not self._closed.done():
            self._closed.set_result(exc)

    # -- use ---------------------------------------------------------------------------------------

    @property
    def version(self) -> str | None:
        return self._parser.version

    @property
    def closed(self) -> bool:
        return self._closed.done() or self._transport is None

    @property
    def dropped(self) -> tuple[int, int]:
        """(lines, messages) the parser could not use."""
        return self._parser.dropped_lines, self._parser.dropped_messages

    def send(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise AmiNotConnected("the AMI connection is closed")
        self._transport.write(data)

    async def wait_closed(self) -> BaseException | None:
        """Until the connection is gone; returns why (None for a clean close)."""
        return await asyncio.shield(self._closed)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, error: BaseException) -> None:
        log.warning("dropping the AMI connection: %s", error)
        if not self._closed.done():
            self._closed.set_result(error)
        with contextlib.suppress(Exception):
            self.abort()
