"""What every just-in-time use case shares: its collaborators, who may see or
decide a request, the open-request cap, notifications and audit lines.

Requests and grants belong to a principal (``identity.principal.key``).
Two questions are asked about a caller and a request, on purpose apart:

* ``is_own``: may the caller act *as* the requester (see it as theirs,
  extend it)? Only the same principal or the same ``iss`` + ``sub``.
* ``is_self``: must the caller be kept from deciding it (approve, deny,
  review)? Also when their *person* is the requester's: the default-issuer
  person an issuer's ``approval_identity_claim`` names
  (``Identity.person``, ``AccessRequest.requester_person``). That link only
  ever refuses: an account at a second IdP gets no right over the person's
  requests from it, but cannot approve them either, nor approve twice.

The store's conditions enforce ``is_self`` and "not twice" again.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from chalicelib.access.policy import AccessPolicy, Approval, Role
from chalicelib.audit import AuditLog, CallContext
from chalicelib.aws.items import sub_key
from chalicelib.aws.store import AccessStore, NewRequest
from chalicelib.exceptions import BadRequest, Conflict, NotFound, SlotTaken, Throttled
from chalicelib.identity.tokens import Identity
from chalicelib.jit.model import AccessRequest

DEFAULT_MAX_OPEN = 5


class Notifier(Protocol):
    def request_created(self, request_id: str) -> None:
        """A request was filed: ask its approvers, tell its watchers."""

    def request_changed(self, request_id: str) -> None:
        """A request moved without being decided (an approval counted, a grant extended): update every copy."""

    def request_decided(self, request_id: str) -> None:
        """A request was decided, cancelled, revoked, expired or reviewed: update every copy, tell the requester."""

    def break_glass_opened(self, request_id: str) -> None:
        """Someone broke glass: tell approvers and the security channel loudly, at once."""


class SilentNotifier:
    def request_created(self, request_id: str) -> None:
        pass

    def request_changed(self, request_id: str) -> None:
        pass

    def request_decided(self, request_id: str) -> None:
        pass

    def break_glass_opened(self, request_id: str) -> None:
        pass


def is_own(request: AccessRequest, identity: Identity) -> bool:
    """The caller is the requester: the same principal, or the same ``iss`` + ``sub``."""
    if request.requester == identity.principal.key:
        return True
    return identity.iss_sub is not None and (request.requester_iss, request.requester_sub) == identity.iss_sub


def is_self(request: AccessRequest, identity: Identity) -> bool:
    """The caller may not decide or review the request: it is theirs, or their person's."""
    return identity.is_same_person(request.requester, request.requester_iss, request.requester_sub,
                                   request.requester_person)


def already_approved(request: AccessRequest, identity: Identity) -> bool:
    """The caller approved the request before: by principal, by ``iss`` + ``sub`` or as the same person."""
    if identity.principal.key in request.approvers:
        return True
    if identity.iss_sub and sub_key(*identity.iss_sub) in request.approver_subs:
        return True
    person = person_key(identity)
    return person is not None and (person in request.approver_persons or person in request.approvers)


def person_key(identity: Identity) -> str | None:
    """The caller's default-issuer person, where known (their own principal for the default issuer)."""
    return identity.person.key if identity.person else None


def linked_key(identity: Identity) -> str | None:
    """For a caller of another issuer linked to a person: that person (what a request records)."""
    return identity.linked.key if identity.linked else None


class Desk:
    """Collaborators and checks shared by requests, break-glass and extensions."""

    def __init__(self, *, policy: Callable[[], AccessPolicy], store: AccessStore, audit: AuditLog,
                 clock: Callable[[], datetime], notifier: Notifier | None = None,
                 max_open: int = DEFAULT_MAX_OPEN) -> None:
        self._max_open = max_open
        self._policy = policy
        self._store = store
        self._audit = audit
        self._clock = clock
        self.notifier: Notifier = notifier or SilentNotifier()

    # -- who may see and decide

    def _visible(self, identity: Identity, request_id: str, policy: AccessPolicy | None = None) -> AccessRequest:
        request = self._store.get(request_id)
        policy = policy or self._policy()
        if not (is_own(request, identity) or self._sees(policy, request, identity)):
            # Someone else's request looks exactly like a missing one.
            raise NotFound(f"no access request {request_id!r}")
        return request

    @staticmethod
    def _sees(policy: AccessPolicy, request: AccessRequest, identity: Identity) -> bool:
        """Approvers of any of the request's roles see it, and so do their watchers."""
        for name in request.roles:
            role = policy.roles.get(name)
            if role and ((role.approval and role.approval.is_approver(identity)) or role.is_watcher(identity)):
                return True
        return False

    @staticmethod
    def _approves_all(policy: AccessPolicy, request: AccessRequest, identity: Identity) -> bool:
        """An approver (in any stage) of every role of the request: may deny, revoke and review it."""
        roles = [policy.roles.get(name) for name in request.roles]
        return bool(roles) and all(r and r.approval and r.approval.is_approver(identity) for r in roles)

    def _require_status(self, request: AccessRequest, expected: str) -> None:
        status = request.status_at(self._clock())
        if status != expected:
            raise Conflict(f"request {request.id} is {status}, not {expected}")

    @staticmethod
    def _common_approval(roles: list[Role]) -> Approval:
        """The one approval block a set of roles shares (a request has one decision)."""
        first = roles[0]
        if first.approval is None:
            raise BadRequest(f"role {first.name} needs no approval; ask for credentials directly")
        for role in roles[1:]:
            if role.approval is None:
                raise BadRequest(f"role {role.name} needs no approval; ask for it separately")
            if role.approval != first.approval:
                raise BadRequest(f"roles {first.name} and {role.name} have different approval blocks; one request "
                                 "has one decision, so request them separately")
        return first.approval

    # -- filing within the open-request cap

    def _create_within_cap(self, identity: Identity, role: Role, context: CallContext, *, spec: NewRequest,
                           **fields: Any) -> AccessRequest:
        """Create the request in a free open-request slot; the store's condition settles races.

        Each lost race means another request took a slot (or raced us for
        it), so ``max_open + 1`` attempts always end in a created request or
        the clear cap message, not in giving up while a slot is free.
        """
        for _ in range(self._max_open + 1):
            now = self._clock()
            held = self._store.open_requests(identity.principal.key, now)
            if len(held) >= self._max_open:
                self._record("request", "denied", context, identity, role, "too many open requests")
                shown = ", ".join(sorted(held.values()))
                raise Throttled(
                    f"you have {len(held)} open access requests ({shown}); one person may have at most "
                    f"{self._max_open} at once. Cancel one you no longer need (POST /v1/requests/ID/cancel or "
                    "/aws cancel ID in Slack) or wait for approvers to decide")
            # A random free slot, so racing creates mostly pick different ones.
            slot = random.choice(sorted(set(range(self._max_open)) - held.keys()))  # noqa: S311 - not a secret
            try:
                return self._store.create(role=role.name, requester=identity.principal.key, now=now, slot=slot,
                                          requester_sub=identity.iss_sub, requester_person=linked_key(identity),
                                          spec=spec, **fields)
            except SlotTaken:
                continue  # a racing create took it: look again
        raise Throttled("the request store is busy with your other requests; retry in a moment")

    # -- audit

    def _record_change(self, action: str, outcome: str, context: CallContext, identity: Identity,
                       request: AccessRequest, reason: str, policy: AccessPolicy, **fields: Any) -> None:
        # The role may have left the policy since the request was made; the
        # line still names it, without an account.
        role = policy.roles.get(request.role)
        self._audit.record(action=action, outcome=outcome, context=context, identity=identity, reason=reason,
                           role=request.role, account=role.account.id if role else None, request_ref=request.id,
                           requester=request.requester, roles=list(request.roles) if len(request.roles) > 1 else None,
                           kind=request.kind, **fields)

    def _record(self, action: str, outcome: str, context: CallContext, identity: Identity, role: Role,
                reason: str, **fields: Any) -> None:
        self._audit.record(action=action, outcome=outcome, context=context, identity=identity, reason=reason,
                           role=role.name, account=role.account.id, **fields)
