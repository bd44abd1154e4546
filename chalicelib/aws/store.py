"""The one adapter to DynamoDB: access requests, their history, and grants.

One table, keyed ``pk``/``sk``:

* ``REQUEST#<id>`` / ``STATE``: the request and its current status. A sparse
  index (``gsi_pending``) holds pending requests (partition ``pending``) for
  approvers, and break-glass accesses awaiting their review (partition
  ``review``); another (``gsi_requester``) lists a person's own requests.
* ``REQUEST#<id>`` / ``EVENT#<step>``: the append-only history (who moved
  it from which status to which, when, and why). Events are written with
  ``attribute_not_exists`` and never updated; the step (created ``00``,
  each approval before the last ``00#v<stage>#<n>``, decided ``01``, each
  extension ``01#x<n>``, revoked ``02``, reviewed ``03``) makes a second
  event for the same step impossible to record.
* ``GRANT#<principal>`` / ``ROLE#<role>#<request id>``: an approved grant
  for one role (a request for several roles has one each): when it starts
  and ends, its ticket, scope and whether it is a break-glass; DynamoDB's
  TTL deletes it a day after it ends.
* ``IDENTITY#<principal>`` / ``SNAPSHOT``: the groups and claims from that
  person's newest verified token (by ``iat``), so Slack (which knows only an
  email) can be judged by the same policy; it expires after a working day.
* ``REQUEST#<id>`` / ``SESSION#<issued at>#<access key id>``: each STS
  session issued under the request's grant (ARNs, key id, times; never a
  secret), the evidence that ties the grant to CloudTrail. Written in one
  transaction with a counter on the request that is conditional on the grant
  still being approved, started, unexpired and under ``MAX_SESSIONS_PER_GRANT``.
* ``OPEN#<principal>`` / ``SLOT#<n>``: the open-request slots a person holds,
  one per pending request, at most ``ROLEBROKER_MAX_OPEN_REQUESTS``. A
  request takes a free slot (never used, or its request's pending time over)
  in the transaction that creates it, and gives it back in the one that
  decides or cancels it, so two racing creates cannot exceed the cap.
* ``BREAKGLASS#<person>`` / ``LOCK``: held from a break-glass until an
  approver reviews it (for roles that say so); taken with
  ``attribute_not_exists``, so of two break-glasses at once exactly one wins.
  Every break-glass, into any role, is written only while it is free.
  Keyed by the requester's person (``AccessRequest.person``), so one person's
  accounts at two linked issuers share one lock.
* ``TASK#<nonce>`` / ``NONCE``: a background task that has run (see
  ``chalicelib/chat/tasks.py``), written with ``attribute_not_exists`` so a
  task runs at most once; TTL'd an hour after the task expires.

``<principal>`` and every ``requester``/``who`` is a principal key
(``chalicelib/identity/principal.py``). A request also keeps the requester's
``iss`` and ``sub`` and, for a requester of an issuer that declares
``approval_identity_claim``, their default-issuer person
(``requester_person``).

Every transition is one ``TransactWriteItems``: the request's conditional
update, the event and (on approval) the grants succeed or fail together.
The conditions carry the rules that must hold even against a buggy or
racing caller: only a pending request moves, an approval must come before
the pending timeout, the approver (or reviewer) is not the requester
(neither the same principal, nor the same ``iss`` + ``sub``, nor the same
person of the default issuer: the approver's person is neither ``requester``
nor ``requester_person``) and has not approved the request before (again by
principal, by ``iss`` + ``sub`` and by person: ``approvers``,
``approver_subs``, ``approver_persons``), and each approval
names the stage and count it saw, so two approvals at once cannot both
take the same place: one wins, the other is refused and counts only after
reading the request again. A transaction holds at most
``MAX_TRANSACTION_ITEMS`` writes; the store checks before it sends.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.access.workflow import Plan
from chalicelib.aws import items as it
from chalicelib.aws.conditional import conditional_write
from chalicelib.aws.items import iso, micros, n, s
from chalicelib.exceptions import (
    BreakGlassLocked,
    Conflict,
    DependencyDown,
    Forbidden,
    NotFound,
    Revoked,
    SlotTaken,
    Throttled,
    TooManyWrites,
)
from chalicelib.jit.grants import ActiveGrant, IssuedSession
from chalicelib.jit.model import (
    ACCESS,
    APPROVED,
    BREAK_GLASS,
    CANCELLED,
    DENIED,
    EXPIRED,
    PENDING,
    REVIEW_DONE,
    REVIEW_PENDING,
    REVOKED,
    SINGLE_STAGE,
    AccessRequest,
    Review,
)

LOG = logging.getLogger(__name__)

REVIEW_PARTITION = "review"
GRANT_TTL_GRACE = timedelta(days=1)
NONCE_GRACE_SECONDS = 3600
MAX_TRANSACTION_ITEMS = 100  # DynamoDB's TransactWriteItems limit
_STEPS = {None: "00", PENDING: "01", APPROVED: "02"}
_THROTTLING = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
               "TransactionConflictException"}
# A cancelled transaction names a reason per item, in codes of their own
# (not the exception names above): a race or throttling is worth a retry.
_RETRYABLE_REASONS = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
# Sessions one grant may issue (and the evidence lists): a grant of at most
# seven days, renewed by the client each 45 minutes, stays far below it.
MAX_SESSIONS_PER_GRANT = 1000
IssSub = tuple[str, str]  # a token's iss and sub


@dataclass(frozen=True)
class PageKey:
    """A position in a list of requests: the last one shown (or looked at)."""

    request_id: str
    created_at: str  # as stored, so the position is exact


def page_key(request: AccessRequest) -> PageKey:
    return PageKey(request.id, iso(request.created_at))


@dataclass(frozen=True)
class IdentitySnapshot:
    """What a person's newest verified token said, for judging them in Slack."""

    groups: frozenset[str]
    claims: Mapping[str, Any]


@dataclass(frozen=True)
class RequestEvent:
    at: datetime
    who: str
    from_status: str | None
    to_status: str
    note: str | None = None


@dataclass(frozen=True)
class NewRequest:
    """What a new request holds beyond its requester and times (the optional parts of ``create``)."""

    roles: tuple[str, ...] = ()
    ticket: str | None = None
    scope: str | None = None
    start_at: datetime | None = None
    plan: Plan = SINGLE_STAGE
    kind: str = ACCESS
    parent: str | None = None


@dataclass(frozen=True)
class ApprovalStep:
    """One approval as the approver saw the request: the stage and count it takes the place of,
    and whether it completes the plan (then the grants are written)."""

    approver: str
    approver_sub: IssSub | None
    now: datetime
    next_stage: int
    next_count: int
    final: bool
    roles: tuple[str, ...] | None = None  # narrowed to these (a subset), or None: all of them
    approver_person: str | None = None  # the approver's default-issuer person, where known


def create_table(client: Any, name: str) -> None:
    """Create the table (local stack and tests; prod uses infra/ templates)."""
    try:
        client.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in
                                  ("pk", "sk", "pending_pk", "requester", "created_at")],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=[
                {"IndexName": "gsi_pending", "Projection": {"ProjectionType": "ALL"},
                 "KeySchema": [{"AttributeName": "pending_pk", "KeyType": "HASH"},
                               {"AttributeName": "created_at", "KeyType": "RANGE"}]},
                {"IndexName": "gsi_requester", "Projection": {"ProjectionType": "ALL"},
                 "KeySchema": [{"AttributeName": "requester", "KeyType": "HASH"},
                               {"AttributeName": "created_at", "KeyType": "RANGE"}]},
            ],
        )
    except client.exceptions.ResourceInUseException:
        return
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    client.update_time_to_live(TableName=name,
                               TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at_epoch"})


class AccessStore:
    """Requests, grants and identity snapshots in DynamoDB (low-level client)."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    # -- reads

    def active_grants(self, subject: str, now: datetime) -> Mapping[str, datetime]:
        """Role -> the end of the longest grant of ``subject`` that is in force at ``now``."""
        found: dict[str, datetime] = {}
        for grant in map(it.grant, self._query(KeyConditionExpression="pk = :pk",
                                               ExpressionAttributeValues={":pk": s(f"GRANT#{subject}")})):
            if grant.live_at(now) and grant.until > found.get(grant.role, now):
                found[grant.role] = grant.until
        return found

    def active_grant(self, subject: str, role: str, now: datetime, scope: str | None = None) -> ActiveGrant | None:
        """The caller's grant for ``role`` in force at ``now`` that fits ``scope`` and lasts longest.

        A grant for the whole role fits any scope (a scope only narrows); a
        grant for a scope fits only that scope, or no scope named (its own
        is then applied). The whole role's grants come first.
        """
        items = self._query(KeyConditionExpression="pk = :pk AND begins_with(sk, :role)",
                            ExpressionAttributeValues={":pk": s(f"GRANT#{subject}"), ":role": s(f"ROLE#{role}#")})
        live = [g for g in map(it.grant, items) if g.role == role and g.live_at(now)
                and (g.scope is None or scope is None or g.scope == scope)]
        return max(live, key=lambda g: (g.scope is None, g.until)) if live else None

    def get(self, request_id: str) -> AccessRequest:
        try:
            answer = self._client.get_item(TableName=self._table, ConsistentRead=True,
                                           Key={"pk": s(f"REQUEST#{request_id}"), "sk": s("STATE")})
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc) from exc
        if "Item" not in answer:
            raise NotFound(f"no access request {request_id!r}")
        return it.request(answer["Item"])

    def history(self, request_id: str) -> list[RequestEvent]:
        items = self._query(KeyConditionExpression="pk = :pk AND begins_with(sk, :e)",
                            ExpressionAttributeValues={":pk": s(f"REQUEST#{request_id}"), ":e": s("EVENT#")})
        return [RequestEvent(at=datetime.fromisoformat(i["at"]["S"]), who=i["who"]["S"],
                             from_status=i.get("from", {}).get("S"), to_status=i["to"]["S"],
                             note=i.get("note", {}).get("S")) for i in items]

    def pending_page(self, *, after: PageKey | None, limit: int, now: datetime, created_after: datetime,
                     partition: str = PENDING) -> tuple[list[AccessRequest], PageKey | None]:
        """Requests waiting for someone, oldest first, and where DynamoDB stopped: pending ones
        still open at ``now`` (``partition`` pending), or break-glasses awaiting review (``review``).

        Requests that timed out stay in the sparse index until the sweep
        marks them expired, so the query starts at ``created_after`` (the
        longest pending timeout ago) and filters out the rest, instead of
        wading through every request that ever expired. Reviews wait however
        long it takes.
        """
        oldest = iso(created_after)
        kwargs: dict[str, Any] = {"IndexName": "gsi_pending", "Limit": limit}
        if partition == PENDING:
            kwargs.update(KeyConditionExpression="pending_pk = :p AND created_at > :oldest",
                          FilterExpression="pending_until > :now",
                          ExpressionAttributeValues={":p": s(PENDING), ":oldest": s(oldest), ":now": s(iso(now))})
        else:
            kwargs.update(KeyConditionExpression="pending_pk = :p", ExpressionAttributeValues={":p": s(partition)})
        if after is not None and (partition != PENDING or after.created_at > oldest):
            kwargs["ExclusiveStartKey"] = {"pending_pk": s(partition), **_start_key(after)}
        return self._request_page(**kwargs)

    def due_for_expiry(self, now: datetime, created_after: datetime, limit: int,
                       max_reads: int = 5) -> list[AccessRequest]:
        """Pending requests whose pending time is over, oldest first (for the sweep that marks them
        expired): at most ``limit`` of them, in at most ``max_reads`` reads of the index, so one run is
        bounded work and the next goes on where requests still wait."""
        found: list[AccessRequest] = []
        after: PageKey | None = None
        for _ in range(max_reads):
            kwargs: dict[str, Any] = {
                "IndexName": "gsi_pending", "Limit": limit,
                "KeyConditionExpression": "pending_pk = :p AND created_at > :oldest",
                "FilterExpression": "pending_until <= :now",
                "ExpressionAttributeValues": {":p": s(PENDING), ":oldest": s(iso(created_after)), ":now": s(iso(now))}}
            if after is not None:
                kwargs["ExclusiveStartKey"] = {"pending_pk": s(PENDING), **_start_key(after)}
            batch, after = self._request_page(**kwargs)
            found += batch
            if after is None or len(found) >= limit:
                break
        return found[:limit]

    def requester_page(self, requester: str, *, after: PageKey | None, limit: int,
                       kind: str | None = None) -> tuple[list[AccessRequest], PageKey | None]:
        """A person's own requests (of ``kind``, if given), newest first, and where DynamoDB stopped."""
        values: dict[str, Any] = {":r": s(requester)}
        kwargs: dict[str, Any] = {
            "IndexName": "gsi_requester", "Limit": limit, "ScanIndexForward": False,
            "KeyConditionExpression": "requester = :r", "ExpressionAttributeValues": values,
        }
        if kind is not None:
            values[":kind"] = s(kind)
            kwargs["ExpressionAttributeNames"] = {"#kind": "kind"}
            kwargs["FilterExpression"] = ("#kind = :kind" if kind != ACCESS
                                          else "attribute_not_exists(#kind) OR #kind = :kind")
        if after is not None:
            kwargs["ExclusiveStartKey"] = {"requester": s(requester), **_start_key(after)}
        return self._request_page(**kwargs)

    def open_requests(self, requester: str, now: datetime) -> dict[int, str]:
        """The open-request slots ``requester`` holds at ``now``: slot -> request id."""
        items = self._query(KeyConditionExpression="pk = :pk", ConsistentRead=True,
                            ExpressionAttributeValues={":pk": s(f"OPEN#{requester}")})
        return {int(i["sk"]["S"].removeprefix("SLOT#")): i["request_id"]["S"] for i in items
                if int(i["until_us"]["N"]) > micros(now)}

    def break_glass_lock(self, person: str) -> str | None:
        """The break-glass request whose review ``person`` (``AccessRequest.person``) waits for, if any."""
        try:
            answer = self._client.get_item(TableName=self._table, ConsistentRead=True,
                                           Key={"pk": s(f"BREAKGLASS#{person}"), "sk": s("LOCK")})
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc) from exc
        item = answer.get("Item")
        return item["request_id"]["S"] if item else None

    # -- writes: filing

    def create(self, *, role: str, requester: str, duration_seconds: int, reason: str, now: datetime,
               pending_seconds: int, requester_slack: str | None = None, requester_sub: IssSub | None = None,
               slot: int | None = None, spec: NewRequest | None = None,
               requester_person: str | None = None) -> AccessRequest:
        """Store a pending request; with ``slot``, also take that open-request slot of the requester's,
        which the database gives only if it is free (``SlotTaken`` otherwise)."""
        spec = spec or NewRequest()
        request = self._new(role, requester, duration_seconds, reason, now, spec, requester_slack, requester_sub,
                            status=PENDING, pending_until=now + timedelta(seconds=pending_seconds), slot=slot,
                            requester_person=requester_person)
        item = self._state_item(request)
        item["pending_pk"] = s(PENDING)
        item["plan"] = it.plan_value(spec.plan)
        item["stage_now"], item["votes_in_stage"], item["auto_extended_seconds"] = n(0), n(0), n(0)
        items = [
            {"Put": {"TableName": self._table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}},
            self._event(request.id, now, requester, None, PENDING, reason),
        ]
        if slot is not None:
            item["open_slot"] = n(slot)
            items.append(self._take_slot(request, now))
        self._transact(items, slot_index=2 if slot is not None else None)
        return request

    def break_glass(self, *, role: str, requester: str, duration_seconds: int, reason: str, ticket: str,
                    now: datetime, requester_slack: str | None = None, requester_sub: IssSub | None = None,
                    lock: bool = True, requester_person: str | None = None) -> AccessRequest:
        """Store a break-glass: approved by its requester at once, and its grant, only while the requester's
        (person's) break-glass lock is free (no review outstanding); with ``lock`` it also takes that lock."""
        until = now + timedelta(seconds=duration_seconds)
        request = self._new(role, requester, duration_seconds, reason, now, NewRequest(ticket=ticket, kind=BREAK_GLASS),
                            requester_slack, requester_sub, status=APPROVED, pending_until=now,
                            requester_person=requester_person)
        request = replace(request, decided_by=requester, decided_at=now, grant_from=now, grant_until=until,
                          holds_lock=lock, review=Review(REVIEW_PENDING))
        item = self._state_item(request)
        item.update(pending_pk=s(REVIEW_PARTITION), review_status=s(REVIEW_PENDING), decided_by=s(requester),
                    decided_at=s(iso(now)), grant_from=s(iso(now)), grant_until=s(iso(until)),
                    holds_lock={"BOOL": lock}, auto_extended_seconds=n(0))
        items: list[dict[str, Any]] = [
            {"Put": {"TableName": self._table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}},
            self._event(request.id, now, requester, None, APPROVED, f"break-glass ({ticket}): {reason}"),
            {"Put": {"TableName": self._table, "Item": it.grant_item(
                request, role, approver=requester, grant_from=now, grant_until=until, ttl_grace=GRANT_TTL_GRACE,
                break_glass=True)}},
        ]
        lock_key = {"pk": s(f"BREAKGLASS#{request.person}"), "sk": s("LOCK")}
        # Every break-glass needs the person's lock free; only a blocking role's takes it.
        if lock:
            items.append({"Put": {"TableName": self._table, "ConditionExpression": "attribute_not_exists(pk)",
                                  "Item": {**lock_key, "request_id": s(request.id), "role": s(role),
                                           "at": s(iso(now))}}})
        else:
            items.append({"ConditionCheck": {"TableName": self._table, "Key": lock_key,
                                             "ConditionExpression": "attribute_not_exists(pk)"}})
        self._transact(items + self._not_revoked(requester, requester_person), lock_index=3,
                       revoked_from=len(items))
        return request

    def _new(self, role: str, requester: str, duration_seconds: int, reason: str, now: datetime, spec: NewRequest,
             requester_slack: str | None, requester_sub: IssSub | None, *, status: str, pending_until: datetime,
             slot: int | None = None, requester_person: str | None = None) -> AccessRequest:
        iss, sub = requester_sub or (None, None)
        return AccessRequest(id=uuid.uuid4().hex[:12], role=role, requester=requester,
                             duration_seconds=duration_seconds, reason=reason, status=status, created_at=now,
                             pending_until=pending_until, requester_slack=requester_slack, requester_iss=iss,
                             requester_sub=sub, slot=slot, requester_person=requester_person, kind=spec.kind,
                             roles=spec.roles or (role,), ticket=spec.ticket, scope=spec.scope,
                             start_at=spec.start_at, plan=spec.plan, parent=spec.parent)

    @staticmethod
    def _state_item(request: AccessRequest) -> it.Item:
        item: it.Item = {
            "pk": s(f"REQUEST#{request.id}"), "sk": s("STATE"), "id": s(request.id), "role": s(request.role),
            "requester": s(request.requester), "duration_seconds": n(request.duration_seconds),
            "reason": s(request.reason), "status": s(request.status), "created_at": s(iso(request.created_at)),
            "pending_until": s(iso(request.pending_until)), "kind": s(request.kind),
            "roles": it.strings(request.roles),
        }
        optional = {"requester_slack": request.requester_slack, "requester_person": request.requester_person,
                    "ticket": request.ticket, "scope": request.scope,
                    "parent": request.parent, "start_at": iso(request.start_at) if request.start_at else None}
        item.update({key: s(value) for key, value in optional.items() if value})
        if request.requester_iss and request.requester_sub:
            item["requester_iss"], item["requester_sub"] = s(request.requester_iss), s(request.requester_sub)
        return item

    def _take_slot(self, request: AccessRequest, now: datetime) -> dict[str, Any]:
        # Free when never used or when its request's pending time is over
        # (a request that times out is never written to again).
        # Microseconds, so "free" here means exactly what status_at's "expired" means.
        return {"Put": {
            "TableName": self._table,
            "Item": {"pk": s(f"OPEN#{request.requester}"), "sk": s(f"SLOT#{request.slot:02d}"),
                     "request_id": s(request.id), "until_us": n(micros(request.pending_until)),
                     "expires_at_epoch": n((request.pending_until + GRANT_TTL_GRACE).timestamp())},
            "ConditionExpression": "attribute_not_exists(pk) OR until_us <= :now",
            "ExpressionAttributeValues": {":now": n(micros(now))},
        }}

    def _release_slot(self, request: AccessRequest) -> list[dict[str, Any]]:
        """The transaction item that frees the request's slot as it leaves ``pending`` (if it holds one)."""
        if request.slot is None:
            return []
        return [{"Delete": {
            "TableName": self._table,
            "Key": {"pk": s(f"OPEN#{request.requester}"), "sk": s(f"SLOT#{request.slot:02d}")},
            # Only while it is still ours: after our pending time another request may hold it.
            "ConditionExpression": "request_id = :id",
            "ExpressionAttributeValues": {":id": s(request.id)},
        }}]

    # -- writes: deciding

    def approve(self, request: AccessRequest, *, approver: str, now: datetime, grant_until: datetime,
                approver_sub: IssSub | None = None, grant_from: datetime | None = None,
                roles: tuple[str, ...] | None = None, approver_person: str | None = None) -> None:
        """The approval that completes the plan: approve and write a grant per role; the database
        refuses self-approval, a second approval by the same person, and a place already taken."""
        grant_from = grant_from or now
        vote = ApprovalStep(approver, approver_sub, now, request.stage, request.votes_in_stage + 1, True, roles,
                            approver_person)
        final_roles = roles or request.roles
        update = self._approval_update(request, vote, {
            "#status": s(APPROVED), "decided_by": s(approver), "decided_at": s(iso(now)),
            "grant_until": s(iso(grant_until)), "grant_from": s(iso(grant_from))})
        grants = [{"Put": {"TableName": self._table, "Item": it.grant_item(
            request, role, approver=approver, grant_from=grant_from, grant_until=grant_until,
            ttl_grace=GRANT_TTL_GRACE)}} for role in final_roles]
        self._transact_as(approver, approver_person, [
            update, self._event(request.id, now, approver, PENDING, APPROVED, _narrowing_note(request, roles)),
            *grants, *self._release_slot(request)])

    def vote(self, request: AccessRequest, approval: ApprovalStep, note: str) -> None:
        """An approval that does not complete the plan: it counts in its stage (or completes the
        stage and moves the request to the next), under the same conditions as ``approve``."""
        event = self._event(request.id, approval.now, approval.approver, PENDING, PENDING, note,
                            step=f"00#v{request.stage:02d}#{request.votes_in_stage:02d}")
        self._transact_as(approval.approver, approval.approver_person, [self._approval_update(request, approval, {}),
                                                                         event])

    def extend_by_approval(self, extension: AccessRequest, parent: AccessRequest, *, approver: str,
                           approver_sub: IssSub | None, now: datetime, new_until: datetime,
                           approver_person: str | None = None) -> None:
        """The approval that completes an extension request: the extension is approved and its
        parent's grants move to ``new_until``, provided the parent's grant did not change meanwhile."""
        vote = ApprovalStep(approver, approver_sub, now, extension.stage, extension.votes_in_stage + 1, True,
                            approver_person=approver_person)
        update = self._approval_update(extension, vote, {
            "#status": s(APPROVED), "decided_by": s(approver), "decided_at": s(iso(now)),
            "grant_until": s(iso(new_until))})
        self._transact_as(approver, approver_person, [
            update, self._event(extension.id, now, approver, PENDING, APPROVED, None),
            *self._extension_items(parent, extension.duration_seconds, new_until, now, approver,
                                   f"extended by {extension.duration_seconds} s (request {extension.id}): "
                                   f"{extension.reason}"),
            *self._release_slot(extension)])

    def _approval_update(self, request: AccessRequest, vote: ApprovalStep,
                         sets: dict[str, dict[str, str]]) -> dict[str, Any]:
        values: dict[str, Any] = {
            ":pending": s(PENDING), ":now": s(iso(vote.now)), ":who": s(vote.approver),
            ":who_set": {"SS": [vote.approver]}, ":stage": n(request.stage), ":count": n(request.votes_in_stage),
            ":next_stage": n(vote.next_stage), ":next_count": n(vote.next_count),
            ":vote": {"L": [it.vote_value(vote.approver, request.stage, vote.now)]}, ":empty": {"L": []},
        }
        condition = ("#status = :pending AND pending_until > :now AND requester <> :who "
                     "AND (attribute_not_exists(approvers) OR NOT contains(approvers, :who))")
        adds = ["approvers :who_set"]
        if vote.approver_sub:
            condition += (" AND NOT (requester_iss = :iss AND requester_sub = :sub)"
                          " AND (attribute_not_exists(approver_subs) OR NOT contains(approver_subs, :iss_sub))")
            values.update({":iss": s(vote.approver_sub[0]), ":sub": s(vote.approver_sub[1]),
                           ":iss_sub": s(it.sub_key(*vote.approver_sub)),
                           ":iss_sub_set": {"SS": [it.sub_key(*vote.approver_sub)]}})
            adds.append("approver_subs :iss_sub_set")
        if vote.approver_person:
            condition += _not_the_person(vote.approver, vote.approver_person, values)
            # Nor a person who approved already, under any of their principals.
            if vote.approver_person != vote.approver:
                condition += " AND (attribute_not_exists(approvers) OR NOT contains(approvers, :person))"
            condition += " AND (attribute_not_exists(approver_persons) OR NOT contains(approver_persons, :person))"
            values[":person_set"] = {"SS": [vote.approver_person]}
            adds.append("approver_persons :person_set")
        # The place this approval takes: the stage and count its approver saw.
        place = "stage_now = :stage AND votes_in_stage = :count"
        condition += f" AND ({place})" if request.stage or request.votes_in_stage else \
            f" AND (attribute_not_exists(stage_now) OR ({place}))"
        assignments = ["stage_now = :next_stage", "votes_in_stage = :next_count",
                       "votes = list_append(if_not_exists(votes, :empty), :vote)"]
        for i, (name, value) in enumerate(sets.items()):
            values[f":v{i}"] = value
            assignments.append(f"{name} = :v{i}")
        if vote.roles is not None and vote.roles != request.roles:
            values.update({":roles": it.strings(vote.roles), ":role": s(vote.roles[0]),
                           ":was": it.strings(request.roles)})
            condition += " AND #roles = :was"
            assignments += ["#roles = :roles", "#role = :role",
                            "narrowed_from = if_not_exists(narrowed_from, :was)"]
        expression = "SET " + ", ".join(assignments) + " ADD " + ", ".join(adds)
        if vote.final:
            expression += " REMOVE pending_pk"
        return {"Update": {
            "TableName": self._table, "Key": {"pk": s(f"REQUEST#{request.id}"), "sk": s("STATE")},
            "UpdateExpression": expression, "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#status": "status", **(
                {"#roles": "roles", "#role": "role"} if ":roles" in values else {})},
            "ExpressionAttributeValues": values,
        }}

    def deny(self, request: AccessRequest, *, approver: str, now: datetime, note: str | None,
             approver_sub: IssSub | None = None, approver_person: str | None = None) -> None:
        self._transact([self._transition(request.id, PENDING, DENIED, approver, now, note, approver_sub=approver_sub,
                                         approver_person=approver_person),
                        self._event(request.id, now, approver, PENDING, DENIED, note), *self._release_slot(request)])

    def cancel(self, request: AccessRequest, *, who: str, now: datetime) -> None:
        self._transact([self._transition(request.id, PENDING, CANCELLED, who, now, None, own=True),
                        self._event(request.id, now, who, PENDING, CANCELLED, None), *self._release_slot(request)])

    def expire(self, request: AccessRequest, *, now: datetime) -> None:
        """Mark a request whose pending time is over as expired (so every Slack copy can say so).

        Its open-request slot stopped counting at that same time, so a newer
        request may hold the slot by now: the slot is not part of the
        transaction (whose condition would then fail, every sweep, and leave
        the request pending for good), but tidied afterwards if still its own,
        and only tidied: a failure there changes nothing anyone sees.
        """
        update = {"Update": {
            "TableName": self._table, "Key": {"pk": s(f"REQUEST#{request.id}"), "sk": s("STATE")},
            "UpdateExpression": "SET #status = :expired, decided_at = :now, decided_by = :who REMOVE pending_pk",
            "ConditionExpression": "#status = :pending AND pending_until <= :now",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":expired": s(EXPIRED), ":pending": s(PENDING), ":now": s(iso(now)),
                                          ":who": s("rolebroker")}}}
        self._transact([update, self._event(request.id, now, "rolebroker", PENDING, EXPIRED,
                                            "no decision before the pending timeout")])
        for release in self._release_slot(request):
            try:
                self._client.delete_item(**release["Delete"])
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    LOG.warning("request %s expired; its slot was not deleted: %s", request.id,
                                exc.response.get("Error", {}).get("Code"))
            except BotoCoreError as exc:
                LOG.warning("request %s expired; its slot was not deleted: %s", request.id, type(exc).__name__)

    def revoke(self, request: AccessRequest, *, who: str, now: datetime, note: str | None) -> None:
        self._transact([
            self._transition(request.id, APPROVED, REVOKED, who, now, note),
            self._event(request.id, now, who, APPROVED, REVOKED, note),
            *({"Delete": {"TableName": self._table, "Key": {
                "pk": s(f"GRANT#{request.requester}"), "sk": s(f"ROLE#{role}#{request.id}")}}}
              for role in request.roles),
        ])

    def review(self, request: AccessRequest, *, who: str, now: datetime, note: str | None,
               reviewer_sub: IssSub | None = None, reviewer_person: str | None = None) -> None:
        """Complete a break-glass's review and release its requester's lock; never by the requester."""
        values: dict[str, Any] = {":bg": s(BREAK_GLASS), ":pending": s(REVIEW_PENDING), ":done": s(REVIEW_DONE),
                                  ":who": s(who), ":now": s(iso(now))}
        sets = ["review_status = :done", "reviewed_by = :who", "reviewed_at = :now"]
        if note:
            values[":note"] = s(note)
            sets.append("review_note = :note")
        condition = "#kind = :bg AND review_status = :pending AND requester <> :who"
        if reviewer_sub:
            condition += " AND NOT (requester_iss = :iss AND requester_sub = :sub)"
            values[":iss"], values[":sub"] = s(reviewer_sub[0]), s(reviewer_sub[1])
        if reviewer_person:
            condition += _not_the_person(who, reviewer_person, values)
        items: list[dict[str, Any]] = [
            {"Update": {"TableName": self._table, "Key": {"pk": s(f"REQUEST#{request.id}"), "sk": s("STATE")},
                        "UpdateExpression": "SET " + ", ".join(sets) + " REMOVE pending_pk",
                        "ConditionExpression": condition, "ExpressionAttributeNames": {"#kind": "kind"},
                        "ExpressionAttributeValues": values}},
            self._event(request.id, now, who, "review", "reviewed", note, step="03"),
        ]
        if request.holds_lock:
            items.append({"Delete": {
                "TableName": self._table, "Key": {"pk": s(f"BREAKGLASS#{request.person}"), "sk": s("LOCK")},
                "ConditionExpression": "request_id = :id", "ExpressionAttributeValues": {":id": s(request.id)}}})
        self._transact_as(who, reviewer_person, items)

    # -- writes: extensions

    def extend(self, request: AccessRequest, *, seconds: int, new_until: datetime, now: datetime, who: str,
               reason: str, auto_budget: int) -> None:
        """Extend an approved grant without an approver, within ``auto_budget`` seconds of automatic
        extension over the grant's life (the database keeps the count)."""
        items = self._extension_items(request, seconds, new_until, now, who,
                                      f"extended by {seconds} s (automatic, within the policy's limit): {reason}")
        update = items[0]["Update"]
        update["UpdateExpression"] += ", auto_extended_seconds = auto_extended_seconds + :d"
        # Written as 0 when the request is filed, so a request without it is never extended unasked.
        update["ConditionExpression"] += " AND auto_extended_seconds <= :auto_left"
        update["ExpressionAttributeValues"].update({":auto_left": n(auto_budget - seconds)})
        self._transact(items)

    def _extension_items(self, parent: AccessRequest, seconds: int, new_until: datetime, now: datetime, who: str,
                         note: str) -> list[dict[str, Any]]:
        assert parent.grant_until is not None
        values = {":approved": s(APPROVED), ":seen": s(iso(parent.grant_until)), ":now": s(iso(now)),
                  ":until": s(iso(new_until)), ":d": n(seconds), ":zero": n(0), ":n": n(parent.extensions),
                  ":next": n(parent.extensions + 1)}
        state = {"Update": {
            "TableName": self._table, "Key": {"pk": s(f"REQUEST#{parent.id}"), "sk": s("STATE")},
            "UpdateExpression": "SET grant_until = :until, extensions = :next, "
                                "extended_seconds = if_not_exists(extended_seconds, :zero) + :d",
            # The grant the extension was judged against is still the grant: unchanged and unexpired.
            "ConditionExpression": "#status = :approved AND grant_until = :seen AND grant_until > :now AND "
                                   "(attribute_not_exists(extensions) OR extensions = :n)",
            "ExpressionAttributeNames": {"#status": "status"}, "ExpressionAttributeValues": values}}
        ttl = n((new_until + GRANT_TTL_GRACE).timestamp())
        grants = [{"Update": {
            "TableName": self._table,
            "Key": {"pk": s(f"GRANT#{parent.requester}"), "sk": s(f"ROLE#{role}#{parent.id}")},
            "UpdateExpression": "SET #until = :until, expires_at_epoch = :ttl",
            "ConditionExpression": "attribute_exists(pk)",
            "ExpressionAttributeNames": {"#until": "until"},
            "ExpressionAttributeValues": {":until": s(iso(new_until)), ":ttl": ttl}}} for role in parent.roles]
        event = self._event(parent.id, now, who, APPROVED, APPROVED, note, step=f"01#x{parent.extensions:02d}")
        return [state, event, *grants]

    def add_message(self, request_id: str, channel: str, ts: str, audience: str = "approvers") -> None:
        """Remember a Slack message about the request, to update it later."""
        try:
            self._client.update_item(
                TableName=self._table, Key={"pk": s(f"REQUEST#{request_id}"), "sk": s("STATE")},
                UpdateExpression="SET messages = list_append(if_not_exists(messages, :empty), :m)",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":m": {"L": [{"L": [s(channel), s(ts), s(audience)]}]},
                                           ":empty": {"L": []}})
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc) from exc

    # -- sessions issued under grants (evidence)

    def record_session(self, grant: ActiveGrant, session: IssuedSession, *, now: datetime) -> None:
        """Record a session under its grant, if the grant still holds and has room."""
        limit = MAX_SESSIONS_PER_GRANT
        count = {"TableName": self._table,
                 "Key": {"pk": s(f"REQUEST#{grant.request_id}"), "sk": s("STATE")},
                 "UpdateExpression": "ADD sessions_issued :one",
                 "ConditionExpression": "#status = :approved AND grant_until > :now AND "
                                        "(attribute_not_exists(grant_from) OR grant_from <= :now) AND "
                                        "(attribute_not_exists(sessions_issued) OR sessions_issued < :limit)",
                 "ExpressionAttributeNames": {"#status": "status"},
                 "ExpressionAttributeValues": {":one": n(1), ":approved": s(APPROVED), ":now": s(iso(now)),
                                               ":limit": n(limit)}}
        record = {"TableName": self._table, "Item": it.session_item(session),
                  "ConditionExpression": "attribute_not_exists(pk)"}
        try:
            self._client.transact_write_items(TransactItems=[{"Update": count}, {"Put": record}])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise _translate(exc) from exc
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if "ConditionalCheckFailed" in reasons:
                raise self._refusal(grant, now, limit) from exc
            if any(r in _RETRYABLE_REASONS for r in reasons):
                # Two sessions at once on one grant race for its counter: the loser is a 429, not an outage.
                raise Throttled("the request store is busy; retry in a moment") from exc
            raise _translate(exc) from exc
        except BotoCoreError as exc:
            raise _translate(exc) from exc

    def _refusal(self, grant: ActiveGrant, now: datetime, limit: int) -> Forbidden:
        request = self.get(grant.request_id)
        again = f"request access again (rolebroker request --role {grant.role} --reason ...)"
        status = request.status_at(now)
        if status == APPROVED:
            return Forbidden(f"grant {grant.request_id} has issued {limit} sessions, the most one grant may; {again}")
        if status == REVOKED:
            when = f" at {request.decided_at.isoformat()}" if request.decided_at else ""
            return Forbidden(f"your grant for role {grant.role} was revoked{when}; {again}")
        return Forbidden(f"your grant for role {grant.role} has ended ({status}); {again}")

    def sessions(self, request_id: str) -> list[IssuedSession]:
        """The sessions issued under a request's grant, oldest first."""
        items = self._query_all(KeyConditionExpression="pk = :pk AND begins_with(sk, :s)",
                                ExpressionAttributeValues={":pk": s(f"REQUEST#{request_id}"), ":s": s("SESSION#")})
        return [it.session(i) for i in items]

    # -- identity snapshots

    def remember_identity(self, subject: str, groups: frozenset[str], now: datetime, ttl: timedelta,
                          issued_at: int | None = None, claims: Mapping[str, Any] | None = None) -> bool:
        """Record a token's groups and claims unless a newer token's (by ``iat``) are already recorded.

        Returns whether it was recorded. Without the condition, a person
        removed from a group could replay an older, still valid token and
        have Slack judge them by their old groups again.
        """
        item: dict[str, Any] = {"pk": s(f"IDENTITY#{subject}"), "sk": s("SNAPSHOT"), "seen_at": s(iso(now)),
                                "expires_at_epoch": n((now + ttl).timestamp())}
        item["groups"] = {"L": [s(g) for g in sorted(groups)]}
        item["claims"] = s(json.dumps(dict(claims or {}), sort_keys=True, separators=(",", ":")))
        condition: dict[str, Any] = {}
        if issued_at is not None:
            item["iat"] = n(issued_at)
            condition = {"ConditionExpression": "attribute_not_exists(iat) OR iat <= :iat",
                         "ExpressionAttributeValues": {":iat": n(issued_at)}}
        return conditional_write(lambda: self._client.put_item(TableName=self._table, Item=item, **condition),
                                 _translate)

    def recall_identity(self, subject: str, now: datetime) -> IdentitySnapshot | None:
        """Groups and claims from the person's last verified token, if it is recent enough.

        A snapshot written before claims were recorded has none: claim rules
        then match nobody until the person's next sign-in.
        """
        try:
            answer = self._client.get_item(TableName=self._table,
                                           Key={"pk": s(f"IDENTITY#{subject}"), "sk": s("SNAPSHOT")})
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc) from exc
        item = answer.get("Item")
        if not item or int(item["expires_at_epoch"]["N"]) <= now.timestamp():
            return None
        claims = json.loads(item["claims"]["S"]) if "claims" in item else {}
        return IdentitySnapshot(frozenset(g["S"] for g in item["groups"]["L"]), claims)

    # -- background tasks

    def claim_task(self, nonce: str, expires_at: int) -> bool:
        """Record a task's nonce; False if it was recorded before (the task already ran)."""
        item = {"pk": s(f"TASK#{nonce}"), "sk": s("NONCE"),
                # Kept past the task's expiry (after which it is refused anyway), then TTL'd.
                "expires_at_epoch": n(expires_at + NONCE_GRACE_SECONDS)}
        return conditional_write(lambda: self._client.put_item(
            TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)"), _translate)

    def _transition(self, request_id: str, from_status: str, to_status: str, who: str, now: datetime,
                    note: str | None, *, extra: dict[str, dict[str, str]] | None = None,
                    own: bool = False, approver_sub: IssSub | None = None,
                    approver_person: str | None = None) -> dict[str, Any]:
        values: dict[str, dict[str, str]] = {
            ":from": s(from_status), ":to": s(to_status), ":who": s(who), ":now": s(iso(now)),
            **{f":{k}": v for k, v in (extra or {}).items()},
        }
        sets = ["#status = :to", "decided_by = :who", "decided_at = :now"]
        sets += [f"{k} = :{k}" for k in (extra or {})]
        if note:
            values[":note"] = s(note)
            sets.append("note = :note")
        condition = "#status = :from"
        if from_status == PENDING:
            condition += " AND pending_until > :now"
            # The rule that matters most is enforced by the database itself:
            # approvers are never the requester (neither their principal, nor
            # their iss + sub, nor their person); a cancel must come from them.
            condition += " AND requester = :who" if own else " AND requester <> :who"
            if approver_sub and not own:
                condition += " AND NOT (requester_iss = :iss AND requester_sub = :sub)"
                values[":iss"], values[":sub"] = s(approver_sub[0]), s(approver_sub[1])
            if approver_person and not own:
                condition += _not_the_person(who, approver_person, values)
        # Leaving pending leaves the approvers' index; a break-glass stays in
        # the review partition whatever happens to its grant.
        removal = " REMOVE pending_pk" if from_status == PENDING else ""
        return {"Update": {
            "TableName": self._table,
            "Key": {"pk": s(f"REQUEST#{request_id}"), "sk": s("STATE")},
            "UpdateExpression": "SET " + ", ".join(sets) + removal,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": values,
        }}

    def _event(self, request_id: str, now: datetime, who: str, from_status: str | None, to_status: str,
               note: str | None, *, step: str | None = None) -> dict[str, Any]:
        # The key is the step in the request's life (created, each approval,
        # decided, each extension, revoked, reviewed), so a second event for
        # the same step cannot be written.
        step = step or _STEPS[from_status]
        item = {"pk": s(f"REQUEST#{request_id}"), "sk": s(f"EVENT#{step}"),
                "at": s(iso(now)), "who": s(who), "to": s(to_status)}
        if from_status:
            item["from"] = s(from_status)
        if note:
            item["note"] = s(note)
        return {"Put": {"TableName": self._table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}

    def _transact_as(self, who: str, person: str | None, items: list[dict[str, Any]]) -> None:
        """``items`` as one transaction that also holds only while ``who`` (and their person) is not revoked."""
        self._transact(items + self._not_revoked(who, person), revoked_from=len(items))

    def _not_revoked(self, *principals: str | None) -> list[dict[str, Any]]:
        """Condition checks that no revocation of these principals is in force (its refusal item,
        ``revocation_store.py``): one recorded after the broker looked still stops the write."""
        return [{"ConditionCheck": {"TableName": self._table, "Key": it.refusal_key(principal),
                                    "ConditionExpression": "attribute_not_exists(pk)"}}
                for principal in dict.fromkeys(p for p in principals if p)]

    def _transact(self, items: list[dict[str, Any]], *, slot_index: int | None = None,
                  lock_index: int | None = None, revoked_from: int | None = None) -> None:
        if len(items) > MAX_TRANSACTION_ITEMS:
            raise TooManyWrites(f"this change needs {len(items)} writes at once and DynamoDB takes at most "
                                f"{MAX_TRANSACTION_ITEMS} in one transaction; ask for fewer roles at once")
        try:
            self._client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "TransactionCanceledException":
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if revoked_from is not None and "ConditionalCheckFailed" in reasons[revoked_from:]:
                    raise Revoked("your sessions were revoked meanwhile: you may not approve, review or break "
                                  "glass until an admin lifts it") from exc
                if slot_index is not None and reasons[slot_index:slot_index + 1] in (["ConditionalCheckFailed"],
                                                                                   ["TransactionConflict"]):
                    raise SlotTaken("another request took that open-request slot first") from exc
                if lock_index is not None and reasons[lock_index:lock_index + 1] in (["ConditionalCheckFailed"],
                                                                                   ["TransactionConflict"]):
                    raise BreakGlassLocked("your last break-glass access still waits for its review") from exc
                if "ConditionalCheckFailed" in reasons or not reasons:
                    raise Conflict(
                        "the request is no longer pending, has timed out, or you may not decide it "
                        "(requesters cannot approve their own requests)"
                    ) from exc
                if any(r in _RETRYABLE_REASONS for r in reasons):
                    raise Throttled("the request store is busy; retry in a moment") from exc
            raise _translate(exc) from exc
        except BotoCoreError as exc:
            raise _translate(exc) from exc

    def _request_page(self, **kwargs: Any) -> tuple[list[AccessRequest], PageKey | None]:
        try:
            answer = self._client.query(TableName=self._table, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc) from exc
        last = answer.get("LastEvaluatedKey")
        stopped = PageKey(last["pk"]["S"].removeprefix("REQUEST#"), last["created_at"]["S"]) if last else None
        return [it.request(i) for i in answer.get("Items", []) if i["sk"]["S"] == "STATE"], stopped

    def _query(self, **kwargs: Any) -> list[dict[str, Any]]:
        try:
            answer = self._client.query(TableName=self._table, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc) from exc
        items: list[dict[str, Any]] = answer.get("Items", [])
        return items

    def _query_all(self, **kwargs: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            try:
                answer = self._client.query(TableName=self._table, **kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise _translate(exc) from exc
            items += answer.get("Items", [])
            if "LastEvaluatedKey" not in answer:
                return items
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


def _narrowing_note(request: AccessRequest, roles: tuple[str, ...] | None) -> str | None:
    if roles is None or roles == request.roles:
        return None
    return f"narrowed to {', '.join(roles)} (asked: {', '.join(request.roles)})"


def _not_the_person(who: str, person: str, values: dict[str, Any]) -> str:
    """The condition that the request's requester is not ``person`` (the deciding principal ``who``'s
    default-issuer person), neither as its principal nor as its ``requester_person``."""
    values[":person"] = s(person)
    condition = "" if person == who else " AND requester <> :person"  # ``requester <> :who`` is there already
    return condition + " AND (attribute_not_exists(requester_person) OR requester_person <> :person)"


def _start_key(after: PageKey) -> dict[str, dict[str, str]]:
    return {"created_at": s(after.created_at), "pk": s(f"REQUEST#{after.request_id}"), "sk": s("STATE")}


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        LOG.warning("DynamoDB call failed: %s", code)
        if code in _THROTTLING:
            return Throttled("the request store is throttling; retry in a moment")
        if code == "ConditionalCheckFailedException":
            return Conflict("the request changed meanwhile; reload it and try again")
        return DependencyDown(f"the request store refused the call ({code}); an operator must check it")
    LOG.warning("DynamoDB unreachable: %s", type(exc).__name__)
    return DependencyDown("the request store is unreachable; try again shortly")


__all__ = ["APPROVED", "CANCELLED", "DENIED", "EXPIRED", "PENDING", "REVOKED", "AccessRequest", "AccessStore",
           "ApprovalStep", "NewRequest", "PageKey", "RequestEvent", "create_table", "page_key"]
