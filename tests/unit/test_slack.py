"""Slack signatures (with Slack's own published example), the /aws grammar, the
form and interaction payloads, response URLs and the Web API calls we make."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError, SlackRequestError

from chalicelib.chat.slack import (
    MAX_SLACK_BODY,
    SlackApi,
    SlackOrigin,
    SlackRequestVerifier,
    SlackWorkspaces,
    _webhook,
    command_origin,
    interaction_origin,
    parse_command,
    parse_duration,
    parse_form,
    parse_interaction,
)
from chalicelib.exceptions import BadRequest, ConfigurationError, DependencyDown, Forbidden, Unauthenticated

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


def test_a_body_of_exactly_the_limit_is_verified_and_one_byte_more_is_refused() -> None:
    now = time.time()
    verifier = SlackRequestVerifier("secret", now=lambda: now)
    ts = str(int(now))
    at_limit = b"text=" + b"a" * (MAX_SLACK_BODY - 5)
    verifier.verify(at_limit, headers(ts, sign("secret", ts, at_limit)))
    with pytest.raises(Unauthenticated):
        verifier.verify(at_limit + b"a", headers(ts, sign("secret", ts, at_limit + b"a")))


def test_a_form_keeps_blank_fields_and_reads_past_empty_pairs() -> None:
    # Slack sends `text=` for a bare `/aws`: the field is there, and empty.
    assert parse_form(b"text=&user_id=U0ALICE&&team_id=T0001&bare") == {
        "text": "", "user_id": "U0ALICE", "team_id": "T0001", "bare": ""}


@pytest.mark.parametrize("form", [{}, {"payload": ""}, {"payload": "{not json"}])
def test_an_interaction_without_a_json_payload_is_a_bad_request(form: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        parse_interaction(form)


def test_an_interaction_payload_must_be_an_object() -> None:
    with pytest.raises(BadRequest):
        parse_interaction({"payload": "[1]"})
    assert parse_interaction({"payload": '{"type": "block_actions"}'}) == {"type": "block_actions"}


def test_an_interaction_names_its_workspace_organisation_and_the_users_own_workspace() -> None:
    payload = {"team": {"id": "T0SISTER"}, "enterprise": {"id": "E0001"}, "user": {"id": "U1", "team_id": "T0HOME"}}
    assert interaction_origin(payload) == SlackOrigin("T0SISTER", "E0001", "T0HOME")


def test_an_interaction_outside_any_organisation_has_no_enterprise() -> None:
    payload = {"team": {"id": "T0001"}, "enterprise": None, "user": {"id": "U1"}}
    assert interaction_origin(payload) == SlackOrigin("T0001", None, None)


@pytest.mark.parametrize("value", ["", 12345, ["T0001"], {"id": "T0001"}, None])
def test_origin_fields_that_are_not_text_are_absent(value: Any) -> None:
    payload = {"team": {"id": value}, "enterprise": {"id": value}, "user": {"team_id": value}}
    assert interaction_origin(payload) == SlackOrigin(None, None, None)
    assert command_origin({"team_id": value, "enterprise_id": value}) == SlackOrigin(None, None)


def test_origin_fields_are_cut_to_40_characters() -> None:
    long = "T" + "0" * 59
    assert interaction_origin({"team": {"id": long}}).team_id == long[:40]
    assert command_origin({"team_id": long, "enterprise_id": "E" + long}) == SlackOrigin(long[:40], ("E" + long)[:40])


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
                                                ("900s", 900), ("1", 1), ("1s", 1)])
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
    ("https://hooks.slack.com/commands", "https://hooks.slack.com/commandsX/1"),
    ("https://hooks.slack.com/commands/", "https://hooks.slack.com/commands/./1"),
    ("https://hooks.slack.com/commands/", "https://hooks.slack.com/commands/1\x002"),
    ("https://hooks.slack.com/commands/", "https://hooks.slack.com/commands/1\x1b[2J"),
    ("https://hooks.slack.com/commands/", "https://hooks.slack.com/commands/1\x7f"),
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
    ("https://hooks.slack.com/commands", "https://hooks.slack.com/commands/T1/2/3"),
])
def test_response_urls_in_the_configured_place_are_used(prefix: str, url: str) -> None:
    api, hooks = slack_api(prefix)
    api.respond(url, {"text": "hi"})
    assert hooks.urls == [url]


@pytest.mark.parametrize("prefix", ["hooks.slack.com", "ftp://hooks.slack.com/", "https:///x", "https://a@b/"])
def test_a_bad_response_url_prefix_is_a_configuration_error(prefix: str) -> None:
    with pytest.raises(ConfigurationError):
        slack_api(prefix)


def test_a_refused_response_url_is_logged_with_the_places_that_are_allowed(caplog: pytest.LogCaptureFixture) -> None:
    api, hooks = slack_api("https://hooks.slack.com/commands/")
    with caplog.at_level(logging.WARNING, logger="chalicelib.chat.slack"):
        api.respond("https://evil.example/commands/1", {"text": "hi"})
    assert hooks.urls == []
    assert "https://hooks.slack.com/commands/" in caplog.text


def test_response_urls_are_posted_with_a_short_timeout() -> None:
    # A Slack outage must not hold the worker Lambda for slack_sdk's default 30 s.
    assert _webhook("https://hooks.slack.com/commands/T1/2/3").timeout == 5


class FakeWebClient:
    """slack_sdk's WebClient as far as SlackApi uses it: records calls, answers from a table."""

    def __init__(self, user: dict[str, Any] | None = None, error: Exception | None = None) -> None:
        self.user = user
        self.error = error
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def users_info(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("users_info", kwargs))
        if self.error is not None:
            raise self.error
        return {"ok": True, "user": self.user}

    def chat_update(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("chat_update", kwargs))
        return {"ok": True}


def web_api(client: FakeWebClient) -> SlackApi:
    return SlackApi(lambda: client, response_url_prefixes=("https://hooks.slack.com/",),
                    workspaces=SlackWorkspaces(["T0001"]))


def member(**fields: Any) -> dict[str, Any]:
    return {"id": "U0ALICE", "team_id": "T0001", "profile": {"email": "alice@example.com"}, **fields}


def test_a_members_email_is_read_from_their_profile() -> None:
    client = FakeWebClient(member())
    assert web_api(client).user_email("U0ALICE") == "alice@example.com"
    assert client.calls == [("users_info", {"user": "U0ALICE"})]


@pytest.mark.parametrize("flag", ["deleted", "is_bot", "is_restricted", "is_ultra_restricted"])
def test_deleted_users_bots_and_guests_have_no_broker_identity(flag: str) -> None:
    assert web_api(FakeWebClient(member(**{flag: True}))).user_email("U0ALICE") is None


@pytest.mark.parametrize("email", [None, "", 42, ["alice@example.com"]])
def test_a_profile_without_a_text_email_has_no_broker_identity(email: Any) -> None:
    assert web_api(FakeWebClient(member(profile={"email": email}))).user_email("U0ALICE") is None


def test_a_user_of_another_workspace_is_refused() -> None:
    with pytest.raises(Forbidden):
        web_api(FakeWebClient(member(team_id="T0OTHER"))).user_email("U0ALICE")


def api_error(answer: dict[str, Any]) -> SlackApiError:
    return SlackApiError("users.info failed", answer)  # type: ignore[no-untyped-call]  # slack_sdk leaves it untyped


def test_an_unknown_user_has_no_broker_identity() -> None:
    error = api_error({"ok": False, "error": "user_not_found"})
    assert web_api(FakeWebClient(error=error)).user_email("U0GONE") is None


@pytest.mark.parametrize("error", [
    api_error({"ok": False, "error": "ratelimited"}),
    api_error({"ok": False}),
    SlackRequestError("connection reset"),
    TimeoutError("timed out"),
])
def test_slack_failing_the_profile_lookup_is_a_dependency_error(error: Exception) -> None:
    with pytest.raises(DependencyDown):
        web_api(FakeWebClient(error=error)).user_email("U0ALICE")


def test_an_updated_message_keeps_its_notification_text() -> None:
    client = FakeWebClient()
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "Approved"}}]
    web_api(client).update("C0APPROVALS", "1700000000.000100", "Request 1 approved", blocks)
    assert client.calls == [("chat_update", {"channel": "C0APPROVALS", "ts": "1700000000.000100",
                                             "text": "Request 1 approved", "blocks": blocks})]
