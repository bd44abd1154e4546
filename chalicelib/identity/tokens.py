"""Who is calling: OIDC JWT verification with PyJWT, for one or more issuers.

The rules, in the order a token meets them:

* Size and shape are checked before any key lookup; the header's ``alg``
  must be one of the pinned asymmetric algorithms and ``kid`` must be set,
  so garbage and forged ``none``/``HS256`` tokens never cause a fetch.
* The token's *unverified* ``iss`` only selects whose keys and settings
  verify it: the default issuer (``ROLEBROKER_OIDC_*``) or one declared under
  the policy's ``issuers:``. An ``iss`` we do not know is refused before any
  fetch; signature verification then checks ``iss`` exactly.
* Keys come from that issuer's JWKS, cached, rotated and kept through an
  outage per issuer (``keys.py``); the caches survive policy reloads.
* ``exp``, ``iat``, ``iss``, ``sub`` and ``aud`` are required; clock leeway
  is at most 60 s. A token with several audiences must name one of ours in
  ``azp`` (OIDC Core 3.1.3.7). An issuer may cap the token's age. Cognito
  access tokens (no ``aud``) are accepted only when configured, and then only
  with ``token_use=access`` and a ``client_id`` we accept.
* The caller is one principal (``principal.py``): the issuer's identity
  claim, with no fallback to another claim. ``email`` counts only when
  ``email_verified`` is ``true`` or ``"true"`` (any case), unless the issuer
  is configured not to require it, and only when it is plain ASCII
  (``principal.py`` says why); otherwise the email is treated as absent
  everywhere (identity, rules, Slack, audit).
"""

from __future__ import annotations

import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from chalicelib.exceptions import Unauthenticated
from chalicelib.identity.issuers import Issuer
from chalicelib.identity.keys import KeySet, Opener, urlopen
from chalicelib.identity.principal import DEFAULT_ISSUER, Principal, canonical_value, email_problem
from chalicelib.settings import Settings

MAX_TOKEN_BYTES = 16 * 1024
MAX_IDENTITY_CHARS = 256
_KEPT_CLAIM_TYPES = (str, int, bool)


@dataclass(frozen=True)
class Identity:
    """A verified caller: a person or a workload (e.g. a CI job).

    ``subject`` is the identity claim as the token gave it (for display and
    audit); ``principal`` is who they are (for every comparison). Built
    directly, as tests and tools do, an identity's principal defaults to the
    default issuer and ``subject`` as given; verified tokens always carry an
    explicit, canonical one.
    """

    subject: str
    groups: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict)
    issuer: str = ""  # the token's iss; "slack" for a Slack user mapped to a principal
    principal: Principal = field(default=None)  # type: ignore[assignment]
    sub: str | None = None
    issued_at: int | None = None
    # For a token of another issuer: the default issuer's person it names
    # (the issuer's ``approval_identity_claim``), if the issuer declares one.
    linked: Principal | None = None

    def __post_init__(self) -> None:
        if self.principal is None:
            object.__setattr__(self, "principal", Principal(DEFAULT_ISSUER, self.subject))

    @property
    def iss_sub(self) -> tuple[str, str] | None:
        """The token's ``iss`` and ``sub``: the IdP's own name for this account."""
        return (self.issuer, self.sub) if self.sub else None

    @property
    def person(self) -> Principal | None:
        """Who this is as a person of the default issuer, where known: the principal itself for the
        default issuer, the ``linked`` one for an issuer that declares ``approval_identity_claim``."""
        return self.principal if self.principal.issuer == DEFAULT_ISSUER else self.linked

    def is_same_person(self, principal_key: str, iss: str | None, sub: str | None,
                       person_key: str | None = None) -> bool:
        """Whether a record's principal, its ``iss`` + ``sub``, or its person (``person_key``: the
        default-issuer person a requester of another issuer was linked to) is this caller's."""
        if principal_key == self.principal.key:
            return True
        if self.sub is not None and sub is not None and (iss, sub) == (self.issuer, self.sub):
            return True
        mine = self.person
        return mine is not None and mine.key in (principal_key, person_key)

    @property
    def amr(self) -> tuple[str, ...]:
        value = self.claims.get("amr", ())
        if isinstance(value, str):
            return (value,)
        return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()

    @property
    def has_mfa(self) -> bool:
        return "mfa" in self.amr


def identity_from_claims(claims: Mapping[str, Any], issuer: Issuer) -> Identity:
    """Build an ``Identity`` from verified claims of ``issuer`` (pure)."""
    trusted = trusted_claims(claims, issuer)
    value = _identity_value(trusted, issuer.identity_claim, email_refusal=_email_refusal(claims, issuer))
    iat = claims.get("iat")
    return Identity(
        subject=value,
        principal=Principal(issuer.name, canonical_value(issuer.identity_claim, value)),
        groups=frozenset(groups_from_claim(trusted.get(issuer.groups_claim))),
        claims=_kept_claims(trusted),
        issuer=str(claims.get("iss", "")),
        sub=_usable(claims.get("sub"), "sub"),
        issued_at=iat if isinstance(iat, int) and not isinstance(iat, bool) else None,
        linked=_linked_person(trusted, issuer),
    )


def _linked_person(claims: Mapping[str, Any], issuer: Issuer) -> Principal | None:
    """The default-issuer person a token of ``issuer`` names, if the issuer declares how."""
    claim = issuer.approval_identity_claim
    if not claim or issuer.is_default:
        return None
    if claim not in claims:
        # Without it the token could approve its own person's requests: refused, like a missing identity claim.
        raise Unauthenticated(f"token has no {claim!r} claim, which every token of issuer {issuer.name} must carry "
                              "(approval_identity_claim: it names the person, so nobody approves their own request)")
    value = _usable(claims[claim], claim)
    try:
        return Principal(DEFAULT_ISSUER, canonical_value(claim, value))
    except ValueError as exc:
        raise Unauthenticated(f"token's {claim!r} claim {exc}") from None


def trusted_claims(claims: Mapping[str, Any], issuer: Issuer) -> Mapping[str, Any]:
    """``claims`` without ``email`` unless the issuer vouches for it and it is plain ASCII."""
    if _email_refusal(claims, issuer) is None:
        return claims
    return {k: v for k, v in claims.items() if k != "email"}


def _email_refusal(claims: Mapping[str, Any], issuer: Issuer) -> str | None:
    """Why the token's ``email`` does not count (as if absent), or None if it does or there is none."""
    if "email" not in claims:
        return None
    if issuer.require_email_verified and not email_is_verified(claims):
        return "is not verified by the identity provider (email_verified must be true)"
    email = claims["email"]
    return email_problem(email) if isinstance(email, str) else None


def email_is_verified(claims: Mapping[str, Any]) -> bool:
    # Only the boolean true, or the string "true" some IdPs send, counts.
    verified = claims.get("email_verified")
    return verified is True or (isinstance(verified, str) and verified.lower() == "true")


def groups_from_claim(value: Any) -> list[str]:
    """Groups arrive as a list of strings or, from some IdPs, one string."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str) and item.strip()]
    raise Unauthenticated("token's groups claim is neither a list nor a string")


def _identity_value(claims: Mapping[str, Any], claim: str, *, email_refusal: str | None) -> str:
    if claim not in claims:
        if claim == "email" and email_refusal:
            raise Unauthenticated(f"token's 'email' claim {email_refusal}")
        raise Unauthenticated(f"token has no {claim!r} claim, which this broker identifies callers by "
                              "(there is no fallback to another claim)")
    return _usable(claims[claim], claim)


def _usable(value: Any, claim: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Unauthenticated(f"token's {claim!r} claim is missing or not a non-empty string")
    if len(value) > MAX_IDENTITY_CHARS:
        raise Unauthenticated(f"token's {claim!r} claim is longer than {MAX_IDENTITY_CHARS} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise Unauthenticated(f"token's {claim!r} claim contains control characters")
    return value.strip()


def _kept_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in claims.items():
        if isinstance(value, _KEPT_CLAIM_TYPES):
            kept[key] = value
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            kept[key] = list(value)
    if isinstance(kept.get("email"), str):
        kept["email"] = canonical_value("email", kept["email"])  # rules compare emails in lower case
    return kept


def _no_policy_issuers(url: str) -> Issuer | None:
    return None


class TokenVerifier:
    """Verifies bearer tokens and returns the caller's ``Identity``.

    ``policy_issuers`` looks up a non-default issuer by its exact ``iss``
    (the access policy's ``issuers:``); ``clock`` is the wall clock for token
    age, ``monotonic`` drives the key caches.
    """

    def __init__(self, settings: Settings, *, policy_issuers: Callable[[str], Issuer | None] = _no_policy_issuers,
                 opener: Opener = urlopen, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._default = settings.default_issuer
        self._policy_issuers = policy_issuers
        self._opener = opener
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, str | None], KeySet] = {}

    def verify(self, authorization: str | None) -> Identity:
        token = _bearer(authorization)
        header, unverified = _unverified(token, self._settings.algorithms)
        issuer = self._issuer_for(unverified.get("iss"))
        key = self._key_set(issuer).key(header["kid"]).key
        claims = self._decode(token, key, issuer)
        return identity_from_claims(claims, issuer)

    def _issuer_for(self, iss: Any) -> Issuer:
        # Selection only: the signature check below verifies ``iss`` exactly.
        if not isinstance(iss, str) or not iss:
            raise Unauthenticated("token lacks the required claim 'iss'")
        if iss == self._default.url:
            return self._default
        issuer = self._policy_issuers(iss)
        if issuer is None or issuer.url != iss or issuer.is_default:
            raise Unauthenticated("token was issued by an issuer this broker does not trust")
        return issuer

    def _key_set(self, issuer: Issuer) -> KeySet:
        cache_key = (issuer.url, issuer.jwks_url)
        with self._lock:
            if cache_key not in self._keys:
                self._keys[cache_key] = KeySet(
                    issuer.url, issuer.jwks_url, opener=self._opener, monotonic=self._monotonic,
                    timeout=self._settings.jwks_timeout_seconds,
                    max_stale_seconds=self._settings.jwks_max_stale_seconds)
            return self._keys[cache_key]

    def _decode(self, token: str, key: Any, issuer: Issuer) -> dict[str, Any]:
        settings = self._settings
        cognito = issuer.accept_cognito_access_tokens
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(settings.algorithms),
                audience=None if cognito else list(issuer.audiences),
                issuer=issuer.url,
                leeway=settings.leeway_seconds,
                options={
                    "require": ["exp", "iat", "iss", "sub"] + ([] if cognito else ["aud"]),
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
            _check_cognito_audience(claims, issuer.audiences)
        _check_authorized_party(claims, issuer.audiences)
        self._check_age(claims, issuer)
        return claims

    def _check_age(self, claims: Mapping[str, Any], issuer: Issuer) -> None:
        limit = issuer.max_token_age_seconds
        if limit is not None and self._clock() - claims["iat"] > limit + self._settings.leeway_seconds:
            raise Unauthenticated(f"token is older than {limit} seconds, the most this broker accepts "
                                  "from its issuer; get a new one")


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


def _unverified(token: str, algorithms: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and payload, unverified: only to check shape and pick an issuer."""
    try:
        parts = jwt.decode_complete(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise Unauthenticated("token is malformed (not a signed JWT)") from None
    header: dict[str, Any] = parts["header"]
    alg = header.get("alg")
    if alg not in algorithms:
        raise Unauthenticated(f"token algorithm {str(alg)[:16]!r} is not accepted")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise Unauthenticated("token has no key id (kid) header")
    payload: dict[str, Any] = parts["payload"]
    return header, payload


def _check_authorized_party(claims: Mapping[str, Any], audiences: tuple[str, ...]) -> None:
    aud = claims.get("aud")
    if isinstance(aud, list) and len(set(map(str, aud))) > 1 and claims.get("azp") not in audiences:
        raise Unauthenticated("token has several audiences but its authorized party (azp) is not this broker")


def _check_cognito_audience(claims: Mapping[str, Any], audiences: tuple[str, ...]) -> None:
    if "aud" in claims:
        aud = claims["aud"]
        accepted = set(aud) if isinstance(aud, list) else {aud}
        if accepted & set(audiences):
            return
        raise Unauthenticated("token is not meant for this broker (audience)")
    if claims.get("token_use") != "access" or claims.get("client_id") not in audiences:
        raise Unauthenticated("token is not meant for this broker (client_id/token_use)")
