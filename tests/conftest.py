"""Shared fixtures: a real dev issuer on 127.0.0.1, the app wired to a
Stubber'd STS client, and a moto server for flow tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from chalice.test import Client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chalicelib.audit import AuditLog  # noqa: E402
from devstack.issuer import DevIssuer  # noqa: E402
from devstack.stack import FAKE_AWS_CREDENTIALS, aws_emulation  # noqa: E402
from tests.secretscan import SCANNER, CollectingHandler  # noqa: E402

AUDIENCE = "rolebroker-test"
CI_AUDIENCE = "rolebroker-ci"


def pytest_configure(config: pytest.Config) -> None:
    """Collect everything rolebroker logs, audits or answers with an error."""
    import logging

    import app as app_module

    handler = CollectingHandler(SCANNER)
    for name in ("", "rolebroker.audit"):
        logging.getLogger(name).addHandler(handler)
    original_init = AuditLog.__init__

    def init(self: AuditLog, emit: Any = None, **kwargs: Any) -> None:
        original_init(self, emit, **kwargs)
        inner = self._emit

        def tee(line: str) -> None:
            SCANNER.add("audit", line)
            inner(line)

        self._emit = tee

    AuditLog.__init__ = init  # type: ignore[method-assign]
    original_error = app_module.error_response

    def error_response(code: str, message: str, status: int, request_id: str,
                       headers: dict[str, str] | None = None) -> Any:
        SCANNER.add(f"error body {status}", f"{code}: {message}")
        return original_error(code, message, status, request_id, headers)

    app_module.error_response = error_response


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    hits = SCANNER.scan()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"secret scan: {len(SCANNER.collected)} log lines, audit lines and error bodies "
                            f"scanned, {len(hits)} secrets found")
        for hit in hits[:20]:
            reporter.write_line(f"  SECRET ({hit.kind}) in {hit.source}: {hit.excerpt}", red=True)
    if hits:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
POLICY = str(ROOT / "devstack" / "access-policy.yaml")


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    """pytest-httpserver binds loopback only."""
    return ("127.0.0.1", 0)


@pytest.fixture(scope="session")
def issuer() -> Iterator[DevIssuer]:
    dev = DevIssuer(audience=AUDIENCE).start()
    yield dev
    dev.stop()


@pytest.fixture(scope="session")
def ci_issuer() -> Iterator[DevIssuer]:
    """A second issuer shaped like GitHub Actions: the example policy's ``ci``."""
    dev = DevIssuer(audience=CI_AUDIENCE, kind="github").start()
    yield dev
    dev.stop()


@pytest.fixture(scope="session")
def example_policy(ci_issuer: DevIssuer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The example policy with its ``ci`` issuer pointed at this session's CI issuer."""
    from devstack.stack import render_policy

    path = tmp_path_factory.mktemp("policy") / "access-policy.yaml"
    path.write_text(render_policy(Path(POLICY).read_text(), ci_issuer.url, CI_AUDIENCE))
    return str(path)


def broker_environ(issuer: DevIssuer, **overrides: str) -> dict[str, str]:
    return {
        "ROLEBROKER_OIDC_ISSUER": issuer.url,
        "ROLEBROKER_OIDC_AUDIENCE": AUDIENCE,
        "ROLEBROKER_POLICY": POLICY,
        "AWS_DEFAULT_REGION": "us-east-1",
        **overrides,
    }


def fake_client(service: str, endpoint_url: str | None = None) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        region_name="us-east-1",
        endpoint_url=endpoint_url,
        aws_access_key_id=FAKE_AWS_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_AWS_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def assume_role_answer(role_arn: str, session_name: str, seconds: int = 3600) -> dict[str, Any]:
    account = role_arn.split(":")[4]
    role = role_arn.rsplit("/", 1)[1]
    return {
        "Credentials": {
            "AccessKeyId": "FAKEACCESSKEYID00001",
            "SecretAccessKey": "fake/Secret/Access/Key/For/Tests/Only/00",
            "SessionToken": "fake-session-token-for-rolebroker-tests" + "x" * 40,
            "Expiration": datetime.now(timezone.utc) + timedelta(seconds=seconds),
        },
        "AssumedRoleUser": {
            "AssumedRoleId": f"AROAEXAMPLE:{session_name}",
            "Arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session_name}",
        },
        "SourceIdentity": session_name,
    }


SECRETS_IN_STUB = ("fake/Secret/Access/Key/For/Tests/Only/00", "fake-session-token-for-rolebroker-tests")


@dataclass
class Harness:
    """The app behind ``chalice.test.Client`` with STS answered by a Stubber."""

    client: Client
    stubber: Stubber
    issuer: DevIssuer
    ci: DevIssuer
    audit_lines: list[str] = field(default_factory=list)

    def token(self, sub: str = "alice@example.com", **kwargs: Any) -> str:
        return self.issuer.mint(sub, **kwargs)

    def headers(self, token: str | None = None, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token(**kwargs)}", "Content-Type": "application/json"}

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> Any:
        return self.client.http.get(path, headers=self.headers(token, **kwargs))

    def post(self, path: str, body: Any, token: str | None = None, raw: bool = False, **kwargs: Any) -> Any:
        data = body if raw else json.dumps(body)
        return self.client.http.post(path, headers=self.headers(token, **kwargs), body=data)

    def expect_assume(self, role_arn: str, session_name: str = "alice@example.com",
                      expected: dict[str, Any] | None = None, seconds: int = 3600) -> None:
        self.stubber.add_response("assume_role", assume_role_answer(role_arn, session_name, seconds), expected)

    def audits(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit_lines]


@contextmanager
def harness(issuer: DevIssuer, ci: DevIssuer, policy: str, monkeypatch: pytest.MonkeyPatch,
            **environ: str) -> Iterator[Harness]:
    """The app with STS stubbed, the example policy and ``environ`` on top of the defaults."""
    import app as app_module

    sts = fake_client("sts")
    lines: list[str] = []
    services = app_module._build_services(
        broker_environ(issuer, ROLEBROKER_POLICY=policy, **environ),
        client_factory=lambda name: sts if name == "sts" else fake_client(name),
        audit=AuditLog(emit=lines.append),
    )
    monkeypatch.setattr(app_module, "_services", services)
    with Stubber(sts) as stubber, Client(app_module.app) as client:
        yield Harness(client=client, stubber=stubber, issuer=issuer, ci=ci, audit_lines=lines)


@pytest.fixture
def api(issuer: DevIssuer, ci_issuer: DevIssuer, example_policy: str,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    with harness(issuer, ci_issuer, example_policy, monkeypatch) as h:
        yield h


@dataclass
class Moto:
    url: str
    process: subprocess.Popen[bytes] | None  # None: a server someone else started and stops

    def client(self, service: str) -> Any:
        return fake_client(service, self.url)

    def client_with(self, service: str, credentials: Any) -> Any:
        """A client with the given credentials (an assumed role's: moto then acts in that role's account)."""
        return boto3.client(service, region_name="us-east-1", endpoint_url=self.url,  # type: ignore[call-overload]
                            **credentials)


# ``make mutate`` runs pytest once per mutant; starting a moto server each time
# would cost more than the tests. It starts one on 127.0.0.1 for the whole run
# and names it here. Every test makes its own tables, queues and buses.
SHARED_MOTO_URL = "ROLEBROKER_TEST_MOTO_URL"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Moto]:
    shared = os.environ.get(SHARED_MOTO_URL)
    if shared:
        yield Moto(url=shared, process=None)
        return
    with aws_emulation() as (url, process):
        yield Moto(url=url, process=process)
