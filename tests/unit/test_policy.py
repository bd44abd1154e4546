"""The access policy: strict loading with lines, pure decisions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from chalicelib.access.policy import decide, parse_policy
from chalicelib.exceptions import NotFound, PolicyError
from chalicelib.identity.tokens import Identity

ROOT = Path(__file__).resolve().parents[2]

BASE = """\
version: 1
accounts:
  sandbox:
    id: "222222222222"
    region: eu-west-1
roles:
  admin:
    account: sandbox
    role_name: Admin
    allow:
      - groups: [admins]
"""


def who(sub: str = "alice@example.com", groups: tuple[str, ...] = (), **claims: object) -> Identity:
    return Identity(subject=sub, groups=frozenset(groups), claims={"email": sub, **claims})


def test_example_policy_loads() -> None:
    policy = parse_policy((ROOT / "devstack" / "access-policy.yaml").read_text(), "example")
    assert "sandbox-admin" in policy.roles
    assert policy.roles["prod-admin"].role_arn == "arn:aws:iam::333333333333:role/CrossAccountAdminRole"


def test_json_policy_loads_too() -> None:
    text = '{"version": 1, "accounts": {"a": {"id": "111111111111", "region": "us-east-1"}},' \
           ' "roles": {"r": {"account": "a", "role_name": "R", "allow": [{"groups": ["g"]}]}}}'
    assert parse_policy(text, "p.json").roles["r"].role_arn == "arn:aws:iam::111111111111:role/R"


@pytest.mark.parametrize(("patch", "line", "fragment"), [
    (("      - groups: [admins]", "      - groups: [admins]\n        gropus: [x]"), 12, "unknown key 'gropus'"),
    (("    role_name: Admin", "    role_name: Admin\n    max_duration: 60"), 10, "unknown key 'max_duration'"),
    (("    account: sandbox", "    account: sandbx"), 8, "unknown account 'sandbx'"),
    (('    id: "222222222222"', "    id: 222222222222"), 4, "quoted string"),
    (('    id: "222222222222"', '    id: "2222"'), 4, "12-digit"),
    (("    region: eu-west-1", "    region: europe"), 5, "AWS region"),
    (("    role_name: Admin", "    role_arn: arn:aws:iam::222222222222:user/Admin"), 9, "IAM role ARN"),
    (("    role_name: Admin", "    role_arn: arn:aws:iam::999999999999:role/Admin"), 9, "is in account 999999999999"),
    (("    role_name: Admin", "    role_name: Admin\n    role_arn: arn:aws:iam::222222222222:role/A"), 8,
     "exactly one of role_name or role_arn"),
    (("    role_name: Admin", "    role_name: Admin\n    max_duration_seconds: 100"), 10, "from 900 to 43200"),
    (("    role_name: Admin", "    role_name: Admin\n    max_duration_seconds: 50000"), 10, "from 900 to 43200"),
    (("    role_name: Admin", "    role_name: Admin\n    console: yes please"), 10, "true or false"),
    (("      - groups: [admins]", "      - {}"), 11, "empty rule would match everybody"),
    (("      - groups: [admins]", "      - groups: []"), 11, "non-empty list"),
    (("  admin:", "  bad name!:"), 7, "role names"),
    (("version: 1", "version: 2"), 1, "must be 1"),
    (("version: 1", "version: 1\nextra: true"), 2, "unknown key 'extra'"),
    (("    role_name: Admin", "    role_name: Admin\n    account: sandbox"), 10, "duplicate key 'account'"),
    (("      - groups: [admins]", "      - groups: [admins]\n    approval: {max_grant_seconds: 3600}"), 12,
     "missing required key 'approvers'"),
    (("      - groups: [admins]", "      - groups: [admins"), 12, "syntax error"),
])
def test_bad_policies_fail_naming_the_place(patch: tuple[str, str], line: int, fragment: str) -> None:
    text = BASE.replace(*patch)
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "policy.yaml")
    assert fragment in str(caught.value)
    assert caught.value.line == line, str(caught.value)
    assert str(caught.value).startswith(f"policy.yaml:{line}: ")


def test_default_is_deny() -> None:
    role = parse_policy(BASE).roles["admin"]
    decision = decide(role, who(groups=("developers",)))
    assert not decision.allowed and decision.access == "denied"
    assert decision.reason == "role admin requires group admins"


def test_group_rule_allows() -> None:
    decision = decide(parse_policy(BASE).roles["admin"], who(groups=("admins",)))
    assert decision.allowed and decision.rule == "group admins"


def test_claim_rule_needs_every_claim_and_exact_types() -> None:
    text = BASE.replace("      - groups: [admins]", "      - claims: {repository: acme/infra, ref: refs/heads/main}")
    role = parse_policy(text).roles["admin"]
    allowed = decide(role, who("ci", repository="acme/infra", ref="refs/heads/main"))
    assert allowed.allowed
    assert allowed.claims_used == {"repository": "acme/infra", "ref": "refs/heads/main"}
    assert not decide(role, who("ci", repository="acme/infra", ref="refs/heads/dev")).allowed
    assert not decide(role, who("ci", repository="acme/infra")).allowed


def test_claim_lists_and_booleans() -> None:
    text = BASE.replace("      - groups: [admins]", "      - claims: {env: [prod, staging], admin: true}")
    role = parse_policy(text).roles["admin"]
    assert decide(role, who(env="staging", admin=True)).allowed
    assert not decide(role, who(env="staging", admin="true")).allowed
    assert not decide(role, who(env="staging", admin=1)).allowed


def test_rule_with_groups_and_claims_needs_both() -> None:
    text = BASE.replace("      - groups: [admins]", "      - groups: [admins]\n        claims: {env: prod}")
    role = parse_policy(text).roles["admin"]
    assert decide(role, who(groups=("admins",), env="prod")).allowed
    assert not decide(role, who(groups=("admins",), env="dev")).allowed
    assert not decide(role, who(env="prod")).allowed


def test_mfa_and_approval() -> None:
    text = BASE.replace("    allow:", "    require_mfa: true\n    approval:\n      approvers: {groups: [sec]}\n"
                        "      max_grant_seconds: 3600\n    allow:")
    role = parse_policy(text).roles["admin"]
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert decide(role, who(groups=("admins",))).access == "mfa_required"
    mfa = who(groups=("admins",), amr=["pwd", "mfa"])
    assert decide(role, mfa, now=now).access == "approval_required"
    granted = decide(role, mfa, grant_until=now + timedelta(hours=1), now=now)
    assert granted.allowed and granted.access.startswith("granted_until:2026-01-01T01:00:00")
    assert not decide(role, mfa, grant_until=now - timedelta(seconds=1), now=now).allowed
    assert role.approval is not None and role.approval.is_approver(who(groups=("sec",)))


def test_unknown_role_is_not_found() -> None:
    with pytest.raises(NotFound):
        parse_policy(BASE).role("nope")


def test_candidate_roles_use_the_index() -> None:
    roles = "\n".join(
        f"  r{i}:\n    account: sandbox\n    role_name: R{i}\n    allow:\n      - groups: [g{i}]"
        for i in range(200))
    policy = parse_policy(BASE.split("roles:")[0] + "roles:\n" + roles)
    assert [r.name for r in policy.candidate_roles(who(groups=("g7", "g150")))] == ["r7", "r150"]
    assert policy.candidate_roles(who(groups=("nobody",))) == []
