"""Just-in-time access: requests, approvals and time-bound grants.

A role with an ``approval`` block is usable only under an approved,
unexpired grant. The checks here give people clear answers; the store's
conditional writes enforce the same rules again (pending only, before the
timeout, approvers are not the requester and not each other, each approval
takes the place in its stage it saw), so a race or a bug cannot get round
them.

An approval passes through the stages of the plan the request was filed
under (``approval.stages`` in the policy; one stage of one approver unless
the policy says otherwise). Only the approval that completes the last stage
writes grants: one per role of the request, all of them unless that
approver narrows the request to some (``roles``), never some by accident.
Two approvals at once both count: the loser of the race reads the request
again and takes the next place, or, if there is none left, gets a 409.

"Is the approver the requester, or someone who approved already?" is asked
of the principal, of the token's ``iss`` + ``sub`` *and* of the person of the
default issuer (``desk.py``), so one person's account at a second, linked
IdP neither approves their own request nor counts twice in an N-of-M.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

from chalicelib.access.policy import MAX_GRANT_SECONDS, AccessPolicy, Role, decide, describe_rules
from chalicelib.access.workflow import MAX_REQUIRED, MAX_STAGES, TicketRule
from chalicelib.audit import CallContext
from chalicelib.aws.store import ApprovalStep, NewRequest, PageKey, page_key
from chalicelib.exceptions import BadRequest, Conflict, Forbidden, NotFound
from chalicelib.identity.tokens import Identity
from chalicelib.jit.desk import DEFAULT_MAX_OPEN, Desk, already_approved, is_self, person_key
from chalicelib.jit.model import APPROVED, BREAK_GLASS, EXTENSION, KINDS, PENDING, AccessRequest
from chalicelib.validation import checked_request_id

__all__ = ["DEFAULT_MAX_OPEN", "MAX_PAGE_LIMIT", "PAGE_LIMIT", "AccessRequests", "Cursor", "decode_cursor",
           "encode_cursor"]

PAGE_LIMIT = 50
MAX_PAGE_LIMIT = 100
READ_BATCH = 100
MAX_READS_PER_PAGE = 5
MAX_SCHEDULE_SECONDS = 30 * 24 * 3600
PENDING_PHASE, OWN_PHASE = "p", "o"
REVIEW_PARTITION = "review"
_TOKEN_KEYS = {"p", "i", "a", "k"}
# Each lost race means another approval counted, and a plan has at most this many.
MAX_APPROVAL_ATTEMPTS = MAX_STAGES * MAX_REQUIRED + 2


class _LostRace(Exception):
    """A write found the request changed since it was read."""


@contextmanager
def _race() -> Iterator[None]:
    try:
        yield
    except Conflict as exc:
        raise _LostRace from exc


class Cursor:
    """Where the next page starts: a phase (waiting for someone, then own), a position in it,
    and the kind of request listed."""

    def __init__(self, phase: str, key: PageKey | None = None, kind: str | None = None) -> None:
        self.phase, self.key, self.kind = phase, key, kind


def encode_cursor(cursor: Cursor) -> str:
    data: dict[str, str] = {"p": cursor.phase}
    if cursor.key is not None:
        data.update(i=cursor.key.request_id, a=cursor.key.created_at)
    if cursor.kind is not None:
        data["k"] = cursor.kind
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str, kind: str | None = None) -> Cursor:
    """A ``next_token`` back into a cursor; anything we did not make, or made for another kind, is a 400.

    The token carries only a position; every query is still scoped to the
    caller, so an edited token can skip or repeat the caller's own items,
    never show anyone else's.
    """
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(data, dict) or not set(data) <= _TOKEN_KEYS or data.get("p") not in (PENDING_PHASE,
                                                                                                 OWN_PHASE):
            raise ValueError
        if data.get("k") != kind:
            raise ValueError
        key = None
        if "i" in data or "a" in data:
            key = PageKey(checked_request_id(data["i"]), data["a"])
            if datetime.fromisoformat(key.created_at).utcoffset() is None:
                raise ValueError
        return Cursor(data["p"], key, kind)
    except (ValueError, TypeError, KeyError, NotFound):
        raise BadRequest("next_token is not one this broker gave out (for this kind); list again without it") from None


class AccessRequests(Desk):
    def create(self, identity: Identity, roles: str | Sequence[str], *, duration_seconds: int | None, reason: str,
               context: CallContext, requester_slack: str | None = None, ticket: str | None = None,
               scope: str | None = None, start_at: datetime | None = None) -> AccessRequest:
        """File a request for one role, or for several that share an approval block (one decision).

        Without ``duration_seconds``, it is for the approval block's
        ``max_grant_seconds``: the policy author chose it for these roles, the
        approver sees it before deciding, and a grant ends early with ``revoke``.
        """
        names = (roles,) if isinstance(roles, str) else tuple(roles)
        if len(set(names)) != len(names):
            raise BadRequest("a role is named twice in 'roles'")
        policy = self._policy()
        # Every role as the caller may learn of it (a role with no rule of their issuer is unknown to them),
        # and each one allowed, before anything else about the roles is said.
        chosen = [policy.role_for(name, identity) for name in names]
        for role in chosen:
            decision = decide(role, identity, now=self._clock())
            if decision.access == "denied":
                self._record("request", "denied", context, identity, role, decision.reason)
                raise Forbidden(f"you may not request role {role.name}: {decision.reason}")
        approval = self._common_approval(chosen)
        first = chosen[0]
        if duration_seconds is None:
            duration_seconds = approval.max_grant_seconds
        if duration_seconds > approval.max_grant_seconds:
            raise BadRequest(f"role {first.name} grants at most {approval.max_grant_seconds} seconds")
        problem = (approval.ticket or TicketRule()).problem(ticket, f"role {first.name}")
        if problem:
            raise BadRequest(problem)
        for role in chosen:
            if scope is not None:
                role.scope(scope).name  # noqa: B018 - NotFound names the role's scopes
        self._check_start(start_at)
        spec = NewRequest(roles=names, ticket=ticket, scope=scope, start_at=start_at, plan=approval.plan)
        request = self._create_within_cap(identity, first, context, spec=spec, duration_seconds=duration_seconds,
                                          reason=reason, pending_seconds=approval.pending_timeout_seconds,
                                          requester_slack=requester_slack)
        self._record("request", "created", context, identity, first, reason, request_ref=request.id,
                     roles=list(names) if len(names) > 1 else None, ticket=ticket, scope=scope,
                     start_at=start_at.isoformat() if start_at else None)
        self.notifier.request_created(request.id)
        return request

    def _check_start(self, start_at: datetime | None) -> None:
        if start_at is None:
            return
        now = self._clock()
        if start_at <= now:
            raise BadRequest("start_at is in the past; leave it out to start when the request is approved")
        if start_at > now + timedelta(seconds=MAX_SCHEDULE_SECONDS):
            raise BadRequest(f"start_at may be at most {MAX_SCHEDULE_SECONDS // 86400} days ahead")

    def get(self, identity: Identity, request_id: str) -> tuple[AccessRequest, list[dict[str, object]]]:
        request = self._visible(identity, request_id)
        history: list[dict[str, object]] = [
            {"at": e.at.isoformat(), "who": e.who, "from": e.from_status, "to": e.to_status, "note": e.note}
            for e in self._store.history(request_id)]
        return request, history

    # -- listing

    def page(self, identity: Identity, *, limit: int = PAGE_LIMIT, next_token: str | None = None,
             kind: str | None = None) -> tuple[list[AccessRequest], str | None]:
        """The caller's page of requests and the token for the next (None: that was the last).

        First the requests waiting for someone that the caller may decide or
        watch, oldest first (with ``kind=break_glass``: break-glasses waiting
        for their review), then the caller's own, newest first. Each page is
        bounded work whatever the table holds: at most a few reads of the
        pending index, so a page may come back short, with a token to go on.
        """
        if kind is not None and kind not in KINDS:
            raise BadRequest(f"kind must be one of {', '.join(KINDS)}")
        policy = self._policy()
        cursor = decode_cursor(next_token, kind) if next_token else Cursor(PENDING_PHASE, kind=kind)
        found: list[AccessRequest] = []
        if cursor.phase == PENDING_PHASE:
            if self._waits_for_anyone(policy, identity, kind):
                found, after = self._waiting(policy, identity, cursor, limit)
                if after is not None:
                    return found, encode_cursor(after)
            cursor = Cursor(OWN_PHASE, kind=kind)
        own, after = self._own(identity, cursor, limit - len(found))
        return found + own, encode_cursor(after) if after else None

    @staticmethod
    def _waits_for_anyone(policy: AccessPolicy, identity: Identity, kind: str | None) -> bool:
        if kind == BREAK_GLASS and (policy.is_admin(identity) or policy.is_auditor(identity)):
            return True
        return any((role.approval and role.approval.is_approver(identity)) or role.is_watcher(identity)
                   for role in policy.roles.values())

    def _may_list(self, policy: AccessPolicy, request: AccessRequest, identity: Identity, kind: str | None) -> bool:
        if is_self(request, identity) or (kind is not None and request.kind != kind):
            return False
        if kind == BREAK_GLASS:
            return (self._approves_all(policy, request, identity) or policy.is_admin(identity)
                    or policy.is_auditor(identity))
        return self._sees(policy, request, identity)

    def _waiting(self, policy: AccessPolicy, identity: Identity, cursor: Cursor,
                 want: int) -> tuple[list[AccessRequest], Cursor | None]:
        now = self._clock()
        oldest = now - timedelta(seconds=MAX_GRANT_SECONDS)  # the longest pending timeout a policy may set
        partition = REVIEW_PARTITION if cursor.kind == BREAK_GLASS else PENDING
        found: list[AccessRequest] = []
        key = cursor.key
        for _ in range(MAX_READS_PER_PAGE):
            batch, stopped = self._store.pending_page(after=key, limit=READ_BATCH, now=now, created_after=oldest,
                                                      partition=partition)
            for request in batch:
                if self._may_list(policy, request, identity, cursor.kind):
                    if len(found) == want:
                        return found, Cursor(PENDING_PHASE, key, cursor.kind)
                    found.append(request)
                key = page_key(request)
            if stopped is None:
                return found, None
            key = stopped
        return found, Cursor(PENDING_PHASE, key, cursor.kind)

    def _own(self, identity: Identity, cursor: Cursor, want: int) -> tuple[list[AccessRequest], Cursor | None]:
        batch, stopped = self._store.requester_page(identity.principal.key, after=cursor.key, limit=want + 1,
                                                    kind=cursor.kind)
        if len(batch) > want:
            return batch[:want], Cursor(OWN_PHASE, page_key(batch[want - 1]) if want else cursor.key, cursor.kind)
        return batch, Cursor(OWN_PHASE, stopped, cursor.kind) if stopped else None

    # -- deciding

    def approve(self, identity: Identity, request_id: str, *, context: CallContext,
                roles: Sequence[str] | None = None) -> AccessRequest:
        """Count one approval; the one that completes the plan grants. A lost race is retried on
        the request as it now is (so concurrent approvals both count, and a surplus one is a 409)."""
        request_id = checked_request_id(request_id)
        narrowed = tuple(roles) if roles is not None else None
        for _ in range(MAX_APPROVAL_ATTEMPTS):
            request, role = self._decidable(identity, request_id, context, "approve")
            self._check_approver(identity, request, role, context)
            chosen = self._narrowing(request, narrowed)
            try:
                return self._approve_once(identity, request, role, chosen, context)
            except _LostRace:
                continue  # someone else moved the request meanwhile: judge it again as it is now
        raise Conflict(f"request {request_id} could not take your approval (it kept changing, or the database "
                       "refused it: approvers must differ from the requester and from each other); look at it again")

    def _approve_once(self, identity: Identity, request: AccessRequest, role: Role, roles: tuple[str, ...] | None,
                      context: CallContext) -> AccessRequest:
        assert role.approval is not None
        now = self._clock()
        stage_name, required = request.plan.stages[request.stage]
        count = request.votes_in_stage + 1
        last_stage = request.stage + 1 == len(request.plan.stages)
        if count < required or not last_stage:
            done = count >= required
            step = ApprovalStep(identity.principal.key, identity.iss_sub, now,
                                request.stage + 1 if done else request.stage, 0 if done else count, False, roles,
                                person_key(identity))
            note = f"approval {count} of {required} in stage {request.stage + 1} ({stage_name})"
            with _race():
                self._store.vote(request, step, note)
            self._record_change("approve", "counted", context, identity, request, note, self._policy())
            self.notifier.request_changed(request.id)
            return self._store.get(request.id)
        if request.kind == EXTENSION:
            return self._approve_extension(identity, request, role, context, now)
        grant_from = max(now, request.start_at) if request.start_at else now
        grant_until = grant_from + timedelta(seconds=min(request.duration_seconds, role.approval.max_grant_seconds))
        with _race():
            self._store.approve(request, approver=identity.principal.key, approver_sub=identity.iss_sub, now=now,
                                grant_from=grant_from, grant_until=grant_until, roles=roles,
                                approver_person=person_key(identity))
        self._record_change("approve", "approved", context, identity, request,
                            f"grant until {grant_until.isoformat()}", self._policy(),
                            granted=list(roles) if roles else None)
        self.notifier.request_decided(request.id)
        return self._store.get(request.id)

    def _approve_extension(self, identity: Identity, request: AccessRequest, role: Role, context: CallContext,
                           now: datetime) -> AccessRequest:
        from chalicelib.jit.extensions import new_until

        assert request.parent is not None
        parent = self._store.get(request.parent)
        until = new_until(parent, role, request.duration_seconds, now)
        with _race():
            self._store.extend_by_approval(request, parent, approver=identity.principal.key,
                                           approver_sub=identity.iss_sub, now=now, new_until=until,
                                           approver_person=person_key(identity))
        self._record_change("extend", "approved", context, identity, request,
                            f"grant of {parent.id} until {until.isoformat()}", self._policy(), parent=parent.id)
        self.notifier.request_decided(request.id)
        self.notifier.request_changed(parent.id)
        return self._store.get(request.id)

    def deny(self, identity: Identity, request_id: str, *, note: str | None, context: CallContext) -> AccessRequest:
        request, _ = self._decidable(identity, request_id, context, "deny")
        self._store.deny(request, approver=identity.principal.key, approver_sub=identity.iss_sub,
                         now=self._clock(), note=note, approver_person=person_key(identity))
        self._record_change("deny", "denied", context, identity, request, note or "", self._policy())
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
        if not self._approves_all(policy, request, identity):
            raise Forbidden(f"only an approver of role {request.role} can revoke its grants")
        self._require_status(request, APPROVED)
        self._store.revoke(request, who=identity.principal.key, now=self._clock(), note=note)
        self._record_change("revoke", "revoked", context, identity, request, note or "", policy)
        self.notifier.request_decided(request.id)
        return self._store.get(request.id)

    def expire_due(self, *, context: CallContext, limit: int = READ_BATCH) -> list[str]:
        """Mark pending requests whose time is over as expired, so every copy of them says so."""
        now = self._clock()
        expired = []
        for request in self._store.due_for_expiry(now, now - timedelta(seconds=MAX_GRANT_SECONDS), limit):
            try:
                self._store.expire(request, now=now)
            except Conflict:
                continue  # decided meanwhile
            self._audit.record(action="expire", outcome="expired", context=context, role=request.role,
                               request_ref=request.id, requester=request.requester,
                               reason="no decision before the pending timeout")
            self.notifier.request_decided(request.id)
            expired.append(request.id)
        return expired

    # -- checks

    def _decidable(self, identity: Identity, request_id: str, context: CallContext,
                   action: str) -> tuple[AccessRequest, Role]:
        policy = self._policy()
        request = self._visible(identity, request_id, policy)
        role = policy.role(request.role)
        if is_self(request, identity):
            self._record(action, "denied", context, identity, role, "self-approval", request_ref=request.id)
            raise Forbidden("you cannot approve or deny your own request; ask an approver")
        if request.kind == BREAK_GLASS:
            raise Conflict(f"request {request.id} is a break-glass: it needs a review "
                           f"(POST /v1/requests/{request.id}/review), not a decision")
        if not self._approves_all(policy, request, identity):
            self._record(action, "denied", context, identity, role, "not an approver", request_ref=request.id)
            raise Forbidden(self._not_an_approver(policy, request, identity))
        self._require_status(request, PENDING)
        return request, role

    @staticmethod
    def _not_an_approver(policy: AccessPolicy, request: AccessRequest, identity: Identity) -> str:
        for name in request.roles:
            role = policy.roles.get(name)
            if role is None or role.approval is None:
                return f"role {name} is no longer in the policy or needs no approval; nobody can decide this request"
            if not role.approval.is_approver(identity):
                if role.is_watcher(identity):
                    return (f"you are notified of role {name}'s requests (notify.watchers) but cannot decide them; "
                            "an approver must")
                return (f"you are not an approver for role {name} "
                        f"(approvers need {describe_rules(role.approval.approvers, identity)})")
        return "you may not decide this request"

    def _check_approver(self, identity: Identity, request: AccessRequest, role: Role, context: CallContext) -> None:
        """Checks of one approval: the plan still holds, this stage is the caller's, once per person, MFA."""
        assert role.approval is not None
        policy = self._policy()
        roles = [policy.role(name) for name in request.roles]
        if any(r.approval is None or r.approval.plan != request.plan for r in roles):
            raise Conflict(f"the approval stages of role {request.role} changed since request {request.id} was "
                           "filed; the requester must cancel it and file it again")
        stage = role.approval.stages[request.stage]
        if not all(r.approval and r.approval.stages[request.stage].is_approver(identity) for r in roles):
            self._record("approve", "denied", context, identity, role, "not this stage", request_ref=request.id)
            progress = request.progress()
            raise Forbidden(f"request {request.id} waits for stage {progress['stage']} of {progress['stages']} "
                            f"({stage.name}), whose approvers need "
                            + describe_rules(stage.approvers, identity))
        if already_approved(request, identity):
            raise Conflict(f"you already approved request {request.id}; each approval must come from "
                           "a different person")
        if role.require_mfa or any(r.require_mfa for r in roles):
            if context.channel == "slack":
                raise Forbidden(f"role {role.name} requires MFA, which Slack cannot prove: approve with "
                                f"`rolebroker approve {request.id}` or the API after signing in with MFA")
            if not identity.has_mfa:
                raise Forbidden(f"approving role {role.name} requires MFA: sign in with MFA and try again")

    @staticmethod
    def _narrowing(request: AccessRequest, roles: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if roles is None:
            return None
        if not roles or len(set(roles)) != len(roles) or not set(roles) <= set(request.roles):
            raise BadRequest(f"'roles' narrows a request to some of its own roles ({', '.join(request.roles)}), "
                             "each once; leave it out to approve them all")
        return tuple(r for r in request.roles if r in roles)  # in the request's order
