"""Issue 12's approval paths under the identity rules of review 9 (fix9):
N-of-M votes and stages, multi-role approvals and narrowing, extensions and
break-glass reviews never take a decision from the requester's own account
at a linked issuer (``approval_identity_claim``), in code or in DynamoDB;
one person counts once among the approvers, whichever issuer they use; and a
stranger's CI token learns nothing from break-glass, extend, multi-role
requests or scopes.

Erin has an account at the default IdP (erin@example.com) and at the partner
IdP (sub p-erin, the same verified email); so has carol (an approver).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.aws.store import AccessStore, ApprovalStep
from chalicelib.exceptions import Conflict
from devstack.issuer import DevIssuer
from tests.conftest import CI_AUDIENCE
from tests.flow.conftest import PARTNER_AUDIENCE, Jit

POLICY = """\
version: 1
issuers:
  ci:
    url: {ci}
    audiences: [{ci_audience}]
    identity_claim: sub
  partner:
    url: {partner}
    audiences: [{partner_audience}]
    identity_claim: sub
    approval_identity_claim: email
accounts:
  production: {{id: "333333333333", region: us-east-1}}
roles:
  prod-admin:
    account: production
    role_name: AdminRole
    allow: &people [{{groups: [developers]}}, {{issuer: partner, groups: [developers]}}]
    approval: &staged
      stages:
        - {{name: team-lead, approvers: [{{groups: [leads]}}, {{issuer: partner, groups: [leads]}}]}}
        - {{name: security, approvers: [{{groups: [security]}}, {{issuer: partner, groups: [security]}}],
           required: 2}}
      max_grant_seconds: 7200
      extend: {{max_total_seconds: 10800}}
    break_glass: {{allow: [{{groups: [oncall]}}, {{issuer: partner, groups: [oncall]}}]}}
    scopes: {{readonly: {{policy_arns: ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}}}}
  db:
    account: production
    role_name: DbRole
    allow: *people
    approval: *staged
  ci-release:
    account: production
    role_name: ReleaseRole
    allow: [{{issuer: ci, claims: {{repository: acme/infra}}}}]
    approval: {{approvers: {{groups: [security]}}}}
    break_glass: {{allow: [{{groups: [oncall]}}]}}
slack:
  users: {{U0ERIN: erin@example.com, U0CAROL: carol@example.com}}
  approvals_channel: C0APPROVALS
"""
REASON = "INC-42 payments down"
ISSUERS = [("default", "partner"), ("partner", "default")]


@pytest.fixture
def jit_policy(ci_issuer: DevIssuer, partner: DevIssuer) -> str:
    return POLICY.format(ci=ci_issuer.url, ci_audience=CI_AUDIENCE, partner=partner.url,
                         partner_audience=PARTNER_AUDIENCE)


def person(jit: Jit, partner: DevIssuer, name: str, where: str, *groups: str) -> str:
    """``name``'s token at the default IdP or at the partner (sub p-NAME, the same verified email)."""
    if where == "default":
        return jit.issuer.mint(f"{name}@example.com", groups=list(groups))
    return partner.mint(f"p-{name}", groups=list(groups),
                        claims={"email": f"{name.capitalize()}@Example.com", "email_verified": True})


def principal(name: str, where: str) -> str:
    return f"{name}@example.com" if where == "default" else f"partner|p-{name}"


def store(jit: Jit) -> AccessStore:
    found: AccessStore = jit.services.access._store
    return found


def file(jit: Jit, token: str, roles: list[str] | None = None) -> dict[str, Any]:
    filed = jit.call("POST", "/v1/requests", token,
                     {"roles": roles or ["prod-admin", "db"], "duration_seconds": 3600, "reason": REASON})
    assert filed.status_code == 201, filed.body
    body: dict[str, Any] = filed.json_body
    return body


def approve(jit: Jit, request_id: str, token: str, **body: Any) -> Any:
    return jit.call("POST", f"/v1/requests/{request_id}/approve", token, body)


def through_stage_one(jit: Jit, partner: DevIssuer, request_id: str) -> None:
    answer = approve(jit, request_id, person(jit, partner, "dan", "default", "leads"))
    assert answer.status_code == 200 and answer.json_body["progress"]["stage"] == 2, answer.body


# --------------------------------------------------------------------------
# N of M, stages, several roles, narrowing


@pytest.mark.parametrize(("files_at", "approves_at"), ISSUERS)
def test_no_stage_takes_a_vote_from_the_requesters_other_account(jit: Jit, partner: DevIssuer, files_at: str,
                                                                  approves_at: str) -> None:
    request = file(jit, person(jit, partner, "erin", files_at, "developers"))
    erin = person(jit, partner, "erin", approves_at, "leads", "security")
    for stage in (1, 2):
        for body in ({}, {"roles": ["db"]}):  # every role of the request, or narrowed to one
            refused = approve(jit, request["id"], erin, **body)
            assert refused.status_code == 403 and "your own request" in refused.json_body["Message"], refused.body
        denied = jit.call("POST", f"/v1/requests/{request['id']}/deny", erin, {})
        assert denied.status_code == 403 and "your own request" in denied.json_body["Message"]
        if stage == 1:
            through_stage_one(jit, partner, request["id"])
    now = store(jit).get(request["id"])
    assert (now.status, now.stage, now.votes_in_stage, now.approvers) == ("pending", 1, 0, {"dan@example.com"})


@pytest.mark.parametrize(("files_at", "approves_at"), ISSUERS)
def test_the_database_refuses_a_vote_by_the_requesters_person(jit: Jit, partner: DevIssuer, files_at: str,
                                                              approves_at: str) -> None:
    request = file(jit, person(jit, partner, "erin", files_at, "developers"))
    seen = store(jit).get(request["id"])
    assert seen.requester_person == (None if files_at == "default" else "erin@example.com")
    now = jit.clock()
    erin = principal("erin", approves_at)
    # The code's checks skipped: the database alone refuses a vote in stage 1, the last approval, a narrowing.
    with pytest.raises(Conflict):
        store(jit).vote(seen, ApprovalStep(erin, None, now, 1, 0, False, approver_person="erin@example.com"), "1")
    with pytest.raises(Conflict):
        store(jit).approve(seen, approver=erin, approver_person="erin@example.com", now=now,
                           grant_until=now + timedelta(hours=1), roles=("db",))
    assert (store(jit).get(request["id"]).status, store(jit).get(request["id"]).votes) == ("pending", ())
    store(jit).vote(seen, ApprovalStep("dan@example.com", None, now, 1, 0, False,
                                       approver_person="dan@example.com"), "1")  # anyone else: let through
    assert store(jit).get(request["id"]).stage == 1


@pytest.mark.parametrize(("first_at", "second_at"), ISSUERS)
def test_one_person_counts_once_among_the_approvers_whichever_issuer(jit: Jit, partner: DevIssuer, first_at: str,
                                                                     second_at: str) -> None:
    request = file(jit, person(jit, partner, "bob", "default", "developers"))
    through_stage_one(jit, partner, request["id"])
    first = approve(jit, request["id"], person(jit, partner, "carol", first_at, "security"))
    assert first.status_code == 200 and first.json_body["progress"]["approvals"] == 1, first.body
    again = approve(jit, request["id"], person(jit, partner, "carol", second_at, "security"))
    assert again.status_code == 409 and "already approved" in again.json_body["Message"], again.body
    seen = store(jit).get(request["id"])
    assert seen.approver_persons == {"dan@example.com", "carol@example.com"}
    now = jit.clock()
    with pytest.raises(Conflict):  # the database alone: carol's other principal, completing the plan
        store(jit).approve(seen, approver=principal("carol", second_at), approver_person="carol@example.com",
                           now=now, grant_until=now + timedelta(hours=1))
    assert store(jit).get(request["id"]).status == "pending"
    done = approve(jit, request["id"], person(jit, partner, "frank", second_at, "security"))
    assert done.status_code == 200 and done.json_body["status"] == "approved", done.body


# --------------------------------------------------------------------------
# Extensions


def granted(jit: Jit, partner: DevIssuer, token: str) -> dict[str, Any]:
    request = file(jit, token, roles=["db"])
    through_stage_one(jit, partner, request["id"])
    for name in ("carol", "frank"):
        answer = approve(jit, request["id"], person(jit, partner, name, "default", "security"))
        assert answer.status_code == 200, answer.body
    assert answer.json_body["status"] == "approved"
    body: dict[str, Any] = answer.json_body
    return body


def extend(jit: Jit, request_id: str, token: str) -> Any:
    return jit.call("POST", f"/v1/requests/{request_id}/extend", token,
                    {"duration_seconds": 1800, "reason": "still migrating"})


@pytest.mark.parametrize("approves_at", ["default", "partner"])
def test_an_extension_is_never_approved_by_the_requesters_other_account(jit: Jit, partner: DevIssuer,
                                                                       approves_at: str) -> None:
    erin = person(jit, partner, "erin", "partner", "developers")
    grant = granted(jit, partner, erin)
    asked = extend(jit, grant["id"], erin)
    assert asked.status_code == 201 and asked.json_body["kind"] == "extension", asked.body
    extension = store(jit).get(asked.json_body["id"])
    assert extension.requester_person == "erin@example.com"
    erin_there = person(jit, partner, "erin", approves_at, "leads", "security")
    refused = approve(jit, extension.id, erin_there)
    assert refused.status_code == 403 and "your own request" in refused.json_body["Message"], refused.body
    through_stage_one(jit, partner, extension.id)
    refused = approve(jit, extension.id, erin_there)
    assert refused.status_code == 403 and "your own request" in refused.json_body["Message"], refused.body
    # The database alone: erin's person takes neither place of stage 2, and the parent's grant stays.
    now, parent, erin = jit.clock(), store(jit).get(grant["id"]), principal("erin", approves_at)
    extension = store(jit).get(extension.id)
    with pytest.raises(Conflict):
        store(jit).vote(extension, ApprovalStep(erin, None, now, 1, 1, False, approver_person="erin@example.com"), "")
    store(jit).vote(extension, ApprovalStep("carol@example.com", None, now, 1, 1, False,
                                            approver_person="carol@example.com"), "1 of 2")
    extension, until = store(jit).get(extension.id), now + timedelta(hours=2)
    with pytest.raises(Conflict):
        store(jit).extend_by_approval(extension, parent, approver=erin, approver_sub=None,
                                      approver_person="erin@example.com", now=now, new_until=until)
    assert (store(jit).get(extension.id).status, store(jit).get(grant["id"]).grant_until) == (
        "pending", parent.grant_until)
    store(jit).extend_by_approval(extension, parent, approver="frank@example.com", approver_sub=None,
                                  approver_person="frank@example.com", now=now, new_until=until)
    assert store(jit).get(grant["id"]).grant_until == until


def test_only_the_requesters_own_principal_extends_or_reads_a_grant(jit: Jit, partner: DevIssuer) -> None:
    # The link only ever refuses: erin's partner account gets no right over her default account's grant.
    grant = granted(jit, partner, person(jit, partner, "erin", "default", "developers"))
    other = person(jit, partner, "erin", "partner", "developers")
    for path in ("extend", "evidence"):
        method = "POST" if path == "extend" else "GET"
        answer = jit.call(method, f"/v1/requests/{grant['id']}/{path}", other,
                          {"duration_seconds": 1800, "reason": "still migrating"} if method == "POST" else None)
        assert answer.status_code == 404, (path, answer.body)
    assert jit.call("GET", f"/v1/requests/{grant['id']}", other).status_code == 404


# --------------------------------------------------------------------------
# Break-glass


def glass(jit: Jit, token: str, role: str = "prod-admin") -> Any:
    return jit.call("POST", "/v1/break-glass", token, {"role": role, "reason": REASON, "ticket": "INC-42"})


@pytest.mark.parametrize(("opens_at", "reviews_at"), ISSUERS)
def test_a_break_glass_is_never_reviewed_by_its_requesters_other_account(jit: Jit, partner: DevIssuer,
                                                                         opens_at: str, reviews_at: str) -> None:
    opened = glass(jit, person(jit, partner, "erin", opens_at, "developers", "oncall"))
    assert opened.status_code == 201, opened.body
    request_id = opened.json_body["id"]
    reviewer = person(jit, partner, "erin", reviews_at, "leads", "security")
    refused = jit.call("POST", f"/v1/requests/{request_id}/review", reviewer, {})
    assert refused.status_code == 403 and "your own break-glass" in refused.json_body["Message"], refused.body
    seen = store(jit).get(request_id)
    with pytest.raises(Conflict):  # the database alone
        store(jit).review(seen, who=principal("erin", reviews_at), reviewer_person="erin@example.com",
                          now=jit.clock(), note="looks fine to me")
    assert store(jit).get(request_id).review.status == "pending"  # type: ignore[union-attr]
    assert store(jit).break_glass_lock("erin@example.com") == request_id
    reviewed = jit.call("POST", f"/v1/requests/{request_id}/review", person(jit, partner, "carol", reviews_at,
                                                                              "security"), {})
    assert reviewed.status_code == 200 and reviewed.json_body["review"]["status"] == "done", reviewed.body
    assert store(jit).break_glass_lock("erin@example.com") is None


@pytest.mark.parametrize(("first_at", "second_at"), ISSUERS)
def test_one_person_has_one_break_glass_lock_across_issuers(jit: Jit, partner: DevIssuer, first_at: str,
                                                            second_at: str) -> None:
    first = glass(jit, person(jit, partner, "erin", first_at, "developers", "oncall"))
    assert first.status_code == 201, first.body
    second = glass(jit, person(jit, partner, "erin", second_at, "developers", "oncall"))
    assert second.status_code == 409, second.body
    assert f"your break-glass {first.json_body['id']} still waits for its review" in second.json_body["Message"]


# --------------------------------------------------------------------------
# A stranger's CI token learns nothing


def stranger(ci_issuer: DevIssuer) -> str:
    return ci_issuer.mint("", claims={"repository": "stranger/fork", "ref": "refs/heads/main"})


def test_a_strangers_ci_token_gets_the_unknown_role_404_from_break_glass(jit: Jit, ci_issuer: DevIssuer) -> None:
    token = stranger(ci_issuer)
    known, unknown = glass(jit, token), glass(jit, token, role="no-such-role")
    assert known.status_code == unknown.status_code == 404
    assert known.json_body["Message"] == unknown.json_body["Message"].replace("no-such-role", "prod-admin")
    # A role of its issuer says why, by its issuer's rules only: no group of the people's break-glass.
    own = glass(jit, token, role="ci-release")
    assert own.status_code == 403, own.body
    assert own.json_body["Message"] == ("you may not break glass into role ci-release: role ci-release requires "
                                        "issuer ci and a matching repository claim")
    insider = glass(jit, ci_issuer.mint("", claims={"repository": "acme/infra", "ref": "refs/heads/main"}),
                    role="ci-release")
    assert insider.status_code == 403 and "a rule that names your token's issuer (it has none)" in \
        insider.json_body["Message"], insider.body
    said = json.dumps([r.json_body for r in (known, unknown, own, insider)])
    assert not [word for word in ("oncall", "developers", "security", "leads", "acme/infra") if word in said]


def test_a_strangers_ci_token_gets_the_unknown_request_404_from_extend(jit: Jit, partner: DevIssuer,
                                                                       ci_issuer: DevIssuer) -> None:
    grant = granted(jit, partner, person(jit, partner, "erin", "default", "developers"))
    token = stranger(ci_issuer)
    known, unknown = extend(jit, grant["id"], token), extend(jit, "0123456789ab", token)
    assert known.status_code == unknown.status_code == 404
    assert known.json_body["Message"] == unknown.json_body["Message"].replace("0123456789ab", grant["id"])


@pytest.mark.parametrize(("roles", "unknown"), [
    (["prod-admin", "db"], "prod-admin"), (["db", "no-such-role"], "db"),
    # Every role is looked up before any is judged: a role of its own issuer first changes nothing.
    (["ci-release", "prod-admin"], "prod-admin"), (["ci-release", "no-such-role"], "no-such-role"),
])
def test_a_strangers_ci_token_learns_no_role_of_a_multi_role_request(jit: Jit, ci_issuer: DevIssuer,
                                                                     roles: list[str], unknown: str) -> None:
    answer = jit.call("POST", "/v1/requests", stranger(ci_issuer), {"roles": roles, "reason": REASON})
    assert answer.status_code == 404, answer.body
    assert answer.json_body["Message"] == f"unknown role {unknown!r}; `rolebroker roles` lists yours"


def test_a_strangers_ci_token_learns_no_scope(jit: Jit, ci_issuer: DevIssuer) -> None:
    token = stranger(ci_issuer)
    answers = [jit.call("POST", path, token, {"role": "prod-admin", "scope": scope, **extra})
               for path, extra in (("/v1/credentials", {}), ("/v1/requests", {"reason": REASON}))
               for scope in ("readonly", "no-such-scope")]
    assert {(a.status_code, a.json_body["Message"]) for a in answers} == {
        (404, "unknown role 'prod-admin'; `rolebroker roles` lists yours")}


# --------------------------------------------------------------------------
# Slack: every new command judges its user by their last verified token


@pytest.mark.parametrize("text", ["break-glass prod-admin INC-42 payments down", "review 0123456789ab",
                                  "extend 0123456789ab 1h still migrating",
                                  "request prod-admin,db 1h payments down"])
def test_every_new_slack_command_needs_a_recent_sign_in(jit: Jit, text: str) -> None:
    jit.command("U0ERIN", text)
    reply = jit.sent("/hooks/commands/1")[-1]["text"]
    assert "not seen a sign-in of yours (erin@example.com) in the last 12 hours" in reply
    assert store(jit).requester_page("erin@example.com", after=None, limit=5) == ([], None)


def test_slack_commands_use_the_groups_of_the_last_verified_token(jit: Jit, partner: DevIssuer) -> None:
    jit.call("GET", "/v1/roles", person(jit, partner, "erin", "default", "developers"))
    jit.command("U0ERIN", "break-glass prod-admin INC-42 payments down")
    assert "you may not break glass into role prod-admin" in jit.sent("/hooks/commands/1")[-1]["text"]
    jit.call("GET", "/v1/roles", person(jit, partner, "erin", "default", "developers", "oncall"))
    jit.command("U0ERIN", "break-glass prod-admin INC-42 payments down")
    assert "Break-glass" in jit.sent("/hooks/commands/1")[-1]["text"]
    jit.command("U0ERIN", "request prod-admin,db 1h payments down")
    assert "for *prod-admin, db* is pending" in jit.sent("/hooks/commands/1")[-1]["text"]
