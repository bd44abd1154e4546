"""Slack signatures (with Slack's own published example) and the /aws grammar."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest

from chalicelib.chat.slack import SlackApi, SlackRequestVerifier, SlackWorkspaces, parse_command, parse_duration
from chalicelib.exceptions import BadRequest, ConfigurationError, Unauthenticated

# https://api.slack.com/authentication/verifying-requests-from-slack (the worked example)
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TIMESTAMP = "1531420618"
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def headers(timestamp: str = SLACK_TIMESTAMP, signature: str = SLACK_SIGNATURE) -> dict[str, str]:
    return {"x-slack-request-timestamp": timestamp, "x-slack-signature": signature}


def at(seconds: float) -> SlackRequestVerifier:
    return SlackRequestVerifier(SLACK_SECRET, now=lambda: seconds)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "v0=" + hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()


def test_slacks_published_example_verifies() -> None:
    at(int(SLACK_TIMESTAMP) + 10).verify(SLACK_BODY, headers())


@pytest.mark.parametrize(("case", "body", "hdrs", "now"), [
    ("replayed after 5 minutes", SLACK_BODY, headers(), int(SLACK_TIMESTAMP) + 301),
    ("from the future", SLACK_BODY, headers(), int(SLACK_TIMESTAMP) - 301),
    ("body tampered", SLACK_BODY.replace(b"roadrunner", b"wile_e"), headers(), int(SLACK_TIMESTAMP)),
    ("timestamp changed", SLACK_BODY, headers(timestamp=str(int(SLACK_TIMESTAMP) + 1)), int(SLACK_TIMESTAMP)),
    ("wrong secret", SLACK_BODY, headers(signature=sign("another-secret", SLACK_TIMESTAMP, SLACK_BODY)),
     int(SLACK_TIMESTAMP)),
    ("forged v1 scheme", SLACK_BODY, headers(signature=SLACK_SIGNATURE.replace("v0=", "v1=")), int(SLACK_TIMESTAMP)),
    ("no signature", SLACK_BODY, {"x-slack-request-timestamp": SLACK_TIMESTAMP}, int(SLACK_TIMESTAMP)),
    ("no timestamp", SLACK_BODY, {"x-slack-signature": SLACK_SIGNATURE}, int(SLACK_TIMESTAMP)),
    ("non-numeric timestamp", SLACK_BODY, headers(timestamp="soon"), int(SLACK_TIMESTAMP)),
    ("not utf-8", b"\xff\xfe", headers(), int(SLACK_TIMESTAMP)),
    ("non-ASCII signature", SLACK_BODY, headers(signature="v0=" + "\u00e9" * 64), int(SLACK_TIMESTAMP)),
    ("non-ASCII last digit", SLACK_BODY, headers(signature=SLACK_SIGNATURE[:-1] + "\u0663"), int(SLACK_TIMESTAMP)),
    ("non-ASCII timestamp digits", SLACK_BODY, headers(timestamp="\u0661" * 10), int(SLACK_TIMESTAMP)),
])
def test_bad_signatures_are_refused(case: str, body: bytes, hdrs: dict[str, str], now: int) -> None:
    with pytest.raises(Unauthenticated):
        at(now).verify(body, hdrs)


def test_two_secrets_allow_rotation() -> None:
    now = time.time()
    verifier = SlackRequestVerifier("new-secret, old-secret", now=lambda: now)
    ts = str(int(now))
    verifier.verify(b"a=1", headers(ts, sign("old-secret", ts, b"a=1")))
    verifier.verify(b"a=1", headers(ts, sign("new-secret", ts, b"a=1")))
    with pytest.raises(Unauthenticated):
        verifier.verify(b"a=1", headers(ts, sign("third", ts, b"a=1")))


@pytest.mark.parametrize(("text", "name", "args"), [
    ("", "help", []), ("help", "help", []), ("frobnicate", "help", []), ("ROLES", "roles", []),
    ("console sandbox-admin", "console", ["sandbox-admin"]),
    ("request prod-breakglass 2h INC-42 db down", "request", ["prod-breakglass", "2h", "INC-42", "db", "down"]),
    ("deny abc123 not now", "deny", ["abc123", "not", "now"]),
])
def test_command_grammar(text: str, name: str, args: list[str]) -> None:
    command = parse_command(text)
    assert (command.name, command.args) == (name, args)


@pytest.mark.parametrize(("text", "seconds"), [("2h", 7200), ("30m", 1800), ("1h30m", 5400), ("3600", 3600),
                                                ("900s", 900)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "two hours", "-1h", "1d", "h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_duration(text)



class RecordingWebhooks:
    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, url: str) -> RecordingWebhooks:
        self.urls.append(url)
        return self

    def send_dict(self, message: dict[str, object]) -> None:
        pass


def slack_api(*prefixes: str) -> tuple[SlackApi, RecordingWebhooks]:
    hooks = RecordingWebhooks()
    return SlackApi(lambda: None, response_url_prefixes=prefixes, workspaces=SlackWorkspaces(["T0001"]),
                    webhook_factory=hooks), hooks


@pytest.mark.parametrize(("prefix", "url"), [
    ("https://hooks.slack.com", "https://hooks.slack.com.evil.example/commands/T1/2/3"),
    ("https://hooks.slack.com", "https://hooks.slack.com@evil.example/commands/T1/2/3"),
    ("https://hooks.slack.com/", "https://user:pw@hooks.slack.com/commands/T1/2/3"),
    ("https://hooks.slack.com/", "http://hooks.slack.com/commands/T1/2/3"),
    ("https://hooks.slack.com/", "https://hooks.slack.com:8443/commands/T1/2/3"),
    ("https://hooks.slack.com/commands/", "https://hooks.slack.com/commands/../api/chat.postMessage"),
    ("https://hooks.slack.com/commands/", "https://hooks.slack.com/commands/%2e%2e/api/chat.postMessage"),
    ("https://hooks.slack.com/commands/", "https://hooks.slack.com/commands\\..\\api"),
    ("https://hooks.slack.com/commands/", "https://hooks.slack.com/commandsX/1"),
    ("http://127.0.0.1:8003/hooks/", "http://127.0.0.1:8003/hooks/../api/chat.postMessage"),
    ("http://127.0.0.1:8003/hooks/", "http://127.0.0.1:8004/hooks/1"),
    ("https://hooks.slack.com/", "https://hooks.slack.com/commands/1 2"),
    ("https://hooks.slack.com/", "javascript://hooks.slack.com/%0aalert(1)"),
    ("https://hooks.slack.com/", ""),
])
def test_response_urls_outside_the_configured_place_are_refused(prefix: str, url: str) -> None:
    api, hooks = slack_api(prefix)
    api.respond(url, {"text": "hi"})
    assert hooks.urls == []


@pytest.mark.parametrize(("prefix", "url"), [
    ("https://hooks.slack.com/", "https://hooks.slack.com/commands/T1DC2JH3J/397700885554/96rGlfmibIGlgcZRskXaIFfN"),
    ("https://hooks.slack.com", "https://hooks.slack.com/actions/T1/2/3"),
    ("https://hooks.slack.com/", "https://HOOKS.slack.com/commands/T1/2/3"),
    ("https://hooks.slack.com/", "https://hooks.slack.com:443/commands/T1/2/3"),
    ("http://127.0.0.1:8003/hooks/", "http://127.0.0.1:8003/hooks/abc"),
])
def test_response_urls_in_the_configured_place_are_used(prefix: str, url: str) -> None:
    api, hooks = slack_api(prefix)
    api.respond(url, {"text": "hi"})
    assert hooks.urls == [url]


@pytest.mark.parametrize("prefix", ["hooks.slack.com", "ftp://hooks.slack.com/", "https:///x", "https://a@b/"])
def test_a_bad_response_url_prefix_is_a_configuration_error(prefix: str) -> None:
    with pytest.raises(ConfigurationError):
        slack_api(prefix)
