"""Every failure the user can act on, and the registry that keeps secrets out of their text.

A ``RoleBrokerError``'s text is the one line ``rolebroker`` prints on
stderr; it says what to do. Every token and key the client handles is
remembered here, so the top-level guard can scrub it from any message,
whatever raised it: the last line of defence for "never print a secret".
"""

from __future__ import annotations

LOGIN_HINT = "run `rolebroker login`"


class RoleBrokerError(Exception):
    """A failure the user can act on; its text is the one line they see."""

    exit_code = 1


class UsageError(RoleBrokerError):
    """The command line is wrong."""

    exit_code = 2


class ConfigError(RoleBrokerError):
    """The client's own settings (URL, config file, token file) are missing or wrong."""


class TokenError(RoleBrokerError):
    """There is no usable token: the user has to sign in (again)."""


class Unreachable(RoleBrokerError):
    """The broker or identity provider could not be reached or did not answer in time."""


class BrokerError(RoleBrokerError):
    """The broker answered with its error document; the text carries its Message and RequestId."""


class NotABroker(RoleBrokerError):
    """The URL answers, but not like a rolebroker broker: usually a wrong path in --url or ROLEBROKER_URL."""


class UnexpectedAnswer(RoleBrokerError):
    """An answer that is not the documented JSON: an HTML page, an empty body, a wrong shape."""


class CredentialsExpired(RoleBrokerError):
    """The broker handed out credentials that are already expired or about to."""


class UnsafeProfile(RoleBrokerError):
    """The broker's profile text is not exactly what rolebroker writes, so nothing was written."""


class LoginError(RoleBrokerError):
    """The interactive sign-in did not complete."""


class UnsafePath(RoleBrokerError):
    """A directory or file rolebroker would trust can be changed by another user."""


class CommandNotRunnable(RoleBrokerError):
    """`exec` could not start the command; exits like a shell would (127 not found, 126 otherwise)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


_SECRETS: set[str] = set()


def remember_secret(value: str) -> str:
    """Note a token or key (returned unchanged) so that ``redact`` removes it from any text."""
    if len(value) >= 8:
        _SECRETS.add(value)
    return value


def redact(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    return text
