"""ATTACK9 (security review of issues 9 and 10): role names that break the trusting template.

A role's logical id is made from its path and name, in the same namespace
as the template's own parameters (``TrustedAccountId``, ``AccountGroup``,
``BrokerPrincipalArns``, ``PermissionsBoundaryArn``, ``<Role>ManagedPolicyArns``).
A role named ``TrustedAccountId`` turns ``${TrustedAccountId}`` in every
trust policy into a Ref to that role (cfn-lint W1001), and one named
``AdminManagedPolicyArns`` next to ``Admin`` is a duplicate logical id
(cfn-lint E3007): the generator writes a template AWS refuses, instead of
refusing the policy with the role's name. Robustness, not a widening: the
Ref yields a role name, never another account id.

Marked ``xfail(strict=True)``: it fails today (the finding); the fix must
remove the marker. Run with ``--runxfail`` to see the failure.
"""

from __future__ import annotations

import pytest

from chalicelib.access.policy import parse_policy
from infra.trusting import Broker, TrustError, plan_stacksets

POLICY = """
version: 1
accounts: {a: {id: "222222222222", region: us-east-1}}
roles:
  r1: {account: a, role_name: /rolebroker/TrustedAccountId, allow: [{groups: [x]}]}
  r2: {account: a, role_name: /rolebroker/Admin, allow: [{groups: [x]}]}
  r3: {account: a, role_name: /rolebroker/AdminManagedPolicyArns, allow: [{groups: [x]}]}
"""


@pytest.mark.xfail(strict=True, reason="ATTACK9 F9: role logical ids collide with the template's own names")
def test_attack9_role_names_never_collide_with_the_templates_own_names() -> None:
    broker = Broker.from_arns(["arn:aws:iam::111111111111:role/rolebroker-prod-api_handler"])
    try:
        parts = plan_stacksets(parse_policy(POLICY), broker)
    except TrustError:
        return  # refusing the policy, naming the role, is a fine answer
    for part in parts:
        shared = set(part.template["Resources"]) & set(part.template["Parameters"])
        assert not shared, f"resources and parameters share logical ids {sorted(shared)}"
