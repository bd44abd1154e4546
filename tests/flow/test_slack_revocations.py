"""`/aws revoke-sessions IDENTITY REASON`: admins may revoke from Slack (it only takes access away), and
the answer says how far it got; nobody else may. `/aws revoke ID REASON` ends a grant and its sessions,
and a revoked approver's buttons decide nothing."""

from __future__ import annotations

import secrets
from datetime import timedelta

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
  breakglass:
    account: production
    role_name: /rolebroker/BreakGlassRole
    allow: [{{groups: [developers]}}]
    approval: {{approvers: {{groups: [security]}}, max_grant_seconds: 7200}}
slack:
  users: {{U0BOB: bob@example.com, U0CAROL: carol@example.com}}
  approvals_channel: C0APPROVALS
admins: [{{groups: [security]}}]
"""


def seed(jit_policy: str, moto_server: Moto) -> None:
    seed_trusting_accounts(parse_policy(jit_policy), moto_server.client("sts"), moto_server.client_with,
                           [f"arn:aws:iam::{BROKER_ACCOUNT}:role/rolebroker-api"])


def entries(moto_server: Moto) -> list[tuple[str, str | None]]:
    iam = iam_in(ACCOUNT, moto_server.client("sts"), moto_server.client_with)
    arn = denies.boundary_arn(ACCOUNT)
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
    return [(e.source_identity, e.role_arn) for e in denies.entries_in(document)]


def test_an_admin_revokes_from_slack_and_sees_each_account(jit: Jit, jit_policy: str, moto_server: Moto) -> None:
    seed(jit_policy, moto_server)
    assert jit.call("GET", "/v1/roles", jit.carol()).status_code == 200  # Slack now knows carol's groups
    assert jit.command("U0CAROL", "revoke-sessions bob@example.com laptop stolen <!channel>").status_code == 200
    [reply] = jit.sent("/hooks/commands/1")
    text = reply["text"]
    assert text.startswith(":no_entry: Revocation `") and "of bob@example.com: *complete* in 1 of 1 account(s)" in text
    assert "&lt;!channel&gt;" not in text  # the reason is not echoed; nothing pings anyone
    assert entries(moto_server) == [("bob@example.com", None)]
    assert jit.call("POST", "/v1/credentials", jit.bob(), {"role": "readonly"}).status_code == 403


def test_a_non_admin_is_refused_in_slack(jit: Jit) -> None:
    assert jit.call("GET", "/v1/roles", jit.bob()).status_code == 200
    jit.command("U0BOB", "revoke-sessions carol@example.com because")
    [reply] = jit.sent("/hooks/commands/1")
    assert reply["text"] == ":warning: only the policy's admins (group security) may revoke sessions"
    jit.command("U0BOB", "revoke-sessions carol@example.com")
    assert "usage: /aws revoke-sessions IDENTITY REASON" in jit.sent("/hooks/commands/1")[-1]["text"]


def test_an_approver_revokes_a_grant_from_slack_and_its_sessions_end(jit: Jit, jit_policy: str,
                                                                     moto_server: Moto) -> None:
    seed(jit_policy, moto_server)
    request = jit.request()
    assert jit.call("POST", f"/v1/requests/{request['id']}/approve", jit.carol()).status_code == 200
    assert jit.call("POST", "/v1/credentials", jit.bob(), {"role": "breakglass"}).status_code == 200
    jit.command("U0CAROL", f"revoke {request['id']} done early <!channel>")
    [reply] = jit.sent("/hooks/commands/1")
    assert reply["text"] == (
        f"Revoked `{request['id']}` (bob@example.com, breakglass). Its sessions issued before "
        f"{(jit.clock.now + timedelta(seconds=30)).isoformat()} are denied: *complete* in 1 of 1 account(s).")
    assert entries(moto_server) == [("bob@example.com", f"arn:aws:iam::{ACCOUNT}:role/rolebroker/BreakGlassRole")]
    assert jit.call("GET", f"/v1/requests/{request['id']}", jit.bob()).json_body["status"] == "revoked"
    assert jit.call("POST", "/v1/credentials", jit.bob(), {"role": "breakglass"}).status_code == 403
    jit.command("U0CAROL", "revoke")
    assert "usage: /aws revoke ID [REASON]" in jit.sent("/hooks/commands/1")[-1]["text"]


def test_a_revoked_approvers_button_decides_nothing(jit: Jit, jit_policy: str, moto_server: Moto) -> None:
    seed(jit_policy, moto_server)
    assert jit.call("GET", "/v1/roles", jit.carol()).status_code == 200  # Slack knows carol's groups
    sam = jit.issuer.mint("sam@example.com", groups=["security"], mfa=True)
    revoked = jit.call("POST", "/v1/revocations", sam, {"identity": "carol@example.com", "reason": "phished"})
    assert revoked.status_code == 201, revoked.body
    request = jit.request()
    assert jit.click("U0CAROL", "approve", request["id"]).status_code == 200
    [reply] = jit.sent("/hooks/actions/1")
    assert reply["text"] == (f":warning: your sessions are revoked (revocation {revoked.json_body['id']}, "
                             f"{revoked.json_body['created_at']}): you may not approve requests until an admin "
                             "lifts it")
    assert jit.call("GET", f"/v1/requests/{request['id']}", jit.bob()).json_body["status"] == "pending"
