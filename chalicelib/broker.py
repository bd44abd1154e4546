"""The broker's use cases: list roles, issue credentials, write profiles.

``Broker`` receives everything it talks to (policy getter, STS gateway,
grant store, audit log, clock) and returns plain data; ``app.py`` turns that
into HTTP. Every decision, allowed or not, leaves one audit line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.access.policy import MIN_SESSION_SECONDS, AccessPolicy, Decision, Role, decide
from chalicelib.audit import AuditLog, CallContext
from chalicelib.aws.sts import AssumedSession, SessionPolicy, StsGateway
from chalicelib.exceptions import Forbidden, Revoked, RolebrokerError
from chalicelib.identity.tokens import Identity
from chalicelib.profiles import config_fragment, profile_section
from chalicelib.stamping import grant_tags, session_name_for, session_tags_for

if TYPE_CHECKING:  # a broker without JIT access (no table) never loads them
    from chalicelib.jit.grants import ActiveGrant, IssuedSession

# A Lambda execution role calling AssumeRole is role chaining, which STS caps
# at one hour whatever the target role's MaxSessionDuration says.
ROLE_CHAINING_LIMIT_SECONDS = 3600


@dataclass(frozen=True)
class Issued:
    """A session the broker handed out, with the role, grant and scope it came from."""

    role: Role
    session: AssumedSession
    session_name: str
    seconds: int
    warnings: list[str]
    grant: ActiveGrant | None = None
    scope: str | None = None


class GrantStore(Protocol):
    def active_grants(self, subject: str, now: datetime) -> Mapping[str, datetime]:
        """Role name -> end of the approved, unexpired grant of principal key ``subject``."""
        ...

    def active_grant(self, subject: str, role: str, now: datetime, scope: str | None = None) -> ActiveGrant | None:
        """The caller's grant for ``role`` in force at ``now`` that fits ``scope``, if any."""
        ...

    def record_session(self, grant: ActiveGrant, session: IssuedSession, *, now: datetime) -> None:
        """Record a session issued under ``grant``; refuse if the grant no longer holds."""
        ...


class SessionRecorder(Protocol):
    def __call__(self, identity: Identity, account_id: str, role_arn: str, source_identity: str,
                 expires: datetime) -> None:
        """Record that a session of ``identity`` lives in that account and role until ``expires``."""
        ...


class NoGrants:
    """Used when no table is configured: approval roles stay unusable."""

    def active_grants(self, subject: str, now: datetime) -> Mapping[str, datetime]:
        return {}

    def active_grant(self, subject: str, role: str, now: datetime, scope: str | None = None) -> ActiveGrant | None:
        return None

    def record_session(self, grant: ActiveGrant, session: IssuedSession, *, now: datetime) -> None:
        raise AssertionError("no grant exists without a table")


def utcnow() -> datetime:
    return datetime.now(UTC)


def session_duration(
    requested: int | None,
    role: Role,
    *,
    limit: int,
    grant_until: datetime | None,
    now: datetime,
) -> tuple[int, list[str]]:
    """``DurationSeconds`` = min(request, role max, chaining limit, grant left)."""
    warnings: list[str] = []
    seconds = requested if requested is not None else role.max_duration_seconds
    if seconds > role.max_duration_seconds:
        warnings.append(f"role {role.name} allows at most {role.max_duration_seconds} seconds; "
                        f"issued {role.max_duration_seconds}")
        seconds = role.max_duration_seconds
    if seconds > limit:
        if limit <= ROLE_CHAINING_LIMIT_SECONDS:
            warnings.append(
                f"sessions are capped at {limit} seconds: the broker assumes roles from its own role "
                "(role chaining), and STS limits chained sessions to one hour"
            )
        else:
            warnings.append(f"this broker caps sessions at {limit} seconds (ROLEBROKER_MAX_SESSION_SECONDS)")
        seconds = limit
    if grant_until is not None:
        left = int((grant_until - now).total_seconds())
        if left < MIN_SESSION_SECONDS:
            raise Forbidden(
                f"your grant for role {role.name} ends in {max(left, 0)} seconds, less than STS's "
                f"{MIN_SESSION_SECONDS}-second minimum session; request access again"
            )
        if seconds > left:
            warnings.append(f"credentials end with your grant at {grant_until.isoformat()}")
            seconds = left
    return seconds, warnings


def credential_process_document(session: AssumedSession) -> dict[str, Any]:
    """Exactly what a ``credential_process`` prints."""
    return {
        "Version": 1,
        "AccessKeyId": session.access_key_id,
        "SecretAccessKey": session.secret_access_key,
        "SessionToken": session.session_token,
        "Expiration": session.expiration.astimezone(UTC).isoformat(),
    }


def role_summary(role: Role, decision: Decision, identity: Identity | None = None) -> dict[str, Any]:
    return {
        "break_glass": bool(identity and role.break_glass and role.break_glass.may(identity)),
        "scopes": list(role.scopes),
        "name": role.name,
        "account_id": role.account.id,
        "account": role.account.name,
        "role_arn": role.role_arn,
        "region": role.account.region,
        "max_duration_seconds": role.max_duration_seconds,
        "console": role.console,
        "require_mfa": role.require_mfa,
        "access": decision.access,
    }


class Broker:
    def __init__(
        self,
        *,
        policy: Callable[[], AccessPolicy],
        sts: StsGateway,
        audit: AuditLog,
        grants: GrantStore | None = None,
        clock: Callable[[], datetime] = utcnow,
        session_limit_seconds: int = ROLE_CHAINING_LIMIT_SECONDS,
        revoked: Callable[[Identity], None] | None = None,
        issued: SessionRecorder | None = None,
    ) -> None:
        self._revoked = revoked  # raises Forbidden while a revocation of the person is in force
        self._issued = issued  # records where and until when a session lives, for the kill switch
        self._policy = policy
        self._sts = sts
        self._audit = audit
        self._grants = grants or NoGrants()
        self._clock = clock
        self._limit = session_limit_seconds

    def decisions(self, identity: Identity) -> list[tuple[Role, Decision]]:
        """Decisions for every role the caller could use or request."""
        now = self._clock()
        candidates = self._policy().candidate_roles(identity)
        grants = self._grants.active_grants(identity.principal.key, now) if any(
            role.approval for role in candidates) else {}
        result = []
        for role in candidates:
            decision = decide(role, identity, grant_until=grants.get(role.name), now=now)
            if decision.listed:
                result.append((role, decision))
        return result

    def roles(self, identity: Identity) -> list[dict[str, Any]]:
        return [role_summary(role, decision, identity) for role, decision in self.decisions(identity)]

    def config(self, identity: Identity, broker_url: str) -> str:
        usable = [role for role, decision in self.decisions(identity) if decision.allowed]
        return config_fragment(usable, broker_url)

    def role(self, role_name: str, identity: Identity) -> Role:
        """The policy's role of that name as ``identity`` may learn of it; ``NotFound`` when there is none
        (or none of its rules is of the caller's issuer)."""
        return self._policy().role_for(role_name, identity)

    def decide(self, identity: Identity, role_name: str,
               scope: str | None = None) -> tuple[Role, Decision, ActiveGrant | None]:
        role = self.role(role_name, identity)
        if scope is not None:
            role.scope(scope)  # a scope the role does not list is a 400 naming the ones it does
        now = self._clock()
        grant = None
        if role.approval is not None:
            grant = self._grants.active_grant(identity.principal.key, role.name, now, scope)
            if grant is None and scope is not None:
                other = self._grants.active_grant(identity.principal.key, role.name, now)
                if other is not None and other.scope is not None:
                    raise Forbidden(f"your grant for role {role.name} ({other.request_id}) is for scope "
                                    f"{other.scope} only; ask with that scope or none")
        until = grant.until if grant is not None else None
        return role, decide(role, identity, grant_until=until, now=now), grant

    def assume(
        self,
        identity: Identity,
        role_name: str,
        *,
        requested_seconds: int | None,
        context: CallContext,
        action: str = "credentials",
        scope: str | None = None,
    ) -> Issued:
        """Decide, then call STS with the session stamped (and scoped); audit either way."""
        started = time.monotonic()
        role, decision, grant = self.decide(identity, role_name, scope)
        # A grant counts only if the decision rests on it (an approval role).
        grant = grant if decision.allowed else None
        # A grant for a scope gives only that scope, whether or not the call names it.
        scope = grant.scope if grant is not None and grant.scope else scope

        def audit(outcome: str, reason: str, **extra: Any) -> None:
            self._audit.record(action=action, outcome=outcome, reason=reason, context=context,
                               identity=identity, role=role.name, account=role.account.id,
                               rule=decision.rule, claims_used=dict(decision.claims_used) or None,
                               requested_seconds=requested_seconds, grant=grant.request_id if grant else None,
                               scope=scope, break_glass=True if grant and grant.break_glass else None,
                               latency_ms=_ms(started), **extra)

        if not decision.allowed:
            audit("denied", decision.reason)
            raise Forbidden(decision.reason)
        if action == "console" and not role.console:
            reason = f"role {role.name} does not allow console sign-in (console: false in the policy)"
            audit("denied", reason)
            raise Forbidden(reason)
        session_name = session_name_for(identity)
        try:
            seconds, warnings = session_duration(
                requested_seconds, role, limit=self._limit, grant_until=grant.until if grant else None,
                now=self._clock())
            session = self._sts.assume(
                role_arn=role.role_arn,
                session_name=session_name,
                source_identity=session_name,
                tags=session_tags_for(identity) + grant_tags(grant),
                external_id=role.account.external_id,
                duration_seconds=seconds,
                session_policy=_session_policy(role, scope),
            )
            if self._issued is not None:
                # Before the refusal check: a revocation that does not stop
                # these credentials was recorded after this, so it reads it.
                self._issued(identity, role.account.id, role.role_arn, session.source_identity or session_name,
                             session.expiration)
            if self._revoked is not None:
                # After AssumeRole, not before: a revocation recorded meanwhile
                # keeps these credentials here; one recorded earlier is seen.
                # Either way its cutoff covers every session that left before.
                self._revoked(identity)
            if grant is not None:
                # Recorded before the credentials leave: if the grant was
                # revoked meanwhile (or is full), nobody ever holds them.
                self._grants.record_session(grant, _issued_session(grant, role, session, session_name,
                                                                   action, self._clock()), now=self._clock())
        except RolebrokerError as exc:
            audit("denied" if isinstance(exc, Revoked) else "error", str(exc), session_name=session_name)
            raise
        audit("allowed", decision.reason, session_name=session_name, duration_seconds=seconds,
              assumed_role_arn=session.assumed_role_arn)
        return Issued(role=role, session=session, session_name=session_name, seconds=seconds, warnings=warnings,
                      grant=grant, scope=scope)

    def credentials(
        self,
        identity: Identity,
        role_name: str,
        *,
        requested_seconds: int | None,
        broker_url: str,
        context: CallContext,
        scope: str | None = None,
    ) -> dict[str, Any]:
        issued = self.assume(identity, role_name, requested_seconds=requested_seconds, context=context, scope=scope)
        role, session = issued.role, issued.session
        return {
            "role": role.name,
            "scope": issued.scope,
            "role_arn": role.role_arn,
            "assumed_role_arn": session.assumed_role_arn,
            "source_identity": session.source_identity or issued.session_name,
            "duration_seconds": issued.seconds,
            "warnings": issued.warnings,
            "credentials": credential_process_document(session),
            "profile": {"name": role.name, "config": profile_section(role, broker_url)},
        }


def _session_policy(role: Role, scope: str | None) -> SessionPolicy | None:
    if scope is None:
        return None
    chosen = role.scope(scope)
    return SessionPolicy(name=chosen.name, policy=chosen.policy, policy_arns=chosen.policy_arns)


def _issued_session(grant: ActiveGrant, role: Role, session: AssumedSession, session_name: str, kind: str,
                    now: datetime) -> IssuedSession:
    from chalicelib.jit.grants import IssuedSession

    return IssuedSession(request_id=grant.request_id, role=role.name, role_arn=role.role_arn,
                         account_id=role.account.id, assumed_role_arn=session.assumed_role_arn,
                         access_key_id=session.access_key_id, session_name=session.source_identity or session_name,
                         issued_at=now, expires_at=session.expiration, kind=kind)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
