"""The JWT matrix: every bad token is a 401 and never reaches STS; every
accepted form of an identity resolves to one principal."""

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
from tests.conftest import AUDIENCE, Harness, harness


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(issuer: DevIssuer, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": issuer.url, "aud": AUDIENCE, "sub": "00uALICE", "email": "alice@example.com",
              "email_verified": True, "groups": ["platform-admins"], "iat": now, "exp": now + 600}
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


def _hs256_with_public_key_as(issuer: DevIssuer, secret: bytes) -> str:
    header = {"alg": "HS256", "kid": issuer.keys[0].kid, "typ": "JWT"}
    signing_input = f"{_b64(header)}.{_b64(_claims(issuer))}".encode()
    import hashlib
    import hmac

    signature = base64.urlsafe_b64encode(hmac.new(secret, signing_input, hashlib.sha256).digest()).rstrip(b"=")
    return f"{signing_input.decode()}.{signature.decode()}"


def _public_der(issuer: DevIssuer) -> bytes:
    return issuer.keys[0].private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _public_jwk_json(issuer: DevIssuer) -> bytes:
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(issuer.keys[0].private.public_key(), as_dict=True)
    return json.dumps(jwk).encode()


def _embedded_key(field: str) -> Callable[[DevIssuer], str]:
    """Signed with the attacker's key, which the header offers (jwk, x5c or jku) under the real kid."""

    def forge(issuer: DevIssuer) -> str:
        stranger = new_key()
        public = stranger.private.public_key()
        offered: Any = {
            "jwk": jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True),
            "x5c": [base64.b64encode(public.public_bytes(serialization.Encoding.DER,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo)).decode()],
            "jku": "https://evil.example.com/jwks.json",
        }[field]
        return jwt.encode(_claims(issuer), stranger.private, algorithm="RS256",
                          headers={"kid": issuer.keys[0].kid, field: offered})

    return forge


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
    "HS256 signed with the public key's DER": lambda i: _hs256_with_public_key_as(i, _public_der(i)),
    "HS256 signed with the public key's JWK": lambda i: _hs256_with_public_key_as(i, _public_jwk_json(i)),
    "attacker's key offered in the jwk header": _embedded_key("jwk"),
    "attacker's key offered in the x5c header": _embedded_key("x5c"),
    "attacker's key set offered by jku": _embedded_key("jku"),
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
    "email_verified is the string false": lambda i: _sign(i, _claims(i, email_verified="false")),
    "email_verified is 0": lambda i: _sign(i, _claims(i, email_verified=0)),
    "email_verified is 1": lambda i: _sign(i, _claims(i, email_verified=1)),
    "email_verified is yes": lambda i: _sign(i, _claims(i, email_verified="yes")),
    "email_verified is missing": lambda i: _sign(i, _claims(i, email_verified=None)),
    "same sub without email (scope=openid)": lambda i: _sign(i, _claims(i, email=None, email_verified=None)),
    "several audiences without azp": lambda i: _sign(i, _claims(i, aud=[AUDIENCE, "another-client"])),
    "several audiences, azp another client": lambda i: _sign(
        i, _claims(i, aud=[AUDIENCE, "another-client"], azp="another-client")),
    "groups claim is an object": lambda i: _sign(i, _claims(i, groups={"a": 1})),
    "no identity": lambda i: _sign(i, _claims(i, sub=None, email=None)),
    "no sub": lambda i: _sign(i, _claims(i, sub=None)),
    "identity claim with a newline": lambda i: _sign(i, _claims(i, email="alice@example.com\nbob@example.com")),
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


def test_a_token_without_the_identity_claim_is_401_naming_it(api: Harness) -> None:
    token = _sign(api.issuer, _claims(api.issuer, email=None, email_verified=None))
    response = api.get("/v1/roles", token=token)
    assert response.status_code == 401
    assert "'email'" in response.json_body["Message"]


@pytest.mark.parametrize("verified", [True, "true", "TRUE", "True"])
def test_only_true_or_the_string_true_verifies_an_email(api: Harness, verified: object) -> None:
    token = _sign(api.issuer, _claims(api.issuer, email_verified=verified))
    assert api.get("/v1/roles", token=token).status_code == 200


def test_an_unverified_email_is_absent_for_rules_even_with_another_identity_claim(
        issuer: DevIssuer, ci_issuer: DevIssuer, example_policy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with harness(issuer, ci_issuer, example_policy, monkeypatch, ROLEBROKER_IDENTITY_CLAIM="sub") as api:
        # sandbox-readonly allows claims {email: dana@example.com}
        verified = _sign(issuer, _claims(issuer, sub="00uDANA", email="dana@example.com", groups=None))
        unverified = _sign(issuer, _claims(issuer, sub="00uDANA", email="dana@example.com", groups=None,
                                           email_verified="false"))
        assert [r["name"] for r in api.get("/v1/roles", token=verified).json_body["roles"]] == ["sandbox-readonly"]
        assert api.get("/v1/roles", token=unverified).json_body["roles"] == []
        denied = api.post("/v1/credentials", {"role": "sandbox-readonly"}, token=unverified)
        assert denied.status_code == 403
        audit = api.audits()[-1]
        assert audit["who"] == "00uDANA" and "dana@example.com" not in api.audit_lines[-1]


def test_email_case_is_one_principal_shown_as_given(api: Harness) -> None:
    token = _sign(api.issuer, _claims(api.issuer, sub="00uDANA", email="Dana@Example.COM", groups=None))
    roles = api.get("/v1/roles", token=token).json_body["roles"]
    assert [r["name"] for r in roles] == ["sandbox-readonly"]  # the rule says dana@example.com
    arn = "arn:aws:iam::222222222222:role/ReadOnlyRole"
    api.expect_assume(arn, "dana@example.com", expected={
        "RoleArn": arn, "RoleSessionName": "dana@example.com", "SourceIdentity": "dana@example.com",
        "DurationSeconds": 3600, "ExternalId": "rolebroker-sandbox",
        "Tags": [{"Key": "rolebroker:identity", "Value": "dana@example.com"},
                 {"Key": "rolebroker:issuer", "Value": api.issuer.url}]})
    assert api.post("/v1/credentials", {"role": "sandbox-readonly"}, token=token).status_code == 200
    api.stubber.assert_no_pending_responses()
    issued = [a for a in api.audits() if a["action"] == "credentials"][-1]
    assert issued["who"] == "Dana@Example.COM" and issued["principal"] == "dana@example.com"
    assert issued["sub"] == "00uDANA"


@pytest.mark.parametrize("email", ["\u212aate@example.com", "k\u0430te@example.com", "stra\u00dfe@example.de"])
def test_a_non_ascii_email_is_401_naming_the_claim(api: Harness, email: str) -> None:
    # Review ATTACK9 F4: these were principals that casefold() merged with an ASCII mailbox.
    response = api.get("/v1/roles", token=_sign(api.issuer, _claims(api.issuer, email=email)))
    assert response.status_code == 401
    assert "'email' claim is not plain ASCII" in response.json_body["Message"]


def test_several_audiences_need_azp_naming_this_broker(api: Harness) -> None:
    token = _sign(api.issuer, _claims(api.issuer, aud=[AUDIENCE, "another-client"], azp=AUDIENCE))
    assert api.get("/v1/roles", token=token).status_code == 200
    one = _sign(api.issuer, _claims(api.issuer, azp="another-client"))  # one audience: azp not required
    assert api.get("/v1/roles", token=one).status_code == 200


def test_a_ci_token_gets_only_rules_that_name_its_issuer(api: Harness) -> None:
    token = api.ci.mint("", claims={"repository": "acme/infra", "ref": "refs/heads/main"},
                        groups=["platform-admins"])
    assert [r["name"] for r in api.get("/v1/roles", token=token).json_body["roles"]] == ["ci-deploy"]


def test_default_issuer_claims_do_not_match_a_ci_rule(api: Harness) -> None:
    token = _sign(api.issuer, _claims(api.issuer, repository="acme/infra", ref="refs/heads/main", groups=None))
    assert api.get("/v1/roles", token=token).json_body["roles"] == []


def test_a_ci_token_for_another_audience_is_401(api: Harness) -> None:
    token = api.ci.mint("", claims={"repository": "acme/infra", "ref": "refs/heads/main"}, audience=AUDIENCE)
    assert api.get("/v1/roles", token=token).status_code == 401


def test_a_ci_session_is_stamped_with_its_principal(api: Harness) -> None:
    from chalicelib.stamping import identity_tag_for_key, session_name_for_key

    principal = "ci|repo:acme/infra:ref:refs/heads/main"
    name = session_name_for_key(principal)
    arn = "arn:aws:iam::222222222222:role/DeployRole"
    api.expect_assume(arn, name, expected={
        "RoleArn": arn, "RoleSessionName": name, "SourceIdentity": name, "DurationSeconds": 900,
        "ExternalId": "rolebroker-sandbox",
        "Tags": [{"Key": "rolebroker:identity", "Value": identity_tag_for_key(principal)},
                 {"Key": "rolebroker:issuer", "Value": api.ci.url}]})
    token = api.ci.mint("", claims={"repository": "acme/infra", "ref": "refs/heads/main"})
    response = api.post("/v1/credentials", {"role": "ci-deploy"}, token=token)
    assert response.status_code == 200, response.body
    assert response.json_body["source_identity"] == name
    assert identity_tag_for_key(principal).startswith("ci_repo:acme/infra:ref:refs/heads/main-")
    api.stubber.assert_no_pending_responses()
