"""The JIT and Slack harness: the app with DynamoDB and STS on a moto server,
Slack's Web API, response_url and AWS sign-in on a local HTTP server
(pytest-httpserver) that records what we sent, and a clock the test moves."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from botocore.stub import Stubber
from chalice.test import Client
from pytest_httpserver import HTTPServer

from chalicelib.audit import AuditLog
from chalicelib.aws.store import create_table
from devstack.issuer import DevIssuer
from tests.conftest import Moto, broker_environ, fake_client

EVENTS = Path(__file__).resolve().parents[1] / "events"
_KEYS = itertools.count(1)  # each stubbed session its own access key id, as STS gives them
SIGNING_SECRET = "test-signing-secret-" + "x" * 12
TASK_KEY = "test-task-signing-key-" + "k" * 32
TEAM_ID = "T0001"  # the workspace of tests/events/*.json
POLICY = """\
version: 1
accounts:
  production: {id: "333333333333", region: us-east-1}
roles:
  breakglass:
    account: production
    role_name: BreakGlassRole
    console: true
    allow: [{groups: [developers]}]
    approval:
      approvers: {groups: [security]}
      max_grant_seconds: 7200
      pending_timeout_seconds: 3600
  dba:
    account: production
    role_name: DbaRole
    require_mfa: true
    allow: [{groups: [developers]}]
    approval: {approvers: {groups: [security]}, max_grant_seconds: 3600}
  readonly:
    account: production
    role_name: ReadOnly
    console: true
    allow: [{groups: [developers]}]
slack:
  users: {U0BOB: bob@example.com, U0CAROL: carol@example.com}
  approvals_channel: C0APPROVALS
"""


@dataclass
class FakeClock:
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Jit:
    client: Client
    issuer: DevIssuer
    slack: HTTPServer
    clock: FakeClock
    services: Any
    audit_lines: list[str]
    users_info: dict[str, dict[str, Any]]
    stubber: Stubber | None = None  # STS, when the test module asks for exact AssumeRole parameters

    def call(self, method: str, path: str, token: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if method == "GET":
            return self.client.http.get(path, headers=headers)
        return self.client.http.post(path, headers=headers, body=json.dumps(body) if body is not None else "")

    def bob(self) -> str:
        return self.issuer.mint("bob@example.com", groups=["developers"])

    def carol(self, mfa: bool = False) -> str:
        return self.issuer.mint("carol@example.com", groups=["security"], mfa=mfa)

    def request(self, role: str = "breakglass", seconds: int = 3600) -> dict[str, Any]:
        response = self.call("POST", "/v1/requests", self.bob(),
                             {"role": role, "duration_seconds": seconds, "reason": "INC-42 database down"})
        assert response.status_code == 201, response.body
        body: dict[str, Any] = response.json_body
        return body

    def signed_post(self, path: str, form: dict[str, str], secret: str = SIGNING_SECRET,
                    timestamp: int | None = None) -> Any:
        body = urlencode(form).encode()
        ts = str(timestamp if timestamp is not None else int(time.time()))
        signature = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
                   "X-Slack-Signature": signature}
        return self.client.http.post(path, headers=headers, body=body)

    def command(self, user: str, text: str) -> Any:
        form = json.loads((EVENTS / "slack_command_roles.json").read_text())
        form.update(user_id=user, text=text, response_url=self.slack.url_for("/hooks/commands/1"))
        return self.signed_post("/slack/commands", form)

    def click(self, user: str, action: str, request_id: str) -> Any:
        payload = json.loads((EVENTS / "slack_interaction_approve.json").read_text().replace("REQUEST_ID", request_id))
        payload["user"]["id"] = user
        payload["actions"][0]["action_id"] = action
        payload["response_url"] = self.slack.url_for("/hooks/actions/1")
        return self.signed_post("/slack/interactions", {"payload": json.dumps(payload)})

    def expect_assume(self, role_arn: str, tags: list[dict[str, str]], **session_policy: Any) -> None:
        """Queue STS's answer for bob's next session and the exact AssumeRole parameters it must get
        (``Policy``/``PolicyArns`` as keywords); needs ``jit_stub_sts``. Each answer has its own key id."""
        assert self.stubber is not None, "override the jit_stub_sts fixture to return True"
        account, role = role_arn.split(":")[4], role_arn.rsplit("/", 1)[1]
        answer = {"Credentials": {"AccessKeyId": f"FAKEACCESSKEYID{next(_KEYS):05d}",
                                  "SecretAccessKey": "fake/Secret/Access/Key/For/Tests/Only/00",
                                  "SessionToken": "fake-session-token-for-rolebroker-tests" + "x" * 40,
                                  "Expiration": self.clock() + timedelta(hours=1)},
                  "AssumedRoleUser": {"AssumedRoleId": "AROAEXAMPLE:bob@example.com",
                                      "Arn": f"arn:aws:sts::{account}:assumed-role/{role}/bob@example.com"},
                  "SourceIdentity": "bob@example.com"}
        self.stubber.add_response("assume_role", answer, {
            "RoleArn": role_arn, "RoleSessionName": "bob@example.com", "SourceIdentity": "bob@example.com",
            "DurationSeconds": 3600, "Tags": tags, **session_policy})

    def bob_tags(self, *groups: str) -> list[dict[str, str]]:
        """The identity tags on bob's sessions (a grant's tags follow them)."""
        return [{"Key": "rolebroker:identity", "Value": "bob@example.com"},
                {"Key": "rolebroker:issuer", "Value": self.issuer.url},
                {"Key": "rolebroker:groups", "Value": ":".join(sorted(groups))}]

    def sent(self, path: str) -> list[dict[str, Any]]:
        found = []
        for request, _ in self.slack.log:
            if request.path == path:
                found.append(request.get_json(silent=True) or dict(request.form) or dict(request.args))
        return found

    def everything_sent(self) -> str:
        return "\n".join(request.get_data(as_text=True) + request.query_string.decode()
                         for request, _ in self.slack.log if not request.path.startswith("/federation"))


PARTNER_AUDIENCE = "rolebroker-partner"


@pytest.fixture(scope="module")
def partner() -> Iterator[DevIssuer]:
    """A second people IdP (``issuers.partner`` in a module's policy), e.g. after an acquisition."""
    dev = DevIssuer(audience=PARTNER_AUDIENCE).start()
    yield dev
    dev.stop()


@pytest.fixture
def jit_policy() -> str:
    """The access policy the ``jit`` app runs with; a test module may override it."""
    return POLICY


@pytest.fixture
def jit_stub_sts() -> bool:
    """Whether the ``jit`` app's STS is a Stubber'd client (a test module may override it) or moto's."""
    return False


@pytest.fixture
def jit(issuer: DevIssuer, moto_server: Moto, httpserver: HTTPServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, jit_policy: str, jit_stub_sts: bool) -> Iterator[Jit]:
    import app as app_module

    table = f"rolebroker-{uuid.uuid4().hex[:8]}"
    create_table(moto_server.client("dynamodb"), table)
    policy = tmp_path / "policy.yaml"
    policy.write_text(jit_policy)
    users_info: dict[str, dict[str, Any]] = {
        user: {"id": user, "team_id": TEAM_ID, "profile": {"email": email}}
        for user, email in (("U0ALICE", "alice@example.com"), ("U0DAVE", "dave@example.com"))}
    posts = itertools.count(100)

    def answer_post(request: Any) -> Any:
        # Like Slack: the channel posted to, and a new ts for each message (the first is ...000100).
        from werkzeug import Response

        channel = request.form.get("channel") or (request.get_json(silent=True) or {}).get("channel")
        return Response(json.dumps({"ok": True, "channel": channel, "ts": f"1700000000.{next(posts):06d}"}),
                        content_type="application/json")

    httpserver.expect_request("/api/chat.postMessage").respond_with_handler(answer_post)
    httpserver.expect_request("/api/chat.update").respond_with_json({"ok": True})

    def answer_users_info(request: Any) -> Any:
        from werkzeug import Response

        user_id = request.form.get("user") or request.args.get("user")
        user = users_info.get(user_id, {"id": user_id, "team_id": TEAM_ID, "profile": {}})
        return Response(json.dumps({"ok": True, "user": user}), content_type="application/json")

    httpserver.expect_request("/api/users.info").respond_with_handler(answer_users_info)
    httpserver.expect_request("/hooks/commands/1").respond_with_data("ok")
    httpserver.expect_request("/hooks/actions/1").respond_with_data("ok")
    httpserver.expect_request("/federation").respond_with_json({"SigninToken": "signin-token-xyz"})
    clock = FakeClock()
    lines: list[str] = []
    environ = broker_environ(
        issuer, ROLEBROKER_POLICY=str(policy), ROLEBROKER_TABLE=table,
        ROLEBROKER_SLACK_SIGNING_SECRET=SIGNING_SECRET, ROLEBROKER_SLACK_BOT_TOKEN="fake-bot-token-for-tests",
        ROLEBROKER_SLACK_TEAM_ID=TEAM_ID, ROLEBROKER_TASK_SIGNING_KEY=TASK_KEY,
        ROLEBROKER_SLACK_API_URL=httpserver.url_for("/api/"),
        ROLEBROKER_SLACK_RESPONSE_URL_PREFIX=httpserver.url_for("/hooks/"),
        ROLEBROKER_FEDERATION_URL=httpserver.url_for("/federation"))
    sts = fake_client("sts") if jit_stub_sts else None

    def clients(name: str) -> Any:
        return sts if sts is not None and name == "sts" else moto_server.client(name)

    services = app_module._build_services(environ, client_factory=clients,
                                          audit=AuditLog(emit=lines.append), inline_tasks=True, clock=clock,
                                          client_with=moto_server.client_with)
    monkeypatch.setattr(app_module, "_services", services)
    with Client(app_module.app) as client:
        if sts is None:
            yield Jit(client, issuer, httpserver, clock, services, lines, users_info)
            return
        with Stubber(sts) as stubber:
            yield Jit(client, issuer, httpserver, clock, services, lines, users_info, stubber)
            stubber.assert_no_pending_responses()
