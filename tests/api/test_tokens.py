"""The JWT matrix: every bad token is a 401 and never reaches STS."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from devstack.issuer import DevIssuer, new_key
from tests.conftest import AUDIENCE, Harness


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(issuer: DevIssuer, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": issuer.url, "aud": AUDIENCE, "sub": "alice@example.com", "email": "alice@example.com",
              "groups": ["platform-admins"], "iat": now, "exp": now + 600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(issuer: DevIssuer, claims: dict[str, Any], **headers: Any) -> str:
    key = issuer.keys[0]
    return jwt.encode(claims, key.private, algorithm="RS256", headers={"kid": key.kid, **headers})


def _tamper_payload(issuer: DevIssuer) -> str:
    header, _, signature = _sign(issuer, _claims(issuer)).split(".")
    return ".".join([header, _b64(_claims(issuer, groups=["security"])), signature])


def _tamper_header(issuer: DevIssuer) -> str:
    _, payload, signature = _sign(issuer, _claims(issuer)).split(".")
    return ".".join([_b64({"alg": "RS256", "kid": issuer.keys[0].kid, "x": 1}), payload, signature])


def _tamper_signature(issuer: DevIssuer) -> str:
    token = _sign(issuer, _claims(issuer))
    head, _, sig = token.rpartition(".")
    return f"{head}.{sig[:-4]}{'AAAA' if sig[-4:] != 'AAAA' else 'BBBB'}"


def _alg_none(issuer: DevIssuer) -> str:
    return ".".join([_b64({"alg": "none", "kid": issuer.keys[0].kid}), _b64(_claims(issuer)), ""])


def _hs256_with_public_key(issuer: DevIssuer) -> str:
    public_pem = issuer.keys[0].private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "kid": issuer.keys[0].kid, "typ": "JWT"}
    signing_input = f"{_b64(header)}.{_b64(_claims(issuer))}".encode()
    import hashlib
    import hmac

    signature = base64.urlsafe_b64encode(
        hmac.new(public_pem, signing_input, hashlib.sha256).digest()).rstrip(b"=").decode()
    return f"{signing_input.decode()}.{signature}"


def _other_issuers_key(issuer: DevIssuer) -> str:
    stranger = new_key()
    return jwt.encode(_claims(issuer), stranger.private, algorithm="RS256", headers={"kid": issuer.keys[0].kid})


def _unknown_kid(issuer: DevIssuer) -> str:
    stranger = new_key()
    return jwt.encode(_claims(issuer), stranger.private, algorithm="RS256", headers={"kid": stranger.kid})


def _no_kid(issuer: DevIssuer) -> str:
    return jwt.encode(_claims(issuer), issuer.keys[0].private, algorithm="RS256")


CASES: dict[str, Callable[[DevIssuer], str]] = {
    "garbage": lambda i: "not-a-jwt",
    "three garbage parts": lambda i: "abc.def.ghi",
    "alg none": _alg_none,
    "HS256 signed with the public key": _hs256_with_public_key,
    "unknown kid": _unknown_kid,
    "missing kid": _no_kid,
    "key from another issuer under a known kid": _other_issuers_key,
    "expired": lambda i: _sign(i, _claims(i, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)),
    "expired beyond leeway": lambda i: _sign(i, _claims(i, exp=int(time.time()) - 120)),
    "nbf in future": lambda i: _sign(i, _claims(i, nbf=int(time.time()) + 600)),
    "iat in future": lambda i: _sign(i, _claims(i, iat=int(time.time()) + 600)),
    "wrong issuer": lambda i: _sign(i, _claims(i, iss="https://evil.example.com")),
    "wrong audience": lambda i: _sign(i, _claims(i, aud="someone-else")),
    "missing exp": lambda i: _sign(i, _claims(i, exp=None)),
    "missing iat": lambda i: _sign(i, _claims(i, iat=None)),
    "missing aud": lambda i: _sign(i, _claims(i, aud=None)),
    "missing iss": lambda i: _sign(i, _claims(i, iss=None)),
    "tampered payload": _tamper_payload,
    "tampered header": _tamper_header,
    "tampered signature": _tamper_signature,
    "oversized": lambda i: _sign(i, _claims(i, padding="x" * 20000)),
    "email not verified": lambda i: _sign(i, _claims(i, email_verified=False)),
    "groups claim is an object": lambda i: _sign(i, _claims(i, groups={"a": 1})),
    "no identity": lambda i: _sign(i, _claims(i, sub=None, email=None)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_token_is_401_and_never_reaches_sts(api: Harness, case: str) -> None:
    token = CASES[case](api.issuer)
    for method, path in (("GET", "/v1/roles"), ("POST", "/v1/credentials")):
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if method == "GET":
            response = api.client.http.get(path, headers=headers)
        else:
            response = api.client.http.post(path, headers=headers, body=json.dumps({"role": "sandbox-admin"}))
        assert response.status_code == 401, (case, response.body)
        assert response.json_body["Code"] == "UnauthorizedError"
        assert token not in response.body.decode()
    # A Stubber with nothing queued raises on any call; nothing was called.
    api.stubber.assert_no_pending_responses()
    assert all(a["outcome"] == "denied" and a["action"] == "authenticate" for a in api.audits())
    assert all(token not in line for line in api.audit_lines)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic YWxpY2U6cHc=", "bearer"])
def test_missing_or_malformed_authorization_header_is_401(api: Harness, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = api.client.http.get("/v1/roles", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_good_token_passes_as_control(api: Harness) -> None:
    token = _sign(api.issuer, _claims(api.issuer))
    assert api.get("/v1/roles", token=token).status_code == 200


def test_groups_as_a_single_string_are_accepted(api: Harness) -> None:
    token = _sign(api.issuer, _claims(api.issuer, groups="platform-admins"))
    names = [r["name"] for r in api.get("/v1/roles", token=token).json_body["roles"]]
    assert "sandbox-admin" in names


def test_identity_falls_back_to_sub_without_email(api: Harness) -> None:
    token = _sign(api.issuer, _claims(api.issuer, sub="repo:acme/infra:ref:refs/heads/main", email=None,
                                      repository="acme/infra", ref="refs/heads/main", groups=None))
    names = [r["name"] for r in api.get("/v1/roles", token=token).json_body["roles"]]
    assert names == ["ci-deploy"]
