"""The CloudTrail Lake and Athena queries of a grant's evidence: exact text, safe literals."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.jit.cloudtrail import QueryTargets, event_data_store_id, evidence_queries
from chalicelib.jit.grants import IssuedSession

T0 = datetime(2030, 5, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)


def session(key: str, minutes: int = 0, seconds: int = 3600) -> IssuedSession:
    issued = T0 + timedelta(minutes=minutes)
    return IssuedSession(request_id="0123456789ab", role="breakglass", role_arn="arn:aws:iam::333333333333:role/B",
                         account_id="333333333333", assumed_role_arn="arn:aws:sts::333333333333:assumed-role/B/bob",
                         access_key_id=key, session_name="bob@example.com", issued_at=issued,
                         expires_at=issued + timedelta(seconds=seconds), kind="credentials")


def test_exact_queries_for_two_sessions() -> None:
    found = evidence_queries(
        [session("FAKEACCESSKEYID00001"), session("FAKEACCESSKEYID00002", minutes=30, seconds=1800)],
        session_name="bob@example.com", window_start=T0 - timedelta(minutes=1), window_end=T0 + timedelta(hours=2),
        targets=QueryTargets(event_data_store="EXAMPLE-f852-4e8f-8bd1-bcf6cEXAMPLE",
                             athena_table="security.cloudtrail"))
    assert found["window"] == {"start": "2030-05-01T09:54:00+00:00", "end": "2030-05-01T12:06:00+00:00"}
    assert found["access_key_ids"] == ["FAKEACCESSKEYID00001", "FAKEACCESSKEYID00002"]
    lake = found["cloudtrail_lake"]
    assert lake["by_access_key"] == (
        "SELECT eventTime, recipientAccountId, awsRegion, eventSource, eventName, errorCode, sourceIPAddress,\n"
        "       userIdentity.arn, userIdentity.accessKeyId, userIdentity.sessionContext.sourceIdentity\n"
        "FROM EXAMPLE-f852-4e8f-8bd1-bcf6cEXAMPLE\n"
        "WHERE eventTime >= '2030-05-01 09:55:00' AND eventTime <= '2030-05-01 11:06:00'\n"
        "  AND userIdentity.accessKeyId IN ('FAKEACCESSKEYID00001', 'FAKEACCESSKEYID00002')\n"
        "ORDER BY eventTime"
    )
    assert lake["by_source_identity"] == (
        "SELECT eventTime, recipientAccountId, awsRegion, eventSource, eventName, errorCode, sourceIPAddress,\n"
        "       userIdentity.arn, userIdentity.accessKeyId, userIdentity.sessionContext.sourceIdentity\n"
        "FROM EXAMPLE-f852-4e8f-8bd1-bcf6cEXAMPLE\n"
        "WHERE eventTime >= '2030-05-01 09:54:00' AND eventTime <= '2030-05-01 12:06:00'\n"
        "  AND userIdentity.sessionContext.sourceIdentity = 'bob@example.com'\n"
        "ORDER BY eventTime"
    )
    athena = found["athena"]
    assert athena["by_access_key"] == (
        "SELECT eventtime, recipientaccountid, awsregion, eventsource, eventname, errorcode, sourceipaddress,\n"
        "       useridentity.arn, useridentity.accesskeyid\n"
        "FROM security.cloudtrail\n"
        "WHERE eventtime >= '2030-05-01T09:55:00Z' AND eventtime <= '2030-05-01T11:06:00Z'\n"
        "  AND useridentity.accesskeyid IN ('FAKEACCESSKEYID00001', 'FAKEACCESSKEYID00002')\n"
        "ORDER BY eventtime"
    )
    assert athena["by_session_name"] == (
        "SELECT eventtime, recipientaccountid, awsregion, eventsource, eventname, errorcode, sourceipaddress,\n"
        "       useridentity.arn, useridentity.accesskeyid\n"
        "FROM security.cloudtrail\n"
        "WHERE eventtime >= '2030-05-01T09:54:00Z' AND eventtime <= '2030-05-01T12:06:00Z'\n"
        "  AND useridentity.type = 'AssumedRole'\n"
        "  AND split_part(useridentity.arn, '/', 3) = 'bob@example.com'\n"
        "ORDER BY eventtime"
    )
    assert found["warnings"] == []


def test_without_sessions_only_the_identity_queries_remain() -> None:
    found = evidence_queries([], session_name="bob@example.com", window_start=T0, window_end=T0 + timedelta(hours=1),
                             targets=QueryTargets())
    assert found["cloudtrail_lake"]["by_access_key"] is None and found["athena"]["by_access_key"] is None
    assert "FROM <event-data-store-id>\n" in found["cloudtrail_lake"]["by_source_identity"]
    assert "FROM cloudtrail_logs\n" in found["athena"]["by_session_name"]
    assert any("ROLEBROKER_CLOUDTRAIL_EVENT_DATA_STORE" in note for note in found["notes"])


@pytest.mark.parametrize("hostile", [
    "ASIA' OR '1'='1", "FAKEACCESSKEYID0000') --", "fakeaccesskeyid00001", "FAKE\nACCESSKEYID00001", "SHORT",
])
def test_a_stored_access_key_id_that_is_not_one_never_reaches_the_sql(hostile: str) -> None:
    found = evidence_queries([session("FAKEACCESSKEYID00001"), session(hostile)], session_name="bob@example.com",
                             window_start=T0, window_end=T0 + timedelta(hours=1), targets=QueryTargets())
    for text in (*found["cloudtrail_lake"].values(), *found["athena"].values()):
        assert text is None or hostile not in text
    assert found["access_key_ids"] == ["FAKEACCESSKEYID00001"]
    assert found["warnings"] == ["a recorded session has an access key id that is not one; it is left out of "
                                 "the queries (check the table for tampering)"]


def test_a_session_name_that_sts_would_refuse_drops_the_identity_queries() -> None:
    found = evidence_queries([session("FAKEACCESSKEYID00001")], session_name="bob' OR 1=1 --",
                             window_start=T0, window_end=T0 + timedelta(hours=1), targets=QueryTargets())
    assert found["cloudtrail_lake"]["by_source_identity"] is None
    assert found["athena"]["by_session_name"] is None
    assert found["cloudtrail_lake"]["by_access_key"] is not None
    assert found["warnings"]


@pytest.mark.parametrize(("value", "expected"), [
    ("EXAMPLE-f852-4e8f-8bd1-bcf6cEXAMPLE", "EXAMPLE-f852-4e8f-8bd1-bcf6cEXAMPLE"),
    ("arn:aws:cloudtrail:us-east-1:111111111111:eventdatastore/EXAMPLE-f852-4e8f", "EXAMPLE-f852-4e8f"),
])
def test_event_data_store_accepts_an_id_or_an_arn(value: str, expected: str) -> None:
    assert event_data_store_id(value) == expected


@pytest.mark.parametrize("value", ["x; DROP TABLE y", "eds id", "arn:aws:cloudtrail:us-east-1:1:trail/x", ""])
def test_event_data_store_refuses_anything_else(value: str) -> None:
    with pytest.raises(ValueError, match="event data store"):
        event_data_store_id(value)


def test_athena_table_names_are_checked() -> None:
    with pytest.raises(ValueError, match="Athena table"):
        QueryTargets(athena_table="logs; DROP TABLE x")
    assert QueryTargets(athena_table="db.cloudtrail_logs_pp").athena_table == "db.cloudtrail_logs_pp"
