"""A cold start's first credential request loads what it needs and nothing else.

The handler runs in a fresh interpreter, as a Lambda container's first event:
a real token from the dev issuer (JWKS fetched), the example policy, STS on
the moto server. Timing is ``make bench``'s; this holds the shape that makes
it fast, so a stray import on the hot path fails here rather than as a slower
figure nobody reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.scale import _HANDLER
from devstack.issuer import DevIssuer
from devstack.stack import FAKE_AWS_CREDENTIALS
from tests.conftest import AUDIENCE, Moto

ROOT = Path(__file__).resolve().parents[2]
# Modules a broker without a table (no just-in-time access) must not load for a credential request.
NOT_ON_THE_CREDENTIAL_PATH = ("chalicelib.console", "chalicelib.inquiries", "chalicelib.access.scopes",
                              "chalicelib.jit.", "chalicelib.chat.", "chalicelib.aws.store", "boto3",
                              "cryptography.x509.name")


def first_request(issuer: DevIssuer, moto: Moto, policy: str, role: str, **claims: Any) -> list[str]:
    """Run one cold credential request; the modules it left loaded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ROLEBROKER_"))}
    env.update(FAKE_AWS_CREDENTIALS)
    env.update({"AWS_DEFAULT_REGION": "eu-west-1", "AWS_ENDPOINT_URL_STS": moto.url,
                "ROLEBROKER_OIDC_ISSUER": issuer.url, "ROLEBROKER_OIDC_AUDIENCE": AUDIENCE,
                "ROLEBROKER_POLICY": policy, "BENCH_TOKEN": issuer.mint("alice@example.com", **claims)})
    code = _HANDLER.format(root=str(ROOT), role=role) + "print(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    modules: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return modules


def test_a_cold_credential_request_loads_only_its_path(issuer: DevIssuer, moto_server: Moto) -> None:
    """The example policy ``make bench`` measures: no role in it declares scopes."""
    modules = first_request(issuer, moto_server, str(ROOT / "infra" / "example-access-policy.yaml"), "sandbox-admin",
                            groups=["platform-admins"])
    assert "chalicelib.broker" in modules and "chalicelib.aws.sts" in modules  # the request did run
    assert [m for m in modules if m.startswith(NOT_ON_THE_CREDENTIAL_PATH)] == []


def test_a_policy_with_scopes_loads_them(issuer: DevIssuer, moto_server: Moto, example_policy: str) -> None:
    """The local stack's policy declares scopes on some roles: loading it loads their checks."""
    modules = first_request(issuer, moto_server, example_policy, "sandbox-admin", groups=["platform-admins"])
    assert "chalicelib.access.scopes" in modules
    assert "chalicelib.console" not in modules
