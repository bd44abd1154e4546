"""The person a linked issuer's token names (``approval_identity_claim``) is
canonicalised as the default issuer's identity claim, whatever the partner
calls its claim (review 12, F1): otherwise one person's two accounts are two
people for self-approval, self-review of break-glass and the break-glass lock.

Erin has an account at the default IdP (erin@example.com) and one at a
partner IdP linked to her by ``approval_identity_claim: upn``; the partner,
like Entra ID, sends her UPN in the case her directory keeps it
(``Erin@Example.com``).
"""

from __future__ import annotations

import pytest

from chalicelib.aws.store import AccessStore
from devstack.issuer import DevIssuer
from tests.flow.conftest import PARTNER_AUDIENCE, Jit

POLICY = """\
version: 1
issuers:
  partner:
    url: {partner}
    audiences: [{partner_audience}]
    identity_claim: sub
    approval_identity_claim: upn
accounts:
  production: {{id: "333333333333", region: us-east-1}}
roles:
  db:
    account: production
    role_name: DbRole
    allow: [{{groups: [developers]}}, {{issuer: partner, groups: [developers]}}]
    approval:
      approvers: [{{groups: [security]}}, {{issuer: partner, groups: [security]}}]
      max_grant_seconds: 7200
    break_glass: {{allow: [{{groups: [oncall]}}, {{issuer: partner, groups: [oncall]}}]}}
slack:
  approvals_channel: C0APPROVALS
"""
REASON = "INC-42 payments down"


@pytest.fixture
def jit_policy(partner: DevIssuer) -> str:
    return POLICY.format(partner=partner.url, partner_audience=PARTNER_AUDIENCE)


def erin(jit: Jit, *groups: str) -> str:
    return jit.issuer.mint("erin@example.com", groups=list(groups))


def erin_at_partner(partner: DevIssuer, upn: str, *groups: str, sub: str = "p-erin") -> str:
    """Erin's partner token: her own sub there, and her UPN as the partner's directory spells it."""
    return partner.mint(sub, groups=list(groups), claims={"upn": upn})


def store(jit: Jit) -> AccessStore:
    found: AccessStore = jit.services.access._store
    return found


def test_the_requesters_partner_account_cannot_approve_with_her_upn_in_another_case(
        jit: Jit, partner: DevIssuer) -> None:
    filed = jit.call("POST", "/v1/requests", erin(jit, "developers"),
                     {"role": "db", "duration_seconds": 3600, "reason": REASON})
    assert filed.status_code == 201, filed.body
    request_id = filed.json_body["id"]
    # The defence holds when the partner sends the address in the default issuer's canonical form ...
    same_case = jit.call("POST", f"/v1/requests/{request_id}/approve",
                         erin_at_partner(partner, "erin@example.com", "security"), {})
    assert same_case.status_code == 403, same_case.body
    # ... and must hold for the same mailbox in the case her directory keeps it.
    other_case = jit.call("POST", f"/v1/requests/{request_id}/approve",
                          erin_at_partner(partner, "Erin@Example.com", "security", sub="p-erin-2"), {})
    assert other_case.status_code == 403, other_case.body
    assert jit.call("GET", f"/v1/requests/{request_id}", erin(jit, "developers")).json_body["status"] == "pending"
    assert "db" not in store(jit).active_grants("erin@example.com", jit.clock())


def test_the_break_glass_lock_holds_for_the_partner_account_with_her_upn_in_another_case(
        jit: Jit, partner: DevIssuer) -> None:
    first = jit.call("POST", "/v1/break-glass", erin(jit, "developers", "oncall"),
                     {"role": "db", "reason": REASON, "ticket": "INC-42"})
    assert first.status_code == 201, first.body
    again = jit.call("POST", "/v1/break-glass", erin_at_partner(partner, "ERIN@example.com", "developers", "oncall"),
                     {"role": "db", "reason": REASON, "ticket": "INC-42"})
    assert again.status_code == 409, again.body
    assert first.json_body["id"] in again.json_body["Message"]


def test_the_partner_account_cannot_review_its_persons_break_glass_with_her_upn_in_another_case(
        jit: Jit, partner: DevIssuer) -> None:
    opened = jit.call("POST", "/v1/break-glass", erin(jit, "developers", "oncall"),
                      {"role": "db", "reason": REASON, "ticket": "INC-42"})
    assert opened.status_code == 201, opened.body
    request_id = opened.json_body["id"]
    review = jit.call("POST", f"/v1/requests/{request_id}/review",
                      erin_at_partner(partner, "Erin@EXAMPLE.com", "security"), {})
    assert review.status_code == 403, review.body
    assert store(jit).get(request_id).review is not None
    assert store(jit).get(request_id).review.status == "pending"  # type: ignore[union-attr]
