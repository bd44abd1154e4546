"""Questions about access over the API: who may ask what, and the answers.

Anyone may ask what they themselves can use; the answer comes from their own
verified token, as ``/v1/roles`` does, and shows no rule's claim values (a
rule's value list may name other people). Asking who can use a role, or what
another person can use, is for the policy's ``admins`` and ``auditors``; those
answers come from ``chalicelib.access.queries`` over the same policy, and each
one leaves an audit line naming who asked about whom.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from chalicelib.access import queries
from chalicelib.access.policy import AccessPolicy, Rule
from chalicelib.audit import AuditLog, CallContext
from chalicelib.broker import GrantStore
from chalicelib.exceptions import BadRequest, Forbidden, Unauthenticated
from chalicelib.identity.principal import DEFAULT_ISSUER
from chalicelib.identity.tokens import Identity, identity_from_claims
from chalicelib.settings import Settings


def identity_named(settings: Settings, subject: str, groups: list[str]) -> Identity:
    """The identity a verified token naming ``subject`` with ``groups`` would have."""
    # ``sub`` only tells two accounts of one IdP apart; a question has none of its own.
    claims: dict[str, Any] = {settings.identity_claim: subject, settings.groups_claim: groups,
                              "iss": settings.issuer, "sub": f"query:{subject}"}
    if settings.identity_claim == "email":
        claims["email_verified"] = True
    return identity_from_claims(claims, settings.default_issuer)


def oversight(policy: AccessPolicy, caller: Identity) -> str:
    """Who may ask about others, for a 403's message: without any claim value, and without
    any group to callers of other issuers (a CI issuer signs for strangers too)."""
    if caller.principal.issuer != DEFAULT_ISSUER:
        return "the policy's admins and auditors"

    def rules(found: tuple[Rule, ...]) -> str:
        own = [rule for rule in found if rule.issuer == DEFAULT_ISSUER]
        return "; or ".join(rule.describe() for rule in own) or "nobody of your issuer"

    return f"admins ({rules(policy.admins)}) and auditors ({rules(policy.auditors)})"


class AccessInquiries:
    def __init__(self, *, policy: Callable[[], AccessPolicy], grants: GrantStore, audit: AuditLog,
                 settings: Settings, clock: Callable[[], datetime]) -> None:
        self._policy = policy
        self._grants = grants
        self._audit = audit
        self._settings = settings
        self._clock = clock

    def answer(self, caller: Identity, query: Mapping[str, Any], *, context: CallContext) -> dict[str, Any]:
        """``query`` has any of ``role``, ``identity`` and ``groups`` (validated).

        ``role`` alone asks who can use it; with ``identity`` or ``groups`` it
        narrows a what-can answer to that role. ``groups`` without
        ``identity`` asks about anyone holding exactly those groups.
        """
        policy = self._policy()
        role, subject, groups = query.get("role"), query.get("identity"), query.get("groups")
        if role is not None:
            # An unknown role is a 404 for everyone, and so is one with no rule of the caller's issuer,
            # except to those who oversee the whole policy.
            if policy.is_admin(caller) or policy.is_auditor(caller):
                policy.role(role)
            else:
                policy.role_for(role, caller)
        if subject is None and groups is None and role is not None:
            self._allow(policy, caller, context, f"ask who can use role {role}", role=role)
            return queries.who_can(policy, role)
        if groups is None and (subject is None or self._identity(subject, []).principal == caller.principal):
            answer = self._what_can(policy, caller, source="token", show_rules=False)
        else:
            self._allow(policy, caller, context, "ask about another person's access", about=subject or "(anyone)",
                        groups=groups, role=role)
            answer = self._what_can(policy, self._identity(subject, groups or []), source="query", show_rules=True)
        if role is not None:
            answer["roles"] = [r for r in answer["roles"] if r["role"] == role]
        return answer

    def _identity(self, subject: str | None, groups: list[str]) -> Identity:
        if subject is None:
            # Anyone with exactly these groups and no claim a rule could name.
            return Identity(subject="", groups=frozenset(groups), issuer=self._settings.issuer)
        try:
            return identity_named(self._settings, subject, groups)
        except Unauthenticated as exc:  # the broker's own identity rules, applied to a question
            raise BadRequest(f"'identity' cannot name anyone: {exc}") from None

    def _what_can(self, policy: AccessPolicy, identity: Identity, *, source: str,
                  show_rules: bool) -> dict[str, Any]:
        now = self._clock()
        grants = self._grants.active_grants(identity.principal.key, now)
        roles = queries.what_can(policy, identity, grants=grants, now=now, show_rules=show_rules)
        return {"identity": identity.subject or None, "groups": sorted(identity.groups), "source": source,
                "admin": policy.is_admin(identity), "auditor": policy.is_auditor(identity), "roles": roles}

    def _allow(self, policy: AccessPolicy, caller: Identity, context: CallContext, what: str,
               **fields: Any) -> None:
        if policy.is_admin(caller) or policy.is_auditor(caller):
            self._audit.record(action="access-query", outcome="allowed", context=context, identity=caller,
                               reason=what, **fields)
            return
        reason = (f"only {oversight(policy, caller)} may {what}; "
                  "GET /v1/access with no parameters answers what you can use")
        self._audit.record(action="access-query", outcome="denied", context=context, identity=caller,
                           reason=reason, **fields)
        raise Forbidden(reason)
