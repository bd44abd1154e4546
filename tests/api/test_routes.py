"""Routes through chalice.test.Client; STS parameters checked with a Stubber."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from tests.conftest import SECRETS_IN_STUB, Harness

SANDBOX_ADMIN = "arn:aws:iam::222222222222:role/CrossAccountAdminRole"
PROD_ADMIN = "arn:aws:iam::333333333333:role/CrossAccountAdminRole"


def test_health_needs_no_token(api: Harness) -> None:
    response = api.client.http.get("/v1/health")
    assert response.status_code == 200
    assert response.json_body == {"status": "ok"}


def test_roles_lists_what_the_caller_may_use_or_request(api: Harness) -> None:
    alice = api.get("/v1/roles", groups=["platform-admins"]).json_body["roles"]
    access = {role["name"]: role["access"] for role in alice}
    assert access == {
        "sandbox-admin": "allowed",
        "sandbox-readonly": "allowed",
        "prod-readonly": "allowed",
        "prod-admin": "mfa_required",
        "prod-breakglass": "approval_required",
    }
    first = alice[0]
    assert set(first) >= {"name", "account_id", "role_arn", "region", "max_duration_seconds", "console", "access"}
    assert first["account_id"] == "222222222222" and first["region"] == "eu-west-1"


def test_roles_for_someone_with_no_matching_rule_is_empty(api: Harness) -> None:
    response = api.get("/v1/roles", sub="mallory@example.com", groups=["interns"])
    assert response.status_code == 200
    assert response.json_body == {"roles": []}


def test_credentials_stamp_the_session_exactly(api: Harness) -> None:
    api.expect_assume(SANDBOX_ADMIN, expected={
        "RoleArn": SANDBOX_ADMIN,
        "RoleSessionName": "alice@example.com",
        "SourceIdentity": "alice@example.com",
        "DurationSeconds": 3600,
        "ExternalId": "rolebroker-sandbox",
        "Tags": [
            {"Key": "rolebroker:identity", "Value": "alice@example.com"},
            {"Key": "rolebroker:issuer", "Value": api.issuer.url},
            {"Key": "rolebroker:groups", "Value": "ops:platform-admins"},
        ],
    })
    response = api.post("/v1/credentials", {"role": "sandbox-admin"}, groups=["platform-admins", "ops"])
    assert response.status_code == 200, response.body
    body = response.json_body
    api.stubber.assert_no_pending_responses()
    assert body["assumed_role_arn"] == (
        "arn:aws:sts::222222222222:assumed-role/CrossAccountAdminRole/alice@example.com")
    creds = body["credentials"]
    assert list(creds) == ["Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"]
    assert creds["Version"] == 1 and isinstance(creds["Version"], int)
    assert datetime.fromisoformat(creds["Expiration"]).utcoffset() is not None
    assert body["profile"]["name"] == "sandbox-admin"
    assert body["profile"]["config"].startswith("[profile sandbox-admin]\n")
    assert "credential_process = rolebroker credential-process --url" in body["profile"]["config"]
    assert "--role sandbox-admin" in body["profile"]["config"]
    assert "region = eu-west-1" in body["profile"]["config"]


def test_session_identity_comes_from_the_token_not_the_request(api: Harness) -> None:
    api.expect_assume(SANDBOX_ADMIN, expected=None)
    response = api.post("/v1/credentials", {"role": "sandbox-admin", "source_identity": "root"},
                        groups=["platform-admins"])
    assert response.status_code == 400
    assert "source_identity" in response.json_body["Message"]


def test_account_without_external_id_sends_none(api: Harness) -> None:
    api.expect_assume("arn:aws:iam::333333333333:role/ReadOnlyRole", expected={
        "RoleArn": "arn:aws:iam::333333333333:role/ReadOnlyRole",
        "RoleSessionName": "alice@example.com",
        "SourceIdentity": "alice@example.com",
        "DurationSeconds": 3600,
        "Tags": [
            {"Key": "rolebroker:identity", "Value": "alice@example.com"},
            {"Key": "rolebroker:issuer", "Value": api.issuer.url},
            {"Key": "rolebroker:groups", "Value": "platform-admins"},
        ],
    })
    response = api.post("/v1/credentials", {"role": "prod-readonly"}, groups=["platform-admins"])
    assert response.status_code == 200, response.body
    api.stubber.assert_no_pending_responses()


@pytest.mark.parametrize(("requested", "issued", "warned"), [
    (None, 3600, True),     # role max 7200, capped by role chaining
    (900, 900, False),
    (3600, 3600, False),
    (7200, 3600, True),
])
def test_duration_is_capped_by_role_chaining_and_says_so(
        api: Harness, requested: int | None, issued: int, warned: bool) -> None:
    arn = "arn:aws:iam::222222222222:role/ReadOnlyRole"
    api.stubber.add_response("assume_role", _answer(arn), {
        "RoleArn": arn, "RoleSessionName": "bob@example.com", "SourceIdentity": "bob@example.com",
        "DurationSeconds": issued, "ExternalId": "rolebroker-sandbox", "Tags": _any_tags()})
    body = {"role": "sandbox-readonly"} | ({"duration_seconds": requested} if requested else {})
    response = api.post("/v1/credentials", body, sub="bob@example.com", groups=["developers"])
    assert response.status_code == 200, response.body
    assert response.json_body["duration_seconds"] == issued
    assert bool(response.json_body["warnings"]) is warned
    if warned:
        assert "role chaining" in " ".join(response.json_body["warnings"])


def test_role_max_caps_duration(api: Harness) -> None:
    from chalicelib.stamping import session_name_for_key

    arn = "arn:aws:iam::222222222222:role/DeployRole"
    name = session_name_for_key("ci|repo:acme/infra:ref:refs/heads/main")
    api.stubber.add_response("assume_role", _answer(arn), {
        "RoleArn": arn, "RoleSessionName": name, "SourceIdentity": name,
        "DurationSeconds": 900, "ExternalId": "rolebroker-sandbox", "Tags": _any_tags()})
    token = api.ci.mint("", claims={"repository": "acme/infra", "ref": "refs/heads/main"})
    response = api.post("/v1/credentials", {"role": "ci-deploy", "duration_seconds": 3600}, token=token)
    assert response.status_code == 200, response.body
    assert response.json_body["duration_seconds"] == 900
    assert "at most 900" in response.json_body["warnings"][0]


def test_claim_rule_must_match_every_claim(api: Harness) -> None:
    token = api.ci.mint("", claims={"repository": "acme/infra", "ref": "refs/heads/feature"})
    response = api.post("/v1/credentials", {"role": "ci-deploy"}, token=token)
    assert response.status_code == 403
    assert response.json_body["Message"] == (
        "role ci-deploy requires issuer ci and a matching repository, ref claim")


def test_console_is_refused_for_a_role_without_console_even_when_its_rule_allows(api: Harness) -> None:
    # prod-readonly allows platform-admins but has no console: true; the Stubber has nothing
    # queued, so any STS call would fail the request with another status.
    response = api.post("/v1/console", {"role": "prod-readonly"}, groups=["platform-admins"])
    assert response.status_code == 403, response.body
    assert response.json_body["Message"] == (
        "role prod-readonly does not allow console sign-in (console: false in the policy)")
    audit = api.audits()[-1]
    assert (audit["action"], audit["outcome"], audit["role"]) == ("console", "denied", "prod-readonly")
    assert audit["rule"] == "group platform-admins or sre"


def test_unknown_role_is_404(api: Harness) -> None:
    response = api.post("/v1/credentials", {"role": "no-such-role"}, groups=["platform-admins"])
    assert response.status_code == 404
    assert "no-such-role" in response.json_body["Message"]


def test_not_allowed_is_403_naming_role_and_reason(api: Harness) -> None:
    response = api.post("/v1/credentials", {"role": "sandbox-admin"}, sub="bob@example.com", groups=["developers"])
    assert response.status_code == 403
    assert response.json_body["Code"] == "ForbiddenError"
    assert response.json_body["Message"] == "role sandbox-admin requires group platform-admins"


def test_claim_values_of_other_people_are_never_shown(api: Harness) -> None:
    response = api.post("/v1/credentials", {"role": "sandbox-readonly"}, sub="eve@example.com", groups=["x"])
    assert response.status_code == 403
    assert "dana@example.com" not in response.body.decode()
    assert "a matching email claim" in response.json_body["Message"]


def test_mfa_role_without_mfa_is_403(api: Harness) -> None:
    response = api.post("/v1/credentials", {"role": "prod-admin"}, groups=["platform-admins"])
    assert response.status_code == 403
    assert "requires MFA" in response.json_body["Message"]


def test_mfa_role_with_mfa_is_allowed(api: Harness) -> None:
    api.expect_assume(PROD_ADMIN)
    response = api.post("/v1/credentials", {"role": "prod-admin"}, groups=["platform-admins"], mfa=True)
    assert response.status_code == 200, response.body


def test_approval_role_without_grant_is_403(api: Harness) -> None:
    response = api.post("/v1/credentials", {"role": "prod-breakglass"}, groups=["platform-admins"])
    assert response.status_code == 403
    assert "approved access request" in response.json_body["Message"]


@pytest.mark.parametrize(("body", "fragment"), [
    ('{"role": ', "not valid UTF-8 JSON"),
    ("[]", "JSON object"),
    ('"sandbox-admin"', "JSON object"),
    ("", "JSON object"),
    ("{}", "missing required field 'role'"),
    ('{"role": 5}', "must be a string"),
    ('{"role": null}', "missing required field 'role'"),
    ('{"role": "sandbox-admin", "duration_seconds": -5}', "between 900 and 43200"),
    ('{"role": "sandbox-admin", "duration_seconds": 10}', "between 900 and 43200"),
    ('{"role": "sandbox-admin", "duration_seconds": 99999999999999999999}', "between 900 and 43200"),
    ('{"role": "sandbox-admin", "duration_seconds": 1e3}', "whole number"),
    ('{"role": "sandbox-admin", "duration_seconds": "3600"}', "whole number"),
    ('{"role": "sandbox-admin", "duration_seconds": true}', "whole number"),
    ('{"role": "sandbox-admin", "duration_seconds": NaN}', "not valid UTF-8 JSON"),
    ('{"role": "sandbox-admin", "admin": true}', "unknown field(s) 'admin'"),
    ('{"role": "sandbox\\u0000admin"}', "letters, digits"),
    ('{"role": "s\\u00e4ndbox-admin"}', "letters, digits"),
    ('{"role": "sandbox-admin\\u202e"}', "letters, digits"),
    ('{"role": "' + "a" * 65 + '"}', "letters, digits"),
    ('{"role": "../etc/passwd"}', "letters, digits"),
    ('{"role": "sandbox-admin", "role": "x/y"}', "letters, digits"),
    ("[" * 5000 + "]" * 5000, "larger than"),
    ('{"role": "' + "a" * 9000 + '"}', "larger than"),
])
def test_bad_bodies_are_400_with_a_reason(api: Harness, body: str, fragment: str) -> None:
    response = api.post("/v1/credentials", body, raw=True, groups=["platform-admins"])
    assert response.status_code == 400, response.body
    assert fragment in response.json_body["Message"]
    assert response.json_body["RequestId"]


def test_invalid_utf8_body_is_400(api: Harness) -> None:
    response = api.client.http.post("/v1/credentials", headers=api.headers(groups=["platform-admins"]),
                                    body=b'{"role": "\xff\xfe"}')
    assert response.status_code == 400


def test_config_is_plain_text_with_one_profile_per_usable_role(api: Harness) -> None:
    response = api.get("/v1/config", groups=["platform-admins"])
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.body.decode()
    headers = [line for line in text.splitlines() if line.startswith("[")]
    assert headers == ["[profile sandbox-admin]", "[profile sandbox-readonly]", "[profile prod-readonly]"]
    # Each profile calls back this broker, by the URL the caller reached it at.
    commands = [line for line in text.splitlines() if line.startswith("credential_process = ")]
    assert commands == [f"credential_process = rolebroker credential-process --url http://127.0.0.1:8000 --role {role}"
                        for role in ("sandbox-admin", "sandbox-readonly", "prod-readonly")]


@pytest.mark.parametrize(("code", "status", "fragment"), [
    ("AccessDenied", 502, "trust policy must allow the broker's execution role"),
    ("RegionDisabledException", 502, "not activated"),
    ("Throttling", 429, "throttling"),
    ("ExpiredToken", 503, "broker's own AWS credentials"),
    ("InvalidClientTokenId", 503, "broker's own AWS credentials"),
    ("MalformedPolicyDocument", 502, "MalformedPolicyDocument"),
])
def test_sts_errors_are_mapped_with_a_hint(api: Harness, code: str, status: int, fragment: str) -> None:
    api.stubber.add_client_error("assume_role", service_error_code=code, service_message="nope",
                                 http_status_code=403)
    response = api.post("/v1/credentials", {"role": "sandbox-admin"}, groups=["platform-admins"])
    assert response.status_code == status
    assert fragment in response.json_body["Message"]
    if code == "AccessDenied":
        assert "sts:ExternalId" in response.json_body["Message"]
    errors = [a for a in api.audits() if a["outcome"] == "error"]
    assert len(errors) == 1 and errors[0]["role"] == "sandbox-admin"


def test_duration_above_role_max_session_is_explained(api: Harness) -> None:
    api.stubber.add_client_error(
        "assume_role", service_error_code="ValidationError", http_status_code=400,
        service_message="The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
    response = api.post("/v1/credentials", {"role": "sandbox-admin"}, groups=["platform-admins"])
    assert response.status_code == 502
    assert "MaxSessionDuration" in response.json_body["Message"]


def test_every_decision_is_audited_without_secrets(api: Harness) -> None:
    api.expect_assume(SANDBOX_ADMIN)
    token = api.token(groups=["platform-admins"])
    api.post("/v1/credentials", {"role": "sandbox-admin"}, token=token)
    api.post("/v1/credentials", {"role": "prod-admin"}, token=token)
    api.client.http.get("/v1/roles", headers={"Authorization": "Bearer nope"})
    audits = api.audits()
    assert [a["outcome"] for a in audits] == ["allowed", "denied", "denied"]
    allowed = audits[0]
    assert allowed["who"] == "alice@example.com"
    assert allowed["role"] == "sandbox-admin" and allowed["account"] == "222222222222"
    assert allowed["session_name"] == "alice@example.com"
    assert allowed["rule"] == "group platform-admins"
    assert allowed["claims_used"] == {"groups": ["platform-admins"]}
    assert allowed["duration_seconds"] == 3600 and allowed["request_id"]
    text = "\n".join(api.audit_lines)
    for secret in (token, *SECRETS_IN_STUB, "FAKEACCESSKEYID00001"):
        assert secret not in text


def test_request_id_is_in_error_body_and_header(api: Harness) -> None:
    response = api.post("/v1/credentials", {"role": "nope"}, groups=["platform-admins"])
    assert response.json_body["RequestId"] == response.headers["X-Request-Id"]


def _answer(arn: str) -> dict[str, object]:
    from tests.conftest import assume_role_answer

    return assume_role_answer(arn, "session-name")


def _any_tags() -> object:
    from botocore.stub import ANY

    return ANY


def test_response_is_json_serialisable_and_has_no_extra_secret_fields(api: Harness) -> None:
    api.expect_assume(SANDBOX_ADMIN)
    body = api.post("/v1/credentials", {"role": "sandbox-admin"}, groups=["platform-admins"]).json_body
    assert json.loads(json.dumps(body)) == body
    assert set(body) == {"role", "role_arn", "assumed_role_arn", "source_identity", "duration_seconds",
                         "warnings", "credentials", "profile", "scope"}


def _console_with(api: Harness, fetched: list[str]) -> None:
    """The console route with the AWS sign-in endpoint answered in memory."""
    import app as app_module
    from chalicelib.console import ConsoleLinks

    svc = app_module._services
    assert svc is not None

    def fetch(url: str, timeout: float) -> bytes:
        fetched.append(url)
        return b'{"SigninToken": "signin-token"}'

    svc.console = ConsoleLinks(svc.broker, issuer_url="https://broker.example.com", clock=svc.clock, fetch=fetch)


def test_console_deep_links_to_a_service_and_region(api: Harness) -> None:
    from urllib.parse import parse_qs, urlsplit

    fetched: list[str] = []
    _console_with(api, fetched)
    api.expect_assume(SANDBOX_ADMIN, expected=None)
    response = api.post("/v1/console", {"role": "sandbox-admin", "service": "s3", "region": "eu-central-1"},
                        groups=["platform-admins"])
    assert response.status_code == 200, response.body
    url = urlsplit(response.json_body["url"])
    assert (url.scheme, url.netloc, url.path) == ("https", "signin.aws.amazon.com", "/federation")
    assert parse_qs(url.query)["Destination"] == ["https://eu-central-1.console.aws.amazon.com/s3/home"
                                                  "?region=eu-central-1"]
    assert datetime.fromisoformat(response.json_body["expires_at"]).utcoffset() is not None
    assert urlsplit(fetched[0]).netloc == "signin.aws.amazon.com"


@pytest.mark.parametrize("body", [
    {"destination": "https://evil.example.com/"},
    {"destination": "//evil.example.com/x"},
    {"destination": "/\\evil.example.com"},
    {"destination": "/s3/home\nx"},
    {"service": "s3.evil.example.com"},
    {"region": "eu-west-1.evil.example.com"},
    {"region": "cn-north-1"},                     # another partition than the role's
    {"service": "s3", "destination": "/ec2/home"},
    {"url": "https://evil.example.com/"},
])
def test_console_refuses_a_destination_off_the_console_before_any_session(api: Harness, body: dict[str, str]) -> None:
    fetched: list[str] = []
    _console_with(api, fetched)
    response = api.post("/v1/console", {"role": "sandbox-admin", **body}, groups=["platform-admins"])
    assert response.status_code == 400, response.body
    api.stubber.assert_no_pending_responses()  # nothing was queued, and nothing asked STS
    assert fetched == []
    assert not [a for a in api.audits() if a.get("outcome") == "allowed"]
