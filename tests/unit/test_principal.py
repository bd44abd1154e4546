"""The principal: one key per person (or workload), and what AWS is told."""

from __future__ import annotations

import re

import pytest

from chalicelib.identity.principal import DEFAULT_ISSUER, Principal, canonical_value, email_problem
from chalicelib.identity.tokens import Identity
from chalicelib.stamping import identity_tag_for_key, session_name_for, session_name_for_key, session_tags_for

STS_NAME = re.compile(r"[\w+=,.@-]{2,64}\Z", re.ASCII)


def test_the_default_issuers_key_is_the_canonical_value_itself() -> None:
    assert Principal(DEFAULT_ISSUER, "alice@example.com").key == "alice@example.com"


def test_other_issuers_keys_carry_the_issuer() -> None:
    assert Principal("ci", "repo:acme/infra:ref:refs/heads/main").key == "ci|repo:acme/infra:ref:refs/heads/main"


@pytest.mark.parametrize("principal", [
    Principal(DEFAULT_ISSUER, "alice@example.com"),
    Principal(DEFAULT_ISSUER, "ci|repo:acme/infra"),  # a default value that looks like another issuer's key
    Principal("ci", "repo:acme/infra"),
    Principal("ci", "a|b"),
])
def test_keys_round_trip(principal: Principal) -> None:
    assert Principal.from_key(principal.key) == principal


def test_keys_never_collide_across_issuers() -> None:
    spoof = Principal(DEFAULT_ISSUER, "ci|repo:acme/infra")
    real = Principal("ci", "repo:acme/infra")
    assert spoof.key != real.key


@pytest.mark.parametrize(("claim", "value", "canonical"), [
    ("email", " Erin@Example.COM ", "erin@example.com"),
    ("email", "STRASSE@example.com", "strasse@example.com"),
    ("sub", "repo:Acme/Infra", "repo:Acme/Infra"),  # only emails fold
    ("preferred_username", " Erin ", "Erin"),
])
def test_canonical_values(claim: str, value: str, canonical: str) -> None:
    assert canonical_value(claim, value) == canonical


# Review ATTACK9 F4: Unicode casefold() merged these distinct mailboxes into one principal.
COLLIDING = [
    ("\u212aate@example.com", "kate@example.com"),  # KELVIN SIGN
    ("ro\u017fa@example.com", "rosa@example.com"),  # LATIN SMALL LETTER LONG S
    ("stra\u00dfe@example.de", "strasse@example.de"),  # sharp s: two real IDN mailboxes
    ("\ufb01ona@example.com", "fiona@example.com"),  # LATIN SMALL LIGATURE FI
    ("E\u0301rin@example.com", "\u00c9rin@example.com"),  # canonically equivalent, NFC made them one
    ("k\u0430te@example.com", "kate@example.com"),  # CYRILLIC SMALL LETTER A: looks alike to an approver
]


@pytest.mark.parametrize(("attacker", "victim"), COLLIDING)
def test_non_ascii_emails_have_no_canonical_form(attacker: str, victim: str) -> None:
    with pytest.raises(ValueError, match="ASCII"):
        canonical_value("email", attacker)
    if victim.isascii():
        assert canonical_value("email", victim) == victim.lower()


def test_no_character_outside_ascii_lowers_onto_an_ascii_email() -> None:
    # Every BMP code point: either refused, or (ASCII) mapped by ASCII rules only.
    for code in range(0x10000):
        ch = chr(code)
        if 0xD800 <= code < 0xE000:
            continue
        try:
            canonical = canonical_value("email", f"{ch}ate@example.com")
        except ValueError:
            assert not ch.isascii()
            continue
        assert ch.isascii() and canonical == f"{ch}ate@example.com".strip().lower()
    with pytest.raises(ValueError):
        canonical_value("email", "\u00a0kate@example.com")  # NO-BREAK SPACE is not stripped into kate@


def test_session_names_are_a_pure_function_of_the_principal() -> None:
    person = Identity(subject="Erin@Example.com", principal=Principal(DEFAULT_ISSUER, "erin@example.com"))
    assert session_name_for(person) == session_name_for_key("erin@example.com") == "erin@example.com"
    job = Identity(subject="repo:acme/infra:ref:refs/heads/main",
                   principal=Principal("ci", "repo:acme/infra:ref:refs/heads/main"))
    name = session_name_for(job)
    assert name == session_name_for_key("ci|repo:acme/infra:ref:refs/heads/main")
    assert STS_NAME.match(name) and name.startswith("ci-repo-acme-infra-ref-refs-heads-main-")


def test_people_with_the_same_value_at_different_issuers_get_different_session_names() -> None:
    assert session_name_for_key("alice@example.com") != session_name_for_key("ci|alice@example.com")


def test_two_principals_never_share_a_session_name() -> None:
    # Review ATTACK9 F10: a clean key was used as it is, and nothing kept a clean
    # key from *being* a hashed name, so a chosen identity value took a CI job's
    # SourceIdentity and RoleSessionName (and its CloudTrail attribution).
    ci = Principal("ci", "repo:acme/infra:ref:refs/heads/main")
    impostor = Principal("default", session_name_for_key(ci.key))
    assert impostor.key != ci.key
    assert session_name_for_key(impostor.key) != session_name_for_key(ci.key)
    assert identity_tag_for_key(impostor.key) != identity_tag_for_key(ci.key)


def test_a_clean_key_shaped_like_a_hashed_name_is_hashed_itself() -> None:
    shaped = "alice-0123456789abcdef"
    assert session_name_for_key(shaped) != shaped and session_name_for_key(shaped).startswith(shaped + "-")
    assert session_name_for_key("alice-0123456789ABCDEF") == "alice-0123456789ABCDEF"  # digests are lower case
    assert session_name_for_key("alice-0123456789") == "alice-0123456789"  # too short to be one


def test_the_identity_tag_names_one_principal() -> None:
    # The tag alphabet has no "|", so it used to read "ci_repo:acme/infra" for the CI
    # job *and* for a person whose identity value is "ci_repo:acme/infra".
    tags = {identity_tag_for_key(Principal(issuer, value).key)
            for issuer, value in [("ci", "repo:acme/infra"), (DEFAULT_ISSUER, "ci_repo:acme/infra"),
                                  (DEFAULT_ISSUER, "ci|repo:acme/infra"), ("ci", "repo:acme/infra" + "x" * 300),
                                  ("ci", "repo:acme/infra" + "y" * 300)]}
    assert len(tags) == 5 and all(len(tag) <= 256 for tag in tags)
    assert identity_tag_for_key("alice@example.com") == "alice@example.com"
    person = Identity(subject="x", principal=Principal(DEFAULT_ISSUER, "ci_repo:acme/infra"))
    assert session_tags_for(person)[0] == {"Key": "rolebroker:identity", "Value": "ci_repo:acme/infra"}


KEYS = ["alice@example.com", "ci|repo:acme/infra:ref:refs/heads/main", "default|ci|repo:acme/infra",
        "ci-repo-acme-infra-ref-refs-heads-main", "ci repo acme infra ref refs heads main", "a", "ab",
        "x" * 64, "x" * 65, "x" * 47 + "-" + "0" * 16, "j\u00fcrgen", "j-rgen", "j_rgen", "名前", "__"]


def test_session_names_and_identity_tags_are_injective_over_tricky_keys() -> None:
    keys = KEYS + [session_name_for_key(k) for k in KEYS] + [identity_tag_for_key(k) for k in KEYS]
    keys = sorted(set(keys))
    assert len({session_name_for_key(k) for k in keys}) == len(keys)
    assert len({identity_tag_for_key(k) for k in keys}) == len(keys)
    assert all(STS_NAME.match(session_name_for_key(k)) for k in keys)


def test_a_non_ascii_email_is_refused_saying_why() -> None:
    # People see this in a 401 and in the policy loader's error: it must say what is wrong and why.
    why = ("is not plain ASCII; rolebroker compares only ASCII email addresses, so that no two mailboxes are "
           "taken for one or look alike")
    assert email_problem("j\u00fcrgen@example.com") == why
    assert email_problem("jurgen@example.com") is None
