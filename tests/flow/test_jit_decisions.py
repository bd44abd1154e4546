"""Who may file, deny, cancel and revoke, over every channel, and what the
audit trail says about each step (field by field, not just that a line exists)."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.flow.conftest import Jit

BREAKGLASS_ACCOUNT = "333333333333"


def audits(jit: Jit, action: str) -> list[dict[str, Any]]:
    return [a for a in map(json.loads, jit.audit_lines) if a["action"] == action]


def slack_ready(jit: Jit) -> None:
    """Bob and Carol have signed in once, so Slack knows their groups."""
    jit.call("GET", "/v1/roles", jit.bob())
    jit.call("GET", "/v1/roles", jit.carol())


def test_an_ineligible_caller_cannot_file_a_request(jit: Jit) -> None:
    eve = jit.issuer.mint("eve@example.com", groups=["interns"])
    response = jit.call("POST", "/v1/requests", eve,
                        {"role": "breakglass", "duration_seconds": 3600, "reason": "just looking"})
    assert response.status_code == 403
    assert response.json_body["Message"] == (
        "you may not request role breakglass: role breakglass requires group developers")
    [denied] = audits(jit, "request")
    assert (denied["outcome"], denied["who"], denied["role"], denied["account"]) == (
        "denied", "eve@example.com", "breakglass", BREAKGLASS_ACCOUNT)
    assert denied["reason"] == "role breakglass requires group developers"
    assert "request_ref" not in denied
    assert jit.sent("/api/chat.postMessage") == []
    assert jit.call("GET", "/v1/requests", jit.carol()).json_body["requests"] == []


def test_deny_over_the_api(jit: Jit) -> None:
    request = jit.request()
    denied = jit.call("POST", f"/v1/requests/{request['id']}/deny", jit.carol(), {"reason": "use readonly"})
    assert denied.status_code == 200, denied.body
    body = denied.json_body
    assert (body["status"], body["decided_by"], body["note"]) == ("denied", "carol@example.com", "use readonly")
    assert body["grant_until"] is None
    assert jit.call("POST", "/v1/credentials", jit.bob(), {"role": "breakglass"}).status_code == 403
    detail = jit.call("GET", f"/v1/requests/{request['id']}", jit.bob()).json_body
    assert [(h["from"], h["to"], h["who"], h["note"]) for h in detail["history"]] == [
        (None, "pending", "bob@example.com", "INC-42 database down"),
        ("pending", "denied", "carol@example.com", "use readonly")]
    assert [h["at"] for h in detail["history"]] == [jit.clock().isoformat()] * 2
    [line] = audits(jit, "deny")
    assert {k: line.get(k) for k in ("outcome", "who", "role", "account", "request_ref", "requester", "reason")} == {
        "outcome": "denied", "who": "carol@example.com", "role": "breakglass", "account": BREAKGLASS_ACCOUNT,
        "request_ref": request["id"], "requester": "bob@example.com", "reason": "use readonly"}
    update = jit.sent("/api/chat.update")[-1]["blocks"][-1]["text"]["text"]
    assert "*Denied* by carol@example.com" in update and "(use readonly)" in update
    again = jit.call("POST", f"/v1/requests/{request['id']}/approve", jit.carol(), {})
    assert again.status_code == 409 and "is denied, not pending" in again.json_body["Message"]


def test_deny_refuses_the_requester_and_strangers(jit: Jit) -> None:
    request = jit.request()
    own = jit.call("POST", f"/v1/requests/{request['id']}/deny",
                   jit.issuer.mint("bob@example.com", groups=["developers", "security"]), {})
    assert own.status_code == 403 and "your own request" in own.json_body["Message"]
    stranger = jit.call("POST", f"/v1/requests/{request['id']}/deny",
                        jit.issuer.mint("dave@example.com", groups=["developers"]), {})
    assert stranger.status_code == 404
    assert jit.call("GET", f"/v1/requests/{request['id']}", jit.bob()).json_body["status"] == "pending"
    [refused] = audits(jit, "deny")
    assert (refused["outcome"], refused["who"], refused["reason"], refused["request_ref"]) == (
        "denied", "bob@example.com", "self-approval", request["id"])


def test_approve_refuses_the_requester_with_an_audit_line(jit: Jit) -> None:
    request = jit.request()
    own = jit.call("POST", f"/v1/requests/{request['id']}/approve",
                   jit.issuer.mint("bob@example.com", groups=["developers", "security"]), {})
    assert own.status_code == 403
    [refused] = audits(jit, "approve")
    assert (refused["outcome"], refused["who"], refused["reason"], refused["request_ref"], refused["role"]) == (
        "denied", "bob@example.com", "self-approval", request["id"], "breakglass")


def test_deny_with_the_slack_command(jit: Jit) -> None:
    slack_ready(jit)
    request = jit.request()
    jit.command("U0CAROL", f"deny {request['id']} not during the freeze")
    assert jit.sent("/hooks/commands/1")[-1]["text"] == (
        f"Denied `{request['id']}` (bob@example.com, breakglass).")
    detail = jit.call("GET", f"/v1/requests/{request['id']}", jit.bob()).json_body
    assert (detail["status"], detail["decided_by"], detail["note"]) == (
        "denied", "carol@example.com", "not during the freeze")
    [denied] = audits(jit, "deny")
    assert (denied["channel"], denied["who"], denied["reason"]) == (
        "slack", "carol@example.com", "not during the freeze")


def test_deny_with_the_slack_button(jit: Jit) -> None:
    slack_ready(jit)
    request = jit.request()
    assert jit.click("U0CAROL", "deny", request["id"]).status_code == 200
    detail = jit.call("GET", f"/v1/requests/{request['id']}", jit.bob()).json_body
    assert (detail["status"], detail["decided_by"], detail["note"]) == ("denied", "carol@example.com", None)
    update = jit.sent("/api/chat.update")[-1]
    assert "*Denied* by carol@example.com" in update["blocks"][-1]["text"]["text"]
    assert all(b["type"] != "actions" for b in update["blocks"])
    [line] = audits(jit, "deny")
    assert (line["outcome"], line["channel"], line["reason"], line["request_ref"]) == (
        "denied", "slack", "", request["id"])


def test_only_an_approver_can_revoke(jit: Jit) -> None:
    request = jit.request()
    jit.call("POST", f"/v1/requests/{request['id']}/approve", jit.carol(), {})
    by_requester = jit.call("POST", f"/v1/requests/{request['id']}/revoke", jit.bob(), {})
    assert by_requester.status_code == 403
    assert by_requester.json_body["Message"] == "only an approver of role breakglass can revoke its grants"
    assert jit.call("GET", f"/v1/requests/{request['id']}", jit.bob()).json_body["status"] == "approved"
    assert audits(jit, "revoke") == []
    pending = jit.request()
    early = jit.call("POST", f"/v1/requests/{pending['id']}/revoke", jit.carol(), {})
    assert early.status_code == 409 and "is pending, not approved" in early.json_body["Message"]


def test_audit_lines_of_a_requests_life(jit: Jit) -> None:
    first = jit.request()
    cancelled = jit.call("POST", f"/v1/requests/{first['id']}/cancel", jit.bob(), {}).json_body
    second = jit.request()
    approved = jit.call("POST", f"/v1/requests/{second['id']}/approve", jit.carol(), {}).json_body
    jit.call("POST", f"/v1/requests/{second['id']}/revoke", jit.carol(), {"reason": "incident over"})

    created = audits(jit, "request")
    assert [c["request_ref"] for c in created] == [first["id"], second["id"]]
    line = created[0]
    assert {k: line[k] for k in ("outcome", "who", "issuer", "groups", "role", "account", "reason", "channel")} == {
        "outcome": "created", "who": "bob@example.com", "issuer": jit.issuer.url, "groups": ["developers"],
        "role": "breakglass", "account": BREAKGLASS_ACCOUNT, "reason": "INC-42 database down", "channel": "api"}
    assert re.fullmatch(r"[0-9a-f-]{36}", line["request_id"])

    [cancel] = audits(jit, "cancel")
    assert {k: cancel.get(k) for k in ("outcome", "who", "role", "account", "request_ref", "requester")} == {
        "outcome": "cancelled", "who": "bob@example.com", "role": "breakglass", "account": BREAKGLASS_ACCOUNT,
        "request_ref": first["id"], "requester": "bob@example.com"}
    assert cancelled["status"] == "cancelled" and cancel["reason"] == ""
    assert "*Cancelled* by bob@example.com" in jit.sent("/api/chat.update")[0]["blocks"][-1]["text"]["text"]

    [approve] = audits(jit, "approve")
    assert {k: approve.get(k) for k in ("outcome", "who", "groups", "role", "account", "request_ref",
                                        "requester", "reason")} == {
        "outcome": "approved", "who": "carol@example.com", "groups": ["security"], "role": "breakglass",
        "account": BREAKGLASS_ACCOUNT, "request_ref": second["id"], "requester": "bob@example.com",
        "reason": f"grant until {approved['grant_until']}"}

    [revoke] = audits(jit, "revoke")
    assert {k: revoke.get(k) for k in ("outcome", "who", "role", "account", "request_ref", "requester",
                                       "reason")} == {
        "outcome": "revoked", "who": "carol@example.com", "role": "breakglass", "account": BREAKGLASS_ACCOUNT,
        "request_ref": second["id"], "requester": "bob@example.com", "reason": "incident over"}
    revoked = jit.call("GET", f"/v1/requests/{second['id']}", jit.bob()).json_body
    assert (revoked["status"], revoked["note"]) == ("revoked", "incident over")
    assert "*Revoked* by carol@example.com" in jit.sent("/api/chat.update")[-1]["blocks"][-1]["text"]["text"]


# Issue 13 §6.1: `rolebroker request ROLE --reason ...` without --duration.
def test_a_request_without_a_duration_asks_for_the_roles_longest_grant(jit: Jit) -> None:
    response = jit.call("POST", "/v1/requests", jit.bob(), {"role": "breakglass", "reason": "INC-42 database down"})
    assert response.status_code == 201, response.body
    assert response.json_body["duration_seconds"] == 7200  # breakglass: max_grant_seconds 7200
    [created] = audits(jit, "request")
    assert created["outcome"] == "created"


def test_a_duration_of_null_is_the_same_as_none(jit: Jit) -> None:
    response = jit.call("POST", "/v1/requests", jit.bob(),
                        {"role": "breakglass", "duration_seconds": None, "reason": "INC-42 database down"})
    assert response.status_code == 201, response.body
    assert response.json_body["duration_seconds"] == 7200
