"""Who is calling: OIDC JWT verification with PyJWT and ``PyJWKClient``.

The rules, in the order a token meets them:

* Size and shape are checked before any key lookup, and the header's ``alg``
  must be one of the pinned asymmetric algorithms, so garbage and forged
  ``none``/``HS256`` tokens never cause a JWKS fetch.
* Keys come from the IdP's JWKS (discovered from the issuer unless
  ``ROLEBROKER_JWKS_URL`` is set). PyJWT cools down forced refreshes for
  unknown ``kid`` values, so random ``kid`` values cannot make us hammer the
  IdP; a key the IdP rotates in is picked up on the first refresh after the
  cool-down (30 s).
* If the IdP is unreachable we keep serving the last key set we fetched;
  with nothing cached the caller gets a 503, never a 500.
* ``exp``, ``iat``, ``iss`` and ``aud`` are required; clock leeway is at most
  60 s. Cognito access tokens (no ``aud``) are accepted only when configured,
  and then only with ``token_use=access`` and a ``client_id`` we accept.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from jwt import PyJWKClient
from jwt.exceptions import PyJWKClientConnectionError, PyJWKClientError

from chalicelib.exceptions import DependencyDown, Unauthenticated
from chalicelib.settings import Settings

LOG = logging.getLogger(__name__)

MAX_TOKEN_BYTES = 16 * 1024
JWKS_LIFESPAN_SECONDS = 300
JWKS_REFRESH_COOLDOWN_SECONDS = 30
_KEPT_CLAIM_TYPES = (str, int, bool)


@dataclass(frozen=True)
class Identity:
    """A verified caller: a person or a workload (e.g. a CI job)."""

    subject: str
    groups: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict)
    issuer: str = ""

    @property
    def amr(self) -> tuple[str, ...]:
        value = self.claims.get("amr", ())
        if isinstance(value, str):
            return (value,)
        return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()

    @property
    def has_mfa(self) -> bool:
        return "mfa" in self.amr


def identity_from_claims(claims: Mapping[str, Any], settings: Settings) -> Identity:
    """Build an ``Identity`` from verified claims (pure)."""
    subject = _subject(claims, settings.identity_claim)
    return Identity(
        subject=subject,
        groups=frozenset(groups_from_claim(claims.get(settings.groups_claim))),
        claims=_kept_claims(claims),
        issuer=str(claims.get("iss", "")),
    )


def groups_from_claim(value: Any) -> list[str]:
    """Groups arrive as a list of strings or, from some IdPs, one string."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str) and item.strip()]
    raise Unauthenticated("token's groups claim is neither a list nor a string")


def _subject(claims: Mapping[str, Any], identity_claim: str) -> str:
    value = claims.get(identity_claim)
    if identity_claim == "email":
        if value is not None and claims.get("email_verified") is False:
            raise Unauthenticated("token's email is not verified by the identity provider")
        if value is None:
            value = claims.get("sub")
    if not isinstance(value, str) or not value.strip():
        raise Unauthenticated(f"token has no usable identity claim ({identity_claim!r})")
    if len(value) > 256:
        raise Unauthenticated("token's identity claim is longer than 256 characters")
    return value.strip()


def _kept_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in claims.items():
        if isinstance(value, _KEPT_CLAIM_TYPES):
            kept[key] = value
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            kept[key] = list(value)
    return kept


class _LastGoodJWKClient(PyJWKClient):
    """A ``PyJWKClient`` that falls back to the last key set it fetched.

    An IdP outage then does not lock everybody out: tokens signed with keys
    we already know keep verifying. Because the fallback goes through
    ``get_jwk_set``, it is cached for a lifespan like a fresh fetch, so an
    outage costs one failed fetch per lifespan, not one per request.
    """

    def __init__(self, uri: str, **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        self._last_good: Any = None

    def fetch_data(self) -> Any:
        try:
            data = super().fetch_data()
        except PyJWKClientConnectionError:
            if self._last_good is None:
                raise
            LOG.warning("JWKS endpoint unreachable; serving the last key set fetched")
            return self._last_good
        self._last_good = data
        return data


Opener = Callable[[str, float], bytes]


def _urlopen(url: str, timeout: float) -> bytes:
    if not url.startswith(("https://", "http://")):
        raise ValueError("only http(s) URLs are fetched")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - scheme checked
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked
        body: bytes = response.read(1024 * 1024)
        return body


class TokenVerifier:
    """Verifies bearer tokens and returns the caller's ``Identity``."""

    def __init__(self, settings: Settings, *, opener: Opener = _urlopen) -> None:
        self._settings = settings
        self._opener = opener
        self._lock = threading.Lock()
        self._jwks: PyJWKClient | None = None

    def verify(self, authorization: str | None) -> Identity:
        token = _bearer(authorization)
        header = _header(token, self._settings.algorithms)
        key = self._signing_key(header)
        claims = self._decode(token, key)
        return identity_from_claims(claims, self._settings)

    def _decode(self, token: str, key: Any) -> dict[str, Any]:
        settings = self._settings
        cognito = settings.accept_cognito_access_tokens
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(settings.algorithms),
                audience=None if cognito else list(settings.audiences),
                issuer=settings.issuer,
                leeway=settings.leeway_seconds,
                options={
                    "require": ["exp", "iat", "iss"] + ([] if cognito else ["aud"]),
                    "verify_aud": not cognito,
                },
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token has expired; get a new one") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("token is not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("token was issued by an issuer this broker does not trust") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("token is not meant for this broker (audience)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"token lacks the required claim {exc.claim!r}") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("token signature does not verify") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("token is malformed or invalid") from None
        if cognito:
            _check_cognito_audience(claims, settings.audiences)
        return claims

    def _signing_key(self, header: Mapping[str, Any]) -> Any:
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("token has no key id (kid) header")
        client = self._jwks_client()
        try:
            return client.get_signing_key(kid).key
        except PyJWKClientConnectionError as exc:
            LOG.error("JWKS fetch failed: %s", type(exc).__name__)
            raise DependencyDown(
                "the identity provider's signing keys are unavailable; try again shortly"
            ) from exc
        except PyJWKClientError:
            raise Unauthenticated("token is signed with a key the identity provider does not publish") from None
        except jwt.PyJWKError:
            raise Unauthenticated("token's key cannot be used") from None

    def _jwks_client(self) -> PyJWKClient:
        with self._lock:
            if self._jwks is None:
                uri = self._settings.jwks_url or self._discover_jwks_uri()
                self._jwks = _LastGoodJWKClient(
                    uri,
                    lifespan=JWKS_LIFESPAN_SECONDS,
                    cooldown_duration=JWKS_REFRESH_COOLDOWN_SECONDS,
                    timeout=self._settings.jwks_timeout_seconds,
                    cache_keys=False,
                )
            return self._jwks

    def _discover_jwks_uri(self) -> str:
        url = self._settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            document = json.loads(self._opener(url, self._settings.jwks_timeout_seconds))
        except (OSError, ValueError) as exc:
            LOG.error("OIDC discovery failed for %s: %s", url, type(exc).__name__)
            raise DependencyDown(
                "the identity provider's discovery document is unavailable; try again shortly"
            ) from exc
        jwks_uri = document.get("jwks_uri") if isinstance(document, dict) else None
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise DependencyDown("the identity provider's discovery document has no jwks_uri")
        if document.get("issuer") != self._settings.issuer:
            raise DependencyDown(
                "the identity provider's discovery document names a different issuer; "
                "check ROLEBROKER_OIDC_ISSUER"
            )
        return jwks_uri


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("missing bearer token: send 'Authorization: Bearer <OIDC JWT>'")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <OIDC JWT>'")
    token = token.strip()
    if len(token) > MAX_TOKEN_BYTES:
        raise Unauthenticated("token is too large")
    return token


def _header(token: str, algorithms: tuple[str, ...]) -> dict[str, Any]:
    try:
        header: dict[str, Any] = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise Unauthenticated("token is malformed (not a signed JWT)") from None
    alg = header.get("alg")
    if alg not in algorithms:
        raise Unauthenticated(f"token algorithm {str(alg)[:16]!r} is not accepted")
    return header


def _check_cognito_audience(claims: Mapping[str, Any], audiences: tuple[str, ...]) -> None:
    if "aud" in claims:
        aud = claims["aud"]
        accepted = set(aud) if isinstance(aud, list) else {aud}
        if accepted & set(audiences):
            return
        raise Unauthenticated("token is not meant for this broker (audience)")
    if claims.get("token_use") != "access" or claims.get("client_id") not in audiences:
        raise Unauthenticated("token is not meant for this broker (client_id/token_use)")
