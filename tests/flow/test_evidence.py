"""Evidence from request to session to CloudTrail: DynamoDB on a moto server,
STS answered by a Stubber so the exact session tags are checked."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from chalice.test import Client

from chalicelib.audit import AuditLog
from chalicelib.aws.store import create_table
from chalicelib.exceptions import Forbidden
from devstack.issuer import DevIssuer
from tests.conftest import Moto, broker_environ, fake_client

POLICY = """\
version: 1
accounts:
  production: {id: "333333333333", region: us-east-1}
roles:
  breakglass:
    account: production
    role_name: BreakGlassRole
    allow: [{groups: [developers]}]
    approval:
      approvers: {groups: [security]}
      max_grant_seconds: 14400
  readonly:
    account: production
    role_name: ReadOnly
    allow: [{groups: [developers]}]
admins: [{groups: [secops]}]
auditors: [{groups: [audit]}]
"""
BREAKGLASS = "arn:aws:iam::333333333333:role/BreakGlassRole"
SECRET = "fake/Secret/Access/Key/For/Tests/Only/00"
TOKEN = "fake-session-token-for-rolebroker-tests" + "x" * 40


@dataclass
class FakeClock:
    now: datetime = field(default_factory=lambda: datetime(2030, 5, 1, 10, 0, 0, tzinfo=timezone.utc))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Evidence:
    client: Client
    issuer: DevIssuer
    stubber: Stubber
    clock: FakeClock
    services: Any
    audit_lines: list[str]

    def call(self, method: str, path: str, token: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if method == "GET":
            return self.client.http.get(path, headers=headers)
        return self.client.http.post(path, headers=headers, body=json.dumps(body) if body is not None else "")

    def token(self, sub: str, *groups: str) -> str:
        return self.issuer.mint(sub, groups=list(groups))

    def bob(self) -> str:
        return self.token("bob@example.com", "developers")

    def approved(self) -> str:
        created = self.call("POST", "/v1/requests", self.bob(),
                            {"role": "breakglass", "duration_seconds": 7200, "reason": "INC-42 database down"})
        assert created.status_code == 201, created.body
        request_id: str = created.json_body["id"]
        self.clock.now += timedelta(minutes=1)
        approved = self.call("POST", f"/v1/requests/{request_id}/approve", self.token("carol@example.com", "security"))
        assert approved.status_code == 200, approved.body
        return request_id

    def expect_assume(self, key: str, tags: list[dict[str, str]] | None = None, seconds: int = 3600) -> None:
        answer = {
            "Credentials": {"AccessKeyId": key, "SecretAccessKey": SECRET, "SessionToken": TOKEN,
                            "Expiration": self.clock.now + timedelta(seconds=seconds)},
            "AssumedRoleUser": {"AssumedRoleId": "AROAEXAMPLE:bob@example.com",
                                "Arn": "arn:aws:sts::333333333333:assumed-role/BreakGlassRole/bob@example.com"},
            "SourceIdentity": "bob@example.com",
        }
        expected = None
        if tags is not None:
            expected = {"RoleArn": BREAKGLASS, "RoleSessionName": "bob@example.com",
                        "SourceIdentity": "bob@example.com", "DurationSeconds": seconds, "Tags": tags}
        self.stubber.add_response("assume_role", answer, expected)

    def store(self) -> Any:
        return self.services.access._store


@pytest.fixture
def evidence(issuer: DevIssuer, moto_server: Moto, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Evidence]:
    import app as app_module

    table = f"rolebroker-{uuid.uuid4().hex[:8]}"
    create_table(moto_server.client("dynamodb"), table)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    sts = fake_client("sts")
    clock = FakeClock()
    lines: list[str] = []
    environ = broker_environ(issuer, ROLEBROKER_POLICY=str(policy), ROLEBROKER_TABLE=table,
                             ROLEBROKER_CLOUDTRAIL_EVENT_DATA_STORE="EXAMPLE-f852-4e8f-8bd1-bcf6cEXAMPLE")

    def clients(name: str) -> Any:
        return sts if name == "sts" else moto_server.client(name)

    services = app_module._build_services(environ, client_factory=clients, audit=AuditLog(emit=lines.append),
                                          inline_tasks=True, clock=clock)
    monkeypatch.setattr(app_module, "_services", services)
    with Stubber(sts) as stubber, Client(app_module.app) as client:
        yield Evidence(client, issuer, stubber, clock, services, lines)


def test_sessions_under_a_grant_carry_the_grant_id_as_a_session_tag(evidence: Evidence) -> None:
    request_id = evidence.approved()
    evidence.expect_assume("FAKEACCESSKEYID00001", tags=[
        {"Key": "rolebroker:identity", "Value": "bob@example.com"},
        {"Key": "rolebroker:issuer", "Value": evidence.issuer.url},
        {"Key": "rolebroker:groups", "Value": "developers"},
        {"Key": "rolebroker:grant", "Value": request_id},
    ])
    issued = evidence.call("POST", "/v1/credentials", evidence.bob(), {"role": "breakglass"})
    assert issued.status_code == 200, issued.body
    evidence.stubber.assert_no_pending_responses()
    audit = [json.loads(line) for line in evidence.audit_lines if '"credentials"' in line][-1]
    assert audit["grant"] == request_id and audit["outcome"] == "allowed"


def test_sessions_without_a_grant_carry_no_grant_tag_and_are_not_recorded(evidence: Evidence) -> None:
    evidence.stubber.add_response("assume_role", {
        "Credentials": {"AccessKeyId": "FAKEACCESSKEYID00009", "SecretAccessKey": SECRET, "SessionToken": TOKEN,
                        "Expiration": evidence.clock.now + timedelta(hours=1)},
        "AssumedRoleUser": {"AssumedRoleId": "AROAEXAMPLE:bob", "Arn": "arn:aws:sts::333333333333:assumed-role/R/b"},
    }, {"RoleArn": "arn:aws:iam::333333333333:role/ReadOnly", "RoleSessionName": "bob@example.com",
        "SourceIdentity": "bob@example.com", "DurationSeconds": 3600, "Tags": [
            {"Key": "rolebroker:identity", "Value": "bob@example.com"},
            {"Key": "rolebroker:issuer", "Value": evidence.issuer.url},
            {"Key": "rolebroker:groups", "Value": "developers"}]})
    assert evidence.call("POST", "/v1/credentials", evidence.bob(), {"role": "readonly"}).status_code == 200
    evidence.stubber.assert_no_pending_responses()


def test_evidence_ties_request_history_sessions_and_cloudtrail_together(evidence: Evidence) -> None:
    request_id = evidence.approved()
    evidence.clock.now += timedelta(minutes=4)
    evidence.expect_assume("FAKEACCESSKEYID00001")
    assert evidence.call("POST", "/v1/credentials", evidence.bob(), {"role": "breakglass"}).status_code == 200
    evidence.clock.now += timedelta(minutes=45)
    evidence.expect_assume("FAKEACCESSKEYID00002", seconds=1800)
    assert evidence.call("POST", "/v1/credentials", evidence.bob(),
                         {"role": "breakglass", "duration_seconds": 1800}).status_code == 200

    response = evidence.call("GET", f"/v1/requests/{request_id}/evidence", evidence.bob())
    assert response.status_code == 200, response.body
    body = response.json_body
    assert body["request"]["id"] == request_id and body["request"]["reason"] == "INC-42 database down"
    assert body["request"]["status"] == "approved" and body["request"]["decided_by"] == "carol@example.com"
    assert [(h["who"], h["from"], h["to"]) for h in body["history"]] == [
        ("bob@example.com", None, "pending"), ("carol@example.com", "pending", "approved")]
    assert body["history"][1]["at"] == "2030-05-01T10:01:00+00:00"
    assert body["sessions"] == [
        {"role": "breakglass", "role_arn": BREAKGLASS, "account_id": "333333333333",
         "assumed_role_arn": "arn:aws:sts::333333333333:assumed-role/BreakGlassRole/bob@example.com",
         "access_key_id": "FAKEACCESSKEYID00001", "source_identity": "bob@example.com",
         "issued_at": "2030-05-01T10:05:00+00:00", "expires_at": "2030-05-01T11:05:00+00:00", "kind": "credentials"},
        {"role": "breakglass", "role_arn": BREAKGLASS, "account_id": "333333333333",
         "assumed_role_arn": "arn:aws:sts::333333333333:assumed-role/BreakGlassRole/bob@example.com",
         "access_key_id": "FAKEACCESSKEYID00002", "source_identity": "bob@example.com",
         "issued_at": "2030-05-01T10:50:00+00:00", "expires_at": "2030-05-01T11:20:00+00:00", "kind": "credentials"},
    ]
    queries = body["queries"]
    assert queries["window"] == {"start": "2030-05-01T09:56:00+00:00", "end": "2030-05-01T12:06:00+00:00"}
    assert queries["cloudtrail_lake"]["by_access_key"].splitlines()[2:5] == [
        "FROM EXAMPLE-f852-4e8f-8bd1-bcf6cEXAMPLE",
        "WHERE eventTime >= '2030-05-01 10:00:00' AND eventTime <= '2030-05-01 11:25:00'",
        "  AND userIdentity.accessKeyId IN ('FAKEACCESSKEYID00001', 'FAKEACCESSKEYID00002')",
    ]
    assert "userIdentity.sessionContext.sourceIdentity = 'bob@example.com'" in \
        queries["cloudtrail_lake"]["by_source_identity"]
    assert SECRET not in response.body.decode() and TOKEN[:30] not in response.body.decode()


@pytest.mark.parametrize(("sub", "groups", "status"), [
    ("bob@example.com", ("developers",), 200),   # the requester
    ("carol@example.com", ("security",), 200),   # an approver of the role
    ("dave@example.com", ("secops",), 200),      # an admin
    ("erin@example.com", ("audit",), 200),       # an auditor
    ("mallory@example.com", ("developers",), 404),
])
def test_who_may_read_evidence(evidence: Evidence, sub: str, groups: tuple[str, ...], status: int) -> None:
    request_id = evidence.approved()
    response = evidence.call("GET", f"/v1/requests/{request_id}/evidence", evidence.token(sub, *groups))
    assert response.status_code == status, response.body
    audit = [json.loads(line) for line in evidence.audit_lines if '"evidence"' in line][-1]
    assert audit["who"] == sub and audit["request_ref"] == request_id
    assert audit["outcome"] == ("allowed" if status == 200 else "denied")


def test_a_pending_request_has_evidence_without_sessions_or_queries(evidence: Evidence) -> None:
    created = evidence.call("POST", "/v1/requests", evidence.bob(),
                            {"role": "breakglass", "duration_seconds": 3600, "reason": "look"})
    body = evidence.call("GET", f"/v1/requests/{created.json_body['id']}/evidence", evidence.bob()).json_body
    assert body["sessions"] == [] and body["queries"] is None and body["request"]["status"] == "pending"


def test_unknown_and_malformed_ids_are_404(evidence: Evidence) -> None:
    for ref in ("0123456789ab", "nope", "0123456789AB"):
        response = evidence.call("GET", f"/v1/requests/{ref}/evidence", evidence.bob())
        assert response.status_code == 404, ref


def test_a_grant_revoked_after_the_decision_records_and_returns_nothing(evidence: Evidence) -> None:
    request_id = evidence.approved()
    store = evidence.store()
    grant = store.active_grant("bob@example.com", "breakglass", evidence.clock())
    assert grant is not None and grant.request_id == request_id
    revoked = evidence.call("POST", f"/v1/requests/{request_id}/revoke",
                            evidence.token("carol@example.com", "security"), {"reason": "done"})
    assert revoked.status_code == 200, revoked.body
    from chalicelib.jit.grants import IssuedSession

    late = IssuedSession(request_id=request_id, role="breakglass", role_arn=BREAKGLASS, account_id="333333333333",
                         assumed_role_arn="arn:aws:sts::333333333333:assumed-role/B/bob",
                         access_key_id="FAKEACCESSKEYID00003", session_name="bob@example.com",
                         issued_at=evidence.clock(), expires_at=evidence.clock() + timedelta(hours=1),
                         kind="credentials")
    with pytest.raises(Forbidden, match="was revoked"):
        store.record_session(grant, late, now=evidence.clock())
    assert store.sessions(request_id) == []


def test_a_grant_issues_a_bounded_number_of_sessions(evidence: Evidence, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.aws import store as store_module

    monkeypatch.setattr(store_module, "MAX_SESSIONS_PER_GRANT", 2)
    request_id = evidence.approved()
    for number in (1, 2, 3):
        evidence.expect_assume(f"FAKEACCESSKEYID0000{number}")
    assert evidence.call("POST", "/v1/credentials", evidence.bob(), {"role": "breakglass"}).status_code == 200
    assert evidence.call("POST", "/v1/credentials", evidence.bob(), {"role": "breakglass"}).status_code == 200
    third = evidence.call("POST", "/v1/credentials", evidence.bob(), {"role": "breakglass"})
    assert third.status_code == 403
    assert third.json_body["Message"] == (
        f"grant {request_id} has issued 2 sessions, the most one grant may; request access again "
        "(rolebroker request --role breakglass --reason ...)")
    assert SECRET not in third.body.decode()
    assert [s.access_key_id for s in evidence.store().sessions(request_id)] == [
        "FAKEACCESSKEYID00001", "FAKEACCESSKEYID00002"]
    audit = [json.loads(line) for line in evidence.audit_lines if '"credentials"' in line][-1]
    assert audit["outcome"] == "error" and "most one grant may" in audit["reason"]


def test_a_tampered_session_record_never_reaches_the_sql(evidence: Evidence) -> None:
    request_id = evidence.approved()
    hostile = "ASIA') OR 1=1 --"
    evidence.services.client("dynamodb").put_item(TableName=evidence.store()._table, Item={
        "pk": {"S": f"REQUEST#{request_id}"}, "sk": {"S": "SESSION#2030-05-01T10:02:00+00:00#x"},
        "request_id": {"S": request_id}, "role": {"S": "breakglass"}, "role_arn": {"S": BREAKGLASS},
        "account_id": {"S": "333333333333"}, "assumed_role_arn": {"S": "arn:aws:sts::333333333333:assumed-role/B/x"},
        "access_key_id": {"S": hostile}, "session_name": {"S": "bob@example.com"},
        "issued_at": {"S": "2030-05-01T10:02:00+00:00"}, "expires_at": {"S": "2030-05-01T11:02:00+00:00"},
        "kind": {"S": "credentials"}})
    body = evidence.call("GET", f"/v1/requests/{request_id}/evidence", evidence.bob()).json_body
    assert body["sessions"][0]["access_key_id"] == hostile  # shown as recorded, as data
    assert body["queries"]["cloudtrail_lake"]["by_access_key"] is None
    assert all(hostile not in (q or "") for q in body["queries"]["athena"].values())
    assert "left out of the queries" in body["queries"]["warnings"][0]
