"""`/aws revoke-sessions IDENTITY REASON`: admins may revoke from Slack (it only takes access away), and
the answer says how far it got; nobody else may."""

from __future__ import annotations

import secrets

import pytest

from chalicelib.access.policy import parse_policy
from chalicelib.jit import denies
from devstack.trusting import BROKER_ACCOUNT, iam_in, seed_trusting_accounts
from tests.conftest import Moto
from tests.flow.conftest import Jit

ACCOUNT = f"{secrets.randbelow(10**11) + 10**11:012d}"


@pytest.fixture
def jit_policy() -> str:
    return f"""\
version: 1
accounts:
  production: {{id: "{ACCOUNT}", region: us-east-1}}
roles:
  readonly:
    account: production
    role_name: /rolebroker/ReadOnly
    allow: [{{groups: [developers]}}]
slack:
  users: {{U0BOB: bob@example.com, U0CAROL: carol@example.com}}
  approvals_channel: C0APPROVALS
admins: [{{groups: [security]}}]
"""


def test_an_admin_revokes_from_slack_and_sees_each_account(jit: Jit, jit_policy: str, moto_server: Moto) -> None:
    seed_trusting_accounts(parse_policy(jit_policy), moto_server.client("sts"), moto_server.client_with,
                           [f"arn:aws:iam::{BROKER_ACCOUNT}:role/rolebroker-api"])
    assert jit.call("GET", "/v1/roles", jit.carol()).status_code == 200  # Slack now knows carol's groups
    assert jit.command("U0CAROL", "revoke-sessions bob@example.com laptop stolen <!channel>").status_code == 200
    [reply] = jit.sent("/hooks/commands/1")
    text = reply["text"]
    assert text.startswith(":no_entry: Revocation `") and "of bob@example.com: *complete* in 1 of 1 account(s)" in text
    assert "&lt;!channel&gt;" not in text  # the reason is not echoed; nothing pings anyone
    iam = iam_in(ACCOUNT, moto_server.client("sts"), moto_server.client_with)
    arn = denies.boundary_arn(ACCOUNT)
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
    assert [e.source_identity for e in denies.entries_in(document)] == ["bob@example.com"]
    assert jit.call("POST", "/v1/credentials", jit.bob(), {"role": "readonly"}).status_code == 403


def test_a_non_admin_is_refused_in_slack(jit: Jit) -> None:
    assert jit.call("GET", "/v1/roles", jit.bob()).status_code == 200
    jit.command("U0BOB", "revoke-sessions carol@example.com because")
    [reply] = jit.sent("/hooks/commands/1")
    assert reply["text"] == ":warning: only the policy's admins (group security) may revoke sessions"
    jit.command("U0BOB", "revoke-sessions carol@example.com")
    assert "usage: /aws revoke-sessions IDENTITY REASON" in jit.sent("/hooks/commands/1")[-1]["text"]
