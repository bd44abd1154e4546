"""Domain errors. ``app.py`` maps each to an HTTP status in one place.

Every message is written for the person who reads it: it says what went
wrong and, where there is something to do, what to do. Messages never carry
a token, a key or another user's data.
"""

from __future__ import annotations


class RolebrokerError(Exception):
    """Base class: carries a user-facing message."""

    status = 500
    code = "InternalError"


class BadRequest(RolebrokerError):
    """The request is malformed or out of range."""

    status = 400
    code = "BadRequestError"


class Unauthenticated(RolebrokerError):
    """No token, or a token we cannot verify."""

    status = 401
    code = "UnauthorizedError"


class Forbidden(RolebrokerError):
    """The verified caller may not do this."""

    status = 403
    code = "ForbiddenError"


class NotFound(RolebrokerError):
    """Unknown role or request."""

    status = 404
    code = "NotFoundError"


class Conflict(RolebrokerError):
    """The request lost a race or is in the wrong state."""

    status = 409
    code = "ConflictError"


class Throttled(RolebrokerError):
    """AWS or the broker is throttling; retry later."""

    status = 429
    code = "TooManyRequestsError"


class AwsRefused(RolebrokerError):
    """AWS refused the call; the message says what the operator must fix."""

    status = 502
    code = "BadGatewayError"


class DependencyDown(RolebrokerError):
    """A dependency (IdP, STS, DynamoDB, policy store) is unreachable."""

    status = 503
    code = "ServiceUnavailableError"


class PolicyError(Exception):
    """The access policy is invalid; the message names the place."""

    def __init__(self, message: str, *, source: str = "", line: int | None = None) -> None:
        self.message = message
        self.source = source
        self.line = line
        where = source or "policy"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")


class ConfigurationError(Exception):
    """The broker's own settings are missing or invalid."""


class TaskRejected(Exception):
    """A background task the worker will not run; ``reason`` says why (never the task's content)."""

    def __init__(self, reason: str, *, kind: str | None = None, nonce: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.nonce = nonce


class SlotTaken(Conflict):
    """Another request took the open-request slot first; pick another and try again."""


class BreakGlassLocked(Conflict):
    """The person's last break-glass still waits for its review (the lock item is held)."""


class TooManyWrites(BadRequest):
    """A change would need more writes than one DynamoDB transaction takes."""
