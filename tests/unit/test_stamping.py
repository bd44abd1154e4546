from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone

import pytest

from chalicelib.identity.tokens import Identity
from chalicelib.jit.grants import ActiveGrant
from chalicelib.stamping import (
    grant_tags,
    identity_tag_for_key,
    session_name_for,
    session_name_for_key,
    session_tags_for,
)

STS_NAME = re.compile(r"^[\w+=,.@-]{2,64}$", re.ASCII)


@pytest.mark.parametrize("subject", [
    "alice@example.com", "a", "repo:acme/infra:ref:refs/heads/main", "jürgen@example.com",
    "x" * 300, "名前@example.com", "with space@example.com", "aws:root",
])
def test_session_names_fit_sts(subject: str) -> None:
    name = session_name_for(Identity(subject=subject))
    assert STS_NAME.match(name), name


def test_clean_identities_are_kept_as_they_are() -> None:
    assert session_name_for(Identity(subject="alice@example.com")) == "alice@example.com"


def test_changed_identities_cannot_collide() -> None:
    names = {session_name_for(Identity(subject=s)) for s in ("a b@x.com", "a-b@x.com", "a/b@x.com")}
    assert len(names) == 3
    long_a, long_b = ("x" * 70 + "a", "x" * 70 + "b")
    assert session_name_for(Identity(subject=long_a)) != session_name_for(Identity(subject=long_b))


def test_tags_fit_sts_limits() -> None:
    groups = frozenset(f"group-{i:03d}-{'y' * 20}" for i in range(200))
    tags = session_tags_for(Identity(subject="alice@example.com", groups=groups, issuer="https://idp"))
    assert len(tags) <= 50
    assert all(len(t["Key"]) <= 128 and len(t["Value"]) <= 256 for t in tags)
    groups_value = next(t["Value"] for t in tags if t["Key"] == "rolebroker:groups")
    assert all(part in groups for part in groups_value.split(":"))  # cut at a boundary, never mid-name


def test_tag_values_drop_characters_sts_refuses() -> None:
    tags = session_tags_for(Identity(subject="a,b;c@example.com", groups=frozenset({"x,y"})))
    assert tags[0]["Value"].startswith("a_b_c@example.com-")  # changed, so hash-suffixed: one tag per principal
    assert "," not in tags[0]["Value"] and ";" not in tags[0]["Value"]
    assert next(t["Value"] for t in tags if t["Key"] == "rolebroker:groups") == "x_y"


# --------------------------------------------------------------------------
# The edges of the rule (module docstring): lengths kept, the hashed form's shape


def _hashed(key: str, clean: str, longest: int) -> str:
    """The documented hashed form: the cleaned key cut to leave room for ``-`` and 16 hex digits."""
    return f"{clean[:longest - 17]}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


@pytest.mark.parametrize("key", ["ab", "x" * 64])
def test_a_clean_session_name_of_2_to_64_characters_is_kept(key: str) -> None:
    assert session_name_for_key(key) == key


@pytest.mark.parametrize("key", ["a", "x" * 65, "x" * 200])
def test_a_session_name_too_short_or_too_long_is_hashed_to_exactly_its_documented_form(key: str) -> None:
    assert session_name_for_key(key) == _hashed(key, key, 64)
    assert len(session_name_for_key(key)) == min(64, len(key) + 17)


def test_a_changed_session_name_is_cut_to_47_characters_before_its_digest() -> None:
    key = "ci|" + "r" * 100
    assert session_name_for_key(key) == _hashed(key, "ci-" + "r" * 100, 64)
    assert len(session_name_for_key(key)) == 64


@pytest.mark.parametrize("key", ["a", "y" * 256])
def test_an_identity_tag_of_1_to_256_characters_is_kept(key: str) -> None:
    assert identity_tag_for_key(key) == key


def test_an_identity_tag_over_256_characters_is_hashed() -> None:
    key = "y" * 257
    assert identity_tag_for_key(key) == _hashed(key, key, 256)


def test_groups_filling_the_tag_value_exactly_are_all_kept() -> None:
    # Seven groups of 31 characters, one of 32 and seven colons: exactly 256, the most STS takes.
    groups = frozenset([f"{i}{'g' * 30}" for i in range(7)] + ["7" + "g" * 31])
    value = ":".join(sorted(groups))
    assert len(value) == 256
    tags = session_tags_for(Identity(subject="alice@example.com", groups=groups))
    assert next(t["Value"] for t in tags if t["Key"] == "rolebroker:groups") == value


def test_no_groups_no_groups_tag() -> None:
    tags = session_tags_for(Identity(subject="alice@example.com", issuer="https://idp.example.com"))
    assert tags == [{"Key": "rolebroker:identity", "Value": "alice@example.com"},
                    {"Key": "rolebroker:issuer", "Value": "https://idp.example.com"}]


def test_grant_tags_name_the_request_its_ticket_and_a_break_glass() -> None:
    until = datetime(2026, 3, 1, tzinfo=timezone.utc)
    glass = ActiveGrant(request_id="a1b2c3d4e5f6", role="admin", until=until, ticket="INC-42", break_glass=True)
    assert grant_tags(glass) == [{"Key": "rolebroker:grant", "Value": "a1b2c3d4e5f6"},
                                 {"Key": "rolebroker:ticket", "Value": "INC-42"},
                                 {"Key": "rolebroker:breakglass", "Value": "true"}]
    plain = ActiveGrant(request_id="a1b2c3d4e5f6", role="admin", until=until)
    assert grant_tags(plain) == [{"Key": "rolebroker:grant", "Value": "a1b2c3d4e5f6"}]
    assert grant_tags(None) == []
