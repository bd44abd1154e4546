"""The one adapter to DynamoDB: access requests, their history, and grants.

One table, keyed ``pk``/``sk``:

* ``REQUEST#<id>`` / ``STATE``: the request and its current status. A sparse
  index (``gsi_pending``) holds only pending requests, for approvers; another
  (``gsi_requester``) lists a person's own requests.
* ``REQUEST#<id>`` / ``EVENT#<step>``: the append-only history (who moved
  it from which status to which, when, and why). Events are written with
  ``attribute_not_exists`` and never updated; the step number (created,
  decided, revoked) makes a second decision impossible to record.
* ``GRANT#<principal>`` / ``ROLE#<role>#<request id>``: an approved grant and
  its end; DynamoDB's TTL deletes it a day after it ends.
* ``IDENTITY#<principal>`` / ``SNAPSHOT``: the groups and claims from that
  person's newest verified token (by ``iat``), so Slack (which knows only an
  email) can be judged by the same policy; it expires after a working day.
* ``REQUEST#<id>`` / ``SESSION#<issued at>#<access key id>``: each STS
  session issued under the request's grant (ARNs, key id, times; never a
  secret), the evidence that ties the grant to CloudTrail. Written in one
  transaction with a counter on the request that is conditional on the grant
  still being approved, unexpired and under ``MAX_SESSIONS_PER_GRANT``.
* ``OPEN#<principal>`` / ``SLOT#<n>``: the open-request slots a person holds,
  one per pending request, at most ``ROLEBROKER_MAX_OPEN_REQUESTS``. A
  request takes a free slot (never used, or its request's pending time over)
  in the transaction that creates it, and gives it back in the one that
  decides or cancels it, so two racing creates cannot exceed the cap.
* ``TASK#<nonce>`` / ``NONCE``: a background task that has run (see
  ``chalicelib/chat/tasks.py``), written with ``attribute_not_exists`` so a
  task runs at most once; TTL'd an hour after the task expires.

``<principal>`` and every ``requester``/``who`` is a principal key
(``chalicelib/identity/principal.py``). A request also keeps the requester's
``iss`` and ``sub``.

Every transition is one ``TransactWriteItems``: the request's conditional
update, the event and (on approval) the grant succeed or fail together. The
conditions carry the rules that must hold even against a buggy or racing
caller: only a pending request moves, an approval must come before the
pending timeout, and the approver is not the requester: neither the same
principal, nor the same ``iss`` + ``sub``, nor the same person of the default
issuer (``requester_person``, for a requester of an issuer that declares
``approval_identity_claim``).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.exceptions import Conflict, DependencyDown, Forbidden, NotFound, SlotTaken, Throttled
from chalicelib.jit.grants import ActiveGrant, IssuedSession

LOG = logging.getLogger(__name__)

PENDING, APPROVED, DENIED, EXPIRED, CANCELLED, REVOKED = (
    "pending", "approved", "denied", "expired", "cancelled", "revoked")
GRANT_TTL_GRACE = timedelta(days=1)
NONCE_GRACE_SECONDS = 3600
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STEPS = {None: 0, PENDING: 1, APPROVED: 2}
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
    messages: tuple[tuple[str, str], ...] = ()
    ticket: str | None = None
    requester_iss: str | None = None
    requester_sub: str | None = None
    slot: int | None = None  # the requester's open-request slot it holds while pending
    requester_person: str | None = None  # a requester of another issuer: their default-issuer person

    def status_at(self, now: datetime) -> str:
        if self.status == PENDING and now >= self.pending_until:
            return EXPIRED
        if self.status == APPROVED and self.grant_until is not None and now >= self.grant_until:
            return EXPIRED
        return self.status

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "requester": self.requester,
            "duration_seconds": self.duration_seconds,
            "reason": self.reason,
            "status": self.status_at(now),
            "created_at": self.created_at.isoformat(),
            "pending_until": self.pending_until.isoformat(),
            "decided_by": self.decided_by,
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "note": self.note,
            "grant_until": self.grant_until.isoformat() if self.grant_until else None,
        }


@dataclass(frozen=True)
class PageKey:
    """A position in a list of requests: the last one shown (or looked at)."""

    request_id: str
    created_at: str  # as stored, so the position is exact


def page_key(request: AccessRequest) -> PageKey:
    return PageKey(request.id, _iso(request.created_at))


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


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _micros(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int | float) -> dict[str, str]:
    return {"N": str(int(value))}


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
        items = self._query(KeyConditionExpression="pk = :pk",
                            ExpressionAttributeValues={":pk": _s(f"GRANT#{subject}")})
        grants: dict[str, datetime] = {}
        for item in items:
            until = datetime.fromisoformat(item["until"]["S"])
            role = item["role"]["S"]
            if until > now and until > grants.get(role, now):
                grants[role] = until
        return grants

    def active_grant(self, subject: str, role: str, now: datetime) -> ActiveGrant | None:
        """The caller's approved, unexpired grant for ``role`` that lasts longest, if any."""
        items = self._query(KeyConditionExpression="pk = :pk AND begins_with(sk, :role)",
                            ExpressionAttributeValues={":pk": _s(f"GRANT#{subject}"), ":role": _s(f"ROLE#{role}#")})
        grants = [ActiveGrant(request_id=i["request_id"]["S"], role=i["role"]["S"],
                              until=datetime.fromisoformat(i["until"]["S"]), ticket=i.get("ticket", {}).get("S"))
                  for i in items if i["role"]["S"] == role]
        live = [g for g in grants if g.until > now]
        return max(live, key=lambda g: g.until) if live else None

    def get(self, request_id: str) -> AccessRequest:
        try:
            answer = self._client.get_item(TableName=self._table, ConsistentRead=True,
                                           Key={"pk": _s(f"REQUEST#{request_id}"), "sk": _s("STATE")})
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc) from exc
        if "Item" not in answer:
            raise NotFound(f"no access request {request_id!r}")
        return _request(answer["Item"])

    def history(self, request_id: str) -> list[RequestEvent]:
        items = self._query(KeyConditionExpression="pk = :pk AND begins_with(sk, :e)",
                            ExpressionAttributeValues={":pk": _s(f"REQUEST#{request_id}"), ":e": _s("EVENT#")})
        return [RequestEvent(at=datetime.fromisoformat(i["at"]["S"]), who=i["who"]["S"],
                             from_status=i.get("from", {}).get("S"), to_status=i["to"]["S"],
                             note=i.get("note", {}).get("S")) for i in items]

    def pending_page(self, *, after: PageKey | None, limit: int, now: datetime,
                     created_after: datetime) -> tuple[list[AccessRequest], PageKey | None]:
        """Pending requests still open at ``now``, oldest first, and where DynamoDB stopped.

        Requests that timed out stay in the sparse index (nothing writes when
        time passes), so the query starts at ``created_after`` (the longest
        pending timeout ago) and filters out the rest, instead of wading
        through every request that ever expired.
        """
        oldest = _iso(created_after)
        kwargs: dict[str, Any] = {
            "IndexName": "gsi_pending", "Limit": limit,
            "KeyConditionExpression": "pending_pk = :p AND created_at > :oldest",
            "FilterExpression": "pending_until > :now",
            "ExpressionAttributeValues": {":p": _s(PENDING), ":oldest": _s(oldest), ":now": _s(_iso(now))},
        }
        if after is not None and after.created_at > oldest:
            kwargs["ExclusiveStartKey"] = {"pending_pk": _s(PENDING), **_start_key(after)}
        return self._request_page(**kwargs)

    def requester_page(self, requester: str, *, after: PageKey | None,
                       limit: int) -> tuple[list[AccessRequest], PageKey | None]:
        """A person's own requests, newest first, and where DynamoDB stopped."""
        kwargs: dict[str, Any] = {
            "IndexName": "gsi_requester", "Limit": limit, "ScanIndexForward": False,
            "KeyConditionExpression": "requester = :r", "ExpressionAttributeValues": {":r": _s(requester)},
        }
        if after is not None:
            kwargs["ExclusiveStartKey"] = {"requester": _s(requester), **_start_key(after)}
        return self._request_page(**kwargs)

    def open_requests(self, requester: str, now: datetime) -> dict[int, str]:
        """The open-request slots ``requester`` holds at ``now``: slot -> request id."""
        items = self._query(KeyConditionExpression="pk = :pk", ConsistentRead=True,
                            ExpressionAttributeValues={":pk": _s(f"OPEN#{requester}")})
        return {int(i["sk"]["S"].removeprefix("SLOT#")): i["request_id"]["S"] for i in items
                if int(i["until_us"]["N"]) > _micros(now)}

    # -- writes

    def create(self, *, role: str, requester: str, duration_seconds: int, reason: str, now: datetime,
               pending_seconds: int, requester_slack: str | None = None, requester_sub: IssSub | None = None,
               slot: int | None = None, requester_person: str | None = None) -> AccessRequest:
        """Store a pending request; with ``slot``, also take that open-request slot of the requester's,
        which the database gives only if it is free (``SlotTaken`` otherwise)."""
        iss, sub = requester_sub or (None, None)
        request = AccessRequest(id=uuid.uuid4().hex[:12], role=role, requester=requester,
                                duration_seconds=duration_seconds, reason=reason, status=PENDING,
                                created_at=now, pending_until=now + timedelta(seconds=pending_seconds),
                                requester_slack=requester_slack, requester_iss=iss, requester_sub=sub, slot=slot,
                                requester_person=requester_person)
        item = {
            "pk": _s(f"REQUEST#{request.id}"), "sk": _s("STATE"), "id": _s(request.id), "role": _s(role),
            "requester": _s(requester), "duration_seconds": _n(duration_seconds), "reason": _s(reason),
            "status": _s(PENDING), "pending_pk": _s(PENDING), "created_at": _s(_iso(now)),
            "pending_until": _s(_iso(request.pending_until)),
        }
        if requester_slack:
            item["requester_slack"] = _s(requester_slack)
        if iss and sub:
            item["requester_iss"], item["requester_sub"] = _s(iss), _s(sub)
        if requester_person:
            item["requester_person"] = _s(requester_person)
        items = [
            {"Put": {"TableName": self._table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}},
            self._event(request.id, now, requester, None, PENDING, reason),
        ]
        if slot is not None:
            item["open_slot"] = _n(slot)
            items.append(self._take_slot(request, now))
        self._transact(items, slot_index=2 if slot is not None else None)
        return request

    def _take_slot(self, request: AccessRequest, now: datetime) -> dict[str, Any]:
        # Free when never used or when its request's pending time is over
        # (a request that times out is never written to again).
        # Microseconds, so "free" here means exactly what status_at's "expired" means.
        return {"Put": {
            "TableName": self._table,
            "Item": {"pk": _s(f"OPEN#{request.requester}"), "sk": _s(f"SLOT#{request.slot:02d}"),
                     "request_id": _s(request.id), "until_us": _n(_micros(request.pending_until)),
                     "expires_at_epoch": _n((request.pending_until + GRANT_TTL_GRACE).timestamp())},
            "ConditionExpression": "attribute_not_exists(pk) OR until_us <= :now",
            "ExpressionAttributeValues": {":now": _n(_micros(now))},
        }}

    def _release_slot(self, request: AccessRequest) -> list[dict[str, Any]]:
        """The transaction item that frees the request's slot as it leaves ``pending`` (if it holds one)."""
        if request.slot is None:
            return []
        return [{"Delete": {
            "TableName": self._table,
            "Key": {"pk": _s(f"OPEN#{request.requester}"), "sk": _s(f"SLOT#{request.slot:02d}")},
            # Only while it is still ours: after our pending time another request may hold it.
            "ConditionExpression": "request_id = :id",
            "ExpressionAttributeValues": {":id": _s(request.id)},
        }}]

    def approve(self, request: AccessRequest, *, approver: str, now: datetime, grant_until: datetime,
                approver_sub: IssSub | None = None, approver_person: str | None = None) -> None:
        """Approve and write the grant; the database refuses self-approval."""
        update = self._transition(request.id, PENDING, APPROVED, approver, now, note=None,
                                  extra={"grant_until": _s(_iso(grant_until))}, approver_sub=approver_sub,
                                  approver_person=approver_person)
        grant = {"Put": {"TableName": self._table, "Item": {
            "pk": _s(f"GRANT#{request.requester}"), "sk": _s(f"ROLE#{request.role}#{request.id}"),
            "role": _s(request.role), "until": _s(_iso(grant_until)), "request_id": _s(request.id),
            "approved_by": _s(approver),
            "expires_at_epoch": _n((grant_until + GRANT_TTL_GRACE).timestamp()),
            **({"ticket": _s(request.ticket)} if request.ticket else {}),
        }}}
        self._transact([update, self._event(request.id, now, approver, PENDING, APPROVED, None), grant,
                        *self._release_slot(request)])

    def deny(self, request: AccessRequest, *, approver: str, now: datetime, note: str | None,
             approver_sub: IssSub | None = None, approver_person: str | None = None) -> None:
        self._transact([self._transition(request.id, PENDING, DENIED, approver, now, note, approver_sub=approver_sub,
                                         approver_person=approver_person),
                        self._event(request.id, now, approver, PENDING, DENIED, note), *self._release_slot(request)])

    def cancel(self, request: AccessRequest, *, who: str, now: datetime) -> None:
        self._transact([self._transition(request.id, PENDING, CANCELLED, who, now, None, own=True),
                        self._event(request.id, now, who, PENDING, CANCELLED, None), *self._release_slot(request)])

    def revoke(self, request: AccessRequest, *, who: str, now: datetime, note: str | None) -> None:
        self._transact([
            self._transition(request.id, APPROVED, REVOKED, who, now, note),
            self._event(request.id, now, who, APPROVED, REVOKED, note),
            {"Delete": {"TableName": self._table, "Key": {
                "pk": _s(f"GRANT#{request.requester}"), "sk": _s(f"ROLE#{request.role}#{request.id}")}}},
        ])

    def add_message(self, request_id: str, channel: str, ts: str) -> None:
        """Remember a Slack message about the request, to update it later."""
        try:
            self._client.update_item(
                TableName=self._table, Key={"pk": _s(f"REQUEST#{request_id}"), "sk": _s("STATE")},
                UpdateExpression="SET messages = list_append(if_not_exists(messages, :empty), :m)",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":m": {"L": [{"L": [_s(channel), _s(ts)]}]}, ":empty": {"L": []}})
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc) from exc

    # -- sessions issued under grants (evidence)

    def record_session(self, grant: ActiveGrant, session: IssuedSession, *, now: datetime) -> None:
        """Record a session under its grant, if the grant still holds and has room."""
        limit = MAX_SESSIONS_PER_GRANT
        count = {"TableName": self._table,
                 "Key": {"pk": _s(f"REQUEST#{grant.request_id}"), "sk": _s("STATE")},
                 "UpdateExpression": "ADD sessions_issued :one",
                 "ConditionExpression": "#status = :approved AND grant_until > :now AND "
                                        "(attribute_not_exists(sessions_issued) OR sessions_issued < :limit)",
                 "ExpressionAttributeNames": {"#status": "status"},
                 "ExpressionAttributeValues": {":one": _n(1), ":approved": _s(APPROVED), ":now": _s(_iso(now)),
                                               ":limit": _n(limit)}}
        record = {"TableName": self._table, "Item": _session_item(session),
                  "ConditionExpression": "attribute_not_exists(pk)"}
        try:
            self._client.transact_write_items(TransactItems=[{"Update": count}, {"Put": record}])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise _translate(exc) from exc
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if "ConditionalCheckFailed" not in reasons:
                raise _translate(exc) from exc
            raise self._refusal(grant, now, limit) from exc
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
                                ExpressionAttributeValues={":pk": _s(f"REQUEST#{request_id}"), ":s": _s("SESSION#")})
        return [_session(i) for i in items]

    # -- identity snapshots

    def remember_identity(self, subject: str, groups: frozenset[str], now: datetime, ttl: timedelta,
                          issued_at: int | None = None, claims: Mapping[str, Any] | None = None) -> bool:
        """Record a token's groups and claims unless a newer token's (by ``iat``) are already recorded.

        Returns whether it was recorded. Without the condition, a person
        removed from a group could replay an older, still valid token and
        have Slack judge them by their old groups again.
        """
        item: dict[str, Any] = {"pk": _s(f"IDENTITY#{subject}"), "sk": _s("SNAPSHOT"), "seen_at": _s(_iso(now)),
                                "expires_at_epoch": _n((now + ttl).timestamp())}
        item["groups"] = {"L": [_s(g) for g in sorted(groups)]}
        item["claims"] = _s(json.dumps(dict(claims or {}), sort_keys=True, separators=(",", ":")))
        condition: dict[str, Any] = {}
        if issued_at is not None:
            item["iat"] = _n(issued_at)
            condition = {"ConditionExpression": "attribute_not_exists(iat) OR iat <= :iat",
                         "ExpressionAttributeValues": {":iat": _n(issued_at)}}
        try:
            self._client.put_item(TableName=self._table, Item=item, **condition)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise _translate(exc) from exc
        except BotoCoreError as exc:
            raise _translate(exc) from exc
        return True

    def recall_identity(self, subject: str, now: datetime) -> IdentitySnapshot | None:
        """Groups and claims from the person's last verified token, if it is recent enough.

        A snapshot written before claims were recorded has none: claim rules
        then match nobody until the person's next sign-in.
        """
        try:
            answer = self._client.get_item(TableName=self._table,
                                           Key={"pk": _s(f"IDENTITY#{subject}"), "sk": _s("SNAPSHOT")})
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
        item = {"pk": _s(f"TASK#{nonce}"), "sk": _s("NONCE"),
                # Kept past the task's expiry (after which it is refused anyway), then TTL'd.
                "expires_at_epoch": _n(expires_at + NONCE_GRACE_SECONDS)}
        try:
            self._client.put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise _translate(exc) from exc
        except BotoCoreError as exc:
            raise _translate(exc) from exc
        return True

    def _transition(self, request_id: str, from_status: str, to_status: str, who: str, now: datetime,
                    note: str | None, *, extra: dict[str, dict[str, str]] | None = None,
                    own: bool = False, approver_sub: IssSub | None = None,
                    approver_person: str | None = None) -> dict[str, Any]:
        values: dict[str, dict[str, str]] = {
            ":from": _s(from_status), ":to": _s(to_status), ":who": _s(who), ":now": _s(_iso(now)),
            **{f":{k}": v for k, v in (extra or {}).items()},
        }
        sets = ["#status = :to", "decided_by = :who", "decided_at = :now"]
        sets += [f"{k} = :{k}" for k in (extra or {})]
        if note:
            values[":note"] = _s(note)
            sets.append("note = :note")
        condition = "#status = :from"
        if from_status == PENDING:
            condition += " AND pending_until > :now"
            # The rule that matters most is enforced by the database itself:
            # approvers are never the requester (neither their principal nor
            # their iss + sub); a cancel must come from them.
            condition += " AND requester = :who" if own else " AND requester <> :who"
            if approver_sub and not own:
                condition += " AND NOT (requester_iss = :iss AND requester_sub = :sub)"
                values[":iss"], values[":sub"] = _s(approver_sub[0]), _s(approver_sub[1])
            if approver_person and not own:  # one person's principals of two issuers
                condition += " AND requester <> :person"
                condition += " AND (attribute_not_exists(requester_person) OR requester_person <> :person)"
                values[":person"] = _s(approver_person)
        return {"Update": {
            "TableName": self._table,
            "Key": {"pk": _s(f"REQUEST#{request_id}"), "sk": _s("STATE")},
            "UpdateExpression": "SET " + ", ".join(sets) + " REMOVE pending_pk",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": values,
        }}

    def _event(self, request_id: str, now: datetime, who: str, from_status: str | None, to_status: str,
               note: str | None) -> dict[str, Any]:
        # The key is the step in the request's life (created, decided,
        # revoked), so a second event for the same step cannot be written.
        step = _STEPS[from_status]
        item = {"pk": _s(f"REQUEST#{request_id}"), "sk": _s(f"EVENT#{step:02d}"),
                "at": _s(_iso(now)), "who": _s(who), "to": _s(to_status)}
        if from_status:
            item["from"] = _s(from_status)
        if note:
            item["note"] = _s(note)
        return {"Put": {"TableName": self._table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}

    def _transact(self, items: list[dict[str, Any]], *, slot_index: int | None = None) -> None:
        try:
            self._client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "TransactionCanceledException":
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if slot_index is not None and reasons[slot_index:slot_index + 1] in (["ConditionalCheckFailed"],
                                                                                   ["TransactionConflict"]):
                    raise SlotTaken("another request took that open-request slot first") from exc
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
        return [_request(i) for i in answer.get("Items", []) if i["sk"]["S"] == "STATE"], stopped

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


def _session_item(session: IssuedSession) -> dict[str, Any]:
    # No requester or pending_pk: session items stay out of both indexes.
    return {
        "pk": _s(f"REQUEST#{session.request_id}"),
        "sk": _s(f"SESSION#{_iso(session.issued_at)}#{session.access_key_id}"),
        "request_id": _s(session.request_id), "role": _s(session.role), "role_arn": _s(session.role_arn),
        "account_id": _s(session.account_id), "assumed_role_arn": _s(session.assumed_role_arn),
        "access_key_id": _s(session.access_key_id), "session_name": _s(session.session_name),
        "issued_at": _s(_iso(session.issued_at)), "expires_at": _s(_iso(session.expires_at)),
        "kind": _s(session.kind),
    }


def _session(item: Mapping[str, Any]) -> IssuedSession:
    return IssuedSession(
        request_id=item["request_id"]["S"], role=item["role"]["S"], role_arn=item["role_arn"]["S"],
        account_id=item["account_id"]["S"], assumed_role_arn=item["assumed_role_arn"]["S"],
        access_key_id=item["access_key_id"]["S"], session_name=item["session_name"]["S"],
        issued_at=datetime.fromisoformat(item["issued_at"]["S"]),
        expires_at=datetime.fromisoformat(item["expires_at"]["S"]), kind=item["kind"]["S"],
    )


def _start_key(after: PageKey) -> dict[str, dict[str, str]]:
    return {"created_at": _s(after.created_at), "pk": _s(f"REQUEST#{after.request_id}"), "sk": _s("STATE")}


def _request(item: Mapping[str, Any]) -> AccessRequest:
    def opt(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if value else None

    return AccessRequest(
        id=item["id"]["S"], role=item["role"]["S"], requester=item["requester"]["S"],
        duration_seconds=int(item["duration_seconds"]["N"]), reason=item["reason"]["S"],
        status=item["status"]["S"], created_at=datetime.fromisoformat(item["created_at"]["S"]),
        pending_until=datetime.fromisoformat(item["pending_until"]["S"]), decided_by=opt("decided_by"),
        decided_at=_dt(opt("decided_at")), note=opt("note"), grant_until=_dt(opt("grant_until")),
        requester_slack=opt("requester_slack"), ticket=opt("ticket"), requester_iss=opt("requester_iss"),
        requester_sub=opt("requester_sub"), requester_person=opt("requester_person"),
        slot=int(item["open_slot"]["N"]) if "open_slot" in item else None,
        messages=tuple((m["L"][0]["S"], m["L"][1]["S"]) for m in item.get("messages", {}).get("L", [])),
    )


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
