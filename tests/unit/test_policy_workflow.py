"""The policy's approval stages, tickets, break-glass, extensions, scopes and
notify blocks: what loads, and every mistake stopped with its file and line."""

from __future__ import annotations

import pytest

from chalicelib.access.policy import parse_policy
from chalicelib.access.workflow import TicketRule
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
    approval:
      stages:
        - name: team-lead
          approvers: {groups: [leads]}
        - name: security
          approvers: [{groups: [security]}, {groups: [secops]}]
          required: 2
      ticket: {pattern: "^(INC|CHG)-[0-9]+$"}
      extend: {max_total_seconds: 28800, auto_approve_seconds: 1800}
    break_glass:
      allow: [{groups: [oncall]}]
    notify: {channels: [C0SRE, C0SRE], watchers: [{groups: [sre-leads]}]}
    scopes:
      readonly:
        description: read only
        policy: {Version: "2012-10-17", Statement: [{Effect: Allow, Action: ["s3:Get*"], Resource: "*"}]}
      managed: {policy_arns: [arn:aws:iam::aws:policy/ReadOnlyAccess]}
  simple:
    account: sandbox
    role_name: Simple
    allow: [{groups: [admins]}]
    approval: {approvers: {groups: [security]}, required: 2, max_grant_seconds: 3600}
slack:
  approvals_channel: C0APPROVALS
  security_channel: C0SECURITY
"""


def test_a_policy_with_every_block_loads() -> None:
    policy = parse_policy(BASE, "p.yaml")
    admin = policy.roles["admin"]
    assert admin.approval is not None
    assert [(s.name, s.required) for s in admin.approval.stages] == [("team-lead", 1), ("security", 2)]
    assert len(admin.approval.approvers) == 3  # every stage's rules: who may deny, revoke and review
    assert admin.approval.plan.stages == (("team-lead", 1), ("security", 2))
    assert admin.approval.ticket == TicketRule(required=True, pattern="^(INC|CHG)-[0-9]+$")
    assert (admin.approval.extension.max_total_seconds, admin.approval.extension.auto_approve_seconds) == (
        28800, 1800)
    glass = admin.break_glass
    assert glass is not None
    assert (glass.max_duration_seconds, glass.block_until_reviewed) == (3600, True)
    assert glass.ticket == TicketRule(required=True, pattern="^(INC|CHG)-[0-9]+$")  # the role's ticket form
    assert admin.notify is not None and admin.notify.channels == ("C0SRE",)
    assert admin.is_watcher(Identity(subject="sam@example.com", groups=frozenset({"sre-leads"})))
    assert admin.scopes["readonly"].policy == (
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:Get*"],"Resource":"*"}]}')
    assert admin.scopes["managed"].policy_arns == ("arn:aws:iam::aws:policy/ReadOnlyAccess",)
    simple = policy.roles["simple"]
    assert simple.approval is not None and [(s.name, s.required) for s in simple.approval.stages] == [
        ("approval", 2)]
    assert simple.approval.extension.max_total_seconds == 3600  # by default, the grant's own maximum
    assert policy.security_channel == "C0SECURITY"


@pytest.mark.parametrize(("old", "new", "line", "fragment"), [
    ("      stages:\n", "      approvers: {groups: [x]}\n      stages:\n", 10,
     "give exactly one of approvers (one stage) or stages"),
    ("    approval: {approvers: {groups: [security]}, required: 2,", "    approval: {approvers: {groups: [security]}, "
     "required: 0,", 30, "required: must be a whole number of approvers from 1 to 10, got 0"),
    ("required: 2, max_grant", "required: 11, max_grant", 30, "from 1 to 10, got 11"),
    ("required: 2, max_grant", "required: true, max_grant", 30, "got True"),
    ("      ticket: {pattern", "      required: 2\n      ticket: {pattern", 16,
     "with stages, each stage says how many approvals it requires"),
    ("        - name: security", "        - name: team-lead", 13, "stage name 'team-lead' is used twice"),
    ("        - name: team-lead", "        - name: Team Lead", 11, "must be 1-32 characters of [a-z0-9_-]"),
    ("          required: 2\n", "          required: 2\n          approvers_of: x\n", 16, "unknown key 'approvers_of'"),
    ('"^(INC|CHG)-[0-9]+$"', '"^(INC|CHG-[0-9]+$"', 16, "is not a valid regular expression"),
    ("      ticket: {pattern", "      ticket: {format: x, pattern", 16, "unknown key 'format'"),
    ("auto_approve_seconds: 1800", "auto_approve_seconds: 30000", 17, "from 0 to 28800"),
    ("max_total_seconds: 28800", "max_total_seconds: 100", 17, "from 900 to 604800"),
    ("      allow: [{groups: [oncall]}]", "      allow: [{groups: [oncall]}]\n      approvers: x", 20,
     "unknown key 'approvers'"),
    ("    break_glass:\n      allow: [{groups: [oncall]}]", "    break_glass:\n      max_duration_seconds: 60", 19,
     "missing required key 'allow'"),
    ("      allow: [{groups: [oncall]}]", "      allow: [{groups: [oncall]}]\n      max_duration_seconds: 90000", 20,
     "from 900 to 43200"),
    ("      allow: [{groups: [oncall]}]", "      allow: [{groups: [oncall]}]\n      ticket_pattern: '('", 20,
     "break_glass.ticket_pattern: is not a valid regular expression"),
    ("    notify: {channels: [C0SRE, C0SRE], watchers: [{groups: [sre-leads]}]}", "    notify: {}", 20,
     "name channels, watchers or both"),
    ("channels: [C0SRE, C0SRE]", "channels: [general]", 20, "Slack channel ids"),
    ("  security_channel: C0SECURITY", "  security_channel: [C0SECURITY]", 33, "one Slack channel id"),
    ("    approval: {approvers: {groups: [security]}, required: 2, max_grant_seconds: 3600}",
     "    break_glass: {allow: [{groups: [x]}]}", 30, "needs an approval block on the role"),
])
def test_mistakes_stop_the_load_naming_the_place(old: str, new: str, line: int, fragment: str) -> None:
    assert old in BASE
    with pytest.raises(PolicyError) as caught:
        parse_policy(BASE.replace(old, new, 1), "p.yaml")
    assert fragment in str(caught.value)
    assert caught.value.line == line, str(caught.value)


@pytest.mark.parametrize(("pattern", "ticket", "ok"), [
    ("^(INC|CHG)-[0-9]+$", "INC-12", True),
    ("^(INC|CHG)-[0-9]+$", "INC-12\n", False),  # $ would allow it; fullmatch does not
    ("^(INC|CHG)-[0-9]+$", "INC-12 ", False),
    ("^(INC|CHG)-[0-9]+$", "XINC-12", False),
    ("^(INC|CHG)-[0-9]+$", "INC-12x", False),
    (r"INC-\d+", "INC-\u0661\u0662", False),  # \d is ASCII digits only
    (r"INC-\w+", "INC-\u00e9t\u00e9", False),
    (r".+", "<!channel>", True),  # a loose pattern: but no space, newline or non-ASCII ever gets through
    (r".+", "a b", False),
    (r".+", "\u200b", False),
    (r".+", "x" * 65, False),
])
def test_tickets_match_whole_and_ascii(pattern: str, ticket: str, ok: bool) -> None:
    assert (TicketRule(required=True, pattern=pattern).problem(ticket, "role r") is None) is ok


def test_a_ticket_is_optional_unless_required() -> None:
    assert TicketRule().problem(None, "role r") is None
    assert TicketRule(required=True).problem(None, "role r") == (
        "role r needs a ticket matching [A-Za-z0-9][A-Za-z0-9._:#/-]{0,63}")
    assert TicketRule().problem("JIRA-1", "role r") is None
