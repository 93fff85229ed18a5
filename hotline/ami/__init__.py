"""Asterisk's manager interface (AMI), spoken by our own asyncio client.

``protocol`` is the wire format (no I/O), ``connection`` one TCP connection
(transport), ``link`` the logged-in session kept up with its typed commands.
Why our own client and not the ``asterisk-ami`` or ``panoramisk`` library:
docs/decisions/0001-our-own-ami-client.md.
"""

from hotline.ami.errors import (
    AmiActionFailed,
    AmiConnectionLost,
    AmiError,
    AmiLoginRefused,
    AmiNotConnected,
    AmiProtocolError,
    AmiTimeout,
)
from hotline.ami.link import AmiConfig, AmiLink, Originated
from hotline.ami.protocol import Message

__all__ = [
    "AmiActionFailed",
    "AmiConfig",
    "AmiConnectionLost",
    "AmiError",
    "AmiLink",
    "AmiLoginRefused",
    "AmiNotConnected",
    "AmiProtocolError",
    "AmiTimeout",
    "Message",
    "Originated",
]
