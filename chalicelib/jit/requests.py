"""Just-in-time access: requests, approvals and time-bound grants.

A role with an ``approval`` block is usable only under an approved,
unexpired grant. The checks here give people clear answers; the store's
conditional writes enforce the same rules again (pending only, before the
timeout, approver is not the requester), so a race or a bug cannot get round
them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from chalicelib.access.policy import AccessPolicy, Role, decide
from chalicelib.audit import AuditLog, CallContext
from chalicelib.aws.store import APPROVED, PENDING, AccessRequest, AccessStore
from chalicelib.exceptions import BadRequest, Conflict, Forbidden, NotFound
from chalicelib.identity.tokens import Identity


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
                 clock: Callable[[], datetime], notifier: Notifier | None = None) -> None:
        self._policy = policy
        self._store = store
        self._audit = audit
        self._clock = clock
        self.notifier: Notifier = notifier or SilentNotifier()

    def create(self, identity: Identity, role_name: str, *, duration_seconds: int, reason: str,
               context: CallContext, requester_slack: str | None = None) -> AccessRequest:
        role = self._policy().role(role_name)
        if role.approval is None:
            raise BadRequest(f"role {role.name} needs no approval; ask for credentials directly")
        decision = decide(role, identity, now=self._clock())
        if decision.access == "denied":
            self._record("request", "denied", context, identity, role, decision.reason)
            raise Forbidden(f"you may not request role {role.name}: {decision.reason}")
        if duration_seconds > role.approval.max_grant_seconds:
            raise BadRequest(f"role {role.name} grants at most {role.approval.max_grant_seconds} seconds")
        request = self._store.create(role=role.name, requester=identity.subject, duration_seconds=duration_seconds,
                                     reason=reason, now=self._clock(),
                                     pending_seconds=role.approval.pending_timeout_seconds,
                                     requester_slack=requester_slack)
        self._record("request", "created", context, identity, role, reason, request_ref=request.id)
        self.notifier.request_created(request.id)
        return request

    def get(self, identity: Identity, request_id: str) -> tuple[AccessRequest, list[dict[str, Any]]]:
        request = self._visible(identity, request_id)
        history = [{"at": e.at.isoformat(), "who": e.who, "from": e.from_status, "to": e.to_status,
                    "note": e.note} for e in self._store.history(request_id)]
        return request, history

    def mine_and_approvable(self, identity: Identity) -> list[AccessRequest]:
        policy = self._policy()
        own = self._store.by_requester(identity.subject)
        approvable = [r for r in self._store.pending()
                      if r.requester != identity.subject and self._is_approver(policy, r.role, identity)]
        seen: set[str] = set()
        result = []
        for request in own + approvable:
            if request.id not in seen:
                seen.add(request.id)
                result.append(request)
        return result

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
        self._store.approve(request, approver=identity.subject, now=now, grant_until=grant_until)
        self._record("approve", "approved", context, identity, role, f"grant until {grant_until.isoformat()}",
                     request_ref=request.id, requester=request.requester)
        self.notifier.request_decided(request.id)
        return self._store.get(request.id)

    def deny(self, identity: Identity, request_id: str, *, note: str | None, context: CallContext) -> AccessRequest:
        request, role = self._decidable(identity, request_id, context, "deny")
        self._store.deny(request, approver=identity.subject, now=self._clock(), note=note)
        self._record("deny", "denied", context, identity, role, note or "", request_ref=request.id,
                     requester=request.requester)
        self.notifier.request_decided(request.id)
        return self._store.get(request.id)

    def cancel(self, identity: Identity, request_id: str, *, context: CallContext) -> AccessRequest:
        policy = self._policy()
        request = self._visible(identity, request_id, policy)
        if request.requester != identity.subject:
            raise Forbidden("only the requester can cancel a request")
        self._require_status(request, PENDING)
        self._store.cancel(request, who=identity.subject, now=self._clock())
        self._record_change("cancel", "cancelled", context, identity, request, "", policy)
        self.notifier.request_decided(request.id)
        return self._store.get(request.id)

    def revoke(self, identity: Identity, request_id: str, *, note: str | None, context: CallContext) -> AccessRequest:
        policy = self._policy()
        request = self._visible(identity, request_id, policy)
        if not self._is_approver(policy, request.role, identity):
            raise Forbidden(f"only an approver of role {request.role} can revoke its grants")
        self._require_status(request, APPROVED)
        self._store.revoke(request, who=identity.subject, now=self._clock(), note=note)
        self._record_change("revoke", "revoked", context, identity, request, note or "", policy)
        self.notifier.request_decided(request.id)
        return self._store.get(request.id)

    # -- helpers

    def _decidable(self, identity: Identity, request_id: str, context: CallContext,
                   action: str) -> tuple[AccessRequest, Role]:
        policy = self._policy()
        request = self._visible(identity, request_id, policy)
        role = policy.role(request.role)
        if request.requester == identity.subject:
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
        if request.requester != identity.subject and not self._is_approver(policy, request.role, identity):
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
