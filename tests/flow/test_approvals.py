"""N of M approvers and ordered stages, tickets, and people who are told but
do not decide: over the API and Slack, with DynamoDB on a moto server and
STS answered by a Stubber (so the ticket's session tag is checked exactly)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.audit import CallContext
from chalicelib.aws.store import AccessStore, ApprovalStep
from chalicelib.exceptions import Conflict, RolebrokerError
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
    allow: [{groups: [developers]}]
    approval:
      stages:
        - {name: team-lead, approvers: {groups: [leads]}}
        - {name: security, approvers: {groups: [security]}, required: 2}
      ticket: {required: true, pattern: "^(INC|CHG)-[0-9]+$"}
      max_grant_seconds: 7200
    notify: {channels: [C0SRE], watchers: [{groups: [sre-leads]}]}
  db:
    account: production
    role_name: DbRole
    allow: [{groups: [developers]}]
    approval: {approvers: {groups: [security]}, required: 2, max_grant_seconds: 3600}
slack:
  users: {U0BOB: bob@example.com, U0CAROL: carol@example.com, U0DAN: dan@example.com, U0LEA: lea@example.com}
  approvals_channel: C0APPROVALS
"""
ADMIN_ARN = "arn:aws:iam::333333333333:role/AdminRole"
REASON = "INC-42 payments down"


@pytest.fixture
def jit_policy() -> str:
    return POLICY


@pytest.fixture
def jit_stub_sts() -> bool:
    return True


def token(jit: Jit, who: str, *groups: str, sub: str | None = None) -> str:
    claims = {"email": f"{who}@example.com", "email_verified": True}
    return jit.issuer.mint(sub or f"{who}@example.com", groups=list(groups), claims=claims)


def bob(jit: Jit) -> str:
    return token(jit, "bob", "developers")


def file(jit: Jit, role: str = "db", **extra: Any) -> dict[str, Any]:
    response = jit.call("POST", "/v1/requests", bob(jit),
                        {"role": role, "duration_seconds": 3600, "reason": REASON, **extra})
    assert response.status_code == 201, response.body
    body: dict[str, Any] = response.json_body
    return body


def approve(jit: Jit, request_id: str, who: str, *groups: str, **kwargs: Any) -> Any:
    return jit.call("POST", f"/v1/requests/{request_id}/approve", token(jit, who, *groups, **kwargs), {})


def audits(jit: Jit, action: str) -> list[dict[str, Any]]:
    return [a for a in map(json.loads, jit.audit_lines) if a["action"] == action]


# --------------------------------------------------------------------------
# N of M


def test_two_approvers_are_needed_and_each_counts_once(jit: Jit) -> None:
    request = file(jit)
    assert request["progress"] == {"stage": 1, "stages": 1, "stage_name": "approval", "approvals": 0, "required": 2}
    first = approve(jit, request["id"], "carol", "security")
    assert first.status_code == 200, first.body
    assert first.json_body["status"] == "pending"
    assert first.json_body["progress"]["approvals"] == 1
    assert [a["who"] for a in first.json_body["approvals"]] == ["carol@example.com"]
    again = approve(jit, request["id"], "carol", "security")
    assert again.status_code == 409 and "already approved" in again.json_body["Message"]
    assert jit.call("POST", "/v1/credentials", bob(jit), {"role": "db"}).status_code == 403
    second = approve(jit, request["id"], "dan", "security")
    assert second.status_code == 200 and second.json_body["status"] == "approved"
    assert second.json_body["decided_by"] == "dan@example.com" and second.json_body["progress"] is None
    assert [a["who"] for a in second.json_body["approvals"]] == ["carol@example.com", "dan@example.com"]
    history = jit.call("GET", f"/v1/requests/{request['id']}", bob(jit)).json_body["history"]
    assert [(h["who"], h["from"], h["to"]) for h in history] == [
        ("bob@example.com", None, "pending"), ("carol@example.com", "pending", "pending"),
        ("dan@example.com", "pending", "approved")]
    assert history[1]["note"] == "approval 1 of 2 in stage 1 (approval)"
    assert [(a["outcome"], a["who"]) for a in audits(jit, "approve")] == [
        ("counted", "carol@example.com"), ("approved", "dan@example.com")]
    third = approve(jit, request["id"], "erin", "security")
    assert third.status_code == 409 and "is approved, not pending" in third.json_body["Message"]


def test_the_same_person_under_another_email_counts_once(jit: Jit) -> None:
    request = file(jit)
    assert approve(jit, request["id"], "carol", "security", sub="00uCAROL").status_code == 200
    renamed = approve(jit, request["id"], "carol.new", "security", sub="00uCAROL")
    assert renamed.status_code == 409 and "already approved" in renamed.json_body["Message"]
    assert jit.services.access._store.get(request["id"]).status == "pending"


def test_the_database_refuses_a_second_approval_by_the_same_person_or_for_a_taken_place(jit: Jit) -> None:
    store: AccessStore = jit.services.access._store
    request = file(jit)
    seen = store.get(request["id"])
    now = jit.clock()
    store.vote(seen, ApprovalStep("carol@example.com", (jit.issuer.url, "00uCAROL"), now, 0, 1, False), "1 of 2")
    # The code's checks skipped: the database alone refuses each of these.
    with pytest.raises(Conflict):  # the place carol took, taken again by dan with a stale read
        store.vote(seen, ApprovalStep("dan@example.com", None, now, 0, 1, False), "1 of 2")
    fresh = store.get(request["id"])
    with pytest.raises(Conflict):  # carol again, completing the request
        store.approve(fresh, approver="carol@example.com", now=now, grant_until=now + timedelta(hours=1))
    with pytest.raises(Conflict):  # carol under another email, same iss + sub
        store.approve(fresh, approver="carol.new@example.com", approver_sub=(jit.issuer.url, "00uCAROL"), now=now,
                      grant_until=now + timedelta(hours=1))
    with pytest.raises(Conflict):  # the requester
        store.approve(fresh, approver="bob@example.com", now=now, grant_until=now + timedelta(hours=1))
    assert store.get(request["id"]).status == "pending"
    store.approve(fresh, approver="dan@example.com", now=now, grant_until=now + timedelta(hours=1))
    assert store.get(request["id"]).status == "approved"


def test_two_approvals_at_once_both_count_exactly_once_and_a_third_is_a_409(jit: Jit,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Both approvers read the request before either writes (a barrier in front of the store's read), so
    both aim for the same place: the database lets one take it, and the other counts after reading again."""
    store: AccessStore = jit.services.access._store
    request = file(jit)
    read = store.get
    barrier = threading.Barrier(2)
    first_read: set[int] = set()

    def racing_get(request_id: str) -> Any:
        found = read(request_id)
        if threading.get_ident() not in first_read:
            first_read.add(threading.get_ident())
            barrier.wait(timeout=30)
        return found

    monkeypatch.setattr(store, "get", racing_get)
    refused: list[str] = []
    vote = store.vote

    def counted_vote(*args: Any, **kwargs: Any) -> None:
        try:
            vote(*args, **kwargs)
        except Conflict:
            refused.append("vote")
            raise

    monkeypatch.setattr(store, "vote", counted_vote)
    outcomes: dict[str, Any] = {}

    def approve_as(who: str) -> None:
        identity = Identity(subject=f"{who}@example.com", groups=frozenset({"security"}), issuer=jit.issuer.url)
        try:
            outcomes[who] = jit.services.access.approve(identity, request["id"],
                                                        context=CallContext(request_id="race")).status
        except RolebrokerError as exc:
            outcomes[who] = exc.status

    threads = [threading.Thread(target=approve_as, args=(who,)) for who in ("carol", "dan")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    monkeypatch.setattr(store, "get", read)
    assert refused == ["vote"]  # the race happened: both aimed for the first place, the database let one in
    # Neither approver got an error; what each saw afterwards depends on who read last.
    assert set(outcomes) == {"carol", "dan"} and set(outcomes.values()) <= {"pending", "approved"}, outcomes
    assert sorted(a["outcome"] for a in audits(jit, "approve")) == ["approved", "counted"]
    final = store.get(request["id"])
    assert final.status == "approved"
    assert sorted(v.who for v in final.votes) == ["carol@example.com", "dan@example.com"]
    assert len(store.history(request["id"])) == 3  # created, one counted approval, approved
    surplus = approve(jit, request["id"], "erin", "security")
    assert surplus.status_code == 409


# --------------------------------------------------------------------------
# Stages


def test_stages_run_in_order_and_nobody_approves_twice_or_their_own(jit: Jit) -> None:
    request = file(jit, "prod-admin", ticket="INC-42")
    early = approve(jit, request["id"], "carol", "security")
    assert early.status_code == 403
    assert early.json_body["Message"] == (f"request {request['id']} waits for stage 1 of 2 (team-lead), whose "
                                          "approvers need group leads")
    both = ("leads", "security")
    assert approve(jit, request["id"], "lea", *both).json_body["progress"] == {
        "stage": 2, "stages": 2, "stage_name": "security", "approvals": 0, "required": 2}
    twice = approve(jit, request["id"], "lea", *both)  # a lead who is also in security: one approval only
    assert twice.status_code == 409 and "already approved" in twice.json_body["Message"]
    own = jit.call("POST", f"/v1/requests/{request['id']}/approve", token(jit, "bob", "developers", *both), {})
    assert own.status_code == 403 and "your own request" in own.json_body["Message"]
    assert approve(jit, request["id"], "carol", "security").json_body["progress"]["approvals"] == 1
    done = approve(jit, request["id"], "dan", "security").json_body
    assert done["status"] == "approved"
    assert [(a["who"], a["stage"]) for a in done["approvals"]] == [
        ("lea@example.com", "team-lead"), ("carol@example.com", "security"), ("dan@example.com", "security")]


def test_the_slack_message_shows_progress_and_every_copy_follows(jit: Jit) -> None:
    jit.call("GET", "/v1/roles", token(jit, "lea", "leads"))  # lea's groups become known to Slack
    request = file(jit, "prod-admin", ticket="CHG-7")
    posted = {p["channel"]: p for p in jit.sent("/api/chat.postMessage")}
    assert set(posted) == {"C0APPROVALS", "C0SRE"}
    approvers = json.dumps(posted["C0APPROVALS"]["blocks"])
    assert "Waiting for 0 of 1 approvals in stage 1 of 2 (team-lead)" in approvers and "Ticket: `CHG-7`" in approvers
    jit.click("U0LEA", "approve", request["id"])
    updates = jit.sent("/api/chat.update")
    assert {u["channel"] for u in updates} == {"C0APPROVALS", "C0SRE"}
    for update in updates:
        assert "Waiting for 0 of 2 approvals in stage 2 of 2 (security)" in json.dumps(update["blocks"])
        assert "lea@example.com (team-lead)" in json.dumps(update["blocks"])
    by_channel = {u["channel"]: u["blocks"] for u in updates}
    assert by_channel["C0APPROVALS"][-1]["type"] == "actions"  # approvers keep their buttons
    assert all(b["type"] != "actions" for b in by_channel["C0SRE"])


# --------------------------------------------------------------------------
# Tickets


@pytest.mark.parametrize(("ticket", "fragment"), [
    (None, "role prod-admin needs a ticket matching ^(INC|CHG)-[0-9]+$"),
    ("INC-12\n", "must be 1-64 printable ASCII characters without spaces"),
    ("INC-12 ", "must be 1-64 printable ASCII characters without spaces"),
    ("INC-\uff11\uff12", "must be 1-64 printable ASCII characters without spaces"),
    ("inc-12", "ticket 'inc-12' does not match ^(INC|CHG)-[0-9]+$"),
    ("INC-12;DROP", "does not match"),
    ("<!channel>", "does not match"),
    ("x" * 65, "must be 1-64 printable ASCII characters"),
])
def test_a_ticket_that_does_not_match_is_a_400_naming_the_form(jit: Jit, ticket: str | None, fragment: str) -> None:
    body: dict[str, Any] = {"role": "prod-admin", "duration_seconds": 3600, "reason": REASON}
    if ticket is not None:
        body["ticket"] = ticket
    response = jit.call("POST", "/v1/requests", bob(jit), body)
    assert response.status_code == 400
    assert fragment in response.json_body["Message"]
    assert jit.services.access._store.open_requests("bob@example.com", jit.clock()) == {}  # nothing half-written


def test_the_ticket_is_stored_shown_to_approvers_and_stamped_on_sessions(jit: Jit) -> None:
    request = file(jit, "prod-admin", ticket="INC-4242")
    assert request["ticket"] == "INC-4242"
    for who, groups in (("lea", ("leads",)), ("carol", ("security",)), ("dan", ("security",))):
        assert approve(jit, request["id"], who, *groups).status_code == 200
    jit.expect_assume(ADMIN_ARN, [*jit.bob_tags("developers"), {"Key": "rolebroker:grant", "Value": request["id"]},
                                  {"Key": "rolebroker:ticket", "Value": "INC-4242"}])
    issued = jit.call("POST", "/v1/credentials", bob(jit), {"role": "prod-admin"})
    assert issued.status_code == 200, issued.body


def test_a_request_with_a_ticket_stages_and_a_start_but_no_duration_asks_for_the_longest_grant(jit: Jit) -> None:
    """Issue 13 §6.1's optional duration_seconds together with issue 12's tickets, stages and start."""
    start = (jit.clock() + timedelta(hours=2)).isoformat()
    response = jit.call("POST", "/v1/requests", bob(jit), {"role": "prod-admin", "reason": REASON,
                                                           "ticket": "CHG-7", "start_at": start})
    assert response.status_code == 201, response.body
    body = response.json_body
    assert (body["duration_seconds"], body["ticket"], body["start_at"]) == (7200, "CHG-7", start)
    assert body["progress"] == {"stage": 1, "stages": 2, "stage_name": "team-lead", "approvals": 0, "required": 1}


def test_slack_requests_read_durations_as_the_client_does(jit: Jit) -> None:
    """One grammar for durations (issue 13 §5): 0h45m, 45M and 2700 are the same; 0.75h is not one."""
    jit.call("GET", "/v1/roles", bob(jit))  # Slack knows bob's groups from his last API call
    for text in ("0h45m", "45M", "2700"):
        jit.command("U0BOB", f"request db {text} {REASON}")
        reply = jit.sent("/hooks/commands/1")[-1]["text"]
        assert reply.startswith("Request `"), reply
        request_id = reply.split("`")[1]
        assert jit.services.access._store.get(request_id).duration_seconds == 2700
        jit.command("U0BOB", f"cancel {request_id}")
    jit.command("U0BOB", f"request db 0.75h {REASON}")
    assert "use e.g. 90m, 1h, 2h30m or 3600 (seconds)" in jit.sent("/hooks/commands/1")[-1]["text"]


# --------------------------------------------------------------------------
# Notify is not approve


def test_watchers_see_requests_but_cannot_decide_them(jit: Jit) -> None:
    request = file(jit, "prod-admin", ticket="INC-1")
    sam = token(jit, "sam", "sre-leads")
    assert jit.call("GET", f"/v1/requests/{request['id']}", sam).status_code == 200
    listed = jit.call("GET", "/v1/requests", sam).json_body["requests"]
    assert [r["id"] for r in listed] == [request["id"]]
    for action in ("approve", "deny"):
        refused = jit.call("POST", f"/v1/requests/{request['id']}/{action}", sam, {})
        assert refused.status_code == 403, refused.body
        assert "notified of role prod-admin's requests (notify.watchers) but cannot decide" in \
            refused.json_body["Message"]
    assert jit.services.access._store.get(request["id"]).status == "pending"
    outsider = token(jit, "olga", "developers")
    assert jit.call("GET", f"/v1/requests/{request['id']}", outsider).status_code == 404


def test_notify_channels_get_a_copy_without_buttons_that_follows_every_change(jit: Jit) -> None:
    request = file(jit, "prod-admin", ticket="INC-1")
    notified = next(p for p in jit.sent("/api/chat.postMessage") if p["channel"] == "C0SRE")
    blocks = notified["blocks"]
    assert all(b["type"] != "actions" for b in blocks)
    assert "its approvers decide" in json.dumps(blocks)
    jit.call("POST", f"/v1/requests/{request['id']}/deny", token(jit, "lea", "leads"), {"reason": "not now"})
    updates = [u for u in jit.sent("/api/chat.update") if u["channel"] == "C0SRE"]
    assert len(updates) == 1 and "*Denied* by lea@example.com" in json.dumps(updates[0]["blocks"])


def test_a_request_keeps_the_stages_it_was_filed_under(jit: Jit, monkeypatch: pytest.MonkeyPatch) -> None:
    """A policy edit that drops the second approver does not let a pending request through on one."""
    from chalicelib.access.policy import parse_policy

    request = file(jit)
    assert approve(jit, request["id"], "carol", "security").json_body["progress"]["approvals"] == 1
    weaker = parse_policy(POLICY.replace("required: 2, max_grant_seconds: 3600", "max_grant_seconds: 3600"))
    monkeypatch.setattr(jit.services.access, "_policy", lambda: weaker)
    refused = approve(jit, request["id"], "dan", "security")
    assert refused.status_code == 409
    assert refused.json_body["Message"] == (f"the approval stages of role db changed since request {request['id']} "
                                            "was filed; the requester must cancel it and file it again")
    assert jit.services.access._store.get(request["id"]).status == "pending"
