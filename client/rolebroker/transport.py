"""HTTP with a bearer token: only over https (or to this machine), never through a redirect.

One request at a time through urllib, imported only when a request is made:
urllib.request (with http, ssl and email) costs more to import than Python
takes to start. Any HTTP status comes back as an ``HttpResponse``; only
transport failures raise, as ``Unreachable`` with a line that names the host.
"""

from __future__ import annotations

import json

from rolebroker import __version__
from rolebroker.errors import ConfigError, Unreachable
from rolebroker.text import one_line

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

USER_AGENT = f"rolebroker-client/{__version__}"
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class HttpResponse:
    """Status, lower-cased headers and body of one answer (error statuses included)."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = {key.lower(): value for key, value in headers.items()}
        self.body = body

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json_object(self) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.body)
        except (ValueError, UnicodeError):
            return None
        return doc if isinstance(doc, dict) else None

    def describe(self) -> str:
        if not self.body.strip():
            return f"HTTP {self.status}, empty body"
        return f"HTTP {self.status}, {self.content_type or 'no content type'}"


def is_loopback(host: str) -> bool:
    """This machine: exactly ``localhost``, or an address in 127.0.0.0/8 or ::1 (never a name that starts so)."""
    if host == "localhost":
        return True
    import ipaddress

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback and getattr(address, "ipv4_mapped", None) is None


def is_console_url(url: str) -> bool:
    """A sign-in link is a credential: https, or http only on this machine (the local stack).

    It is printed as it is, so it must be plain ASCII with nothing a terminal acts on.
    """
    from urllib.parse import urlsplit

    if not url.isascii() or not url.isprintable() or any(ch.isspace() for ch in url):
        return False
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname or ""))


def check_transport(url: str, what: str) -> None:
    """Refuse URLs a bearer token must not travel to: not http(s), or plain http off this machine."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        raise ConfigError(f"{what} URL {url!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host or any(ch.isspace() for ch in url):
        raise ConfigError(f"{what} URL {url!r} is not an http(s) URL")
    if not (url.isascii() and url.isprintable()):
        # It may be printed (login shows the sign-in address): nothing a terminal acts on.
        raise ConfigError(f"{what} URL {url!r} is not plain printable ASCII (an international host name "
                          "is written in its xn-- form)")
    if parts.scheme == "http" and not is_loopback(host):
        raise ConfigError(f"refusing to send a token to {url} over plain http; use https")


def _default_urlopen(request: Any, timeout: float) -> Any:
    import urllib.request
    from urllib.parse import urlsplit

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        # urllib would resend the Authorization header to wherever a redirect
        # points; the broker never redirects, so a 3xx is an unexpected answer.
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    handlers: list[Any] = [NoRedirect()]
    if is_loopback(urlsplit(request.full_url).hostname or ""):
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers).open(request, timeout=timeout)


def _reason(exc: BaseException) -> str:
    import socket

    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    verify = getattr(exc, "verify_message", None)
    if verify:
        return f"TLS certificate problem: {verify}"
    return one_line(getattr(exc, "strerror", None) or str(exc) or type(exc).__name__, 120)


def http_request(
    method: str,
    url: str,
    *,
    what: str,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    urlopen: Callable[[Any, float], Any] | None = None,
    shown_url: str | None = None,
) -> HttpResponse:
    """One request; any HTTP status comes back as a response, transport failures raise ``Unreachable``."""
    import http.client
    import socket
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method=method)  # noqa: S310 - check_transport vetted it
    request.add_header("User-Agent", USER_AGENT)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    shown = shown_url or url
    too_slow = f"the {what} at {shown} did not answer within {timeout:g} s (try again, or raise --timeout)"
    try:
        with (urlopen or _default_urlopen)(request, timeout) as answer:
            return HttpResponse(answer.status, dict(answer.headers.items()), answer.read(MAX_ANSWER_BYTES))
    except urllib.error.HTTPError as exc:
        try:
            data = exc.read(MAX_ANSWER_BYTES)
        except (OSError, http.client.HTTPException):
            data = b""
        return HttpResponse(exc.code, dict(exc.headers.items()) if exc.headers else {}, data)
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (socket.timeout, TimeoutError)):
            raise Unreachable(too_slow) from None
        reason = exc.reason if isinstance(exc.reason, BaseException) else OSError(str(exc.reason))
        raise Unreachable(f"cannot reach the {what} at {shown} ({_reason(reason)})") from None
    except (socket.timeout, TimeoutError):
        raise Unreachable(too_slow) from None
    except (http.client.HTTPException, OSError) as exc:
        raise Unreachable(f"the {what} at {shown} broke off the connection ({_reason(exc)})") from None

