"""Issue 13 §5 and §6: everyday commands and the defects a newcomer hit, through ``main``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rolebroker import inquiry, jit

from tests.client.fakes import ALICE, ISSUER, FakeBroker, Reply, Result, Seen

REQUEST = {
    "id": "0123456789ab", "role": "prod-readonly", "requester": "bob@example.com", "duration_seconds": 5400,
    "reason": "INC-42 database down", "status": "approved", "created_at": "2030-01-01T00:00:00+00:00",
    "pending_until": "2030-01-02T00:00:00+00:00", "decided_by": "carol@example.com",
    "decided_at": "2030-01-01T00:05:00+00:00", "note": "go ahead", "grant_until": "2030-01-01T01:35:00+00:00",
}
HISTORY = [
    {"at": "2030-01-01T00:00:00+00:00", "who": "bob@example.com", "from": None, "to": "pending", "note": None},
    {"at": "2030-01-01T00:05:00+00:00", "who": "carol@example.com", "from": "pending", "to": "approved",
     "note": "go ahead"},
]


@pytest.fixture(autouse=True)
def utc_times(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local times as UTC text, whatever this machine's zone."""
    import time

    def utc(epoch: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))

    for module in (jit, inquiry):
        monkeypatch.setattr(module, "local_time", utc)
    import rolebroker.text

    monkeypatch.setattr(rolebroker.text, "local_time", utc)


# --------------------------------------------------------------------------
# §6.1: request without --duration


def test_request_without_duration_leaves_it_to_the_broker(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("POST", "/v1/requests", lambda seen: Reply(201, {**REQUEST, "status": "pending",
                                                                  "duration_seconds": 14400}))
    result = cli("request", "prod-readonly", "--reason", "INC-42")
    assert result.code == 0, result.err
    assert broker.seen[0].json() == {"role": "prod-readonly", "reason": "INC-42"}
    assert result.out == "request 0123456789ab for prod-readonly: pending\n"
    assert result.err == ("rolebroker: without --duration the broker asked for 4h, the longest grant the role "
                          "allows\n")


def test_request_with_a_duration_in_hours(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("POST", "/v1/requests", Reply(201, {**REQUEST, "status": "pending", "duration_seconds": 9000}))
    result = cli("request", "--role", "prod-readonly", "--reason", "INC-42", "--duration", "2h30m")
    assert (result.code, result.err) == (0, "")
    assert broker.seen[0].json() == {"role": "prod-readonly", "reason": "INC-42", "duration_seconds": 9000}


# --------------------------------------------------------------------------
# §6.3: a wrong URL path is named as such, and no token is echoed


def chalice_local_missing_route(seen: Seen) -> Reply:
    """What `chalice local` answers for a path with no route: it quotes the Authorization header."""
    echoed = seen.headers.get("authorization", "")
    body = '{"message": "Authorization header requires \'Credential\' parameter. Authorization=' + echoed + '"}'
    return Reply(403, body.encode(), "application/json", {"x-amzn-ErrorType": "UnauthorizedException"})


@pytest.mark.parametrize("argv", [["credential-process", "--role", "sandbox-admin"], ["roles"], ["whoami"]])
def test_a_wrong_url_path_is_not_called_access_denied(cli: Callable[..., Result], broker: FakeBroker,
                                                      env: dict[str, str], argv: list[str]) -> None:
    for method in ("GET", "POST"):
        for path in ("/v1/v1/credentials", "/v1/v1/roles", "/v1/v1/access"):
            broker.route(method, path, chalice_local_missing_route)
    url = broker.url + "/v1"
    result = cli(*argv, environ=env | {"ROLEBROKER_URL": url})
    assert result.code == 1
    assert result.err.splitlines()[-1] == (
        f"rolebroker: {url} does not answer like a rolebroker broker (HTTP 403 without the broker's error "
        f"document); check --url or ROLEBROKER_URL (leave off the trailing /v1: {broker.url}): it is the address "
        "whose /v1/health answers {\"status\": \"ok\"}")
    assert "eyJ" not in result.err and ALICE.split(".")[1][:12] not in result.err
    assert "access denied" not in result.err and "Credential" not in result.err


def test_api_gateways_missing_route_is_a_wrong_url_too(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("GET", "/v1/roles", Reply(403, {"message": "Missing Authentication Token"}))
    result = cli("roles")
    assert result.code == 1
    assert "does not answer like a rolebroker broker (HTTP 403" in result.err


def test_the_brokers_own_404_is_still_its_message(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("GET", "/v1/requests/0123456789ab",
                 Reply(404, {"Code": "NotFoundError", "Message": "no access request '0123456789ab'",
                             "RequestId": "r1"}))
    result = cli("show", "0123456789ab")
    assert result.err == "rolebroker: no access request '0123456789ab' (request id r1)\n"


# --------------------------------------------------------------------------
# §5: the broker's warnings on stderr, never on credential_process's stdout


def test_the_brokers_warnings_go_to_stderr_once(cli: Callable[..., Result], broker: FakeBroker) -> None:
    def shortened(request: Seen) -> Reply:
        reply = broker.credentials(request)
        assert isinstance(reply.body, dict)
        reply.body["warnings"] = ["role sandbox-admin allows at most 3600 seconds; asked for 7200",
                                  "\x1b[31mred\x1b[0m"]
        return reply

    broker.route("POST", "/v1/credentials", shortened)
    result = cli("credential-process", "--role", "sandbox-admin", "--duration", "2h")
    assert result.code == 0
    assert json.loads(result.out)["AccessKeyId"] == "FAKEKEY0000000000001"
    assert result.err.splitlines() == [
        "rolebroker: the broker says: role sandbox-admin allows at most 3600 seconds; asked for 7200",
        "rolebroker: the broker says: red",
    ]
    again = cli("credential-process", "--role", "sandbox-admin", "--duration", "2h")
    assert (again.out, again.err) == (result.out, "")  # a cache hit has nothing new to say


# --------------------------------------------------------------------------
# §5: exec ROLE -- CMD, and option errors in the user's words


def test_exec_takes_the_role_as_a_word(cli: Callable[..., Result], broker: FakeBroker) -> None:
    ran: list[list[str]] = []

    def execute(argv: list[str], env: dict[str, str]) -> int:
        ran.append(argv)
        return 0

    assert cli("exec", "sandbox-admin", "--", "aws", "s3", "ls", execute=execute).code == 0
    assert ran == [["aws", "s3", "ls"]]
    assert broker.seen[0].json() == {"role": "sandbox-admin"}


@pytest.mark.parametrize(("argv", "message"), [
    (["exec", "sandbox-admin", "aws", "s3", "ls"],
     "exec runs the command given after `--`: rolebroker exec sandbox-admin -- aws s3 ls"),
    (["exec", "--role", "sandbox-admin", "aws", "s3", "ls"],
     "exec runs the command given after `--`: rolebroker exec sandbox-admin -- aws s3 ls"),
    (["exec", "sandbox-admin"], "exec runs the command given after `--`: rolebroker exec sandbox-admin -- CMD ..."),
    (["exec", "--", "true"], "exec needs a role: rolebroker exec ROLE (`rolebroker roles` lists them)"),
    (["exec", "a-role", "--role", "b-role", "--", "true"],
     "exec got two roles, 'a-role' and --role 'b-role'; give one"),
    (["credential-process", "--role", "r", "--duration", "soon"],
     "argument --duration: cannot read duration 'soon': use e.g. 90m, 1h, 2h30m or 3600 (seconds) "
     "(see `rolebroker credential-process --help`)"),
    (["--timeout", "x", "roles"],
     "argument --timeout: 'x' is not a positive number of seconds, e.g. 20 (see `rolebroker --help`)"),
    (["roles", "--bogus"], "roles does not take --bogus (see `rolebroker roles --help`)"),
    (["roles", "--output", "yaml"], "argument --output: invalid choice: 'yaml' (choose from 'text', 'json') "
                                    "(see `rolebroker roles --help`)"),
    (["show"], "the following arguments are required: ID (see `rolebroker show --help`)"),
    (["request", "--reason", "x"], "request needs a role: rolebroker request ROLE [ROLE ...] --reason TEXT (several "
                                   "roles get one decision; `rolebroker roles` lists them)"),
    (["break-glass", "--reason", "x", "--ticket", "INC-1"],
     "break-glass needs a role: rolebroker break-glass ROLE (`rolebroker roles` lists them)"),
    (["extend", "0123456789ab", "--reason", "x", "--duration", "1x"],
     "argument --duration: cannot read duration '1x': use e.g. 90m, 1h, 2h30m or 3600 (seconds) "
     "(see `rolebroker extend --help`)"),
    (["completion"], "completion needs a shell: rolebroker completion bash|zsh|fish"),
])
def test_command_line_mistakes_are_told_in_the_users_words(cli: Callable[..., Result], broker: FakeBroker,
                                                          argv: list[str], message: str) -> None:
    result = cli(*argv)
    assert result.code == 2, result.err
    assert result.err == f"rolebroker: {message}\n"
    assert broker.seen == []


INTERNAL_NAMES = re.compile(r"invalid \w+ value|role_arg|request_id|cache_action|no_cache|token_file|"
                            r"list_roles|positive_number|\bseconds value")


@pytest.mark.parametrize("argv", [
    ["env", "--duration", "x"], ["exec", "--duration", "-1", "r", "--", "true"], ["--timeout", "0", "roles"],
    ["--timeout", "inf", "roles"], ["cache"], ["cache", "purge"], ["approve"], ["deny", "--reason"],
    ["what-can", "--groups"], ["who-can"], ["completion", "tcsh"], ["frob"], ["evidence", "a", "b"],
])
def test_no_error_shows_an_internal_name(cli: Callable[..., Result], argv: list[str]) -> None:
    result = cli(*argv)
    assert result.code == 2
    assert len(result.err_lines) == 1
    assert not INTERNAL_NAMES.search(result.err), result.err


# --------------------------------------------------------------------------
# §5: whoami


def access_answer(**extra: Any) -> dict[str, Any]:
    return {"identity": "alice@example.com", "groups": ["platform-admins"], "source": "token", "admin": False,
            "auditor": True, "roles": [{"role": "sandbox-admin"}, {"role": "prod-admin"}], **extra}


def test_whoami_says_who_where_until_when_and_what_is_cached(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("GET", "/v1/access", Reply(200, access_answer()))
    assert cli("credential-process", "--role", "sandbox-admin").code == 0
    now = 4102444800 - 7200  # two hours before ALICE's token expires
    result = cli("whoami", clock=lambda: now)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[:6] == [
        "identity  alice@example.com",
        "groups    platform-admins",
        "roles     2 you may use or request (`rolebroker roles`); you are an auditor",
        f"issuer    {ISSUER}",
        "token     ROLEBROKER_TOKEN, valid until 2100-01-01 00:00 UTC (in 2h)",
        f"broker    {broker.url}",
    ]
    assert re.fullmatch(r"cached    sandbox-admin until \d{4}-\d\d-\d\d \d\d:\d\d UTC \(expired\)", lines[6])
    assert broker.seen[-1].path == "/v1/access"


def test_whoami_as_json(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("GET", "/v1/access", Reply(200, access_answer()))
    cli("credential-process", "--role", "prod-admin", "--duration", "1h")
    doc = json.loads(cli("whoami", "--output", "json").out)
    assert doc["cached_credentials"][0]["role"] == "prod-admin"
    assert doc["cached_credentials"][0]["duration_seconds"] == 3600
    assert {k: v for k, v in doc.items() if k != "cached_credentials"} == {
        "broker_url": broker.url, "token_source": "ROLEBROKER_TOKEN", "issuer": ISSUER, "subject": "alice",
        "token_expires_at": "2100-01-01T00:00:00Z", "renews": False, "identity": "alice@example.com",
        "groups": ["platform-admins"], "admin": False, "auditor": True, "roles": 2,
    }


def test_whoami_names_the_scope_of_scoped_cached_credentials(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("GET", "/v1/access", Reply(200, access_answer()))
    assert cli("credential-process", "--role", "sandbox-admin", "--scope", "read-only").code == 0
    assert cli("credential-process", "--role", "sandbox-admin").code == 0
    cached = json.loads(cli("whoami", "--output", "json").out)["cached_credentials"]
    assert sorted(((e["role"], e["scope"]) for e in cached), key=str) == [("sandbox-admin", "read-only"),
                                                                           ("sandbox-admin", None)]
    lines = cli("whoami").out.splitlines()
    assert [line for line in lines if "--scope read-only" in line]
    assert len([line for line in lines if "sandbox-admin" in line]) == 2


def test_whoami_shows_only_this_identitys_and_brokers_cache(cli: Callable[..., Result], broker: FakeBroker,
                                                            env: dict[str, str]) -> None:
    from tests.client.fakes import BOB

    broker.route("GET", "/v1/access", Reply(200, access_answer()))
    cli("credential-process", "--role", "sandbox-admin", environ=env | {"ROLEBROKER_TOKEN": BOB})
    result = cli("whoami")
    assert "cached    no credentials" in result.out.splitlines()


def test_whoami_still_shows_what_it_knows_when_the_broker_refuses(cli: Callable[..., Result],
                                                                  broker: FakeBroker) -> None:
    broker.route("GET", "/v1/access", Reply(401, {"Code": "UnauthorizedError", "Message": "token expired",
                                                  "RequestId": "r1"}))
    result = cli("whoami")
    assert result.code == 1
    assert result.out.splitlines()[0] == f"issuer  {ISSUER}"
    assert result.err.startswith("rolebroker: the broker rejected your token: token expired")


# --------------------------------------------------------------------------
# §5: --output json, show, cancel, revoke


def test_roles_and_requests_as_json(cli: Callable[..., Result], broker: FakeBroker) -> None:
    roles = json.loads(cli("roles", "--output", "json").out)
    assert [r["name"] for r in roles["roles"]] == ["sandbox-admin", "prod-readonly", "prod-admin"]
    broker.route("GET", "/v1/requests", Reply(200, {"requests": [REQUEST], "next_token": None}))
    listed = json.loads(cli("requests", "--output", "json").out)
    assert listed == {"requests": [REQUEST], "complete": True}


def test_json_output_is_ascii_so_it_cannot_act_on_a_terminal(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("GET", "/v1/requests", Reply(200, {"requests": [{**REQUEST, "reason": "\x1b[2J\u202eevil\x9b"}]}))
    result = cli("requests", "--output", "json")
    assert result.out.isascii() and "\x1b" not in result.out
    assert json.loads(result.out)["requests"][0]["reason"] == "\x1b[2J\u202eevil\x9b"


def test_show_says_who_decided_when_and_the_note(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("GET", "/v1/requests/0123456789ab", Reply(200, {**REQUEST, "history": HISTORY}))
    result = cli("show", "0123456789ab")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "request 0123456789ab: approved",
        "  role         prod-readonly",
        "  requester    bob@example.com",
        "  reason       INC-42 database down",
        "  duration     1h30m",
        "  asked        2030-01-01 00:00 UTC",
        "  decided by   carol@example.com at 2030-01-01 00:05 UTC",
        "  note         go ahead",
        "  grant until  2030-01-01 01:35 UTC",
        "history:",
        "  AT                    WHO                CHANGE               NOTE",
        "  2030-01-01 00:00 UTC  bob@example.com    - -> pending",
        "  2030-01-01 00:05 UTC  carol@example.com  pending -> approved  \"go ahead\"",
    ]
    as_json = json.loads(cli("show", "0123456789ab", "--output", "json").out)
    assert as_json["history"] == HISTORY


@pytest.mark.parametrize(("argv", "path", "body"), [
    (["cancel", "0123456789ab"], "/v1/requests/0123456789ab/cancel", {}),
    (["revoke", "0123456789ab"], "/v1/requests/0123456789ab/revoke", {}),
    (["revoke", "0123456789ab", "--reason", "done early"], "/v1/requests/0123456789ab/revoke",
     {"reason": "done early"}),
])
def test_cancel_and_revoke(cli: Callable[..., Result], broker: FakeBroker, argv: list[str], path: str,
                           body: dict[str, str]) -> None:
    status = "cancelled" if argv[0] == "cancel" else "revoked"
    broker.route("POST", path, Reply(200, {**REQUEST, "status": status}))
    result = cli(*argv)
    assert result.code == 0, result.err
    assert (broker.seen[0].path, broker.seen[0].json()) == (path, body)
    assert result.out == f"request 0123456789ab (prod-readonly for bob@example.com): {status}\n"


# --------------------------------------------------------------------------
# §5: who-can, what-can, evidence


WHO_CAN = {
    "role": "prod-breakglass", "account": "production", "account_id": "333333333333",
    "role_arn": "arn:aws:iam::333333333333:role/BreakGlassRole", "console": True, "max_duration_seconds": 3600,
    "requires_mfa": False, "requires_approval": True,
    "approval": {"approvers": [{"groups": ["security"]}], "max_grant_seconds": 14400,
                 "pending_timeout_seconds": 86400},
    "rules": [{"groups": ["developers", "platform-admins"], "requires_mfa": False, "requires_approval": True},
              {"claims": {"email": ["erin@example.com"]}, "requires_mfa": False, "requires_approval": True}],
}


def test_who_can_asks_the_broker_about_a_role(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("GET", "/v1/access", Reply(200, WHO_CAN))
    result = cli("who-can", "prod-breakglass")
    assert result.code == 0, result.err
    assert broker.seen[0].path == "/v1/access?role=prod-breakglass"
    assert result.out.splitlines() == [
        "prod-breakglass: arn:aws:iam::333333333333:role/BreakGlassRole (account production 333333333333)",
        "  needs: an approved request",
        "  approvers: group security; grants up to 4h",
        "  rule 1: group developers or platform-admins",
        "  rule 2: claim email = erin@example.com",
    ]
    assert json.loads(cli("who-can", "prod-breakglass", "--output", "json").out) == WHO_CAN
    one_stage = {**WHO_CAN, "approval": {**WHO_CAN["approval"], "ticket": {"required": False, "pattern": "^CHG-\\d+$"},
                                          "stages": [{"name": "approval", "required": 1, "approvers": []}]}}
    broker.route("GET", "/v1/access", Reply(200, one_stage))
    assert cli("who-can", "prod-breakglass").out.splitlines()[2:4] == [
        "  approvers: group security; grants up to 4h", "  ticket: optional, matching ^CHG-\\d+$"]


def test_who_can_tells_stages_tickets_break_glass_scopes_and_watchers(cli: Callable[..., Result],
                                                                      broker: FakeBroker) -> None:
    """The broker's who-can answer of issue 12, read by issue 13's client command."""
    answer = {**WHO_CAN, "approval": {
        "approvers": [{"groups": ["leads"]}, {"groups": ["security"]}],
        "stages": [{"name": "team-lead", "required": 1, "approvers": [{"groups": ["leads"]}]},
                   {"name": "security", "required": 2, "approvers": [{"groups": ["security"]}]}],
        "ticket": {"required": True, "pattern": "^(INC|CHG)-[0-9]+$"}, "max_grant_seconds": 7200,
        "pending_timeout_seconds": 86400, "extend": {"max_total_seconds": 7200, "auto_approve_seconds": 0}},
        "break_glass": {"allow": [{"groups": ["oncall"]}], "max_duration_seconds": 3600,
                        "block_until_reviewed": True, "ticket_pattern": "^INC-[0-9]+$"},
        "scopes": {"readonly": {"description": "look, do not \x1b[2Jtouch", "policy": {}, "policy_arns": []}},
        "notify": {"channels": ["C0SRE"], "watchers": [{"groups": ["sre-leads"]}]}}
    broker.route("GET", "/v1/access", Reply(200, answer))
    result = cli("who-can", "prod-breakglass")
    assert result.code == 0, result.err
    assert result.out.splitlines()[2:9] == [
        "  stage 1 of 2 (team-lead): 1 approver with group leads",
        "  then stage 2 of 2 (security): 2 approvers with group security; grants up to 2h",
        "  ticket: required, matching ^(INC|CHG)-[0-9]+$",
        "  break-glass: group oncall (and a rule below), up to 1h, with a reason and a ticket matching ^INC-[0-9]+$",
        "  scope readonly: look, do not touch",
        "  told, cannot decide: channels C0SRE; watchers group sre-leads",
        "  rule 1: group developers or platform-admins",
    ]


def test_who_can_for_someone_who_may_not_ask(cli: Callable[..., Result], broker: FakeBroker) -> None:
    message = ("only admins (group security) and auditors (group audit) may ask who can use role prod-breakglass; "
               "GET /v1/access with no parameters answers what you can use")
    broker.route("GET", "/v1/access", Reply(403, {"Code": "ForbiddenError", "Message": message, "RequestId": "r1"}))
    result = cli("who-can", "prod-breakglass")
    assert (result.code, result.err) == (1, f"rolebroker: {message} (request id r1)\n")


def test_what_can_about_someone_else(cli: Callable[..., Result], broker: FakeBroker) -> None:
    answer = {"identity": "bob@example.com", "groups": ["developers"], "source": "query", "admin": False,
              "auditor": False, "roles": [
                  {"role": "sandbox-readonly", "account": "sandbox", "account_id": "222222222222",
                   "role_arn": "arn:aws:iam::222222222222:role/ReadOnlyRole", "access": "allowed",
                   "requires_mfa": False, "requires_approval": False, "rule": "group developers"},
                  {"role": "prod-breakglass", "account": "production", "account_id": "333333333333",
                   "role_arn": "arn:aws:iam::333333333333:role/BreakGlassRole", "access": "approval_required",
                   "requires_mfa": False, "requires_approval": True, "rule": "group developers"}]}
    broker.route("GET", "/v1/access", Reply(200, answer))
    result = cli("what-can", "bob@example.com", "--groups", "developers, ops")
    assert result.code == 0, result.err
    assert broker.seen[0].path == "/v1/access?identity=bob%40example.com&groups=developers%2Cops"
    assert result.out.splitlines() == [
        "bob@example.com with groups developers: 2 role(s)",
        "ROLE              ACCESS             ACCOUNT                  RULE",
        "sandbox-readonly  allowed            sandbox 222222222222     via group developers",
        "prod-breakglass   approval required  production 333333333333  via group developers",
    ]


def test_what_can_about_yourself_asks_with_no_parameters(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("GET", "/v1/access", Reply(200, access_answer(roles=[])))
    result = cli("what-can")
    assert broker.seen[0].path == "/v1/access"
    assert result.out == "alice@example.com: no role\n"


EVIDENCE = {
    "request": REQUEST, "history": HISTORY, "sessions_limit": 1000,
    "sessions": [{"role": "prod-readonly", "role_arn": "arn:aws:iam::333333333333:role/ReadOnly",
                  "account_id": "333333333333",
                  "assumed_role_arn": "arn:aws:sts::333333333333:assumed-role/ReadOnly/bob@example.com",
                  "access_key_id": "FAKEACCESSKEYID00001", "source_identity": "bob@example.com",
                  "issued_at": "2030-01-01T00:06:00+00:00", "expires_at": "2030-01-01T01:06:00+00:00",
                  "kind": "credentials"}],
    "queries": {
        "window": {"start": "2030-01-01T00:00:00+00:00", "end": "2030-01-01T01:40:00+00:00"},
        "access_key_ids": ["FAKEACCESSKEYID00001"],
        "cloudtrail_lake": {"event_data_store": "EDS", "by_access_key": "SELECT eventTime\nFROM EDS\n  WHERE 1 = 1",
                            "by_source_identity": None},
        "athena": {"table": "cloudtrail_logs", "by_access_key": "SELECT 2\x1b[2J", "by_session_name": None},
        "notes": ["set ROLEBROKER_CLOUDTRAIL_EVENT_DATA_STORE"], "warnings": [],
    },
}


def test_evidence_prints_the_sessions_and_ready_to_run_queries(cli: Callable[..., Result],
                                                               broker: FakeBroker) -> None:
    broker.route("GET", "/v1/requests/0123456789ab/evidence", Reply(200, EVIDENCE))
    result = cli("evidence", "0123456789ab")
    assert result.code == 0, result.err
    out = result.out
    assert "sessions: 1 (a grant issues at most 1000)" in out
    assert ("2030-01-01 00:06 UTC  2030-01-01 01:06 UTC  credentials  FAKEACCESSKEYID00001  "
            "arn:aws:sts::333333333333:assumed-role/ReadOnly/bob@example.com") in out
    assert ("-- CloudTrail Lake, by the sessions' access keys (exact)\nSELECT eventTime\nFROM EDS\n  WHERE 1 = 1;"
            in out)
    assert "-- Athena, by the sessions' access keys (exact)\nSELECT 2;" in out
    assert "-- note: set ROLEBROKER_CLOUDTRAIL_EVENT_DATA_STORE" in out
    assert "\x1b" not in out
    assert json.loads(cli("evidence", "0123456789ab", "--output", "json").out) == EVIDENCE


def test_evidence_of_a_request_never_approved(cli: Callable[..., Result], broker: FakeBroker) -> None:
    pending = {**REQUEST, "status": "pending", "decided_by": None, "decided_at": None, "note": None,
               "grant_until": None}
    broker.route("GET", "/v1/requests/0123456789ab/evidence",
                 Reply(200, {**EVIDENCE, "request": pending, "sessions": [], "queries": None}))
    result = cli("evidence", "0123456789ab")
    assert result.code == 0, result.err
    assert "  waits until  2030-01-02 00:00 UTC" in result.out
    assert result.out.endswith("sessions: none issued under this grant\n"
                               "no queries: the request was never approved\n")


def test_cache_file_names_are_what_the_client_readme_says(cli: Callable[..., Result], env: dict[str, str]) -> None:
    cli("credential-process", "--role", "sandbox-admin")
    names = sorted(p.name for p in (Path(env["XDG_CACHE_HOME"]) / "rolebroker").iterdir())
    readme = (Path(__file__).resolve().parents[2] / "client" / "README.md").read_text()
    assert "16 hexadecimal digits" in readme and "sha256" not in readme.lower()
    assert [n for n in names if n.endswith(".json")] and all(
        re.fullmatch(r"[0-9a-f]{16}\.(json|lock)", name) for name in names), names
