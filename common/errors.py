"""The errors we raise on purpose, as one tree.

    CunxiangError                 anything raised by our code on purpose
    ├── UserError                 the request or input is wrong; message is Chinese, for users
    │   ├── InvalidInput          bad value (HTTP 400/422); ``fields`` names the culprits
    │   ├── NotFound              no such object, or not in the caller's scope (HTTP 404)
    │   ├── Unauthenticated       no valid session or token (HTTP 401)
    │   ├── PermissionDenied      authenticated but not allowed (HTTP 403)
    │   ├── Conflict              the object's state forbids it (HTTP 409)
    │   ├── TooManyAttempts       slow down; ``retry_after_s`` says how long (HTTP 429)
    │   └── InsufficientStorage   the disk is too full to take this now (HTTP 507); the user waits, an admin acts
    └── ServiceUnavailable        a part we depend on is down or missing (HTTP 503)

Domains raise these; only ``web/`` turns them into HTTP responses. ``code`` is a
stable machine-readable string (``"notice.own_approval"``); ``message`` is what a
township clerk reads; ``detail`` is an English explanation for operators and logs.

Outside the tree, :class:`StartupError`: the service or a command cannot start (raised by ``server``,
printed by ``cli.main``, which imports it from here so a command need not import the whole service).
"""

from __future__ import annotations

from collections.abc import Mapping


class CunxiangError(Exception):
    """Base of every error raised on purpose by this project."""

    default_code = "error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        detail: str | None = None,
        fields: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.detail = detail
        self.fields: dict[str, str] = dict(fields or {})

    def __str__(self) -> str:
        if self.detail:
            return f"{self.message} ({self.detail})"
        return self.message


class UserError(CunxiangError):
    default_code = "invalid"


class InvalidInput(UserError):
    default_code = "invalid"


class NotFound(UserError):
    default_code = "not_found"


class Unauthenticated(UserError):
    default_code = "unauthenticated"


class PermissionDenied(UserError):
    default_code = "forbidden"


class Conflict(UserError):
    default_code = "conflict"


class TooManyAttempts(UserError):
    default_code = "too_many_attempts"

    def __init__(self, message: str, *, retry_after_s: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class InsufficientStorage(UserError):
    default_code = "insufficient_storage"


class ServiceUnavailable(CunxiangError):
    default_code = "unavailable"


class StartupError(Exception):
    """Start-up cannot go on; the message is one line for the operator."""
