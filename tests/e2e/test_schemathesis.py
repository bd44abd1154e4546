"""Generated requests from docs/openapi.yaml against the running local stack:
no 5xx, and every answer conforms to the spec (status, content type, schema)."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from devstack.stack import LocalStack

pytestmark = pytest.mark.e2e
SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
schema = schemathesis.openapi.from_path(str(SPEC))


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.mint("alice@example.com", groups=["platform-admins", "security"], mfa=True, ttl=3600)


@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_api_never_fails_and_matches_its_spec(case: schemathesis.Case, stack: LocalStack, token: str) -> None:
    if case.method.upper() not in {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"}:
        # TRACE, QUERY, ... never reach the app: chalice local's http.server
        # answers 501 itself, and API Gateway answers them when deployed.
        return
    # A next_token is opaque: only the broker knows which strings it gave out, so a schema-valid
    # one it did not make is rightly a 400, which the positive-data check would call a failure.
    # Likewise an identity with a non-ASCII character names nobody while people are identified by
    # email (docs/security.md, identity model): a 400 that says so, by design.
    query = case.query or {}
    names_nobody = not str(query.get("identity", "")).isascii()
    excluded = [positive_data_acceptance] if "next_token" in query or names_nobody else []
    # A negative case may leave the bearer token out on purpose (the spec requires it): then the
    # broker must refuse, so the token is only added where the case carries the header.
    headers = {"Authorization": f"Bearer {token}"}
    drops_token = case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER) and not any(
        name.lower() == "authorization" for name in case.headers or {})
    response = case.call_and_validate(base_url=stack.broker_url, headers=None if drops_token else headers,
                                      excluded_checks=excluded)
    assert response.status_code < 500
