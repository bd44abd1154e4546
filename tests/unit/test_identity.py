"""TokenVerifier against a real JWKS endpoint on 127.0.0.1 (the dev issuer)."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from chalicelib.exceptions import DependencyDown, Unauthenticated
from chalicelib.identity import tokens as identity_module
from chalicelib.identity.tokens import TokenVerifier, groups_from_claim, identity_from_claims
from chalicelib.settings import Settings
from devstack.issuer import DevIssuer, new_key


@pytest.fixture
def own_issuer():  # type: ignore[no-untyped-def]
    dev = DevIssuer(audience="aud-1").start()
    yield dev
    dev.stop()


def settings_for(dev: DevIssuer, **kw: object) -> Settings:
    return Settings(issuer=dev.url, audiences=("aud-1",), policy_source="unused", **kw)  # type: ignore[arg-type]


def test_valid_token_gives_identity_with_groups(own_issuer: DevIssuer) -> None:
    verifier = TokenVerifier(settings_for(own_issuer))
    who = verifier.verify("Bearer " + own_issuer.mint("alice@example.com", groups=["a", "b"], mfa=True))
    assert who.subject == "alice@example.com"
    assert who.groups == {"a", "b"}
    assert who.has_mfa
    assert who.issuer == own_issuer.url


def test_jwks_down_with_nothing_cached_is_503(own_issuer: DevIssuer) -> None:
    own_issuer.jwks_available = False
    verifier = TokenVerifier(settings_for(own_issuer))
    with pytest.raises(DependencyDown):
        verifier.verify("Bearer " + own_issuer.mint("alice@example.com"))


def test_issuer_down_before_discovery_is_503(own_issuer: DevIssuer) -> None:
    settings = Settings(issuer="http://127.0.0.1:9", audiences=("a",), policy_source="x")
    with pytest.raises(DependencyDown):
        TokenVerifier(settings).verify("Bearer " + own_issuer.mint("x@example.com"))


def test_cached_keys_keep_serving_when_the_idp_goes_down(
        own_issuer: DevIssuer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity_module, "JWKS_LIFESPAN_SECONDS", 0.05)
    verifier = TokenVerifier(settings_for(own_issuer))
    token = own_issuer.mint("alice@example.com")
    verifier.verify("Bearer " + token)
    own_issuer.jwks_available = False
    time.sleep(0.1)  # the cached set has expired; the refetch fails
    requests_before = own_issuer.jwks_requests
    assert verifier.verify("Bearer " + token).subject == "alice@example.com"
    assert own_issuer.jwks_requests == requests_before + 1


def test_random_kids_do_not_hammer_the_idp(own_issuer: DevIssuer) -> None:
    verifier = TokenVerifier(settings_for(own_issuer))
    verifier.verify("Bearer " + own_issuer.mint("alice@example.com"))
    baseline = own_issuer.jwks_requests
    for _ in range(50):
        stranger = new_key()
        claims = {"iss": own_issuer.url, "aud": "aud-1", "sub": "x", "iat": int(time.time()),
                  "exp": int(time.time()) + 60}
        forged = jwt.encode(claims, stranger.private, algorithm="RS256", headers={"kid": uuid.uuid4().hex})
        with pytest.raises(Unauthenticated):
            verifier.verify("Bearer " + forged)
    assert own_issuer.jwks_requests - baseline <= 1


def test_rotated_key_is_accepted_after_the_cooldown(
        own_issuer: DevIssuer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity_module, "JWKS_REFRESH_COOLDOWN_SECONDS", 0.2)
    verifier = TokenVerifier(settings_for(own_issuer))
    verifier.verify("Bearer " + own_issuer.mint("alice@example.com"))
    own_issuer.rotate()
    rotated = own_issuer.mint("alice@example.com")
    with pytest.raises(Unauthenticated):  # within the cool-down: not fetched yet
        verifier.verify("Bearer " + rotated)
    time.sleep(0.3)
    assert verifier.verify("Bearer " + rotated).subject == "alice@example.com"


def test_production_cooldown_lets_rotation_in_within_a_minute() -> None:
    assert identity_module.JWKS_REFRESH_COOLDOWN_SECONDS <= 60


def test_cognito_access_tokens_only_when_configured(own_issuer: DevIssuer) -> None:
    token = own_issuer.mint("abc-123", audience="unused", claims={"token_use": "access", "client_id": "aud-1"})
    # PyJWT cannot drop a claim we set, so mint one without aud by hand
    payload = jwt.decode(token, options={"verify_signature": False})
    del payload["aud"]
    key = own_issuer.keys[0]
    no_aud = jwt.encode(payload, key.private, algorithm="RS256", headers={"kid": key.kid})
    with pytest.raises(Unauthenticated):
        TokenVerifier(settings_for(own_issuer)).verify("Bearer " + no_aud)
    cognito = TokenVerifier(settings_for(own_issuer, accept_cognito_access_tokens=True))
    assert cognito.verify("Bearer " + no_aud).subject == "abc-123"
    payload["client_id"] = "someone-else"
    other = jwt.encode(payload, key.private, algorithm="RS256", headers={"kid": key.kid})
    with pytest.raises(Unauthenticated):
        cognito.verify("Bearer " + other)


def test_jwks_url_overrides_discovery(own_issuer: DevIssuer) -> None:
    settings = settings_for(own_issuer, jwks_url=f"{own_issuer.url}/jwks.json")
    opened: list[str] = []

    def opener(url: str, timeout: float) -> bytes:
        opened.append(url)
        raise OSError("discovery must not be used")

    verifier = TokenVerifier(settings, opener=opener)
    assert verifier.verify("Bearer " + own_issuer.mint("a@example.com")).subject == "a@example.com"
    assert opened == []


@pytest.mark.parametrize(("value", "expected"), [
    (None, []), ("admins", ["admins"]), ("", []), (["a", "b"], ["a", "b"]), (["a", 3, None], ["a"]),
])
def test_groups_claim_shapes(value: object, expected: list[str]) -> None:
    assert groups_from_claim(value) == expected


def test_identity_claim_is_configurable() -> None:
    settings = Settings(issuer="i", audiences=("a",), policy_source="p", identity_claim="preferred_username",
                        groups_claim="roles")
    who = identity_from_claims({"preferred_username": "alice", "roles": ["x"], "sub": "123"}, settings)
    assert who.subject == "alice" and who.groups == {"x"}
    with pytest.raises(Unauthenticated):
        identity_from_claims({"sub": "123"}, settings)
