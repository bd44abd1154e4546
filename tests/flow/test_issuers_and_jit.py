"""Just-in-time access with more than one issuer: what a stranger's CI token
learns when it files requests, and who counts as the same person when
approving across issuers."""

from __future__ import annotations

import pytest

from devstack.issuer import DevIssuer
from tests.conftest import CI_AUDIENCE
from tests.flow.conftest import Jit

POLICY = """\
version: 1
issuers:
  ci:
    url: {ci}
    audiences: [{ci_audience}]
    identity_claim: sub
accounts:
  production: {{id: "333333333333", region: us-east-1}}
roles:
  breakglass:
    account: production
    role_name: BreakGlassRole
    allow: [{{groups: [developers]}}]
    approval: {{approvers: {{groups: [security]}}, max_grant_seconds: 7200}}
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
def jit_policy(ci_issuer: DevIssuer) -> str:
    return POLICY.format(ci=ci_issuer.url, ci_audience=CI_AUDIENCE)


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
