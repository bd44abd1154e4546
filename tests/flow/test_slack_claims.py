"""Slack users and claim rules: everything the policy reads about a Slack
user comes from their own recent verified token, never from Slack.

Review ATTACK9 F2: a Slack user's identity carried their Slack profile email
as the ``email`` claim, so every ``claims: {email: ...}`` rule (allow *and*
approvers) matched a Slack user who never showed the broker a token, or
whose IdP account was disabled long ago (offboarding lag between the IdP
and Slack), with no snapshot at all.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from tests.flow.conftest import Jit

POLICY = """\
version: 1
accounts:
  production: {id: "333333333333", region: us-east-1}
roles:
  dave-readonly:
    account: production
    role_name: ReadOnly
    console: true
    allow: [{claims: {email: dave@example.com}}]
  finance-readonly:
    account: production
    role_name: FinanceReadOnly
    console: true
    allow: [{claims: {department: finance}}]
  breakglass:
    account: production
    role_name: BreakGlassRole
    allow: [{groups: [developers]}]
    approval:
      approvers: {claims: {email: alice@example.com}}
slack:
  users: {U0BOB: bob@example.com}
  approvals_channel: C0APPROVALS
"""


@pytest.fixture
def jit_policy() -> str:
    return POLICY


def reply(jit: Jit) -> str:
    text: str = jit.sent("/hooks/commands/1")[-1]["text"]
    return text


def test_a_slack_user_without_any_verified_token_gets_no_console_link(jit: Jit) -> None:
    # U0DAVE's Slack profile email is dave@example.com (users.info); no token
    # of dave's has ever reached the broker, so there is no snapshot.
    jit.command("U0DAVE", "console dave-readonly")
    assert "SigninToken" not in reply(jit), "a console link for a person the IdP never vouched for"
    assert "not seen a sign-in of yours (dave@example.com) in the last 12 hours" in reply(jit)
    assert jit.sent("/federation") == []


def test_after_a_sign_in_the_same_rule_matches_from_the_tokens_email(jit: Jit) -> None:
    jit.call("GET", "/v1/roles", jit.issuer.mint("dave@example.com"))
    jit.command("U0DAVE", "console dave-readonly")
    assert "SigninToken=signin-token-xyz" in reply(jit)


def test_twelve_hours_after_the_last_sign_in_slack_stops_vouching(jit: Jit) -> None:
    # Offboarding: the IdP stops issuing dave tokens; Slack still knows him.
    jit.call("GET", "/v1/roles", jit.issuer.mint("dave@example.com"))
    jit.clock.now += timedelta(hours=12, seconds=1)
    jit.command("U0DAVE", "console dave-readonly")
    assert "SigninToken" not in reply(jit) and "not seen a sign-in of yours" in reply(jit)


def test_other_claims_come_from_the_token_too(jit: Jit) -> None:
    jit.call("GET", "/v1/roles", jit.issuer.mint("dave@example.com", claims={"department": "finance"}))
    jit.command("U0DAVE", "roles")
    assert "`finance-readonly`" in reply(jit) and "`dave-readonly`" in reply(jit)


def test_an_email_approver_rule_needs_the_approvers_own_token(jit: Jit) -> None:
    # U0ALICE's Slack profile says alice@example.com, the approvers' rule's email.
    jit.call("POST", "/v1/requests", jit.bob(),
             {"role": "breakglass", "duration_seconds": 3600, "reason": "INC-42 database down"})
    jit.command("U0BOB", "requests")
    request_id = re.search(r"`([0-9a-f]{12})`", reply(jit)).group(1)  # type: ignore[union-attr]
    jit.command("U0ALICE", f"approve {request_id}")
    assert "not seen a sign-in of yours (alice@example.com)" in reply(jit)
    assert jit.call("GET", f"/v1/requests/{request_id}", jit.bob()).json_body["status"] == "pending"
    jit.call("GET", "/v1/roles", jit.issuer.mint("alice@example.com"))
    jit.command("U0ALICE", f"approve {request_id}")
    assert "Approved" in reply(jit)
