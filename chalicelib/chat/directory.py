"""Who a Slack user is, in the broker's terms.

Slack tells us a user id. A Slack user is always a person of the default
issuer: their principal comes from the policy's static ``slack.users``
mapping (a value of the default issuer's identity claim) or, only when that
claim is ``email``, from Slack's ``users.info`` (the verified profile email,
in ASCII lower case like any email; guests and bots are refused). Slack knows nothing
of IdP groups, so the groups are those of the person's newest verified token
(by ``iat``), remembered for a working day under their principal: the same
access policy then decides for Slack as for the API. MFA is never carried
over (Slack cannot prove it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from chalicelib.access.policy import AccessPolicy
from chalicelib.aws.store import AccessStore
from chalicelib.chat.slack import SlackApi
from chalicelib.exceptions import Forbidden
from chalicelib.identity.principal import DEFAULT_ISSUER, Principal, canonical_value
from chalicelib.identity.tokens import Identity

SNAPSHOT_TTL = timedelta(hours=12)
SNAPSHOT_REFRESH_SECONDS = 600
EMAIL_CACHE_SECONDS = 3600


class Directory:
    def __init__(self, store: AccessStore, clock: Callable[[], datetime],
                 monotonic: Callable[[], float] = time.monotonic, identity_claim: str = "email") -> None:
        self._store = store
        self._clock = clock
        self._monotonic = monotonic
        self._identity_claim = identity_claim  # the default issuer's
        self._written: dict[tuple[str, frozenset[str]], float] = {}
        self._emails: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def remember(self, identity: Identity) -> None:
        """Record the groups of a verified token (at most every 10 minutes per principal and groups)."""
        if identity.principal.issuer != DEFAULT_ISSUER:
            return  # Slack users are people of the default issuer; nobody maps to a CI job
        key = (identity.principal.key, identity.groups)
        now = self._monotonic()
        with self._lock:
            if now - self._written.get(key, -SNAPSHOT_REFRESH_SECONDS) < SNAPSHOT_REFRESH_SECONDS:
                return
            self._written[key] = now
        self._store.remember_identity(identity.principal.key, identity.groups, self._clock(), SNAPSHOT_TTL,
                                      issued_at=identity.issued_at)

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
        groups = self._store.recall_identity(principal.key, self._clock()) or frozenset()
        return Identity(subject=value, principal=principal, groups=groups,
                        claims={self._identity_claim: principal.value}, issuer="slack")

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
