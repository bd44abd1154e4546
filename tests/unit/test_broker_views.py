"""What the broker shows: a role as ``GET /v1/roles`` lists it, and the document a
``credential_process`` prints. Both are read by the client and by people, field by field."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.access.policy import decide, parse_policy
from chalicelib.aws.sts import AssumedSession
from chalicelib.broker import NoGrants, credential_process_document, role_summary, utcnow
from chalicelib.identity.tokens import Identity

POLICY = """\
version: 1
accounts:
  sandbox: {id: "222222222222", region: eu-west-1}
roles:
  admin:
    account: sandbox
    role_name: Admin
    require_mfa: true
    console: true
    max_duration_seconds: 7200
    allow: [{groups: [admins]}, {groups: [oncall]}]
    approval: {approvers: {groups: [security]}}
    break_glass:
      allow: [{groups: [oncall]}]
    scopes:
      readonly:
        policy: {Version: "2012-10-17", Statement: [{Effect: Allow, Action: ["s3:Get*"], Resource: "*"}]}
      managed: {policy_arns: [arn:aws:iam::aws:policy/ReadOnlyAccess]}
  plain:
    account: sandbox
    role_name: Plain
    allow: [{groups: [admins]}]
"""
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
ONCALL = Identity(subject="olga@example.com", groups=frozenset({"oncall"}))
ADMIN = Identity(subject="alice@example.com", groups=frozenset({"admins"}))


def _summary(role_name: str, identity: Identity | None) -> dict[str, object]:
    role = parse_policy(POLICY).roles[role_name]
    return role_summary(role, decide(role, identity or ADMIN, now=NOW), identity)


def test_a_role_is_listed_with_every_field_it_has() -> None:
    assert _summary("admin", ONCALL) == {
        "break_glass": True, "scopes": ["readonly", "managed"], "name": "admin", "account_id": "222222222222",
        "account": "sandbox", "role_arn": "arn:aws:iam::222222222222:role/Admin", "region": "eu-west-1",
        "max_duration_seconds": 7200, "console": True, "require_mfa": True, "access": "mfa_required"}


@pytest.mark.parametrize(("role", "identity"), [("admin", ADMIN), ("admin", None), ("plain", ONCALL)])
def test_break_glass_is_shown_only_to_whom_the_role_lets_break_it(role: str, identity: Identity | None) -> None:
    summary = _summary(role, identity)
    assert summary["break_glass"] is False


def test_a_role_without_scopes_or_mfa_says_so() -> None:
    summary = _summary("plain", ADMIN)
    assert (summary["scopes"], summary["require_mfa"], summary["console"]) == ([], False, False)


def test_the_credential_process_expiration_is_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    # time.tzset exists on the platforms the broker runs on (Lambda is Linux).
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        session = AssumedSession(access_key_id="ASIAEXAMPLE", secret_access_key="secret", session_token="token",
                                 expiration=NOW + timedelta(hours=1), assumed_role_arn="arn:aws:sts::1:x/y",
                                 source_identity=None)
        document = credential_process_document(session)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert document == {"Version": 1, "AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "secret",
                        "SessionToken": "token", "Expiration": "2026-03-01T13:00:00+00:00"}


def test_the_default_clock_is_aware_utc() -> None:
    # Grants and session expirations are compared with aware datetimes from DynamoDB and STS.
    assert utcnow().utcoffset() == timedelta(0)


def test_without_a_table_there_is_no_grant_and_none_can_be_recorded() -> None:
    grants = NoGrants()
    assert grants.active_grants("alice@example.com", NOW) == {}
    assert grants.active_grant("alice@example.com", "admin", NOW) is None
    with pytest.raises(AssertionError):
        grants.record_session(None, None, now=NOW)  # type: ignore[arg-type]
