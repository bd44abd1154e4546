"""The access policy: strict loading with lines, pure decisions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from chalicelib.access.policy import Decision, decide, parse_policy
from chalicelib.exceptions import NotFound, PolicyError
from chalicelib.identity.principal import Principal
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
     "give exactly one of approvers (one stage) or stages"),
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


def test_a_list_valued_claim_matches_when_any_value_is_allowed() -> None:
    # The rule index anchors on the first condition (the group, or the first
    # claim), so the list claim must come second for the match itself to decide.
    text = BASE.replace("      - groups: [admins]", "      - groups: [admins]\n        claims: {env: [prod, staging]}\n"
                        "      - claims: {repository: acme/infra, env: prod}")
    role = parse_policy(text).roles["admin"]
    assert decide(role, who(groups=("admins",), env=["dev", "staging"])).allowed
    assert not decide(role, who(groups=("admins",), env=["dev", "test"])).allowed
    assert not decide(role, who(groups=("admins",), env=[])).allowed
    assert not decide(role, who(groups=("admins",), env=["prod-like"])).allowed
    assert decide(role, who(repository="acme/infra", env=["prod"])).allowed
    assert not decide(role, who(repository="acme/infra", env=["dev"])).allowed


def test_emails_in_rules_compare_in_ascii_lower_case() -> None:
    text = BASE.replace("      - groups: [admins]", "      - claims: {email: Alice@Example.com}")
    role = parse_policy(text).roles["admin"]
    assert decide(role, who("alice@example.com")).allowed
    assert not decide(role, who("alice@example.org")).allowed


def test_an_email_rule_names_one_mailbox_only() -> None:
    # Review ATTACK9 F4: casefold() let the KELVIN SIGN mailbox match kate@'s rule.
    role = parse_policy(BASE.replace("      - groups: [admins]", "      - claims: {email: kate@example.com}"))
    mallory = Identity(subject="mallory", claims={"email": "\u212aate@example.com"})
    assert role.roles["admin"].matching_rule(mallory) is None
    with pytest.raises(PolicyError, match=r"claims\.email: .* is not plain ASCII") as caught:
        parse_policy(BASE.replace("      - groups: [admins]", "      - claims: {email: \"\\u212aate@example.com\"}"))
    assert caught.value.line == 11


MIXED = """\
version: 1
issuers:
  ci: {url: "https://ci.example.com", audiences: rolebroker, identity_claim: sub}
accounts: {prod: {id: "333333333333", region: us-east-1}}
roles:
  deploy:
    account: prod
    role_name: Deploy
    allow:
      - groups: [platform-admins]
      - issuer: ci
        claims: {repository: acme/infra}
  people-only: {account: prod, role_name: ReadOnly, allow: [{groups: [developers]}]}
"""


def test_an_issuer_may_name_the_claim_that_links_its_tokens_to_a_person() -> None:
    linked = MIXED.replace("identity_claim: sub}", "identity_claim: sub, approval_identity_claim: email}")
    assert parse_policy(linked).issuers["ci"].approval_identity_claim == "email"
    assert parse_policy(MIXED).issuers["ci"].approval_identity_claim is None
    unverified = MIXED.replace("identity_claim: sub}", "identity_claim: sub, approval_identity_claim: email, "
                                                       "require_email_verified: false}")
    with pytest.raises(PolicyError, match="approval_identity_claim: an unverified email can name anyone"):
        parse_policy(unverified)


def test_a_denial_describes_only_rules_of_the_callers_issuer() -> None:
    # Review ATTACK9 F5: every rule was described to every caller, so any CI token
    # learned the people's group names (and people the CI rules' claim names).
    policy = parse_policy(MIXED)
    person = Identity(subject="bob@example.com", groups=frozenset({"developers"}))
    job = Identity(subject="repo:stranger/fork", principal=Principal("ci", "repo:stranger/fork"),
                   claims={"repository": "stranger/fork"})
    assert decide(policy.roles["deploy"], person).reason == "role deploy requires group platform-admins"
    assert decide(policy.roles["deploy"], job).reason == (
        "role deploy requires issuer ci and a matching repository claim")
    assert policy.role_for("deploy", job) is policy.roles["deploy"]
    with pytest.raises(NotFound) as hidden:
        policy.role_for("people-only", job)
    with pytest.raises(NotFound) as unknown:
        policy.role_for("people-onl", job)
    assert str(hidden.value).replace("people-only", "X") == str(unknown.value).replace("people-onl", "X")
    assert policy.role_for("people-only", person) is policy.roles["people-only"]


ISSUERS = """\
version: 1
issuers:
  github:
    url: https://token.actions.githubusercontent.com
    audiences: rolebroker
    identity_claim: sub
    max_token_age_seconds: 900
  partner:
    url: https://login.partner.example/v2.0
    audiences: [broker-a, broker-b]
    identity_claim: preferred_username
    groups_claim: roles
    require_email_verified: false
    jwks_url: https://login.partner.example/keys
"""


def _with_issuers(rules: str) -> str:
    return ISSUERS + BASE.replace("version: 1\n", "").replace("      - groups: [admins]", rules)


def test_issuers_load_with_their_settings() -> None:
    policy = parse_policy(_with_issuers("      - groups: [admins]"))
    github = policy.issuer_for_url("https://token.actions.githubusercontent.com")
    assert github is not None and github.name == "github" and github.audiences == ("rolebroker",)
    assert github.identity_claim == "sub" and github.max_token_age_seconds == 900
    assert github.groups_claim == "groups" and github.require_email_verified
    partner = policy.issuers["partner"]
    assert partner.audiences == ("broker-a", "broker-b") and partner.groups_claim == "roles"
    assert not partner.require_email_verified and partner.jwks_url == "https://login.partner.example/keys"
    assert policy.issuer_for_url("https://token.actions.githubusercontent.com/") is None  # iss matches exactly


def test_a_rule_matches_only_its_issuer_and_without_one_only_the_default() -> None:
    from chalicelib.identity.principal import Principal

    text = _with_issuers("      - issuer: github\n        claims: {repository: acme/infra}\n"
                         "      - groups: [admins]")
    role = parse_policy(text).roles["admin"]
    job = Identity(subject="repo:acme/infra:ref:refs/heads/main", principal=Principal("github", "repo:acme"),
                   groups=frozenset({"admins"}), claims={"repository": "acme/infra"})
    person = who(groups=("admins",), repository="acme/infra")
    assert decide(role, job).rule == "issuer github and a matching repository claim"
    assert decide(role, person).rule == "group admins"
    assert not decide(role, Identity(subject="x", principal=Principal("github", "x"), groups=frozenset({"admins"}),
                                     claims={})).allowed
    assert not decide(role, who(repository="acme/infra")).allowed


@pytest.mark.parametrize(("patch", "fragment"), [
    (("      - groups: [admins]", "      - issuer: gitlab\n        groups: [admins]"), "unknown issuer 'gitlab'"),
    (("      - groups: [admins]", "      - issuer: github"), "empty rule would match everybody"),
    (("  github:", "  default:"), "reserved"),
    (("  github:", "  Git Hub:"), "issuer names"),
    (("    url: https://token.actions.githubusercontent.com", "    url: http://token.example"), "https"),
    (("    url: https://login.partner.example/v2.0", "    url: https://token.actions.githubusercontent.com"),
     "same url as issuer github"),
    (("    identity_claim: sub\n", ""), "missing required key 'identity_claim'"),
    (("    audiences: rolebroker", "    audiences: []"), "audiences"),
    (("    max_token_age_seconds: 900", "    max_token_age_seconds: 5"), "from 60 to"),
    (("    max_token_age_seconds: 900", "    max_age: 900"), "unknown key 'max_age'"),
    (("    jwks_url: https://login.partner.example/keys", "    jwks_url: file:///etc/keys"), "https"),
])
def test_bad_issuers_fail_naming_the_place(patch: tuple[str, str], fragment: str) -> None:
    text = _with_issuers("      - groups: [admins]").replace(*patch)
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "policy.yaml")
    assert fragment in str(caught.value)
    assert caught.value.line is not None


def test_loopback_issuers_may_use_http() -> None:
    text = _with_issuers("      - groups: [admins]").replace(
        "https://token.actions.githubusercontent.com", "http://127.0.0.1:8004")
    assert parse_policy(text).issuers["github"].url == "http://127.0.0.1:8004"


@pytest.mark.parametrize(("patch", "fragment"), [
    (('    id: "222222222222"', '    id: "222222222222\\n"'), "12-digit"),
    (('    id: "222222222222"', '    id: "２２２２２２２２２２２２"'), "12-digit"),
    (("    region: eu-west-1", "    region: eu-west-١"), "AWS region"),
    (("    role_name: Admin", "    role_name: Admïn"), "IAM role name"),
    (("    role_name: Admin", '    role_name: "Admin\\n"'), "IAM role name"),
    (("    role_name: Admin", "    role_arn: arn:aws:iam::２２２２２２２２２２２２:role/Admin"), "IAM role ARN"),
    (("  admin:", '  "admin\\n":'), "role names"),
])
def test_patterns_refuse_trailing_newlines_and_non_ascii_digits(patch: tuple[str, str], fragment: str) -> None:
    with pytest.raises(PolicyError, match=fragment):
        parse_policy(BASE.replace(*patch), "policy.yaml")


def test_slack_user_ids_refuse_a_trailing_newline() -> None:
    text = BASE + 'slack:\n  users: {"U0ALICE\\n": alice@example.com}\n'
    with pytest.raises(PolicyError, match="Slack user id"):
        parse_policy(text)


@pytest.mark.parametrize("role", ["role_name: /rolebroker-system/rolebroker-revoker",
                                  "role_arn: arn:aws:iam::222222222222:role/rolebroker-system/rolebroker-revoker"])
def test_the_revokers_path_is_never_a_role_to_hand_out(role: str) -> None:
    """The kill switch's revoker role must never become a person's session (docs/security.md)."""
    text = ("version: 1\naccounts: {sandbox: {id: \"222222222222\", region: eu-west-1}}\n"
            f"roles:\n  revoker:\n    account: sandbox\n    {role}\n    allow: [{{groups: [admins]}}]\n")
    with pytest.raises(PolicyError, match="roles under /rolebroker-system/ are the broker's own") as caught:
        parse_policy(text, "policy.yaml")
    assert caught.value.line == 6


# --------------------------------------------------------------------------
# What a loaded policy holds: defaults, edges, values as written


def test_defaults_of_a_role_and_its_approval() -> None:
    role = parse_policy(BASE + "    approval:\n      approvers: {groups: [sec]}\n").roles["admin"]
    assert (role.max_duration_seconds, role.console, role.require_mfa, role.description) == (3600, False, False, "")
    assert role.approval is not None
    assert (role.approval.max_grant_seconds, role.approval.pending_timeout_seconds) == (4 * 3600, 24 * 3600)


def test_a_description_is_kept() -> None:
    text = BASE.replace("    role_name: Admin", "    role_name: Admin\n    description: Break-glass for incidents")
    assert parse_policy(text).roles["admin"].description == "Break-glass for incidents"


RANGES = {
    "max_duration_seconds": ("    max_duration_seconds: {}", 900, 43200),
    "max_grant_seconds": ("    approval: {{approvers: {{groups: [sec]}}, max_grant_seconds: {}}}", 900, 7 * 86400),
    "pending_timeout_seconds": ("    approval: {{approvers: {{groups: [sec]}}, pending_timeout_seconds: {}}}", 300,
                                7 * 86400),
}


@pytest.mark.parametrize("setting", RANGES)
def test_both_ends_of_a_range_are_allowed(setting: str) -> None:
    line, low, high = RANGES[setting]
    for value in (low, high):
        role = parse_policy(BASE + line.format(value) + "\n").roles["admin"]
        holder = role.approval if setting != "max_duration_seconds" else role
        assert getattr(holder, setting) == value


def test_groups_and_claim_values_load_as_written() -> None:
    one_group = parse_policy(BASE.replace("groups: [admins]", "groups: admins")).roles["admin"].allow[0]
    assert one_group.groups == frozenset({"admins"})
    text = BASE.replace("      - groups: [admins]", "      - claims: {email: [Alice@Example.com, 7], admin: true}")
    claims_only = parse_policy(text).roles["admin"].allow[0]
    assert claims_only.groups == frozenset()
    assert claims_only.claims == (("email", ("alice@example.com", 7)), ("admin", (True,)))


def test_a_role_name_with_a_path_makes_its_arn() -> None:
    role = parse_policy(BASE.replace("role_name: Admin", "role_name: /team/Admin")).roles["admin"]
    assert role.role_arn == "arn:aws:iam::222222222222:role/team/Admin"
    # Only the leading slash goes: a name's own first letters stay, whatever they are.
    xray = parse_policy(BASE.replace("role_name: Admin", "role_name: XRayReader")).roles["admin"]
    assert xray.role_arn == "arn:aws:iam::222222222222:role/XRayReader"


def test_an_issuer_caps_token_age_only_when_told_and_takes_long_claim_names() -> None:
    text = _with_issuers("      - groups: [admins]").replace("identity_claim: preferred_username",
                                                                 "identity_claim: " + "c" * 256)
    policy = parse_policy(text)
    assert policy.issuers["partner"].max_token_age_seconds is None
    assert policy.issuers["partner"].identity_claim == "c" * 256


# --------------------------------------------------------------------------
# Decisions, whole: what the audit line and the answer carry


def test_each_decision_is_exact() -> None:
    text = BASE.replace("      - groups: [admins]", "      - groups: [admins]\n      - claims: {team: infra}")
    role = parse_policy(text).roles["admin"]
    assert decide(role, who(groups=("admins", "other"))) == Decision(
        "admin", True, "allowed", "allowed by group admins", "group admins", {"groups": ["admins"]})
    assert decide(role, who(groups=("developers",))) == Decision(
        "admin", False, "denied", "role admin requires group admins; or a matching team claim")
    nobody = parse_policy(BASE.replace("    allow:\n      - groups: [admins]", "    allow: []")).roles["admin"]
    assert decide(nobody, who(groups=("admins",))) == Decision(
        "admin", False, "denied", "role admin requires a rule that names your token's issuer (it has none)")


def test_mfa_and_approval_decisions_are_exact() -> None:
    text = BASE.replace("    allow:", "    require_mfa: true\n    approval:\n      approvers: {groups: [sec]}\n"
                        "    allow:")
    role = parse_policy(text).roles["admin"]
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert decide(role, who(groups=("admins",), amr=["pwd"]), now=now) == Decision(
        "admin", False, "mfa_required", "role admin requires MFA: sign in to your identity provider with MFA "
        "(the token's amr claim must contain 'mfa')", "group admins", {"groups": ["admins"], "amr": ["pwd"]})
    mfa = who(groups=("admins",), amr=["mfa"])
    used = {"groups": ["admins"], "amr": ["mfa"]}
    assert decide(role, mfa, grant_until=now + timedelta(hours=1), now=now) == Decision(
        "admin", True, "granted_until:2026-01-01T01:00:00+00:00", "approved grant until 2026-01-01T01:00:00+00:00",
        "group admins", used)
    assert decide(role, mfa, grant_until=now, now=now) == Decision(  # a grant ending now is over
        "admin", False, "approval_required", "role admin requires an approved access request "
        "(rolebroker request --role admin --reason ...)", "group admins", used)


def test_a_role_is_a_candidate_once_however_many_of_its_rules_match() -> None:
    text = BASE.replace("      - groups: [admins]", "      - groups: [admins]\n      - groups: [ops, admins]\n"
                        "      - claims: {team: infra}")
    policy = parse_policy(text)
    assert [role.name for role in policy.candidate_roles(who(groups=("admins", "ops"), team="infra"))] == ["admin"]


def test_a_list_valued_claim_finds_a_rule_that_starts_with_that_claim() -> None:
    # The index anchors this rule on env=prod: a token whose env is a list must reach it through each item.
    text = BASE.replace("      - groups: [admins]", "      - claims: {env: prod}")
    role = parse_policy(text).roles["admin"]
    assert decide(role, who(env=["dev", "prod"])).allowed
    assert not decide(role, who(env=["dev", "test"])).allowed
