"""Who a Slack user is, in the broker's terms.

Slack tells us a user id. A Slack user is always a person of the default
issuer: their principal comes from the policy's static ``slack.users``
mapping (a value of the default issuer's identity claim) or, only when that
claim is ``email``, from Slack's ``users.info`` (the verified profile email,
ASCII only, in lower case like any email; guests and bots are refused).

That principal only says *whose* token to look for. Everything the policy
judges them by, groups **and claims**, comes from the snapshot of that
person's newest verified token (by ``iat``), remembered for a working day;
Slack itself vouches for nothing the rules read. So a ``claims: {email: …}``
rule matches a Slack user only if a token of theirs said so recently, and a
person who never signed in, or whom the IdP stopped vouching for more than
12 hours ago (offboarding lag between the IdP and Slack), is refused
outright. MFA is never carried over (Slack cannot prove it), nor are other
claims about the sign-in itself (``amr``, ``acr``, times, nonces).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from chalicelib.access.policy import AccessPolicy
from chalicelib.aws.store import AccessStore
from chalicelib.chat.slack import SlackApi
from chalicelib.exceptions import Forbidden
from chalicelib.identity.principal import DEFAULT_ISSUER, Principal, canonical_value
from chalicelib.identity.tokens import Identity

SNAPSHOT_TTL = timedelta(hours=12)
SNAPSHOT_REFRESH_SECONDS = 600
EMAIL_CACHE_SECONDS = 3600
# Claims about one sign-in, not about the person: never carried to Slack.
SIGN_IN_CLAIMS = frozenset({"amr", "acr", "auth_time", "iat", "nbf", "exp", "jti", "nonce", "at_hash", "c_hash",
                            "sid", "uti", "rh"})


def snapshot_claims(identity: Identity) -> dict[str, Any]:
    """The claims of a verified token that Slack may judge its person by later."""
    return {key: value for key, value in identity.claims.items() if key not in SIGN_IN_CLAIMS}


class Directory:
    def __init__(self, store: AccessStore, clock: Callable[[], datetime],
                 monotonic: Callable[[], float] = time.monotonic, identity_claim: str = "email") -> None:
        self._store = store
        self._clock = clock
        self._monotonic = monotonic
        self._identity_claim = identity_claim  # the default issuer's
        self._written: dict[tuple[str, frozenset[str], str], float] = {}
        self._emails: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def remember(self, identity: Identity) -> None:
        """Record the groups and claims of a verified token (at most every 10 minutes per principal, groups
        and claims)."""
        if identity.principal.issuer != DEFAULT_ISSUER:
            return  # Slack users are people of the default issuer; nobody maps to a CI job
        claims = snapshot_claims(identity)
        key = (identity.principal.key, identity.groups, json.dumps(claims, sort_keys=True))
        now = self._monotonic()
        with self._lock:
            if now - self._written.get(key, -SNAPSHOT_REFRESH_SECONDS) < SNAPSHOT_REFRESH_SECONDS:
                return
            self._written[key] = now
        self._store.remember_identity(identity.principal.key, identity.groups, self._clock(), SNAPSHOT_TTL,
                                      issued_at=identity.issued_at, claims=claims)

    def slack_identity(self, user_id: str, policy: AccessPolicy, slack: SlackApi | None) -> Identity:
        value = policy.slack_users.get(user_id)
        if value is None and self._identity_claim == "email":
            value = self._email(user_id, slack)
        if not value:
            raise Forbidden("your Slack account is not linked to a rolebroker identity: your Slack profile "
                            "needs your company email, or an admin can map you under slack.users in the policy")
        try:
            principal = Principal(DEFAULT_ISSUER, canonical_value(self._identity_claim, value))
        except ValueError as exc:  # a non-ASCII email: no token of theirs would count either
            raise Forbidden(f"your Slack identity {exc}") from None
        snapshot = self._store.recall_identity(principal.key, self._clock())
        if snapshot is None:
            raise Forbidden(f"rolebroker has not seen a sign-in of yours ({value}) in the last "
                            f"{SNAPSHOT_TTL.seconds // 3600} hours: run `rolebroker login` (or any rolebroker "
                            "command) once, then try again here")
        return Identity(subject=value, principal=principal, groups=snapshot.groups, claims=snapshot.claims,
                        issuer="slack")

    def _email(self, user_id: str, slack: SlackApi | None) -> str | None:
        if slack is None:
            return None
        now = self._monotonic()
        cached = self._emails.get(user_id)
        if cached and now - cached[1] < EMAIL_CACHE_SECONDS:
            return cached[0]
        email = slack.user_email(user_id)
        self._emails[user_id] = (email, now)
        return email
