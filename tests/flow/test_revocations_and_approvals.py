"""The kill switch with issue 12's approvals, on a moto server: every way a grant ends early ends its
sessions (one deny per role of the grant), the revocation reaches every role a person could break glass
into or request, and a revoked person decides nothing until an admin lifts it.

"Credentials never outlive the grant" has two halves: a session is issued for at most what is left of
its grant (checked here for credentials, console links, scoped sessions, break-glasses and extended
grants), and a grant that ends early writes a deny for the sessions issued before it ended.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from chalicelib.aws.revocation_store import RevocationStore
from chalicelib.aws.store import AccessStore, ApprovalStep
from chalicelib.exceptions import Revoked
from chalicelib.jit import denies
from devstack.issuer import DevIssuer
from tests.conftest import Moto
from tests.flow.test_revocations import EMERGENCY, PRODUCTION, SANDBOX, KillSwitch, build

APPROVAL = ("{approvers: {groups: [security]}, required: 2, max_grant_seconds: 7200, "
            "extend: {max_total_seconds: 10800, auto_approve_seconds: 1800}}")
POLICY = f"""\
version: 1
accounts:
  sandbox: {{id: "{SANDBOX}", region: eu-west-1}}
  production: {{id: "{PRODUCTION}", region: us-east-1}}
  emergency: {{id: "{EMERGENCY}", region: us-east-1}}
roles:
  db-sandbox:
    account: sandbox
    role_name: /rolebroker/DbRole
    allow: [{{groups: [developers]}}]
    approval: {APPROVAL}
  db-production:
    account: production
    role_name: /rolebroker/DbRole
    console: true
    allow: [{{groups: [developers]}}]
    approval: {APPROVAL}
    scopes:
      readonly: {{policy_arns: ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}}
  logs-production:
    account: production
    role_name: /rolebroker/LogsRole
    allow: [{{groups: [developers]}}]
    approval: {APPROVAL}
  emergency-admin:
    account: emergency
    role_name: /rolebroker/EmergencyRole
    max_duration_seconds: 3600
    allow: [{{groups: [oncall]}}]
    approval: {{approvers: {{groups: [security]}}, max_grant_seconds: 3600}}
    break_glass: {{allow: [{{groups: [oncall]}}], max_duration_seconds: 1800}}
admins: [{{groups: [admins]}}]
"""
REASON = "INC-42 payments down"


@pytest.fixture
def kill(issuer: DevIssuer, moto_server: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KillSwitch]:
    switch = build(issuer, moto_server, tmp_path, monkeypatch, POLICY)
    with switch.client:
        yield switch


def person(kill: KillSwitch, name: str, *groups: str) -> str:
    return kill.issuer.mint(f"{name}@example.com", groups=list(groups), mfa=True)


def bob(kill: KillSwitch) -> str:
    return person(kill, "bob", "developers", "oncall")


def file(kill: KillSwitch, *roles: str, seconds: int = 3600, **extra: Any) -> str:
    body = {"roles": list(roles)} if len(roles) > 1 else {"role": roles[0]}
    created = kill.call("POST", "/v1/requests", bob(kill),
                        {**body, "duration_seconds": seconds, "reason": REASON, **extra})
    assert created.status_code == 201, created.body
    return str(created.json_body["id"])


def approve(kill: KillSwitch, request_id: str, who: str, **body: Any) -> Any:
    return kill.call("POST", f"/v1/requests/{request_id}/approve", person(kill, who, "security"), body)


def granted(kill: KillSwitch, *roles: str, seconds: int = 3600, by: tuple[str, str] = ("carol", "dan")) -> str:
    request_id = file(kill, *roles, seconds=seconds)
    assert approve(kill, request_id, by[0]).status_code == 200
    done = approve(kill, request_id, by[1])
    assert done.json_body["status"] == "approved", done.body
    return request_id


def revoke_grant(kill: KillSwitch, request_id: str, who: str = "erin") -> Any:
    return kill.call("POST", f"/v1/requests/{request_id}/revoke", person(kill, who, "security"),
                     {"reason": "done early"})


def credentials(kill: KillSwitch, role: str, **extra: Any) -> Any:
    return kill.call("POST", "/v1/credentials", bob(kill), {"role": role, **extra})


def arn(account: str, name: str) -> str:
    return f"arn:aws:iam::{account}:role/rolebroker/{name}"


def entries(kill: KillSwitch, account: str) -> list[tuple[str, str | None]]:
    return sorted((e.source_identity, e.role_arn) for e in denies.entries_in(kill.boundary(account)))


def revoke_person(kill: KillSwitch, identity: str) -> dict[str, Any]:
    answer = kill.call("POST", "/v1/revocations", person(kill, "sam", "admins"),
                       {"identity": identity, "reason": "account compromised, INC-77"})
    assert answer.status_code == 201, answer.body
    body: dict[str, Any] = answer.json_body
    return body


# --------------------------------------------------------------------------
# Every way a grant ends early ends its sessions, in each of its roles


def test_revoking_a_grant_for_several_roles_denies_each_of_them(kill: KillSwitch) -> None:
    request_id = granted(kill, "db-sandbox", "db-production", "logs-production")
    assert credentials(kill, "db-production").status_code == 200
    revoked = revoke_grant(kill, request_id)
    assert revoked.status_code == 200, revoked.body
    sessions = revoked.json_body["sessions"]
    assert (sessions["kind"], sessions["status"], sessions["request"]) == ("grant", "complete", request_id)
    assert sessions["roles"] == ["db-sandbox", "db-production", "logs-production"]
    assert sorted(sessions["accounts"]) == sorted([kill[SANDBOX], kill[PRODUCTION]])
    assert entries(kill, kill[SANDBOX]) == [("bob@example.com", arn(kill[SANDBOX], "DbRole"))]
    assert entries(kill, kill[PRODUCTION]) == [("bob@example.com", arn(kill[PRODUCTION], "DbRole")),
                                                ("bob@example.com", arn(kill[PRODUCTION], "LogsRole"))]
    assert sessions["accounts"][kill[PRODUCTION]]["roles"] == [arn(kill[PRODUCTION], "DbRole"),
                                                              arn(kill[PRODUCTION], "LogsRole")]
    for role in ("db-sandbox", "db-production", "logs-production"):
        assert credentials(kill, role).status_code == 403


def test_a_narrowed_grant_ends_only_the_roles_it_granted(kill: KillSwitch) -> None:
    request_id = file(kill, "db-sandbox", "db-production", "logs-production")
    narrowed = approve(kill, request_id, "carol", roles=["db-production", "logs-production"])
    assert narrowed.status_code == 200, narrowed.body
    assert approve(kill, request_id, "dan").json_body["roles"] == ["db-production", "logs-production"]
    sessions = revoke_grant(kill, request_id).json_body["sessions"]
    assert sessions["roles"] == ["db-production", "logs-production"]
    assert list(sessions["accounts"]) == [kill[PRODUCTION]]
    assert entries(kill, kill[PRODUCTION]) == [("bob@example.com", arn(kill[PRODUCTION], "DbRole")),
                                                ("bob@example.com", arn(kill[PRODUCTION], "LogsRole"))]
    assert entries(kill, kill[SANDBOX]) == []  # never granted, so nothing of it to end


def test_revoking_a_break_glass_denies_its_role(kill: KillSwitch) -> None:
    opened = kill.call("POST", "/v1/break-glass", bob(kill),
                       {"role": "emergency-admin", "reason": REASON, "ticket": "INC-42"})
    assert opened.status_code == 201, opened.body
    assert credentials(kill, "emergency-admin").status_code == 200
    [issued] = [a for a in kill.audits("credentials") if a["outcome"] == "allowed"]
    assert issued["break_glass"] is True  # the session is tagged rolebroker:breakglass (tests/flow/test_break_glass)
    revoked = revoke_grant(kill, opened.json_body["id"])
    assert revoked.status_code == 200, revoked.body
    assert revoked.json_body["sessions"]["status"] == "complete"
    assert entries(kill, kill[EMERGENCY]) == [("bob@example.com", arn(kill[EMERGENCY], "EmergencyRole"))]
    assert credentials(kill, "emergency-admin").status_code == 403


def test_an_approved_extension_is_not_revoked_alone_its_grant_is(kill: KillSwitch) -> None:
    """Revoking an extension would mark it revoked and leave the grant it lengthened in force: refused,
    naming the grant to revoke instead."""
    parent = granted(kill, "db-production")
    extension = kill.call("POST", f"/v1/requests/{parent}/extend", bob(kill),
                          {"duration_seconds": 3600, "reason": "still fixing"})
    assert extension.status_code == 201, extension.body  # beyond the automatic 30 minutes: to approvers
    extension_id = extension.json_body["id"]
    assert approve(kill, extension_id, "carol").status_code == 200
    assert approve(kill, extension_id, "dan").json_body["status"] == "approved"
    refused = revoke_grant(kill, extension_id)
    assert refused.status_code == 409
    assert refused.json_body["Message"] == (
        f"request {extension_id} extended the grant of request {parent}; revoke {parent} to end that grant "
        "(its sessions end with it)")
    assert kill.call("GET", f"/v1/requests/{extension_id}", bob(kill)).json_body["status"] == "approved"
    assert entries(kill, kill[PRODUCTION]) == []
    assert credentials(kill, "db-production").status_code == 200
    assert revoke_grant(kill, parent).json_body["sessions"]["status"] == "complete"
    assert entries(kill, kill[PRODUCTION]) == [("bob@example.com", arn(kill[PRODUCTION], "DbRole"))]


# --------------------------------------------------------------------------
# A person's revocation reaches what they could break glass into


def test_revoking_a_person_reaches_the_account_of_a_role_they_could_only_break_glass_into(kill: KillSwitch) -> None:
    frank = person(kill, "frank", "oncall")  # no approver decides for him: break-glass is his only way in
    assert kill.call("POST", "/v1/break-glass", frank,
                     {"role": "emergency-admin", "reason": REASON, "ticket": "INC-42"}).status_code == 201
    assert kill.call("POST", "/v1/credentials", frank, {"role": "emergency-admin"}).status_code == 200
    revocation = revoke_person(kill, "frank@example.com")
    assert "emergency-admin" in revocation["roles"]
    assert revocation["accounts"][kill[EMERGENCY]]["status"] == "written"
    assert entries(kill, kill[EMERGENCY]) == [("frank@example.com", None)]
    refused = kill.call("POST", "/v1/credentials", frank, {"role": "emergency-admin"})
    assert refused.status_code == 403 and "revoked your sessions" in refused.json_body["Message"]


# --------------------------------------------------------------------------
# A revoked person decides nothing until an admin lifts it


def test_a_revoked_approver_cannot_vote_approve_deny_or_revoke_until_lifted(kill: KillSwitch) -> None:
    pending = file(kill, "db-production")
    assert approve(kill, pending, "carol").json_body["progress"]["approvals"] == 1
    revocation = revoke_person(kill, "dan@example.com")
    refused = approve(kill, pending, "dan")
    assert refused.status_code == 403
    assert refused.json_body["Message"] == (
        f"your sessions are revoked (revocation {revocation['id']}, {revocation['created_at']}): you may not "
        "approve requests until an admin lifts it")
    request = kill.call("GET", f"/v1/requests/{pending}", bob(kill)).json_body
    assert (request["status"], request["progress"]["approvals"]) == ("pending", 1)
    denied = kill.call("POST", f"/v1/requests/{pending}/deny", person(kill, "dan", "security"), {})
    assert denied.status_code == 403 and "you may not deny requests" in denied.json_body["Message"]
    other = granted(kill, "logs-production", by=("carol", "erin"))
    assert revoke_grant(kill, other, "dan").status_code == 403
    [line, *_] = [a for a in kill.audits("approve") if a["outcome"] == "denied"]
    assert (line["principal"], line["revocation"], line["request_ref"]) == ("dan@example.com", revocation["id"],
                                                                            pending)
    lifted = kill.call("DELETE", f"/v1/revocations/{revocation['id']}", person(kill, "sam", "admins"))
    assert lifted.status_code == 200, lifted.body
    assert approve(kill, pending, "dan").json_body["status"] == "approved"


def test_a_revoked_person_neither_breaks_glass_nor_reviews_nor_extends(kill: KillSwitch) -> None:
    opened = kill.call("POST", "/v1/break-glass", person(kill, "frank", "oncall"),
                       {"role": "emergency-admin", "reason": REASON, "ticket": "INC-42"})
    parent = granted(kill, "db-production")
    revocation = revoke_person(kill, "bob@example.com")
    glass = kill.call("POST", "/v1/break-glass", bob(kill),
                      {"role": "emergency-admin", "reason": REASON, "ticket": "INC-43"})
    assert glass.status_code == 403 and "you may not break glass" in glass.json_body["Message"]
    extended = kill.call("POST", f"/v1/requests/{parent}/extend", bob(kill),
                         {"duration_seconds": 900, "reason": "more"})
    assert extended.status_code == 403 and "you may not extend grants" in extended.json_body["Message"]
    again = kill.call("POST", "/v1/requests", bob(kill), {"role": "db-sandbox", "duration_seconds": 900,
                                                          "reason": REASON})
    assert again.status_code == 403 and "you may not request access" in again.json_body["Message"]
    bob_reviewer = kill.issuer.mint("bob@example.com", groups=["security"], mfa=True)  # his groups changed: still bob
    review = kill.call("POST", f"/v1/requests/{opened.json_body['id']}/review", bob_reviewer, {})
    assert review.status_code == 403
    assert review.json_body["Message"] == (
        f"your sessions are revoked (revocation {revocation['id']}, {revocation['created_at']}): you may not "
        "review break-glasses until an admin lifts it")
    outcomes = {a["action"]: a["outcome"] for a in map(json.loads, kill.audit_lines)
                if a.get("revocation") == revocation["id"] and a["action"] != "revoke-sessions"}
    assert outcomes == {"break-glass": "denied", "extend": "denied", "request": "denied", "review": "denied"}


def test_the_database_refuses_an_approval_by_someone_revoked_meanwhile(kill: KillSwitch) -> None:
    """The race: the approver passed the broker's check, then was revoked before the vote was written."""
    pending = file(kill, "db-production")
    store = AccessStore(kill.moto.client("dynamodb"), kill.table)
    request = store.get(pending)
    revoke_person(kill, "dan@example.com")
    step = ApprovalStep("dan@example.com", None, kill.clock(), 0, 1, False)
    with pytest.raises(Revoked, match="revoked"):
        store.vote(request, step, "approval 1 of 2")
    with pytest.raises(Revoked, match="revoked"):
        store.approve(request, approver="dan@example.com", now=kill.clock(),
                      grant_until=kill.clock() + timedelta(hours=1))
    assert store.get(pending).votes == ()
    assert RevocationStore(kill.moto.client("dynamodb"), kill.table).refusal("dan@example.com") is not None


# --------------------------------------------------------------------------
# Every session ends with its grant


def test_every_session_is_capped_at_its_grants_end(kill: KillSwitch) -> None:
    request_id = granted(kill, "db-production", seconds=1800)
    assert credentials(kill, "db-production").json_body["duration_seconds"] == 1800
    kill.clock.now += timedelta(seconds=600)
    assert credentials(kill, "db-production", scope="readonly").json_body["duration_seconds"] == 1200
    kill.services.console._fetch = lambda url, timeout: b'{"SigninToken": "signin-token"}'
    assert kill.call("POST", "/v1/console", bob(kill), {"role": "db-production"}).status_code == 200
    [console] = [a for a in kill.audits("console") if a["outcome"] == "allowed"]
    assert console["duration_seconds"] == 1200
    # An extension moves the grant's end: sessions from now on end with the new one; the older ones end
    # at the end they were issued for (never later than the grant).
    extended = kill.call("POST", f"/v1/requests/{request_id}/extend", bob(kill),
                         {"duration_seconds": 1200, "reason": "almost done"})
    assert extended.status_code == 200, extended.body
    assert credentials(kill, "db-production").json_body["duration_seconds"] == 2400
    glass = kill.call("POST", "/v1/break-glass", bob(kill),
                      {"role": "emergency-admin", "reason": REASON, "ticket": "INC-42", "duration_seconds": 1000})
    assert glass.status_code == 201, glass.body
    kill.clock.now += timedelta(seconds=60)
    assert credentials(kill, "emergency-admin").json_body["duration_seconds"] == 940
    sessions = [(a["role"], a["duration_seconds"]) for a in kill.audits("credentials") if a["outcome"] == "allowed"]
    assert sessions == [("db-production", 1800), ("db-production", 1200), ("db-production", 2400),
                        ("emergency-admin", 940)]
