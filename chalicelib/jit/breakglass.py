"""Break-glass: access now, accounted for afterwards.

A role's ``break_glass`` block names who may (among those its ``allow``
rules admit) and for how long. Breaking glass needs a reason and a ticket,
grants at once with no approver, and is announced loudly: the approvers'
channel, the security channel and the role's notify channels, with a
review button. Every session under it carries ``rolebroker:breakglass=true``.

An approver of the role (never the requester: not their principal, not
their ``iss`` + ``sub``, not their person at a linked issuer) must then
review it. Until then the person holds their break-glass lock in DynamoDB
(for roles with ``block_until_reviewed``, the default), and the transaction
that opens a break-glass takes that lock with ``attribute_not_exists``: two
break-glasses at once cannot both get through, and nobody breaks glass again
before the last one is looked at, not even from their account at a linked
issuer (the lock is the person's).
"""

from __future__ import annotations

from chalicelib.access.policy import decide, describe_rules
from chalicelib.audit import CallContext
from chalicelib.exceptions import BadRequest, BreakGlassLocked, Conflict, Forbidden
from chalicelib.identity.tokens import Identity
from chalicelib.jit.desk import Desk, is_self, linked_key, person_key
from chalicelib.jit.model import BREAK_GLASS, REVIEW_DONE, AccessRequest

LOCK_ATTEMPTS = 3


class BreakGlassDesk(Desk):
    def open(self, identity: Identity, role_name: str, *, reason: str, ticket: str | None, context: CallContext,
             duration_seconds: int | None = None, requester_slack: str | None = None) -> AccessRequest:
        # A role with no rule of the caller's issuer is unknown to them; one that denies them says
        # why (their issuer's rules only) before anything about its break-glass.
        role = self._policy().role_for(role_name, identity)
        decision = decide(role, identity, now=self._clock())
        if decision.access == "denied":
            self._record("break-glass", "denied", context, identity, role, decision.reason)
            raise Forbidden(f"you may not break glass into role {role.name}: {decision.reason}")
        glass = role.break_glass
        if glass is None:
            raise Forbidden(f"role {role.name} has no break-glass; file a request instead "
                            f"(rolebroker request --role {role.name} --reason ...)")
        if not glass.may(identity):
            self._record("break-glass", "denied", context, identity, role, "not allowed to break glass")
            raise Forbidden(f"you may not break glass into role {role.name}: it needs "
                            f"{describe_rules(glass.allow, identity)}, besides the role's own allow rules")
        if role.require_mfa and (context.channel == "slack" or not identity.has_mfa):
            where = "Slack cannot prove MFA; use `rolebroker break-glass`" if context.channel == "slack" else \
                "sign in with MFA and try again"
            raise Forbidden(f"role {role.name} requires MFA: {where}")
        problem = glass.ticket.problem(ticket, f"break-glass into role {role.name}")
        if problem or ticket is None:
            raise BadRequest(problem or f"break-glass into role {role.name} needs a ticket")
        seconds = duration_seconds or glass.max_duration_seconds
        if seconds > glass.max_duration_seconds:
            raise BadRequest(f"break-glass into role {role.name} lasts at most {glass.max_duration_seconds} seconds")
        for _ in range(LOCK_ATTEMPTS):
            try:
                request = self._store.break_glass(role=role.name, requester=identity.principal.key,
                                                  duration_seconds=seconds, reason=reason, ticket=ticket,
                                                  now=self._clock(), requester_slack=requester_slack,
                                                  requester_sub=identity.iss_sub, lock=glass.block_until_reviewed,
                                                  requester_person=linked_key(identity))
                break
            except BreakGlassLocked:
                held = self._store.break_glass_lock(person_key(identity) or identity.principal.key)
                if held is None:
                    continue  # a racing break-glass held it for a moment and failed: try again
                self._record("break-glass", "denied", context, identity, role, f"review of {held} outstanding",
                             request_ref=held)
                raise Conflict(f"your break-glass {held} still waits for its review; an approver of its role "
                               f"must review it (POST /v1/requests/{held}/review, or /aws review {held}) before "
                               "you can break glass again") from None
        else:
            raise Conflict("your break-glass lock is busy; try again in a moment")
        self._record("break-glass", "approved", context, identity, role, reason, request_ref=request.id,
                     ticket=ticket, grant_until=request.grant_until.isoformat() if request.grant_until else None)
        self.notifier.break_glass_opened(request.id)
        return request

    def review(self, identity: Identity, request_id: str, *, note: str | None, context: CallContext) -> AccessRequest:
        policy = self._policy()
        request = self._visible(identity, request_id, policy)
        if request.kind != BREAK_GLASS:
            raise Conflict(f"request {request.id} is not a break-glass; only break-glass accesses are reviewed")
        if is_self(request, identity):
            self._record_change("review", "denied", context, identity, request, "self-review", policy)
            raise Forbidden("you cannot review your own break-glass; another approver of the role must")
        if not self._approves_all(policy, request, identity):
            raise Forbidden(f"only an approver of role {request.role} can review its break-glass accesses")
        if request.review is not None and request.review.status == REVIEW_DONE:
            raise Conflict(f"break-glass {request.id} was already reviewed by {request.review.by}")
        try:
            self._store.review(request, who=identity.principal.key, now=self._clock(), note=note,
                               reviewer_sub=identity.iss_sub, reviewer_person=person_key(identity))
        except Conflict:
            raise Conflict(f"break-glass {request.id} was reviewed meanwhile, or you may not review it "
                           "(never your own)") from None
        self._record_change("review", "reviewed", context, identity, request, note or "", policy)
        self.notifier.request_decided(request.id)
        return self._store.get(request.id)
