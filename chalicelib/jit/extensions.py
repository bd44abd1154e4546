"""Extensions: more time on a grant in force.

The requester asks for ``seconds`` more on an approved grant. Within the
role's ``approval.extend.auto_approve_seconds`` (a budget over the grant's
whole life, kept by the database, so many small extensions cannot add up
to more) it is extended at once; beyond it, an ``extension`` request goes to
the role's approvers like any request, and the approval that completes it
moves the parent's grants. Either way the grant as a whole (from its start
to its new end) stays within ``approval.extend.max_total_seconds``, and the
write is conditional on the grant being the one the limit was checked
against: still approved, unexpired and not extended meanwhile.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from chalicelib.access.policy import Role, decide
from chalicelib.audit import CallContext
from chalicelib.aws.store import NewRequest
from chalicelib.exceptions import BadRequest, Conflict, Forbidden
from chalicelib.identity.tokens import Identity
from chalicelib.jit.desk import Desk, is_own
from chalicelib.jit.model import APPROVED, BREAK_GLASS, EXTENSION, AccessRequest


def new_until(parent: AccessRequest, role: Role, seconds: int, now: datetime) -> datetime:
    """The end of ``parent``'s grant after ``seconds`` more, if the role allows it."""
    status = parent.status_at(now)
    if status != APPROVED or parent.grant_until is None:
        raise Conflict(f"request {parent.id} is {status}: only a grant in force can be extended; "
                       f"request access again (rolebroker request --role {parent.role} --reason ...)")
    assert role.approval is not None
    start = parent.grant_from or parent.decided_at or parent.created_at
    total = int((parent.grant_until - start).total_seconds()) + seconds
    limit = role.approval.extension.max_total_seconds
    if total > limit:
        raise BadRequest(f"extending request {parent.id} by {seconds} s would make its grant {total} s long; "
                         f"role {role.name} allows at most {limit} s in all (approval.extend.max_total_seconds)")
    return parent.grant_until + timedelta(seconds=seconds)


class Extensions(Desk):
    def extend(self, identity: Identity, request_id: str, *, seconds: int, reason: str, context: CallContext,
               requester_slack: str | None = None) -> tuple[AccessRequest, bool]:
        """Extend the caller's grant: (the request now, True) when done at once, or
        (the new extension request, False) when it went to approvers."""
        policy = self._policy()
        parent = self._visible(identity, request_id, policy)
        if not is_own(parent, identity):
            raise Forbidden("only the requester can extend their grant")
        if parent.kind == BREAK_GLASS:
            raise BadRequest("a break-glass access cannot be extended; file a request for more time "
                             f"(rolebroker request --role {parent.role} --reason ...)")
        if parent.kind == EXTENSION:
            raise BadRequest(f"extend the original request {parent.parent}, not an extension of it")
        # The roles as the caller may learn of them today, each still allowing them: a role whose rules no
        # longer name the caller's issuer is unknown to them, one that no longer admits them is a 403.
        roles = [policy.role_for(name, identity) for name in parent.roles]
        for role in roles:
            decision = decide(role, identity, now=self._clock())
            if decision.access == "denied":
                self._record("extend", "denied", context, identity, role, decision.reason, request_ref=parent.id)
                raise Forbidden(f"you may not extend your grant of role {role.name}: {decision.reason}")
        approval = self._common_approval(roles)
        role = roles[0]
        now = self._clock()
        until = new_until(parent, role, seconds, now)
        budget = approval.extension.auto_approve_seconds
        if parent.auto_extended_seconds + seconds <= budget:
            return self._extend_now(identity, parent, role, seconds, until, reason, budget, context), True
        spec = NewRequest(roles=parent.roles, ticket=parent.ticket, scope=parent.scope, plan=approval.plan,
                          kind=EXTENSION, parent=parent.id)
        extension = self._create_within_cap(identity, role, context, spec=spec, duration_seconds=seconds,
                                            reason=reason, pending_seconds=approval.pending_timeout_seconds,
                                            requester_slack=requester_slack)
        self._record("extend", "created", context, identity, role, reason, request_ref=extension.id,
                     parent=parent.id, seconds=seconds)
        self.notifier.request_created(extension.id)
        return extension, False

    def _extend_now(self, identity: Identity, parent: AccessRequest, role: Role, seconds: int, until: datetime,
                    reason: str, budget: int, context: CallContext) -> AccessRequest:
        try:
            self._store.extend(parent, seconds=seconds, new_until=until, now=self._clock(),
                               who=identity.principal.key, reason=reason, auto_budget=budget)
        except Conflict:
            raise Conflict(f"the grant of request {parent.id} changed meanwhile (revoked, ended or extended); "
                           "look at it again") from None
        self._record("extend", "extended", context, identity, role, reason, request_ref=parent.id,
                     seconds=seconds, grant_until=until.isoformat(), automatic=True)
        self.notifier.request_changed(parent.id)
        return self._store.get(parent.id)
