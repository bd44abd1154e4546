"""Time: extensions (at once within the policy's budget, else to approvers,
never past the grant's limit), a scheduled start (the duration counts from
activation), and pending requests that expire with every Slack copy saying so."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.audit import CallContext
from chalicelib.aws.store import AccessStore
from chalicelib.exceptions import Conflict
from tests.flow.conftest import Jit

POLICY = """\
version: 1
accounts:
  production: {id: "333333333333", region: us-east-1}
roles:
  db:
    account: production
    role_name: DbRole
    allow: [{groups: [developers]}]
    approval:
      approvers: {groups: [security]}
      max_grant_seconds: 7200
      pending_timeout_seconds: 3600
      extend: {max_total_seconds: 10800, auto_approve_seconds: 1800}
    break_glass: {allow: [{groups: [oncall]}]}
slack:
  users: {U0BOB: bob@example.com, U0CAROL: carol@example.com}
  approvals_channel: C0APPROVALS
"""
REASON = "CHG-5 schema migration"


@pytest.fixture
def jit_policy() -> str:
    return POLICY


def bob(jit: Jit) -> str:
    return jit.issuer.mint("bob@example.com", groups=["developers", "oncall"])


def carol(jit: Jit) -> str:
    return jit.issuer.mint("carol@example.com", groups=["security"])


def store(jit: Jit) -> AccessStore:
    found: AccessStore = jit.services.access._store
    return found


def granted(jit: Jit, **extra: Any) -> dict[str, Any]:
    filed = jit.call("POST", "/v1/requests", bob(jit), {"role": "db", "duration_seconds": 3600, "reason": REASON,
                                                        **extra})
    assert filed.status_code == 201, filed.body
    approved = jit.call("POST", f"/v1/requests/{filed.json_body['id']}/approve", carol(jit), {})
    assert approved.status_code == 200, approved.body
    body: dict[str, Any] = approved.json_body
    return body


def extend(jit: Jit, request_id: str, seconds: int, token: str | None = None) -> Any:
    return jit.call("POST", f"/v1/requests/{request_id}/extend", token or bob(jit),
                    {"duration_seconds": seconds, "reason": "still migrating"})


# --------------------------------------------------------------------------
# Extensions


def test_an_extension_within_the_budget_is_at_once_and_beyond_it_goes_to_approvers(jit: Jit) -> None:
    grant = granted(jit)
    until = jit.clock() + timedelta(hours=1)
    assert grant["grant_until"] == until.isoformat()
    done = extend(jit, grant["id"], 1800)
    assert done.status_code == 200, done.body
    assert (done.json_body["grant_until"], done.json_body["extended_seconds"]) == (
        (until + timedelta(minutes=30)).isoformat(), 1800)
    assert store(jit).active_grants("bob@example.com", jit.clock())["db"] == until + timedelta(minutes=30)
    asked = extend(jit, grant["id"], 1800)  # the automatic budget (1800 s over the grant's life) is spent
    assert asked.status_code == 201, asked.body
    extension = asked.json_body
    assert (extension["kind"], extension["parent"], extension["status"]) == ("extension", grant["id"], "pending")
    message = jit.sent("/api/chat.postMessage")[-1]
    assert f"asks to extend request `{grant['id']}` (*db*) by 30 min" in json.dumps(message["blocks"])
    approved = jit.call("POST", f"/v1/requests/{extension['id']}/approve", carol(jit), {})
    assert approved.status_code == 200 and approved.json_body["status"] == "approved", approved.body
    parent = jit.call("GET", f"/v1/requests/{grant['id']}", bob(jit)).json_body
    assert (parent["grant_until"], parent["extended_seconds"]) == ((until + timedelta(hours=1)).isoformat(), 3600)
    assert [h["note"] for h in parent["history"]][-2:] == [
        "extended by 1800 s (automatic, within the policy's limit): still migrating",
        f"extended by 1800 s (request {extension['id']}): still migrating"]
    past = extend(jit, grant["id"], 3700)  # two hours so far; the grant may last three in all
    assert past.status_code == 400
    assert past.json_body["Message"] == (f"extending request {grant['id']} by 3700 s would make its grant 10900 s "
                                         "long; role db allows at most 10800 s in all (approval.extend."
                                         "max_total_seconds)")


def test_an_extension_past_the_limit_is_a_400_and_writes_nothing(jit: Jit) -> None:
    grant = granted(jit)
    past = extend(jit, grant["id"], 7500)
    assert past.status_code == 400
    assert past.json_body["Message"] == (f"extending request {grant['id']} by 7500 s would make its grant 11100 s "
                                         "long; role db allows at most 10800 s in all (approval.extend."
                                         "max_total_seconds)")
    assert store(jit).get(grant["id"]).grant_until == jit.clock() + timedelta(hours=1)
    assert store(jit).open_requests("bob@example.com", jit.clock()) == {}


def test_the_database_keeps_the_automatic_budget_against_a_stale_read(jit: Jit) -> None:
    grant = granted(jit)
    stale = store(jit).get(grant["id"])
    now = jit.clock()
    store(jit).extend(stale, seconds=1800, new_until=stale.grant_until + timedelta(seconds=1800), now=now,
                      who="bob@example.com", reason="a", auto_budget=1800)
    with pytest.raises(Conflict):  # the same read again: the grant moved on
        store(jit).extend(stale, seconds=1800, new_until=stale.grant_until + timedelta(seconds=1800),
                          now=now, who="bob@example.com", reason="b", auto_budget=1800)
    fresh = store(jit).get(grant["id"])
    with pytest.raises(Conflict):  # a fresh read, but the budget is spent: only the database says no here
        store(jit).extend(fresh, seconds=900, new_until=fresh.grant_until + timedelta(seconds=900),
                          now=now, who="bob@example.com", reason="c", auto_budget=1800)
    assert store(jit).get(grant["id"]).extended_seconds == 1800


@pytest.mark.parametrize(("who", "status", "fragment"), [
    ("carol", 403, "only the requester can extend their grant"),
    ("eve", 404, "no access request"),
])
def test_only_the_requester_extends(jit: Jit, who: str, status: int, fragment: str) -> None:
    grant = granted(jit)
    token = carol(jit) if who == "carol" else jit.issuer.mint("eve@example.com", groups=["developers"])
    response = extend(jit, grant["id"], 900, token)
    assert response.status_code == status and fragment in response.json_body["Message"]


def test_only_a_grant_in_force_is_extended(jit: Jit) -> None:
    filed = jit.call("POST", "/v1/requests", bob(jit), {"role": "db", "duration_seconds": 3600, "reason": REASON})
    pending = extend(jit, filed.json_body["id"], 900)
    assert pending.status_code == 409 and "only a grant in force can be extended" in pending.json_body["Message"]
    grant = granted(jit)
    jit.clock.now += timedelta(hours=2)
    ended = extend(jit, grant["id"], 900)
    assert ended.status_code == 409 and "is expired" in ended.json_body["Message"]
    glass = jit.call("POST", "/v1/break-glass", bob(jit), {"role": "db", "reason": "down", "ticket": "INC-1"})
    assert glass.status_code == 201
    refused = extend(jit, glass.json_body["id"], 900)
    assert refused.status_code == 400 and "a break-glass access cannot be extended" in refused.json_body["Message"]


def test_extend_from_slack(jit: Jit) -> None:
    grant = granted(jit)
    jit.call("GET", "/v1/roles", bob(jit))
    jit.command("U0BOB", f"extend {grant['id']} 30m still migrating")
    assert jit.sent("/hooks/commands/1")[-1]["text"] == (
        f"Extended `{grant['id']}`: *db* until {(jit.clock() + timedelta(minutes=90)).isoformat()}.")
    update = jit.sent("/api/chat.update")[-1]
    assert "(extended by 30 min)" in json.dumps(update["blocks"])


# --------------------------------------------------------------------------
# Scheduled start


def test_a_scheduled_grant_starts_at_its_time_and_runs_its_whole_duration(jit: Jit) -> None:
    start = jit.clock() + timedelta(hours=3)
    grant = granted(jit, start_at=start.isoformat())
    assert (grant["start_at"], grant["grant_from"], grant["grant_until"]) == (
        start.isoformat(), start.isoformat(), (start + timedelta(hours=1)).isoformat())
    early = jit.call("POST", "/v1/credentials", bob(jit), {"role": "db"})
    assert early.status_code == 403 and "requires an approved access request" in early.json_body["Message"]
    assert store(jit).active_grants("bob@example.com", jit.clock()) == {}
    jit.clock.now = start + timedelta(minutes=1)
    assert store(jit).active_grants("bob@example.com", jit.clock()) == {"db": start + timedelta(hours=1)}
    roles = jit.call("GET", "/v1/roles", bob(jit)).json_body["roles"]
    assert roles[0]["access"] == f"granted_until:{(start + timedelta(hours=1)).isoformat()}"


def test_an_approval_after_the_scheduled_start_counts_from_the_approval(jit: Jit) -> None:
    start = jit.clock() + timedelta(minutes=10)
    filed = jit.call("POST", "/v1/requests", bob(jit), {"role": "db", "duration_seconds": 3600, "reason": REASON,
                                                        "start_at": start.isoformat()})
    jit.clock.now += timedelta(minutes=30)
    approved = jit.call("POST", f"/v1/requests/{filed.json_body['id']}/approve", carol(jit), {}).json_body
    assert approved["grant_from"] == jit.clock().isoformat()
    assert approved["grant_until"] == (jit.clock() + timedelta(hours=1)).isoformat()


@pytest.mark.parametrize(("start", "fragment"), [
    (timedelta(minutes=-1), "start_at is in the past"),
    (timedelta(days=31), "start_at may be at most 30 days ahead"),
    ("2030-01-01T09:00:00", "'start_at' needs a UTC offset"),
    ("tomorrow", "'start_at' must be an ISO 8601 time with an offset"),
])
def test_a_bad_start_is_a_400(jit: Jit, start: Any, fragment: str) -> None:
    value = (jit.clock() + start).isoformat() if isinstance(start, timedelta) else start
    response = jit.call("POST", "/v1/requests", bob(jit), {"role": "db", "duration_seconds": 3600, "reason": REASON,
                                                           "start_at": value})
    assert response.status_code == 400 and fragment in response.json_body["Message"], response.body


# --------------------------------------------------------------------------
# Expiry


def test_the_sweep_expires_what_timed_out_and_every_copy_says_so(jit: Jit) -> None:
    old = jit.call("POST", "/v1/requests", bob(jit), {"role": "db", "duration_seconds": 3600, "reason": REASON})
    jit.clock.now += timedelta(minutes=50)
    fresh = jit.call("POST", "/v1/requests", bob(jit), {"role": "db", "duration_seconds": 3600, "reason": REASON})
    jit.clock.now += timedelta(minutes=11)
    expired = jit.services.access.expire_due(context=CallContext(request_id="sweep", channel="worker"))
    assert expired == [old.json_body["id"]]
    gone = store(jit).get(old.json_body["id"])
    assert (gone.status, gone.decided_by) == ("expired", "rolebroker")
    assert store(jit).get(fresh.json_body["id"]).status == "pending"
    update = jit.sent("/api/chat.update")[-1]
    assert "*Expired* by rolebroker" in json.dumps(update["blocks"])
    assert all(b["type"] != "actions" for b in update["blocks"])
    assert set(store(jit).open_requests("bob@example.com", jit.clock()).values()) == {fresh.json_body["id"]}
    assert jit.services.access.expire_due(context=CallContext(request_id="sweep", channel="worker")) == []
    [line] = [a for a in map(json.loads, jit.audit_lines) if a["action"] == "expire"]
    assert (line["outcome"], line["request_ref"]) == ("expired", old.json_body["id"])


def test_the_stacks_schedule_runs_the_sweep_in_the_worker_and_nothing_else(jit: Jit) -> None:
    """The five-minute EventBridge rule sends the worker a fixed, unsealed event: it can only expire
    what has timed out; anything else unsealed is still dropped."""
    import app as app_module

    timed_out = jit.call("POST", "/v1/requests", bob(jit), {"role": "db", "duration_seconds": 3600, "reason": REASON})
    jit.clock.now += timedelta(hours=1, seconds=1)
    live = jit.call("POST", "/v1/requests", bob(jit), {"role": "db", "duration_seconds": 3600, "reason": REASON})
    app_module.slack_worker(dict(app_module.SWEEP_EVENT), None)
    assert store(jit).get(timed_out.json_body["id"]).status == "expired"
    assert store(jit).get(live.json_body["id"]).status == "pending"
    app_module.slack_worker({"rolebroker_sweep": "expire", "approve": live.json_body["id"]}, None)
    assert store(jit).get(live.json_body["id"]).status == "pending"
    dropped = [a for a in map(json.loads, jit.audit_lines) if a["action"] == "task"]
    assert [(a["outcome"], a["reason"]) for a in dropped] == [("dropped", "unsigned or malformed task")]


def test_the_sweep_expires_a_request_whose_slot_a_newer_request_took(jit: Jit, monkeypatch: pytest.MonkeyPatch) -> None:
    """A timed-out request no longer holds its open-request slot, so a newer one may take the same slot;
    expiring the old one must not depend on deleting a slot that is no longer its own."""
    import chalicelib.jit.desk as desk

    monkeypatch.setattr(desk.random, "choice", lambda free: free[0])  # both requests pick the lowest free slot
    timed_out = jit.call("POST", "/v1/requests", bob(jit), {"role": "db", "duration_seconds": 3600, "reason": REASON})
    jit.clock.now += timedelta(hours=1, seconds=1)
    live = jit.call("POST", "/v1/requests", bob(jit), {"role": "db", "duration_seconds": 3600, "reason": REASON})
    assert store(jit).get(timed_out.json_body["id"]).slot == store(jit).get(live.json_body["id"]).slot
    expired = jit.services.access.expire_due(context=CallContext(request_id="sweep", channel="worker"))
    assert expired == [timed_out.json_body["id"]]
    assert store(jit).get(timed_out.json_body["id"]).status == "expired"
    assert store(jit).get(live.json_body["id"]).status == "pending"
    assert set(store(jit).open_requests("bob@example.com", jit.clock()).values()) == {live.json_body["id"]}


def test_the_sweep_reaches_past_a_crowd_of_requests_still_waiting(jit: Jit) -> None:
    """Index reads are bounded (100 at a time), so long-pending requests at the head of the index must not
    hide a timed-out one behind them."""
    waiting = [store(jit).create(role="db", requester=f"p{i}@example.com", duration_seconds=3600, reason="wait",
                                 now=jit.clock() - timedelta(minutes=30), pending_seconds=7 * 86400).id
               for i in range(120)]
    late = store(jit).create(role="db", requester="q@example.com", duration_seconds=3600, reason="late",
                             now=jit.clock() - timedelta(minutes=10), pending_seconds=300)
    assert jit.services.access.expire_due(context=CallContext(request_id="sweep", channel="worker")) == [late.id]
    assert store(jit).get(waiting[0]).status == "pending"
