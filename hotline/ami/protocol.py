"""The AMI wire format, with no I/O: bytes in, messages out; actions in, bytes out.

AMI is line-oriented text over TCP. On connect Asterisk sends one banner line
(``Asterisk Call Manager/9.0.0``); after that every message is ``Key: value``
lines ending in ``\\r\\n`` and a blank line (``\\r\\n\\r\\n``) ends the message.
A message is an event (``Event: Hangup``) or a response to one of our actions
(``Response: Success``, carrying our ``ActionID``).

The parser splits on bytes and decodes each *complete* message, so a Chinese
caller name whose UTF-8 bytes arrive in two TCP reads is never cut in half.
What it cannot use it counts and drops instead of raising: a line without a
key, a message that is neither event nor response. Only a message that never
ends (no terminator within ``max_message_bytes``) is an error, because then
the stream cannot be resynchronised.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

Message = dict[str, str]

TERMINATOR: Final = b"\r\n\r\n"
LINE_END: Final = b"\r\n"
BANNER: Final = re.compile(r"^Asterisk Call Manager/(?P<version>[\d.]+)")
# Larger than any real AMI message (a full CoreShowChannel is ~1 KB); a stream past it is broken.
DEFAULT_MAX_MESSAGE_BYTES: Final = 1 << 20


class FramingError(Exception):
    """The byte stream cannot be split into AMI messages any more."""


class AmiParser:
    """Turns the bytes of one AMI connection into messages (dicts of ``str``).

    ``feed`` returns the messages completed by the new bytes, in order, and
    keeps an incomplete tail for the next call. A key seen twice in one message
    (``ChanVariable``) keeps every value, joined by newlines.
    """

    def __init__(self, *, expect_banner: bool = True, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.banner: str | None = None if expect_banner else ""
        self.version: str | None = None
        self.dropped_lines = 0
        self.dropped_messages = 0
        self._tail = b""
        self._max = max_message_bytes

    def feed(self, data: bytes) -> list[Message]:
        buffer = self._tail + data if self._tail else data
        if self.banner is None:
            end = buffer.find(LINE_END)
            if end < 0:
                if len(buffer) > 1024:
                    raise FramingError("no AMI banner in the first 1024 bytes")
                self._tail = buffer
                return []
            line = buffer[:end].decode("utf-8", errors="replace")
            match = BANNER.match(line)
            if match is None:
                raise FramingError(f"not an Asterisk manager: {line[:80]!r}")
            self.banner, self.version = line, match["version"]
            buffer = buffer[end + 2 :]
        last = buffer.rfind(TERMINATOR)
        if last < 0:
            if len(buffer) > self._max:
                raise FramingError(f"no message end within {self._max} bytes")
            self._tail = buffer
            return []
        self._tail = buffer[last + 4 :]
        messages: list[Message] = []
        for block in buffer[:last].split(TERMINATOR):
            message = self._parse(block)
            if message is not None:
                messages.append(message)
        return messages

    def _parse(self, block: bytes) -> Message | None:
        message: Message = {}
        # A stray blank line (some proxies add one) leaves an empty block: nothing to drop.
        if not block.strip():
            return None
        for line in block.decode("utf-8", errors="replace").split("\r\n"):
            key, separator, value = line.partition(": ")
            if not separator:
                if line.endswith(":") and ":" not in line[:-1]:
                    key, value = line[:-1], ""  # "Key:" with an empty value
                else:
                    self.dropped_lines += 1
                    continue
            if key in message:
                message[key] += "\n" + value
            else:
                message[key] = value
        if "Event" not in message and "Response" not in message:
            self.dropped_messages += 1
            return None
        return message


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _check(value: str, what: str) -> str:
    # A CR or LF inside a value would end the line early and let the rest be read as further
    # headers or a second action (a caller-controlled string must never become an AMI command).
    if "\r" in value or "\n" in value:
        raise ValueError(f"{what} must not contain a line break: {value[:40]!r}")
    return value


def format_action(
    action: str, action_id: str, fields: Mapping[str, object], variables: Mapping[str, str] | None = None
) -> bytes:
    """The bytes of one action; ``variables`` become ``Variable: name=value`` lines (Originate, Setvar)."""
    lines = [f"Action: {_check(action, 'action')}", f"ActionID: {_check(action_id, 'ActionID')}"]
    for key, value in fields.items():
        if value is None:
            continue
        lines.append(f"{_check(key, 'field name')}: {_check(_text(value), key)}")
    for name, value in (variables or {}).items():
        if "=" in name:
            raise ValueError(f"variable name must not contain '=': {name!r}")
        lines.append(f"Variable: {_check(name, 'variable name')}={_check(value, name)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
