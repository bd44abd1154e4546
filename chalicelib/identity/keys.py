"""One issuer's signing keys: discovered, cached, rotated, kept through outages.

PyJWT parses the key set (``PyJWKSet``); this module decides *when* to fetch
it, on an injected monotonic clock, so rotation and outage behaviour can be
tested without sleeping:

* The set is cached for ``JWKS_LIFESPAN_SECONDS``. A ``kid`` we do not know
  forces one refresh, at most once per ``JWKS_REFRESH_COOLDOWN_SECONDS``, so
  random ``kid`` values cannot make us hammer the IdP, and a key the IdP
  rotates in is picked up within the cool-down.
* If a fetch fails, the last good set keeps serving, re-checked once per
  lifespan (one failed fetch per lifespan, not one per request), but only
  for ``max_stale_seconds`` after its last successful fetch: keys nobody
  could confirm for a day may have been revoked, so after that, and with
  nothing cached at all, callers get a 503.
* Only http(s) URLs are fetched, redirects are not followed, and a discovery
  document must name exactly the issuer we asked about and a JWKS URL that
  is https (or http on loopback).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from jwt import PyJWK, PyJWKSet
from jwt.exceptions import PyJWKSetError

from chalicelib.exceptions import DependencyDown, Unauthenticated
from chalicelib.identity.issuers import is_safe_url

LOG = logging.getLogger(__name__)

JWKS_LIFESPAN_SECONDS = 300
JWKS_REFRESH_COOLDOWN_SECONDS = 30
DEFAULT_MAX_STALE_SECONDS = 24 * 3600
MAX_DOCUMENT_BYTES = 1024 * 1024
NEVER = float("-inf")

Opener = Callable[[str, float], bytes]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def urlopen(url: str, timeout: float) -> bytes:
    """GET ``url`` (http or https only, no redirects) and return at most 1 MiB."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("only http(s) URLs are fetched")
    opener = urllib.request.build_opener(_NoRedirect())
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - scheme checked
    with opener.open(request, timeout=timeout) as response:
        body: bytes = response.read(MAX_DOCUMENT_BYTES)
        return body


class KeySet:
    """The signing keys of one issuer (thread-safe)."""

    def __init__(self, issuer_url: str, jwks_url: str | None, *, opener: Opener = urlopen,
                 monotonic: Callable[[], float] = time.monotonic, timeout: float = 3.0,
                 max_stale_seconds: float = DEFAULT_MAX_STALE_SECONDS) -> None:
        self._issuer = issuer_url
        self._jwks_url = jwks_url
        self._opener = opener
        self._monotonic = monotonic
        self._timeout = timeout
        self._max_stale = max_stale_seconds
        self._lock = threading.Lock()
        self._keys: dict[str, PyJWK] | None = None
        self._checked_at = NEVER  # fetched, or kept as last good: starts the lifespan
        self._fetched_at = NEVER  # last successful fetch: how stale the keys are
        self._attempted_at = NEVER  # last fetch attempt: starts the cool-down
        self._down = False

    def key(self, kid: str) -> PyJWK:
        with self._lock:
            now = self._monotonic()
            keys = self._current(now)
            if kid not in keys and now - self._attempted_at >= JWKS_REFRESH_COOLDOWN_SECONDS:
                keys = self._refresh(now)
            if kid in keys:
                return keys[kid]
            down = self._down
        if down:
            raise DependencyDown("the identity provider's signing keys cannot be refreshed; try again shortly")
        raise Unauthenticated("token is signed with a key the identity provider does not publish")

    def _current(self, now: float) -> dict[str, PyJWK]:
        if self._keys is not None and now - self._checked_at < JWKS_LIFESPAN_SECONDS:
            return self._keys
        return self._refresh(now)

    def _refresh(self, now: float) -> dict[str, PyJWK]:
        self._attempted_at = now
        try:
            keys = self._fetch()
        except DependencyDown:
            self._down = True
            if self._keys is None or now - self._fetched_at > self._max_stale:
                raise
            LOG.warning("signing keys of %s unavailable; serving the last set fetched", self._issuer)
            self._checked_at = now
            return self._keys
        self._keys, self._checked_at, self._fetched_at, self._down = keys, now, now, False
        return keys

    def _fetch(self) -> dict[str, PyJWK]:
        uri = self._jwks_url or self._discover()
        try:
            data = json.loads(self._opener(uri, self._timeout))
            found = PyJWKSet.from_dict(data) if isinstance(data, dict) else None
        except (OSError, ValueError, PyJWKSetError) as exc:
            LOG.error("JWKS fetch from %s failed: %s", uri, type(exc).__name__)
            raise DependencyDown(
                "the identity provider's signing keys are unavailable; try again shortly") from exc
        if found is None:
            raise DependencyDown("the identity provider's key set is not a JSON object")
        return {k.key_id: k for k in found.keys if k.key_id and k.public_key_use in ("sig", None)}

    def _discover(self) -> str:
        url = self._issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            document = json.loads(self._opener(url, self._timeout))
        except (OSError, ValueError) as exc:
            LOG.error("OIDC discovery failed for %s: %s", url, type(exc).__name__)
            raise DependencyDown(
                "the identity provider's discovery document is unavailable; try again shortly") from exc
        if not isinstance(document, dict):
            raise DependencyDown("the identity provider's discovery document is not a JSON object")
        if document.get("issuer") != self._issuer:
            raise DependencyDown(
                f"the identity provider's discovery document names a different issuer than {self._issuer}; "
                "check the issuer's URL (ROLEBROKER_OIDC_ISSUER or the policy's issuers)")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not is_safe_url(jwks_uri):
            raise DependencyDown("the identity provider's discovery document has no usable jwks_uri "
                                 "(https, or http on loopback)")
        self._jwks_url = jwks_uri
        return jwks_uri
