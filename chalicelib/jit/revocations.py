"""The kill switch: end a person's live sessions in every account, and refuse them new ones.

``POST /v1/revocations`` (an admin, with MFA; or ``/aws revoke-sessions``
in Slack) revokes a *person*. The accounts to write are those of every role
the access policy could ever give them (``queries.reach``: whatever groups
they hold, since their IdP may already have removed them; rules of an issuer
linked to them by ``approval_identity_claim`` count too) *and* every
account where the broker recorded a live session of theirs
(``RevocationStore.issued``, written at each issuance), so a rule removed
before the revocation, or a session from a linked issuer, is still reached.
In each, the revocations boundary gets a deny for sessions stamped with the
``SourceIdentity`` of each of their principals seen there and issued before
the cutoff (``chalicelib/jit/denies.py``), and the broker refuses them (as
any principal of that person) new credentials while the revocation is in
force. A JIT grant
that ends early (an approver revokes it, a break-glass included) gets the
same deny in each of its roles, scoped to that role (a *grant* revocation).
While a person's revocation is in force they also decide nothing: no
approval, denial, revocation or review, no break-glass, request or
extension (``chalicelib/jit/desk.py`` asks :meth:`Revocations.refusal_of`,
and the store's transactions check the refusal again).

Order, so that nothing changes in AWS without a record and no session slips
between the two halves:

1. the record and the refusal are written in one DynamoDB transaction;
   then the recorded sessions are read again and their accounts added. The
   broker records a session *before* it checks the refusal, so a session
   that leaves the broker was recorded before the refusal, hence before
   this read;
2. the cutoff is :data:`CUTOFF_MARGIN` after the revocation starts, which
   leaves the write (bounded by the store's timeouts) and the clock skew
   between the broker and AWS room. The broker checks the refusal *after*
   ``AssumeRole`` and before answering, so a session issued before the
   refusal was visible is denied by the cutoff, and one issued after it
   never leaves the broker;
3. each account is written in parallel (``workers``), each attempt under the
   account's lease (``RevocationStore.lock``, renewed just before the entries
   are stored and just before the IAM write, so that a writer stalled past it
   writes nothing), the document rendered from the stored entries. IAM takes
   no condition, so a write can still land after its lease ran out and
   another writer wrote the account: the lease is checked again once the
   write has landed, and a writer that lost it renders every stored entry
   (everyone's, its own included) again under a new lease and writes again,
   so the last document to land holds them all (:data:`LEASE` outlasts the
   worst write under the clients' retry settings, so this is rare).
   Throttling and outages are retried with exponential backoff (``sleep`` is
   injected), refusals are not (they need an operator); every account's
   outcome is recorded as it lands, and the answer says which accounts
   failed and what to fix.

A revocation stays in force until an admin lifts it (``DELETE
/v1/revocations/{id}``) or **the policy changes what it says about that
person by name** (``queries.naming``: a rule whose identity-claim condition
lists them, as an allow rule, approver, admin or auditor, or a Slack user
mapped to them, is added or removed, moves, or has its other conditions
edited; the other values such a rule lists are left out, since adding or
removing someone else is a decision about them). That is a reviewed decision
about this one person, made after the revocation (``policycheck diff``
shows it), so it stands on its own: granting them again later works without
anyone remembering to lift, and taking them out of a rule ends the refusal
too. That ending is the reviewer's decision, not a guarantee: from then on
the policy alone decides what they get, and a rule that grants a group they
still belong to (or any rule that does not name them) may still give them
roles; ``GET /v1/access?identity=...`` shows what it gives. Group membership is the IdP's, and
any other change (a new role for a group, another person's access) leaves
the revocation in force. The broker compares whenever it loads a new policy
version, lists revocations or revokes, and records the end; a change undone
before any broker saw it changes nothing. Lifting never removes the denies:
sessions issued before the cutoff stay dead; new ones work.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from chalicelib.access.policy import AccessPolicy, Role, Rule
from chalicelib.access.queries import naming, reach
from chalicelib.audit import AuditLog, CallContext
from chalicelib.aws.iam import MAX_CALLS_PER_WRITE, AccountBoundary, Revoker
from chalicelib.aws.items import dt, iso
from chalicelib.aws.limits import worst_call_seconds
from chalicelib.aws.revocation_store import (
    IN_FORCE,
    AccountOutcome,
    LiveSession,
    Revocation,
    RevocationStore,
    decode_page,
    encode_page,
    new_id,
    with_outcome,
)
from chalicelib.aws.sts import BROKER_ROLE_PATH
from chalicelib.exceptions import (
    BadRequest,
    DependencyDown,
    Forbidden,
    LeaseLost,
    NotFound,
    Revoked,
    RevokerUnavailable,
    RolebrokerError,
    Throttled,
)
from chalicelib.identity.principal import DEFAULT_ISSUER, Principal, canonical_value
from chalicelib.identity.tokens import Identity
from chalicelib.jit.denies import MAX_ROLE_SESSION_SECONDS, boundary_arn, entry_for, live, render
from chalicelib.jit.grants import IssuedSession
from chalicelib.jit.model import AccessRequest
from chalicelib.stamping import session_name_for_key

LOG = logging.getLogger(__name__)

# Between the refusal's write and the cutoff: covers clock skew between the
# broker and AWS, so that no session issued before the refusal was visible
# carries a TokenIssueTime after the cutoff.
CUTOFF_MARGIN = timedelta(seconds=30)
# An account's writer lease must outlast the longest a holder can take from renewing it to its IAM write
# landing: the renewal (one DynamoDB call) and AccountBoundary.write (at most iam.MAX_CALLS_PER_WRITE IAM
# calls), each at its worst under the clients' retry settings (limits.worst_call_seconds: 3 attempts of 3 s
# connect and 5 s read, and the waits between them, 37 s): 9 calls, 333 s; half as much again for margin, 500 s.
# The functions' own timeouts (15 s, the worker's 60 s) are far shorter, so a writer the platform kills mid-write
# keeps the lease long after a request it had already sent could land. A write that lands late anyway is
# caught by the check after it (``_confirm``). The price: a killed writer blocks its account until the lease ends.
LEASE = timedelta(seconds=math.ceil(1.5 * (1 + MAX_CALLS_PER_WRITE) * worst_call_seconds()))
# An API answer must come within API Gateway's 29 s (and the function's
# timeout); accounts not written by then continue in the worker.
DEADLINE_SECONDS = 10.0
ATTEMPTS = 4
BACKOFF_SECONDS = 0.5
WORKERS = 16
PAGE_LIMIT = 50
MAX_PAGE_LIMIT = 100
_RETRYABLE = (Throttled, DependencyDown)


@dataclass(frozen=True)
class Target:
    """One account a revocation must reach: the roles there, whose sessions (by ``SourceIdentity``) it must
    end, and until when the broker's recorded sessions there live."""

    account_id: str
    role_arns: tuple[str, ...]
    identities: tuple[str, ...]
    until: datetime | None = None

    def pending(self) -> AccountOutcome:
        return AccountOutcome("pending", roles=self.role_arns, identities=self.identities,
                              sessions_until=iso(self.until) if self.until else None)


class Revocations:
    def __init__(self, *, policy: Callable[[], AccessPolicy], store: RevocationStore, revoker: Revoker,
                 audit: AuditLog, clock: Callable[[], datetime], default_identity_claim: str = "email",
                 sleep: Callable[[float], None] = time.sleep, workers: int = WORKERS, attempts: int = ATTEMPTS,
                 backoff_seconds: float = BACKOFF_SECONDS, partition: str = "aws",
                 deadline_seconds: float = DEADLINE_SECONDS, seen: Callable[[str], bool] | None = None,
                 session_cap_seconds: int = MAX_ROLE_SESSION_SECONDS,
                 grant_sessions: Callable[[str], Sequence[IssuedSession]] | None = None) -> None:
        self._policy = policy
        # The broker's own cap on sessions (ROLEBROKER_MAX_SESSION_SECONDS): an entry lives at least that
        # long, whatever a role's MaxSessionDuration says now (it may have been lowered since).
        self._session_cap = session_cap_seconds
        self._grant_sessions = grant_sessions
        self._store = store
        self._revoker = revoker
        self._audit = audit
        self._clock = clock
        self._claim = default_identity_claim
        self._sleep = sleep
        self._workers = workers
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._partition = partition
        self.deadline_seconds = deadline_seconds
        self.seen = seen  # whether the broker saw this principal sign in lately (a typo guard)
        # Set by app.py when a worker exists: continues a revocation whose accounts outlast the deadline.
        self.handoff: Callable[[str], None] | None = None

    # -- a person

    def revoke(self, caller: Identity, identity: str, reason: str, *, context: CallContext) -> Revocation:
        """Revoke every live session of the person ``identity`` names, and refuse them new credentials."""
        policy = self._policy()
        self._require_admin(policy, caller, context, "revoke sessions", about=identity)
        self.policy_changed(policy)
        principal = self._principal(policy, identity)
        if caller.is_same_person(principal.key, None, None):
            self._denied(caller, context, "revoke-sessions", "self", about=principal.key)
            raise Forbidden("you cannot revoke your own sessions: ask another admin (a revocation also refuses "
                            "its subject new credentials, and would lock you out mid-incident)")
        roles, linked = self._reach(policy, principal)
        own = session_name_for_key(principal.key)
        recorded = self._store.issued(principal.key, self._clock())
        if not roles and not linked and not recorded:
            raise NotFound(
                f"no role in the access policy could ever be granted to {principal.key!r}, and the broker holds "
                "no live session of theirs: check the spelling (a person of the default issuer is their identity "
                "claim as the IdP sends it, emails in any case; anyone else is <issuer>|<value>); "
                "GET /v1/access?identity=... shows what someone can use")
        done = self._start(caller, context, kind="person", principal=principal, reason=reason,
                           targets=merged(targets_of(roles, own), targets_of_sessions(recorded)),
                           role_names=tuple(r.name for r in [*roles, *linked]),
                           naming=self._naming(policy, principal),
                           then=lambda: targets_of_sessions(self._store.issued(principal.key, self._clock())))
        return replace(done, warnings=self._warnings(policy, principal))

    def _reach(self, policy: AccessPolicy, principal: Principal) -> tuple[list[Role], list[Role]]:
        """The roles ``principal`` could be given; and, for a person, those only an issuer linked to them gives.

        A linked issuer's principal value is unknown until they sign in there,
        so of its rules only those not naming people count; the sessions such a
        principal holds are found in the broker's record of issued sessions.
        """
        roles = reach(policy, principal, self._identity_claim(policy, principal))
        if principal.issuer != DEFAULT_ISSUER:
            return roles, []
        names = {role.name for role in roles}
        linked: list[Role] = []
        for issuer in policy.issuers.values():
            if not issuer.approval_identity_claim or issuer.is_default:
                continue
            for role in reach(policy, Principal(issuer.name, ""), issuer.identity_claim):
                if role.name not in names:
                    names.add(role.name)
                    linked.append(role)
        return roles, linked

    def _warnings(self, policy: AccessPolicy, principal: Principal) -> tuple[str, ...]:
        found = []
        if self.seen is not None and not self.seen(principal.key):
            # Every group rule reaches any name, so a typo is no 404: say what the broker knows.
            found.append(f"the broker has no record of {principal.key} signing in within the last 12 hours: check "
                         "the spelling. The revocation stands either way (it also refuses them future credentials).")
        issuer = policy.issuers.get(principal.issuer)
        if issuer is not None and issuer.approval_identity_claim and not issuer.is_default:
            found.append(f"issuer {principal.issuer} links its tokens to a person ({issuer.approval_identity_claim}); "
                         "the broker records their sessions under that person, so revoke the person to reach "
                         "every account where any of their principals holds a session")
        return tuple(found)

    def end_grant(self, caller: Identity, request: AccessRequest, note: str | None, *,
                  context: CallContext) -> Revocation | None:
        """A JIT grant ended early (revoked, a break-glass included): deny its sessions in each of its roles.

        One entry per role of the grant (a request for several roles, as an
        approver may have narrowed it, has a grant each), scoped to that
        role's ARN, so the person's other roles go on. The accounts are the
        grant's roles in today's policy and those of every live session
        recorded under the grant (its roles may have left the policy). Returns
        None when there is neither.
        """
        policy = self._policy()
        roles = [policy.roles[name] for name in request.roles if name in policy.roles]
        now = self._clock()
        issued = self._grant_sessions(request.id) if self._grant_sessions is not None else []
        live = [LiveSession(request.requester, i.session_name, i.account_id, i.role_arn, i.expires_at)
                for i in issued if i.expires_at > now]
        targets = merged(targets_of(roles, session_name_for_key(request.requester)), targets_of_sessions(live))
        if not targets:
            return None
        names = ", ".join(request.roles)
        reason = f"grant {request.id} for {names} ended" + (f": {note}" if note else "")
        return self._start(caller, context, kind="grant", principal=Principal.from_key(request.requester),
                           reason=reason, targets=targets, role_names=tuple(request.roles),
                           naming=None, request_ref=request.id)

    def grant_sessions_ended(self, caller: Identity, request: AccessRequest, note: str | None, *,
                             context: CallContext) -> dict[str, Any] | None:
        """``end_grant`` as an answer shows it: the revocation, or why the grant's sessions may live on.

        The grant itself is revoked by then; a failure here is said plainly, never raised over it.
        """
        try:
            ended = self.end_grant(caller, request, note, context=context)
        except RolebrokerError as exc:
            LOG.warning("grant %s revoked; its sessions were not denied: %s", request.id, exc)
            return {"status": "failed", "detail": str(exc), "request": request.id}
        return ended.to_dict() if ended else None

    def _start(self, caller: Identity, context: CallContext, *, kind: str, principal: Principal, reason: str,
               targets: Sequence[Target], role_names: tuple[str, ...], naming: str | None,
               request_ref: str | None = None, then: Callable[[], Sequence[Target]] | None = None) -> Revocation:
        now = self._clock()
        revocation = Revocation(
            id=new_id(now), kind=kind, principal=principal.key, source_identity=session_name_for_key(principal.key),
            by=caller.principal.key, reason=reason, created_at=now, cutoff=now + CUTOFF_MARGIN,
            accounts={t.account_id: t.pending() for t in targets}, roles=role_names, request_ref=request_ref)
        self._store.create(revocation, naming=naming)
        if then is not None:
            revocation = self._widen(revocation, targets, then())
        written = self._clock()
        if written >= revocation.cutoff - CUTOFF_MARGIN / 2:
            # The refusal is visible from ``written`` on, so the cutoff must be
            # later than that by the clock skew. The store's timeouts keep a
            # write well under the margin; should one not, it is said, not hidden.
            LOG.warning("revocation %s took %.1f s to record; its cutoff leaves little margin",
                        revocation.id, (written - now).total_seconds())
        self._audit.record(action="revoke-sessions", outcome="recorded", context=context, identity=caller,
                           reason=reason, about=principal.key, revocation=revocation.id, kind=kind,
                           accounts=len(revocation.accounts), request_ref=request_ref)
        return self._finish(self._apply(revocation), context)

    def _widen(self, revocation: Revocation, targets: Sequence[Target], later: Sequence[Target]) -> Revocation:
        """Add to a recorded revocation the targets read after its refusal was written."""
        before = {t.account_id: t for t in targets}
        for target in merged(targets, later):
            if before.get(target.account_id) != target:
                self._store.set_outcome(revocation.id, target.account_id, target.pending())
                revocation = with_outcome(revocation, target.account_id, target.pending())
        return revocation

    def resume(self, revocation_id: str, *, context: CallContext) -> Revocation:
        """Write the accounts a revocation has not reached yet (the worker, after a hand-off)."""
        return self._finish(self._apply(self._store.get(revocation_id)), context)

    def _finish(self, done: Revocation, context: CallContext) -> Revocation:
        self._audit.record(action="revoke-sessions", outcome=done.status, context=context, reason=done.reason,
                           revoked_by=done.by, about=done.principal, revocation=done.id, kind=done.kind,
                           accounts_written=sum(1 for o in done.accounts.values() if o.status == "written"),
                           accounts_failed=sorted(a for a, o in done.accounts.items()
                                                  if o.status not in ("written", "pending")),
                           accounts_pending=sum(1 for o in done.accounts.values() if o.status == "pending"),
                           request_ref=done.request_ref)
        return done

    # -- writing the accounts

    def _apply(self, revocation: Revocation) -> Revocation:
        """Write every pending account, in parallel, until the deadline; hand the rest to the worker.

        An account still being written at the deadline goes on in its thread
        and records its outcome when it lands; the worker's ``resume`` takes
        the rest (and the lease keeps the two from writing one account at once).
        """
        pending = sorted(a for a, o in revocation.accounts.items() if o.status == "pending")
        if not pending:
            return revocation
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(self._workers, len(pending))),
                                                     thread_name_prefix="revoke")
        futures = {pool.submit(self._account, revocation, account): account for account in pending}
        done, late = concurrent.futures.wait(futures, timeout=self.deadline_seconds)
        pool.shutdown(wait=False, cancel_futures=True)
        for future in done:
            revocation = with_outcome(revocation, futures[future], future.result())
        if late:
            LOG.warning("revocation %s: %d account(s) left at the deadline", revocation.id, len(late))
            if self.handoff is not None:
                self.handoff(revocation.id)
        return revocation

    def _account(self, revocation: Revocation, account_id: str) -> AccountOutcome:
        pending = revocation.accounts[account_id]
        last: RolebrokerError | None = None
        outcome: AccountOutcome | None = None
        stale = False  # a document of this revocation landed after its lease passed on, and none since under one
        for attempt in range(1, self._attempts + 1):
            try:
                outcome = self._write(revocation, account_id, pending, attempt)
                break
            except _RETRYABLE as exc:
                last = exc
                stale = stale or isinstance(exc, LeaseLost)
                if attempt < self._attempts:
                    self._sleep(self._backoff * 2 ** (attempt - 1))
            except RolebrokerError as exc:
                outcome = self._outcome("failed", str(exc), attempt, pending)
                break
            except Exception as exc:  # an account must never take the others down, nor go unrecorded
                LOG.exception("revocation %s: account %s failed unexpectedly", revocation.id, account_id)
                outcome = self._outcome("failed", f"unexpected {type(exc).__name__}; see the broker's log",
                                        attempt, pending)
                break
        if outcome is None:
            outcome = self._outcome("failed", f"{last} (gave up after {self._attempts} attempts; revoke again "
                                    "to retry: writes are idempotent)", self._attempts, pending)
        if stale and outcome.status == "failed":
            outcome = replace(outcome, detail=f"{outcome.detail}; this account's boundary may lack the denies of "
                              "a revocation written meanwhile (they are stored): revoke again, since any revocation "
                              "of the account writes every stored deny")
        try:
            self._store.set_outcome(revocation.id, account_id, outcome)
        except RolebrokerError:
            LOG.exception("revocation %s: could not record the outcome for %s", revocation.id, account_id)
        return outcome

    def _write(self, revocation: Revocation, account_id: str, pending: AccountOutcome,
               attempt: int) -> AccountOutcome:
        # Reads first, outside the lease: it covers only what must not interleave.
        boundary = self._revoker.account(account_id, f"rolebroker-revocation-{revocation.id}")
        longest, uncovered, notes = self._inspect(boundary, pending.roles)
        # A role's MaxSessionDuration may have been lowered since a session was issued: the broker's own cap
        # and the recorded sessions' expiry bound what it issued there.
        longest = max(longest, self._session_cap)
        until = dt(pending.sessions_until) if pending.sessions_until else None
        # A person: one entry for every role of the account. A grant: one per role of the grant there.
        scoped: tuple[str | None, ...] = pending.roles if revocation.kind == "grant" else (None,)
        wanted = [entry_for(identity, revocation.cutoff, longest, arn, at_least=until)
                  for identity in pending.identities or (revocation.source_identity,) for arn in scoped]
        owner = f"{revocation.id}:{uuid.uuid4().hex[:8]}"
        if not self._store.lock(account_id, owner, self._clock(), LEASE):
            raise Throttled(f"account {account_id}: another revocation is writing its boundary (its lease lasts "
                            f"at most {LEASE.seconds} s)")
        try:
            now = self._clock()
            stored = self._store.entries(account_id)
            kept = live([*stored, *wanted], now)
            document = render(kept, now)  # refuses, writing nothing, if it would not fit
            keys = {e.key for e in wanted}
            mine = [e for e in kept if e.key in keys]  # each merged with an earlier one, or covered
            self._fence(account_id, owner)
            for entry in mine:
                self._store.put_entry(account_id, entry, revocation.id)
            self._fence(account_id, owner)
            version = boundary.write(document)
            self._confirm(account_id, owner, version)
            rewritten = {e.key for e in mine}
            self._store.drop_entries(account_id, [e for e in stored if e not in kept and e.key not in rewritten])
        finally:
            self._store.unlock(account_id, owner)
        detail = f"boundary version {version}: {len(kept)} live entr{'y' if len(kept) == 1 else 'ies'}"
        return self._outcome("uncovered" if uncovered else "written", "; ".join([detail, *notes]), attempt, pending,
                             uncovered)

    def _fence(self, account_id: str, owner: str) -> None:
        """Renew the lease right before a write: a writer stalled past it must not overwrite what the writer
        that took it over wrote (a retry renders again from the entries then stored)."""
        if not self._store.renew(account_id, owner, self._clock(), LEASE):
            raise Throttled(f"account {account_id}: this writer's lease ran out before it wrote; another writer "
                            "holds it now")

    def _confirm(self, account_id: str, owner: str, version: str) -> None:
        """Check, once IAM took the write, that the lease is still this writer's.

        IAM takes no condition: a write that IAM took longer than the lease to
        land may have replaced the document of the writer that took the lease
        over, and that writer's denies would be gone while it reports them
        written. Its entries are in the table, so the retry renders every
        stored entry again under a new lease, and the last document to land
        holds them all.
        """
        if not self._store.renew(account_id, owner, self._clock(), LEASE):
            raise LeaseLost(f"account {account_id}: IAM took boundary version {version} after this writer's lease "
                            "had passed to another revocation, so it may lack that revocation's denies")

    def _inspect(self, boundary: AccountBoundary, roles: Sequence[str]) -> tuple[int, list[str], list[str]]:
        """The longest session the account's roles can issue, and the roles the boundary does not reach."""
        expected = boundary_arn(boundary.account_id, self._partition)
        longest, uncovered, notes = 0, [], []
        for arn in roles:
            name = arn.rsplit("/", 1)[-1]
            outside = not arn.split(":role", 1)[-1].startswith(BROKER_ROLE_PATH)
            attach = (f"attach it yourself: aws iam put-role-permissions-boundary --role-name {name} "
                      f"--permissions-boundary {expected}" if outside
                      else "redeploy the trusting-account StackSet")
            try:
                facts = boundary.role(arn)
            except RevokerUnavailable:
                if not outside:
                    raise
                # The revoker may read only roles under the broker's path.
                uncovered.append(f"{arn}: outside {BROKER_ROLE_PATH}, so the template does not give it the "
                                 f"boundary and the revoker cannot check it; {attach}; unverified")
                longest = MAX_ROLE_SESSION_SECONDS
                continue
            if facts is None:
                notes.append(f"{arn} does not exist (no session to end)")
                continue
            longest = max(longest, facts.max_session_seconds)
            if facts.boundary_arn != expected:
                uncovered.append(f"{arn}: its permissions boundary is {facts.boundary_arn or 'none'}, not "
                                 f"{expected}, so its sessions go on; {attach}")
        return longest or MAX_ROLE_SESSION_SECONDS, uncovered, notes

    def _outcome(self, status: str, detail: str, attempts: int, pending: AccountOutcome,
                 uncovered: Sequence[str] = ()) -> AccountOutcome:
        return replace(pending, status=status, detail=detail, at=self._clock().isoformat(), attempts=attempts,
                       uncovered=tuple(uncovered))

    # -- reading, lifting, and the policy moving on

    def refuse_if_revoked(self, identity: Identity) -> None:
        """Raise ``Forbidden`` if a revocation of this principal or their person is in force (the broker calls
        it after AssumeRole, and after ``session_issued``)."""
        refusal = self.refusal_of(identity)
        if refusal is None:
            return
        raise Revoked(f"an admin revoked your sessions at {refusal.get('created_at', '?')} (revocation "
                        f"{refusal.get('revocation', '?')}); the broker gives you no credentials until an admin "
                        "lifts it")

    def session_issued(self, identity: Identity, account_id: str, role_arn: str, source_identity: str,
                       expires: datetime) -> None:
        """Record a session the broker issued (before the refusal check), under the caller's person if known."""
        owner = identity.person.key if identity.person else identity.principal.key
        self._store.record_issued(owner, LiveSession(identity.principal.key, source_identity, account_id, role_arn,
                                                     expires))

    def refusal_of(self, identity: Identity) -> dict[str, str] | None:
        """The refusal in force against the caller: as themselves or, from a linked issuer, as their person."""
        keys = [identity.principal.key] + ([identity.person.key] if identity.person else [])
        for key in dict.fromkeys(keys):
            found = self._store.refusal(key)
            if found is not None:
                return found
        return None

    def get(self, caller: Identity, revocation_id: str, *, context: CallContext) -> Revocation:
        self._require_overseer(self._policy(), caller, context)
        return self._store.get(revocation_id)

    def page(self, caller: Identity, *, limit: int = PAGE_LIMIT, next_token: str | None = None,
             context: CallContext) -> tuple[list[Revocation], str | None]:
        policy = self._policy()
        self._require_overseer(policy, caller, context)
        self.policy_changed(policy)
        found, last = self._store.page(after=decode_page(next_token) if next_token else None, limit=limit)
        return found, encode_page(last) if last else None

    def lift(self, caller: Identity, revocation_id: str, *, context: CallContext) -> Revocation:
        """Stop refusing the person new credentials. The denies stay: sessions from before the cutoff stay dead."""
        policy = self._policy()
        self._require_admin(policy, caller, context, "lift revocations", about=revocation_id)
        revocation = self._store.get(revocation_id)
        if revocation.kind != "person":
            raise BadRequest(f"revocation {revocation.id} ended a JIT grant's sessions; there is nothing to lift "
                             "(request access again)")
        if caller.is_same_person(revocation.principal, None, None):
            self._denied(caller, context, "lift-revocation", "self", about=revocation.principal)
            raise Forbidden("you cannot lift a revocation of your own sessions; ask another admin")
        if revocation.state != IN_FORCE:
            raise BadRequest(f"revocation {revocation.id} is already over ({revocation.state}); nothing to lift")
        now = self._clock()
        self._store.end(revocation, state="lifted", by=caller.principal.key, now=now)
        self._audit.record(action="lift-revocation", outcome="lifted", context=context, identity=caller,
                           about=revocation.principal, revocation=revocation.id)
        return replace(revocation, state="lifted", ended_at=now, ended_by=caller.principal.key)

    def policy_changed(self, policy: AccessPolicy) -> int:
        """End every refusal whose person ``policy`` now says something else about by name; how many ended."""
        ended = 0
        for refusal in self._store.refusals():
            principal = Principal.from_key(refusal["sk"])
            if self._naming(policy, principal) == refusal.get("naming"):
                continue
            try:
                revocation = self._store.get(refusal["revocation"])
                self._store.end(revocation, state="ended_by_policy", by="the access policy", now=self._clock())
            except RolebrokerError as exc:  # lifted meanwhile, or the store hiccupped: the next look retries
                LOG.info("refusal of %s not ended now: %s", principal.key, exc)
                continue
            ended += 1
            self._audit.record(action="lift-revocation", outcome="ended_by_policy",
                               context=CallContext(request_id="policy-change"), about=principal.key,
                               revocation=revocation.id,
                               reason="the access policy changed what it says about this person by name")
        return ended

    # -- who may

    def _require_admin(self, policy: AccessPolicy, caller: Identity, context: CallContext, what: str,
                       **fields: Any) -> None:
        action = "lift-revocation" if what.startswith("lift") else "revoke-sessions"
        if not policy.is_admin(caller):
            reason = f"only the policy's admins ({_rules(policy.admins)}) may {what}"
            self._denied(caller, context, action, reason, **fields)
            raise Forbidden(reason)
        # Slack cannot prove MFA. Revoking from Slack is allowed (it only takes
        # access away, and Slack is where an incident is handled); lifting is not offered there.
        if context.channel != "slack" and not caller.has_mfa:
            reason = f"{what} requires MFA: sign in to your identity provider with MFA and try again"
            self._denied(caller, context, action, reason, **fields)
            raise Forbidden(reason)
        if self.refusal_of(caller) is not None:
            reason = f"your own sessions are revoked; an admin whose sessions are not must {what}"
            self._denied(caller, context, action, reason, **fields)
            raise Forbidden(reason)

    def _require_overseer(self, policy: AccessPolicy, caller: Identity, context: CallContext) -> None:
        if policy.is_admin(caller) or policy.is_auditor(caller):
            return
        reason = (f"only the policy's admins ({_rules(policy.admins)}) and auditors ({_rules(policy.auditors)}) "
                  "may read revocations")
        self._denied(caller, context, "revocations", reason)
        raise Forbidden(reason)

    def _denied(self, caller: Identity, context: CallContext, action: str, reason: str, **fields: Any) -> None:
        self._audit.record(action=action, outcome="denied", context=context, identity=caller, reason=reason,
                           **fields)

    def _naming(self, policy: AccessPolicy, principal: Principal) -> str:
        named = naming(policy, principal, self._identity_claim(policy, principal))
        return hashlib.sha256(json.dumps(named).encode("utf-8")).hexdigest()[:32]

    def _identity_claim(self, policy: AccessPolicy, principal: Principal) -> str:
        if principal.issuer == DEFAULT_ISSUER:
            return self._claim
        issuer = policy.issuers.get(principal.issuer)
        return issuer.identity_claim if issuer is not None else ""

    def _principal(self, policy: AccessPolicy, text: str) -> Principal:
        """The principal a revocation names: a principal key, canonicalised as tokens' values are."""
        raw = Principal.from_key(text.strip())
        if raw.issuer != DEFAULT_ISSUER and raw.issuer not in policy.issuers:
            known = ", ".join(sorted(policy.issuers)) or "none besides the default"
            raise NotFound(f"{text!r} names issuer {raw.issuer!r}, which the access policy does not declare "
                           f"(issuers: {known}); a person of the default issuer is named by their identity claim "
                           "alone")
        claim = self._identity_claim(policy, raw)
        try:
            value = canonical_value(claim, raw.value)
        except ValueError as exc:  # no token could carry it (a non-ASCII email), so it names nobody
            raise BadRequest(f"'identity' cannot name anyone: the {claim} claim {exc}") from None
        if not value:
            raise BadRequest("'identity' names nobody")
        return Principal(raw.issuer, value)


def targets_of(roles: Sequence[Role], source_identity: str) -> list[Target]:
    """The accounts the roles live in, each with its roles' ARNs (several policy roles may share one)."""
    return merged([Target(role.account.id, (role.role_arn,), (source_identity,)) for role in roles])


def targets_of_sessions(sessions: Sequence[LiveSession]) -> list[Target]:
    """The accounts where the broker recorded live sessions: their roles, stamped identities and latest expiry."""
    return merged([Target(s.account_id, (s.role_arn,), (s.source_identity,), s.expires) for s in sessions])


def merged(*lists: Sequence[Target]) -> list[Target]:
    """One target per account: every role and identity any of them names, until the latest expiry."""
    by_account: dict[str, Target] = {}
    for target in (t for found in lists for t in found):
        other = by_account.get(target.account_id)
        if other is not None:
            latest = [u for u in (target.until, other.until) if u is not None]
            target = Target(target.account_id, tuple(sorted({*target.role_arns, *other.role_arns})),
                            tuple(sorted({*target.identities, *other.identities})), max(latest) if latest else None)
        by_account[target.account_id] = target
    return [by_account[account] for account in sorted(by_account)]


def _rules(rules: tuple[Rule, ...]) -> str:
    return "; or ".join(rule.describe() for rule in rules) or "nobody: the policy names none"

