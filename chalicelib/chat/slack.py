"""Slack at the protocol level: signatures, the ``/aws`` grammar and the Web
API. No policy decisions here (``chatops.py`` makes those) and no message
text (``messages.py`` makes all of it).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from slack_sdk.signature import Clock, SignatureVerifier

from chalicelib.exceptions import BadRequest, DependencyDown, Unauthenticated

LOG = logging.getLogger(__name__)
MAX_SLACK_BODY = 64 * 1024
COMMANDS = {"help", "roles", "console", "request", "requests", "approve", "deny", "cancel"}


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
        if not timestamp.isdigit() or len(body) > MAX_SLACK_BODY:
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


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?$")


def parse_duration(text: str) -> int:
    """``2h``, ``90m``, ``1h30m``, ``3600`` into seconds."""
    match = _DURATION.match(text.strip().lower())
    if not text.strip() or not match or not any(match.groups()):
        raise BadRequest(f"cannot read duration {text[:20]!r}: use e.g. 2h, 30m or 3600")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


class SlackApi:
    """The Web API calls we make, through slack_sdk's ``WebClient``."""

    def __init__(self, client_factory: Callable[[], Any], *, response_url_prefixes: tuple[str, ...],
                 webhook_factory: Callable[[str], Any] | None = None) -> None:
        self._client_factory = client_factory
        self._web: Any = None
        self._prefixes = response_url_prefixes
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
        if user.get("deleted") or user.get("is_bot") or user.get("is_restricted"):
            return None  # guests and bots never act as a broker identity
        email = (user.get("profile") or {}).get("email")
        return email if isinstance(email, str) and email else None

    def post(self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None) -> tuple[str, str]:
        answer = self._client.chat_postMessage(channel=channel, text=text, blocks=blocks)
        return str(answer["channel"]), str(answer["ts"])

    def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        self._client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)

    def respond(self, response_url: str, message: dict[str, Any]) -> None:
        if not response_url.startswith(self._prefixes):
            LOG.warning("refusing to post to a response_url outside %s", self._prefixes)
            return
        self._webhook_factory(response_url).send_dict(message)


def _webhook(url: str) -> Any:
    from slack_sdk.webhook import WebhookClient

    return WebhookClient(url, timeout=5)
