"""Audit entries as OCSF events, and the EventBridge publisher that never fails a request."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

import pytest
from botocore.stub import Stubber

from chalicelib.audit import AuditLog, CallContext
from chalicelib.aws.events import EventBridgePublisher
from chalicelib.identity.tokens import Identity
from chalicelib.ocsf import to_ocsf
from tests.conftest import fake_client

WHEN = "2030-05-01T10:00:00+00:00"
EPOCH_MS = int(datetime(2030, 5, 1, 10, tzinfo=timezone.utc).timestamp() * 1000)


def entry(action: str, outcome: str, **fields: Any) -> dict[str, Any]:
    return {"audit": "rolebroker", "time": WHEN, "action": action, "outcome": outcome, "request_id": "rid-1",
            "channel": "api", "source_ip": "192.0.2.10", "user_agent": "rolebroker/1.0", "reason": "why",
            "who": "alice@example.com", "issuer": "https://idp.example.com", "groups": ["developers"],
            "amr": ["pwd", "mfa"], **fields}


@pytest.mark.parametrize(("audit", "class_uid", "activity_id", "status_id", "severity_id"), [
    (entry("credentials", "allowed", role="sandbox-admin", account="222222222222"), 3002, 1, 1, 1),
    (entry("credentials", "denied", role="sandbox-admin"), 3002, 1, 2, 2),
    (entry("console", "error", role="r"), 3002, 1, 2, 2),
    ({"time": WHEN, "action": "authenticate", "outcome": "denied", "request_id": "r", "reason": "bad"}, 3002, 1, 2, 3),
    (entry("approve", "approved", role="breakglass", requester="bob@example.com"), 3005, 1, 1, 1),
    (entry("approve", "denied", role="breakglass"), 3005, 1, 2, 2),
    (entry("revoke", "revoked", role="breakglass", requester="bob@example.com"), 3005, 2, 1, 1),
    (entry("request", "created", role="breakglass", request_ref="0123456789ab"), 3004, 1, 1, 1),
    (entry("deny", "denied", role="breakglass", request_ref="0123456789ab", requester="bob@example.com"),
     3004, 3, 1, 1),
    (entry("deny", "denied", role="breakglass", request_ref="0123456789ab"), 3004, 3, 2, 2),
    (entry("cancel", "cancelled", role="breakglass", request_ref="0123456789ab"), 3004, 3, 1, 1),
    (entry("access-query", "allowed", about="bob@example.com"), 3004, 2, 1, 1),
    (entry("evidence", "denied", request_ref="0123456789ab"), 3004, 2, 2, 2),
    (entry("break-glass", "approved", role="prod-admin", request_ref="0123456789ab"), 3005, 1, 1, 4),
    (entry("break-glass", "denied", role="prod-admin"), 3005, 1, 2, 2),
    (entry("approve", "counted", role="breakglass", request_ref="0123456789ab"), 3005, 1, 1, 1),
    (entry("extend", "extended", role="breakglass", request_ref="0123456789ab"), 3005, 1, 1, 1),
    (entry("review", "reviewed", role="prod-admin", request_ref="0123456789ab"), 3004, 3, 1, 1),
    (entry("expire", "expired", role="breakglass", request_ref="0123456789ab"), 3004, 3, 1, 1),
    (entry("something-new", "odd"), 3004, 99, 0, 1),
])
def test_each_audit_action_has_its_ocsf_class(audit: dict[str, Any], class_uid: int, activity_id: int,
                                              status_id: int, severity_id: int) -> None:
    event = to_ocsf(audit)
    assert (event["class_uid"], event["activity_id"], event["status_id"], event["severity_id"]) == (
        class_uid, activity_id, status_id, severity_id)
    assert event["category_uid"] == 3 and event["type_uid"] == class_uid * 100 + activity_id
    assert event["time"] == EPOCH_MS
    assert event["metadata"]["version"] == "1.1.0" and event["metadata"]["product"]["name"] == "rolebroker"
    assert event["metadata"]["correlation_uid"] == audit["request_id"]
    assert json.loads(event["raw_data"]) == audit
    if class_uid in (3002, 3005):
        assert event["user"]["name"]  # required by both classes
    else:
        assert event["entity"]["name"]


def test_a_credentials_event_names_the_person_the_role_and_mfa() -> None:
    event = to_ocsf(entry("credentials", "allowed", role="sandbox-admin", account="222222222222",
                          session_name="alice@example.com"))
    assert event["actor"]["user"] == {"name": "alice@example.com", "uid": "alice@example.com", "type_id": 1,
                                      "type": "User", "groups": [{"name": "developers"}]}
    assert event["actor"]["idp"] == {"name": "https://idp.example.com"}
    assert event["user"]["name"] == "alice@example.com"
    assert event["service"] == {"name": "sandbox-admin", "uid": "222222222222"}
    assert event["is_mfa"] is True and event["session"]["uid"] == "alice@example.com"
    assert event["src_endpoint"] == {"ip": "192.0.2.10"}
    assert event["http_request"] == {"user_agent": "rolebroker/1.0"}
    assert event["type_name"] == "Authentication: Logon" and event["status"] == "Success"


def test_an_approval_names_who_was_given_what() -> None:
    event = to_ocsf(entry("approve", "approved", role="breakglass", account="333333333333",
                          requester="bob@example.com", who="carol@example.com"))
    assert event["user"]["name"] == "bob@example.com" and event["actor"]["user"]["name"] == "carol@example.com"
    assert event["privileges"] == ["breakglass"]
    assert event["resources"] == [{"name": "breakglass", "uid": "333333333333", "type": "AWS IAM role"}]


# --------------------------------------------------------------------------
# The publisher


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def stubbed() -> tuple[EventBridgePublisher, Stubber, Clock]:
    client = fake_client("events")
    clock = Clock()
    return EventBridgePublisher(client, "audit-bus", monotonic=clock, cool_down=60), Stubber(client), clock


def test_entries_go_in_batches_of_ten_with_ocsf_details() -> None:
    publisher, stubber, _ = stubbed()
    audits = [entry("credentials", "allowed", role=f"r{i}") for i in range(12)]
    for batch in (audits[:10], audits[10:]):
        stubber.add_response("put_events", {"FailedEntryCount": 0, "Entries": [{"EventId": "e"}] * len(batch)}, {
            "Entries": [{"Source": "rolebroker", "DetailType": "OCSF Authentication",
                         "Detail": json.dumps(to_ocsf(a)), "EventBusName": "audit-bus",
                         "Time": datetime(2030, 5, 1, 10, tzinfo=timezone.utc)} for a in batch]})
    with stubber:
        publisher.publish(audits)
        stubber.assert_no_pending_responses()


def test_an_outage_is_one_warning_then_a_quiet_cool_down(caplog: pytest.LogCaptureFixture) -> None:
    publisher, stubber, clock = stubbed()
    stubber.add_client_error("put_events", "InternalException", http_status_code=500)
    stubber.add_response("put_events", {"FailedEntryCount": 0, "Entries": [{"EventId": "e"}]})
    with stubber, caplog.at_level(logging.WARNING, "chalicelib.aws.events"):
        publisher.publish([entry("credentials", "allowed")])      # fails: warned, no raise
        clock.now += 30
        publisher.publish([entry("credentials", "allowed")] * 2)  # cooling down: no call at all
        clock.now += 31
        publisher.publish([entry("credentials", "allowed")])      # tries again
        stubber.assert_no_pending_responses()
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "1 audit events not published to EventBridge (InternalException); they are in the audit log",
        "2 audit events not published to EventBridge (cooling down after a failure); they are in the audit log",
    ]


def test_refused_entries_are_counted_not_shown(caplog: pytest.LogCaptureFixture) -> None:
    publisher, stubber, _ = stubbed()
    stubber.add_response("put_events", {"FailedEntryCount": 1, "Entries": [
        {"EventId": "e"}, {"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"}]})
    with stubber, caplog.at_level(logging.WARNING, "chalicelib.aws.events"):
        publisher.publish([entry("credentials", "allowed"), entry("credentials", "denied")])
    assert [r.getMessage() for r in caplog.records] == [
        "1 audit events refused by EventBridge (ThrottlingException); they are in the audit log"]


def test_the_audit_log_buffers_until_flushed_and_survives_a_broken_sink(caplog: pytest.LogCaptureFixture) -> None:
    published: list[list[str]] = []

    class Sink:
        def publish(self, entries: Any) -> None:
            published.append([e["action"] for e in entries])
            raise RuntimeError("boom")

    lines: list[str] = []
    audit = AuditLog(emit=lines.append)
    audit.publish_to(Sink())
    context = CallContext(request_id="r")
    audit.record(action="credentials", outcome="allowed", context=context, identity=Identity(subject="a"))
    audit.record(action="console", outcome="allowed", context=context)
    assert len(lines) == 2 and published == []
    with caplog.at_level(logging.WARNING, "chalicelib.audit"):
        audit.flush()
    assert published == [["credentials", "console"]]
    assert "2 audit events not published (RuntimeError)" in caplog.records[0].getMessage()
    for _ in range(10):
        audit.record(action="x", outcome="allowed", context=context)
    assert published[-1] == ["x"] * 10  # a full buffer goes out without waiting for the flush
