"""How the store turns DynamoDB's refusals into the broker's errors.

Each case is the exact error botocore raises (a Stubber queues the parsed
error, with ``CancellationReasons`` where DynamoDB sends them), so a change in
the mapping (a race shown as a 503, throttling shown as a conflict) fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError, WaiterError
from botocore.stub import ANY, Stubber

from chalicelib.aws.store import MAX_TRANSACTION_ITEMS, AccessRequest, AccessStore, ApprovalStep, create_table
from chalicelib.exceptions import (
    BreakGlassLocked,
    Conflict,
    DependencyDown,
    RolebrokerError,
    SlotTaken,
    Throttled,
    TooManyWrites,
)
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
