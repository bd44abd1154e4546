"""Access requests as plain data: what the store reads and writes, what the
API and Slack show.

A request has a ``kind``:

* ``access``: asks approvers for one or more roles (one request, one
  decision, a grant per role), optionally for a named scope, a ticket, and a
  scheduled start;
* ``break_glass``: approved the moment it is filed, by the requester alone,
  for one role; its grant is tagged ``rolebroker:breakglass`` and it waits
  for an approver's ``review``;
* ``extension``: asks approvers to lengthen the grant of its ``parent``.

While pending, a request moves through the ``plan`` it was filed under:
ordered stages, each needing ``required`` distinct approvers. ``votes`` are
the approvals so far; ``stage`` is the index of the stage now deciding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chalicelib.access.workflow import Plan

PENDING, APPROVED, DENIED, EXPIRED, CANCELLED, REVOKED = (
    "pending", "approved", "denied", "expired", "cancelled", "revoked")
ACCESS, BREAK_GLASS, EXTENSION = "access", "break_glass", "extension"
KINDS = (ACCESS, BREAK_GLASS, EXTENSION)
REVIEW_PENDING, REVIEW_DONE = "pending", "done"
SINGLE_STAGE = Plan((("approval", 1),))


@dataclass(frozen=True)
class Vote:
    """One approval: who, in which stage (index into the plan), when."""

    who: str
    stage: int
    at: datetime


@dataclass(frozen=True)
class Review:
    """The post-access review a break-glass waits for."""

    status: str  # pending | done
    by: str | None = None
    at: datetime | None = None
    note: str | None = None


@dataclass(frozen=True)
class SlackCopy:
    """A Slack message about a request, to update on every change: where, and for whom."""

    channel: str
    ts: str
    audience: str = "approvers"  # approvers (with buttons) | notify | security


@dataclass(frozen=True)
class AccessRequest:
    id: str
    role: str
    requester: str
    duration_seconds: int
    reason: str
    status: str
    created_at: datetime
    pending_until: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    note: str | None = None
    grant_until: datetime | None = None
    requester_slack: str | None = None
    messages: tuple[SlackCopy, ...] = ()
    ticket: str | None = None
    requester_iss: str | None = None
    requester_sub: str | None = None
    slot: int | None = None  # the requester's open-request slot it holds while pending
    # A requester of an issuer that declares ``approval_identity_claim``: their default-issuer person.
    requester_person: str | None = None
    kind: str = ACCESS
    roles: tuple[str, ...] = ()
    scope: str | None = None
    start_at: datetime | None = None
    grant_from: datetime | None = None
    plan: Plan = SINGLE_STAGE
    stage: int = 0
    votes: tuple[Vote, ...] = ()
    approver_subs: frozenset[str] = frozenset()
    approver_persons: frozenset[str] = frozenset()  # the default-issuer person of each approver, where known
    review: Review | None = None
    parent: str | None = None
    extended_seconds: int = 0
    auto_extended_seconds: int = 0
    extensions: int = 0
    holds_lock: bool = False
    narrowed_from: tuple[str, ...] = ()
    _approvers: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.roles:
            object.__setattr__(self, "roles", (self.role,))
        object.__setattr__(self, "_approvers", frozenset(vote.who for vote in self.votes))

    @property
    def approvers(self) -> frozenset[str]:
        """Principal keys of everyone who approved so far (any stage)."""
        return self._approvers

    @property
    def person(self) -> str:
        """The requester as one person across issuers: their default-issuer person where known, else
        their principal. One break-glass lock and one "is this the requester?" answer per person."""
        return self.requester_person or self.requester

    @property
    def votes_in_stage(self) -> int:
        return sum(1 for vote in self.votes if vote.stage == self.stage)

    def status_at(self, now: datetime) -> str:
        if self.status == PENDING and now >= self.pending_until:
            return EXPIRED
        if self.status == APPROVED and self.grant_until is not None and now >= self.grant_until:
            return EXPIRED
        return self.status

    def progress(self) -> dict[str, Any]:
        """Where a pending request stands: stage (1-based), its name, approvals in it and how many it needs."""
        name, required = self.plan.stages[min(self.stage, len(self.plan.stages) - 1)]
        return {"stage": self.stage + 1, "stages": len(self.plan.stages), "stage_name": name,
                "approvals": self.votes_in_stage, "required": required}

    def to_dict(self, now: datetime) -> dict[str, Any]:
        status = self.status_at(now)
        return {
            "id": self.id,
            "kind": self.kind,
            "role": self.role,
            "roles": list(self.roles),
            "requester": self.requester,
            "duration_seconds": self.duration_seconds,
            "reason": self.reason,
            "ticket": self.ticket,
            "scope": self.scope,
            "status": status,
            "created_at": self.created_at.isoformat(),
            "pending_until": self.pending_until.isoformat(),
            "start_at": _iso_or_none(self.start_at),
            "decided_by": self.decided_by,
            "decided_at": _iso_or_none(self.decided_at),
            "note": self.note,
            "grant_from": _iso_or_none(self.grant_from),
            "grant_until": _iso_or_none(self.grant_until),
            "approvals": [{"who": v.who, "stage": self.plan.stages[min(v.stage, len(self.plan.stages) - 1)][0],
                           "at": v.at.isoformat()} for v in self.votes],
            "progress": self.progress() if status == PENDING else None,
            "review": None if self.review is None else {
                "status": self.review.status, "by": self.review.by, "at": _iso_or_none(self.review.at),
                "note": self.review.note},
            "parent": self.parent,
            "extended_seconds": self.extended_seconds,
            "narrowed_from": list(self.narrowed_from) or None,
        }


def _iso_or_none(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
