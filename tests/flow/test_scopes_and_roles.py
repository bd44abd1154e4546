"""Scoped sessions (exact Policy / PolicyArns at STS, checked with a Stubber)
and requests for several roles with one decision (a grant per role, all or
none unless an approver narrows it explicitly)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.aws.store import AccessStore
from tests.flow.conftest import Jit

POLICY = """\
version: 1
accounts:
  production: {id: "333333333333", region: us-east-1}
  app-a: {id: "444444444444", region: us-east-1}
  app-b: {id: "555555555555", region: us-east-1}
  app-c: {id: "666666666666", region: us-east-1}
roles:
  s3-admin:
    account: production
    role_name: S3Admin
    allow: [{groups: [developers]}]
    scopes:
      readonly:
        description: look, do not touch
        policy:
          Version: "2012-10-17"
          Statement: [{Effect: Allow, Action: ["s3:Get*", "s3:List*"], Resource: "*"}]
      managed:
        policy_arns: [arn:aws:iam::aws:policy/ReadOnlyAccess, arn:aws:iam::333333333333:policy/Team]
  prod-admin:
    account: production
    role_name: AdminRole
    console: true
    allow: [{groups: [developers]}]
    approval: {approvers: {groups: [security]}}
    scopes:
      readonly:
        policy: '{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ec2:Describe*",
          "Resource": "*"}}'
      logs: {policy_arns: [arn:aws:iam::aws:policy/CloudWatchLogsReadOnlyAccess]}
  deploy-a:
    account: app-a
    role_name: Deploy
    allow: &developers [{groups: [developers]}]
    approval: &deploy {approvers: {groups: [security]}, max_grant_seconds: 7200}
  deploy-b: {account: app-b, role_name: Deploy, allow: *developers, approval: *deploy}
  deploy-c: {account: app-c, role_name: Deploy, allow: *developers, approval: *deploy}
  other:
    account: app-a
    role_name: Other
    allow: [{groups: [developers]}]
    approval: {approvers: {groups: [platform]}}
slack:
  users: {U0BOB: bob@example.com, U0CAROL: carol@example.com}
  approvals_channel: C0APPROVALS
"""
READONLY = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:Get*","s3:List*"],"Resource":"*"}]}'
EC2_READONLY = '{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"}}'
DEPLOY = ("deploy-a", "deploy-b", "deploy-c")


@pytest.fixture
def jit_policy() -> str:
    return POLICY


@pytest.fixture
def jit_stub_sts() -> bool:
    return True


def bob(jit: Jit) -> str:
    return jit.issuer.mint("bob@example.com", groups=["developers"])


def carol(jit: Jit) -> str:
    return jit.issuer.mint("carol@example.com", groups=["security"])


def expect_assume(jit: Jit, role_arn: str, grant: str | None = None, **session_policy: Any) -> None:
    tags = jit.bob_tags("developers") + ([{"Key": "rolebroker:grant", "Value": grant}] if grant else [])
    jit.expect_assume(role_arn, tags, **session_policy)


def credentials(jit: Jit, role: str, **body: Any) -> Any:
    return jit.call("POST", "/v1/credentials", bob(jit), {"role": role, **body})


# --------------------------------------------------------------------------
# Scopes


def test_a_scope_reaches_sts_as_exactly_the_session_policy_it_names(jit: Jit) -> None:
    arn = "arn:aws:iam::333333333333:role/S3Admin"
    expect_assume(jit, arn, Policy=READONLY)
    scoped = credentials(jit, "s3-admin", scope="readonly")
    assert scoped.status_code == 200, scoped.body
    assert scoped.json_body["scope"] == "readonly"
    expect_assume(jit, arn, PolicyArns=[{"arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"},
                                        {"arn": "arn:aws:iam::333333333333:policy/Team"}])
    assert credentials(jit, "s3-admin", scope="managed").status_code == 200
    expect_assume(jit, arn)  # no scope: neither Policy nor PolicyArns
    whole = credentials(jit, "s3-admin")
    assert whole.status_code == 200 and whole.json_body["scope"] is None
    lines = [a for a in map(json.loads, jit.audit_lines) if a["action"] == "credentials"]
    assert [line.get("scope") for line in lines] == ["readonly", "managed", None]


def test_a_scope_the_role_does_not_list_is_a_400_and_reaches_no_sts(jit: Jit) -> None:
    response = credentials(jit, "s3-admin", scope="writer")
    assert response.status_code == 400
    assert response.json_body["Message"] == "role s3-admin has no scope 'writer' (its scopes: readonly, managed)"
    assert credentials(jit, "s3-admin", scope="Read Only").status_code == 400


def test_a_session_policy_sts_finds_too_large_is_a_clear_400(jit: Jit) -> None:
    assert jit.stubber is not None
    jit.stubber.add_client_error("assume_role", service_error_code="PackedPolicyTooLarge", http_status_code=400,
                                 service_message="Packed size of session policies and tags exceeds limit: 112%")
    response = credentials(jit, "s3-admin", scope="readonly")
    assert response.status_code == 400
    assert response.json_body["Message"].startswith(
        "scope readonly and your session tags are too large together for STS (PackedPolicyTooLarge)")


def test_a_grant_for_a_scope_never_gives_the_whole_role(jit: Jit) -> None:
    filed = jit.call("POST", "/v1/requests", bob(jit), {"role": "prod-admin", "duration_seconds": 3600,
                                                         "reason": "look at instances", "scope": "readonly"})
    assert filed.status_code == 201 and filed.json_body["scope"] == "readonly"
    request_id = filed.json_body["id"]
    assert jit.call("POST", f"/v1/requests/{request_id}/approve", carol(jit), {}).status_code == 200
    arn = "arn:aws:iam::333333333333:role/AdminRole"
    expect_assume(jit, arn, Policy=EC2_READONLY, grant=request_id)  # named or not, the grant's scope applies
    assert credentials(jit, "prod-admin").json_body["scope"] == "readonly"
    expect_assume(jit, arn, Policy=EC2_READONLY, grant=request_id)
    assert credentials(jit, "prod-admin", scope="readonly").status_code == 200
    other = credentials(jit, "prod-admin", scope="logs")
    assert other.status_code == 403
    assert other.json_body["Message"] == (f"your grant for role prod-admin ({request_id}) is for scope readonly "
                                          "only; ask with that scope or none")


def test_a_console_link_under_a_grant_for_a_scope_is_for_that_scope_only(jit: Jit) -> None:
    """Issue 13 §3's deep links and issue 12's scopes together: the console session is the scoped one."""
    from urllib.parse import parse_qs, urlsplit

    filed = jit.call("POST", "/v1/requests", bob(jit), {"role": "prod-admin", "reason": "look at instances",
                                                         "scope": "readonly"})
    assert filed.status_code == 201, filed.body
    request_id = filed.json_body["id"]
    assert jit.call("POST", f"/v1/requests/{request_id}/approve", carol(jit), {}).status_code == 200
    expect_assume(jit, "arn:aws:iam::333333333333:role/AdminRole", Policy=EC2_READONLY, grant=request_id)
    link = jit.call("POST", "/v1/console", bob(jit), {"role": "prod-admin", "service": "ec2"})
    assert link.status_code == 200, link.body
    destination = parse_qs(urlsplit(link.json_body["url"]).query)["Destination"]
    assert destination == ["https://us-east-1.console.aws.amazon.com/ec2/home?region=us-east-1"]
    assert jit.stubber is not None
    jit.stubber.assert_no_pending_responses()
    [line] = [a for a in map(json.loads, jit.audit_lines) if a["action"] == "console"]
    assert (line["outcome"], line["scope"], line["grant"]) == ("allowed", "readonly", request_id)


def test_a_request_for_a_scope_the_role_does_not_list_is_a_400(jit: Jit) -> None:
    response = jit.call("POST", "/v1/requests", bob(jit), {"role": "prod-admin", "duration_seconds": 3600,
                                                           "reason": "x1", "scope": "everything"})
    assert response.status_code == 400
    assert response.json_body["Message"] == "role prod-admin has no scope 'everything' (its scopes: readonly, logs)"


# --------------------------------------------------------------------------
# Several roles, one decision


def file_many(jit: Jit, roles: list[str] | tuple[str, ...] = DEPLOY) -> dict[str, Any]:
    response = jit.call("POST", "/v1/requests", bob(jit), {"roles": list(roles), "duration_seconds": 3600,
                                                           "reason": "CHG-9 release in three accounts"})
    assert response.status_code == 201, response.body
    body: dict[str, Any] = response.json_body
    return body


def store(jit: Jit) -> AccessStore:
    found: AccessStore = jit.services.access._store
    return found


def test_a_request_for_several_roles_without_a_duration_asks_for_their_longest_grant(jit: Jit) -> None:
    """Issue 13 §6.1's default (duration_seconds optional) for a request of several roles."""
    response = jit.call("POST", "/v1/requests", bob(jit), {"roles": list(DEPLOY), "reason": "CHG-9 release"})
    assert response.status_code == 201, response.body
    assert response.json_body["duration_seconds"] == 7200  # the shared approval block's max_grant_seconds
    assert response.json_body["roles"] == list(DEPLOY)


def test_one_request_one_approval_a_grant_for_every_role(jit: Jit) -> None:
    request = file_many(jit)
    assert (request["role"], request["roles"]) == ("deploy-a", list(DEPLOY))
    message = jit.sent("/api/chat.postMessage")[-1]
    assert "asks for 3 roles, one decision for all: *deploy-a, deploy-b, deploy-c*" in json.dumps(message["blocks"])
    assert set(store(jit).active_grants("bob@example.com", jit.clock())) == set()
    approved = jit.call("POST", f"/v1/requests/{request['id']}/approve", carol(jit), {})
    assert approved.status_code == 200 and approved.json_body["status"] == "approved"
    assert set(store(jit).active_grants("bob@example.com", jit.clock())) == set(DEPLOY)
    revoked = jit.call("POST", f"/v1/requests/{request['id']}/revoke", carol(jit), {"reason": "done"})
    assert revoked.status_code == 200
    assert store(jit).active_grants("bob@example.com", jit.clock()) == {}


def test_an_approver_narrows_only_by_naming_the_roles(jit: Jit) -> None:
    request = file_many(jit)
    narrowed = jit.call("POST", f"/v1/requests/{request['id']}/approve", carol(jit),
                        {"roles": ["deploy-c", "deploy-a"]})
    assert narrowed.status_code == 200, narrowed.body
    body = narrowed.json_body
    assert (body["roles"], body["narrowed_from"], body["role"]) == (["deploy-a", "deploy-c"], list(DEPLOY),
                                                                   "deploy-a")
    assert set(store(jit).active_grants("bob@example.com", jit.clock())) == {"deploy-a", "deploy-c"}
    history = jit.call("GET", f"/v1/requests/{request['id']}", bob(jit)).json_body["history"]
    assert history[-1]["note"] == "narrowed to deploy-a, deploy-c (asked: deploy-a, deploy-b, deploy-c)"
    assert "narrowed to deploy-a, deploy-c" in json.dumps(jit.sent("/api/chat.update")[-1]["blocks"])


@pytest.mark.parametrize(("roles", "fragment"), [
    (["deploy-a", "other"], "'roles' narrows a request to some of its own roles"),
    ([], "'roles' must be a list of 1 to 50 role names"),
    (["deploy-a", "deploy-a"], "'roles' names a role twice"),
])
def test_narrowing_to_anything_but_a_subset_is_a_400(jit: Jit, roles: list[str], fragment: str) -> None:
    request = file_many(jit)
    response = jit.call("POST", f"/v1/requests/{request['id']}/approve", carol(jit), {"roles": roles})
    assert response.status_code == 400 and fragment in response.json_body["Message"]
    assert store(jit).get(request["id"]).status == "pending"


@pytest.mark.parametrize(("body", "status", "fragment"), [
    ({"roles": ["deploy-a", "other"]}, 400, "roles deploy-a and other have different approval blocks"),
    ({"roles": ["deploy-a", "s3-admin"]}, 400, "role s3-admin needs no approval"),
    ({"roles": ["deploy-a", "nope"]}, 404, "unknown role 'nope'"),
    ({"roles": [f"r{i}" for i in range(51)]}, 400, "'roles' must be a list of 1 to 50 role names"),
    ({"roles": ["deploy-a"], "role": "deploy-b"}, 400, "give exactly one of 'role' (one role) or 'roles'"),
    ({}, 400, "give exactly one of 'role' (one role) or 'roles'"),
])
def test_requests_for_several_roles_that_cannot_share_a_decision_are_refused(
        jit: Jit, body: dict[str, Any], status: int, fragment: str) -> None:
    response = jit.call("POST", "/v1/requests", bob(jit), {"duration_seconds": 3600, "reason": "x1", **body})
    assert response.status_code == status and fragment in response.json_body["Message"], response.body
    assert store(jit).open_requests("bob@example.com", jit.clock()) == {}


def test_an_approver_of_only_some_of_the_roles_cannot_decide(jit: Jit) -> None:
    mixed = POLICY  # deploy-* are approved by security; nobody in platform approves them
    assert "platform" in mixed
    request = file_many(jit)
    pat = jit.issuer.mint("pat@example.com", groups=["platform"])
    assert jit.call("POST", f"/v1/requests/{request['id']}/approve", pat, {}).status_code == 404


def test_several_roles_from_slack(jit: Jit) -> None:
    jit.call("GET", "/v1/roles", bob(jit))
    jit.command("U0BOB", "request deploy-a,deploy-b 1h ticket=CHG-1 release train")
    reply = jit.sent("/hooks/commands/1")[-1]["text"]
    assert reply.startswith("Request `") and "*deploy-a, deploy-b*" in reply
    request_id = reply.split("`")[1]
    filed = store(jit).get(request_id)
    assert (filed.roles, filed.ticket, filed.reason) == (("deploy-a", "deploy-b"), "CHG-1", "release train")
