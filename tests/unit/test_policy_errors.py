"""Every way the policy loader refuses a policy, with the exact message and line.

A person fixing a policy reads only this message: the place (``roles.admin.
allow[0].groups``), what is expected and the line. So each case pins the
whole text, not a fragment of it.
"""

from __future__ import annotations

import pytest

from chalicelib.access.policy import parse_policy
from chalicelib.exceptions import PolicyError

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
ISSUER = """\
version: 1
issuers:
  github:
    url: https://token.actions.githubusercontent.com
    audiences: rolebroker
    identity_claim: sub
"""
RULE = "      - groups: [admins]"


def base(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new)


def role_line(line: str) -> str:
    """BASE with one more line in role admin (line 10)."""
    return base("    role_name: Admin\n", f"    role_name: Admin\n    {line}\n")


def rule(text: str) -> str:
    """BASE with ``text`` instead of its one allow rule (line 11)."""
    return base(RULE, text)


def approval(text: str) -> str:
    """BASE with an approval block (line 12) holding ``text``."""
    return BASE + "    approval:\n" + text


def issuer(old: str = "", new: str = "", extra: str = "") -> str:
    """Issuer github (lines 3-6, ``extra`` from line 7), then BASE's accounts and roles."""
    assert old in ISSUER
    return (ISSUER.replace(old, new) if old else ISSUER) + extra + BASE.removeprefix("version: 1\n")


CASES = {
    # the document and its sections
    "top level is a list": ("- a\n- b\n", 1, "policy: must be a mapping"),
    "no roles": (BASE.split("roles:")[0], 1, "policy: missing required key 'roles'"),
    "version": (base("version: 1", "version: 2"), 1, "version: must be 1, got 2"),
    "version true": (base("version: 1", "version: true"), 1, "version: must be 1, got True"),
    "accounts as a list": (base("  sandbox:\n    id", "  - sandbox: x\n    id"), 2, "accounts: must be a mapping"),
    "roles as a list": (base("  admin:\n", "  - admin: x\n"), 6, "roles: must be a mapping"),
    "issuers not a mapping": (base("version: 1\n", "version: 1\nissuers: 42\n"), 2, "issuers: must be a mapping"),
    "issuers as a list": (base("version: 1\n", "version: 1\nissuers:\n  - {url: x}\n"), 2,
                          "issuers: must be a mapping"),
    "key not a string": (base("  sandbox:\n", "  sandbox:\n    1: x\n"), 4, "key 1 must be a string"),
    "control character": (base("Admin", "Ad\x07min"), None, "syntax error: not valid YAML or JSON"),
    # slack
    "slack not a mapping": (BASE + "slack: 42\n", 12, "slack: must be a mapping"),
    "slack users as a list": (BASE + "slack:\n  users:\n    - {U0ALICE: alice@example.com}\n", 13,
                              "slack.users: must be a mapping"),
    "slack user mapped to a number": (BASE + "slack:\n  users:\n    U0ALICE: 42\n", 14,
                                      "slack.users.U0ALICE: must map a Slack user id (U...) to an identity"),
    "slack user mapped to nothing": (BASE + "slack:\n  users:\n    U0ALICE: ''\n", 14,
                                     "slack.users.U0ALICE: must map a Slack user id (U...) to an identity"),
    "slack channel not a string": (BASE + "slack:\n  approvals_channel: 42\n", 13,
                                   "slack.approvals_channel: must be a channel id"),
    # accounts
    "account not a mapping": (base('  sandbox:\n    id: "222222222222"\n    region: eu-west-1\n', "  sandbox: 42\n"),
                              3, "accounts.sandbox: must be a mapping"),
    "account without region": (base("    region: eu-west-1\n", ""), 4,
                               "accounts.sandbox: missing required key 'region'"),
    "account id too short": (base('"222222222222"', '"2222"'), 4,
                             "accounts.sandbox.id: must be a 12-digit account id, got '2222'"),
    "account id unquoted": (base('"222222222222"', "222222222222"), 4,
                            "accounts.sandbox.id: must be a quoted string (YAML drops leading zeros)"),
    "region": (base("eu-west-1", "europe"), 5,
               "accounts.sandbox.region: must be an AWS region such as eu-west-1, got 'europe'"),
    "external id": (base("    region: eu-west-1\n", "    region: eu-west-1\n    external_id: x\n"), 6,
                    "accounts.sandbox.external_id: must be 2-1224 characters of [\\w+=,.@:/-], got 'x'"),
    # roles
    "role not a mapping": (base("    account: sandbox\n    role_name: Admin\n    allow:\n" + RULE + "\n", "    42\n"),
                           7, "roles.admin: must be a mapping"),
    "role without allow": (base("    allow:\n" + RULE + "\n", ""), 8, "roles.admin: missing required key 'allow'"),
    "role name": (base("  admin:", "  bad name!:"), 7,
                  "roles.bad name!: role names are 1-64 characters of [A-Za-z0-9._-]"),
    "unknown account": (base("account: sandbox", "account: sandbx"), 8,
                        "roles.admin.account: unknown account 'sandbx' (define it under accounts)"),
    "iam role name": (base("role_name: Admin", "role_name: Admïn"), 9,
                      "roles.admin.role_name: must be an IAM role name, got 'Admïn'"),
    "role arn": (base("role_name: Admin", "role_arn: arn:aws:iam::222222222222:user/Admin"), 9,
                 "roles.admin.role_arn: must be an IAM role ARN arn:aws:iam::<id>:role/<name>, "
                 "got 'arn:aws:iam::222222222222:user/Admin'"),
    "role arn elsewhere": (base("role_name: Admin", "role_arn: arn:aws:iam::999999999999:role/Admin"), 9,
                           "roles.admin.role_arn: is in account 999999999999, but the role's account sandbox is "
                           "222222222222"),
    "role name and arn": (role_line("role_arn: arn:aws:iam::222222222222:role/A"), 8,
                          "roles.admin: give exactly one of role_name or role_arn"),
    "max duration": (role_line("max_duration_seconds: 100"), 10,
                     "roles.admin.max_duration_seconds: must be a whole number of seconds from 900 to 43200, got 100"),
    "console": (role_line("console: yes please"), 10, "roles.admin.console: must be true or false, got 'yes please'"),
    "require_mfa": (role_line("require_mfa: 1"), 10, "roles.admin.require_mfa: must be true or false, got 1"),
    "unknown role key": (role_line("max_duration: 60"), 10,
                         "roles.admin: unknown key 'max_duration' (allowed: account, allow, approval, break_glass, "
                         "console, description, max_duration_seconds, notify, require_mfa, role_arn, role_name, "
                         "scopes)"),
    # rules
    "allow not a list": (base("    allow:\n" + RULE, "    allow: 42"), 10,
                         "roles.admin.allow: must be a list of rules"),
    "rule not a mapping": (rule("      - 42"), 10, "roles.admin.allow[0]: must be a mapping"),
    "empty rule": (rule("      - {}"), 11,
                   "roles.admin.allow[0]: an empty rule would match everybody; name groups or claims"),
    "no groups": (rule("      - groups: []"), 11,
                  "roles.admin.allow[0].groups: must be a non-empty list of group names"),
    "an empty group": (rule("      - groups: [admins, '']"), 11,
                       "roles.admin.allow[0].groups: must be a non-empty list of group names"),
    "empty claims": (rule("      - claims: {}"), 11,
                     "roles.admin.allow[0].claims: must be a non-empty mapping of claim: value"),
    "claims as a list": (rule("      - claims: [env]"), 11,
                         "roles.admin.allow[0].claims: must be a non-empty mapping of claim: value"),
    "claim with no values": (rule("      - claims: {env: []}"), 11,
                             "roles.admin.allow[0].claims.env: must be a string, number, boolean or a list of them"),
    "claim with a mapping": (rule("      - claims:\n          env: {a: 1}"), 12,
                             "roles.admin.allow[0].claims.env: must be a string, number, boolean or a list of them"),
    "unknown issuer": (rule("      - issuer: gitlab\n        groups: [admins]"), 11,
                       "roles.admin.allow[0].issuer: unknown issuer 'gitlab' (define it under issuers, or leave issuer "
                       "out for the default issuer)"),
    # approval
    "approval not a mapping": (BASE + "    approval: 42\n", 12, "roles.admin.approval: must be a mapping"),
    "approval without approvers": (approval("      max_grant_seconds: 3600\n"), 13,
                                   "roles.admin.approval: give exactly one of approvers (one stage) or stages "
                                   "(several, in order)"),
    "approvers not a list": (approval("      approvers: 42\n"), 13,
                             "roles.admin.approval.approvers: must be a list of rules"),
    "an approver rule with no groups": (approval("      approvers: [{groups: []}]\n"), 13,
                                        "roles.admin.approval.approvers[0].groups: must be a non-empty list of group "
                                        "names"),
    "max grant": (approval("      approvers: {groups: [sec]}\n      max_grant_seconds: 100\n"), 14,
                  "roles.admin.approval.max_grant_seconds: must be a whole number of seconds from 900 to 604800, got "
                  "100"),
    "pending timeout": (approval("      approvers: {groups: [sec]}\n      pending_timeout_seconds: 299\n"), 14,
                        "roles.admin.approval.pending_timeout_seconds: must be a whole number of seconds from 300 to "
                        "604800, got 299"),
    "approval ticket": (approval("      approvers: {groups: [sec]}\n      ticket: {required: 'x'}\n"), 14,
                        "roles.admin.approval.ticket.required: must be true or false, got 'x'"),
    "approval extend": (approval("      approvers: {groups: [sec]}\n      extend: {max_total_seconds: 10}\n"), 14,
                        "roles.admin.approval.extend.max_total_seconds: must be a whole number of seconds from 900 "
                        "to 604800, got 10"),
    "break glass": (BASE + "    approval: {approvers: {groups: [sec]}}\n    break_glass: {allow: 42}\n", 13,
                    "roles.admin.break_glass.allow: must be a list of rules"),
    "scopes": (role_line("scopes: 42"), 10, "roles.admin.scopes: must be a mapping"),
    "notify": (role_line("notify: 42"), 10, "roles.admin.notify: must be a mapping"),
    # issuers
    "issuer not a mapping": (issuer(ISSUER.split("  github:")[1], " 42\n"), 3, "issuers.github: must be a mapping"),
    "issuer named default": (issuer("  github:", "  default:"), 3,
                             "issuers.default: the name 'default' is reserved for the issuer ROLEBROKER_OIDC_ISSUER "
                             "defines; rules without issuer match it"),
    "issuer name": (issuer("  github:", "  Git Hub:"), 3,
                    "issuers.Git Hub: issuer names are 1-32 characters of [a-z0-9_-], starting with a letter"),
    "issuer url": (issuer("https://token.actions.githubusercontent.com", "http://token.example"), 4,
                   "issuers.github.url: must be an https:// URL (http:// only on loopback), got 'http://token.example'"),
    "issuer without identity claim": (issuer("    identity_claim: sub\n", ""), 4,
                                      "issuers.github: missing required key 'identity_claim'"),
    "no audiences": (issuer("audiences: rolebroker", "audiences: []"), 5,
                     "issuers.github.audiences: must be a client id or a non-empty list of them"),
    "an empty audience": (issuer("audiences: rolebroker", "audiences: [rolebroker, '']"), 5,
                          "issuers.github.audiences: must be a client id or a non-empty list of them"),
    "empty identity claim": (issuer("identity_claim: sub", "identity_claim: ''"), 6,
                             "issuers.github.identity_claim: must be a claim name, got ''"),
    "long identity claim": (issuer("identity_claim: sub", "identity_claim: " + "c" * 257), 6,
                            "issuers.github.identity_claim: must be a claim name, got '" + "c" * 257 + "'"),
    "identity claim with a tab": (issuer("identity_claim: sub", 'identity_claim: "a\\tb"'), 6,
                                  "issuers.github.identity_claim: must be a claim name, got 'a\\tb'"),
    "groups claim a number": (issuer(extra="    groups_claim: 42\n"), 7,
                              "issuers.github.groups_claim: must be a claim name, got 42"),
    "require_email_verified": (issuer(extra="    require_email_verified: 'no'\n"), 7,
                               "issuers.github.require_email_verified: must be true or false, got 'no'"),
    "max token age": (issuer(extra="    max_token_age_seconds: 5\n"), 7,
                      "issuers.github.max_token_age_seconds: must be a whole number of seconds from 60 to 604800, "
                      "got 5"),
    "an unverified email naming the person": (
        issuer(extra="    approval_identity_claim: email\n    require_email_verified: false\n"), 7,
        "issuers.github.approval_identity_claim: an unverified email can name anyone, so it cannot say who the "
        "person is; keep require_email_verified true"),
    "approval identity claim": (issuer(extra="    approval_identity_claim: ''\n"), 7,
                                "issuers.github.approval_identity_claim: must be a claim name, got ''"),
    "jwks url": (issuer(extra="    jwks_url: file:///etc/keys\n"), 7,
                 "issuers.github.jwks_url: must be an https:// URL (http:// only on loopback), got 'file:///etc/keys'"),
    "two issuers, one url": (issuer(extra="  again:\n    url: https://token.actions.githubusercontent.com\n"
                                          "    audiences: x\n    identity_claim: sub\n"), 8,
                             "issuers.again.url: has the same url as issuer github; a token's iss must select exactly "
                             "one issuer"),
}


@pytest.mark.parametrize(("text", "line", "message"), CASES.values(), ids=CASES.keys())
def test_a_bad_policy_is_refused_with_its_place_line_and_what_to_write(text: str, line: int | None,
                                                                       message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "policy.yaml")
    assert (caught.value.line, caught.value.message) == (line, message)
    assert str(caught.value) == (f"policy.yaml:{line}: {message}" if line else f"policy.yaml: {message}")


def test_a_syntax_error_names_the_line_and_what_yaml_expected() -> None:
    # PyYAML's C and Python parsers word the problem differently; both name what was expected.
    with pytest.raises(PolicyError) as caught:
        parse_policy(base("[admins]", "[admins"), "policy.yaml")
    assert caught.value.line == 12
    assert caught.value.message.startswith("syntax error: ") and "',' or ']'" in caught.value.message


def test_without_a_source_name_errors_say_policy() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(base("version: 1", "version: 2"))
    assert str(caught.value) == "policy:1: version: must be 1, got 2"
