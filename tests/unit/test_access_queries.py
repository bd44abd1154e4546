"""who-can, what-can and diff: answers derived from the rules the broker decides with."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from chalicelib.access.policy import AccessPolicy, Account, Role, Rule, decide, parse_policy
from chalicelib.access.queries import (
    MAX_GRANTS_PER_RULE,
    diff,
    format_diff,
    format_who_can,
    grants_of,
    grants_of_rules,
    what_can,
    who_can,
)
from chalicelib.exceptions import NotFound
from chalicelib.identity.tokens import Identity

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = parse_policy((ROOT / "devstack" / "access-policy.yaml").read_text(), "example")

BASE = """\
version: 1
accounts:
  sandbox: {id: "222222222222", region: eu-west-1}
  prod: {id: "333333333333", region: us-east-1}
roles:
  admin:
    account: sandbox
    role_name: Admin
    allow:
      - groups: [admins, sre]
      - claims: {email: [alice@example.com, bob@example.com]}
  deploy:
    account: prod
    role_name: Deploy
    require_mfa: true
    allow:
      - groups: [deployers]
        claims: {env: prod}
    approval:
      approvers: {groups: [security]}
      max_grant_seconds: 3600
admins:
  - groups: [secops]
"""


def who(sub: str = "alice@example.com", groups: tuple[str, ...] = (), **claims: object) -> Identity:
    return Identity(subject=sub, groups=frozenset(groups), claims={"email": sub, **claims})


# --------------------------------------------------------------------------
# who-can


def test_who_can_lists_every_rule_with_its_values_and_conditions() -> None:
    answer = who_can(parse_policy(BASE), "deploy")
    assert answer["role_arn"] == "arn:aws:iam::333333333333:role/Deploy"
    assert answer["account"] == "prod" and answer["account_id"] == "333333333333"
    assert answer["requires_mfa"] is True and answer["requires_approval"] is True
    assert answer["approval"] == {"approvers": [{"groups": ["security"]}], "max_grant_seconds": 3600,
                                  "pending_timeout_seconds": 86400,
                                  "stages": [{"name": "approval", "required": 1,
                                              "approvers": [{"groups": ["security"]}]}],
                                  "ticket": None, "extend": {"max_total_seconds": 3600, "auto_approve_seconds": 0}}
    assert (answer["break_glass"], answer["scopes"], answer["notify"]) == (None, {}, None)
    assert answer["rules"] == [{"groups": ["deployers"], "claims": {"env": ["prod"]},
                                "requires_mfa": True, "requires_approval": True}]
    text = format_who_can(answer)
    assert "needs: MFA and an approved request" in text
    assert 'rule 1: group deployers and claim env = "prod"' in text
    assert "approvers: group security" in text


def test_who_can_shows_claim_values_and_every_group() -> None:
    answer = who_can(parse_policy(BASE), "admin")
    assert answer["rules"] == [
        {"groups": ["admins", "sre"], "requires_mfa": False, "requires_approval": False},
        {"claims": {"email": ["alice@example.com", "bob@example.com"]}, "requires_mfa": False,
         "requires_approval": False},
    ]
    assert answer["approval"] is None
    assert 'rule 2: claim email = "alice@example.com" or "bob@example.com"' in format_who_can(answer)


def test_who_can_an_unknown_role_is_not_found() -> None:
    with pytest.raises(NotFound):
        who_can(parse_policy(BASE), "nope")


# --------------------------------------------------------------------------
# what-can


PEOPLE = [
    who(groups=("platform-admins",)),
    who(groups=("platform-admins",), amr=["pwd", "mfa"]),
    who("bob@example.com", groups=("developers",)),
    who("dana@example.com"),
    who("carol@example.com", groups=("sre", "security")),
    Identity(subject="repo:acme/infra", claims={"repository": "acme/infra", "ref": "refs/heads/main"}),
    Identity(subject="repo:acme/infra", claims={"repository": "acme/infra", "ref": "refs/heads/dev"}),
    who("mallory@example.com", groups=("interns",)),
]


@pytest.mark.parametrize("identity", PEOPLE, ids=lambda i: f"{i.subject}:{','.join(sorted(i.groups))}")
def test_what_can_is_decide_over_every_role(identity: Identity) -> None:
    # The rule index must not change an answer: compare with deciding every role.
    everything = {name: decide(role, identity).access for name, role in EXAMPLE.roles.items()}
    expected = {name: access for name, access in everything.items() if access != "denied"}
    assert {r["role"]: r["access"] for r in what_can(EXAMPLE, identity)} == expected


def test_what_can_says_how_and_which_rule() -> None:
    roles = {r["role"]: r for r in what_can(EXAMPLE, who(groups=("platform-admins",)))}
    assert roles["prod-admin"]["access"] == "mfa_required" and roles["prod-admin"]["requires_mfa"] is True
    assert roles["prod-breakglass"]["access"] == "approval_required"
    assert roles["prod-breakglass"]["requires_approval"] is True
    assert roles["sandbox-admin"]["access"] == "allowed"
    assert roles["sandbox-admin"]["rule"] == "group platform-admins"
    assert roles["sandbox-admin"]["rule_conditions"] == {"groups": ["platform-admins"]}
    assert roles["sandbox-admin"]["account_id"] == "222222222222"


def test_what_can_counts_an_active_grant_like_the_broker() -> None:
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    roles = {r["role"]: r["access"] for r in what_can(
        EXAMPLE, who(groups=("developers",)), grants={"prod-breakglass": now + timedelta(hours=1)}, now=now)}
    assert roles["prod-breakglass"] == f"granted_until:{(now + timedelta(hours=1)).isoformat()}"


def test_what_can_for_oneself_hides_the_claim_values_of_rules() -> None:
    roles = what_can(EXAMPLE, who("dana@example.com"), show_rules=False)
    assert [r["role"] for r in roles] == ["sandbox-readonly"]
    assert "rule_conditions" not in roles[0] and roles[0]["rule"] == "a matching email claim"


# --------------------------------------------------------------------------
# diff


def policy_with(old: str, new: str) -> tuple[AccessPolicy, AccessPolicy]:
    return parse_policy(BASE), parse_policy(BASE.replace(old, new, 1))


def test_identical_policies_differ_in_nothing() -> None:
    result = diff(parse_policy(BASE), parse_policy(BASE))
    assert not result.changes_access and result.roles == [] and result.other == []
    assert format_diff(result).endswith("no access change (roles: 0 added, 0 removed, 0 changed)")


def test_rewriting_rules_without_changing_who_is_no_access_change() -> None:
    old, new = policy_with("      - groups: [admins, sre]\n",
                           "      - groups: [sre]\n      - groups: [admins]\n"
                           "      - {groups: [admins], claims: {x: 1}}\n")
    result = diff(old, new)
    assert not result.changes_access
    change = result.roles[0]
    assert change.role == "admin" and change.gains == [] and change.losses == []
    assert change.rules_removed == [{"groups": ["admins", "sre"]}]
    assert "the same people have the same access" in format_diff(result)


def test_a_group_added_to_a_rule_is_a_gain_with_its_conditions() -> None:
    old, new = policy_with("groups: [deployers]", "groups: [deployers, contractors]")
    result = diff(old, new)
    assert result.changes_access
    [change] = result.roles
    assert change.gains == [{"groups": ["contractors"], "claims": {"env": "prod"},
                             "requires_mfa": True, "requires_approval": True}]
    assert change.losses == []
    assert ('+ now granted to group contractors and claim env = "prod" '
            "(needs MFA and an approved request)") in format_diff(result)


def test_narrowing_a_rule_is_a_loss_and_no_gain() -> None:
    old, new = policy_with("      - groups: [admins, sre]\n",
                           "      - groups: [admins, sre]\n        claims: {env: prod}\n")
    [change] = diff(old, new).roles
    assert change.gains == []
    assert [loss["groups"] for loss in change.losses] == [["admins"], ["sre"]]


def test_claim_values_keep_their_json_type() -> None:
    old, new = policy_with("claims: {env: prod}", "claims: {env: [prod, true]}")
    [change] = diff(old, new).roles
    assert [g["claims"] for g in change.gains] == [{"env": True}]
    old, new = parse_policy(BASE.replace("claims: {env: prod}", "claims: {env: 1}")), \
        parse_policy(BASE.replace("claims: {env: prod}", "claims: {env: true}"))
    [change] = diff(old, new).roles
    assert change.gains and change.losses


@pytest.mark.parametrize(("old", "new", "setting", "access"), [
    ("    require_mfa: true\n", "", "require_mfa", True),
    ("    role_name: Admin\n", "    role_name: Admin\n    console: true\n", "console", True),
    ("    role_name: Deploy\n", "    role_name: Deploy2\n", "role_arn", True),
    ("      max_grant_seconds: 3600\n", "      max_grant_seconds: 7200\n", "max_grant_seconds", True),
    ("    role_name: Admin\n", "    role_name: Admin\n    max_duration_seconds: 900\n", "max_duration_seconds", True),
    ("      max_grant_seconds: 3600\n", "      max_grant_seconds: 3600\n      pending_timeout_seconds: 600\n",
     "pending_timeout_seconds", False),
])
def test_role_settings_are_reported_and_classified(old: str, new: str, setting: str, access: bool) -> None:
    result = diff(*policy_with(old, new))
    [change] = result.roles
    assert [(s["setting"], s["access"]) for s in change.settings] == [(setting, access)]
    assert result.changes_access is access


def test_approval_removed_is_an_access_change_and_approvers_are_lost() -> None:
    old, new = policy_with("    approval:\n      approvers: {groups: [security]}\n      max_grant_seconds: 3600\n", "")
    [change] = diff(old, new).roles
    assert {"setting": "approval", "old": True, "new": False, "access": True} in change.settings
    assert change.approvers_lost == [{"groups": ["security"]}]


def test_roles_added_and_removed() -> None:
    old = parse_policy(BASE)
    new = parse_policy(BASE.replace("  deploy:", "  deploy-v2:"))
    result = diff(old, new)
    assert [(r.role, r.status) for r in result.roles] == [("deploy", "removed"), ("deploy-v2", "added")]
    assert result.roles[0].losses == [{"groups": ["deployers"], "claims": {"env": "prod"},
                                       "requires_mfa": True, "requires_approval": True}]
    assert result.roles[1].gains == result.roles[0].losses
    assert result.roles[1].approvers_gained == [{"groups": ["security"]}]


def test_admins_auditors_and_slack_users_are_access() -> None:
    old = parse_policy(BASE)
    new = parse_policy(BASE.replace("  - groups: [secops]\n",
                                    "  - groups: [secops, oncall]\nauditors: [{groups: [audit]}]\n"
                                    "slack: {users: {U0ALICE: alice@example.com}}\n"))
    result = diff(old, new)
    assert result.blocks == {"admins": {"gained": [{"groups": ["oncall"]}], "lost": []},
                             "auditors": {"gained": [{"groups": ["audit"]}], "lost": []}}
    assert result.slack_users["added"] == [{"user": "U0ALICE", "identity": "alice@example.com"}]
    assert result.changes_access
    text = format_diff(result)
    assert "admins: + group oncall" in text and "slack.users: + U0ALICE acts as alice@example.com" in text


def test_account_details_are_reported_but_are_not_access() -> None:
    result = diff(*policy_with("region: us-east-1", "region: us-west-2"))
    assert not result.changes_access
    assert result.other == ["account prod changed"]
    assert [s["setting"] for s in result.roles[0].settings] == ["region"]


def test_a_new_kind_of_rule_condition_is_compared_without_changes_to_diff() -> None:
    # Rules gain conditions over time (an issuer, for one); diff reads them generically.
    @dataclass(frozen=True)
    class IssuerRule(Rule):
        issuer: str | None = None

    account = Account("a", "111111111111", "us-east-1")

    def policy(*rules: Rule) -> AccessPolicy:
        role = Role("r", account, "arn:aws:iam::111111111111:role/R", 3600, False, False, tuple(rules))
        return AccessPolicy(accounts={"a": account}, roles={"r": role})

    default = IssuerRule(groups=frozenset({"ci"}))
    ci = IssuerRule(groups=frozenset({"ci"}), issuer="github")
    [change] = diff(policy(default), policy(default, ci)).roles
    assert change.gains == [{"groups": ["ci"], "issuer": "github", "requires_mfa": False,
                             "requires_approval": False}]


def test_a_rule_too_large_to_expand_is_compared_whole() -> None:
    values = list(range(MAX_GRANTS_PER_RULE + 1))
    rule = Rule(claims=(("n", tuple(values)),))
    [grant] = grants_of(rule)
    [condition] = grant
    assert condition.kind == "rule"


def test_diff_is_exact_against_rule_matches() -> None:
    """For random rule sets over a small world, the gains and losses are
    exactly the people whose match changes: everybody who gains holds the
    conditions of a reported gain, and the minimal holder of each reported
    gain does gain (and the same for losses)."""
    generator = random.Random(11)  # noqa: S311 - a fixed seed for reproducible cases
    groups = ["a", "b", "c"]
    claim_values: list[object] = ["x", "y", True, 1]

    def random_rule() -> Rule:
        chosen = frozenset(generator.sample(groups, generator.randint(0, 2)))
        claims = []
        if not chosen or generator.random() < 0.5:
            claims.append(("k", tuple(generator.sample(claim_values, generator.randint(1, 2)))))
        return Rule(groups=chosen, claims=tuple(claims))

    world = [Identity(subject="p", groups=frozenset(g), claims={"k": v} if v is not None else {})
             for size in range(len(groups) + 1) for g in itertools.combinations(groups, size)
             for v in [None, *claim_values]]

    def matches(rules: list[Rule], person: Identity) -> bool:
        return any(rule.matches(person) for rule in rules)

    def holds(grant: dict[str, object], person: Identity) -> bool:
        group_ok = all(g in person.groups for g in grant.get("groups", []))  # type: ignore[union-attr]
        claims = grant.get("claims", {})
        claim_ok = all(k in person.claims and type(person.claims[k]) is type(v) and person.claims[k] == v
                       for k, v in claims.items())  # type: ignore[union-attr]
        return group_ok and claim_ok

    def holds_nothing_more(grant: dict[str, object], person: Identity) -> bool:
        return (len(person.groups) == len(grant.get("groups", []))  # type: ignore[arg-type]
                and len(person.claims) == len(grant.get("claims", {})))  # type: ignore[arg-type]

    from chalicelib.access.queries import _gained_lost

    for _ in range(300):
        old = [random_rule() for _ in range(generator.randint(0, 3))]
        new = [random_rule() for _ in range(generator.randint(0, 3))]
        found = _gained_lost(old, new)
        for person in world:
            if matches(new, person) and not matches(old, person):
                assert any(holds(g, person) for g in found["gained"]), (old, new, person)
            if matches(old, person) and not matches(new, person):
                assert any(holds(g, person) for g in found["lost"]), (old, new, person)
        for grant in found["gained"]:
            minimal = [p for p in world if holds(grant, p) and holds_nothing_more(grant, p)]
            assert minimal and all(matches(new, p) and not matches(old, p) for p in minimal), (old, new, grant)
        for grant in found["lost"]:
            minimal = [p for p in world if holds(grant, p) and holds_nothing_more(grant, p)]
            assert minimal and all(matches(old, p) and not matches(new, p) for p in minimal), (old, new, grant)
    assert grants_of_rules([]) == set()
