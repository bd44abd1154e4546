"""The principal: one key per person (or workload), and what AWS is told."""

from __future__ import annotations

import re

import pytest

from chalicelib.identity.principal import DEFAULT_ISSUER, Principal, canonical_value
from chalicelib.identity.tokens import Identity
from chalicelib.stamping import session_name_for, session_name_for_key

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
    ("email", "E\u0301rin@example.com", "\u00e9rin@example.com"),  # NFC, then casefold
    ("sub", "repo:Acme/Infra", "repo:Acme/Infra"),  # only emails fold
    ("preferred_username", " Erin ", "Erin"),
])
def test_canonical_values(claim: str, value: str, canonical: str) -> None:
    assert canonical_value(claim, value) == canonical


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
