"""Fault injection: STS and DynamoDB answered by a local HTTP server that
throttles, refuses, hangs or is not there. Real botocore clients (standard
retry mode) talk to it, so retries and timeouts are the real ones."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from chalice.test import Client
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from chalicelib.audit import AuditLog
from devstack.issuer import DevIssuer
from devstack.stack import free_port
from tests.conftest import Moto, broker_environ

STS_ERROR = ('<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
             "<Code>{code}</Code><Message>{message}</Message></Error><RequestId>r-1</RequestId></ErrorResponse>")


def sts_error(code: str, status: int = 400, message: str = "injected") -> Response:
    return Response(STS_ERROR.format(code=code, message=message), status=status, content_type="text/xml")


def dynamodb_error(code: str, status: int = 400) -> Response:
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "injected"})
    return Response(body, status=status, content_type="application/x-amz-json-1.0")


def client_for(endpoint: str, service: str, read_timeout: float = 2.0, attempts: int = 3) -> Any:
    config = Config(retries={"mode": "standard", "total_max_attempts": attempts}, connect_timeout=1,
                    read_timeout=read_timeout)
    return boto3.client(service, region_name="us-east-1", endpoint_url=endpoint, config=config,  # type: ignore[call-overload]
                        aws_access_key_id="testing", aws_secret_access_key="testing")


class Broker:
    def __init__(self, client: Client, issuer: DevIssuer) -> None:
        self.client = client
        self.issuer = issuer

    def post(self, path: str, body: dict[str, Any], groups: list[str]) -> Any:
        token = self.issuer.mint("alice@example.com", groups=groups)
        return self.client.http.post(path, body=json.dumps(body), headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})

    def get(self, path: str, groups: list[str]) -> Any:
        token = self.issuer.mint("alice@example.com", groups=groups)
        return self.client.http.get(path, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def broker_with(issuer: DevIssuer, moto_server: Moto,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Broker]]:
    import app as app_module

    clients: list[Client] = []

    def make(overrides: dict[str, Any], table: bool = False) -> Broker:
        environ = broker_environ(issuer)
        if table:
            from chalicelib.aws.store import create_table

            name = f"faults-{uuid.uuid4().hex[:8]}"
            create_table(moto_server.client("dynamodb"), name)
            environ["ROLEBROKER_TABLE"] = name

        def factory(service: str) -> Any:
            return overrides[service] if service in overrides else moto_server.client(service)

        services = app_module._build_services(environ, client_factory=factory, audit=AuditLog(emit=lambda _: None),
                                              inline_tasks=True)
        monkeypatch.setattr(app_module, "_services", services)
        client = Client(app_module.app)
        clients.append(client)
        return Broker(client, issuer)

    yield make


def test_sts_throttling_is_retried_then_429(httpserver: HTTPServer, broker_with: Callable[..., Broker]) -> None:
    httpserver.expect_request("/").respond_with_response(sts_error("Throttling"))
    broker = broker_with({"sts": client_for(httpserver.url_for("/"), "sts")})
    response = broker.post("/v1/credentials", {"role": "sandbox-admin"}, ["platform-admins"])
    assert response.status_code == 429 and "throttling" in response.json_body["Message"]
    assert len(httpserver.log) == 3  # the first try and two retries


def test_sts_throttling_then_success_is_invisible(httpserver: HTTPServer, broker_with: Callable[..., Broker],
                                                  moto_server: Moto) -> None:
    real = moto_server.client("sts")
    calls = {"n": 0}

    def flaky(request: Request) -> Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return sts_error("Throttling")
        form = request.form.to_dict()
        answer = real.assume_role(RoleArn=form["RoleArn"], RoleSessionName=form["RoleSessionName"])
        creds = answer["Credentials"]
        xml = (f"<AssumeRoleResponse xmlns='https://sts.amazonaws.com/doc/2011-06-15/'><AssumeRoleResult>"
               f"<Credentials><AccessKeyId>{creds['AccessKeyId']}</AccessKeyId><SecretAccessKey>"
               f"{creds['SecretAccessKey']}</SecretAccessKey><SessionToken>{creds['SessionToken']}</SessionToken>"
               f"<Expiration>{creds['Expiration'].isoformat()}</Expiration></Credentials><AssumedRoleUser>"
               f"<Arn>{answer['AssumedRoleUser']['Arn']}</Arn><AssumedRoleId>x</AssumedRoleId></AssumedRoleUser>"
               "</AssumeRoleResult></AssumeRoleResponse>")
        return Response(xml, content_type="text/xml")

    httpserver.expect_request("/").respond_with_handler(flaky)
    broker = broker_with({"sts": client_for(httpserver.url_for("/"), "sts")})
    response = broker.post("/v1/credentials", {"role": "sandbox-admin"}, ["platform-admins"])
    assert response.status_code == 200, response.body
    assert calls["n"] == 2


@pytest.mark.parametrize(("code", "status", "fragment"), [
    ("AccessDenied", 502, "trust policy"),
    ("RegionDisabledException", 502, "not activated"),
    ("ExpiredToken", 503, "broker's own AWS credentials"),
    ("InvalidClientTokenId", 503, "broker's own AWS credentials"),
])
def test_sts_refusals_over_http(httpserver: HTTPServer, broker_with: Callable[..., Broker], code: str,
                                status: int, fragment: str) -> None:
    httpserver.expect_request("/").respond_with_response(sts_error(code, 403))
    broker = broker_with({"sts": client_for(httpserver.url_for("/"), "sts")})
    response = broker.post("/v1/credentials", {"role": "sandbox-admin"}, ["platform-admins"])
    assert response.status_code == status and fragment in response.json_body["Message"]


def test_sts_endpoint_timeout_is_503(httpserver: HTTPServer, broker_with: Callable[..., Broker]) -> None:
    def hang(request: Request) -> Response:
        time.sleep(1.5)
        return sts_error("Throttling")

    httpserver.expect_request("/").respond_with_handler(hang)
    broker = broker_with({"sts": client_for(httpserver.url_for("/"), "sts", read_timeout=0.3, attempts=2)})
    response = broker.post("/v1/credentials", {"role": "sandbox-admin"}, ["platform-admins"])
    assert response.status_code == 503 and "unreachable" in response.json_body["Message"]


def test_sts_endpoint_down_is_503(broker_with: Callable[..., Broker]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    broker = broker_with({"sts": client_for(closed, "sts", attempts=2)})
    response = broker.post("/v1/credentials", {"role": "sandbox-admin"}, ["platform-admins"])
    assert response.status_code == 503


def test_dynamodb_throttling_is_429(httpserver: HTTPServer, broker_with: Callable[..., Broker]) -> None:
    httpserver.expect_request("/").respond_with_response(dynamodb_error("ProvisionedThroughputExceededException"))
    broker = broker_with({"dynamodb": client_for(httpserver.url_for("/"), "dynamodb", attempts=2)}, table=True)
    listed = broker.get("/v1/roles", ["platform-admins"])
    assert listed.status_code == 429, listed.body
    created = broker.post("/v1/requests", {"role": "prod-breakglass", "duration_seconds": 3600, "reason": "INC-1"},
                          ["developers"])
    assert created.status_code == 429


def test_dynamodb_down_is_503_and_plain_roles_still_work(broker_with: Callable[..., Broker]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    broker = broker_with({"dynamodb": client_for(closed, "dynamodb", attempts=1)}, table=True)
    # bob's roles need no grant lookup, and the identity snapshot is best effort
    assert broker.get("/v1/roles", ["sre"]).status_code == 200
    assert broker.get("/v1/requests", ["developers"]).status_code == 503


def test_unreadable_policy_is_503(issuer: DevIssuer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import app as app_module

    environ = broker_environ(issuer, ROLEBROKER_POLICY=str(tmp_path / "missing.yaml"))
    monkeypatch.setattr(app_module, "_services", app_module._build_services(environ))
    with Client(app_module.app) as client:
        token = issuer.mint("alice@example.com", groups=["platform-admins"])
        response = client.http.get("/v1/roles", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503 and "access policy" in response.json_body["Message"]


def test_missing_settings_are_503_not_500(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import app as app_module

    monkeypatch.setattr(app_module, "_services", None)
    monkeypatch.delenv("ROLEBROKER_OIDC_ISSUER", raising=False)
    (tmp_path / ".chalice").mkdir()
    (tmp_path / ".chalice" / "config.json").write_text('{"version": "2.0", "app_name": "rolebroker"}')
    with Client(app_module.app, project_dir=str(tmp_path)) as client:
        response = client.http.get("/v1/roles", headers={"Authorization": "Bearer x.y.z"})
    assert response.status_code == 503 and "misconfigured" in response.json_body["Message"]
