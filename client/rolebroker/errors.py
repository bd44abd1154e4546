"""Every failure the user can act on, and the registry that keeps secrets out of their text.

A ``RoleBrokerError``'s text is the one line ``rolebroker`` prints on
stderr; it says what to do. Every token and key the client handles is
remembered here, so the top-level guard can scrub it from any message,
whatever raised it: the last line of defence for "never print a secret".
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re

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


# Secrets by their shape, for what the client never saw whole: a server that
# echoes part of a token, a token_command's error, an IdP quoting a refresh
# token. A credential after "Bearer"; anything that starts like a JWT (the
# base64url of '{"'), with its other parts; an AWS access key id; a secret
# access key (40 base64 characters) or session token (100 or more) that mixes
# upper case, lower case and digits, which names, ids and paths seldom do.
# Inside a key or token, '/', '+' and '=' may come as JSON writes them ('\/',
# '\u002f') or URL-encoded ('%2F', '%2B', '%3D', in either case): each such
# escape counts as the one character it stands for.
_SLASH = r"(?:/|\\/|\\u002[fF]|%2[fF])"
_PLUS = r"(?:\+|%2[bB])"
_PAD = r"(?:=|%3[dD])"
_BASE64 = rf"(?:[A-Za-z0-9]|{_SLASH}|{_PLUS})"
_SHAPES = (
    r"(?P<bearer>(?i:bearer)\s+)[^\s,;\"']+",
    r"eyJ[A-Za-z0-9_-]{6,}(?:\.[A-Za-z0-9_-]*){0,2}",
    r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])",
    # Never starting inside an escape either (after its '%' or '\').
    rf"(?<![A-Za-z0-9/+%\\])(?P<key>(?:[A-Za-z0-9]|{_PLUS}){_BASE64}{{39}}|{_BASE64}{{100,}}{_PAD}{{0,2}})"
    rf"(?!{_BASE64}|{_PAD})",
)
# What each escape in a key stands for, to judge the run by its characters.
_UNESCAPED = ((r"\\/|\\u002[fF]|%2[fF]", "/"), (r"%2[bB]", "+"), (r"%3[dD]", "="))


def redact(text: str) -> str:
    """``text`` without any secret the client handled, or anything shaped like one.

    A remembered secret goes however it was written: as it is, as a JSON
    string or URL-encoded. Redact before cutting a text short: a cut secret
    no longer matches.
    """
    import re

    for secret in _SECRETS:
        text = re.sub(_written_anyhow(secret), "[redacted]", text)
    for shape in _SHAPES:  # one at a time: a run one shape passes over may hide another
        text = re.sub(shape, _redacted, text)
    return text


def _written_anyhow(secret: str) -> str:
    r"""A pattern for ``secret`` as it is, or as a JSON string or a URL carries it.

    Any character but those both leave alone (letters, digits, ``-_.~``) may
    be escaped, in any mix: by JSON (``\/``, ``\u002f``, ``\"``) or by URL
    encoding (``%2F`` or ``%2f``; ``+`` for a space). That covers
    ``json_encode``, ``quote``, ``quote_plus`` and their cousins.
    """
    import re

    parts = []
    for char in secret:
        if char.isascii() and (char.isalnum() or char in "-_.~"):
            parts.append(re.escape(char))
            continue
        forms = [re.escape(char), rf"\\u(?i:{ord(char):04x})",
                 "".join(f"%(?i:{byte:02x})" for byte in char.encode("utf-8", "surrogatepass"))]
        if char in '/"\\':
            forms.append(re.escape("\\" + char))
        if char == " ":
            forms.append(r"\+")
        parts.append(f"(?:{'|'.join(forms)})")
    return "".join(parts)


def _redacted(match: re.Match[str]) -> str:
    import re

    key = match.groupdict().get("key")
    if key is None:
        return f"{match.groupdict().get('bearer') or ''}[redacted]"
    for escape, char in _UNESCAPED:
        key = re.sub(escape, char, key)
    if not (any(c.isupper() for c in key) and any(c.islower() for c in key) and any(c.isdigit() for c in key)):
        return match.group(0)
    return "[redacted]"
