"""Just-in-time access: requests, approvals and time-bound grants.

A role with an ``approval`` block is usable only under an approved,
unexpired grant. The checks here give people clear answers; the store's
conditional writes enforce the same rules again (pending only, before the
timeout, approver is not the requester), so a race or a bug cannot get round
them.

Requests and grants belong to a principal (``identity.principal.key``).
"Is the approver the requester?" is asked of the principal, of the token's
``iss`` + ``sub`` *and* of the person of the default issuer behind a token of
an issuer that declares ``approval_identity_claim``, so neither another form
of the same email, nor another claim of the same IdP account, nor the same
person's account at a second IdP can approve its own request.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from chalicelib.access.policy import MAX_GRANT_SECONDS, AccessPolicy, Role, decide
from chalicelib.audit import AuditLog, CallContext
from chalicelib.aws.store import APPROVED, PENDING, AccessRequest, AccessStore, PageKey, page_key
from chalicelib.exceptions import BadRequest, Conflict, Forbidden, NotFound, SlotTaken, Throttled
from chalicelib.identity.tokens import Identity
from chalicelib.validation import checked_request_id

DEFAULT_MAX_OPEN = 5
PAGE_LIMIT = 50
MAX_PAGE_LIMIT = 100
READ_BATCH = 100
MAX_READS_PER_PAGE = 5
PENDING_PHASE, OWN_PHASE = "p", "o"
_TOKEN_KEYS = {"p", "i", "a"}


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: a phase (approvable, then own) and a position in it."""

    phase: str
    key: PageKey | None = None


def encode_cursor(cursor: Cursor) -> str:
    data: dict[str, str] = {"p": cursor.phase}
    if cursor.key is not None:
        data.update(i=cursor.key.request_id, a=cursor.key.created_at)
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> Cursor:
    """A ``next_token`` back into a cursor; anything we did not make is a 400.

    The token carries only a position; every query is still scoped to the
    caller, so an edited token can skip or repeat the caller's own items,
    never show anyone else's.
    """
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(data, dict) or not set(data) <= _TOKEN_KEYS or data.get("p") not in (PENDING_PHASE,
                                                                                                 OWN_PHASE):
            raise ValueError
        key = None
        if "i" in data or "a" in data:
            key = PageKey(checked_request_id(data["i"]), data["a"])
            if datetime.fromisoformat(key.created_at).utcoffset() is None:
                raise ValueError
        return Cursor(data["p"], key)
    except (ValueError, TypeError, KeyError, NotFound):
        raise BadRequest("next_token is not one this broker gave out; list again without it") from None


class Notifier(Protocol):
    def request_created(self, request_id: str) -> None: ...

    def request_decided(self, request_id: str) -> None: ...


class SilentNotifier:
    def request_created(self, request_id: str) -> None:
        pass

    def request_decided(self, request_id: str) -> None:
        pass


class AccessRequests:
    def __init__(self, *, policy: Callable[[], AccessPolicy], store: AccessStore, audit: AuditLog,
                 clock: Callable[[], datetime], notifier: Notifier | None = None,
                 max_open: int = DEFAULT_MAX_OPEN) -> None:
        self._max_open = max_open
        self._policy = policy
        self._store = store
        self._audit = audit
        self._clock = clock
        self.notifier: Notifier = notifier or SilentNotifier()

    def create(self, identity: Identity, role_name: str, *, duration_seconds: int | None, reason: str,
               context: CallContext, requester_slack: str | None = None) -> AccessRequest:
        """File a request; without ``duration_seconds``, for the role's ``max_grant_seconds``.

        The longest grant the policy allows is the default because the policy
        author chose it for this role, the approver sees it before deciding,
        and a grant ends early with ``revoke``.
        """
        role = self._policy().role_for(role_name, identity)
        decision = decide(role, identity, now=self._clock())
        if decision.access == "denied":
            self._record("request", "denied", context, identity, role, decision.reason)
            raise Forbidden(f"you may not request role {role.name}: {decision.reason}")
        if role.approval is None:
            raise BadRequest(f"role {role.name} needs no approval; ask for credentials directly")
        if duration_seconds is None:
            duration_seconds = role.approval.max_grant_seconds
        if duration_seconds > role.approval.max_grant_seconds:
            raise BadRequest(f"role {role.name} grants at most {role.approval.max_grant_seconds} seconds")
        request = self._create_within_cap(identity, role, context, duration_seconds=duration_seconds, reason=reason,
                                          pending_seconds=role.approval.pending_timeout_seconds,
                                          requester_slack=requester_slack)
        self._record("request", "created", context, identity, role, reason, request_ref=request.id)
        self.notifier.request_created(request.id)
        return request

    def _create_within_cap(self, identity: Identity, role: Role, context: CallContext, **fields: Any) -> AccessRequest:
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
                                          requester_sub=identity.iss_sub, requester_person=_linked_key(identity),
                                          **fields)
            except SlotTaken:
                continue  # a racing create took it: look again
        raise Throttled("the request store is busy with your other requests; retry in a moment")

    def get(self, identity: Identity, request_id: str) -> tuple[AccessRequest, list[dict[str, Any]]]:
        request = self._visible(identity, request_id)
        history = [{"at": e.at.isoformat(), "who": e.who, "from": e.from_status, "to": e.to_status,
                    "note": e.note} for e in self._store.history(request_id)]
        return request, history

    def page(self, identity: Identity, *, limit: int = PAGE_LIMIT,
             next_token: str | None = None) -> tuple[list[AccessRequest], str | None]:
        """The caller's page of requests and the token for the next (None: that was the last).

        First the pending requests the caller may decide, oldest first (they
        wait for someone), then the caller's own, newest first. Each page is
        bounded work whatever the table holds: at most a few reads of the
        pending index, so a page may come back short, with a token to go on.
        """
        policy = self._policy()
        cursor = decode_cursor(next_token) if next_token else Cursor(PENDING_PHASE)
        found: list[AccessRequest] = []
        if cursor.phase == PENDING_PHASE:
            if any(role.approval and role.approval.is_approver(identity) for role in policy.roles.values()):
                found, after = self._approvable(policy, identity, cursor.key, limit)
                if after is not None:
                    return found, encode_cursor(after)
            cursor = Cursor(OWN_PHASE)
        own, after = self._own(identity, cursor.key, limit - len(found))
        return found + own, encode_cursor(after) if after else None

    def _approvable(self, policy: AccessPolicy, identity: Identity, key: PageKey | None,
                    want: int) -> tuple[list[AccessRequest], Cursor | None]:
        now = self._clock()
        oldest = now - timedelta(seconds=MAX_GRANT_SECONDS)  # the longest pending timeout a policy may set
        found: list[AccessRequest] = []
        for _ in range(MAX_READS_PER_PAGE):
            batch, stopped = self._store.pending_page(after=key, limit=READ_BATCH, now=now, created_after=oldest)
            for request in batch:
                if not _is_own(request, identity) and self._is_approver(policy, request.role, identity):
                    if len(found) == want:
                        return found, Cursor(PENDING_PHASE, key)
                    found.append(request)
                key = page_key(request)
            if stopped is None:
                return found, None
            key = stopped
        return found, Cursor(PENDING_PHASE, key)

    def _own(self, identity: Identity, key: PageKey | None, want: int) -> tuple[list[AccessRequest], Cursor | None]:
        batch, stopped = self._store.requester_page(identity.principal.key, after=key, limit=want + 1)
        if len(batch) > want:
            return batch[:want], Cursor(OWN_PHASE, page_key(batch[want - 1]) if want else key)
        return batch, Cursor(OWN_PHASE, stopped) if stopped else None

    def approve(self, identity: Identity, request_id: str, *, context: CallContext) -> AccessRequest:
        request, role = self._decidable(identity, request_id, context, "approve")
        assert role.approval is not None
        if role.require_mfa:
            if context.channel == "slack":
                raise Forbidden(f"role {role.name} requires MFA, which Slack cannot prove: approve with "
                                f"`rolebroker approve {request.id}` or the API after signing in with MFA")
            if not identity.has_mfa:
                raise Forbidden(f"approving role {role.name} requires MFA: sign in with MFA and try again")
        now = self._clock()
        seconds = min(request.duration_seconds, role.approval.max_grant_seconds)
        grant_until = now + timedelta(seconds=seconds)
        self._store.approve(request, approver=identity.principal.key, approver_sub=identity.iss_sub, now=now,
                            grant_until=grant_until, approver_person=_person_key(identity))
        self._record("approve", "approved", context, identity, role, f"grant until {grant_until.isoformat()}",
                     request_ref=request.id, requester=request.requester)
        self.notifier.request_decided(request.id)
        return self._store.get(request.id)

    def deny(self, identity: Identity, request_id: str, *, note: str | None, context: CallContext) -> AccessRequest:
        request, role = self._decidable(identity, request_id, context, "deny")
        self._store.deny(request, approver=identity.principal.key, approver_sub=identity.iss_sub,
                         now=self._clock(), note=note, approver_person=_person_key(identity))
        self._record("deny", "denied", context, identity, role, note or "", request_ref=request.id,
                     requester=request.requester)
        self.notifier.request_decided(request.id)
        return self._store.get(request.id)

    def cancel(self, identity: Identity, request_id: str, *, context: CallContext) -> AccessRequest:
        policy = self._policy()
        request = self._visible(identity, request_id, policy)
        if request.requester != identity.principal.key:
            raise Forbidden("only the requester can cancel a request")
        self._require_status(request, PENDING)
        self._store.cancel(request, who=identity.principal.key, now=self._clock())
        self._record_change("cancel", "cancelled", context, identity, request, "", policy)
        self.notifier.request_decided(request.id)
        return self._store.get(request.id)

    def revoke(self, identity: Identity, request_id: str, *, note: str | None, context: CallContext) -> AccessRequest:
        policy = self._policy()
        request = self._visible(identity, request_id, policy)
        if not self._is_approver(policy, request.role, identity):
            raise Forbidden(f"only an approver of role {request.role} can revoke its grants")
        self._require_status(request, APPROVED)
        self._store.revoke(request, who=identity.principal.key, now=self._clock(), note=note)
        self._record_change("revoke", "revoked", context, identity, request, note or "", policy)
        self.notifier.request_decided(request.id)
        return self._store.get(request.id)

    # -- helpers

    def _decidable(self, identity: Identity, request_id: str, context: CallContext,
                   action: str) -> tuple[AccessRequest, Role]:
        policy = self._policy()
        request = self._visible(identity, request_id, policy)
        role = policy.role(request.role)
        if _is_own(request, identity):
            self._record(action, "denied", context, identity, role, "self-approval", request_ref=request.id)
            raise Forbidden("you cannot approve or deny your own request; ask an approver")
        if role.approval is None or not role.approval.is_approver(identity):
            rules = "; or ".join(r.describe() for r in role.approval.approvers) if role.approval else "none"
            self._record(action, "denied", context, identity, role, "not an approver", request_ref=request.id)
            raise Forbidden(f"you are not an approver for role {role.name} (approvers need {rules})")
        self._require_status(request, PENDING)
        return request, role

    def _require_status(self, request: AccessRequest, expected: str) -> None:
        status = request.status_at(self._clock())
        if status != expected:
            raise Conflict(f"request {request.id} is {status}, not {expected}")

    def _visible(self, identity: Identity, request_id: str, policy: AccessPolicy | None = None) -> AccessRequest:
        request = self._store.get(request_id)
        policy = policy or self._policy()
        if request.requester != identity.principal.key and not self._is_approver(policy, request.role, identity):
            # Someone else's request looks exactly like a missing one.
            raise NotFound(f"no access request {request_id!r}")
        return request

    @staticmethod
    def _is_approver(policy: AccessPolicy, role_name: str, identity: Identity) -> bool:
        role = policy.roles.get(role_name)
        return bool(role and role.approval and role.approval.is_approver(identity))

    def _record_change(self, action: str, outcome: str, context: CallContext, identity: Identity,
                       request: AccessRequest, reason: str, policy: AccessPolicy) -> None:
        # The role may have left the policy since the request was made; the
        # line still names it, without an account.
        role = policy.roles.get(request.role)
        self._audit.record(action=action, outcome=outcome, context=context, identity=identity, reason=reason,
                           role=request.role, account=role.account.id if role else None, request_ref=request.id,
                           requester=request.requester)

    def _record(self, action: str, outcome: str, context: CallContext, identity: Identity, role: Role,
                reason: str, **fields: Any) -> None:
        self._audit.record(action=action, outcome=outcome, context=context, identity=identity, reason=reason,
                           role=role.name, account=role.account.id, **fields)


def _is_own(request: AccessRequest, identity: Identity) -> bool:
    return identity.is_same_person(request.requester, request.requester_iss, request.requester_sub,
                                   request.requester_person)


def _person_key(identity: Identity) -> str | None:
    return identity.person.key if identity.person else None


def _linked_key(identity: Identity) -> str | None:
    return identity.linked.key if identity.linked else None
