"""Outside review of issue 12, attack 12: policy-load findings (see tests/flow/test_attack12.py)."""

from __future__ import annotations

import pytest

from chalicelib.access.policy import parse_policy
from chalicelib.exceptions import PolicyError

POLICY = """\
version: 1
accounts:
  sandbox: {{id: "222222222222", region: eu-west-1}}
roles:
  db:
    account: sandbox
    role_name: Db
    allow: [{{groups: [developers]}}]
    approval:
      approvers: {{groups: [security]}}
      ticket: {{required: true, pattern: "{approval}"}}
    break_glass:
      allow: [{{groups: [oncall]}}]
      ticket_pattern: "{glass}"
"""
SAFE = "^(INC|CHG)-[0-9]+$"


@pytest.mark.xfail(strict=True, reason="ATTACK12 F5: ticket patterns with nested quantifiers load, and each is "
                   "matched with Python's backtracking re against a caller's 64-character ticket: "
                   "^([A-Z]+-?)+[0-9]+$ takes about a second at 24 characters and doubles with each one more, so "
                   "one request pins a Lambda (or a chalice local thread) until its timeout; refuse such patterns "
                   "at load and in policycheck (or match with a linear-time engine, then replace this test)")
@pytest.mark.parametrize(("approval", "glass", "where"), [
    ("^([A-Z]+-?)+[0-9]+$", SAFE, "roles.db.approval.ticket.pattern"),
    (SAFE, "^(a+)+$", "roles.db.break_glass.ticket_pattern"),
])
def test_attack12_f5_a_ticket_pattern_that_backtracks_exponentially_is_refused_at_load(
        approval: str, glass: str, where: str) -> None:
    assert parse_policy(POLICY.format(approval=SAFE, glass=SAFE)).roles["db"].break_glass is not None
    with pytest.raises(PolicyError) as caught:
        parse_policy(POLICY.format(approval=approval, glass=glass))
    assert where in str(caught.value)
