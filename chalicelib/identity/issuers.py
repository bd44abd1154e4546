"""The issuers the broker trusts and what it takes from each one's tokens.

The default issuer comes from the ``ROLEBROKER_OIDC_*`` variables (see
``Settings.default_issuer``); further issuers (a CI provider, a second IdP)
are declared under ``issuers:`` in the access policy. Each names its own
audiences, identity claim and groups claim, so a GitHub Actions job is
identified by ``sub`` while a person is identified by ``email``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from chalicelib.identity.principal import DEFAULT_ISSUER

LOOPBACK_NAMES = frozenset({"localhost"})


@dataclass(frozen=True)
class Issuer:
    """One trusted token issuer and how to read its tokens."""

    name: str
    url: str  # the exact ``iss``
    audiences: tuple[str, ...]
    identity_claim: str = "email"
    groups_claim: str = "groups"
    require_email_verified: bool = True
    max_token_age_seconds: int | None = None
    jwks_url: str | None = None
    accept_cognito_access_tokens: bool = False
    # A claim of this issuer's tokens holding the person's value of the
    # default issuer's identity claim (a second IdP's verified `email`), so
    # that one person's tokens of two issuers are one person for self-approval.
    approval_identity_claim: str | None = None

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_ISSUER


def is_safe_url(url: str) -> bool:
    """``https://host...``, or ``http://`` to a loopback host (the local stack)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if not parts.hostname or parts.fragment or parts.username or parts.password:
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and _is_loopback(parts.hostname)


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
