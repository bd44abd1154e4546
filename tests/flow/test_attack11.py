"""Outside review of issue 11 (the kill switch): findings confirmed against main, as strict xfails.

Each test states what must hold; it fails on today's code (the reason names
the finding) and flips to a pass, which strict xfail turns into a failure,
once the finding is fixed: then drop the marker.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from chalicelib.access.policy import parse_policy
from chalicelib.jit import denies
from devstack.issuer import DevIssuer
from tests.conftest import Moto
from tests.flow.conftest import PARTNER_AUDIENCE
from tests.flow.test_revocations import EMERGENCY, POLICY, KillSwitch, build, credentials


def _swap_policy(kill: KillSwitch, text: str) -> None:
    """The broker now serves ``text`` (as after a reload), with this test's account ids."""
    for placeholder, account in kill.accounts.items():
        text = text.replace(placeholder, account)
    new = parse_policy(text)
    kill.services.kill_switch._policy = lambda: new


# --------------------------------------------------------------------------
# F2: the broker refuses a principal, not a person


LINKED = """\
version: 1
issuers:
  partner:
    url: PARTNER_URL
    audiences: [PARTNER_AUDIENCE]
    identity_claim: sub
    approval_identity_claim: email
accounts:
  production: {id: "300000000001", region: us-east-1}
roles:
  prod-readonly:
    account: production
    role_name: /rolebroker/ReadOnlyRole
    allow: [{groups: [developers]}, {issuer: partner, groups: [developers]}]
admins: [{groups: [security]}, {issuer: partner, groups: [security]}]
auditors: [{groups: [audit]}]
"""


@pytest.fixture
def linked(issuer: DevIssuer, partner: DevIssuer, moto_server: Moto, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[KillSwitch]:
    text = LINKED.replace("PARTNER_URL", partner.url).replace("PARTNER_AUDIENCE", PARTNER_AUDIENCE)
    switch = build(issuer, moto_server, tmp_path, monkeypatch, text)
    with switch.client:
        yield switch


def _at_partner(partner: DevIssuer, name: str, *groups: str, mfa: bool = False) -> str:
    """``name``'s token at the linked partner IdP: its own sub, the same verified email."""
    return partner.mint(f"p-{name}", groups=list(groups), mfa=mfa,
                        claims={"email": f"{name}@example.com", "email_verified": True})


@pytest.mark.xfail(strict=True, reason="ATTACK11 F2: refuse_if_revoked checks the principal only, so a revoked "
                                       "person gets credentials from their linked issuer")
def test_attack11_f2_a_revoked_person_gets_no_credentials_from_their_linked_issuer(
        linked: KillSwitch, partner: DevIssuer) -> None:
    assert linked.revoke("erin@example.com").status_code == 201
    assert credentials(linked, linked.issuer.mint("erin@example.com", groups=["developers"]),
                       "prod-readonly").status_code == 403
    # The desk already treats her partner account as her (she may not request or approve from it) ...
    from_partner = credentials(linked, _at_partner(partner, "erin", "developers"), "prod-readonly")
    # ... but the broker hands it credentials (stamped partner|p-erin, which the deny does not name either).
    assert from_partner.status_code == 403, from_partner.body


@pytest.mark.xfail(strict=True, reason="ATTACK11 F2: lift compares the caller's principal with the revoked "
                                       "principal, so a revoked admin lifts their own revocation from a linked issuer")
def test_attack11_f2_a_revoked_admin_cannot_lift_their_own_revocation_from_a_linked_issuer(
        linked: KillSwitch, partner: DevIssuer) -> None:
    carol = linked.issuer.mint("carol@example.com", groups=["security"], mfa=True)
    revocation = linked.revoke("sam@example.com", carol).json_body["id"]
    sam_at_partner = _at_partner(partner, "sam", "security", mfa=True)
    lifted = linked.call("DELETE", f"/v1/revocations/{revocation}", sam_at_partner)
    assert lifted.status_code == 403, lifted.body
    assert credentials(linked, linked.sam(), "prod-readonly").status_code == 403


# --------------------------------------------------------------------------
# F3: the accounts come from today's policy, not from the sessions the person holds


NAMED_ONLY = POLICY.replace("roles:\n", f'  emergency: {{id: "{EMERGENCY}", region: us-east-1}}\nroles:\n', 1) \
    .replace("  dana-tools:\n    account: sandbox\n", "  dana-tools:\n    account: emergency\n")


@pytest.fixture
def named(issuer: DevIssuer, moto_server: Moto, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[KillSwitch]:
    switch = build(issuer, moto_server, tmp_path, monkeypatch, NAMED_ONLY)
    with switch.client:
        yield switch


@pytest.mark.xfail(strict=True, reason="ATTACK11 F3: reach() reads today's policy, so removing a person's rule "
                                       "before revoking them leaves their live sessions in that account untouched")
def test_attack11_f3_offboarding_in_the_natural_order_still_ends_live_sessions(named: KillSwitch) -> None:
    dana = named.issuer.mint("dana@example.com", groups=[])
    issued = credentials(named, dana, "dana-tools")
    assert issued.status_code == 200  # a live session in the emergency account, up to an hour
    # Offboarding: the policy PR that removes her rule lands first, then an admin revokes her.
    rule = ("  dana-tools:\n    account: emergency\n    role_name: /rolebroker/DanaRole\n"
            "    allow: [{claims: {email: dana@example.com}}]\n")
    _swap_policy(named, NAMED_ONLY.replace(rule, ""))
    named.clock.now += timedelta(minutes=5)
    answer = named.revoke("dana@example.com")
    assert answer.status_code == 201, answer.body  # her group rules reach sandbox and production, not here
    assert [e.source_identity for e in denies.entries_in(named.boundary(named[EMERGENCY]))] == ["dana@example.com"]


# --------------------------------------------------------------------------
# F4: an entry's life comes from the role's MaxSessionDuration *now*, not from the sessions it must end


@pytest.fixture
def kill(issuer: DevIssuer, moto_server: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KillSwitch]:
    switch = build(issuer, moto_server, tmp_path, monkeypatch, POLICY)
    with switch.client:
        yield switch


@pytest.mark.xfail(strict=True, reason="ATTACK11 F4: entries expire after the role's current MaxSessionDuration, "
                                       "so after the documented remedy (lower it) a live session outlives its deny")
def test_attack11_f4_lowering_max_session_duration_never_lets_a_live_session_outlive_its_deny(
        kill: KillSwitch) -> None:
    from datetime import datetime

    from devstack.trusting import iam_in
    from tests.flow.test_revocations import PRODUCTION, client_with

    # A deployment with source credentials (ROLEBROKER_MAX_SESSION_SECONDS up to 12 h, docs/deploy.md):
    # sessions are not capped at role chaining's hour.
    kill.services.broker._limit = 7200
    issued = credentials(kill, kill.bob(), "prod-readonly")  # 7200 s: the role's MaxSessionDuration today
    assert issued.status_code == 200, issued.body
    expires = datetime.fromisoformat(issued.json_body["credentials"]["Expiration"])
    # docs/security.md and RevocationsFull's message: "lower the roles' MaxSessionDuration so that entries
    # expire sooner". An operator does, for ReadOnlyRole; bob's 2-hour session is still alive.
    iam_in(kill[PRODUCTION], kill.moto.client("sts"), client_with(kill.moto)).update_role(
        RoleName="ReadOnlyRole", MaxSessionDuration=3600)
    kill.clock.now += timedelta(minutes=1)
    assert kill.revoke("bob@example.com").status_code == 201
    [entry] = denies.entries_in(kill.boundary(kill[PRODUCTION]))
    assert entry.expires >= expires, f"bob's deny ends {entry.expires}, his session {expires}"
