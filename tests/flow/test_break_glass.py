"""Break-glass: access at once for the people a role names, announced loudly,
tagged on every session, and reviewed afterwards, with no second break-glass
before the review (enforced by a DynamoDB condition, raced here)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest

from chalicelib.audit import CallContext
from chalicelib.exceptions import RolebrokerError
from chalicelib.identity.tokens import Identity
from tests.flow.conftest import Jit

POLICY = """\
version: 1
accounts:
  production: {id: "333333333333", region: us-east-1}
roles:
  prod-admin:
    account: production
    role_name: AdminRole
    description: production administrator
    console: true
    allow: [{groups: [developers]}]
    approval: {approvers: {groups: [security]}, ticket: {required: true, pattern: "^INC-[0-9]+$"}}
    break_glass:
      allow: [{groups: [oncall]}]
      max_duration_seconds: 3600
    notify: {channels: [C0SRE]}
  db:
    account: production
    role_name: DbRole
    allow: [{groups: [developers]}]
    approval: {approvers: {groups: [security]}}
    break_glass: {allow: [{groups: [oncall]}], block_until_reviewed: false, max_duration_seconds: 1800}
  readonly:
    account: production
    role_name: ReadOnly
    allow: [{groups: [developers]}]
    approval: {approvers: {groups: [security]}}
slack:
  users: {U0BOB: bob@example.com, U0CAROL: carol@example.com}
  approvals_channel: C0APPROVALS
  security_channel: C0SECURITY
auditors: [{groups: [audit]}]
"""
ADMIN_ARN = "arn:aws:iam::333333333333:role/AdminRole"
REASON = "payments down, no approver awake"


@pytest.fixture
def jit_policy() -> str:
    return POLICY


@pytest.fixture
def jit_stub_sts() -> bool:
    return True


def bob(jit: Jit) -> str:
    return jit.issuer.mint("bob@example.com", groups=["developers", "oncall"])


def carol(jit: Jit) -> str:
    return jit.issuer.mint("carol@example.com", groups=["security"])


def glass(jit: Jit, token: str | None = None, **body: Any) -> Any:
    return jit.call("POST", "/v1/break-glass", token or bob(jit),
                    {"role": "prod-admin", "reason": REASON, "ticket": "INC-77", **body})


def audits(jit: Jit, action: str) -> list[dict[str, Any]]:
    return [a for a in map(json.loads, jit.audit_lines) if a["action"] == action]


def test_break_glass_grants_at_once_and_every_session_says_so(jit: Jit) -> None:
    opened = glass(jit)
    assert opened.status_code == 201, opened.body
    body = opened.json_body
    assert (body["kind"], body["status"], body["decided_by"], body["ticket"]) == (
        "break_glass", "approved", "bob@example.com", "INC-77")
    assert body["grant_until"] == (jit.clock() + timedelta(hours=1)).isoformat()
    assert body["review"] == {"status": "pending", "by": None, "at": None, "note": None}
    jit.expect_assume(ADMIN_ARN, [*jit.bob_tags("developers", "oncall"),
                                  {"Key": "rolebroker:grant", "Value": body["id"]},
                                  {"Key": "rolebroker:ticket", "Value": "INC-77"},
                                  {"Key": "rolebroker:breakglass", "Value": "true"}])
    issued = jit.call("POST", "/v1/credentials", bob(jit), {"role": "prod-admin"})
    assert issued.status_code == 200, issued.body
    [line] = [a for a in audits(jit, "credentials") if a["outcome"] == "allowed"]
    assert (line["grant"], line["break_glass"]) == (body["id"], True)


def test_a_console_link_under_a_break_glass_is_a_break_glass_session(jit: Jit) -> None:
    """Issue 13 §3's deep links under issue 12's break-glass: the console session carries its tags too."""
    body = glass(jit).json_body
    jit.expect_assume(ADMIN_ARN, [*jit.bob_tags("developers", "oncall"),
                                  {"Key": "rolebroker:grant", "Value": body["id"]},
                                  {"Key": "rolebroker:ticket", "Value": "INC-77"},
                                  {"Key": "rolebroker:breakglass", "Value": "true"}])
    link = jit.call("POST", "/v1/console", bob(jit), {"role": "prod-admin", "destination": "/rds/home"})
    assert link.status_code == 200, link.body
    assert jit.stubber is not None
    jit.stubber.assert_no_pending_responses()
    [line] = [a for a in audits(jit, "console") if a["outcome"] == "allowed"]
    assert (line["grant"], line["break_glass"]) == (body["id"], True)


def test_approvers_and_security_are_told_loudly_at_once(jit: Jit) -> None:
    request = glass(jit).json_body
    posts = {p["channel"]: p for p in jit.sent("/api/chat.postMessage")}
    assert set(posts) == {"C0APPROVALS", "C0SECURITY", "C0SRE"}
    security = json.dumps(posts["C0SECURITY"]["blocks"])
    assert ":rotating_light: *BREAK-GLASS* <!here>" in security and "Ticket: `INC-77`" in security
    assert "<!here>" not in json.dumps(posts["C0APPROVALS"]["blocks"])
    approvers = posts["C0APPROVALS"]["blocks"]
    assert approvers[-1]["type"] == "actions" and approvers[-1]["elements"][0]["action_id"] == "review"
    assert all(b["type"] != "actions" for b in posts["C0SECURITY"]["blocks"] + posts["C0SRE"]["blocks"])
    [line] = audits(jit, "break-glass")
    assert (line["outcome"], line["who"], line["role"], line["ticket"], line["request_ref"]) == (
        "approved", "bob@example.com", "prod-admin", "INC-77", request["id"])


@pytest.mark.parametrize(("token_groups", "body", "status", "fragment"), [
    (["developers"], {}, 403, "you may not break glass into role prod-admin: it needs group oncall"),
    (["oncall"], {}, 403, "you may not break glass into role prod-admin"),
    (["developers", "oncall"], {"role": "readonly"}, 403, "role readonly has no break-glass"),
    (["developers", "oncall"], {"ticket": "CHG-1"}, 400, "ticket 'CHG-1' does not match ^INC-[0-9]+$"),
    (["developers", "oncall"], {"ticket": None}, 400, "missing required field 'ticket'"),
    (["developers", "oncall"], {"reason": " "}, 400, "'reason' must contain a letter or digit"),
    (["developers", "oncall"], {"duration_seconds": 7200}, 400, "lasts at most 3600 seconds"),
    (["developers", "oncall"], {"role": "nope"}, 404, "unknown role 'nope'"),
])
def test_a_break_glass_that_is_not_allowed_is_a_clear_4xx_and_writes_nothing(
        jit: Jit, token_groups: list[str], body: dict[str, Any], status: int, fragment: str) -> None:
    response = glass(jit, jit.issuer.mint("bob@example.com", groups=token_groups), **body)
    assert response.status_code == status, response.body
    assert fragment in response.json_body["Message"]
    store = jit.services.access._store
    assert store.break_glass_lock("bob@example.com") is None
    assert store.requester_page("bob@example.com", after=None, limit=10)[0] == []
    assert jit.sent("/api/chat.postMessage") == []


def test_no_second_break_glass_until_an_approver_reviews_the_first(jit: Jit) -> None:
    first = glass(jit).json_body
    second = glass(jit)
    assert second.status_code == 409
    assert second.json_body["Message"].startswith(f"your break-glass {first['id']} still waits for its review")
    own = jit.call("POST", f"/v1/requests/{first['id']}/review", jit.issuer.mint(
        "bob@example.com", groups=["developers", "oncall", "security"]), {})
    assert own.status_code == 403 and "your own break-glass" in own.json_body["Message"]
    stranger = jit.call("POST", f"/v1/requests/{first['id']}/review",
                        jit.issuer.mint("eve@example.com", groups=["developers"]), {})
    assert stranger.status_code == 404
    deny = jit.call("POST", f"/v1/requests/{first['id']}/deny", carol(jit), {})
    assert deny.status_code == 409 and "needs a review" in deny.json_body["Message"]
    reviewed = jit.call("POST", f"/v1/requests/{first['id']}/review", carol(jit), {"reason": "looked at CloudTrail"})
    assert reviewed.status_code == 200, reviewed.body
    assert reviewed.json_body["review"]["status"] == "done"
    assert (reviewed.json_body["review"]["by"], reviewed.json_body["review"]["note"]) == (
        "carol@example.com", "looked at CloudTrail")
    again = jit.call("POST", f"/v1/requests/{first['id']}/review", carol(jit), {})
    assert again.status_code == 409 and "already reviewed" in again.json_body["Message"]
    assert glass(jit).status_code == 201
    history = jit.call("GET", f"/v1/requests/{first['id']}", bob(jit)).json_body["history"]
    assert [(h["who"], h["to"]) for h in history] == [("bob@example.com", "approved"),
                                                      ("carol@example.com", "reviewed")]


def test_the_review_updates_every_copy_and_tells_the_requester(jit: Jit) -> None:
    request = glass(jit).json_body
    jit.call("GET", "/v1/roles", carol(jit))  # carol's groups become known to Slack
    assert jit.click("U0CAROL", "review", request["id"]).status_code == 200
    updates = jit.sent("/api/chat.update")
    assert {u["channel"] for u in updates} == {"C0APPROVALS", "C0SECURITY", "C0SRE"}
    for update in updates:
        assert "*Reviewed* by carol@example.com" in json.dumps(update["blocks"])
        assert all(b["type"] != "actions" for b in update["blocks"])
    assert jit.services.access._store.break_glass_lock("bob@example.com") is None


def test_two_break_glasses_at_once_exactly_one_wins(jit: Jit) -> None:
    bob_identity = Identity(subject="bob@example.com", groups=frozenset({"developers", "oncall"}),
                            issuer=jit.issuer.url)
    barrier = threading.Barrier(4)
    outcomes: list[Any] = []

    def open_glass() -> None:
        barrier.wait(timeout=30)
        try:
            outcomes.append(jit.services.glass.open(bob_identity, "prod-admin", reason=REASON, ticket="INC-9",
                                                    context=CallContext(request_id="race")).kind)
        except RolebrokerError as exc:
            outcomes.append(exc.status)

    threads = [threading.Thread(target=open_glass) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(map(str, outcomes)) == ["409", "409", "409", "break_glass"], outcomes
    mine, _ = jit.services.access._store.requester_page("bob@example.com", after=None, limit=10)
    assert len(mine) == 1 and jit.services.access._store.break_glass_lock("bob@example.com") == mine[0].id


def test_a_role_may_allow_break_glass_again_before_the_review(jit: Jit) -> None:
    first = glass(jit, role="db")
    second = glass(jit, role="db")
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json_body["grant_until"] == (jit.clock() + timedelta(seconds=1800)).isoformat()


def test_break_glasses_waiting_for_review_are_listed_by_kind(jit: Jit) -> None:
    request = glass(jit).json_body
    file = jit.call("POST", "/v1/requests", bob(jit),
                    {"role": "readonly", "duration_seconds": 3600, "reason": "routine look"})
    assert file.status_code == 201
    waiting = jit.call("GET", "/v1/requests?kind=break_glass", carol(jit)).json_body["requests"]
    assert [r["id"] for r in waiting] == [request["id"]]
    auditor = jit.issuer.mint("audrey@example.com", groups=["audit"])
    assert [r["id"] for r in jit.call("GET", "/v1/requests?kind=break_glass", auditor).json_body["requests"]] == [
        request["id"]]
    own = jit.call("GET", "/v1/requests?kind=break_glass", bob(jit)).json_body["requests"]
    assert [r["id"] for r in own] == [request["id"]]
    everything = jit.call("GET", "/v1/requests", bob(jit)).json_body["requests"]
    assert len(everything) == 2
    assert jit.call("GET", "/v1/requests?kind=emergency", bob(jit)).status_code == 400
    token = jit.call("GET", "/v1/requests?limit=1", bob(jit)).json_body["next_token"]
    mixed = jit.call("GET", f"/v1/requests?kind=break_glass&next_token={quote(token)}", bob(jit))
    assert mixed.status_code == 400 and "next_token" in mixed.json_body["Message"]
    jit.call("POST", f"/v1/requests/{request['id']}/review", carol(jit), {})
    assert jit.call("GET", "/v1/requests?kind=break_glass", carol(jit)).json_body["requests"] == []


def test_break_glass_and_review_from_slack(jit: Jit) -> None:
    jit.call("GET", "/v1/roles", bob(jit))
    jit.call("GET", "/v1/roles", carol(jit))
    jit.command("U0BOB", "break-glass prod-admin INC-5 payments down again")
    reply = jit.sent("/hooks/commands/1")[-1]["text"]
    assert reply.startswith(":rotating_light: Break-glass `") and "*prod-admin*" in reply
    request_id = reply.split("`")[1]
    jit.command("U0BOB", f"break-glass prod-admin INC-6 {REASON}")
    assert "still waits for its review" in jit.sent("/hooks/commands/1")[-1]["text"]
    jit.command("U0CAROL", f"review {request_id} checked, all fine")
    assert jit.sent("/hooks/commands/1")[-1]["text"] == (
        f"Reviewed break-glass `{request_id}` (bob@example.com, prod-admin).")
    detail = jit.call("GET", f"/v1/requests/{request_id}", bob(jit)).json_body
    assert detail["review"]["note"] == "checked, all fine"


def test_roles_say_who_may_break_glass(jit: Jit) -> None:
    mine = {r["name"]: r["break_glass"] for r in jit.call("GET", "/v1/roles", bob(jit)).json_body["roles"]}
    assert mine == {"prod-admin": True, "db": True, "readonly": False}
    dev = jit.issuer.mint("dana@example.com", groups=["developers"])
    assert not any(r["break_glass"] for r in jit.call("GET", "/v1/roles", dev).json_body["roles"])
