"""Audit lines published to EventBridge as OCSF events: a bus, a rule and an
SQS queue on the moto server, filled by real requests through the app."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.audit import AuditLog
from devstack.issuer import DevIssuer
from devstack.stack import free_port
from tests.conftest import Moto, broker_environ, fake_client


def bus_to_queue(moto_server: Moto) -> tuple[str, str]:
    events, sqs = moto_server.client("events"), moto_server.client("sqs")
    bus = f"audit-{uuid.uuid4().hex[:8]}"
    events.create_event_bus(Name=bus)
    queue_url = sqs.create_queue(QueueName=bus)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="ocsf", EventBusName=bus, EventPattern=json.dumps({"source": ["rolebroker"]}))
    events.put_targets(Rule="ocsf", EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])
    return bus, queue_url


def received(moto_server: Moto, queue_url: str) -> list[dict[str, Any]]:
    sqs = moto_server.client("sqs")
    found: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return found
        found += [json.loads(m["Body"]) for m in batch]
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)])


def test_each_request_publishes_its_audit_lines_as_ocsf(issuer: DevIssuer, moto_server: Moto,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import app as app_module

    bus, queue_url = bus_to_queue(moto_server)
    lines: list[str] = []
    services = app_module._build_services(broker_environ(issuer, ROLEBROKER_EVENT_BUS=bus),
                                          client_factory=moto_server.client, audit=AuditLog(emit=lines.append))
    monkeypatch.setattr(app_module, "_services", services)
    with Client(app_module.app) as client:
        token = issuer.mint("alice@example.com", groups=["platform-admins"])
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        assert client.http.post("/v1/credentials", headers=headers,
                                body=json.dumps({"role": "sandbox-admin"})).status_code == 200
        assert client.http.post("/v1/credentials", headers=headers,
                                body=json.dumps({"role": "prod-admin"})).status_code == 403  # no MFA
        assert client.http.get("/v1/roles", headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401

    messages = received(moto_server, queue_url)
    assert len(messages) == len(lines) == 3
    assert {m["source"] for m in messages} == {"rolebroker"}
    assert {m["detail-type"] for m in messages} == {"OCSF Authentication"}
    by_outcome = {json.loads(m["detail"]["raw_data"])["outcome"] + ":" + m["detail"]["metadata"]["event_code"]:
                  m["detail"] for m in messages}
    issued = by_outcome["allowed:credentials"]
    assert (issued["class_uid"], issued["activity_id"], issued["type_uid"], issued["status_id"]) == (3002, 1, 300201, 1)
    assert issued["user"]["name"] == "alice@example.com" and issued["service"]["uid"] == "222222222222"
    assert by_outcome["denied:credentials"]["status_id"] == 2
    assert by_outcome["denied:authenticate"]["severity_id"] == 3
    assert sorted(json.loads(m["detail"]["raw_data"])["request_id"] for m in messages) == sorted(
        json.loads(line)["request_id"] for line in lines)


def test_eventbridge_down_costs_a_warning_not_a_request(issuer: DevIssuer, moto_server: Moto,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    import app as app_module

    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens here

    def clients(name: str) -> Any:
        return fake_client("events", nowhere) if name == "events" else moto_server.client(name)

    lines: list[str] = []
    services = app_module._build_services(broker_environ(issuer, ROLEBROKER_EVENT_BUS="audit"),
                                          client_factory=clients, audit=AuditLog(emit=lines.append))
    monkeypatch.setattr(app_module, "_services", services)
    token = issuer.mint("alice@example.com", groups=["platform-admins"])
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with Client(app_module.app) as client, caplog.at_level(logging.WARNING, "chalicelib.aws.events"):
        first = client.http.post("/v1/credentials", headers=headers, body=json.dumps({"role": "sandbox-admin"}))
        second = client.http.post("/v1/credentials", headers=headers, body=json.dumps({"role": "sandbox-admin"}))
    assert first.status_code == 200 and second.status_code == 200
    assert len(lines) == 2  # the audit log itself is untouched
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings[0].startswith("1 audit events not published to EventBridge (EndpointConnectionError)")
    assert "cooling down" in warnings[1]
