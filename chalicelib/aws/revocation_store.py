"""The DynamoDB side of revocations: the record, the refusal, and each account's deny entries.

Same table as requests and grants (``chalicelib/aws/store.py``), other keys:

* ``REVOCATIONS`` / ``REVOCATION#<id>``: one revocation: who revoked whom,
  why, when, its cutoff, and the outcome in every account it had to reach.
  Ids start with the creation time in hex, so one query of this partition,
  newest first, pages through them all. Written *before* anything is
  written to AWS, so nothing ever changes in an account without a record.
* ``REFUSALS`` / ``<principal key>``: the person's newest revocation while it
  is in force. The broker reads it (strongly consistent) after every
  ``AssumeRole`` and before handing credentials out. One small partition,
  so the policy-change check can read every refusal in one query.
* ``DENIES#<account id>`` / ``ENTRY#<source identity>#<role ARN or *>``: the
  deny entries the account's revocations boundary must hold. The boundary
  document is always rendered from these (never read back from IAM, whose
  reads are eventually consistent), under ``DENIES#<account id>`` / ``LOCK``,
  a lease that serialises writers of one account. TTL'd once useless.
* ``ISSUED#<person or principal key>`` / ``SESSION#<account>#<source
  identity>#<role ARN>``: that a session was issued there, and until when
  (the latest expiry; never a key or token). Written by the broker after
  ``AssumeRole`` and before the refusal check, one conditional put per
  issuance, and TTL'd once the session is over. Keyed by the *person* when
  the token names one (a linked issuer's principal is recorded under its
  person), so a person's revocation finds every account where any of their
  principals holds a live session, whatever today's policy says.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.aws.conditional import conditional_write
from chalicelib.aws.items import REFUSALS_PK, dt, iso, n, refusal_key, s
from chalicelib.exceptions import BadRequest, Conflict, DependencyDown, NotFound, Throttled
from chalicelib.jit.denies import DenyEntry

LOG = logging.getLogger(__name__)

LIST_PK = "REVOCATIONS"
ISSUED_PREFIX = "ISSUED#"
ENTRY_TTL_GRACE = timedelta(days=1)
_THROTTLING = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
               "TransactionConflictException"}
IN_FORCE = "in_force"


@dataclass(frozen=True)
class LiveSession:
    """A session the broker issued: whose, where, and until when."""

    principal: str
    source_identity: str
    account_id: str
    role_arn: str
    expires: datetime


@dataclass(frozen=True)
class AccountOutcome:
    """What happened in one account: ``written``, ``pending`` or ``failed``, and why."""

    status: str
    detail: str = ""
    at: str | None = None
    attempts: int = 0
    roles: tuple[str, ...] = ()  # role ARNs the entry had to cover there
    uncovered: tuple[str, ...] = ()  # of those, roles whose sessions the boundary does not reach, with why
    # The SourceIdentity values to deny there (the person's linked principals too); () is the revocation's own.
    identities: tuple[str, ...] = ()
    sessions_until: str | None = None  # the latest expiry of a session the broker recorded there

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "detail": self.detail, "at": self.at, "attempts": self.attempts,
                "roles": list(self.roles), "uncovered": list(self.uncovered), "identities": list(self.identities),
                "sessions_until": self.sessions_until}


@dataclass(frozen=True)
class Revocation:
    id: str
    kind: str  # person | grant
    principal: str  # whose sessions
    source_identity: str  # what AWS knows them by (stamping.session_name_for_key)
    by: str  # the admin (or grant revoker) who did it
    reason: str
    created_at: datetime
    cutoff: datetime  # sessions issued before this are denied
    accounts: Mapping[str, AccountOutcome] = field(default_factory=dict)
    roles: tuple[str, ...] = ()  # the policy roles it covers
    state: str = IN_FORCE  # in_force | lifted | ended_by_policy (person); grant revocations stay in_force
    ended_at: datetime | None = None
    ended_by: str | None = None
    request_ref: str | None = None  # the JIT request whose grant ended
    warnings: tuple[str, ...] = ()  # for the answer only, never stored

    @property
    def status(self) -> str:
        """complete | partial | failed | in_progress, over the accounts."""
        states = {o.status for o in self.accounts.values()}
        if "pending" in states:
            return "in_progress"
        if states <= {"written"}:
            return "complete"
        return "failed" if states == {"failed"} else "partial"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "identity": self.principal, "source_identity": self.source_identity,
            "revoked_by": self.by, "reason": self.reason, "created_at": self.created_at.isoformat(),
            "cutoff": self.cutoff.isoformat(), "status": self.status, "state": self.state,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None, "ended_by": self.ended_by,
            "roles": list(self.roles), "request": self.request_ref, "warnings": list(self.warnings),
            "accounts": {account: outcome.to_dict() for account, outcome in sorted(self.accounts.items())},
        }


def new_id(now: datetime) -> str:
    """16 hex digits: milliseconds since 1970, then randomness, so ids sort by creation time."""
    return f"{int(now.timestamp() * 1000):011x}{secrets.token_hex(3)[:5]}"


def encode_page(revocation_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"r": revocation_id}).encode()).decode().rstrip("=")


def decode_page(token: str) -> str:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        value = data["r"] if isinstance(data, dict) and set(data) == {"r"} else None
        if not isinstance(value, str) or not checked_revocation_id(value):
            raise ValueError
        return value
    except (ValueError, TypeError, KeyError, NotFound):
        raise BadRequest("next_token is not one this broker gave out; list again without it") from None


def checked_revocation_id(value: str) -> str:
    if len(value) != 16 or not set(value) <= set("0123456789abcdef"):
        raise NotFound(f"no revocation {value[:40]!r}")
    return value


class RevocationStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    # -- records and refusals

    def create(self, revocation: Revocation, *, naming: str | None) -> None:
        """Record the revocation and, for a person, the refusal of new credentials, in one transaction.

        ``naming`` is the fingerprint of what the policy said about the person
        by name (``queries.naming``); a refusal ends when that changes.
        """
        items: list[dict[str, Any]] = [{"Put": {"TableName": self._table, "Item": _item(revocation),
                                                "ConditionExpression": "attribute_not_exists(pk)"}}]
        if naming is not None:
            items.append({"Put": {"TableName": self._table, "Item": {
                **refusal_key(revocation.principal), "revocation": s(revocation.id),
                "created_at": s(iso(revocation.created_at)), "cutoff": s(iso(revocation.cutoff)),
                "naming": s(naming)}}})
        self._call("transact_write_items", TransactItems=items)

    def get(self, revocation_id: str) -> Revocation:
        answer = self._call("get_item", TableName=self._table, ConsistentRead=True,
                            Key={"pk": s(LIST_PK), "sk": s(f"REVOCATION#{revocation_id}")})
        if "Item" not in answer:
            raise NotFound(f"no revocation {revocation_id!r}; `rolebroker revocations` lists them")
        return _revocation(answer["Item"])

    def page(self, *, after: str | None, limit: int) -> tuple[list[Revocation], str | None]:
        kwargs: dict[str, Any] = {"KeyConditionExpression": "pk = :pk AND begins_with(sk, :r)",
                                  "ExpressionAttributeValues": {":pk": s(LIST_PK), ":r": s("REVOCATION#")},
                                  "ScanIndexForward": False, "Limit": limit}
        if after:
            kwargs["ExclusiveStartKey"] = {"pk": s(LIST_PK), "sk": s(f"REVOCATION#{after}")}
        answer = self._call("query", TableName=self._table, **kwargs)
        found = [_revocation(i) for i in answer.get("Items", [])]
        last = answer.get("LastEvaluatedKey")
        return found, last["sk"]["S"].removeprefix("REVOCATION#") if last else None

    def set_outcome(self, revocation_id: str, account_id: str, outcome: AccountOutcome) -> None:
        self._call("update_item", TableName=self._table,
                   Key={"pk": s(LIST_PK), "sk": s(f"REVOCATION#{revocation_id}")},
                   UpdateExpression="SET accounts.#a = :o", ConditionExpression="attribute_exists(pk)",
                   ExpressionAttributeNames={"#a": account_id},
                   ExpressionAttributeValues={":o": {"S": json.dumps(outcome.to_dict(), sort_keys=True)}})

    def refusal(self, principal: str) -> dict[str, str] | None:
        answer = self._call("get_item", TableName=self._table, ConsistentRead=True,
                            Key=refusal_key(principal))
        item = answer.get("Item")
        return {k: v["S"] for k, v in item.items() if "S" in v} if item else None

    def refusals(self) -> list[dict[str, str]]:
        items = self._query_all(KeyConditionExpression="pk = :pk", ConsistentRead=True,
                                ExpressionAttributeValues={":pk": s(REFUSALS_PK)})
        return [{k: v["S"] for k, v in item.items() if "S" in v} for item in items]

    def end(self, revocation: Revocation, *, state: str, by: str, now: datetime) -> None:
        """Stop refusing the person (lifted by an admin, or ended by a policy that no longer grants them)."""
        update = {"Update": {
            "TableName": self._table, "Key": {"pk": s(LIST_PK), "sk": s(f"REVOCATION#{revocation.id}")},
            "UpdateExpression": "SET #state = :state, ended_at = :now, ended_by = :by",
            "ConditionExpression": "#state = :in_force",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {":state": s(state), ":now": s(iso(now)), ":by": s(by),
                                          ":in_force": s(IN_FORCE)}}}
        # Only this revocation's refusal: a newer revocation of the same person stays in force.
        refusal = {"Delete": {"TableName": self._table, "Key": refusal_key(revocation.principal),
                              "ConditionExpression": "attribute_not_exists(pk) OR revocation = :id",
                              "ExpressionAttributeValues": {":id": s(revocation.id)}}}
        try:
            self._client.transact_write_items(TransactItems=[update, refusal])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                raise Conflict(f"revocation {revocation.id} is no longer in force") from exc
            raise _translate(exc) from exc
        except BotoCoreError as exc:
            raise _translate(exc) from exc

    # -- deny entries, per account

    def entries(self, account_id: str) -> list[DenyEntry]:
        items = self._query_all(KeyConditionExpression="pk = :pk AND begins_with(sk, :e)", ConsistentRead=True,
                                ExpressionAttributeValues={":pk": s(f"DENIES#{account_id}"), ":e": s("ENTRY#")})
        return [DenyEntry(source_identity=i["source_identity"]["S"], cutoff=dt(i["cutoff"]["S"]),
                          expires=dt(i["expires"]["S"]), role_arn=i.get("role_arn", {}).get("S"))
                for i in items]

    def put_entry(self, account_id: str, entry: DenyEntry, revocation_id: str) -> None:
        item = {"pk": s(f"DENIES#{account_id}"), "sk": s(_entry_sk(entry)),
                "source_identity": s(entry.source_identity), "cutoff": s(iso(entry.cutoff)),
                "expires": s(iso(entry.expires)), "revocation": s(revocation_id),
                "expires_at_epoch": n((entry.expires + ENTRY_TTL_GRACE).timestamp())}
        if entry.role_arn:
            item["role_arn"] = s(entry.role_arn)
        self._call("put_item", TableName=self._table, Item=item)

    def drop_entries(self, account_id: str, entries: list[DenyEntry]) -> None:
        for entry in entries:
            self._call("delete_item", TableName=self._table,
                       Key={"pk": s(f"DENIES#{account_id}"), "sk": s(_entry_sk(entry))})

    def lock(self, account_id: str, owner: str, now: datetime, lease: timedelta) -> bool:
        """Take the account's writer lease; False if another writer holds an unexpired one."""
        return conditional_write(lambda: self._client.put_item(
            TableName=self._table,
            Item={"pk": s(f"DENIES#{account_id}"), "sk": s("LOCK"), "owner": s(owner),
                  "lease_until": s(iso(now + lease)),
                  "expires_at_epoch": n((now + lease + ENTRY_TTL_GRACE).timestamp())},
            ConditionExpression="attribute_not_exists(pk) OR lease_until < :now",
            ExpressionAttributeValues={":now": s(iso(now))}), _translate)

    def renew(self, account_id: str, owner: str, now: datetime, lease: timedelta) -> bool:
        """Extend the lease ``owner`` holds; False if it is no longer theirs (it expired and another took it)."""
        return conditional_write(lambda: self._client.update_item(
            TableName=self._table, Key={"pk": s(f"DENIES#{account_id}"), "sk": s("LOCK")},
            UpdateExpression="SET lease_until = :until, expires_at_epoch = :ttl",
            ConditionExpression="#o = :owner", ExpressionAttributeNames={"#o": "owner"},
            ExpressionAttributeValues={":owner": s(owner), ":until": s(iso(now + lease)),
                                       ":ttl": n((now + lease + ENTRY_TTL_GRACE).timestamp())}), _translate)

    def unlock(self, account_id: str, owner: str) -> None:
        try:
            self._client.delete_item(TableName=self._table, Key={"pk": s(f"DENIES#{account_id}"), "sk": s("LOCK")},
                                     ConditionExpression="#o = :owner", ExpressionAttributeNames={"#o": "owner"},
                                     ExpressionAttributeValues={":owner": s(owner)})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                LOG.warning("could not release the revocations lock of %s: %s", account_id,
                            exc.response.get("Error", {}).get("Code"))
        except BotoCoreError as exc:
            LOG.warning("could not release the revocations lock of %s: %s", account_id, type(exc).__name__)

    # -- sessions issued

    def record_issued(self, owner: str, session: LiveSession) -> None:
        """Record that ``session`` lives until its expiry (one put; an item that lives longer is kept)."""
        until = int(session.expires.timestamp()) + 1
        item = {"pk": s(f"{ISSUED_PREFIX}{owner}"),
                "sk": s(f"SESSION#{session.account_id}#{session.source_identity}#{session.role_arn}"),
                "principal": s(session.principal), "source_identity": s(session.source_identity),
                "account_id": s(session.account_id), "role_arn": s(session.role_arn),
                "expires": s(iso(session.expires)), "until": n(until),
                "expires_at_epoch": n(until + ENTRY_TTL_GRACE.total_seconds())}
        # False (not written) when a session there that lives longer is already recorded.
        conditional_write(lambda: self._client.put_item(
            TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk) OR #u < :u",
            ExpressionAttributeNames={"#u": "until"}, ExpressionAttributeValues={":u": n(until)}), _translate)

    def issued(self, owner: str, now: datetime) -> list[LiveSession]:
        """The sessions recorded for ``owner`` (a person's linked principals included) still alive at ``now``."""
        items = self._query_all(KeyConditionExpression="pk = :pk", ConsistentRead=True,
                                ExpressionAttributeValues={":pk": s(f"{ISSUED_PREFIX}{owner}")})
        found = [LiveSession(principal=i["principal"]["S"], source_identity=i["source_identity"]["S"],
                               account_id=i["account_id"]["S"], role_arn=i["role_arn"]["S"],
                               expires=dt(i["expires"]["S"])) for i in items]
        return [f for f in found if f.expires > now]  # TTL deletes late: expired items may still be read

    # -- plumbing

    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, method)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc) from exc

    def _query_all(self, **kwargs: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            answer = self._call("query", TableName=self._table, **kwargs)
            items += answer.get("Items", [])
            if "LastEvaluatedKey" not in answer:
                return items
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


def _entry_sk(entry: DenyEntry) -> str:
    return f"ENTRY#{entry.source_identity}#{entry.role_arn or '*'}"


def _item(revocation: Revocation) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": s(LIST_PK), "sk": s(f"REVOCATION#{revocation.id}"), "id": s(revocation.id),
        "kind": s(revocation.kind), "principal": s(revocation.principal),
        "source_identity": s(revocation.source_identity), "by": s(revocation.by), "reason": s(revocation.reason),
        "created_at": s(iso(revocation.created_at)), "cutoff": s(iso(revocation.cutoff)),
        "state": s(revocation.state), "roles": {"L": [s(r) for r in revocation.roles]},
        # One JSON string per account, so that each account's outcome is one small update.
        "accounts": {"M": {a: {"S": json.dumps(o.to_dict(), sort_keys=True)} for a, o in revocation.accounts.items()}},
    }
    if revocation.request_ref:
        item["request_ref"] = s(revocation.request_ref)
    return item


def _revocation(item: Mapping[str, Any]) -> Revocation:
    def opt(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if value else None

    accounts = {}
    for account, value in item.get("accounts", {}).get("M", {}).items():
        data = json.loads(value["S"])
        accounts[account] = AccountOutcome(status=data["status"], detail=data.get("detail", ""), at=data.get("at"),
                                           attempts=int(data.get("attempts", 0)), roles=tuple(data.get("roles", ())),
                                           uncovered=tuple(data.get("uncovered", ())),
                                           identities=tuple(data.get("identities", ())),
                                           sessions_until=data.get("sessions_until"))
    ended = opt("ended_at")
    return Revocation(
        id=item["id"]["S"], kind=item["kind"]["S"], principal=item["principal"]["S"],
        source_identity=item["source_identity"]["S"], by=item["by"]["S"], reason=item["reason"]["S"],
        created_at=dt(item["created_at"]["S"]), cutoff=dt(item["cutoff"]["S"]), accounts=accounts,
        roles=tuple(r["S"] for r in item.get("roles", {}).get("L", [])), state=item["state"]["S"],
        ended_at=dt(ended) if ended else None, ended_by=opt("ended_by"), request_ref=opt("request_ref"))


def with_outcome(revocation: Revocation, account_id: str, outcome: AccountOutcome) -> Revocation:
    return replace(revocation, accounts={**revocation.accounts, account_id: outcome})


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        LOG.warning("DynamoDB call for revocations failed: %s", code)
        if code in _THROTTLING:
            return Throttled("the revocation store is throttling; retry in a moment")
        return DependencyDown(f"the revocation store refused the call ({code}); an operator must check it")
    LOG.warning("DynamoDB unreachable for revocations: %s", type(exc).__name__)
    return DependencyDown("the revocation store is unreachable; try again shortly")
