"""The other subcommands through ``main``: roles, env, exec, console, requests, cache."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from rolebroker import commands, jit
from rolebroker import text as text_module

from tests.client.fakes import ALICE, FakeBroker, Reply, Result, Seen, cache_files


def test_roles_table(cli: Callable[..., Result], broker: FakeBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "local_time", lambda epoch: f"<{int(epoch)}>")
    result = cli("roles")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "ROLE           ACCOUNT       REGION     ACCESS",
        "sandbox-admin  222222222222  eu-west-1  allowed",
        "prod-readonly  333333333333  us-east-1  approval required",
        "prod-admin     222222222222  us-east-1  granted until <1893553445>",
    ]
    assert broker.seen[0].path == "/v1/roles"


def test_roles_when_none_are_offered(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("GET", "/v1/roles", Reply(200, {"roles": []}))
    result = cli("roles")
    assert (result.code, result.out) == (0, "")
    assert result.err == "rolebroker: the broker offers you no roles\n"


def test_roles_with_a_malformed_answer(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("GET", "/v1/roles", Reply(200, {"roles": "all of them"}))
    result = cli("roles")
    assert result.code == 1
    assert result.err == "rolebroker: unexpected answer from broker (HTTP 200, application/json without 'roles')\n"


def exports(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if words[0] == "export":
            name, _, value = words[1].partition("=")
            values[name] = value
    return values


def test_env_prints_quoted_exports_and_uses_the_cache(cli: Callable[..., Result], broker: FakeBroker) -> None:
    result = cli("env", "--role", "sandbox-admin")
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == "unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SECURITY_TOKEN"
    values = exports(result.out)
    assert values["AWS_ACCESS_KEY_ID"] == "FAKEKEY0000000000001"
    assert values["AWS_SECRET_ACCESS_KEY"].startswith("secret-1-")
    assert values["AWS_SESSION_TOKEN"].startswith("session-1-")
    assert values["AWS_REGION"] == values["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert values["AWS_CREDENTIAL_EXPIRATION"].endswith("+00:00")
    again = cli("env", "--role", "sandbox-admin")
    assert again.out == result.out
    assert broker.count("POST", "/v1/credentials") == 1


def test_env_quotes_hostile_values(cli: Callable[..., Result], broker: FakeBroker) -> None:
    def odd(request: Seen) -> Reply:
        reply = broker.credentials(request)
        assert isinstance(reply.body, dict)
        reply.body["credentials"]["SessionToken"] = "tok'en $(touch /tmp/pwned) `id`"
        return reply

    broker.route("POST", "/v1/credentials", odd)
    result = cli("env", "--role", "sandbox-admin")
    assert exports(result.out)["AWS_SESSION_TOKEN"] == "tok'en $(touch /tmp/pwned) `id`"


ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b]8;;https://evil.example/\x07"


@pytest.mark.parametrize("command", [("env",), ("credential-process",), ("exec", "--", "true")])
@pytest.mark.parametrize("field", ["SessionToken", "AccessKeyId", "Expiration"])
def test_credentials_with_terminal_escapes_are_refused(cli: Callable[..., Result], broker: FakeBroker,
                                                       command: tuple[str, ...], field: str) -> None:
    # Review ATTACK9 F3: `env` printed the broker's credential strings raw (shlex.quote
    # keeps the shell safe but passes ESC/BEL through to the terminal).
    def hostile(request: Seen) -> Reply:
        reply = broker.credentials(request)
        assert isinstance(reply.body, dict)
        reply.body["credentials"][field] += ESCAPES
        return reply

    broker.route("POST", "/v1/credentials", hostile)
    ran: list[list[str]] = []
    result = cli(command[0], "--role", "sandbox-admin", *command[1:],
                 execute=lambda argv, env: ran.append(argv) or 0)
    assert result.code != 0 and result.out == "" and ran == []
    assert "\x1b" not in result.err and "\x07" not in result.err
    assert f"credentials {field} is not printable ASCII" in result.err


def test_a_region_the_broker_names_outside_its_profile_is_checked(cli: Callable[..., Result],
                                                                  broker: FakeBroker) -> None:
    def hostile(request: Seen) -> Reply:
        reply = broker.credentials(request)
        assert isinstance(reply.body, dict)
        reply.body["profile"] = {"name": "sandbox-admin", "config": ""}
        reply.body["region"] = "eu-west-1" + ESCAPES
        return reply

    broker.route("POST", "/v1/credentials", hostile)
    result = cli("env", "--role", "sandbox-admin")
    assert result.code == 0, result.err
    assert "\x1b" not in result.out and "AWS_REGION" not in result.out


def test_exec_gets_the_credentials_and_passes_the_exit_code(cli: Callable[..., Result], broker: FakeBroker,
                                                             env: dict[str, str]) -> None:
    seen: list[tuple[list[str], dict[str, str]]] = []

    def execute(argv: list[str], child_env: dict[str, str]) -> int:
        seen.append((argv, child_env))
        return 42

    environ = env | {"AWS_PROFILE": "other", "AWS_DEFAULT_PROFILE": "other", "KEEP_ME": "1"}
    result = cli("exec", "--role", "sandbox-admin", "--", "aws", "s3", "ls", "--recursive", environ=environ,
                 execute=execute)
    assert result.code == 42
    assert (result.out, result.err) == ("", "")
    ((argv, child_env),) = seen
    assert argv == ["aws", "s3", "ls", "--recursive"]
    assert child_env["AWS_ACCESS_KEY_ID"] == "FAKEKEY0000000000001"
    assert child_env["AWS_REGION"] == "eu-west-1"
    assert child_env["KEEP_ME"] == "1"
    assert "AWS_PROFILE" not in child_env
    assert "AWS_DEFAULT_PROFILE" not in child_env


def test_exec_needs_a_command(cli: Callable[..., Result]) -> None:
    result = cli("exec", "--role", "sandbox-admin", "--")
    assert result.code == 2
    assert "exec needs a command after `--`" in result.err


def test_exec_does_not_run_the_command_when_credentials_fail(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("POST", "/v1/credentials", Reply(403, {"Message": "not for you", "RequestId": "r1"}))
    ran: list[list[str]] = []

    def execute(argv: list[str], env: dict[str, str]) -> int:
        ran.append(argv)
        return 0

    result = cli("exec", "--role", "sandbox-admin", "--", "true", execute=execute)
    assert result.code == 1
    assert ran == []
    assert result.err == "rolebroker: access denied for role sandbox-admin: not for you (request id r1)\n"


def test_console_prints_and_opens_the_link(cli: Callable[..., Result], broker: FakeBroker) -> None:
    link = "https://signin.aws.amazon.com/federation?Action=login&SigninToken=abc"
    broker.route("POST", "/v1/console", Reply(200, {"url": link, "expires_at": "2030-01-01T00:00:00+00:00"}))
    opened: list[str] = []

    def open_browser(url: str) -> bool:
        opened.append(url)
        return True

    assert cli("console", "--role", "sandbox-admin", "--print", open_browser=open_browser).out == link + "\n"
    result = cli("console", "--role", "sandbox-admin", "--open", open_browser=open_browser)
    assert (result.code, result.out) == (0, "")  # opened, so not printed
    assert opened == [link]
    assert broker.seen[0].json() == {"role": "sandbox-admin"}


def test_console_refuses_a_non_https_link(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("POST", "/v1/console", Reply(200, {"url": "file:///etc/passwd"}))
    opened: list[str] = []
    result = cli("console", "--role", "sandbox-admin", "--open", open_browser=opened.append)
    assert result.code == 1
    assert opened == []


@pytest.mark.parametrize(("link", "accepted"), [
    ("http://127.0.0.1:8003/federation?Action=login&SigninToken=abc", True),  # the local stack
    ("http://signin.example.com/federation?Action=login&SigninToken=abc", False),
    ("javascript:alert(1)", False),
])
def test_console_accepts_plain_http_only_on_this_machine(
        cli: Callable[..., Result], broker: FakeBroker, link: str, accepted: bool) -> None:
    broker.route("POST", "/v1/console", Reply(200, {"url": link, "expires_at": "2030-01-01T00:00:00+00:00"}))
    result = cli("console", "--role", "sandbox-admin", "--print")
    assert (result.code == 0) is accepted
    assert (result.out == link + "\n") is accepted


def test_roles_table_names_mfa_required(cli: Callable[..., Result], broker: FakeBroker) -> None:
    role = {"name": "prod-admin", "account_id": "333333333333", "role_arn": "arn:aws:iam::333333333333:role/A",
            "region": "us-east-1", "max_duration_seconds": 3600, "console": True, "access": "mfa_required"}
    broker.route("GET", "/v1/roles", Reply(200, {"roles": [role]}))
    assert cli("roles").out.splitlines()[1].endswith("MFA required")


def test_request_sends_role_duration_and_reason(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("POST", "/v1/requests", Reply(200, {"id": "req-1", "status": "pending", "role": "prod-readonly",
                                                     "requester": "alice@example.com"}))
    result = cli("request", "--role", "prod-readonly", "--reason", "incident 42", "--duration", "3600")
    assert result.code == 0, result.err
    assert result.out == "request req-1 for prod-readonly: pending\n"
    assert broker.seen[0].json() == {"role": "prod-readonly", "reason": "incident 42", "duration_seconds": 3600}


def test_requests_table(cli: Callable[..., Result], broker: FakeBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jit, "local_time", lambda epoch: "2030-01-01 00:00 UTC")
    broker.route("GET", "/v1/requests", Reply(200, {"requests": [
        {"id": "req-1", "status": "pending", "role": "prod-readonly", "requester": "alice@example.com",
         "duration_seconds": 5400, "reason": "incident 42", "created_at": "2030-01-01T00:00:00Z"},
        {"id": "req-2", "status": "approved", "role": "prod-admin", "requester": "bob@example.com",
         "duration_seconds": 3600, "reason": "deploy\nfix", "created_at": "2030-01-01T00:00:00Z"},
    ]}))
    result = cli("requests")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "ID     STATUS    ROLE           REQUESTER          DURATION  CREATED               REASON",
        "req-1  pending   prod-readonly  alice@example.com  1h30m     2030-01-01 00:00 UTC  incident 42",
        "req-2  approved  prod-admin     bob@example.com    1h        2030-01-01 00:00 UTC  deploy fix",
    ]


@pytest.mark.parametrize(("argv", "path", "body"), [
    (["approve", "req 1/x"], "/v1/requests/req%201%2Fx/approve", {}),
    (["deny", "req-1", "--reason", "not now"], "/v1/requests/req-1/deny", {"reason": "not now"}),
    (["deny", "req-1"], "/v1/requests/req-1/deny", {}),
])
def test_approve_and_deny(cli: Callable[..., Result], broker: FakeBroker, argv: list[str], path: str,
                          body: dict[str, str]) -> None:
    verdict = argv[0]
    broker.route("POST", path, Reply(200, {"id": argv[1], "status": f"{verdict}d", "role": "prod-admin",
                                           "requester": "bob@example.com"}))
    result = cli(*argv)
    assert result.code == 0, result.err
    assert broker.seen[0].path == path
    assert json.loads(broker.seen[0].body) == body
    assert result.out == f"request {argv[1]} (prod-admin for bob@example.com): {verdict}d\n"


def test_approving_your_own_request_shows_the_brokers_reason(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("POST", "/v1/requests/req-1/approve",
                 Reply(403, {"Code": "ForbiddenError", "Message": "you cannot approve your own request",
                             "RequestId": "r9"}))
    result = cli("approve", "req-1")
    assert result.err == "rolebroker: you cannot approve your own request (request id r9)\n"


def test_cache_clear(cli: Callable[..., Result], env: dict[str, str]) -> None:
    cli("credential-process", "--role", "sandbox-admin")
    cli("credential-process", "--role", "prod-admin")
    assert len(cache_files(env)) == 2
    result = cli("cache", "clear")
    assert result.code == 0
    assert result.out.startswith("removed 2 cached credential(s) from ")
    assert cache_files(env) == []


# --------------------------------------------------------------------------
# Issue 9, item 11: server strings reach the terminal without control characters.

HOSTILE = "\x1b]8;;https://evil.example.com\x07x\x1b]8;;\x07\x1b[2J\x1b[31m\u202e\x9b1m\x07\x08\x00"
CONTROLS = ("\x1b", "\x07", "\x08", "\x9b", "\u202e", "\x00")


def assert_clean(text: str) -> None:
    assert not any(ch in text for ch in CONTROLS), repr(text)
    assert "[2J" not in text and "]8;;" not in text and "[31m" not in text, repr(text)


def test_roles_strips_control_characters(cli: Callable[..., Result], broker: FakeBroker) -> None:
    role = {"name": f"sandbox{HOSTILE}-admin", "account_id": f"2222{HOSTILE}", "region": "eu-west-1",
            "role_arn": "arn:aws:iam::222222222222:role/A", "max_duration_seconds": 3600, "console": True,
            "access": f"allowed{HOSTILE}"}
    expiring = {**role, "name": "granted", "access": f"granted_until:{HOSTILE}"}
    broker.route("GET", "/v1/roles", Reply(200, {"roles": [role, expiring]}))
    result = cli("roles")
    assert result.code == 0, result.err
    assert_clean(result.out)
    assert result.out.splitlines()[1].split() == ["sandboxx-admin", "2222x", "eu-west-1", "allowedx"]


def test_request_and_requests_strip_control_characters(cli: Callable[..., Result], broker: FakeBroker) -> None:
    item = {"id": f"req{HOSTILE}-1", "status": f"pending{HOSTILE}", "role": f"prod{HOSTILE}", "requester":
            f"mallory{HOSTILE}", "duration_seconds": 3600, "reason": f"why{HOSTILE}", "created_at": f"{HOSTILE}"}
    broker.route("POST", "/v1/requests", Reply(200, item))
    broker.route("GET", "/v1/requests", Reply(200, {"requests": [item]}))
    created = cli("request", "--role", "prod-readonly", "--reason", "x")
    assert created.code == 0, created.err
    assert_clean(created.out)
    assert created.out == "request reqx-1 for prodx: pendingx\n"
    listed = cli("requests")
    assert listed.code == 0, listed.err
    assert_clean(listed.out)


@pytest.mark.parametrize("link", [
    f"https://signin.aws.amazon.com/federation?SigninToken=abc{HOSTILE}",
    "https://signin.aws.amazon.com/federation?SigninToken=abc def",
    "https://signin.aws.amazon.com/federation?SigninToken=abc\u202e",
])
def test_console_refuses_a_link_with_control_characters(cli: Callable[..., Result], broker: FakeBroker,
                                                        link: str) -> None:
    broker.route("POST", "/v1/console", Reply(200, {"url": link, "expires_at": "2030-01-01T00:00:00+00:00"}))
    opened: list[str] = []
    result = cli("console", "--role", "sandbox-admin", "--open", open_browser=opened.append)
    assert (result.code, result.out, opened) == (1, "", [])
    assert_clean(result.err)


def test_error_messages_strip_control_characters(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("GET", "/v1/roles", Reply(403, {"Message": f"no{HOSTILE} way", "RequestId": f"r{HOSTILE}"}))
    result = cli("roles")
    assert result.code == 1
    assert_clean(result.err)
    assert result.err == "rolebroker: nox way (request id rx)\n"


@pytest.mark.parametrize(("text", "shown"), [
    ("plain", "plain"),
    ("a\x1b[1;31mred\x1b[0m", "ared"),
    ("tab\tand\nnewline", "tab and newline"),
    ("osc\x1b]0;title\x07end", "oscend"),
    ("osc-st\x1b]0;title\x1b\\end", "osc-stend"),
    ("c1\x9b31mx", "c1x"),
    ("bidi\u202eevil\u2066x\u2069", "bidievilx"),
    ("lines\u2028and\u2029paragraphs\x85", "lines and paragraphs"),
    ("caf\u00e9 \u2713", "caf\u00e9 \u2713"),
])
def test_one_line_strips_escape_sequences(text: str, shown: str) -> None:
    assert text_module.one_line(text) == shown


# --------------------------------------------------------------------------
# Issue 9, item 12: exec keeps the broker's own variables from the command.


def test_exec_hides_the_brokers_variables(cli: Callable[..., Result], env: dict[str, str], home: Path) -> None:
    seen: list[dict[str, str]] = []

    def execute(argv: list[str], child_env: dict[str, str]) -> int:
        seen.append(child_env)
        return 0

    config = home / "rb.ini"
    config.write_text("[default]\n")
    environ = env | {"ROLEBROKER_CONFIG": str(config), "ROLEBROKER_ISSUER_PORT": "8001", "KEEP_ME": "1"}
    assert cli("exec", "--role", "sandbox-admin", "--", "env", environ=environ, execute=execute).code == 0
    (child,) = seen
    assert [name for name in child if name.startswith("ROLEBROKER_")] == ["ROLEBROKER_ISSUER_PORT"]
    assert ALICE not in child.values()
    assert child["KEEP_ME"] == "1"


# --------------------------------------------------------------------------
# Issue 9, item 9 (client side): `requests` follows next_token.


def paged(pages: dict[str | None, tuple[list[dict[str, Any]], str | None]]) -> Callable[[Seen], Reply]:
    def reply(request: Seen) -> Reply:
        token = parse_qs(urlsplit(request.path).query).get("next_token", [None])[0]
        items, following = pages[token]
        return Reply(200, {"requests": items, "next_token": following})

    return reply


def req(n: int) -> dict[str, Any]:
    return {"id": f"req-{n}", "status": "pending", "role": "prod-admin", "requester": "bob@example.com",
            "duration_seconds": 3600, "reason": f"r{n}", "created_at": "2030-01-01T00:00:00Z"}


def test_requests_follows_next_token_to_the_end(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("GET", "/v1/requests", paged({None: ([req(1), req(2)], "t/2+="), "t/2+=": ([req(3)], "t3"),
                                               "t3": ([req(4)], None)}))
    result = cli("requests")
    assert result.code == 0, result.err
    assert [line.split()[0] for line in result.out.splitlines()[1:]] == ["req-1", "req-2", "req-3", "req-4"]
    assert [s.path for s in broker.seen] == ["/v1/requests", "/v1/requests?next_token=t%2F2%2B%3D",
                                             "/v1/requests?next_token=t3"]


def test_requests_from_an_older_broker_without_next_token(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("GET", "/v1/requests", Reply(200, {"requests": [req(1)]}))
    result = cli("requests")
    assert result.code == 0, result.err
    assert len(result.out.splitlines()) == 2
    assert len(broker.seen) == 1


@pytest.mark.parametrize("token", [7, "", ["a"]])
def test_requests_with_a_malformed_next_token(cli: Callable[..., Result], broker: FakeBroker, token: Any) -> None:
    broker.route("GET", "/v1/requests", Reply(200, {"requests": [req(1)], "next_token": token}))
    result = cli("requests")
    assert result.code == 1
    assert result.err == ("rolebroker: unexpected answer from broker (HTTP 200, application/json with a "
                          "malformed 'next_token')\n")


def test_requests_stops_when_the_broker_repeats_a_token(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("GET", "/v1/requests", paged({None: ([req(1)], "again"), "again": ([req(2)], "again")}))
    result = cli("requests")
    assert result.code == 1
    assert result.err == ("rolebroker: unexpected answer from broker (HTTP 200, application/json: next_token "
                          "'again' came back twice)\n")
    assert len(broker.seen) == 2
