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
# F2: revoking an approved extension request answers "revoked" and leaves the grant in force


@pytest.mark.xfail(strict=True, reason="ATTACK12 F2: revoking an approved extension request deletes grants keyed "
                   "by the extension's id, which never exist (the grants are the parent's), so it answers 200 "
                   "'revoked' while the extended grant stays in force; revoke the parent's grants, or refuse "
                   "with a 409 naming the parent")
def test_attack12_f2_revoking_an_approved_extension_ends_the_access_or_is_refused(jit: Jit) -> None:
    grant = granted(jit, ["db"])
    extension = extension_request(jit, grant["id"])
    approved = jit.call("POST", f"/v1/requests/{extension['id']}/approve", carol(jit), {})
    assert approved.status_code == 200 and approved.json_body["status"] == "approved", approved.body
    assert "db" in store(jit).active_grants("bob@example.com", jit.clock())
    revoked = jit.call("POST", f"/v1/requests/{extension['id']}/revoke", carol(jit), {"reason": "incident over"})
    if revoked.status_code == 200:
        # "revoked" must mean what it says: no grant for the role is left to issue sessions under.
        assert "db" not in store(jit).active_grants("bob@example.com", jit.clock())
        assert jit.call("POST", "/v1/credentials", bob(jit), {"role": "db"}).status_code == 403
    else:
        assert revoked.status_code == 409 and grant["id"] in revoked.json_body["Message"], revoked.body


# --------------------------------------------------------------------------
# F3: an approver's narrowing of an extension request is ignored


@pytest.mark.xfail(strict=True, reason="ATTACK12 F3: approving an extension request with 'roles' (narrowing) "
                   "answers 200 but extends every role of the parent grant (_approve_extension and "
                   "extend_by_approval ignore the narrowing); extend only the named roles, or refuse narrowing "
                   "of extensions with a 400")
def test_attack12_f3_narrowing_an_extension_extends_only_the_roles_named(jit: Jit) -> None:
    grant = granted(jit, ["db", "app"])
    before = dict(store(jit).active_grants("bob@example.com", jit.clock()))
    assert set(before) == {"db", "app"}
    extension = extension_request(jit, grant["id"])
    answer = jit.call("POST", f"/v1/requests/{extension['id']}/approve", carol(jit), {"roles": ["app"]})
    after = store(jit).active_grants("bob@example.com", jit.clock())
    # Whatever the answer, the role the approver left out is not extended.
    assert after["db"] == before["db"], answer.body
    if answer.status_code == 200:
        assert after["app"] > before["app"]
    else:
        assert answer.status_code == 400, answer.body


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
