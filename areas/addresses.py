"""What a speaker's address and codec may be, per transport."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
from dataclasses import dataclass

from common.errors import InvalidInput
from settings import BroadcastSettings

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


def _bad(message: str, field: str = "address") -> InvalidInput:
    return InvalidInput(message, fields={field: message})


MULTICAST = ipaddress.IPv4Network("224.0.0.0/4")
# Administratively scoped multicast (RFC 2365): the county's own groups, never forwarded beyond its network.
SCOPED_MULTICAST = ipaddress.IPv4Network("239.0.0.0/8")
# The local network control block (224.0.0.0/24): all-hosts, routers, mDNS, … — never ours to play into.
LOCAL_CONTROL = ipaddress.IPv4Network("224.0.0.0/24")
# Shared address space (RFC 6598): carrier NAT and the VPNs county networks are often built on.
SHARED_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
FIELD_LABELS = {"address": "终端地址", "rtp_group": "组播组", "rtp_ttl": "组播TTL", "rtp": "RTP目的地址"}


@dataclass(frozen=True)
class AddressPolicy:
    """Where RTP audio may be sent: the county's own network unless the site says otherwise (broadcast settings)."""

    # Unicast to public (internet) addresses; speakers on a county network or VPN have private ones.
    allow_public_unicast: bool = False
    # Ports below 1024 (system services: 53 DNS, 123 NTP, …).
    allow_low_ports: bool = False
    # Highest multicast TTL (router hops) a zone may set; 8 stays within a county's network.
    max_ttl: int = 8

    @classmethod
    def from_settings(cls, broadcast: BroadcastSettings) -> AddressPolicy:
        return cls(
            allow_public_unicast=broadcast.rtp_allow_public_unicast,
            allow_low_ports=broadcast.rtp_allow_low_ports,
            max_ttl=broadcast.rtp_max_ttl,
        )


def check_rtp_destination(
    text: str,
    policy: AddressPolicy,
    *,
    field: str = "address",
    multicast_only: bool = False,
    default_port: int | None = None,
) -> tuple[str, int]:
    """'host:port' where RTP may go, or InvalidInput with a Chinese message naming the field.

    The one check for every way an address comes in: a speaker saved in the
    area tree, a zone's multicast group, the speaker test (page and command line).
    """
    label = FIELD_LABELS.get(field, field)
    host, sep, port_text = text.strip().rpartition(":")
    if not sep and default_port is not None:
        host, port_text = text.strip(), str(default_port)
    if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
        raise _bad(f"{label}应写成 IP:端口，例如 192.168.1.20:5004", field)
    try:
        ip = ipaddress.IPv4Address(host)
    except ValueError:
        raise _bad(f"{label}：“{host}”不是有效的IPv4地址", field) from None
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise _bad(f"{label}的端口应在1024到65535之间", field)
    if port < 1024 and not policy.allow_low_ports:
        raise _bad(f"{label}的端口应在1024到65535之间（1024以下是系统服务的端口）", field)
    if ip in MULTICAST:
        if ip in LOCAL_CONTROL or ip not in SCOPED_MULTICAST:
            raise _bad(f"{label}：组播地址 {ip} 不能用，只能用本单位管理的 239.0.0.0/8 内的组播地址", field)
        return str(ip), port
    if multicast_only:
        raise _bad(f"{label}：“{ip}”不是组播地址（224.0.0.0/4）；组播组应在 239.0.0.0 到 239.255.255.255 之间", field)
    if ip.is_unspecified or ip.is_reserved or ip == ipaddress.IPv4Address("255.255.255.255"):
        raise _bad(f"{label}不能是0.0.0.0、保留地址或广播地址", field)
    if not ip.is_loopback and ip.packed[-1] in (0, 255):
        # Without the subnet we cannot be sure, but on a /24 (a village network) these are its network and
        # broadcast addresses: one stream would reach every device on it.
        raise _bad(f"{label}：{ip} 是网段地址或广播地址，请填写终端自己的地址", field)
    if not (ip.is_private or ip in SHARED_SPACE) and not policy.allow_public_unicast:
        raise _bad(f"{label}：{ip} 是公网地址；广播终端应在本县内网或专网（私有地址）中", field)
    return str(ip), port


def check_ttl(ttl: int | None, policy: AddressPolicy, field: str = "rtp_ttl") -> int | None:
    if ttl is not None and not 0 <= ttl <= policy.max_ttl:
        message = f"{FIELD_LABELS.get(field, field)}应在0到{policy.max_ttl}之间（路由器跳数，不出本县网络）"
        raise _bad(message, field)
    return ttl


def parse_rtp_address(address: str, policy: AddressPolicy | None = None) -> tuple[str, int]:
    """'host:port' with an IPv4 literal for an RTP speaker (unicast, or a 239.0.0.0/8 group)."""
    return check_rtp_destination(address, policy or AddressPolicy())


def normalise_speaker(
    transport: str, address: str, codec: str | None, policy: AddressPolicy | None = None
) -> tuple[str, str]:
    """Validate and canonicalise (address, codec) for a transport; raises InvalidInput."""
    address = address.strip()
    if transport == "rtp":
        host, port = parse_rtp_address(address, policy)
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
