"""ATTACK9 (security review of issues 9 and 10): Slack users and claim rules.

docs/security.md: "Slack users map only to identities whose groups were
proven by a token in the last 12 hours". That holds for group rules only:
a Slack user's identity carries their Slack profile email as the ``email``
claim, so every ``claims: {email: ...}`` rule (allow or approvers) matches a
Slack user who has never shown the broker a token, or whose IdP account was
disabled long ago (offboarding lag between the IdP and Slack).

Marked ``xfail(strict=True)``: it fails today, which is the finding; the fix
must remove the marker. Run with ``--runxfail`` to see the failure.
"""

from __future__ import annotations

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
slack:
  approvals_channel: C0APPROVALS
"""


@pytest.fixture
def jit_policy() -> str:
    return POLICY


@pytest.mark.xfail(strict=True, reason="ATTACK9 F2: claim rules admit Slack users with no verified token")
def test_attack9_slack_user_without_any_verified_token_gets_no_console_link(jit: Jit) -> None:
    # U0DAVE's Slack profile email is dave@example.com (users.info); no token
    # of dave's has ever reached the broker, so there is no snapshot.
    assert jit.services.directory is not None
    jit.command("U0DAVE", "console dave-readonly")
    reply = jit.sent("/hooks/commands/1")[-1]["text"]
    assert "SigninToken" not in reply, "a console link for a person the IdP never vouched for"
