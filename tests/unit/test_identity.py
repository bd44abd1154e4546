"""TokenVerifier against a real JWKS endpoint on 127.0.0.1 (the dev issuer).

Key-cache timing runs on an injected clock, so nothing here sleeps or
depends on how loaded the machine is.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest

from chalicelib.exceptions import DependencyDown, Unauthenticated
from chalicelib.identity import keys as keys_module
from chalicelib.identity.issuers import Issuer
from chalicelib.identity.principal import DEFAULT_ISSUER, Principal
from chalicelib.identity.tokens import (
    MAX_TOKEN_BYTES,
    TokenVerifier,
    _bearer,
    groups_from_claim,
    identity_from_claims,
)
from chalicelib.settings import Settings
from devstack.issuer import DevIssuer, new_key


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def own_issuer() -> Iterator[DevIssuer]:
    dev = DevIssuer(audience="aud-1").start()
    yield dev
    dev.stop()


@pytest.fixture
def second_issuer() -> Iterator[DevIssuer]:
    dev = DevIssuer(audience="aud-2", kind="github").start()
    yield dev
    dev.stop()


def settings_for(dev: DevIssuer, **kw: object) -> Settings:
    return Settings(issuer=dev.url, audiences=("aud-1",), policy_source="unused", **kw)  # type: ignore[arg-type]


def fetches(dev: DevIssuer) -> int:
    return dev.jwks_requests + dev.discovery_requests


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def signed(dev: DevIssuer, audience: str = "aud-1", headers: dict[str, Any] | None = None, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": dev.url, "aud": audience, "sub": "00uALICE", "email": "alice@example.com",
               "email_verified": True, "iat": now, "exp": now + 600, **claims}
    payload = {k: v for k, v in payload.items() if v is not None}
    key = dev.keys[0]
    return jwt.encode(payload, key.private, algorithm="RS256", headers={"kid": key.kid, **(headers or {})})


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
        TokenVerifier(settings).verify("Bearer " + own_issuer.mint("x@example.com",
                                                                    claims={"iss": "http://127.0.0.1:9"}))


def test_cached_keys_keep_serving_when_the_idp_goes_down(own_issuer: DevIssuer) -> None:
    clock = FakeClock()
    verifier = TokenVerifier(settings_for(own_issuer), monotonic=clock)
    token = own_issuer.mint("alice@example.com")
    verifier.verify("Bearer " + token)
    own_issuer.jwks_available = False
    clock.now += keys_module.JWKS_LIFESPAN_SECONDS + 1  # the cached set has expired; the refetch fails
    requests_before = own_issuer.jwks_requests
    assert verifier.verify("Bearer " + token).subject == "alice@example.com"
    assert verifier.verify("Bearer " + token).subject == "alice@example.com"
    assert own_issuer.jwks_requests == requests_before + 1  # one failed fetch per lifespan, not per request


def test_the_last_good_keys_serve_an_outage_only_up_to_the_cap(own_issuer: DevIssuer) -> None:
    clock = FakeClock()
    verifier = TokenVerifier(settings_for(own_issuer, jwks_max_stale_seconds=3600), monotonic=clock)
    token = own_issuer.mint("alice@example.com")
    verifier.verify("Bearer " + token)
    own_issuer.jwks_available = False
    clock.now += 3500
    assert verifier.verify("Bearer " + token).subject == "alice@example.com"
    clock.now += keys_module.JWKS_LIFESPAN_SECONDS  # past the cap: the keys are too old to trust
    with pytest.raises(DependencyDown):
        verifier.verify("Bearer " + token)
    own_issuer.jwks_available = True
    clock.now += 1
    assert verifier.verify("Bearer " + token).subject == "alice@example.com"


def test_the_default_outage_cap_is_a_day() -> None:
    assert Settings.from_environ({"ROLEBROKER_OIDC_ISSUER": "https://idp", "ROLEBROKER_OIDC_AUDIENCE": "a",
                                  "ROLEBROKER_POLICY": "p"}).jwks_max_stale_seconds == 24 * 3600


def test_random_kids_do_not_hammer_the_idp(own_issuer: DevIssuer) -> None:
    verifier = TokenVerifier(settings_for(own_issuer))
    verifier.verify("Bearer " + own_issuer.mint("alice@example.com"))
    baseline = own_issuer.jwks_requests
    stranger = new_key()  # what varies is the kid: each unknown one could force a fetch
    for _ in range(50):
        claims = {"iss": own_issuer.url, "aud": "aud-1", "sub": "x", "iat": int(time.time()),
                  "exp": int(time.time()) + 60}
        forged = jwt.encode(claims, stranger.private, algorithm="RS256", headers={"kid": uuid.uuid4().hex})
        with pytest.raises(Unauthenticated):
            verifier.verify("Bearer " + forged)
    assert own_issuer.jwks_requests - baseline <= 1


def test_rotated_key_is_accepted_after_the_cooldown(own_issuer: DevIssuer) -> None:
    clock = FakeClock()
    verifier = TokenVerifier(settings_for(own_issuer), monotonic=clock)
    verifier.verify("Bearer " + own_issuer.mint("alice@example.com"))
    own_issuer.rotate()
    rotated = own_issuer.mint("alice@example.com")
    clock.now += keys_module.JWKS_REFRESH_COOLDOWN_SECONDS - 1
    with pytest.raises(Unauthenticated):  # within the cool-down: not fetched yet
        verifier.verify("Bearer " + rotated)
    clock.now += 1
    assert verifier.verify("Bearer " + rotated).subject == "alice@example.com"


def test_production_cooldown_lets_rotation_in_within_a_minute() -> None:
    assert keys_module.JWKS_REFRESH_COOLDOWN_SECONDS <= 60


def test_cognito_access_tokens_only_when_configured(own_issuer: DevIssuer) -> None:
    token = own_issuer.mint("abc-123", audience="unused", claims={"token_use": "access", "client_id": "aud-1"})
    # PyJWT cannot drop a claim we set, so mint one without aud by hand
    payload = jwt.decode(token, options={"verify_signature": False})
    del payload["aud"]
    key = own_issuer.keys[0]
    no_aud = jwt.encode(payload, key.private, algorithm="RS256", headers={"kid": key.kid})
    with pytest.raises(Unauthenticated):
        TokenVerifier(settings_for(own_issuer, identity_claim="sub")).verify("Bearer " + no_aud)
    cognito = TokenVerifier(settings_for(own_issuer, accept_cognito_access_tokens=True, identity_claim="sub"))
    assert cognito.verify("Bearer " + no_aud).subject == "abc-123"
    payload["client_id"] = "someone-else"
    other = jwt.encode(payload, key.private, algorithm="RS256", headers={"kid": key.kid})
    with pytest.raises(Unauthenticated):
        cognito.verify("Bearer " + other)


@pytest.mark.parametrize(("aud", "accepted"), [
    ("aud-1", True), (["aud-1"], True), ("someone-else", False), (["someone-else", "x"], False),
])
def test_cognito_mode_still_checks_an_aud_when_the_token_has_one(
        own_issuer: DevIssuer, aud: object, accepted: bool) -> None:
    cognito = TokenVerifier(settings_for(own_issuer, accept_cognito_access_tokens=True))
    token = signed(own_issuer, audience=aud, azp="aud-1")  # type: ignore[arg-type]
    if accepted:
        assert cognito.verify("Bearer " + token).subject == "alice@example.com"
    else:
        with pytest.raises(Unauthenticated, match="audience"):
            cognito.verify("Bearer " + token)


def test_key_fetches_use_the_configured_timeout(own_issuer: DevIssuer) -> None:
    from chalicelib.identity.keys import urlopen

    timeouts: list[float] = []

    def opener(url: str, timeout: float) -> bytes:
        timeouts.append(timeout)
        return urlopen(url, timeout)

    TokenVerifier(settings_for(own_issuer, jwks_timeout_seconds=1.25), opener=opener).verify(
        "Bearer " + own_issuer.mint("alice@example.com"))
    assert timeouts == [1.25, 1.25]  # discovery, then the keys


def test_jwks_url_overrides_discovery(own_issuer: DevIssuer) -> None:
    from chalicelib.identity.keys import urlopen

    settings = settings_for(own_issuer, jwks_url=f"{own_issuer.url}/jwks.json")
    opened: list[str] = []

    def opener(url: str, timeout: float) -> bytes:
        opened.append(url)
        return urlopen(url, timeout)

    verifier = TokenVerifier(settings, opener=opener)
    assert verifier.verify("Bearer " + own_issuer.mint("a@example.com")).subject == "a@example.com"
    assert opened == [f"{own_issuer.url}/jwks.json"] and own_issuer.discovery_requests == 0


@pytest.mark.parametrize(("value", "expected"), [
    (None, []), ("admins", ["admins"]), ("", []), (["a", "b"], ["a", "b"]), (["a", 3, None], ["a"]),
])
def test_groups_claim_shapes(value: object, expected: list[str]) -> None:
    assert groups_from_claim(value) == expected


DEFAULT = Issuer(name="default", url="https://idp.example.com", audiences=("a",))


def test_identity_claim_is_configurable() -> None:
    issuer = Issuer(name="default", url="i", audiences=("a",), identity_claim="preferred_username",
                    groups_claim="roles")
    who = identity_from_claims({"preferred_username": "alice", "roles": ["x"], "sub": "123", "iss": "i"}, issuer)
    assert who.subject == "alice" and who.groups == {"x"} and who.principal.key == "alice"
    with pytest.raises(Unauthenticated, match="'preferred_username'"):
        identity_from_claims({"sub": "123", "iss": "i"}, issuer)


def test_no_fallback_from_email_to_sub() -> None:
    with pytest.raises(Unauthenticated, match="'email'"):
        identity_from_claims({"sub": "00uERIN", "iss": DEFAULT.url}, DEFAULT)


def test_an_email_principal_is_lower_case_and_shown_as_given() -> None:
    who = identity_from_claims({"sub": "00uERIN", "iss": DEFAULT.url, "email": " Erin@Example.COM ",
                                "email_verified": True, "iat": 1700000000}, DEFAULT)
    assert who.subject == "Erin@Example.COM"
    assert who.principal.key == "erin@example.com"
    assert who.claims["email"] == "erin@example.com"  # rules compare emails in lower case too
    assert (who.issuer, who.sub, who.issued_at) == (DEFAULT.url, "00uERIN", 1700000000)


@pytest.mark.parametrize(("attacker", "victim"), [
    ("\u212aate@example.com", "kate@example.com"),
    ("ro\u017fa@example.com", "rosa@example.com"),
    ("stra\u00dfe@example.de", "strasse@example.de"),
    ("\ufb01ona@example.com", "fiona@example.com"),
])
def test_distinct_mailboxes_are_never_one_principal(attacker: str, victim: str) -> None:
    # Review ATTACK9 F4: casefold() made each pair one principal (grants, requests,
    # Slack snapshots, email rules, SourceIdentity). A non-ASCII email is now a 401
    # naming the claim, so it can never be taken for the ASCII mailbox.
    def who(email: str, sub: str) -> Any:
        return identity_from_claims({"iss": DEFAULT.url, "sub": sub, "email": email, "email_verified": True},
                                    DEFAULT)

    assert who(victim, "00uVICTIM").principal.key == victim
    with pytest.raises(Unauthenticated, match="'email' claim is not plain ASCII"):
        who(attacker, "00uMALLORY")


def test_a_non_ascii_email_is_absent_for_rules_under_another_identity_claim() -> None:
    by_username = Issuer(name="default", url="i", audiences=("a",), identity_claim="preferred_username")
    who = identity_from_claims({"sub": "1", "iss": "i", "preferred_username": "mallory", "email_verified": True,
                                "email": "\u212aate@example.com"}, by_username)
    assert who.principal.key == "mallory" and "email" not in who.claims


def test_a_linked_issuer_names_the_default_person_behind_its_token() -> None:
    partner = Issuer(name="partner", url="p", audiences=("a",), identity_claim="sub",
                     approval_identity_claim="email")
    who = identity_from_claims({"sub": "p-erin", "iss": "p", "email": " Erin@Example.com",
                                "email_verified": True}, partner)
    assert who.principal.key == "partner|p-erin" and who.person is not None
    assert who.person.key == "erin@example.com" == who.linked.key  # type: ignore[union-attr]
    assert who.is_same_person("erin@example.com", None, None)  # her default principal's request
    assert who.is_same_person("partner2|x", None, None, person_key="erin@example.com")  # a third issuer's
    assert not who.is_same_person("carol@example.com", None, None, person_key="carol@example.com")
    unlinked = identity_from_claims({"sub": "p-erin", "iss": "p", "email": "erin@example.com",
                                     "email_verified": True},
                                    Issuer(name="partner", url="p", audiences=("a",), identity_claim="sub"))
    assert unlinked.person is None and not unlinked.is_same_person("erin@example.com", None, None)
    person = identity_from_claims({"sub": "1", "iss": DEFAULT.url, "email": "erin@example.com",
                                   "email_verified": True}, DEFAULT)
    assert person.person == person.principal and person.is_same_person("partner|x", None, None, "erin@example.com")


def test_the_linked_person_is_canonical_as_the_default_issuers_identity_claim() -> None:
    # A partner (like Entra ID) sends the UPN in its directory's case; the default issuer identifies by email.
    partner = Issuer(name="partner", url="p", audiences=("a",), identity_claim="sub", approval_identity_claim="upn")
    for upn in ("Erin@Example.com", " ERIN@EXAMPLE.COM", "erin@example.com"):
        who = identity_from_claims({"sub": "p-erin", "iss": "p", "upn": upn}, partner, person_claim="email")
        assert who.linked == Principal(DEFAULT_ISSUER, "erin@example.com")
    with pytest.raises(Unauthenticated, match="'upn' claim is not plain ASCII"):  # as the default issuer refuses it
        identity_from_claims({"sub": "p-erin", "iss": "p", "upn": "\u212aate@example.com"}, partner)
    # A default issuer that identifies by another claim compares it exactly, so the link does too.
    exact = identity_from_claims({"sub": "p-erin", "iss": "p", "upn": "Erin"}, partner, person_claim="username")
    assert exact.linked == Principal(DEFAULT_ISSUER, "Erin")


def test_a_linked_issuers_token_without_its_person_is_refused() -> None:
    partner = Issuer(name="partner", url="p", audiences=("a",), identity_claim="sub",
                     approval_identity_claim="email")
    for claims in ({}, {"email": "erin@example.com"}, {"email": "\u212aate@example.com", "email_verified": True}):
        with pytest.raises(Unauthenticated, match="'email' claim, which every token of issuer partner must carry"):
            identity_from_claims({"sub": "p-erin", "iss": "p", **claims}, partner)


def test_a_linked_issuers_unusable_person_claim_is_refused_naming_the_claim() -> None:
    partner = Issuer(name="partner", url="p", audiences=("a",), identity_claim="sub",
                     approval_identity_claim="employee_id")
    with pytest.raises(Unauthenticated) as caught:
        identity_from_claims({"sub": "p-erin", "iss": "p", "employee_id": 42}, partner)
    assert str(caught.value) == "token's 'employee_id' claim is missing or not a non-empty string"


@pytest.mark.parametrize(("verified", "counts"), [
    (True, True), ("true", True), ("TRUE", True), ("True", True),
    (False, False), ("false", False), (0, False), (1, False), ("yes", False), ("", False), (None, False),
    ([True], False), (" true", False),
])
def test_only_true_or_the_string_true_verifies_an_email(verified: object, counts: bool) -> None:
    claims = {"sub": "00uERIN", "iss": "i", "email": "erin@example.com", "preferred_username": "erin"}
    if verified is not None:
        claims["email_verified"] = verified
    issuer = Issuer(name="default", url="i", audiences=("a",), identity_claim="preferred_username")
    who = identity_from_claims(claims, issuer)
    assert ("email" in who.claims) is counts
    if not counts:
        with pytest.raises(Unauthenticated, match="'email'"):
            identity_from_claims(claims, DEFAULT)


def test_an_issuer_may_trust_emails_without_email_verified() -> None:
    trusting = Issuer(name="default", url="i", audiences=("a",), require_email_verified=False)
    who = identity_from_claims({"sub": "1", "iss": "i", "email": "erin@example.com"}, trusting)
    assert who.principal.key == "erin@example.com"


@pytest.mark.parametrize("value", ["x" * 257, "alice@example.com\n", "alice\u0000@example.com", "   ", 42])
def test_unusable_identity_values_are_refused(value: object) -> None:
    with pytest.raises(Unauthenticated):
        identity_from_claims({"sub": "1", "iss": "i", "email": value, "email_verified": True}, DEFAULT)


def test_a_token_without_sub_is_refused() -> None:
    with pytest.raises(Unauthenticated, match="'sub'"):
        identity_from_claims({"iss": "i", "email": "erin@example.com", "email_verified": True}, DEFAULT)


def test_an_unverified_email_is_named_as_such_and_only_for_the_email_claim() -> None:
    unverified = {"sub": "1", "iss": "i", "email": "erin@example.com", "email_verified": False}
    with pytest.raises(Unauthenticated, match="'email' claim is not verified"):
        identity_from_claims(unverified, DEFAULT)
    by_username = Issuer(name="default", url="i", audiences=("a",), identity_claim="preferred_username")
    with pytest.raises(Unauthenticated, match="no 'preferred_username' claim"):
        identity_from_claims(unverified, by_username)


def test_identity_values_may_have_256_characters_and_no_more() -> None:
    longest = "a" * 244 + "@example.com"
    assert identity_from_claims({"sub": "1", "iss": "i", "email": longest, "email_verified": True},
                                DEFAULT).subject == longest
    with pytest.raises(Unauthenticated, match="'email' claim is longer than 256 characters"):
        identity_from_claims({"sub": "1", "iss": "i", "email": "a" + longest, "email_verified": True}, DEFAULT)


def test_only_strings_numbers_booleans_and_string_lists_are_kept_as_claims() -> None:
    who = identity_from_claims({"sub": "1", "iss": "i", "email": "erin@example.com", "email_verified": True,
                                "team": "infra", "level": 3, "admin": False, "envs": ["prod", "dev"],
                                "address": {"street": "x"}, "nothing": None, "mixed": ["a", 1], "ratio": 0.5},
                               DEFAULT)
    assert {k: who.claims.get(k) for k in ("team", "level", "admin", "envs")} == {
        "team": "infra", "level": 3, "admin": False, "envs": ["prod", "dev"]}
    assert not {"address", "nothing", "mixed", "ratio"} & set(who.claims)


def test_without_iss_an_identity_names_no_issuer() -> None:
    # policycheck and /v1/access questions build identities from claims that have no iss
    assert identity_from_claims({"sub": "1", "email": "erin@example.com", "email_verified": True},
                                DEFAULT).issuer == ""


@pytest.mark.parametrize(("iat", "kept"), [(1700000000, 1700000000), (1700000000.5, None), (True, None),
                                           ("1700000000", None)])
def test_only_a_whole_number_iat_orders_snapshots(iat: object, kept: object) -> None:
    who = identity_from_claims({"sub": "1", "iss": "i", "email": "erin@example.com", "email_verified": True,
                                "iat": iat}, DEFAULT)
    assert who.issued_at == kept


# --------------------------------------------------------------------------
# Pre-checks: a forged or garbage token never makes us fetch keys


def _assert_refused_without_fetch(dev: DevIssuer, verifier: TokenVerifier, authorization: str,
                                  match: str) -> None:
    before = fetches(dev)
    with pytest.raises(Unauthenticated, match=match):
        verifier.verify(authorization)
    assert fetches(dev) == before


def test_precheck_alg_is_pinned_before_any_fetch(own_issuer: DevIssuer) -> None:
    verifier = TokenVerifier(settings_for(own_issuer))
    token = ".".join([_b64({"alg": "HS256", "kid": own_issuer.keys[0].kid}), _b64({"iss": own_issuer.url}), "c2ln"])
    _assert_refused_without_fetch(own_issuer, verifier, "Bearer " + token, "algorithm")
    none = ".".join([_b64({"alg": "none", "kid": own_issuer.keys[0].kid}), _b64({"iss": own_issuer.url}), ""])
    _assert_refused_without_fetch(own_issuer, verifier, "Bearer " + none, "algorithm")


@pytest.mark.parametrize("header", ["Basic YWxpY2U6cHc=", "Token abc", "Bearer", "bearer  ", "Bearerx y"])
def test_precheck_bearer_scheme_before_any_fetch(own_issuer: DevIssuer, header: str) -> None:
    verifier = TokenVerifier(settings_for(own_issuer))
    token = signed(own_issuer)
    _assert_refused_without_fetch(own_issuer, verifier, header.replace("abc", token), "Bearer|bearer")


def test_precheck_missing_kid_before_any_fetch(own_issuer: DevIssuer) -> None:
    verifier = TokenVerifier(settings_for(own_issuer))
    token = jwt.encode({"iss": own_issuer.url, "aud": "aud-1", "sub": "x"}, own_issuer.keys[0].private,
                       algorithm="RS256")
    _assert_refused_without_fetch(own_issuer, verifier, "Bearer " + token, "key id")


def test_precheck_an_empty_kid_before_any_fetch(own_issuer: DevIssuer) -> None:
    verifier = TokenVerifier(settings_for(own_issuer))
    token = ".".join([_b64({"alg": "RS256", "kid": ""}), _b64({"iss": own_issuer.url}), "c2ln"])
    _assert_refused_without_fetch(own_issuer, verifier, "Bearer " + token, "key id")


def test_bearer_may_be_followed_by_several_spaces(own_issuer: DevIssuer) -> None:
    verifier = TokenVerifier(settings_for(own_issuer))
    assert verifier.verify("Bearer   " + signed(own_issuer)).subject == "alice@example.com"


def test_a_token_of_exactly_the_size_cap_is_read_and_one_byte_more_is_not() -> None:
    assert _bearer("Bearer " + "a" * MAX_TOKEN_BYTES) == "a" * MAX_TOKEN_BYTES
    with pytest.raises(Unauthenticated, match="too large"):
        _bearer("Bearer " + "a" * (MAX_TOKEN_BYTES + 1))


@pytest.mark.parametrize("iss", ["", 123, ["https://idp.example"], None])
def test_precheck_an_iss_that_is_not_a_url_string_before_any_fetch(own_issuer: DevIssuer, iss: object) -> None:
    known: dict[str, Issuer] = {}
    verifier = TokenVerifier(settings_for(own_issuer), policy_issuers=known.get)  # as AccessPolicy looks issuers up
    payload = {"aud": "aud-1", "sub": "x", **({} if iss is None else {"iss": iss})}
    token = ".".join([_b64({"alg": "RS256", "kid": own_issuer.keys[0].kid}), _b64(payload), "c2ln"])
    _assert_refused_without_fetch(own_issuer, verifier, "Bearer " + token, "claim 'iss'")


def test_precheck_unknown_issuer_before_any_fetch(own_issuer: DevIssuer, second_issuer: DevIssuer) -> None:
    verifier = TokenVerifier(settings_for(own_issuer))
    token = second_issuer.mint("", audience="aud-1")
    before = fetches(second_issuer)
    _assert_refused_without_fetch(own_issuer, verifier, "Bearer " + token, "issuer this broker does not trust")
    assert fetches(second_issuer) == before


def test_precheck_oversized_and_garbage_tokens_before_any_fetch(own_issuer: DevIssuer) -> None:
    verifier = TokenVerifier(settings_for(own_issuer))
    _assert_refused_without_fetch(own_issuer, verifier, "Bearer " + signed(own_issuer, padding="x" * 20000),
                                  "too large")
    _assert_refused_without_fetch(own_issuer, verifier, "Bearer abc.def.ghi", "malformed")


def test_precheck_discovery_naming_another_issuer_fetches_no_keys(own_issuer: DevIssuer) -> None:
    def opener(url: str, timeout: float) -> bytes:
        return json.dumps({"issuer": "https://evil.example.com", "jwks_uri": f"{own_issuer.url}/jwks.json"}).encode()

    verifier = TokenVerifier(settings_for(own_issuer), opener=opener)
    before = own_issuer.jwks_requests
    with pytest.raises(DependencyDown, match="different issuer"):
        verifier.verify("Bearer " + signed(own_issuer))
    assert own_issuer.jwks_requests == before


@pytest.mark.parametrize("jwks_uri", ["file:///etc/passwd", "ftp://127.0.0.1/jwks.json", "/jwks.json", 42])
def test_precheck_only_http_jwks_uris_are_fetched(own_issuer: DevIssuer, jwks_uri: object) -> None:
    opened: list[str] = []

    def opener(url: str, timeout: float) -> bytes:
        opened.append(url)
        if url.endswith("/.well-known/openid-configuration"):
            return json.dumps({"issuer": own_issuer.url, "jwks_uri": jwks_uri}).encode()
        raise AssertionError(f"fetched {url}")

    verifier = TokenVerifier(settings_for(own_issuer), opener=opener)
    with pytest.raises(DependencyDown, match="jwks_uri"):
        verifier.verify("Bearer " + signed(own_issuer))
    assert opened == [f"{own_issuer.url}/.well-known/openid-configuration"]


def test_urlopen_refuses_anything_but_http() -> None:
    from chalicelib.identity.keys import urlopen

    with pytest.raises(ValueError, match="http"):
        urlopen("file:///etc/passwd", 1.0)


def test_precheck_identity_claim_length_fetches_nothing_more(own_issuer: DevIssuer) -> None:
    verifier = TokenVerifier(settings_for(own_issuer))
    verifier.verify("Bearer " + signed(own_issuer))
    _assert_refused_without_fetch(own_issuer, verifier, "Bearer " + signed(own_issuer, email="a" * 250 + "@x.example"),
                                  "longer than 256")
    assert verifier.verify("Bearer " + signed(own_issuer, email="a" * 240 + "@x.example")).subject


# --------------------------------------------------------------------------
# Audiences, token age and several issuers


def test_several_audiences_need_azp_among_ours(own_issuer: DevIssuer) -> None:
    verifier = TokenVerifier(settings_for(own_issuer))
    assert verifier.verify("Bearer " + signed(own_issuer, audience=["aud-1", "x"], azp="aud-1")).subject
    for azp in (None, "x", ["aud-1"]):
        with pytest.raises(Unauthenticated, match="azp"):
            verifier.verify("Bearer " + signed(own_issuer, audience=["aud-1", "x"], azp=azp))


def test_one_audience_in_a_list_needs_no_azp(own_issuer: DevIssuer) -> None:
    verifier = TokenVerifier(settings_for(own_issuer))
    assert verifier.verify("Bearer " + signed(own_issuer, audience=["aud-1"])).subject
    assert verifier.verify("Bearer " + signed(own_issuer, audience=["aud-1", "aud-1"])).subject


def test_clock_leeway_applies_to_exp_and_iat(own_issuer: DevIssuer) -> None:
    # Margins far from the leeway's edges: a slow machine only moves a token further into its past.
    verifier = TokenVerifier(settings_for(own_issuer, leeway_seconds=60))
    now = int(time.time())
    assert verifier.verify("Bearer " + signed(own_issuer, iat=now - 600, exp=now - 10)).subject
    assert verifier.verify("Bearer " + signed(own_issuer, iat=now + 10, exp=now + 600)).subject
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify("Bearer " + signed(own_issuer, iat=now - 600, exp=now - 120))


def test_max_token_age(own_issuer: DevIssuer) -> None:
    now = time.time()
    verifier = TokenVerifier(settings_for(own_issuer, max_token_age_seconds=600, leeway_seconds=0),
                             clock=lambda: now)
    assert verifier.verify("Bearer " + signed(own_issuer, iat=int(now) - 599, exp=int(now) + 600)).subject
    with pytest.raises(Unauthenticated, match="older than 600 seconds"):
        verifier.verify("Bearer " + signed(own_issuer, iat=int(now) - 601, exp=int(now) + 600))


def test_max_token_age_allows_the_clock_leeway_and_not_a_second_more(own_issuer: DevIssuer) -> None:
    iat = int(time.time()) - 60
    token = "Bearer " + signed(own_issuer, iat=iat, exp=iat + 3600)
    ages = iter([600 + 30, 600 + 30 + 1])  # limit + leeway is still fine

    verifier = TokenVerifier(settings_for(own_issuer, max_token_age_seconds=600, leeway_seconds=30),
                             clock=lambda: iat + next(ages))
    assert verifier.verify(token).subject
    with pytest.raises(Unauthenticated, match="older than 600 seconds"):
        verifier.verify(token)


def _ci(dev: DevIssuer, **kw: Any) -> Issuer:
    return Issuer(name="ci", url=dev.url, audiences=("aud-2",), identity_claim="sub", **kw)


def test_a_second_issuer_verifies_with_its_own_keys_and_settings(
        own_issuer: DevIssuer, second_issuer: DevIssuer) -> None:
    ci = _ci(second_issuer)
    verifier = TokenVerifier(settings_for(own_issuer), policy_issuers=lambda url: ci if url == ci.url else None)
    who = verifier.verify("Bearer " + second_issuer.mint("", claims={"repository": "acme/infra"}))
    assert who.principal.key == "ci|repo:acme/infra:ref:refs/heads/main"
    assert who.issuer == second_issuer.url and who.principal.issuer == "ci"
    with pytest.raises(Unauthenticated, match="audience"):  # the default issuer's audience is not the CI one's
        verifier.verify("Bearer " + second_issuer.mint("", audience="aud-1"))
    forged = jwt.encode({"iss": second_issuer.url, "aud": "aud-2", "sub": "repo:x", "iat": int(time.time()),
                         "exp": int(time.time()) + 60}, own_issuer.keys[0].private, algorithm="RS256",
                        headers={"kid": second_issuer.keys[0].kid})
    with pytest.raises(Unauthenticated, match="signature"):  # signed with the other issuer's key
        verifier.verify("Bearer " + forged)


def test_keys_cache_rotate_and_survive_outages_per_issuer(own_issuer: DevIssuer, second_issuer: DevIssuer) -> None:
    ci = _ci(second_issuer)
    clock = FakeClock()
    verifier = TokenVerifier(settings_for(own_issuer), policy_issuers=lambda url: ci if url == ci.url else None,
                             monotonic=clock)
    people, job = own_issuer.mint("alice@example.com"), second_issuer.mint("")
    verifier.verify("Bearer " + people)
    verifier.verify("Bearer " + job)
    second_issuer.jwks_available = False
    second_issuer.rotate()
    rotated_job = second_issuer.mint("")
    clock.now += keys_module.JWKS_REFRESH_COOLDOWN_SECONDS + 1
    with pytest.raises(DependencyDown):  # its IdP is down and the new key cannot be fetched
        verifier.verify("Bearer " + rotated_job)
    assert verifier.verify("Bearer " + job).principal.issuer == "ci"  # last good keys still serve
    own_issuer.rotate()
    assert verifier.verify("Bearer " + own_issuer.mint("alice@example.com")).subject == "alice@example.com"


@pytest.mark.parametrize("wrong", ["another url", "the default's name"])
def test_a_policy_lookup_must_return_exactly_the_issuer_asked_for(
        own_issuer: DevIssuer, second_issuer: DevIssuer, wrong: str) -> None:
    # Defence in depth: a buggy lookup must not hand a token another issuer's settings.
    ci = _ci(second_issuer)
    answer = (Issuer(name="ci", url="https://elsewhere.example", audiences=("aud-2",), identity_claim="sub")
              if wrong == "another url" else Issuer(name="default", url=ci.url, audiences=("aud-2",),
                                                    identity_claim="sub"))
    verifier = TokenVerifier(settings_for(own_issuer), policy_issuers=lambda url: answer)
    _assert_refused_without_fetch(second_issuer, verifier, "Bearer " + second_issuer.mint(""),
                                  "issuer this broker does not trust")


def test_key_caches_survive_a_policy_reload(own_issuer: DevIssuer, second_issuer: DevIssuer) -> None:
    reloaded = [_ci(second_issuer), _ci(second_issuer, max_token_age_seconds=3600)]
    verifier = TokenVerifier(settings_for(own_issuer), policy_issuers=lambda url: reloaded[0])
    verifier.verify("Bearer " + second_issuer.mint(""))
    reloaded.pop(0)
    before = fetches(second_issuer)
    verifier.verify("Bearer " + second_issuer.mint(""))
    assert fetches(second_issuer) == before
