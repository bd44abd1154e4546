"""Slack at the protocol level: signatures, the ``/aws`` grammar and the Web
API. No policy decisions here (``chatops.py`` makes those) and no message
text (``messages.py`` makes all of it).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlsplit

from slack_sdk.signature import Clock, SignatureVerifier

from chalicelib.exceptions import BadRequest, ConfigurationError, DependencyDown, Forbidden, Unauthenticated

LOG = logging.getLogger(__name__)
MAX_SLACK_BODY = 64 * 1024
COMMANDS = {"help", "roles", "console", "request", "requests", "approve", "deny", "cancel", "break-glass",
            "review", "extend"}


class _Clock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


class SlackRequestVerifier:
    """Slack's v0 HMAC over the raw body with a 5-minute window (slack_sdk).

    Several secrets may be configured at once (whitespace or comma
    separated), so a signing secret can be rotated without a window in which
    Slack's requests are refused.
    """

    def __init__(self, secrets: str, now: Callable[[], float] = time.time) -> None:
        self._verifiers = [SignatureVerifier(secret, _Clock(now)) for secret in re.split(r"[\s,]+", secrets)
                           if secret]
        if not self._verifiers:
            raise ValueError("no Slack signing secret configured")

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        timestamp = headers.get("x-slack-request-timestamp")
        signature = headers.get("x-slack-signature")
        if not timestamp or not signature:
            raise Unauthenticated("missing Slack signature headers")
        # Non-ASCII would make hmac.compare_digest raise instead of answer "no".
        if not (timestamp.isascii() and timestamp.isdigit() and signature.isascii()) or len(body) > MAX_SLACK_BODY:
            raise Unauthenticated("invalid Slack signature")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Unauthenticated("invalid Slack signature") from None
        if not any(v.is_valid(body=text, timestamp=timestamp, signature=signature) for v in self._verifiers):
            raise Unauthenticated("invalid or stale Slack signature")


def parse_form(body: bytes) -> dict[str, str]:
    """A verified form body into single values (Slack sends no repeats)."""
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the Slack payload is not a form") from None
    return {key: values[0] for key, values in parsed.items()}


def parse_interaction(form: Mapping[str, str]) -> dict[str, Any]:
    try:
        payload = json.loads(form.get("payload", ""))
    except ValueError:
        raise BadRequest("the Slack interaction payload is not JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest("the Slack interaction payload is not an object")
    return payload


@dataclass(frozen=True)
class SlackOrigin:
    """Where a signed Slack request comes from: workspace, organisation, and the user's own workspace."""

    team_id: str | None
    enterprise_id: str | None
    user_team_id: str | None = None


def _text_or_none(value: Any) -> str | None:
    return value[:40] if isinstance(value, str) and value else None


def command_origin(form: Mapping[str, str]) -> SlackOrigin:
    return SlackOrigin(_text_or_none(form.get("team_id")), _text_or_none(form.get("enterprise_id")))


def interaction_origin(payload: Mapping[str, Any]) -> SlackOrigin:
    def field(name: str, key: str) -> str | None:
        holder = payload.get(name)
        return _text_or_none(holder.get(key)) if isinstance(holder, Mapping) else None

    return SlackOrigin(field("team", "id"), field("enterprise", "id"), field("user", "team_id"))


class SlackWorkspaces:
    """The workspaces (``T…``) and Enterprise Grid organisations (``E…``) the broker serves.

    A request is served only from one of them, and only for their own
    people: a Slack Connect channel shows our buttons to other companies'
    members, whose clicks carry their own ``user.team_id``, and ``users.info``
    names their home workspace (or calls them ``is_stranger``).
    """

    def __init__(self, allowed: Iterable[str]) -> None:
        self.allowed = frozenset(allowed)

    def refusal(self, origin: SlackOrigin) -> str | None:
        """Why a request from ``origin`` is not served, or None."""
        in_organisation = origin.enterprise_id is not None and origin.enterprise_id in self.allowed
        if origin.team_id not in self.allowed and not in_organisation:
            return f"Slack workspace {origin.team_id or '-'} is not one this broker serves"
        if origin.user_team_id and origin.user_team_id not in self.allowed and not in_organisation:
            return (f"Slack user from workspace {origin.user_team_id} (Slack Connect) is not one of this "
                    "broker's people")
        return None

    def is_member(self, user: Mapping[str, Any]) -> bool:
        """Whether a ``users.info`` user belongs to a served workspace or organisation."""
        if user.get("is_stranger"):
            return False
        enterprise = (user.get("enterprise_user") or {}).get("enterprise_id")
        return user.get("team_id") in self.allowed or (enterprise is not None and enterprise in self.allowed)


@dataclass(frozen=True)
class Command:
    name: str
    args: list[str]
    rest: str = ""


def parse_command(text: str) -> Command:
    """``/aws`` text into a command; anything unknown becomes ``help``."""
    words = text.strip().split(maxsplit=1)
    if not words or words[0].lower() not in COMMANDS:
        return Command("help", [])
    name = words[0].lower()
    rest = words[1] if len(words) > 1 else ""
    return Command(name, rest.split(), rest)


# The client's ``rolebroker._fast.duration`` reads exactly the same text
# (tests/client/test_client_durations.py holds the two to one table): seconds
# alone, or h, m and s in that order, each at most once, 1-6 ASCII digits each.
_DURATION = re.compile(r"([0-9]{1,6})\Z|(?:([0-9]{1,6})h)?(?:([0-9]{1,6})m)?(?:([0-9]{1,6})s)?\Z",
                       re.ASCII | re.IGNORECASE)


def parse_duration(text: str) -> int:
    """``3600``, ``90m``, ``1h``, ``2h30m`` or ``900s`` into seconds."""
    match = _DURATION.match(text)
    seconds = 0
    if match:
        alone, hours, minutes, rest = (int(g) if g else 0 for g in match.groups())
        seconds = alone + hours * 3600 + minutes * 60 + rest
    if seconds <= 0:
        raise BadRequest(f"cannot read duration {text[:20]!r}: use e.g. 90m, 1h, 2h30m or 3600 (seconds)")
    return seconds


_DEFAULT_PORTS = {"http": 80, "https": 443}
_ENCODED_DOTS_AND_SLASHES = ("%2e", "%2f", "%5c")


def _split_url(url: str) -> SplitResult | None:
    """``url`` split, if it is a plain http(s) URL with nothing that parsers read differently."""
    if not url or any(ch.isspace() or ord(ch) < 0x20 or ch in "\\\x7f" for ch in url):
        return None
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc or parts.fragment:
        return None
    lowered = parts.path.lower()
    if any(seq in lowered for seq in _ENCODED_DOTS_AND_SLASHES) or {".", ".."} & set(parts.path.split("/")):
        return None
    return parts


@dataclass(frozen=True)
class UrlPlace:
    """Where a URL may point: a scheme, a host, a port and a path prefix.

    Compared part by part after parsing, never as text: a prefix without its
    trailing slash would otherwise let ``hooks.slack.com.evil.example`` in, and
    ``/hooks/../api/`` would pass a path prefix it leaves.
    """

    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, prefix: str) -> UrlPlace:
        parts = _split_url(prefix)
        if parts is None or parts.query:
            raise ConfigurationError(f"response URL prefix {prefix!r} must be an http(s) URL with a host and an "
                                     "optional path, e.g. https://hooks.slack.com/")
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        return cls(parts.scheme.lower(), parts.hostname or "", parts.port or _DEFAULT_PORTS[parts.scheme.lower()],
                   path)

    def holds(self, url: str) -> bool:
        parts = _split_url(url)
        if parts is None:
            return False
        scheme = parts.scheme.lower()
        return (scheme == self.scheme and parts.hostname == self.host
                and (parts.port or _DEFAULT_PORTS[scheme]) == self.port and parts.path.startswith(self.path))


class SlackApi:
    """The Web API calls we make, through slack_sdk's ``WebClient``."""

    def __init__(self, client_factory: Callable[[], Any], *, response_url_prefixes: tuple[str, ...],
                 workspaces: SlackWorkspaces, webhook_factory: Callable[[str], Any] | None = None) -> None:
        self._client_factory = client_factory
        self._web: Any = None
        self._prefixes = response_url_prefixes
        self._places = [UrlPlace.parse(prefix) for prefix in response_url_prefixes]
        self._workspaces = workspaces
        self._webhook_factory = webhook_factory or _webhook

    @property
    def _client(self) -> Any:
        # Built on first use: resolving the bot token may read SSM, which no
        # route but Slack's should wait for.
        if self._web is None:
            self._web = self._client_factory()
        return self._web

    def user_email(self, user_id: str) -> str | None:
        from slack_sdk.errors import SlackApiError, SlackClientError

        try:
            answer = self._client.users_info(user=user_id)
        except SlackApiError as exc:
            if exc.response.get("error") == "user_not_found":
                return None
            raise DependencyDown("Slack did not answer the profile lookup; try again in a moment") from exc
        except (SlackClientError, OSError) as exc:
            raise DependencyDown("Slack did not answer the profile lookup; try again in a moment") from exc
        user = answer.get("user") or {}
        if user.get("deleted") or user.get("is_bot") or user.get("is_restricted") or user.get("is_ultra_restricted"):
            return None  # guests and bots never act as a broker identity
        if not self._workspaces.is_member(user):
            raise Forbidden("your Slack account belongs to another organisation or workspace (Slack Connect); "
                            "rolebroker acts only for its own organisation's people")
        email = (user.get("profile") or {}).get("email")
        return email if isinstance(email, str) and email else None

    def post(self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None) -> tuple[str, str]:
        answer = self._client.chat_postMessage(channel=channel, text=text, blocks=blocks)
        return str(answer["channel"]), str(answer["ts"])

    def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        self._client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)

    def respond(self, response_url: str, message: dict[str, Any]) -> None:
        if not any(place.holds(response_url) for place in self._places):
            LOG.warning("refusing to post to a response_url outside %s", self._prefixes)
            return
        self._webhook_factory(response_url).send_dict(message)


def _webhook(url: str) -> Any:
    from slack_sdk.webhook import WebhookClient

    return WebhookClient(url, timeout=5)
