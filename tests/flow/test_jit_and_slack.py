"""Just-in-time access and Slack, end to end through the app: DynamoDB and
STS on a moto server, Slack's Web API, response_url and AWS sign-in on a
local HTTP server (pytest-httpserver) that records what we sent."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import timedelta
from urllib.parse import urlencode

import pytest

from chalicelib.exceptions import Conflict
from tests.flow.conftest import EVENTS, SIGNING_SECRET, Jit


def test_request_approve_use_and_expire(jit: Jit) -> None:
    denied = jit.call("POST", "/v1/credentials", jit.bob(), {"role": "breakglass"})
    assert denied.status_code == 403 and "approved access request" in denied.json_body["Message"]

    request = jit.request(seconds=3600)
    assert request["status"] == "pending" and request["requester"] == "bob@example.com"
    posted = jit.sent("/api/chat.postMessage")
    assert len(posted) == 1 and posted[0]["channel"] == "C0APPROVALS"
    buttons = posted[0]["blocks"][-1]["elements"]
    assert [b["action_id"] for b in buttons] == ["approve", "deny"] and buttons[0]["value"] == request["id"]

    approved = jit.call("POST", f"/v1/requests/{request['id']}/approve", jit.carol(), {})
    assert approved.status_code == 200, approved.body
    assert approved.json_body["status"] == "approved" and approved.json_body["decided_by"] == "carol@example.com"
    updates = jit.sent("/api/chat.update")
    assert len(updates) == 1 and updates[0]["ts"] == "1700000000.000100"
    assert "Approved* by carol@example.com" in updates[0]["blocks"][-1]["text"]["text"]

    roles = {r["name"]: r["access"] for r in jit.call("GET", "/v1/roles", jit.bob()).json_body["roles"]}
    assert roles["breakglass"].startswith("granted_until:")

    jit.clock.now += timedelta(minutes=50)  # 10 minutes of grant left: below STS's 900 s minimum
    short = jit.call("POST", "/v1/credentials", jit.bob(), {"role": "breakglass"})
    assert short.status_code == 403 and "900-second minimum" in short.json_body["Message"]

    jit.clock.now -= timedelta(minutes=30)  # 40 minutes left: credentials capped at the grant's end
    issued = jit.call("POST", "/v1/credentials", jit.bob(), {"role": "breakglass"})
    assert issued.status_code == 200, issued.body
    assert issued.json_body["duration_seconds"] <= 40 * 60
    assert any("end with your grant" in w for w in issued.json_body["warnings"])

    jit.clock.now += timedelta(hours=2)
    expired = jit.call("POST", "/v1/credentials", jit.bob(), {"role": "breakglass"})
    assert expired.status_code == 403
    detail = jit.call("GET", f"/v1/requests/{request['id']}", jit.bob()).json_body
    assert detail["status"] == "expired"
    assert [(h["from"], h["to"]) for h in detail["history"]] == [(None, "pending"), ("pending", "approved")]


def test_grant_is_capped_by_max_grant_seconds(jit: Jit) -> None:
    response = jit.call("POST", "/v1/requests", jit.bob(),
                        {"role": "breakglass", "duration_seconds": 10800, "reason": "x"})
    assert response.status_code == 400 and "at most 7200" in response.json_body["Message"]


def test_requester_cannot_approve_by_api_by_button_or_in_the_database(jit: Jit) -> None:
    request = jit.request()
    self_api = jit.call("POST", f"/v1/requests/{request['id']}/approve",
                        jit.issuer.mint("bob@example.com", groups=["developers", "security"]), {})
    assert self_api.status_code == 403 and "your own request" in self_api.json_body["Message"]

    # Bob is in security now (his last token said so), and clicks Approve himself.
    ack = jit.click("U0BOB", "approve", request["id"])
    assert ack.status_code == 200
    replies = jit.sent("/hooks/actions/1")
    assert "your own request" in replies[-1]["text"] and replies[-1]["response_type"] == "ephemeral"

    store = jit.services.access._store
    pending = store.get(request["id"])
    with pytest.raises(Conflict):
        store.approve(pending, approver="bob@example.com", now=jit.clock(), grant_until=jit.clock())
    assert store.get(request["id"]).status == "pending"


def test_concurrent_approve_and_deny_resolve_to_one_outcome(jit: Jit) -> None:
    request = jit.request()
    store = jit.services.access._store
    pending = store.get(request["id"])
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def decide(kind: str, who: str) -> None:
        barrier.wait()
        try:
            if kind == "approve":
                store.approve(pending, approver=who, now=jit.clock(), grant_until=jit.clock() + timedelta(hours=1))
            else:
                store.deny(pending, approver=who, now=jit.clock(), note=None)
            outcomes.append(kind)
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=decide, args=(kind, f"approver{i}@example.com"))
               for i, kind in enumerate(["approve", "deny"] * 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes).count("conflict") == 5, outcomes
    final = store.get(request["id"])
    winner = next(o for o in outcomes if o != "conflict")
    assert final.status == {"approve": "approved", "deny": "denied"}[winner]
    assert len(store.history(request["id"])) == 2


def test_approval_after_the_pending_timeout_fails(jit: Jit) -> None:
    request = jit.request()
    jit.clock.now += timedelta(hours=2)
    late = jit.call("POST", f"/v1/requests/{request['id']}/approve", jit.carol(), {})
    assert late.status_code == 409 and "expired" in late.json_body["Message"]


def test_mfa_roles_cannot_be_approved_from_slack(jit: Jit) -> None:
    request = jit.request(role="dba")
    assert "MFA" in json.dumps(jit.sent("/api/chat.postMessage")[-1]["blocks"])
    jit.call("GET", "/v1/roles", jit.carol())  # carol's groups become known to Slack
    jit.click("U0CAROL", "approve", request["id"])
    assert "Slack cannot prove" in jit.sent("/hooks/actions/1")[-1]["text"]
    no_mfa = jit.call("POST", f"/v1/requests/{request['id']}/approve", jit.carol(), {})
    assert no_mfa.status_code == 403 and "requires MFA" in no_mfa.json_body["Message"]
    with_mfa = jit.call("POST", f"/v1/requests/{request['id']}/approve", jit.carol(mfa=True), {})
    assert with_mfa.status_code == 200


def test_slack_button_approval_updates_the_message(jit: Jit) -> None:
    request = jit.request()
    jit.call("GET", "/v1/roles", jit.carol())
    assert jit.click("U0CAROL", "approve", request["id"]).status_code == 200
    detail = jit.call("GET", f"/v1/requests/{request['id']}", jit.bob()).json_body
    assert detail["status"] == "approved" and detail["decided_by"] == "carol@example.com"
    assert "Approved* by carol@example.com" in jit.sent("/api/chat.update")[-1]["blocks"][-1]["text"]["text"]


def test_others_cannot_see_or_decide_a_request(jit: Jit) -> None:
    request = jit.request()
    stranger = jit.issuer.mint("eve@example.com", groups=["developers"])
    assert jit.call("GET", f"/v1/requests/{request['id']}", stranger).status_code == 404
    assert jit.call("POST", f"/v1/requests/{request['id']}/approve", stranger, {}).status_code == 404
    assert jit.call("GET", "/v1/requests/not-an-id", stranger).status_code == 404
    listed = jit.call("GET", "/v1/requests", stranger).json_body["requests"]
    assert listed == []
    assert [r["id"] for r in jit.call("GET", "/v1/requests", jit.carol()).json_body["requests"]] == [request["id"]]


def test_cancel_and_revoke(jit: Jit) -> None:
    first = jit.request()
    assert jit.call("POST", f"/v1/requests/{first['id']}/cancel", jit.carol(), {}).status_code == 403
    assert jit.call("POST", f"/v1/requests/{first['id']}/cancel", jit.bob(), {}).json_body["status"] == "cancelled"
    second = jit.request()
    jit.call("POST", f"/v1/requests/{second['id']}/approve", jit.carol(), {})
    revoked = jit.call("POST", f"/v1/requests/{second['id']}/revoke", jit.carol(), {"reason": "incident over"})
    assert revoked.json_body["status"] == "revoked"
    assert jit.call("POST", "/v1/credentials", jit.bob(), {"role": "breakglass"}).status_code == 403


def test_slack_signature_is_checked_before_anything(jit: Jit) -> None:
    form = {"text": "roles", "user_id": "U0BOB"}
    assert jit.signed_post("/slack/commands", form, secret="wrong").status_code == 401
    assert jit.signed_post("/slack/commands", form, timestamp=int(time.time()) - 600).status_code == 401
    unsigned = jit.client.http.post("/slack/commands", body=urlencode(form),
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert unsigned.status_code == 401
    denied = [json.loads(line) for line in jit.audit_lines if '"action": "slack"' in line]
    assert len(denied) == 3 and all(a["outcome"] == "denied" for a in denied)
    assert jit.sent("/hooks/commands/1") == []
    assert SIGNING_SECRET not in "\n".join(jit.audit_lines)


@pytest.mark.parametrize(("timestamp", "signature"), [
    ("now", "v0=" + "\u00e9" * 64),
    ("now", "v0=" + "\ud800" * 64),
    ("\u0661" * 10, "v0=" + "0" * 64),  # ARABIC-INDIC DIGIT ONE: isdigit() but not ASCII
], ids=["non-ASCII signature", "lone surrogates", "non-ASCII digits"])
def test_a_non_ascii_slack_signature_is_a_401_with_an_audit_line(jit: Jit, timestamp: str, signature: str) -> None:
    # Review ATTACK9 F8: this was a 500 with a traceback and no audit line.
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Signature": signature,
               "X-Slack-Request-Timestamp": str(int(time.time())) if timestamp == "now" else timestamp}
    answer = jit.client.http.post("/slack/commands", headers=headers, body=b"team_id=T0001&text=roles&user_id=U0BOB")
    assert answer.status_code == 401, answer.body
    denied = [json.loads(line) for line in jit.audit_lines if '"action": "slack"' in line]
    assert [(a["outcome"], a["reason"]) for a in denied] == [("denied", "invalid Slack signature")]


def test_ssl_check_and_help_answer_at_once(jit: Jit) -> None:
    ssl = jit.signed_post("/slack/commands", json.loads((EVENTS / "slack_ssl_check.json").read_text()))
    assert ssl.status_code == 200 and ssl.body in (b"", "")
    help_reply = jit.command("U0BOB", "what is this")
    assert help_reply.json_body["response_type"] == "ephemeral"
    assert ("/aws request ROLE[,ROLE…] DURATION [ticket=ID] [scope=NAME] [start=ISO-TIME] REASON"
            in help_reply.json_body["text"])
    assert jit.sent("/hooks/commands/1") == []


def test_slack_roles_use_the_same_policy_and_the_last_verified_groups(jit: Jit) -> None:
    assert "working on" in jit.command("U0BOB", "roles").json_body["text"]
    assert "not seen a sign-in of yours (bob@example.com)" in jit.sent("/hooks/commands/1")[-1]["text"]
    jit.call("GET", "/v1/roles", jit.bob())  # a verified token tells the broker bob's groups
    jit.command("U0BOB", "roles")
    text = jit.sent("/hooks/commands/1")[-1]["text"]
    assert "`readonly`" in text and "`breakglass`" in text and "approval required" in text


def test_unmapped_slack_user_gets_a_clear_message(jit: Jit) -> None:
    jit.command("U0GHOST", "roles")
    assert "not linked to a rolebroker identity" in jit.sent("/hooks/commands/1")[-1]["text"]


def test_email_from_users_info_maps_the_user(jit: Jit) -> None:
    jit.call("GET", "/v1/roles", jit.issuer.mint("alice@example.com", groups=["developers"]))
    jit.command("U0ALICE", "roles")
    assert "alice@example.com" in jit.sent("/hooks/commands/1")[-1]["text"]
    assert jit.sent("/api/users.info")[0]["user"] == "U0ALICE"


def test_slack_request_and_approve_commands(jit: Jit) -> None:
    jit.call("GET", "/v1/roles", jit.bob())
    jit.call("GET", "/v1/roles", jit.carol())
    jit.command("U0BOB", "request breakglass 1h INC-7 payments down")
    reply = jit.sent("/hooks/commands/1")[-1]["text"]
    request_id = re.search(r"`([0-9a-f]{12})`", reply).group(1)  # type: ignore[union-attr]
    jit.command("U0CAROL", f"approve {request_id}")
    assert "Approved" in jit.sent("/hooks/commands/1")[-1]["text"]
    dms = [m for m in jit.sent("/api/chat.postMessage") if m["channel"] == "U0BOB"]
    assert dms and "approved" in dms[-1]["text"].lower()


def test_console_link_goes_only_to_the_person_and_no_secret_reaches_slack(jit: Jit) -> None:
    jit.call("GET", "/v1/roles", jit.bob())
    jit.command("U0BOB", "console readonly")
    reply = jit.sent("/hooks/commands/1")[-1]
    assert reply["response_type"] == "ephemeral" and "SigninToken=signin-token-xyz" in reply["text"]
    api_link = jit.call("POST", "/v1/console", jit.bob(), {"role": "readonly"}).json_body
    assert "Action=login" in api_link["url"] and api_link["expires_at"]
    federation = [r for r, _ in jit.slack.log if r.path == "/federation"]
    session = json.loads(federation[-1].args["Session"])
    sent = jit.everything_sent()
    for secret in (session["sessionKey"], session["sessionToken"], SIGNING_SECRET, "fake-bot-token-for-tests"):
        assert secret not in sent
    assert not re.search(r"ASIA[A-Z0-9]{16}", sent)


def test_slack_console_deep_links_to_a_service(jit: Jit) -> None:
    from urllib.parse import parse_qs, urlsplit

    jit.call("GET", "/v1/roles", jit.bob())
    jit.command("U0BOB", "console readonly s3")
    text = jit.sent("/hooks/commands/1")[-1]["text"]
    url = text[1:text.index("|")]
    destination = parse_qs(urlsplit(url).query)["Destination"]
    assert destination == ["https://us-east-1.console.aws.amazon.com/s3/home?region=us-east-1"]
    jit.command("U0BOB", "console readonly s3.evil.example.com")
    assert "must be a console service name" in jit.sent("/hooks/commands/1")[-1]["text"]


def test_console_needs_console_true(jit: Jit) -> None:
    jit.call("POST", f"/v1/requests/{jit.request()['id']}/approve", jit.carol(), {})
    response = jit.call("POST", "/v1/console", jit.bob(), {"role": "dba"})
    assert response.status_code == 403
