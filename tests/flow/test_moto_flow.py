"""The whole broker flow against a moto server on 127.0.0.1 (real HTTP)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import boto3
import pytest
from chalice.test import Client

from chalicelib.audit import AuditLog
from devstack.issuer import DevIssuer
from tests.conftest import Moto, broker_environ


@pytest.fixture
def client(issuer: DevIssuer, moto_server: Moto, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    import app as app_module

    services = app_module._build_services(broker_environ(issuer), client_factory=moto_server.client,
                                          audit=AuditLog(emit=lambda line: None))
    monkeypatch.setattr(app_module, "_services", services)
    with Client(app_module.app) as test_client:
        yield test_client


def _credentials(client: Client, token: str, role: str) -> dict[str, object]:
    response = client.http.post("/v1/credentials", body=json.dumps({"role": role}),
                                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert response.status_code == 200, response.body
    body: dict[str, object] = response.json_body
    return body


def test_issued_credentials_work_and_carry_the_callers_identity(
        client: Client, issuer: DevIssuer, moto_server: Moto) -> None:
    body = _credentials(client, issuer.mint("alice@example.com", groups=["platform-admins"]), "sandbox-admin")
    creds = body["credentials"]
    assert isinstance(creds, dict)
    sts = boto3.client("sts", region_name="us-east-1", endpoint_url=moto_server.url,
                       aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                       aws_session_token=creds["SessionToken"])
    caller = sts.get_caller_identity()
    assert caller["Account"] == "222222222222"
    assert caller["Arn"] == "arn:aws:sts::222222222222:assumed-role/CrossAccountAdminRole/alice@example.com"
    assert body["assumed_role_arn"] == caller["Arn"]


def test_two_people_get_distinct_sessions(client: Client, issuer: DevIssuer) -> None:
    alice = _credentials(client, issuer.mint("alice@example.com", groups=["developers"]), "sandbox-readonly")
    bob = _credentials(client, issuer.mint("bob@example.com", groups=["developers"]), "sandbox-readonly")
    assert str(alice["assumed_role_arn"]).endswith("/alice@example.com")
    assert str(bob["assumed_role_arn"]).endswith("/bob@example.com")
    assert alice["credentials"] != bob["credentials"]


def test_source_principal_allows_sessions_longer_than_an_hour(
        issuer: DevIssuer, moto_server: Moto, monkeypatch: pytest.MonkeyPatch) -> None:
    import app as app_module

    secrets = moto_server.client("secretsmanager")
    name = f"rolebroker/source-principal-{uuid.uuid4().hex[:8]}"  # the server may be shared (make mutate)
    secrets.create_secret(Name=name, SecretString=json.dumps(
        {"AccessKeyId": "FAKESOURCEKEYID00001", "SecretAccessKey": "source-secret-key-value"}))
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_server.url)  # the source principal's own STS client
    environ = broker_environ(issuer, ROLEBROKER_MAX_SESSION_SECONDS="7200",
                             ROLEBROKER_SOURCE_CREDENTIALS_SECRET=name)
    services = app_module._build_services(environ, client_factory=moto_server.client,
                                          audit=AuditLog(emit=lambda line: None))
    monkeypatch.setattr(app_module, "_services", services)
    with Client(app_module.app) as test_client:
        body = _credentials(test_client, issuer.mint("bob@example.com", groups=["developers"]), "sandbox-readonly")
    assert body["duration_seconds"] == 7200 and body["warnings"] == []
