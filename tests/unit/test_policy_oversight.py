"""The policy's ``admins:`` and ``auditors:`` blocks: strict, and matched by the same rules as ``allow``."""

from __future__ import annotations

import pytest

from chalicelib.access.policy import parse_policy
from chalicelib.exceptions import PolicyError
from chalicelib.identity.tokens import Identity

BASE = """\
version: 1
accounts:
  sandbox: {id: "222222222222", region: eu-west-1}
roles:
  admin:
    account: sandbox
    role_name: Admin
    allow: [{groups: [admins]}]
"""


def who(sub: str = "alice@example.com", groups: tuple[str, ...] = (), **claims: object) -> Identity:
    return Identity(subject=sub, groups=frozenset(groups), claims={"email": sub, **claims})


def test_admins_and_auditors_are_rule_lists_matched_like_allow() -> None:
    policy = parse_policy(BASE + """\
admins:
  - groups: [security]
auditors:
  - groups: [audit]
  - claims: {email: [erin@example.com, frank@example.com]}
""")
    assert policy.is_admin(who(groups=("security",)))
    assert not policy.is_auditor(who(groups=("security",)))
    assert policy.is_auditor(who("erin@example.com"))
    assert policy.is_auditor(who(groups=("audit", "x")))
    assert not policy.is_admin(who(groups=("audit",)))
    assert not policy.is_admin(who(groups=("Security",)))  # exact, like every rule


def test_a_single_rule_mapping_is_accepted_like_approvers() -> None:
    policy = parse_policy(BASE + "admins: {groups: [security]}\n")
    assert policy.is_admin(who(groups=("security",)))


def test_without_the_blocks_nobody_is_admin_or_auditor() -> None:
    policy = parse_policy(BASE)
    assert policy.admins == () and policy.auditors == ()
    assert not policy.is_admin(who(groups=("security", "admins")))
    assert not policy.is_auditor(who(groups=("audit",)))


@pytest.mark.parametrize(("extra", "line", "fragment"), [
    ("admins:\n  - {}\n", 10, "policy.admins[0]: an empty rule would match everybody"),
    ("admins:\n  - gropus: [security]\n", 10, "policy.admins[0]: unknown key 'gropus'"),
    ("auditors: security\n", 9, "policy.auditors: must be a list of rules"),
    ("auditors:\n  - groups: []\n", 10, "policy.auditors[0].groups: must be a non-empty list"),
    ("admin:\n  - groups: [security]\n", 9, "unknown key 'admin'"),
])
def test_the_blocks_are_strict(extra: str, line: int, fragment: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(BASE + extra, "policy.yaml")
    assert fragment in str(caught.value)
    assert caught.value.line == line, str(caught.value)
