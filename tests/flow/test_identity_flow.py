"""One person, one identity: the review's self-approval reproduction and its
neighbours, through the app on a moto server and against the database
directly (its conditions must refuse what the code refuses)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.audit import AuditLog
from chalicelib.aws.store import AccessStore, IdentitySnapshot, create_table
from chalicelib.exceptions import Conflict
from devstack.issuer import DevIssuer
from tests.conftest import CI_AUDIENCE, Moto, broker_environ

POLICY = """\
version: 1
issuers:
  ci:
    url: {ci_url}
    audiences: [{ci_audience}]
    identity_claim: sub
accounts:
  production: {{id: "333333333333", region: us-east-1}}
roles:
  prod-breakglass:
    account: production
    role_name: BreakGlassRole
    allow:
      - groups: [developers]
      - issuer: ci
        claims: {{repository: acme/infra}}
    approval:
      approvers: {{groups: [security]}}
      max_grant_seconds: 7200
"""
ERIN_SUB = "00uERIN"


@dataclass
class Flow:
    client: Client
    issuer: DevIssuer
    ci: DevIssuer
    store: AccessStore
    services: Any

    def call(self, method: str, path: str, token: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if method == "GET":
            return self.client.http.get(path, headers=headers)
        return self.client.http.post(path, headers=headers, body=json.dumps(body) if body is not None else "")

    def erin(self, email: str | None = "erin@example.com", sub: str = ERIN_SUB, **claims: Any) -> str:
        extra: dict[str, Any] = {"email": email, "email_verified": True} if email else {}
        return self.issuer.mint(sub, groups=["developers", "security"], claims={**extra, **claims})

    def carol(self) -> str:
        return self.issuer.mint("carol@example.com", groups=["security"], claims={"sub": "00uCAROL"})

    def request(self, token: str) -> dict[str, Any]:
        response = self.call("POST", "/v1/requests", token,
                             {"role": "prod-breakglass", "duration_seconds": 3600, "reason": "INC-9 db down"})
        assert response.status_code == 201, response.body
        body: dict[str, Any] = response.json_body
        return body


@pytest.fixture
def flow(issuer: DevIssuer, ci_issuer: DevIssuer, moto_server: Moto, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Flow]:
    import app as app_module

    table = f"rolebroker-{uuid.uuid4().hex[:8]}"
    create_table(moto_server.client("dynamodb"), table)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(ci_url=ci_issuer.url, ci_audience=CI_AUDIENCE))
    environ = broker_environ(issuer, ROLEBROKER_POLICY=str(policy), ROLEBROKER_TABLE=table)
    services = app_module._build_services(environ, client_factory=moto_server.client,
                                          audit=AuditLog(emit=lambda line: None), inline_tasks=True)
    monkeypatch.setattr(app_module, "_services", services)
    with Client(app_module.app) as client:
        yield Flow(client, issuer, ci_issuer, AccessStore(moto_server.client("dynamodb"), table), services)


def test_a_second_token_without_email_cannot_approve_its_own_request(flow: Flow) -> None:
    request = flow.request(flow.erin())
    no_email = flow.erin(email=None)  # scope=openid: same person, only sub
    approve = flow.call("POST", f"/v1/requests/{request['id']}/approve", no_email, {})
    assert approve.status_code == 401, approve.body
    assert "'email'" in approve.json_body["Message"]
    assert flow.store.get(request["id"]).status == "pending"
    denied = flow.call("POST", "/v1/credentials", flow.erin(), {"role": "prod-breakglass"})
    assert denied.status_code == 403


@pytest.mark.parametrize("sub", [ERIN_SUB, "00uERIN-OTHER-ACCOUNT"])
def test_the_same_email_in_another_case_cannot_approve_its_own_request(flow: Flow, sub: str) -> None:
    request = flow.request(flow.erin())
    approve = flow.call("POST", f"/v1/requests/{request['id']}/approve", flow.erin("Erin@Example.com", sub), {})
    assert approve.status_code == 403, approve.body
    assert "your own request" in approve.json_body["Message"]
    assert flow.store.get(request["id"]).status == "pending"


def test_the_same_iss_and_sub_with_another_email_cannot_approve(flow: Flow) -> None:
    request = flow.request(flow.erin())
    renamed = flow.erin("erin.new@example.com")  # the IdP let her change her email; sub is the same
    approve = flow.call("POST", f"/v1/requests/{request['id']}/approve", renamed, {})
    assert approve.status_code == 403, approve.body
    assert flow.store.get(request["id"]).status == "pending"


def test_the_database_refuses_the_same_principal_or_the_same_iss_and_sub(flow: Flow) -> None:
    request = flow.request(flow.erin())
    pending = flow.store.get(request["id"])
    assert pending.requester == "erin@example.com"
    assert (pending.requester_iss, pending.requester_sub) == (flow.issuer.url, ERIN_SUB)
    now = datetime.now(timezone.utc)
    with pytest.raises(Conflict):
        flow.store.approve(pending, approver="erin@example.com", now=now, grant_until=now + timedelta(hours=1))
    with pytest.raises(Conflict):
        flow.store.approve(pending, approver="erin.new@example.com", approver_sub=(flow.issuer.url, ERIN_SUB),
                           now=now, grant_until=now + timedelta(hours=1))
    with pytest.raises(Conflict):
        flow.store.deny(pending, approver="erin.new@example.com", approver_sub=(flow.issuer.url, ERIN_SUB),
                        now=now, note=None)
    assert flow.store.get(request["id"]).status == "pending"
    # The same sub from another issuer is another person: the database lets it through.
    flow.store.approve(pending, approver="carol@example.com", approver_sub=("https://other.example", ERIN_SUB),
                       now=now, grant_until=now + timedelta(hours=1))
    assert flow.store.get(request["id"]).status == "approved"


def test_an_approved_grant_follows_the_principal_not_the_form(flow: Flow) -> None:
    request = flow.request(flow.erin())
    approved = flow.call("POST", f"/v1/requests/{request['id']}/approve", flow.carol(), {})
    assert approved.status_code == 200, approved.body
    assert approved.json_body["decided_by"] == "carol@example.com"
    roles = flow.call("GET", "/v1/roles", flow.erin("ERIN@example.com", "00uERIN-2")).json_body["roles"]
    assert roles[0]["access"].startswith("granted_until:")
    # A CI job whose identity happens to read like erin's email is another principal.
    ci = flow.ci.mint("erin@example.com", claims={"repository": "acme/infra"})
    ci_roles = flow.call("GET", "/v1/roles", ci).json_body["roles"]
    assert ci_roles[0]["access"] == "approval_required"
    assert flow.call("POST", "/v1/credentials", ci, {"role": "prod-breakglass"}).status_code == 403


def test_grants_and_requests_are_stored_under_the_principal(flow: Flow) -> None:
    ci = flow.ci.mint("", claims={"repository": "acme/infra", "ref": "refs/heads/main"})
    request = flow.request(ci)
    assert request["requester"] == "ci|repo:acme/infra:ref:refs/heads/main"
    listed = flow.call("GET", "/v1/requests", ci).json_body["requests"]
    assert [r["id"] for r in listed] == [request["id"]]
    assert flow.call("GET", "/v1/requests", flow.erin()).json_body["requests"] == [request]


def test_an_older_token_never_overwrites_a_newer_group_snapshot(flow: Flow) -> None:
    now = int(time.time())
    newer = flow.issuer.mint("dave@example.com", groups=["developers"], claims={"iat": now - 60, "sub": "00uDAVE"})
    older = flow.issuer.mint("dave@example.com", groups=["security"], claims={"iat": now - 3000, "sub": "00uDAVE"})
    assert flow.call("GET", "/v1/roles", newer).status_code == 200
    assert flow.call("GET", "/v1/roles", older).status_code == 200  # still valid, replayed after removal
    clock = datetime.now(timezone.utc)
    snapshot = flow.store.recall_identity("dave@example.com", clock)
    assert snapshot is not None and snapshot.groups == frozenset({"developers"})
    assert snapshot.claims["groups"] == ["developers"] and snapshot.claims["email"] == "dave@example.com"


def test_snapshots_move_forward_by_iat_in_the_database(flow: Flow) -> None:
    now = datetime.now(timezone.utc)
    ttl = timedelta(hours=12)
    assert flow.store.remember_identity("eve@example.com", frozenset({"developers"}), now, ttl, issued_at=2000)
    assert not flow.store.remember_identity("eve@example.com", frozenset({"security"}), now, ttl, issued_at=1000)
    assert flow.store.recall_identity("eve@example.com", now) == IdentitySnapshot(frozenset({"developers"}), {})
    assert flow.store.remember_identity("eve@example.com", frozenset(), now, ttl, issued_at=3000,
                                        claims={"email": "eve@example.com", "n": 1, "ok": True, "l": ["a"]})
    assert flow.store.recall_identity("eve@example.com", now) == IdentitySnapshot(
        frozenset(), {"email": "eve@example.com", "n": 1, "ok": True, "l": ["a"]})
