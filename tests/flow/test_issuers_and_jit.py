"""Just-in-time access with more than one issuer: what a stranger's CI token
learns when it files requests, and who counts as the same person when
approving across issuers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from chalicelib.exceptions import Conflict
from devstack.issuer import DevIssuer
from tests.conftest import CI_AUDIENCE
from tests.flow.conftest import PARTNER_AUDIENCE, Jit

POLICY = """\
version: 1
issuers:
  ci:
    url: {ci}
    audiences: [{ci_audience}]
    identity_claim: sub
  partner:                          # a second people IdP, e.g. after an acquisition
    url: {partner}
    audiences: [{partner_audience}]
    identity_claim: sub
    approval_identity_claim: email  # its verified email is the person's default-issuer identity
accounts:
  production: {{id: "333333333333", region: us-east-1}}
roles:
  breakglass:
    account: production
    role_name: BreakGlassRole
    allow: [{{groups: [developers]}}, {{issuer: partner, groups: [developers]}}]
    approval:
      approvers: [{{groups: [security]}}, {{issuer: partner, groups: [security]}}]
      max_grant_seconds: 7200
  ci-release:
    account: production
    role_name: ReleaseRole
    allow: [{{issuer: ci, claims: {{repository: acme/infra, ref: refs/heads/main}}}}]
    approval: {{approvers: {{groups: [security]}}, max_grant_seconds: 3600}}
slack:
  users: {{U0BOB: bob@example.com, U0CAROL: carol@example.com}}
  approvals_channel: C0APPROVALS
"""
REQUEST = {"duration_seconds": 3600, "reason": "INC-42 release"}


@pytest.fixture
def jit_policy(ci_issuer: DevIssuer, partner: DevIssuer) -> str:
    return POLICY.format(ci=ci_issuer.url, ci_audience=CI_AUDIENCE, partner=partner.url,
                         partner_audience=PARTNER_AUDIENCE)


def ci_token(ci_issuer: DevIssuer, repository: str, **claims: str) -> str:
    return ci_issuer.mint("", claims={"repository": repository, "ref": "refs/heads/main", **claims})


def test_a_stranger_filing_requests_learns_no_role_or_group_names(jit: Jit, ci_issuer: DevIssuer) -> None:
    # Review ATTACK9 F5, on the request route: a known people's role must look unknown.
    stranger = ci_token(ci_issuer, "stranger/fork")
    known = jit.call("POST", "/v1/requests", stranger, {"role": "breakglass", **REQUEST})
    unknown = jit.call("POST", "/v1/requests", stranger, {"role": "no-such-role", **REQUEST})
    assert known.status_code == unknown.status_code == 404
    assert known.json_body["Message"] == unknown.json_body["Message"].replace("no-such-role", "breakglass")
    ci_role = jit.call("POST", "/v1/requests", stranger, {"role": "ci-release", **REQUEST})
    assert ci_role.status_code == 403
    assert ci_role.json_body["Message"] == ("you may not request role ci-release: role ci-release requires issuer "
                                            "ci and a matching repository, ref claim")
    said = " ".join(r.json_body["Message"] for r in (known, unknown, ci_role))
    assert not [word for word in ("developers", "security", "acme/infra") if word in said]


def test_the_ci_job_itself_files_its_request(jit: Jit, ci_issuer: DevIssuer) -> None:
    filed = jit.call("POST", "/v1/requests", ci_token(ci_issuer, "acme/infra"), {"role": "ci-release", **REQUEST})
    assert filed.status_code == 201, filed.body
    assert filed.json_body["requester"] == "ci|repo:acme/infra:ref:refs/heads/main"


# --------------------------------------------------------------------------
# One person, two issuers (second review, suspicion: self-approval across
# issuers). Erin has an account at the default IdP (erin@example.com) and at
# the partner IdP (sub p-erin, the same verified email). Without the link her
# two principals are two people, and each could approve the other's request.


def erin_at(jit: Jit, partner: DevIssuer, where: str, groups: list[str]) -> str:
    if where == "default":
        return jit.issuer.mint("erin@example.com", groups=groups)
    return partner.mint("p-erin", groups=groups, claims={"email": "Erin@Example.com", "email_verified": True})


def file(jit: Jit, token: str) -> dict[str, Any]:
    filed = jit.call("POST", "/v1/requests", token, {"role": "breakglass", **REQUEST})
    assert filed.status_code == 201, filed.body
    body: dict[str, Any] = filed.json_body
    return body


@pytest.mark.parametrize(("files_at", "approves_at"), [("default", "partner"), ("partner", "default")])
def test_one_person_cannot_approve_her_own_request_from_another_issuer(
        jit: Jit, partner: DevIssuer, files_at: str, approves_at: str) -> None:
    request = file(jit, erin_at(jit, partner, files_at, ["developers"]))
    approver = erin_at(jit, partner, approves_at, ["security"])
    for verdict in ("approve", "deny"):
        answer = jit.call("POST", f"/v1/requests/{request['id']}/{verdict}", approver, {})
        assert answer.status_code == 403 and "your own request" in answer.json_body["Message"], answer.body
    assert jit.call("GET", f"/v1/requests/{request['id']}", approver).json_body["status"] == "pending"


@pytest.mark.parametrize("files_at", ["default", "partner"])
def test_the_database_refuses_the_same_person_of_another_issuer(jit: Jit, partner: DevIssuer,
                                                                files_at: str) -> None:
    request = file(jit, erin_at(jit, partner, files_at, ["developers"]))
    store = jit.services.access._store
    pending = store.get(request["id"])
    assert pending.requester_person == (None if files_at == "default" else "erin@example.com")
    other = "default" if files_at == "partner" else "partner|p-erin"
    now = jit.clock()
    with pytest.raises(Conflict):
        store.approve(pending, approver="erin@example.com" if other == "default" else other,
                      approver_person="erin@example.com", now=now, grant_until=now + timedelta(hours=1))
    with pytest.raises(Conflict):
        store.deny(pending, approver="partner|p-erin", approver_person="erin@example.com", now=now, note=None)
    assert store.get(request["id"]).status == "pending"
    store.approve(pending, approver="carol@example.com", approver_person="carol@example.com", now=now,
                  grant_until=now + timedelta(hours=1))  # another person: the database lets it through
    assert store.get(request["id"]).status == "approved"


def test_another_person_at_the_partner_may_approve(jit: Jit, partner: DevIssuer) -> None:
    request = file(jit, erin_at(jit, partner, "default", ["developers"]))
    carol = partner.mint("p-carol", groups=["security"], claims={"email": "carol@example.com", "email_verified": True})
    answer = jit.call("POST", f"/v1/requests/{request['id']}/approve", carol, {})
    assert answer.status_code == 200, answer.body
    assert answer.json_body["decided_by"] == "partner|p-carol"


@pytest.mark.parametrize(("claims", "why"), [
    ({}, "no 'email' claim, which every token of issuer partner must carry"),
    ({"email": "erin@example.com", "email_verified": False}, "no 'email' claim"),
])
def test_a_partner_token_that_names_no_person_is_refused(jit: Jit, partner: DevIssuer, claims: dict[str, Any],
                                                         why: str) -> None:
    answer = jit.call("GET", "/v1/roles", partner.mint("p-erin", groups=["security"], claims=claims))
    assert answer.status_code == 401 and why in answer.json_body["Message"], answer.body
