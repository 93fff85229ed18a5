"""A receiver in a process of its own: when each destination address got its first RTP packet.

    python -m bench.rtp_first_packets --expect N [--timeout S]

Prints the UDP port it listens on (all addresses, so every 127.x.y.z is one loudspeaker), then, once
``N`` destinations were heard or the timeout passed, one JSON line ``{"first_ns": {address: ns}}``: the
kernel's receive time (``SO_TIMESTAMPNS``, the wall clock) of each destination's first packet. The
kernel's stamp, not this process's reading, so the receiver's own scheduling does not count.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import struct
import sys
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = getattr(socket, "SCM_TIMESTAMPNS", SO_TIMESTAMPNS)
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
SO_RCVBUFFORCE = 33  # Linux: beyond rmem_max (root); 500 first packets arrive in a few milliseconds
_TIMESPEC = struct.Struct("@ll")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):  # not the core the benchmark pinned itself (and so this child) to
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, 16 * 1024 * 1024)
            break
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    sock.bind(("0.0.0.0", 0))
    sock.settimeout(0.5)
    print(sock.getsockname()[1], flush=True)
    first: dict[str, int] = {}
    deadline = time.monotonic() + args.timeout
    while len(first) < args.expect and time.monotonic() < deadline:
        try:
            _data, ancillary, _flags, _sender = sock.recvmsg(2048, 256)
        except TimeoutError:
            continue
        arrived = destination = None
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                seconds, nanoseconds = _TIMESPEC.unpack(data[: _TIMESPEC.size])
                arrived = seconds * 1_000_000_000 + nanoseconds
            elif level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                destination = socket.inet_ntoa(data[8:12])  # struct in_pktinfo: ifindex, spec_dst, addr
        if arrived is not None and destination is not None:
            first.setdefault(destination, arrived)
    sock.close()
    sys.stdout.write(json.dumps({"first_ns": first}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
