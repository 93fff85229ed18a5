"""What a speaker's address and codec may be, per transport."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets

from common.errors import InvalidInput

SIP_ENDPOINT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TERMINAL_ID = re.compile(r"^[A-Za-z0-9_-]{3,64}$")
SINK_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ALSA_DEVICE = re.compile(r"^[A-Za-z0-9_:,.=-]{1,64}$")

CODECS_BY_TRANSPORT = {
    "rtp": ("pcmu",),
    "sip": ("pcmu", "pcma", "g722"),
    "http": ("mp3",),
    "sink": ("wav", "mp3"),
}


def _bad(message: str) -> InvalidInput:
    return InvalidInput(message, fields={"address": message})


def parse_rtp_address(address: str) -> tuple[str, int]:
    """'host:port' with an IPv4 literal (unicast or a 224.0.0.0/4 multicast group)."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit():
        raise _bad("RTP地址应写成 IP:端口，例如 192.168.1.20:5004")
    try:
        ip = ipaddress.IPv4Address(host)
    except ValueError:
        raise _bad(f"“{host}”不是有效的IPv4地址") from None
    port = int(port_text)
    if not 1024 <= port <= 65535:
        raise _bad("RTP端口应在1024到65535之间")
    if ip.is_unspecified or ip == ipaddress.IPv4Address("255.255.255.255"):
        raise _bad("RTP地址不能是0.0.0.0或广播地址")
    return str(ip), port


def normalise_speaker(transport: str, address: str, codec: str | None) -> tuple[str, str]:
    """Validate and canonicalise (address, codec) for a transport; raises InvalidInput."""
    address = address.strip()
    if transport == "rtp":
        host, port = parse_rtp_address(address)
        address = f"{host}:{port}"
    elif transport == "sip":
        if not SIP_ENDPOINT.match(address):
            raise _bad("SIP终端名只能用字母、数字、下划线、点或减号")
    elif transport == "http":
        if not TERMINAL_ID.match(address):
            raise _bad("4G终端编号只能用3到64个字母、数字、下划线或减号")
    elif transport == "sink":
        kind, _, name = address.partition(":")
        if not ((kind == "file" and SINK_NAME.match(name)) or (kind == "alsa" and ALSA_DEVICE.match(name))):
            raise _bad("本地输出应写成 file:文件名 或 alsa:声卡设备名")
    else:
        raise InvalidInput("传输方式不存在", fields={"transport": "只能是 sip、rtp、http 或 sink"})
    allowed = CODECS_BY_TRANSPORT[transport]
    codec = codec or allowed[0]
    if codec not in allowed:
        message = f"{transport} 终端的编码只能是：{'、'.join(allowed)}"
        raise InvalidInput(message, fields={"codec": message})
    return address, codec


def new_terminal_token() -> tuple[str, str]:
    """A fresh token for an HTTP-pull terminal and the hash we keep of it."""
    token = secrets.token_urlsafe(24)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    # Tokens are 192 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()
