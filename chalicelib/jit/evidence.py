"""Evidence for one access request: the request, who decided it and why, every
session issued under its grant, and the CloudTrail queries that list what
those sessions did in AWS.

Who may read it: the requester, the role's approvers, and the policy's
admins and auditors. For anyone else the request does not exist (a 404, as
for ``GET /v1/requests/{id}``). Every read, allowed or not, is audited.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from chalicelib.access.policy import AccessPolicy
from chalicelib.audit import AuditLog, CallContext
from chalicelib.aws import store as store_module
from chalicelib.aws.store import APPROVED, AccessRequest, AccessStore, RequestEvent
from chalicelib.exceptions import NotFound
from chalicelib.identity.tokens import Identity
from chalicelib.jit.cloudtrail import QueryTargets, evidence_queries
from chalicelib.jit.desk import is_own
from chalicelib.jit.grants import IssuedSession
from chalicelib.stamping import session_name_for_key


class GrantEvidence:
    def __init__(self, *, policy: Callable[[], AccessPolicy], store: AccessStore, audit: AuditLog,
                 clock: Callable[[], datetime], targets: QueryTargets) -> None:
        self._policy = policy
        self._store = store
        self._audit = audit
        self._clock = clock
        self._targets = targets

    def of(self, identity: Identity, request_id: str, *, context: CallContext) -> dict[str, Any]:
        try:
            request = self._store.get(request_id)
            if not self._may_read(self._policy(), identity, request):
                raise NotFound(f"no access request {request_id!r}")
        except NotFound as exc:
            self._audit.record(action="evidence", outcome="denied", context=context, identity=identity,
                               reason=str(exc), request_ref=request_id)
            raise
        history = self._store.history(request_id)
        sessions = self._store.sessions(request_id)
        self._audit.record(action="evidence", outcome="allowed", context=context, identity=identity,
                           role=request.role, request_ref=request_id, requester=request.requester)
        return {
            "request": request.to_dict(self._clock()),
            "history": [{"at": e.at.isoformat(), "who": e.who, "from": e.from_status, "to": e.to_status,
                         "note": e.note} for e in history],
            "sessions": [s.to_dict() for s in sessions],
            "sessions_limit": store_module.MAX_SESSIONS_PER_GRANT,
            "queries": self._queries(request, history, sessions),
        }

    @staticmethod
    def _may_read(policy: AccessPolicy, identity: Identity, request: AccessRequest) -> bool:
        # The requester's own principal or iss + sub: a person's linked account at another issuer only
        # ever refuses (desk.py), it reads nothing of theirs.
        if is_own(request, identity) or policy.is_admin(identity) or policy.is_auditor(identity):
            return True
        role = policy.roles.get(request.role)
        return bool(role and role.approval and role.approval.is_approver(identity))

    def _queries(self, request: AccessRequest, history: list[RequestEvent],
                 sessions: list[IssuedSession]) -> dict[str, Any] | None:
        approved = [event.at for event in history if event.to_status == APPROVED]
        if not approved or request.grant_until is None:
            return None  # never approved: no grant, no session
        # Sessions end by the grant's end, however early it was revoked.
        return evidence_queries(sessions, session_name=session_name_for_key(request.requester),
                                window_start=approved[0], window_end=request.grant_until, targets=self._targets)
