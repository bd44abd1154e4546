"""The policy's model outside the loader: an approval block's defaults, what a
denial may tell a caller of the rules, a role's scopes and watchers."""

from __future__ import annotations

import pytest

from chalicelib.access.policy import Approval, Rule, describe_rules, parse_policy
from chalicelib.access.workflow import ExtensionRule, Stage
from chalicelib.exceptions import BadRequest
from chalicelib.identity.principal import Principal
from chalicelib.identity.tokens import Identity

POLICY = """\
version: 1
accounts:
  sandbox: {id: "222222222222", region: eu-west-1}
roles:
  admin:
    account: sandbox
    role_name: Admin
    allow: [{groups: [admins]}]
    approval: {approvers: {groups: [security]}}
    notify: {watchers: [{groups: [sre-leads]}]}
    scopes:
      readonly: {policy_arns: [arn:aws:iam::aws:policy/ReadOnlyAccess]}
      billing: {policy_arns: [arn:aws:iam::aws:policy/job-function/Billing]}
  plain:
    account: sandbox
    role_name: Plain
    allow: [{groups: [admins]}]
"""
ALICE = Identity(subject="alice@example.com", groups=frozenset({"admins"}))
SAM = Identity(subject="sam@example.com", groups=frozenset({"sre-leads"}))


def test_an_approval_built_without_stages_is_one_stage_of_its_approvers_extending_to_its_max_grant() -> None:
    approvers = (Rule(groups=frozenset({"security"})),)
    approval = Approval(approvers=approvers, max_grant_seconds=7200)
    assert approval.stages == (Stage("approval", approvers),)
    assert approval.extend == ExtensionRule(max_total_seconds=7200)


def test_an_approval_keeps_the_stages_and_extension_it_is_given() -> None:
    stages = (Stage("lead", (Rule(groups=frozenset({"leads"})),), 2),)
    extend = ExtensionRule(max_total_seconds=3600, auto_approve_seconds=900)
    approval = Approval(approvers=stages[0].approvers, max_grant_seconds=7200, stages=stages, extend=extend)
    assert (approval.stages, approval.extend) == (stages, extend)


def test_a_denial_describes_only_the_rules_of_the_callers_issuer() -> None:
    rules = [Rule(groups=frozenset({"admins"})), Rule(groups=frozenset({"deployers"}), issuer="ci"),
             Rule(groups=frozenset({"oncall"}))]
    assert describe_rules(rules, ALICE) == "group admins; or group oncall"
    ci = Identity(subject="repo:acme/infra", principal=Principal("ci", "repo:acme/infra"))
    assert describe_rules(rules, ci) == "issuer ci and group deployers"


def test_a_denial_with_no_rule_of_the_callers_issuer_says_so() -> None:
    ci = Identity(subject="repo:acme/infra", principal=Principal("ci", "repo:acme/infra"))
    assert describe_rules([Rule(groups=frozenset({"admins"}))], ci) == (
        "a rule that names your token's issuer (it has none)")


def test_an_unknown_scope_is_a_400_listing_the_roles_scopes() -> None:
    policy = parse_policy(POLICY)
    assert policy.roles["admin"].scope("readonly").policy_arns == ("arn:aws:iam::aws:policy/ReadOnlyAccess",)
    with pytest.raises(BadRequest) as caught:
        policy.roles["admin"].scope("write")
    assert str(caught.value) == "role admin has no scope 'write' (its scopes: readonly, billing)"
    with pytest.raises(BadRequest) as caught:
        policy.roles["plain"].scope("readonly")
    assert str(caught.value) == "role plain has no scope 'readonly' (its scopes: none)"


def test_only_the_roles_watchers_watch_it() -> None:
    policy = parse_policy(POLICY)
    assert policy.roles["admin"].is_watcher(SAM)
    assert not policy.roles["admin"].is_watcher(ALICE)
    assert not policy.roles["plain"].is_watcher(SAM)
