"""What can go wrong talking to Asterisk's manager interface, as one tree.

    ServiceUnavailable (common.errors)
    └── AmiError                      anything on the AMI link
        ├── AmiNotConnected           no logged-in connection right now; nothing was sent
        ├── AmiLoginRefused           Asterisk refused our user name or secret
        ├── AmiProtocolError          the peer does not speak AMI, or sent something unusable
        ├── AmiTimeout                no answer in time; a sent action may or may not have run
        ├── AmiConnectionLost         the connection dropped after the action was sent; it may
        │                             or may not have run (an Originate is NEVER sent again)
        └── AmiActionFailed           Asterisk answered "Response: Error" (``response`` holds it)

Callers translate these at their own boundary; the web layer sees them as 503s.
"""

from __future__ import annotations

from collections.abc import Mapping

from common.errors import ServiceUnavailable


class AmiError(ServiceUnavailable):
    default_code = "ami.error"

    def __init__(self, detail: str, *, message: str = "电话系统暂时无法连接", code: str | None = None) -> None:
        super().__init__(message, code=code, detail=detail)


class AmiNotConnected(AmiError):
    default_code = "ami.not_connected"


class AmiLoginRefused(AmiError):
    default_code = "ami.login_refused"


class AmiProtocolError(AmiError):
    default_code = "ami.protocol"


class AmiTimeout(AmiError):
    default_code = "ami.timeout"


class AmiConnectionLost(AmiError):
    default_code = "ami.connection_lost"


class AmiActionFailed(AmiError):
    default_code = "ami.action_failed"

    def __init__(self, action: str, response: Mapping[str, str]) -> None:
        reason = response.get("Message", "no reason given")
        super().__init__(f"{action} failed: {reason}", message="电话系统拒绝了这个操作")
        self.action = action
        self.response = dict(response)
