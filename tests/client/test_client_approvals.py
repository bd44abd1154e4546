"""The client's approval commands: several roles, tickets, scopes, scheduled
starts, break-glass, reviews, extensions, narrowing, and scoped credentials
kept apart in the cache (the hot path included)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from rolebroker import _fast

from tests.client.fakes import FakeBroker, Reply, Result

PENDING = {"id": "0123456789ab", "status": "pending", "role": "deploy-a", "roles": ["deploy-a", "deploy-b"],
           "requester": "alice@example.com",
           "progress": {"stage": 1, "stages": 2, "stage_name": "team-lead", "approvals": 0, "required": 1}}


def test_request_for_several_roles_with_a_ticket_a_scope_and_a_start(cli: Callable[..., Result],
                                                                     broker: FakeBroker) -> None:
    broker.route("POST", "/v1/requests", Reply(201, PENDING))
    result = cli("request", "--role", "deploy-a", "--role", "deploy-b", "--reason", "release", "--duration", "2h",
                 "--ticket", "CHG-7", "--scope", "readonly", "--start", "2030-03-01T09:00:00+01:00")
    assert result.code == 0, result.err
    assert broker.seen[0].json() == {"roles": ["deploy-a", "deploy-b"], "reason": "release", "duration_seconds": 7200,
                                     "ticket": "CHG-7", "scope": "readonly", "start_at": "2030-03-01T09:00:00+01:00"}
    assert result.out == ("request 0123456789ab for deploy-a, deploy-b: pending\n"
                          "  waiting for 0 of 1 approvals in stage 1 of 2 (team-lead)\n")


@pytest.mark.parametrize("duration", ["1x", "h", "-5", "\u0661h", "1h-"])
def test_a_duration_that_is_not_one_is_a_usage_error(cli: Callable[..., Result], broker: FakeBroker,
                                                     duration: str) -> None:
    result = cli("request", "--role", "r", "--reason", "x", "--duration", duration)
    # The one grammar of issue 13 §5 (rolebroker._fast.duration), with its one message.
    assert result.code != 0 and f"cannot read duration {duration!r}: {_fast.DURATION_HELP}" in result.err
    assert broker.seen == []


def test_break_glass(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("POST", "/v1/break-glass", Reply(201, {
        "id": "0123456789ab", "kind": "break_glass", "status": "approved", "role": "prod-admin",
        "grant_until": "2030-01-01T01:00:00+00:00", "review": {"status": "pending"}}))
    result = cli("break-glass", "prod-admin", "--reason", "payments down", "--ticket", "INC-7", "--duration", "30m")
    assert result.code == 0, result.err
    assert broker.seen[0].json() == {"role": "prod-admin", "reason": "payments down", "ticket": "INC-7",
                                     "duration_seconds": 1800}
    assert result.out.startswith("break-glass 0123456789ab for prod-admin: approved until ")
    assert "security and the role's approvers have been told" in result.err


@pytest.mark.parametrize(("argv", "fragment"), [
    (["break-glass", "prod-admin", "--reason", "down"], "--ticket"),
    (["break-glass", "prod-admin", "--ticket", "INC-1"], "--reason"),
    (["break-glass", "--reason", "down", "--ticket", "INC-1"], "ROLE"),
    (["extend", "0123456789ab", "--reason", "more"], "--duration"),
])
def test_missing_arguments_are_named(cli: Callable[..., Result], broker: FakeBroker, argv: list[str],
                                     fragment: str) -> None:
    result = cli(*argv)
    assert result.code != 0 and fragment in result.err
    assert broker.seen == []


def test_a_refused_break_glass_shows_the_brokers_reason(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("POST", "/v1/break-glass", Reply(409, {
        "Code": "ConflictError", "Message": "your break-glass 0123456789ab still waits for its review",
        "RequestId": "r1"}))
    result = cli("break-glass", "prod-admin", "--reason", "again", "--ticket", "INC-8")
    assert result.code != 0
    assert result.err == "rolebroker: your break-glass 0123456789ab still waits for its review (request id r1)\n"


def test_review(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("POST", "/v1/requests/0123456789ab/review", Reply(200, {
        "id": "0123456789ab", "role": "prod-admin", "requester": "bob@example.com", "review": {"status": "done"}}))
    result = cli("review", "0123456789ab", "--reason", "checked CloudTrail")
    assert result.code == 0, result.err
    assert broker.seen[0].json() == {"reason": "checked CloudTrail"}
    assert result.out == "break-glass 0123456789ab (prod-admin for bob@example.com): review done\n"


def test_extend_at_once_or_through_approvers(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("POST", "/v1/requests/0123456789ab/extend", Reply(200, {
        "id": "0123456789ab", "role": "db", "grant_until": "2030-01-01T02:00:00+00:00"}))
    done = cli("extend", "0123456789ab", "--duration", "1h", "--reason", "still migrating")
    assert done.code == 0, done.err
    assert broker.seen[0].json() == {"duration_seconds": 3600, "reason": "still migrating"}
    assert done.out.startswith("request 0123456789ab (db): extended until ")
    broker.route("POST", "/v1/requests/0123456789ab/extend", Reply(201, {**PENDING, "id": "0123456789ac",
                                                                         "kind": "extension"}))
    asked = cli("extend", "0123456789ab", "--duration", "90m", "--reason", "still migrating")
    assert asked.code == 0, asked.err
    assert broker.seen[1].json()["duration_seconds"] == 5400
    assert asked.out.startswith("extension request 0123456789ac for deploy-a, deploy-b: pending (beyond what")


def test_approve_narrows_only_when_told(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("POST", "/v1/requests/0123456789ab/approve", Reply(200, {
        **PENDING, "status": "approved", "roles": ["deploy-b"], "progress": None}))
    result = cli("approve", "0123456789ab", "--role", "deploy-b")
    assert result.code == 0, result.err
    assert broker.seen[0].json() == {"roles": ["deploy-b"]}
    assert result.out == "request 0123456789ab (deploy-b for alice@example.com): approved\n"
    cli("approve", "0123456789ab")
    assert broker.seen[1].json() == {}


def test_requests_by_kind_show_progress_and_reviews(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("GET", "/v1/requests", Reply(200, {"requests": [
        {"id": "r1", "kind": "break_glass", "status": "approved", "role": "prod-admin", "requester": "bob",
         "duration_seconds": 3600, "reason": "down", "review": {"status": "pending"}},
        {"id": "r2", "kind": "access", "status": "pending", "role": "deploy-a", "roles": ["deploy-a", "deploy-b"],
         "requester": "carol", "duration_seconds": 3600, "reason": "release",
         "progress": {"stage": 2, "stages": 2, "stage_name": "security", "approvals": 1, "required": 2}},
    ], "next_token": None}))
    result = cli("requests", "--kind", "break_glass")
    assert result.code == 0, result.err
    assert broker.seen[0].path == "/v1/requests?kind=break_glass"
    rows = result.out.splitlines()
    assert "approved (break-glass, review pending)" in rows[1]
    assert "pending 1/2 stage 2/2" in rows[2] and "deploy-a, deploy-b" in rows[2]


def test_scoped_credentials_are_asked_for_and_cached_apart(cli: Callable[..., Result], broker: FakeBroker,
                                                           env: dict[str, str]) -> None:
    scoped = ("credential-process", "--role", "s3-admin", "--scope", "readonly")
    first = cli(*scoped)
    assert first.code == 0, first.err
    assert broker.seen[0].json() == {"role": "s3-admin", "scope": "readonly"}
    assert cli(*scoped).out == first.out and len(broker.seen) == 1  # a hit
    assert _fast.cached_document(list(scoped), env) == first.out  # the hot path finds the same entry
    whole = cli("credential-process", "--role", "s3-admin")
    assert whole.code == 0 and whole.out != first.out  # never the scoped session for the whole role
    assert broker.seen[1].json() == {"role": "s3-admin"}
    other = cli("credential-process", "--role", "s3-admin", "--scope", "logs")
    assert other.out not in (first.out, whole.out) and broker.seen[2].json()["scope"] == "logs"


def test_a_key_without_a_scope_is_the_key_it_always_was() -> None:
    identity = ("https://issuer.example.com", "alice")
    assert _fast.cache_key("https://b.example", identity, "r", None) == json.dumps(
        [_fast.CACHE_FORMAT, "https://b.example", *identity, "r", 0], separators=(",", ":"))
    assert _fast.cache_key("https://b.example", identity, "r", None, "s") != _fast.cache_key(
        "https://b.example", identity, "r", None)
    assert _fast.parse_credential_process(["credential-process", "--role", "r", "--scope", "s"]) == {
        "role": "r", "scope": "s"}


@pytest.mark.parametrize("command", ["break-glass", "review", "extend", "request", "approve", "requests"])
def test_every_new_command_has_help(cli: Callable[..., Result], command: str) -> None:
    result = cli(command, "--help")
    assert result.code == 0
    text: Any = result.out
    assert text.startswith("usage: rolebroker") and command in text


# --------------------------------------------------------------------------
# The approval commands in the conventions of issue 13 §5 (positional ROLE,
# durations with units, --output json, show)


def test_request_takes_its_roles_as_words_or_options_each_once(cli: Callable[..., Result],
                                                               broker: FakeBroker) -> None:
    broker.route("POST", "/v1/requests", Reply(201, PENDING))
    result = cli("request", "deploy-a", "deploy-b", "--role", "deploy-a", "--reason", "release", "--duration", "2h30m")
    assert result.code == 0, result.err
    assert broker.seen[0].json() == {"roles": ["deploy-a", "deploy-b"], "reason": "release", "duration_seconds": 9000}
    one = cli("request", "deploy-a", "--reason", "release", "--ticket", "CHG-7")
    assert one.code == 0, one.err
    assert broker.seen[1].json() == {"role": "deploy-a", "reason": "release", "ticket": "CHG-7"}


def test_a_request_without_a_duration_says_what_the_broker_chose(cli: Callable[..., Result],
                                                                 broker: FakeBroker) -> None:
    broker.route("POST", "/v1/requests", Reply(201, {**PENDING, "duration_seconds": 14400}))
    result = cli("request", "deploy-a", "deploy-b", "--reason", "release", "--scope", "readonly")
    assert result.code == 0, result.err
    assert "duration_seconds" not in broker.seen[0].json()
    assert result.err == ("rolebroker: without --duration the broker asked for 4h, the longest grant the role "
                          "allows\n")


def test_break_glass_takes_the_role_as_an_option_too(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("POST", "/v1/break-glass", Reply(201, {"id": "0123456789ab", "status": "approved"}))
    result = cli("break-glass", "--role", "prod-admin", "--reason", "down", "--ticket", "INC-7", "--duration", "1h")
    assert result.code == 0, result.err
    assert broker.seen[0].json() == {"role": "prod-admin", "reason": "down", "ticket": "INC-7",
                                     "duration_seconds": 3600}
    both = cli("break-glass", "prod-admin", "--role", "other", "--reason", "down", "--ticket", "INC-7")
    assert both.code == 2 and "got two roles" in both.err


def test_break_glasses_waiting_for_review_as_json(cli: Callable[..., Result], broker: FakeBroker) -> None:
    glass = {"id": "r1", "kind": "break_glass", "status": "approved", "role": "prod-admin",
             "review": {"status": "pending", "by": None, "at": None, "note": None}}
    broker.route("GET", "/v1/requests", Reply(200, {"requests": [glass], "next_token": None}))
    result = cli("requests", "--kind", "break_glass", "--output", "json")
    assert result.code == 0, result.err
    assert broker.seen[0].path == "/v1/requests?kind=break_glass"
    assert json.loads(result.out) == {"requests": [glass], "complete": True}


def test_show_names_the_roles_ticket_scope_approvals_and_review(cli: Callable[..., Result],
                                                                broker: FakeBroker) -> None:
    broker.route("GET", "/v1/requests/0123456789ab", Reply(200, {
        **PENDING, "reason": "release", "duration_seconds": 7200, "created_at": "2030-01-01T00:00:00+00:00",
        "pending_until": "2030-01-01T01:00:00+00:00", "kind": "access", "ticket": "CHG-7", "scope": "readonly",
        "start_at": None, "approvals": [{"who": "lead@example.com", "stage": "team-lead",
                                         "at": "2030-01-01T00:10:00+00:00"}],
        "progress": {"stage": 2, "stages": 2, "stage_name": "security", "approvals": 0, "required": 2},
        "review": None, "history": []}))
    result = cli("show", "0123456789ab")
    assert result.code == 0, result.err
    rows = dict(line.strip().split("  ", 1) for line in result.out.splitlines()[1:])
    assert rows["role"].strip() == "deploy-a, deploy-b"
    assert rows["ticket"].strip() == "CHG-7" and rows["scope"].strip() == "readonly"
    assert rows["approved by"].strip().startswith("lead@example.com (team-lead) at ")
    assert rows["progress"].strip() == "waiting for 0 of 2 approvals in stage 2 of 2 (security)"
    assert "kind" not in rows and "review" not in rows and "starts" not in rows


def test_show_names_a_break_glass_and_its_review(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("GET", "/v1/requests/0123456789ab", Reply(200, {
        "id": "0123456789ab", "kind": "break_glass", "status": "approved", "role": "prod-admin",
        "roles": ["prod-admin"], "requester": "bob@example.com", "ticket": "INC-7", "progress": None,
        "review": {"status": "done", "by": "lead@example.com", "at": "2030-01-01T02:00:00+00:00",
                   "note": "checked\x1b[2J CloudTrail"}}))
    result = cli("show", "0123456789ab")
    assert result.code == 0, result.err
    assert "\x1b" not in result.out
    rows = dict(line.strip().split("  ", 1) for line in result.out.splitlines()[1:])
    assert rows["kind"].strip() == "break-glass"
    assert rows["review"].strip().startswith("done by lead@example.com at ")
    assert rows["review"].strip().endswith(": checked CloudTrail")  # the escape sequence is dropped whole


ESCAPES = "\x1b]8;;https://evil.example.com\x07x\x1b]8;;\x07\x1b[2J\u202e\x9b1m\x07\x00"


def test_tickets_scopes_and_stage_names_reach_the_terminal_clean(cli: Callable[..., Result],
                                                                 broker: FakeBroker) -> None:
    # The broker validates tickets (printable ASCII) and scope names; a broker that did not, or a
    # forged answer, must still not drive the terminal through show, requests, extend or approve.
    doc = {**PENDING, "id": "0123456789ab", "kind": "extension", "parent": f"0123456789ac{ESCAPES}",
           "ticket": f"CHG-7{ESCAPES}", "scope": f"readonly{ESCAPES}", "roles": [f"deploy-a{ESCAPES}"],
           "approvals": [{"who": f"lead{ESCAPES}", "stage": f"team-lead{ESCAPES}", "at": "2030-01-01T00:10:00Z"}],
           "progress": {"stage": 2, "stages": 2, "stage_name": f"security{ESCAPES}", "approvals": 0, "required": 2},
           "review": {"status": f"pending{ESCAPES}", "by": None, "at": None, "note": None}}
    broker.route("GET", "/v1/requests/0123456789ab", Reply(200, {**doc, "history": []}))
    broker.route("GET", "/v1/requests", Reply(200, {"requests": [doc]}))
    broker.route("POST", "/v1/requests/0123456789ab/extend", Reply(201, doc))
    broker.route("POST", "/v1/requests/0123456789ab/approve", Reply(200, doc))
    outputs = [cli("show", "0123456789ab"), cli("requests"),
               cli("extend", "0123456789ab", "--duration", "1h", "--reason", "more"),
               cli("approve", "0123456789ab")]
    for result in outputs:
        assert result.code == 0, result.err
        assert not any(ch in result.out + result.err for ch in ("\x1b", "\x07", "\x9b", "\u202e", "\x00")), result
        assert "[2J" not in result.out and "]8;;" not in result.out
    shown = outputs[0].out
    assert "CHG-7x" in shown and "readonlyx" in shown and "team-leadx" in shown and "securityx" in shown
