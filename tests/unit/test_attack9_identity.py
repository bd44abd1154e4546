"""ATTACK9 (security review of issues 9 and 10): identity canonicalisation.

``canonical_value`` compares emails NFC-normalised and *casefolded*. Unicode
case folding is not case-insensitivity for ASCII mailboxes: it maps
characters that are not letters of the address onto ASCII ones
(U+212A KELVIN SIGN -> ``k``, U+017F LONG S -> ``s``, ``ß`` -> ``ss``, the
``ﬀ``/``ﬁ``/``ﬂ``/``ﬆ`` ligatures -> ``ff``/``fi``/``fl``/``st``). Two different
verified mailboxes then become one principal: the holder of
``\\u212aate@example.com`` *is* ``kate@example.com`` for grants, requests,
Slack snapshots, cancellation, ``claims: {email: ...}`` rules and the
``SourceIdentity`` AWS records.

Marked ``xfail(strict=True)``: each fails today (the finding); the fix must
remove the marker. Run with ``--runxfail`` to see the failures.
"""

from __future__ import annotations

import pytest

from chalicelib.access.policy import parse_policy
from chalicelib.identity.issuers import Issuer
from chalicelib.identity.tokens import identity_from_claims
from chalicelib.stamping import session_name_for

DEFAULT = Issuer(name="default", url="https://idp.example.com", audiences=("rolebroker",))
COLLIDING = [
    ("\u212aate@example.com", "kate@example.com"),  # KELVIN SIGN
    ("ro\u017fa@example.com", "rosa@example.com"),  # LATIN SMALL LETTER LONG S
    ("stra\u00dfe@example.de", "strasse@example.de"),  # sharp s: two real IDN mailboxes
    ("\ufb01ona@example.com", "fiona@example.com"),  # LATIN SMALL LIGATURE FI
]


def who(email: str, sub: str) -> object:
    claims = {"iss": DEFAULT.url, "sub": sub, "email": email, "email_verified": True}
    return identity_from_claims(claims, DEFAULT)


@pytest.mark.xfail(strict=True, reason="ATTACK9 F4: casefold() merges distinct mailboxes into one principal")
@pytest.mark.parametrize(("attacker", "victim"), COLLIDING)
def test_attack9_distinct_mailboxes_are_distinct_principals(attacker: str, victim: str) -> None:
    mallory, real = who(attacker, "00uMALLORY"), who(victim, "00uVICTIM")
    assert mallory.principal != real.principal  # type: ignore[attr-defined]
    assert session_name_for(mallory) != session_name_for(real)  # type: ignore[arg-type]


@pytest.mark.xfail(strict=True, reason="ATTACK9 F4: an email rule for kate@ matches the Kelvin-sign mailbox")
def test_attack9_an_email_rule_names_one_mailbox_only() -> None:
    policy = parse_policy("""
version: 1
accounts: {prod: {id: "333333333333", region: us-east-1}}
roles:
  kate-admin: {account: prod, role_name: Admin, allow: [{claims: {email: kate@example.com}}]}
""")
    mallory = who("\u212aate@example.com", "00uMALLORY")
    assert policy.roles["kate-admin"].matching_rule(mallory) is None  # type: ignore[arg-type]


@pytest.mark.xfail(strict=True, reason="ATTACK9 F10: session names are not injective over principal keys")
def test_attack9_two_principals_never_share_a_session_name() -> None:
    # A key already in STS's alphabet is used as it is; any other key becomes
    # "<cleaned>-<10 hex>". Nothing keeps a clean key from *being* such a
    # string, so a default-issuer principal whose identity value is chosen by
    # the user (preferred_username, or any non-email claim) can take a CI
    # job's SourceIdentity and RoleSessionName, and with it the job's
    # CloudTrail attribution and the evidence queries "by identity".
    from chalicelib.identity.principal import Principal
    from chalicelib.stamping import session_name_for_key

    ci = Principal("ci", "repo:acme/infra:ref:refs/heads/main")
    impostor = Principal("default", session_name_for_key(ci.key))
    assert impostor.key != ci.key
    assert session_name_for_key(impostor.key) != session_name_for_key(ci.key)
