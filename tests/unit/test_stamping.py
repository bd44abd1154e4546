from __future__ import annotations

import re

import pytest

from chalicelib.identity.tokens import Identity
from chalicelib.stamping import session_name_for, session_tags_for

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
