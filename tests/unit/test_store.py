"""How the store turns DynamoDB's refusals into the broker's errors.

Each case is the exact error botocore raises (a Stubber queues the parsed
error, with ``CancellationReasons`` where DynamoDB sends them), so a change in
the mapping (a race shown as a 503, throttling shown as a conflict) fails here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, WaiterError
from botocore.stub import ANY, Stubber

from chalicelib.access.workflow import Plan
from chalicelib.aws.items import session_item
from chalicelib.aws.store import (
    MAX_TRANSACTION_ITEMS,
    AccessRequest,
    AccessStore,
    ApprovalStep,
    IdentitySnapshot,
    NewRequest,
    PageKey,
    RequestEvent,
    create_table,
)
from chalicelib.exceptions import (
    BreakGlassLocked,
    Conflict,
    DependencyDown,
    Forbidden,
    NotFound,
    Revoked,
    RolebrokerError,
    SlotTaken,
    Throttled,
    TooManyWrites,
)
from chalicelib.jit.grants import ActiveGrant, IssuedSession
from chalicelib.jit.model import Review, Vote
from chalicelib.validation import MAX_ROLES_PER_REQUEST
from tests.conftest import fake_client

TABLE = "rolebroker-test"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
PENDING_REQUEST = AccessRequest(id="0123456789ab", role="breakglass", requester="bob@example.com",
                                duration_seconds=3600, reason="INC-42", status="pending", created_at=NOW,
                                pending_until=NOW + timedelta(hours=1))


@pytest.fixture
def stubbed() -> Iterator[tuple[AccessStore, Stubber]]:
    client = fake_client("dynamodb")
    with Stubber(client) as stubber:
        yield AccessStore(client, TABLE), stubber
        stubber.assert_no_pending_responses()


def cancelled(stubber: Stubber, *codes: str) -> None:
    stubber.add_client_error(
        "transact_write_items", service_error_code="TransactionCanceledException", http_status_code=400,
        service_message=f"Transaction cancelled, please refer cancellation reasons for specific reasons "
                        f"[{', '.join(codes)}]",
        modeled_fields={"CancellationReasons": [{"Code": code} for code in codes]})


def deny(store: AccessStore) -> None:
    store.deny(PENDING_REQUEST, approver="carol@example.com", now=NOW, note=None)


@pytest.mark.parametrize(("codes", "expected", "fragment"), [
    (("ConditionalCheckFailed", "None"), Conflict, "no longer pending"),
    (("None", "ConditionalCheckFailed"), Conflict, "no longer pending"),
    (("ConditionalCheckFailed", "TransactionConflict"), Conflict, "no longer pending"),
    (("TransactionConflict", "None"), Throttled, "busy"),
    (("None", "TransactionConflict"), Throttled, "busy"),
    (("ThrottlingError", "None"), Throttled, "busy"),
    (("ProvisionedThroughputExceeded", "None"), Throttled, "busy"),
    (("ValidationError", "None"), DependencyDown, "an operator must check it"),
])
def test_cancelled_transactions_map_by_their_reasons(stubbed: tuple[AccessStore, Stubber], codes: tuple[str, ...],
                                                     expected: type[RolebrokerError], fragment: str) -> None:
    store, stubber = stubbed
    cancelled(stubber, *codes)
    with pytest.raises(expected) as caught:
        deny(store)
    assert type(caught.value) is expected
    assert fragment in str(caught.value)


@pytest.mark.parametrize(("code", "expected"), [
    ("TransactionConflictException", Throttled),
    ("ProvisionedThroughputExceededException", Throttled),
    ("ThrottlingException", Throttled),
    ("RequestLimitExceeded", Throttled),
    ("ResourceNotFoundException", DependencyDown),
    ("AccessDeniedException", DependencyDown),
])
def test_other_transaction_errors_map_by_code(stubbed: tuple[AccessStore, Stubber], code: str,
                                              expected: type[RolebrokerError]) -> None:
    store, stubber = stubbed
    stubber.add_client_error("transact_write_items", service_error_code=code, http_status_code=400)
    with pytest.raises(expected) as caught:
        deny(store)
    assert type(caught.value) is expected


def test_a_failed_condition_outside_a_transaction_is_a_conflict(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_client_error("update_item", service_error_code="ConditionalCheckFailedException",
                             http_status_code=400)
    with pytest.raises(Conflict):
        store.add_message("0123456789ab", "C0APPROVALS", "1700000000.000100")


def test_an_unreachable_table_is_a_503(stubbed: tuple[AccessStore, Stubber], monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = stubbed

    def unreachable(**kwargs: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    monkeypatch.setattr(store._client, "transact_write_items", unreachable)
    with pytest.raises(DependencyDown) as caught:
        deny(store)
    assert "unreachable" in str(caught.value)


def test_deny_is_one_conditional_transaction(stubbed: tuple[AccessStore, Stubber]) -> None:
    """The condition that keeps requesters from deciding their own request is sent to DynamoDB."""
    store, stubber = stubbed
    stubber.add_response("transact_write_items", {}, {"TransactItems": [
        {"Update": {
            "TableName": TABLE, "Key": {"pk": {"S": "REQUEST#0123456789ab"}, "sk": {"S": "STATE"}},
            "UpdateExpression": ANY,
            "ConditionExpression": "#status = :from AND pending_until > :now AND requester <> :who",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": ANY,
        }},
        {"Put": {"TableName": TABLE, "Item": ANY, "ConditionExpression": "attribute_not_exists(pk)"}},
    ]})
    deny(store)


def create_in_slot(store: AccessStore) -> None:
    store.create(role="breakglass", requester="bob@example.com", duration_seconds=3600, reason="INC-42", now=NOW,
                 pending_seconds=3600, slot=3)


def test_a_new_request_takes_its_slot_in_the_same_transaction(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    pending_until_us = int((NOW + timedelta(hours=1)).timestamp()) * 1_000_000
    stubber.add_response("transact_write_items", {}, {"TransactItems": [
        {"Put": {"TableName": TABLE, "Item": ANY, "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Put": {"TableName": TABLE, "Item": ANY, "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Put": {"TableName": TABLE, "Item": {
            "pk": {"S": "OPEN#bob@example.com"}, "sk": {"S": "SLOT#03"}, "request_id": ANY,
            "until_us": {"N": str(pending_until_us)}, "expires_at_epoch": ANY},
            "ConditionExpression": "attribute_not_exists(pk) OR until_us <= :now",
            "ExpressionAttributeValues": {":now": {"N": str(int(NOW.timestamp()) * 1_000_000)}}}},
    ]})
    create_in_slot(store)


@pytest.mark.parametrize(("codes", "expected"), [
    (("None", "None", "ConditionalCheckFailed"), SlotTaken),
    (("ConditionalCheckFailed", "None", "None"), Conflict),
    (("None", "None", "TransactionConflict"), SlotTaken),
    (("TransactionConflict", "None", "None"), Throttled),
])
def test_a_taken_slot_is_told_apart_from_other_failures(stubbed: tuple[AccessStore, Stubber], codes: tuple[str, ...],
                                                        expected: type[RolebrokerError]) -> None:
    store, stubber = stubbed
    cancelled(stubber, *codes)
    with pytest.raises(expected) as caught:
        create_in_slot(store)
    assert type(caught.value) is expected


def test_deciding_a_request_gives_its_slot_back_if_still_its_own(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("transact_write_items", {}, {"TransactItems": [ANY, ANY, {"Delete": {
        "TableName": TABLE, "Key": {"pk": {"S": "OPEN#bob@example.com"}, "sk": {"S": "SLOT#03"}},
        "ConditionExpression": "request_id = :id", "ExpressionAttributeValues": {":id": {"S": "0123456789ab"}}}}]})
    store.deny(replace(PENDING_REQUEST, slot=3), approver="carol@example.com", now=NOW, note=None)


def test_an_approval_names_the_place_it_takes_and_whom_the_database_refuses(
        stubbed: tuple[AccessStore, Stubber]) -> None:
    """The conditions that make N-of-M and stages hold against races are sent to DynamoDB, word for word."""
    store, stubber = stubbed
    stubber.add_response("transact_write_items", {}, {"TransactItems": [
        {"Update": {
            "TableName": TABLE, "Key": {"pk": {"S": "REQUEST#0123456789ab"}, "sk": {"S": "STATE"}},
            "UpdateExpression": "SET stage_now = :next_stage, votes_in_stage = :next_count, "
                                "votes = list_append(if_not_exists(votes, :empty), :vote) "
                                "ADD approvers :who_set, approver_subs :iss_sub_set",
            "ConditionExpression": "#status = :pending AND pending_until > :now AND requester <> :who "
                                   "AND (attribute_not_exists(approvers) OR NOT contains(approvers, :who)) "
                                   "AND NOT (requester_iss = :iss AND requester_sub = :sub) "
                                   "AND (attribute_not_exists(approver_subs) OR NOT contains(approver_subs, :iss_sub))"
                                   " AND (attribute_not_exists(stage_now) OR "
                                   "(stage_now = :stage AND votes_in_stage = :count))",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": ANY,
        }},
        {"Put": {"TableName": TABLE, "Item": {
            "pk": {"S": "REQUEST#0123456789ab"}, "sk": {"S": "EVENT#00#v00#00"}, "at": ANY,
            "who": {"S": "carol@example.com"}, "from": {"S": "pending"}, "to": {"S": "pending"},
            "note": {"S": "approval 1 of 2"}}, "ConditionExpression": "attribute_not_exists(pk)"}},
        {"ConditionCheck": {"TableName": TABLE, "Key": {"pk": {"S": "REFUSALS"}, "sk": {"S": "carol@example.com"}},
                            "ConditionExpression": "attribute_not_exists(pk)"}},  # carol's sessions not revoked
    ]})
    store.vote(PENDING_REQUEST, ApprovalStep("carol@example.com", ("https://idp.example.com", "00uCAROL"), NOW, 0, 1,
                                             False), "approval 1 of 2")


def test_a_change_over_dynamodbs_transaction_limit_is_refused_before_any_write(
        stubbed: tuple[AccessStore, Stubber]) -> None:
    store, _ = stubbed  # no response queued: any call to DynamoDB would fail the Stubber
    roles = tuple(f"role-{i}" for i in range(98))  # update, event, 98 grants, slot, the approver not revoked
    with pytest.raises(TooManyWrites) as caught:
        store.approve(replace(PENDING_REQUEST, roles=roles, slot=1), approver="carol@example.com", now=NOW,
                      grant_until=NOW + timedelta(hours=1))
    assert caught.value.status == 400
    assert str(caught.value) == ("this change needs 102 writes at once and DynamoDB takes at most 100 in one "
                                 "transaction; ask for fewer roles at once")


def test_the_largest_request_the_api_takes_fits_every_transaction(stubbed: tuple[AccessStore, Stubber]) -> None:
    """MAX_ROLES_PER_REQUEST roles: approval (update, event, a grant each, the slot, the approver not revoked),
    revocation, and the extension of its grants (two requests, two events, a grant each, the slot, the approver
    not revoked) all stay within 100 writes."""
    store, stubber = stubbed
    request = replace(PENDING_REQUEST, roles=tuple(f"role-{i}" for i in range(MAX_ROLES_PER_REQUEST)), slot=1)
    sizes: list[int] = []
    for _ in range(3):
        stubber.add_response("transact_write_items", {}, None)
    original = store._client.transact_write_items

    def counting(**kwargs: Any) -> Any:
        sizes.append(len(kwargs["TransactItems"]))
        return original(**kwargs)

    store._client.transact_write_items = counting
    store.approve(request, approver="carol@example.com", now=NOW, grant_until=NOW + timedelta(hours=1))
    approved = replace(request, status="approved", grant_until=NOW + timedelta(hours=1), slot=None)
    store.revoke(approved, who="carol@example.com", now=NOW, note=None)
    extension = replace(PENDING_REQUEST, id="0123456789ac", kind="extension", parent=request.id, slot=2)
    store.extend_by_approval(extension, approved, approver="carol@example.com", approver_sub=None, now=NOW,
                             new_until=NOW + timedelta(hours=2))
    assert sizes == [MAX_ROLES_PER_REQUEST + 4, MAX_ROLES_PER_REQUEST + 2, MAX_ROLES_PER_REQUEST + 6]
    assert max(sizes) <= MAX_TRANSACTION_ITEMS


@pytest.mark.parametrize("code", ["ConditionalCheckFailed", "TransactionConflict"])
def test_a_held_break_glass_lock_is_told_apart(stubbed: tuple[AccessStore, Stubber], code: str) -> None:
    store, stubber = stubbed
    cancelled(stubber, "None", "None", "None", code)
    with pytest.raises(BreakGlassLocked):
        store.break_glass(role="prod-admin", requester="bob@example.com", duration_seconds=3600, reason="down",
                          ticket="INC-1", now=NOW)


# --------------------------------------------------------------------------
# The table the local stack and the tests create (prod's is infra/resources.json, kept equal by tests/deploy)


def _key(hash_key: str, range_key: str) -> list[dict[str, str]]:
    return [{"AttributeName": hash_key, "KeyType": "HASH"}, {"AttributeName": range_key, "KeyType": "RANGE"}]


def test_create_table_creates_the_indexes_waits_for_the_table_and_turns_on_its_ttl(
        monkeypatch: pytest.MonkeyPatch) -> None:
    client = fake_client("dynamodb")
    slept: list[float] = []
    monkeypatch.setattr("botocore.waiter.time.sleep", slept.append)
    with Stubber(client) as stubber:
        stubber.add_response("create_table", {}, {
            "TableName": TABLE, "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"}
                                     for a in ("pk", "sk", "pending_pk", "requester", "created_at")],
            "KeySchema": _key("pk", "sk"),
            "GlobalSecondaryIndexes": [
                {"IndexName": "gsi_pending", "Projection": {"ProjectionType": "ALL"},
                 "KeySchema": _key("pending_pk", "created_at")},
                {"IndexName": "gsi_requester", "Projection": {"ProjectionType": "ALL"},
                 "KeySchema": _key("requester", "created_at")}]})
        stubber.add_response("describe_table", {"Table": {"TableStatus": "CREATING"}}, {"TableName": TABLE})
        stubber.add_response("describe_table", {"Table": {"TableStatus": "ACTIVE"}}, {"TableName": TABLE})
        stubber.add_response("update_time_to_live", {}, {
            "TableName": TABLE, "TimeToLiveSpecification": {"Enabled": True, "AttributeName": "expires_at_epoch"}})
        create_table(client, TABLE)
        stubber.assert_no_pending_responses()
    assert slept == [0.2]  # polled every 0.2 s


def test_create_table_gives_up_waiting_after_fifty_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    client = fake_client("dynamodb")
    monkeypatch.setattr("botocore.waiter.time.sleep", lambda seconds: None)
    with Stubber(client) as stubber:
        stubber.add_response("create_table", {}, None)
        for _ in range(50):
            stubber.add_response("describe_table", {"Table": {"TableStatus": "CREATING"}}, {"TableName": TABLE})
        with pytest.raises(WaiterError, match="Max attempts exceeded"):
            create_table(client, TABLE)
        stubber.assert_no_pending_responses()


def test_create_table_leaves_a_table_that_exists_alone() -> None:
    client = fake_client("dynamodb")
    with Stubber(client) as stubber:  # neither a wait nor a TTL change follows
        stubber.add_client_error("create_table", service_error_code="ResourceInUseException", http_status_code=400)
        create_table(client, TABLE)
        stubber.assert_no_pending_responses()


# --------------------------------------------------------------------------
# What each write hands DynamoDB, word for word (the conditions are the rules that hold against races)

AT = {"S": "2026-01-01T12:00:00+00:00"}


def not_revoked(*principals: str) -> list[dict[str, Any]]:
    return [{"ConditionCheck": {"TableName": TABLE, "Key": {"pk": {"S": "REFUSALS"}, "sk": {"S": p}},
                                "ConditionExpression": "attribute_not_exists(pk)"}} for p in principals]


def event(request_id: str, step: str, who: str, before: str | None, after: str, note: str | None) -> dict[str, Any]:
    item = {"pk": {"S": f"REQUEST#{request_id}"}, "sk": {"S": f"EVENT#{step}"}, "at": AT, "who": {"S": who},
            "to": {"S": after}, **({"from": {"S": before}} if before else {}),
            **({"note": {"S": note}} if note else {})}
    return {"Put": {"TableName": TABLE, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}


@pytest.mark.parametrize("lock", [True, False])
def test_a_break_glass_is_approved_at_once_with_its_grant_while_the_persons_lock_is_free(
        stubbed: tuple[AccessStore, Stubber], monkeypatch: pytest.MonkeyPatch, lock: bool) -> None:
    store, stubber = stubbed
    monkeypatch.setattr("chalicelib.aws.store.uuid.uuid4", lambda: uuid.UUID("0123456789ab0123456789ab01234567"))
    lock_key = {"pk": {"S": "BREAKGLASS#bob-person"}, "sk": {"S": "LOCK"}}
    until = {"S": "2026-01-01T13:00:00+00:00"}
    stubber.add_response("transact_write_items", {}, {"TransactItems": [
        {"Put": {"TableName": TABLE, "ConditionExpression": "attribute_not_exists(pk)", "Item": {
            "pk": {"S": "REQUEST#0123456789ab"}, "sk": {"S": "STATE"}, "id": {"S": "0123456789ab"},
            "role": {"S": "prod-admin"}, "roles": {"L": [{"S": "prod-admin"}]}, "kind": {"S": "break_glass"},
            "requester": {"S": "bob@example.com"}, "requester_iss": {"S": "iss"}, "requester_sub": {"S": "sub"},
            "requester_person": {"S": "bob-person"}, "requester_slack": {"S": "U1"},
            "duration_seconds": {"N": "3600"}, "reason": {"S": "down"}, "ticket": {"S": "INC-1"},
            "status": {"S": "approved"}, "created_at": AT, "pending_until": AT, "decided_by": {"S": "bob@example.com"},
            "decided_at": AT, "grant_from": AT, "grant_until": until, "holds_lock": {"BOOL": lock},
            "pending_pk": {"S": "review"}, "review_status": {"S": "pending"}, "auto_extended_seconds": {"N": "0"}}}},
        event("0123456789ab", "00", "bob@example.com", None, "approved", "break-glass (INC-1): down"),
        {"Put": {"TableName": TABLE, "Item": {
            "pk": {"S": "GRANT#bob@example.com"}, "sk": {"S": "ROLE#prod-admin#0123456789ab"},
            "role": {"S": "prod-admin"}, "from": AT, "until": until, "request_id": {"S": "0123456789ab"},
            "approved_by": {"S": "bob@example.com"}, "ticket": {"S": "INC-1"}, "break_glass": {"BOOL": True},
            "expires_at_epoch": {"N": str(int((NOW + timedelta(hours=25)).timestamp()))}}}},
        {"Put": {"TableName": TABLE, "ConditionExpression": "attribute_not_exists(pk)", "Item": {
            **lock_key, "request_id": {"S": "0123456789ab"}, "role": {"S": "prod-admin"}, "at": AT}}} if lock else
        {"ConditionCheck": {"TableName": TABLE, "Key": lock_key, "ConditionExpression": "attribute_not_exists(pk)"}},
        *not_revoked("bob@example.com", "bob-person"),
    ]})
    request = store.break_glass(role="prod-admin", requester="bob@example.com", duration_seconds=3600, reason="down",
                                ticket="INC-1", now=NOW, requester_slack="U1", requester_sub=("iss", "sub"),
                                lock=lock, requester_person="bob-person")
    assert (request.id, request.kind, request.status, request.decided_by, request.decided_at, request.grant_from,
            request.grant_until, request.holds_lock, request.review, request.ticket, request.pending_until) == (
        "0123456789ab", "break_glass", "approved", "bob@example.com", NOW, NOW, NOW + timedelta(hours=1), lock,
        Review("pending"), "INC-1", NOW)
    assert (request.requester_iss, request.requester_sub, request.requester_person, request.requester_slack) == (
        "iss", "sub", "bob-person", "U1")


def test_a_review_is_never_the_requesters_and_releases_the_lock_it_holds(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("transact_write_items", {}, {"TransactItems": [
        {"Update": {
            "TableName": TABLE, "Key": {"pk": {"S": "REQUEST#0123456789ab"}, "sk": {"S": "STATE"}},
            "UpdateExpression": "SET review_status = :done, reviewed_by = :who, reviewed_at = :now, "
                                "review_note = :note REMOVE pending_pk",
            "ConditionExpression": "#kind = :bg AND review_status = :pending AND requester <> :who AND NOT "
                                   "(requester_iss = :iss AND requester_sub = :sub) AND requester <> :person AND "
                                   "(attribute_not_exists(requester_person) OR requester_person <> :person)",
            "ExpressionAttributeNames": {"#kind": "kind"},
            "ExpressionAttributeValues": {
                ":bg": {"S": "break_glass"}, ":pending": {"S": "pending"}, ":done": {"S": "done"},
                ":who": {"S": "carol"}, ":now": AT, ":note": {"S": "ok"}, ":iss": {"S": "iss"},
                ":sub": {"S": "csub"}, ":person": {"S": "carol-p"}}}},
        event("0123456789ab", "03", "carol", "review", "reviewed", "ok"),
        {"Delete": {"TableName": TABLE, "Key": {"pk": {"S": "BREAKGLASS#bob-p"}, "sk": {"S": "LOCK"}},
                    "ConditionExpression": "request_id = :id",
                    "ExpressionAttributeValues": {":id": {"S": "0123456789ab"}}}},
        *not_revoked("carol", "carol-p"),
    ]})
    store.review(replace(PENDING_REQUEST, kind="break_glass", holds_lock=True, requester_person="bob-p"), who="carol",
                 now=NOW, note="ok", reviewer_sub=("iss", "csub"), reviewer_person="carol-p")


def test_a_review_without_note_sub_person_or_lock_asks_only_what_it_knows(
        stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("transact_write_items", {}, {"TransactItems": [
        {"Update": {
            "TableName": TABLE, "Key": {"pk": {"S": "REQUEST#0123456789ab"}, "sk": {"S": "STATE"}},
            "UpdateExpression": "SET review_status = :done, reviewed_by = :who, reviewed_at = :now REMOVE pending_pk",
            "ConditionExpression": "#kind = :bg AND review_status = :pending AND requester <> :who",
            "ExpressionAttributeNames": {"#kind": "kind"},
            "ExpressionAttributeValues": {
                ":bg": {"S": "break_glass"}, ":pending": {"S": "pending"}, ":done": {"S": "done"},
                ":who": {"S": "carol"}, ":now": AT}}},
        event("0123456789ab", "03", "carol", "review", "reviewed", None),
        *not_revoked("carol"),
    ]})
    store.review(replace(PENDING_REQUEST, kind="break_glass"), who="carol", now=NOW, note=None)


def test_the_approval_that_completes_the_plan_narrowed_by_a_linked_approver(
        stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    request = replace(PENDING_REQUEST, roles=("a", "b"), stage=1, slot=2,
                      votes=(Vote("dan", 0, NOW), Vote("erin", 1, NOW)))
    stubber.add_response("transact_write_items", {}, {"TransactItems": [
        {"Update": {
            "TableName": TABLE, "Key": {"pk": {"S": "REQUEST#0123456789ab"}, "sk": {"S": "STATE"}},
            "UpdateExpression": "SET stage_now = :next_stage, votes_in_stage = :next_count, "
                                "votes = list_append(if_not_exists(votes, :empty), :vote), #status = :v0, "
                                "decided_by = :v1, decided_at = :v2, grant_until = :v3, grant_from = :v4, "
                                "#roles = :roles, #role = :role, narrowed_from = if_not_exists(narrowed_from, :was) "
                                "ADD approvers :who_set, approver_subs :iss_sub_set, approver_persons :person_set "
                                "REMOVE pending_pk",
            "ConditionExpression": "#status = :pending AND pending_until > :now AND requester <> :who AND "
                                   "(attribute_not_exists(approvers) OR NOT contains(approvers, :who)) AND "
                                   "NOT (requester_iss = :iss AND requester_sub = :sub) AND "
                                   "(attribute_not_exists(approver_subs) OR NOT contains(approver_subs, :iss_sub)) AND "
                                   "requester <> :person AND "
                                   "(attribute_not_exists(requester_person) OR requester_person <> :person) AND "
                                   "(attribute_not_exists(approvers) OR NOT contains(approvers, :person)) AND "
                                   "(attribute_not_exists(approver_persons) OR NOT contains(approver_persons, :person))"
                                   " AND (stage_now = :stage AND votes_in_stage = :count) AND #roles = :was",
            "ExpressionAttributeNames": {"#role": "role", "#roles": "roles", "#status": "status"},
            "ExpressionAttributeValues": {
                ":pending": {"S": "pending"}, ":now": AT, ":who": {"S": "partner|c"},
                ":who_set": {"SS": ["partner|c"]}, ":stage": {"N": "1"}, ":count": {"N": "1"},
                ":next_stage": {"N": "1"}, ":next_count": {"N": "2"},
                ":vote": {"L": [{"M": {"who": {"S": "partner|c"}, "stage": {"N": "1"}, "at": AT}}]},
                ":empty": {"L": []}, ":iss": {"S": "iss"}, ":sub": {"S": "csub"},
                ":iss_sub": {"S": '["iss","csub"]'}, ":iss_sub_set": {"SS": ['["iss","csub"]']},
                ":person": {"S": "carol"}, ":person_set": {"SS": ["carol"]},
                ":v0": {"S": "approved"}, ":v1": {"S": "partner|c"}, ":v2": AT,
                ":v3": {"S": "2026-01-01T14:00:00+00:00"}, ":v4": {"S": "2026-01-01T13:00:00+00:00"},
                ":roles": {"L": [{"S": "b"}]}, ":role": {"S": "b"}, ":was": {"L": [{"S": "a"}, {"S": "b"}]}}}},
        event("0123456789ab", "01", "partner|c", "pending", "approved", "narrowed to b (asked: a, b)"),
        {"Put": {"TableName": TABLE, "Item": {
            "pk": {"S": "GRANT#bob@example.com"}, "sk": {"S": "ROLE#b#0123456789ab"}, "role": {"S": "b"},
            "from": {"S": "2026-01-01T13:00:00+00:00"}, "until": {"S": "2026-01-01T14:00:00+00:00"},
            "request_id": {"S": "0123456789ab"}, "approved_by": {"S": "partner|c"},
            "expires_at_epoch": {"N": str(int((NOW + timedelta(hours=26)).timestamp()))}}}},
        {"Delete": {"TableName": TABLE, "Key": {"pk": {"S": "OPEN#bob@example.com"}, "sk": {"S": "SLOT#02"}},
                    "ConditionExpression": "request_id = :id",
                    "ExpressionAttributeValues": {":id": {"S": "0123456789ab"}}}},
        *not_revoked("partner|c", "carol"),
    ]})
    store.approve(request, approver="partner|c", now=NOW, grant_until=NOW + timedelta(hours=2),
                  approver_sub=("iss", "csub"), grant_from=NOW + timedelta(hours=1), roles=("b",),
                  approver_person="carol")


def grant_moved(request_id: str, role: str, until: str, ttl: datetime) -> dict[str, Any]:
    return {"Update": {
        "TableName": TABLE, "Key": {"pk": {"S": "GRANT#bob@example.com"}, "sk": {"S": f"ROLE#{role}#{request_id}"}},
        "UpdateExpression": "SET #until = :until, expires_at_epoch = :ttl",
        "ConditionExpression": "attribute_exists(pk)",
        "ExpressionAttributeNames": {"#until": "until"},
        "ExpressionAttributeValues": {":until": {"S": until}, ":ttl": {"N": str(int(ttl.timestamp()))}}}}


def test_an_automatic_extension_moves_every_grant_of_the_request_within_its_budget(
        stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    until = "2026-01-01T13:30:00+00:00"
    ttl = NOW + timedelta(hours=25, minutes=30)
    stubber.add_response("transact_write_items", {}, {"TransactItems": [
        {"Update": {
            "TableName": TABLE, "Key": {"pk": {"S": "REQUEST#0123456789ab"}, "sk": {"S": "STATE"}},
            "UpdateExpression": "SET grant_until = :until, extensions = :next, extended_seconds = "
                                "if_not_exists(extended_seconds, :zero) + :d, "
                                "auto_extended_seconds = auto_extended_seconds + :d",
            # The grant it was judged against (unchanged, unexpired, as often extended) and the budget left.
            "ConditionExpression": "#status = :approved AND grant_until = :seen AND grant_until > :now AND "
                                   "(attribute_not_exists(extensions) OR extensions = :n) AND "
                                   "auto_extended_seconds <= :auto_left",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {
                ":approved": {"S": "approved"}, ":seen": {"S": "2026-01-01T13:00:00+00:00"}, ":now": AT,
                ":until": {"S": until}, ":d": {"N": "1800"}, ":zero": {"N": "0"}, ":n": {"N": "2"},
                ":next": {"N": "3"}, ":auto_left": {"N": "1800"}}}},
        event("0123456789ab", "01#x02", "bob@example.com", "approved", "approved",
              "extended by 1800 s (automatic, within the policy's limit): more"),
        grant_moved("0123456789ab", "a", until, ttl), grant_moved("0123456789ab", "b", until, ttl),
    ]})
    parent = replace(PENDING_REQUEST, status="approved", roles=("a", "b"), grant_until=NOW + timedelta(hours=1),
                     extensions=2)
    store.extend(parent, seconds=1800, new_until=NOW + timedelta(hours=1, minutes=30), now=NOW, who="bob@example.com",
                 reason="more", auto_budget=3600)


def test_an_approved_extension_request_moves_its_parents_grant_and_gives_back_its_slot(
        stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    until = "2026-01-01T13:30:00+00:00"
    stubber.add_response("transact_write_items", {}, {"TransactItems": [
        {"Update": {
            "TableName": TABLE, "Key": {"pk": {"S": "REQUEST#e1e2e3e4e5e6"}, "sk": {"S": "STATE"}},
            "UpdateExpression": "SET stage_now = :next_stage, votes_in_stage = :next_count, "
                                "votes = list_append(if_not_exists(votes, :empty), :vote), #status = :v0, "
                                "decided_by = :v1, decided_at = :v2, grant_until = :v3 ADD approvers :who_set "
                                "REMOVE pending_pk",
            "ConditionExpression": "#status = :pending AND pending_until > :now AND requester <> :who AND "
                                   "(attribute_not_exists(approvers) OR NOT contains(approvers, :who)) AND "
                                   "(attribute_not_exists(stage_now) OR "
                                   "(stage_now = :stage AND votes_in_stage = :count))",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {
                ":pending": {"S": "pending"}, ":now": AT, ":who": {"S": "carol"}, ":who_set": {"SS": ["carol"]},
                ":stage": {"N": "0"}, ":count": {"N": "0"}, ":next_stage": {"N": "0"}, ":next_count": {"N": "1"},
                ":vote": {"L": [{"M": {"who": {"S": "carol"}, "stage": {"N": "0"}, "at": AT}}]}, ":empty": {"L": []},
                ":v0": {"S": "approved"}, ":v1": {"S": "carol"}, ":v2": AT, ":v3": {"S": until}}}},
        event("e1e2e3e4e5e6", "01", "carol", "pending", "approved", None),
        {"Update": {
            "TableName": TABLE, "Key": {"pk": {"S": "REQUEST#0123456789ab"}, "sk": {"S": "STATE"}},
            "UpdateExpression": "SET grant_until = :until, extensions = :next, extended_seconds = "
                                "if_not_exists(extended_seconds, :zero) + :d",
            "ConditionExpression": "#status = :approved AND grant_until = :seen AND grant_until > :now AND "
                                   "(attribute_not_exists(extensions) OR extensions = :n)",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {
                ":approved": {"S": "approved"}, ":seen": {"S": "2026-01-01T13:00:00+00:00"}, ":now": AT,
                ":until": {"S": until}, ":d": {"N": "1800"}, ":zero": {"N": "0"}, ":n": {"N": "0"},
                ":next": {"N": "1"}}}},
        event("0123456789ab", "01#x00", "carol", "approved", "approved",
              "extended by 1800 s (request e1e2e3e4e5e6): more"),
        grant_moved("0123456789ab", "breakglass", until, NOW + timedelta(hours=25, minutes=30)),
        {"Delete": {"TableName": TABLE, "Key": {"pk": {"S": "OPEN#bob@example.com"}, "sk": {"S": "SLOT#01"}},
                    "ConditionExpression": "request_id = :id",
                    "ExpressionAttributeValues": {":id": {"S": "e1e2e3e4e5e6"}}}},
        *not_revoked("carol"),
    ]})
    parent = replace(PENDING_REQUEST, status="approved", grant_until=NOW + timedelta(hours=1))
    extension = replace(PENDING_REQUEST, id="e1e2e3e4e5e6", kind="extension", parent=parent.id,
                        duration_seconds=1800, reason="more", slot=1)
    store.extend_by_approval(extension, parent, approver="carol", approver_sub=None, now=NOW,
                             new_until=NOW + timedelta(hours=1, minutes=30))


def transition(before: str, after: str, who: str, condition: str, values: dict[str, Any], sets: str = "",
               leaves_pending: bool = True) -> dict[str, Any]:
    return {"Update": {
        "TableName": TABLE, "Key": {"pk": {"S": "REQUEST#0123456789ab"}, "sk": {"S": "STATE"}},
        "UpdateExpression": "SET #status = :to, decided_by = :who, decided_at = :now" + sets
                            + (" REMOVE pending_pk" if leaves_pending else ""),
        "ConditionExpression": condition, "ExpressionAttributeNames": {"#status": "status"},
        "ExpressionAttributeValues": {":from": {"S": before}, ":to": {"S": after}, ":who": {"S": who}, ":now": AT,
                                      **values}}}


def test_a_linked_approvers_denial_is_refused_by_the_database_to_the_requesters_person(
        stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("transact_write_items", {}, {"TransactItems": [
        transition("pending", "denied", "partner|c",
                   "#status = :from AND pending_until > :now AND requester <> :who AND "
                   "NOT (requester_iss = :iss AND requester_sub = :sub) AND requester <> :person AND "
                   "(attribute_not_exists(requester_person) OR requester_person <> :person)",
                   {":note": {"S": "no"}, ":iss": {"S": "iss"}, ":sub": {"S": "csub"}, ":person": {"S": "carol"}},
                   sets=", note = :note"),
        event("0123456789ab", "01", "partner|c", "pending", "denied", "no"),
    ]})
    store.deny(PENDING_REQUEST, approver="partner|c", now=NOW, note="no", approver_sub=("iss", "csub"),
               approver_person="carol")


def test_a_cancel_must_come_from_the_requester(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("transact_write_items", {}, {"TransactItems": [
        transition("pending", "cancelled", "bob@example.com",
                   "#status = :from AND pending_until > :now AND requester = :who", {}),
        event("0123456789ab", "01", "bob@example.com", "pending", "cancelled", None),
    ]})
    store.cancel(PENDING_REQUEST, who="bob@example.com", now=NOW)


def test_a_revocation_ends_an_approved_grant_and_deletes_the_grant_of_each_role(
        stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("transact_write_items", {}, {"TransactItems": [
        transition("approved", "revoked", "carol", "#status = :from", {":note": {"S": "over"}},
                   sets=", note = :note", leaves_pending=False),
        event("0123456789ab", "02", "carol", "approved", "revoked", "over"),
        *({"Delete": {"TableName": TABLE, "Key": {"pk": {"S": "GRANT#bob@example.com"},
                                                  "sk": {"S": f"ROLE#{role}#0123456789ab"}}}} for role in ("a", "b")),
    ]})
    store.revoke(replace(PENDING_REQUEST, status="approved", roles=("a", "b")), who="carol", now=NOW, note="over")


def test_a_new_request_keeps_everything_it_was_filed_with(stubbed: tuple[AccessStore, Stubber],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    store, stubber = stubbed
    monkeypatch.setattr("chalicelib.aws.store.uuid.uuid4", lambda: uuid.UUID("0123456789ab0123456789ab01234567"))
    stubber.add_response("transact_write_items", {}, {"TransactItems": [
        {"Put": {"TableName": TABLE, "ConditionExpression": "attribute_not_exists(pk)", "Item": {
            "pk": {"S": "REQUEST#0123456789ab"}, "sk": {"S": "STATE"}, "id": {"S": "0123456789ab"},
            "role": {"S": "a"}, "roles": {"L": [{"S": "a"}, {"S": "b"}]}, "kind": {"S": "extension"},
            "parent": {"S": "p1p2p3p4p5p6"}, "requester": {"S": "partner|b"}, "requester_iss": {"S": "iss"},
            "requester_sub": {"S": "bsub"}, "requester_person": {"S": "bob"}, "requester_slack": {"S": "U1"},
            "duration_seconds": {"N": "1800"}, "reason": {"S": "INC"}, "ticket": {"S": "T-1"}, "scope": {"S": "eu"},
            "start_at": {"S": "2026-01-01T14:00:00+00:00"}, "status": {"S": "pending"}, "created_at": AT,
            "pending_until": {"S": "2026-01-01T12:10:00+00:00"}, "pending_pk": {"S": "pending"},
            "plan": {"L": [{"M": {"name": {"S": "first"}, "required": {"N": "1"}}},
                           {"M": {"name": {"S": "second"}, "required": {"N": "2"}}}]},
            "stage_now": {"N": "0"}, "votes_in_stage": {"N": "0"}, "auto_extended_seconds": {"N": "0"}}}},
        event("0123456789ab", "00", "partner|b", None, "pending", "INC"),
    ]})
    plan = Plan((("first", 1), ("second", 2)))
    spec = NewRequest(roles=("a", "b"), ticket="T-1", scope="eu", start_at=NOW + timedelta(hours=2), plan=plan,
                      kind="extension", parent="p1p2p3p4p5p6")
    request = store.create(role="a", requester="partner|b", duration_seconds=1800, reason="INC", now=NOW,
                           pending_seconds=600, requester_slack="U1", requester_sub=("iss", "bsub"), spec=spec,
                           requester_person="bob")
    assert request == AccessRequest(
        id="0123456789ab", role="a", requester="partner|b", duration_seconds=1800, reason="INC", status="pending",
        created_at=NOW, pending_until=NOW + timedelta(minutes=10), requester_slack="U1", ticket="T-1",
        requester_iss="iss", requester_sub="bsub", requester_person="bob", kind="extension", roles=("a", "b"),
        scope="eu", start_at=NOW + timedelta(hours=2), plan=plan, parent="p1p2p3p4p5p6")
    assert request.slot is None


# --------------------------------------------------------------------------
# Sessions recorded under a grant


GRANT = ActiveGrant(request_id="0123456789ab", role="breakglass", until=NOW + timedelta(hours=1))
SESSION = IssuedSession(request_id="0123456789ab", role="breakglass", role_arn="arn:aws:iam::333333333333:role/BG",
                        account_id="333333333333", assumed_role_arn="arn:aws:sts::333333333333:assumed-role/BG/bob",
                        access_key_id="ASIAEXAMPLE", session_name="bob", issued_at=NOW,
                        expires_at=NOW + timedelta(hours=1), kind="credentials")


def test_a_session_is_counted_on_a_grant_that_still_holds_and_recorded_once(
        stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("transact_write_items", {}, {"TransactItems": [
        {"Update": {
            "TableName": TABLE, "Key": {"pk": {"S": "REQUEST#0123456789ab"}, "sk": {"S": "STATE"}},
            "UpdateExpression": "ADD sessions_issued :one",
            "ConditionExpression": "#status = :approved AND grant_until > :now AND "
                                   "(attribute_not_exists(grant_from) OR grant_from <= :now) AND "
                                   "(attribute_not_exists(sessions_issued) OR sessions_issued < :limit)",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":one": {"N": "1"}, ":approved": {"S": "approved"}, ":now": AT,
                                          ":limit": {"N": "1000"}}}},
        {"Put": {"TableName": TABLE, "ConditionExpression": "attribute_not_exists(pk)", "Item": {
            "pk": {"S": "REQUEST#0123456789ab"}, "sk": {"S": "SESSION#2026-01-01T12:00:00+00:00#ASIAEXAMPLE"},
            "request_id": {"S": "0123456789ab"}, "role": {"S": "breakglass"},
            "role_arn": {"S": SESSION.role_arn}, "account_id": {"S": "333333333333"},
            "assumed_role_arn": {"S": SESSION.assumed_role_arn}, "access_key_id": {"S": "ASIAEXAMPLE"},
            "session_name": {"S": "bob"}, "issued_at": AT, "expires_at": {"S": "2026-01-01T13:00:00+00:00"},
            "kind": {"S": "credentials"}}}},
    ]})
    store.record_session(GRANT, SESSION, now=NOW)


def state_item(**fields: str) -> dict[str, Any]:
    item = {"pk": "REQUEST#0123456789ab", "sk": "STATE", "id": "0123456789ab", "role": "breakglass",
            "requester": "bob@example.com", "reason": "INC-42", "created_at": "2026-01-01T11:00:00+00:00",
            "pending_until": "2026-01-01T11:30:00+00:00", **fields}
    return {**{k: {"S": v} for k, v in item.items()}, "duration_seconds": {"N": "3600"}}


@pytest.mark.parametrize(("state", "message"), [
    ({"status": "approved", "grant_until": "2026-01-01T13:00:00+00:00"},
     "grant 0123456789ab has issued 1000 sessions, the most one grant may"),
    ({"status": "revoked", "grant_until": "2026-01-01T13:00:00+00:00", "decided_at": "2026-01-01T11:45:00+00:00"},
     "your grant for role breakglass was revoked at 2026-01-01T11:45:00+00:00;"),
    ({"status": "revoked", "grant_until": "2026-01-01T13:00:00+00:00"},
     "your grant for role breakglass was revoked; "),
    ({"status": "approved", "grant_until": "2026-01-01T12:00:00+00:00"},
     "your grant for role breakglass has ended (expired);"),
])
def test_a_session_the_grant_no_longer_allows_is_refused_with_the_reason(
        stubbed: tuple[AccessStore, Stubber], state: dict[str, str], message: str) -> None:
    store, stubber = stubbed
    cancelled(stubber, "ConditionalCheckFailed", "None")
    stubber.add_response("get_item", {"Item": state_item(**state)}, {
        "TableName": TABLE, "ConsistentRead": True,
        "Key": {"pk": {"S": "REQUEST#0123456789ab"}, "sk": {"S": "STATE"}}})
    with pytest.raises(Forbidden) as caught:
        store.record_session(GRANT, SESSION, now=NOW)
    assert type(caught.value) is Forbidden
    assert message in str(caught.value)
    assert str(caught.value).endswith("request access again (rolebroker request --role breakglass --reason ...)")


@pytest.mark.parametrize(("error", "expected", "fragment"), [
    (("TransactionCanceledException", ["TransactionConflict", "None"]), Throttled, "busy"),  # two sessions at once
    (("TransactionCanceledException", ["ValidationError", "None"]), DependencyDown, "refused the call"),
    (("TransactionCanceledException", None), DependencyDown, "refused the call (TransactionCanceledException)"),
    (("ThrottlingException", None), Throttled, "throttling"),
    (("ValidationException", None), DependencyDown, "refused the call (ValidationException)"),
])
def test_a_session_write_that_fails_for_another_reason_is_not_a_refusal(
        stubbed: tuple[AccessStore, Stubber], error: tuple[str, list[str] | None],
        expected: type[RolebrokerError], fragment: str) -> None:
    store, stubber = stubbed
    code, reasons = error
    fields = {"CancellationReasons": [{"Code": r} for r in reasons]} if reasons else None
    stubber.add_client_error("transact_write_items", service_error_code=code, http_status_code=400,
                             modeled_fields=fields)
    with pytest.raises(expected) as caught:
        store.record_session(GRANT, SESSION, now=NOW)
    assert fragment in str(caught.value)
    assert type(caught.value) is expected


# --------------------------------------------------------------------------
# Expiry: the request in one transaction, then its slot tidied if still its own


def expiry() -> list[dict[str, Any]]:
    return [
        {"Update": {
            "TableName": TABLE, "Key": {"pk": {"S": "REQUEST#0123456789ab"}, "sk": {"S": "STATE"}},
            "UpdateExpression": "SET #status = :expired, decided_at = :now, decided_by = :who REMOVE pending_pk",
            "ConditionExpression": "#status = :pending AND pending_until <= :now",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":expired": {"S": "expired"}, ":pending": {"S": "pending"}, ":now": AT,
                                          ":who": {"S": "rolebroker"}}}},
        event("0123456789ab", "01", "rolebroker", "pending", "expired", "no decision before the pending timeout"),
    ]


SLOT_RELEASE = {"TableName": TABLE, "Key": {"pk": {"S": "OPEN#bob@example.com"}, "sk": {"S": "SLOT#03"}},
                "ConditionExpression": "request_id = :id",
                "ExpressionAttributeValues": {":id": {"S": "0123456789ab"}}}


def test_an_expiry_marks_the_request_and_then_deletes_its_slot(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("transact_write_items", {}, {"TransactItems": expiry()})
    stubber.add_response("delete_item", {}, SLOT_RELEASE)
    store.expire(replace(PENDING_REQUEST, slot=3), now=NOW)


@pytest.mark.parametrize(("code", "logged"), [
    ("ConditionalCheckFailedException", []),  # a newer request holds the slot: nothing to say
    ("ProvisionedThroughputExceededException",
     ["request 0123456789ab expired; its slot was not deleted: ProvisionedThroughputExceededException"]),
])
def test_a_slot_that_cannot_be_tidied_leaves_the_expiry_done(
        stubbed: tuple[AccessStore, Stubber], caplog: pytest.LogCaptureFixture, code: str, logged: list[str]) -> None:
    store, stubber = stubbed
    stubber.add_response("transact_write_items", {}, {"TransactItems": expiry()})
    stubber.add_client_error("delete_item", service_error_code=code, http_status_code=400,
                             expected_params=SLOT_RELEASE)
    with caplog.at_level("WARNING", logger="chalicelib.aws.store"):
        store.expire(replace(PENDING_REQUEST, slot=3), now=NOW)
    assert [r.getMessage() for r in caplog.records] == logged


def test_an_unreachable_table_while_tidying_a_slot_leaves_the_expiry_done(
        stubbed: tuple[AccessStore, Stubber], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    store, stubber = stubbed
    stubber.add_response("transact_write_items", {}, {"TransactItems": expiry()})

    def unreachable(**kwargs: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    monkeypatch.setattr(store._client, "delete_item", unreachable)
    with caplog.at_level("WARNING", logger="chalicelib.aws.store"):
        store.expire(replace(PENDING_REQUEST, slot=3), now=NOW)
    assert [r.getMessage() for r in caplog.records] == [
        "request 0123456789ab expired; its slot was not deleted: EndpointConnectionError"]


def test_an_expiry_without_a_slot_is_the_transaction_alone(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("transact_write_items", {}, {"TransactItems": expiry()})
    store.expire(PENDING_REQUEST, now=NOW)  # no delete_item queued: the Stubber fails on one


# --------------------------------------------------------------------------
# Reads: what each query asks, and how far the next one goes on


OLDEST = NOW - timedelta(days=7)


def stopped_at(request_id: str, created_at: str, index_key: dict[str, Any]) -> dict[str, Any]:
    return {"pk": {"S": f"REQUEST#{request_id}"}, "sk": {"S": "STATE"}, "created_at": {"S": created_at}, **index_key}


def start_key(request_id: str, created_at: str, index_key: dict[str, Any]) -> dict[str, Any]:
    return {**index_key, "created_at": {"S": created_at}, "pk": {"S": f"REQUEST#{request_id}"}, "sk": {"S": "STATE"}}


@pytest.mark.parametrize(("after", "goes_on"), [
    (PageKey("aaaaaaaaaaaa", "2025-12-31T12:00:00+00:00"), True),
    (PageKey("aaaaaaaaaaaa", OLDEST.isoformat()), False),  # at or before the oldest that can still wait: start over
    (None, False),
])
def test_a_page_of_pending_requests_starts_after_the_oldest_that_can_wait_and_filters_the_timed_out(
        stubbed: tuple[AccessStore, Stubber], after: PageKey | None, goes_on: bool) -> None:
    store, stubber = stubbed
    pending_key = {"pending_pk": {"S": "pending"}}
    params: dict[str, Any] = {
        "TableName": TABLE, "IndexName": "gsi_pending", "Limit": 7,
        "KeyConditionExpression": "pending_pk = :p AND created_at > :oldest",
        "FilterExpression": "pending_until > :now",
        "ExpressionAttributeValues": {":p": {"S": "pending"}, ":oldest": {"S": OLDEST.isoformat()}, ":now": AT}}
    if goes_on:
        assert after is not None
        params["ExclusiveStartKey"] = start_key(after.request_id, after.created_at, pending_key)
    stubber.add_response("query", {
        "Items": [state_item(status="pending"), {**state_item(status="pending"), "sk": {"S": "EVENT#00"}}],
        "LastEvaluatedKey": stopped_at("bbbbbbbbbbbb", "2026-01-01T11:00:00+00:00", pending_key)}, params)
    found, stopped = store.pending_page(after=after, limit=7, now=NOW, created_after=OLDEST)
    assert [r.id for r in found] == ["0123456789ab"]  # the state item only
    assert stopped == PageKey("bbbbbbbbbbbb", "2026-01-01T11:00:00+00:00")


def test_a_page_of_reviews_waits_however_long_it_takes(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    review_key = {"pending_pk": {"S": "review"}}
    after = PageKey("aaaaaaaaaaaa", "2025-01-01T12:00:00+00:00")  # older than any pending timeout
    stubber.add_response("query", {"Items": []}, {
        "TableName": TABLE, "IndexName": "gsi_pending", "Limit": 7, "KeyConditionExpression": "pending_pk = :p",
        "ExpressionAttributeValues": {":p": {"S": "review"}},
        "ExclusiveStartKey": start_key(after.request_id, after.created_at, review_key)})
    assert store.pending_page(after=after, limit=7, now=NOW, created_after=OLDEST, partition="review") == ([], None)


def due_query(limit: int, after: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "TableName": TABLE, "IndexName": "gsi_pending", "Limit": limit,
        "KeyConditionExpression": "pending_pk = :p AND created_at > :oldest",
        "FilterExpression": "pending_until <= :now",
        "ExpressionAttributeValues": {":p": {"S": "pending"}, ":oldest": {"S": OLDEST.isoformat()}, ":now": AT}}
    if after:
        params["ExclusiveStartKey"] = start_key(after, "2026-01-01T11:00:00+00:00", {"pending_pk": {"S": "pending"}})
    return params


def due(request_id: str) -> dict[str, Any]:
    return {**state_item(status="pending"), "pk": {"S": f"REQUEST#{request_id}"}, "id": {"S": request_id}}


def test_the_sweep_reads_on_where_dynamodb_stopped_until_it_has_its_limit(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    last = stopped_at("bbbbbbbbbbbb", "2026-01-01T11:00:00+00:00", {"pending_pk": {"S": "pending"}})
    stubber.add_response("query", {"Items": [due("a00000000001")], "LastEvaluatedKey": last}, due_query(3))
    stubber.add_response("query", {"Items": [], "LastEvaluatedKey": last}, due_query(3, "bbbbbbbbbbbb"))
    stubber.add_response("query", {"Items": [due("a00000000002"), due("a00000000003"), due("a00000000004")],
                                   "LastEvaluatedKey": last}, due_query(3, "bbbbbbbbbbbb"))
    found = store.due_for_expiry(NOW, OLDEST, 3)
    assert [r.id for r in found] == ["a00000000001", "a00000000002", "a00000000003"]  # its limit, then it stops


def test_the_sweep_stops_where_the_index_ends_or_after_its_reads(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("query", {"Items": [due("a00000000001")]}, due_query(3))
    assert [r.id for r in store.due_for_expiry(NOW, OLDEST, 3)] == ["a00000000001"]
    last = stopped_at("bbbbbbbbbbbb", "2026-01-01T11:00:00+00:00", {"pending_pk": {"S": "pending"}})
    stubber.add_response("query", {"Items": [], "LastEvaluatedKey": last}, due_query(3))
    stubber.add_response("query", {"Items": [], "LastEvaluatedKey": last}, due_query(3, "bbbbbbbbbbbb"))
    assert store.due_for_expiry(NOW, OLDEST, 3, max_reads=2) == []


@pytest.mark.parametrize(("kind", "names", "condition"), [
    (None, None, None),
    ("access", {"#kind": "kind"}, "attribute_not_exists(#kind) OR #kind = :kind"),  # filed before kinds existed
    ("break_glass", {"#kind": "kind"}, "#kind = :kind"),
])
def test_a_persons_own_requests_newest_first_of_a_kind(stubbed: tuple[AccessStore, Stubber], kind: str | None,
                                                       names: dict[str, str] | None, condition: str | None) -> None:
    store, stubber = stubbed
    requester_key = {"requester": {"S": "bob@example.com"}}
    after = PageKey("aaaaaaaaaaaa", "2026-01-01T10:00:00+00:00")
    params: dict[str, Any] = {
        "TableName": TABLE, "IndexName": "gsi_requester", "Limit": 4, "ScanIndexForward": False,
        "KeyConditionExpression": "requester = :r",
        "ExpressionAttributeValues": {":r": {"S": "bob@example.com"}, **({":kind": {"S": kind}} if kind else {})},
        "ExclusiveStartKey": start_key(after.request_id, after.created_at, requester_key)}
    if names and condition:
        params.update(ExpressionAttributeNames=names, FilterExpression=condition)
    stubber.add_response("query", {"Items": [state_item(status="pending")]}, params)
    found, stopped = store.requester_page("bob@example.com", after=after, limit=4, kind=kind)
    assert [r.id for r in found] == ["0123456789ab"] and stopped is None


def grant_item(role: str, request_id: str, until: str, **extra: Any) -> dict[str, Any]:
    return {"pk": {"S": "GRANT#bob@example.com"}, "sk": {"S": f"ROLE#{role}#{request_id}"}, "role": {"S": role},
            "request_id": {"S": request_id}, "until": {"S": until}, **extra}


def test_the_grants_in_force_are_the_longest_live_one_per_role(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("query", {"Items": [
        grant_item("a", "a00000000001", "2026-01-01T13:00:00+00:00"),
        grant_item("a", "a00000000002", "2026-01-01T14:00:00+00:00"),
        grant_item("a", "a00000000003", "2026-01-01T13:30:00+00:00"),
        grant_item("b", "a00000000004", "2026-01-01T12:00:00+00:00"),  # ended just now
        grant_item("c", "a00000000005", "2026-01-01T15:00:00+00:00", **{"from": {"S": "2026-01-01T12:30:00+00:00"}}),
    ]}, {"TableName": TABLE, "KeyConditionExpression": "pk = :pk",
         "ExpressionAttributeValues": {":pk": {"S": "GRANT#bob@example.com"}}})
    assert store.active_grants("bob@example.com", NOW) == {"a": NOW + timedelta(hours=2)}


def test_the_grant_for_a_scope_prefers_the_whole_role_then_the_longest(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    items = [grant_item("a", "a00000000001", "2026-01-01T15:00:00+00:00", scope={"S": "eu"}),
             grant_item("a", "a00000000002", "2026-01-01T13:00:00+00:00"),
             grant_item("a", "a00000000003", "2026-01-01T14:00:00+00:00", scope={"S": "us"}),
             grant_item("ab", "a00000000004", "2026-01-01T16:00:00+00:00")]  # another role, same prefix
    params = {"TableName": TABLE, "KeyConditionExpression": "pk = :pk AND begins_with(sk, :role)",
              "ExpressionAttributeValues": {":pk": {"S": "GRANT#bob@example.com"}, ":role": {"S": "ROLE#a#"}}}
    for scope, expected in ((None, "a00000000002"), ("eu", "a00000000002"), ("us", "a00000000002")):
        stubber.add_response("query", {"Items": items}, params)
        grant = store.active_grant("bob@example.com", "a", NOW, scope)
        assert grant is not None and grant.request_id == expected
    stubber.add_response("query", {"Items": items[:1] + items[2:]}, params)
    assert (store.active_grant("bob@example.com", "a", NOW, "eu") or GRANT).request_id == "a00000000001"
    stubber.add_response("query", {"Items": items[:1] + items[2:]}, params)
    assert (store.active_grant("bob@example.com", "a", NOW) or GRANT).request_id == "a00000000001"  # the longest
    stubber.add_response("query", {"Items": items[3:]}, params)
    assert store.active_grant("bob@example.com", "a", NOW) is None


def test_a_request_that_is_not_there_is_a_404(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("get_item", {}, {"TableName": TABLE, "ConsistentRead": True,
                                          "Key": {"pk": {"S": "REQUEST#0123456789ab"}, "sk": {"S": "STATE"}}})
    with pytest.raises(NotFound):
        store.get("0123456789ab")


def test_a_requests_history_is_its_events(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("query", {"Items": [
        event("0123456789ab", "00", "bob@example.com", None, "pending", "INC-42")["Put"]["Item"],
        event("0123456789ab", "01", "carol", "pending", "approved", None)["Put"]["Item"],
    ]}, {"TableName": TABLE, "KeyConditionExpression": "pk = :pk AND begins_with(sk, :e)",
         "ExpressionAttributeValues": {":pk": {"S": "REQUEST#0123456789ab"}, ":e": {"S": "EVENT#"}}})
    assert store.history("0123456789ab") == [RequestEvent(NOW, "bob@example.com", None, "pending", "INC-42"),
                                             RequestEvent(NOW, "carol", "pending", "approved", None)]


def test_the_open_slots_held_are_those_whose_pending_time_is_not_over(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    now_us = int(NOW.timestamp()) * 1_000_000

    def slot(n: int, request_id: str, until_us: int) -> dict[str, Any]:
        return {"pk": {"S": "OPEN#bob@example.com"}, "sk": {"S": f"SLOT#{n:02d}"}, "request_id": {"S": request_id},
                "until_us": {"N": str(until_us)}}

    stubber.add_response("query", {"Items": [slot(0, "a00000000000", now_us + 1), slot(3, "a00000000003", now_us),
                                             slot(12, "a00000000012", now_us + 60_000_000)]},
                         {"TableName": TABLE, "KeyConditionExpression": "pk = :pk", "ConsistentRead": True,
                          "ExpressionAttributeValues": {":pk": {"S": "OPEN#bob@example.com"}}})
    assert store.open_requests("bob@example.com", NOW) == {0: "a00000000000", 12: "a00000000012"}


def test_the_break_glass_lock_names_the_request_that_holds_it(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    params = {"TableName": TABLE, "ConsistentRead": True,
              "Key": {"pk": {"S": "BREAKGLASS#bob-person"}, "sk": {"S": "LOCK"}}}
    stubber.add_response("get_item", {"Item": {"request_id": {"S": "0123456789ab"}}}, params)
    assert store.break_glass_lock("bob-person") == "0123456789ab"
    stubber.add_response("get_item", {}, params)
    assert store.break_glass_lock("bob-person") is None


# --------------------------------------------------------------------------
# Identity snapshots, task nonces, Slack copies, sessions


def snapshot(**extra: Any) -> dict[str, Any]:
    return {"pk": {"S": "IDENTITY#bob@example.com"}, "sk": {"S": "SNAPSHOT"}, "seen_at": AT,
            "expires_at_epoch": {"N": str(int((NOW + timedelta(hours=9)).timestamp()))},
            "groups": {"L": [{"S": "a-team"}, {"S": "developers"}]}, **extra}


def test_a_snapshot_is_written_unless_a_newer_tokens_is_recorded(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    item = snapshot(claims={"S": '{"email":"bob@example.com","level":3}'}, iat={"N": "1767268800"})
    params = {"TableName": TABLE, "Item": item, "ConditionExpression": "attribute_not_exists(iat) OR iat <= :iat",
              "ExpressionAttributeValues": {":iat": {"N": "1767268800"}}}
    stubber.add_response("put_item", {}, params)
    groups = frozenset({"developers", "a-team"})
    claims = {"level": 3, "email": "bob@example.com"}
    assert store.remember_identity("bob@example.com", groups, NOW, timedelta(hours=9), 1767268800, claims) is True
    stubber.add_client_error("put_item", service_error_code="ConditionalCheckFailedException", http_status_code=400,
                             expected_params=params)
    assert store.remember_identity("bob@example.com", groups, NOW, timedelta(hours=9), 1767268800, claims) is False


def test_a_snapshot_without_iat_or_claims_is_written_unconditionally(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("put_item", {}, {"TableName": TABLE, "Item": snapshot(claims={"S": "{}"})})
    assert store.remember_identity("bob@example.com", frozenset({"developers", "a-team"}), NOW,
                                   timedelta(hours=9)) is True


def test_a_snapshot_is_recalled_until_it_expires(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    params = {"TableName": TABLE, "Key": {"pk": {"S": "IDENTITY#bob@example.com"}, "sk": {"S": "SNAPSHOT"}}}
    stubber.add_response("get_item", {"Item": snapshot(claims={"S": '{"level":3}'})}, params)
    recalled = store.recall_identity("bob@example.com", NOW + timedelta(hours=9) - timedelta(seconds=1))
    assert recalled == IdentitySnapshot(frozenset({"developers", "a-team"}), {"level": 3})
    stubber.add_response("get_item", {"Item": snapshot()}, params)  # written before claims were recorded
    assert store.recall_identity("bob@example.com", NOW) == IdentitySnapshot(frozenset({"developers", "a-team"}), {})
    stubber.add_response("get_item", {"Item": snapshot()}, params)
    assert store.recall_identity("bob@example.com", NOW + timedelta(hours=9)) is None
    stubber.add_response("get_item", {}, params)
    assert store.recall_identity("bob@example.com", NOW) is None


def test_a_task_nonce_is_claimed_once_and_kept_an_hour_past_the_tasks_expiry(
        stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    params = {"TableName": TABLE, "ConditionExpression": "attribute_not_exists(pk)",
              "Item": {"pk": {"S": "TASK#n0nce"}, "sk": {"S": "NONCE"}, "expires_at_epoch": {"N": "1767272400"}}}
    stubber.add_response("put_item", {}, params)
    assert store.claim_task("n0nce", 1767268800) is True
    stubber.add_client_error("put_item", service_error_code="ConditionalCheckFailedException", http_status_code=400,
                             expected_params=params)
    assert store.claim_task("n0nce", 1767268800) is False


def test_a_slack_copy_is_appended_to_an_existing_request(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("update_item", {}, {
        "TableName": TABLE, "Key": {"pk": {"S": "REQUEST#0123456789ab"}, "sk": {"S": "STATE"}},
        "UpdateExpression": "SET messages = list_append(if_not_exists(messages, :empty), :m)",
        "ConditionExpression": "attribute_exists(pk)",
        "ExpressionAttributeValues": {":m": {"L": [{"L": [{"S": "C0APPROVALS"}, {"S": "1700000000.000100"},
                                                          {"S": "notify"}]}]}, ":empty": {"L": []}}})
    store.add_message("0123456789ab", "C0APPROVALS", "1700000000.000100", "notify")


def test_the_sessions_of_a_grant_are_read_page_after_page(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    item = session_item(SESSION)
    later = {**item, "access_key_id": {"S": "ASIALATER"}}
    params = {"TableName": TABLE, "KeyConditionExpression": "pk = :pk AND begins_with(sk, :s)",
              "ExpressionAttributeValues": {":pk": {"S": "REQUEST#0123456789ab"}, ":s": {"S": "SESSION#"}}}
    stubber.add_response("query", {"Items": [item], "LastEvaluatedKey": {"pk": item["pk"], "sk": item["sk"]}}, params)
    stubber.add_response("query", {"Items": [later]}, {**params, "ExclusiveStartKey": {"pk": item["pk"],
                                                                                       "sk": item["sk"]}})
    assert [s.access_key_id for s in store.sessions("0123456789ab")] == ["ASIAEXAMPLE", "ASIALATER"]


@pytest.mark.parametrize(("codes", "expected"), [
    (("None", "None", "ConditionalCheckFailed"), Revoked),  # the approver's refusal item appeared meanwhile
    (("None", "None", "None", "ConditionalCheckFailed"), Revoked),  # their person's
    (("ConditionalCheckFailed", "None", "None"), Conflict),
    (("TransactionConflict", "None", "None"), Throttled),
])
def test_an_approval_refused_by_a_revocation_meanwhile_is_told_apart(
        stubbed: tuple[AccessStore, Stubber], codes: tuple[str, ...], expected: type[RolebrokerError]) -> None:
    store, stubber = stubbed
    cancelled(stubber, *codes)
    with pytest.raises(expected) as caught:
        store.vote(PENDING_REQUEST, ApprovalStep("partner|c", None, NOW, 0, 1, False, approver_person="carol"), "1")
    assert type(caught.value) is expected


def test_a_default_issuer_approver_is_their_own_person_and_naming_every_role_narrows_nothing(
        stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    grant = {"approved_by": {"S": "carol"}, "from": AT, "until": {"S": "2026-01-01T14:00:00+00:00"},
             "request_id": {"S": "0123456789ab"}, "pk": {"S": "GRANT#bob@example.com"},
             "expires_at_epoch": {"N": str(int((NOW + timedelta(hours=26)).timestamp()))}}
    stubber.add_response("transact_write_items", {}, {"TransactItems": [
        {"Update": {
            "TableName": TABLE, "Key": {"pk": {"S": "REQUEST#0123456789ab"}, "sk": {"S": "STATE"}},
            "UpdateExpression": "SET stage_now = :next_stage, votes_in_stage = :next_count, "
                                "votes = list_append(if_not_exists(votes, :empty), :vote), #status = :v0, "
                                "decided_by = :v1, decided_at = :v2, grant_until = :v3, grant_from = :v4 "
                                "ADD approvers :who_set, approver_persons :person_set REMOVE pending_pk",
            # No "requester <> :person" (it is :who) and no second look for the person among the approvers.
            "ConditionExpression": "#status = :pending AND pending_until > :now AND requester <> :who AND "
                                   "(attribute_not_exists(approvers) OR NOT contains(approvers, :who)) AND "
                                   "(attribute_not_exists(requester_person) OR requester_person <> :person) AND "
                                   "(attribute_not_exists(approver_persons) OR NOT contains(approver_persons, :person))"
                                   " AND (stage_now = :stage AND votes_in_stage = :count)",  # its second vote
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {
                ":pending": {"S": "pending"}, ":now": AT, ":who": {"S": "carol"}, ":who_set": {"SS": ["carol"]},
                ":stage": {"N": "0"}, ":count": {"N": "1"}, ":next_stage": {"N": "0"}, ":next_count": {"N": "2"},
                ":vote": {"L": [{"M": {"who": {"S": "carol"}, "stage": {"N": "0"}, "at": AT}}]}, ":empty": {"L": []},
                ":person": {"S": "carol"}, ":person_set": {"SS": ["carol"]}, ":v0": {"S": "approved"},
                ":v1": {"S": "carol"}, ":v2": AT, ":v3": {"S": "2026-01-01T14:00:00+00:00"}, ":v4": AT}}},
        event("0123456789ab", "01", "carol", "pending", "approved", None),
        *({"Put": {"TableName": TABLE,
                   "Item": {**grant, "role": {"S": role}, "sk": {"S": f"ROLE#{role}#0123456789ab"}}}}
          for role in ("a", "b")),
        *not_revoked("carol"),
    ]})
    store.approve(replace(PENDING_REQUEST, roles=("a", "b"), votes=(Vote("dan", 0, NOW),)), approver="carol", now=NOW,
                  grant_until=NOW + timedelta(hours=2), roles=("a", "b"), approver_person="carol")


def test_a_default_issuer_deciders_denial_names_their_person_once(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("transact_write_items", {}, {"TransactItems": [
        transition("pending", "denied", "carol",
                   "#status = :from AND pending_until > :now AND requester <> :who AND "
                   "(attribute_not_exists(requester_person) OR requester_person <> :person)",
                   {":person": {"S": "carol"}}),
        event("0123456789ab", "01", "carol", "pending", "denied", None),
    ]})
    store.deny(PENDING_REQUEST, approver="carol", now=NOW, note=None, approver_person="carol")


def test_a_change_of_exactly_dynamodbs_transaction_limit_is_sent(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    roles = tuple(f"role-{i}" for i in range(96))  # update, event, 96 grants, slot, the approver not revoked
    stubber.add_response("transact_write_items", {}, None)
    store.approve(replace(PENDING_REQUEST, roles=roles, slot=1), approver="carol@example.com", now=NOW,
                  grant_until=NOW + timedelta(hours=1))


@pytest.mark.parametrize(("codes", "expected"), [
    (("None", "None", "None", "ConditionalCheckFailed", "None", "None"), BreakGlassLocked),
    (("None", "None", "None", "TransactionConflict", "None", "None"), BreakGlassLocked),
    (("None", "None", "None", "None", "ConditionalCheckFailed", "None"), Revoked),  # the requester's refusal item
    (("None", "None", "None", "None", "None", "ConditionalCheckFailed"), Revoked),  # their person's
    (("ConditionalCheckFailed", "None", "None", "None", "None", "None"), Conflict),
])
def test_a_break_glass_refused_for_its_lock_or_a_revocation_says_which(
        stubbed: tuple[AccessStore, Stubber], codes: tuple[str, ...], expected: type[RolebrokerError]) -> None:
    store, stubber = stubbed
    cancelled(stubber, *codes)
    with pytest.raises(expected) as caught:
        store.break_glass(role="prod-admin", requester="partner|bob", duration_seconds=3600, reason="down",
                          ticket="INC-1", now=NOW, requester_person="bob@example.com")
    assert type(caught.value) is expected


def test_the_sweep_reads_the_index_five_times_at_most_by_default(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    last = stopped_at("bbbbbbbbbbbb", "2026-01-01T11:00:00+00:00", {"pending_pk": {"S": "pending"}})
    stubber.add_response("query", {"Items": [], "LastEvaluatedKey": last}, due_query(3))
    for _ in range(4):
        stubber.add_response("query", {"Items": [], "LastEvaluatedKey": last}, due_query(3, "bbbbbbbbbbbb"))
    assert store.due_for_expiry(NOW, OLDEST, 3) == []  # a sixth read would find no response queued


def test_a_slack_copy_is_for_approvers_unless_said_otherwise(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("update_item", {}, {
        "TableName": TABLE, "Key": {"pk": {"S": "REQUEST#0123456789ab"}, "sk": {"S": "STATE"}},
        "UpdateExpression": ANY, "ConditionExpression": ANY,
        "ExpressionAttributeValues": {":m": {"L": [{"L": [{"S": "C0APPROVALS"}, {"S": "1700000000.000100"},
                                                          {"S": "approvers"}]}]}, ":empty": {"L": []}}})
    store.add_message("0123456789ab", "C0APPROVALS", "1700000000.000100")


def test_a_slot_is_held_until_the_requests_pending_time_is_over_and_kept_a_day_longer(
        stubbed: tuple[AccessStore, Stubber], monkeypatch: pytest.MonkeyPatch) -> None:
    store, stubber = stubbed
    monkeypatch.setattr("chalicelib.aws.store.uuid.uuid4", lambda: uuid.UUID("0123456789ab0123456789ab01234567"))
    until = NOW + timedelta(hours=1)
    stubber.add_response("transact_write_items", {}, {"TransactItems": [
        {"Put": {"TableName": TABLE, "ConditionExpression": "attribute_not_exists(pk)", "Item": {
            "pk": {"S": "REQUEST#0123456789ab"}, "sk": {"S": "STATE"}, "id": {"S": "0123456789ab"},
            "role": {"S": "breakglass"}, "roles": {"L": [{"S": "breakglass"}]}, "kind": {"S": "access"},
            "requester": {"S": "bob@example.com"}, "duration_seconds": {"N": "3600"}, "reason": {"S": "INC-42"},
            "status": {"S": "pending"}, "created_at": AT, "pending_until": {"S": "2026-01-01T13:00:00+00:00"},
            "pending_pk": {"S": "pending"}, "plan": {"L": [{"M": {"name": {"S": "approval"}, "required": {"N": "1"}}}]},
            "stage_now": {"N": "0"}, "votes_in_stage": {"N": "0"}, "auto_extended_seconds": {"N": "0"},
            "open_slot": {"N": "3"}}}},  # so deciding or cancelling it gives the slot back
        event("0123456789ab", "00", "bob@example.com", None, "pending", "INC-42"),
        {"Put": {"TableName": TABLE, "Item": {
            "pk": {"S": "OPEN#bob@example.com"}, "sk": {"S": "SLOT#03"}, "request_id": {"S": "0123456789ab"},
            "until_us": {"N": str(int(until.timestamp()) * 1_000_000)},
            "expires_at_epoch": {"N": str(int((until + timedelta(days=1)).timestamp()))}},
            "ConditionExpression": "attribute_not_exists(pk) OR until_us <= :now",
            "ExpressionAttributeValues": {":now": {"N": str(int(NOW.timestamp()) * 1_000_000)}}}},
    ]})
    assert store.create(role="breakglass", requester="bob@example.com", duration_seconds=3600, reason="INC-42",
                        now=NOW, pending_seconds=3600, slot=3).slot == 3


def test_a_cancelled_transaction_that_names_no_reason_is_a_conflict(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_client_error("transact_write_items", service_error_code="TransactionCanceledException",
                             http_status_code=400)
    with pytest.raises(Conflict) as caught:
        deny(store)
    assert type(caught.value) is Conflict


def test_a_client_error_without_an_error_member_is_still_a_503(stubbed: tuple[AccessStore, Stubber],
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """Not what botocore sends, but what a wrapper or a fake may raise: an answer, never a crash."""
    store, _ = stubbed

    def bare(**kwargs: Any) -> None:
        raise ClientError({"ResponseMetadata": {}}, "Operation")

    for operation in ("get_item", "transact_write_items", "delete_item"):
        monkeypatch.setattr(store._client, operation, bare)
    for call in (lambda: store.get("0123456789ab"), lambda: deny(store),
                 lambda: store.record_session(GRANT, SESSION, now=NOW)):
        with pytest.raises(DependencyDown):
            call()
    monkeypatch.setattr(store._client, "transact_write_items", lambda **kwargs: {})
    with caplog.at_level("WARNING", logger="chalicelib.aws.store"):
        store.expire(replace(PENDING_REQUEST, slot=3), now=NOW)
    assert caplog.records[-1].getMessage() == "request 0123456789ab expired; its slot was not deleted: None"


@pytest.mark.parametrize(("operation", "read"), [
    ("get_item", lambda store: store.get("0123456789ab")),
    ("get_item", lambda store: store.break_glass_lock("bob-person")),
    ("get_item", lambda store: store.recall_identity("bob@example.com", NOW)),
    ("query", lambda store: store.history("0123456789ab")),
    ("query", lambda store: store.sessions("0123456789ab")),
    ("query", lambda store: store.pending_page(after=None, limit=5, now=NOW, created_after=OLDEST)),
    ("update_item", lambda store: store.add_message("0123456789ab", "C0APPROVALS", "1700000000.000100")),
])
def test_a_throttled_call_is_a_429_on_every_path(stubbed: tuple[AccessStore, Stubber], operation: str,
                                                 read: Callable[[AccessStore], object]) -> None:
    store, stubber = stubbed
    stubber.add_client_error(operation, service_error_code="ProvisionedThroughputExceededException",
                             http_status_code=400)
    with pytest.raises(Throttled):
        read(store)


def test_the_sweep_stops_reading_once_it_has_exactly_its_limit(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    last = stopped_at("bbbbbbbbbbbb", "2026-01-01T11:00:00+00:00", {"pending_pk": {"S": "pending"}})
    stubber.add_response("query", {"Items": [due("a00000000001"), due("a00000000002")], "LastEvaluatedKey": last},
                         due_query(2))
    assert [r.id for r in store.due_for_expiry(NOW, OLDEST, 2)] == ["a00000000001", "a00000000002"]


def test_a_linked_approver_of_an_extension_is_checked_by_sub_and_person(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("transact_write_items", {}, {"TransactItems": [
        {"Update": {
            "TableName": TABLE, "Key": {"pk": {"S": "REQUEST#e1e2e3e4e5e6"}, "sk": {"S": "STATE"}},
            "UpdateExpression": ANY, "ExpressionAttributeNames": ANY, "ExpressionAttributeValues": ANY,
            "ConditionExpression": "#status = :pending AND pending_until > :now AND requester <> :who AND "
                                   "(attribute_not_exists(approvers) OR NOT contains(approvers, :who)) AND "
                                   "NOT (requester_iss = :iss AND requester_sub = :sub) AND "
                                   "(attribute_not_exists(approver_subs) OR NOT contains(approver_subs, :iss_sub)) AND "
                                   "requester <> :person AND "
                                   "(attribute_not_exists(requester_person) OR requester_person <> :person) AND "
                                   "(attribute_not_exists(approvers) OR NOT contains(approvers, :person)) AND "
                                   "(attribute_not_exists(approver_persons) OR NOT contains(approver_persons, :person))"
                                   " AND (attribute_not_exists(stage_now) OR "
                                   "(stage_now = :stage AND votes_in_stage = :count))"}},
        ANY, ANY, ANY, ANY,  # its event, the parent's state and event, the parent's grant
        *not_revoked("partner|c", "carol"),
    ]})
    parent = replace(PENDING_REQUEST, status="approved", grant_until=NOW + timedelta(hours=1))
    extension = replace(PENDING_REQUEST, id="e1e2e3e4e5e6", kind="extension", parent=parent.id,
                        duration_seconds=1800, reason="more")
    store.extend_by_approval(extension, parent, approver="partner|c", approver_sub=("iss", "csub"), now=NOW,
                             new_until=NOW + timedelta(hours=1, minutes=30), approver_person="carol")


def test_a_default_issuer_reviewer_is_their_own_person(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("transact_write_items", {}, {"TransactItems": [
        {"Update": {
            "TableName": TABLE, "Key": {"pk": {"S": "REQUEST#0123456789ab"}, "sk": {"S": "STATE"}},
            "UpdateExpression": ANY, "ExpressionAttributeNames": ANY, "ExpressionAttributeValues": ANY,
            "ConditionExpression": "#kind = :bg AND review_status = :pending AND requester <> :who AND "
                                   "(attribute_not_exists(requester_person) OR requester_person <> :person)"}},
        ANY, *not_revoked("carol"),
    ]})
    store.review(replace(PENDING_REQUEST, kind="break_glass"), who="carol", now=NOW, note=None,
                 reviewer_person="carol")


def test_a_break_glass_takes_the_persons_lock_unless_told_not_to(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("transact_write_items", {}, {"TransactItems": [
        ANY, ANY, ANY,
        {"Put": {"TableName": TABLE, "ConditionExpression": "attribute_not_exists(pk)", "Item": {
            "pk": {"S": "BREAKGLASS#bob@example.com"}, "sk": {"S": "LOCK"}, "request_id": ANY,
            "role": {"S": "prod-admin"}, "at": AT}}},
        *not_revoked("bob@example.com"),
    ]})
    assert store.break_glass(role="prod-admin", requester="bob@example.com", duration_seconds=3600, reason="down",
                             ticket="INC-1", now=NOW).holds_lock is True


@pytest.mark.parametrize(("operation", "call"), [
    ("get_item", lambda store: store.get("0123456789ab")),
    ("get_item", lambda store: store.break_glass_lock("bob-person")),
    ("get_item", lambda store: store.recall_identity("bob@example.com", NOW)),
    ("query", lambda store: store.history("0123456789ab")),
    ("query", lambda store: store.sessions("0123456789ab")),
    ("query", lambda store: store.pending_page(after=None, limit=5, now=NOW, created_after=OLDEST)),
    ("update_item", lambda store: store.add_message("0123456789ab", "C0APPROVALS", "1700000000.000100")),
    ("transact_write_items", lambda store: store.record_session(GRANT, SESSION, now=NOW)),
    ("transact_write_items", deny),
])
def test_an_unreachable_table_is_a_503_on_every_path_and_the_log_names_the_failure(
        stubbed: tuple[AccessStore, Stubber], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        operation: str, call: Callable[[AccessStore], object]) -> None:
    store, _ = stubbed

    def unreachable(**kwargs: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    monkeypatch.setattr(store._client, operation, unreachable)
    with caplog.at_level("WARNING", logger="chalicelib.aws.store"), pytest.raises(DependencyDown, match="unreachable"):
        call(store)
    assert [r.getMessage() for r in caplog.records] == ["DynamoDB unreachable: EndpointConnectionError"]


def test_a_query_answer_without_items_reads_as_none(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    for _ in range(3):
        stubber.add_response("query", {}, None)
    assert store.pending_page(after=None, limit=5, now=NOW, created_after=OLDEST) == ([], None)
    assert store.sessions("0123456789ab") == []
    assert store.history("0123456789ab") == []


def test_a_linked_approvers_vote_also_holds_only_while_their_person_is_not_revoked(
        stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("transact_write_items", {}, {"TransactItems": [ANY, ANY, *not_revoked("partner|c", "carol")]})
    store.vote(PENDING_REQUEST, ApprovalStep("partner|c", None, NOW, 0, 1, False, approver_person="carol"), "1 of 2")


def test_a_narrowing_to_several_roles_is_written_into_the_history(stubbed: tuple[AccessStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("transact_write_items", {}, {"TransactItems": [
        ANY, event("0123456789ab", "01", "carol", "pending", "approved", "narrowed to a, c (asked: a, b, c)"),
        ANY, ANY, *not_revoked("carol")]})
    store.approve(replace(PENDING_REQUEST, roles=("a", "b", "c")), approver="carol", now=NOW,
                  grant_until=NOW + timedelta(hours=1), roles=("a", "c"))
