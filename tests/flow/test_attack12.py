"""Outside review of issue 12 (approvals), attack 12: what it confirmed, as tests
that fail on today's code. Each is a strict xfail whose reason starts with
"ATTACK12 Fn:", so the suite stays green and the fix flips it (then drop the
mark).

Erin has an account at the default IdP (erin@example.com) and one at a
partner IdP linked to her by ``approval_identity_claim: upn``; the partner,
like Entra ID, sends her UPN in the case her directory keeps it
(``Erin@Example.com``).
"""

from __future__ import annotations

from typing import Any

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
    allow: &people [{{groups: [developers]}}, {{issuer: partner, groups: [developers]}}]
    approval: &approval
      approvers: [{{groups: [security]}}, {{issuer: partner, groups: [security]}}]
      max_grant_seconds: 7200
      extend: {{max_total_seconds: 10800}}
    break_glass: {{allow: [{{groups: [oncall]}}, {{issuer: partner, groups: [oncall]}}]}}
  app:
    account: production
    role_name: AppRole
    allow: *people
    approval: *approval
    break_glass: {{allow: [{{groups: [oncall]}}], block_until_reviewed: false}}
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


def bob(jit: Jit) -> str:
    return jit.issuer.mint("bob@example.com", groups=["developers", "oncall"])


def carol(jit: Jit) -> str:
    return jit.issuer.mint("carol@example.com", groups=["security"])


def store(jit: Jit) -> AccessStore:
    found: AccessStore = jit.services.access._store
    return found


def granted(jit: Jit, roles: list[str]) -> dict[str, Any]:
    filed = jit.call("POST", "/v1/requests", bob(jit), {"roles": roles, "duration_seconds": 3600, "reason": REASON})
    assert filed.status_code == 201, filed.body
    approved = jit.call("POST", f"/v1/requests/{filed.json_body['id']}/approve", carol(jit), {})
    assert approved.status_code == 200 and approved.json_body["status"] == "approved", approved.body
    body: dict[str, Any] = approved.json_body
    return body


def extension_request(jit: Jit, parent: str, seconds: int = 1800) -> dict[str, Any]:
    """An extension beyond the automatic budget (none here): a request to the approvers."""
    asked = jit.call("POST", f"/v1/requests/{parent}/extend", bob(jit),
                     {"duration_seconds": seconds, "reason": "still fixing"})
    assert asked.status_code == 201 and asked.json_body["kind"] == "extension", asked.body
    body: dict[str, Any] = asked.json_body
    return body


# --------------------------------------------------------------------------
# F4: a pending review blocks the next break-glass only into roles that block themselves


@pytest.mark.xfail(strict=True, reason="ATTACK12 F4: with a break-glass awaiting review (the person's lock held), "
                   "a break-glass into a role with block_until_reviewed: false goes through, because only a "
                   "blocking role's transaction looks at the lock; add a ConditionCheck attribute_not_exists on the "
                   "person's lock to every break-glass transaction (block_until_reviewed then only decides whether "
                   "this one takes the lock)")
def test_attack12_f4_an_outstanding_review_blocks_break_glass_into_any_role(jit: Jit) -> None:
    first = jit.call("POST", "/v1/break-glass", bob(jit), {"role": "db", "reason": REASON, "ticket": "INC-42"})
    assert first.status_code == 201, first.body
    other = jit.call("POST", "/v1/break-glass", bob(jit), {"role": "app", "reason": REASON, "ticket": "INC-43"})
    assert other.status_code == 409, other.body
    assert first.json_body["id"] in other.json_body["Message"]
