"""``AccessRequests`` against a spec'd store: what it hands the database, and the paths
DynamoDB rarely takes (a lost slot, a read that stops short, a role gone from the policy).

The flows in tests/flow run the same use cases on a moto server; here the store's
answers are chosen, so each branch is reached on purpose and its calls are checked.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any
from unittest.mock import Mock

import pytest

from chalicelib.access.policy import AccessPolicy, parse_policy
from chalicelib.audit import AuditLog, CallContext
from chalicelib.aws.store import AccessStore, ApprovalStep, NewRequest, PageKey
from chalicelib.exceptions import BadRequest, Conflict, Forbidden, NotFound, Revoked, SlotTaken, Throttled
from chalicelib.identity.principal import Principal
from chalicelib.identity.tokens import Identity
from chalicelib.jit.desk import Notifier
from chalicelib.jit.model import APPROVED, BREAK_GLASS, EXTENSION, PENDING, AccessRequest
from chalicelib.jit.requests import (
    MAX_READS_PER_PAGE,
    READ_BATCH,
    AccessRequests,
    Cursor,
    decode_cursor,
    encode_cursor,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
IDP = "https://idp.example.com"
POLICY = """\
version: 1
accounts:
  production: {id: "333333333333", region: us-east-1}
roles:
  readonly:
    account: production
    role_name: ReadOnly
    allow: [{groups: [developers]}]
  breakglass:
    account: production
    role_name: BreakGlass
    allow: [{groups: [developers]}]
    approval: {approvers: {groups: [security]}}
"""
BOB = Identity(subject="bob@example.com", groups=frozenset({"developers"}), issuer=IDP, sub="00uBOB")
CAROL = Identity(subject="carol@example.com", groups=frozenset({"security"}), issuer=IDP, sub="00uCAROL")
CONTEXT = CallContext(request_id="req-1")
# The same roles, with watchers, admins and auditors, a role with other approvers, and a linked second issuer.
WATCHED = POLICY.replace("version: 1\n", """version: 1
issuers:
  partner:
    url: https://partner.example
    audiences: rolebroker
    identity_claim: sub
    approval_identity_claim: email
admins: [{groups: [admins]}]
auditors: [{groups: [auditors]}]
""").replace("    approval: {approvers: {groups: [security]}}\n", """\
    approval:
      approvers: [{groups: [security]}, {issuer: partner, groups: [security]}]
      extend: {max_total_seconds: 14400}
    notify: {watchers: [{groups: [sre-leads]}]}
  other:
    account: production
    role_name: Other
    allow: [{groups: [developers]}]
    approval: {approvers: {groups: [sre]}}
""")
SAM = Identity(subject="sam@example.com", groups=frozenset({"sre-leads"}), issuer=IDP, sub="00uSAM")
ADA = Identity(subject="ada@example.com", groups=frozenset({"admins"}), issuer=IDP, sub="00uADA")
AUDREY = Identity(subject="audrey@example.com", groups=frozenset({"auditors"}), issuer=IDP, sub="00uAUDREY")
PARTNER_CAROL = Identity(subject="00uCAROL", groups=frozenset({"security"}), issuer="https://partner.example",
                         sub="00uCAROL", principal=Principal("partner", "00uCAROL"),
                         linked=Principal("default", "carol@example.com"))


def pending(request_id: str = "a1b2c3d4e5f6", role: str = "breakglass", **changes: Any) -> AccessRequest:
    fields: dict[str, Any] = {
        "id": request_id, "role": role, "requester": "bob@example.com", "duration_seconds": 3600,
        "reason": "INC-42", "status": PENDING, "created_at": NOW - timedelta(minutes=5),
        "pending_until": NOW + timedelta(hours=1), "requester_iss": IDP, "requester_sub": "00uBOB", **changes}
    return AccessRequest(**fields)


class Harness:
    def __init__(self, policy: str = POLICY, max_open: int = 5) -> None:
        self.store = Mock(spec=AccessStore)
        self.notifier = Mock(spec=Notifier)
        self.lines: list[str] = []
        self.policy: AccessPolicy = parse_policy(policy)
        self.access = AccessRequests(policy=lambda: self.policy, store=self.store,
                                     audit=AuditLog(emit=self.lines.append), clock=lambda: NOW,
                                     notifier=self.notifier, max_open=max_open)

    def audits(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def h() -> Harness:
    return Harness()


# --------------------------------------------------------------------------
# What the database is given


def test_the_requesters_iss_and_sub_go_to_the_database_with_the_request(h: Harness) -> None:
    h.store.open_requests.return_value = {}
    h.store.create.return_value = pending()
    h.access.create(BOB, "breakglass", duration_seconds=3600, reason="INC-42", context=CONTEXT)
    assert h.store.create.call_args.kwargs["requester_sub"] == (IDP, "00uBOB")
    assert h.store.create.call_args.kwargs["requester"] == "bob@example.com"


@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_the_deciders_iss_and_sub_go_to_the_database_condition(h: Harness, decision: str) -> None:
    h.store.get.return_value = pending()
    if decision == "approve":
        h.access.approve(CAROL, "a1b2c3d4e5f6", context=CONTEXT)
    else:
        h.access.deny(CAROL, "a1b2c3d4e5f6", note="no", context=CONTEXT)
    call = getattr(h.store, decision).call_args
    assert (call.kwargs["approver"], call.kwargs["approver_sub"]) == ("carol@example.com", (IDP, "00uCAROL"))
    h.notifier.request_decided.assert_called_once_with("a1b2c3d4e5f6")


def test_revoke_hands_its_note_to_the_database_and_tells_the_notifier(h: Harness) -> None:
    h.store.get.return_value = pending(status=APPROVED, grant_until=NOW + timedelta(hours=1))
    h.access.revoke(CAROL, "a1b2c3d4e5f6", note="incident over", context=CONTEXT)
    assert h.store.revoke.call_args.kwargs["note"] == "incident over"
    h.notifier.request_decided.assert_called_once_with("a1b2c3d4e5f6")


def test_cancel_tells_the_notifier(h: Harness) -> None:
    h.store.get.return_value = pending()
    h.access.cancel(BOB, "a1b2c3d4e5f6", context=CONTEXT)
    h.store.cancel.assert_called_once()
    h.notifier.request_decided.assert_called_once_with("a1b2c3d4e5f6")


def test_a_request_for_a_role_gone_from_the_policy_can_be_cancelled_and_is_audited_without_an_account(
        h: Harness) -> None:
    h.store.get.return_value = pending(role="old-role")  # the policy no longer has old-role
    h.access.cancel(BOB, "a1b2c3d4e5f6", context=CONTEXT)
    [line] = h.audits()
    assert (line["action"], line["outcome"], line["role"], line["reason"]) == ("cancel", "cancelled", "old-role", "")
    assert "account" not in line


def test_a_revoke_without_a_note_stores_none_and_audits_an_empty_reason(h: Harness) -> None:
    h.store.get.return_value = pending(status=APPROVED, grant_until=NOW + timedelta(hours=1))
    h.access.revoke(CAROL, "a1b2c3d4e5f6", note=None, context=CONTEXT)
    assert h.store.revoke.call_args.kwargs["note"] is None
    [line] = h.audits()
    assert (line["action"], line["outcome"], line["reason"], line["account"]) == (
        "revoke", "revoked", "", "333333333333")


# --------------------------------------------------------------------------
# The open-request cap when creates race


def test_a_slot_taken_by_a_racing_create_is_looked_for_again(h: Harness) -> None:
    h.store.open_requests.return_value = {}
    h.store.create.side_effect = [SlotTaken("taken"), pending()]
    assert h.access.create(BOB, "breakglass", duration_seconds=3600, reason="x", context=CONTEXT).id == "a1b2c3d4e5f6"
    assert h.store.create.call_count == 2


def test_a_create_that_keeps_losing_gives_up_after_cap_plus_one_tries() -> None:
    h = Harness(max_open=2)
    h.store.open_requests.return_value = {}
    h.store.create.side_effect = SlotTaken("taken")
    with pytest.raises(Throttled, match="busy with your other requests"):
        h.access.create(BOB, "breakglass", duration_seconds=3600, reason="x", context=CONTEXT)
    assert h.store.create.call_count == 3


def test_the_cap_refusal_names_the_open_requests_and_is_audited() -> None:
    h = Harness(max_open=2)
    h.store.open_requests.return_value = {1: "bbbbbbbbbbbb", 0: "aaaaaaaaaaaa"}
    with pytest.raises(Throttled) as caught:
        h.access.create(BOB, "breakglass", duration_seconds=3600, reason="x", context=CONTEXT)
    assert str(caught.value).startswith("you have 2 open access requests (aaaaaaaaaaaa, bbbbbbbbbbbb); one person "
                                        "may have at most 2 at once.")
    [line] = h.audits()
    assert {k: line[k] for k in ("action", "outcome", "who", "role", "account", "reason")} == {
        "action": "request", "outcome": "denied", "who": "bob@example.com", "role": "breakglass",
        "account": "333333333333", "reason": "too many open requests"}


# --------------------------------------------------------------------------
# Paging when DynamoDB stops short


def _fields(cursor: Cursor) -> tuple[str, PageKey | None, str | None]:
    return cursor.phase, cursor.key, cursor.kind


def _requests(prefix: str, count: int, **changes: Any) -> list[AccessRequest]:
    return [pending(f"{prefix}{i:011d}", **changes) for i in range(count)]


def test_approvable_reads_are_bounded_and_the_page_goes_on_where_dynamodb_stopped(h: Harness) -> None:
    # Every pending request is Carol's own: none is for her to decide, and each read stops short.
    own = _requests("c", READ_BATCH, requester="carol@example.com", requester_sub="00uCAROL")
    stops = [PageKey(f"{i:012x}", f"2026-03-01T11:0{i}:00+00:00") for i in range(MAX_READS_PER_PAGE)]
    h.store.pending_page.side_effect = [(own, stop) for stop in stops]
    found, token = h.access.page(CAROL, limit=10)
    assert found == []
    starts = [call.kwargs["after"] for call in h.store.pending_page.call_args_list]
    assert starts == [None, *stops[:-1]]
    assert token is not None and _fields(decode_cursor(token)) == ("p", stops[-1], None)
    h.store.requester_page.assert_not_called()


def test_own_requests_continue_where_dynamodb_stopped(h: Harness) -> None:
    stop = PageKey("b00000000000", "2026-03-01T11:00:00+00:00")
    h.store.requester_page.return_value = (_requests("b", 1), stop)
    found, token = h.access.page(BOB, limit=5)
    assert [r.id for r in found] == ["b00000000000"] and token is not None
    assert _fields(decode_cursor(token)) == ("o", stop, None)
    h.store.requester_page.return_value = ([], None)
    assert h.access.page(BOB, limit=5, next_token=token) == ([], None)
    assert h.store.requester_page.call_args.kwargs == {"after": stop, "limit": 6, "kind": None}


def test_exactly_a_page_of_own_requests_has_no_next_page(h: Harness) -> None:
    h.store.requester_page.return_value = (_requests("b", 3), None)
    found, token = h.access.page(BOB, limit=3)
    assert len(found) == 3 and token is None


def test_approvable_and_own_requests_share_one_limit(h: Harness) -> None:
    h.store.pending_page.return_value = (_requests("p", 1), None)
    h.store.requester_page.side_effect = lambda principal, after, limit, kind: (
        _requests("c", 5, requester="carol@example.com")[:limit], None)
    found, token = h.access.page(CAROL, limit=3)
    assert [r.id for r in found] == ["p00000000000", "c00000000000", "c00000000001"]
    assert token is not None


def test_a_caller_who_approves_nothing_pages_only_their_own(h: Harness) -> None:
    h.store.requester_page.return_value = (_requests("b", 1), None)
    assert len(h.access.page(BOB)[0]) == 1  # readonly, first in the policy, has no approval block
    h.store.pending_page.assert_not_called()


# --------------------------------------------------------------------------
# Page tokens


def test_page_tokens_round_trip_and_are_url_safe_without_padding() -> None:
    for cursor in (Cursor("p"), Cursor("o", PageKey("abc123def456", "2026-03-01T11:00:00.123456+00:00")),
                   Cursor("p", PageKey("a1b2c3d4e5f6", "2026-03-01T11:00:00+00:00")),
                   Cursor("o", PageKey("a1b2c3d4e5f6", "2026-03-01T11:00:00+00:00"), "break_glass")):
        token = encode_cursor(cursor)
        assert _fields(decode_cursor(token, cursor.kind)) == _fields(cursor)
        assert token.replace("-", "").replace("_", "").isalnum() and token.isascii()


def _token(data: Any) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.parametrize("data", [
    [1, 2], "p", {"p": "x"}, {"p": "p", "extra": 1}, {"p": "o", "i": "abc123def456"},
    {"p": "o", "a": "2026-03-01T11:00:00+00:00"}, {"p": "o", "i": "abc123def456", "a": "2026-03-01T11:00:00"},
])
def test_a_page_token_we_did_not_make_is_a_400(data: Any) -> None:
    with pytest.raises(BadRequest, match="next_token"):
        decode_cursor(_token(data))


# --------------------------------------------------------------------------
# Approving an extension


def test_approving_an_extension_lengthens_the_parent_grant_records_it_and_updates_both() -> None:
    h = Harness(WATCHED)
    parent = pending("a1b2c3d4e5f6", status=APPROVED, decided_at=NOW - timedelta(minutes=30),
                     grant_until=NOW + timedelta(minutes=30))
    extension = pending("e1e2e3e4e5e6", kind=EXTENSION, parent=parent.id, duration_seconds=1800)
    h.store.get.side_effect = lambda request_id: {parent.id: parent, extension.id: extension}[request_id]
    h.access.approve(PARTNER_CAROL, extension.id, context=CONTEXT)
    call = h.store.extend_by_approval.call_args
    assert call.args == (extension, parent)
    assert call.kwargs == {"approver": "partner|00uCAROL", "approver_sub": ("https://partner.example", "00uCAROL"),
                           "now": NOW, "new_until": NOW + timedelta(hours=1),
                           "approver_person": "carol@example.com"}
    [line] = h.audits()
    until = (NOW + timedelta(hours=1)).isoformat()
    assert {k: line[k] for k in ("action", "outcome", "principal", "request_ref", "parent", "reason")} == {
        "action": "extend", "outcome": "approved", "principal": "partner|00uCAROL", "request_ref": extension.id,
        "parent": parent.id, "reason": f"grant of {parent.id} until {until}"}
    h.notifier.request_decided.assert_called_once_with(extension.id)
    h.notifier.request_changed.assert_called_once_with(parent.id)


# --------------------------------------------------------------------------
# Why a caller may not decide a request


def _refusal(h: Harness, who: Identity, request: AccessRequest) -> str:
    h.store.get.return_value = request
    with pytest.raises(Forbidden) as caught:
        h.access.deny(who, request.id, note=None, context=CONTEXT)
    return str(caught.value)


def test_a_watcher_is_told_they_watch_but_cannot_decide() -> None:
    h = Harness(WATCHED)
    assert _refusal(h, SAM, pending()) == ("you are notified of role breakglass's requests (notify.watchers) but "
                                           "cannot decide them; an approver must")
    line = h.audits()[-1]
    assert (line["action"], line["outcome"], line["reason"], line["request_ref"], line["principal"]) == (
        "deny", "denied", "not an approver", "a1b2c3d4e5f6", "sam@example.com")


def test_an_approver_of_one_role_only_is_told_whom_the_other_needs() -> None:
    h = Harness(WATCHED)
    request = pending(roles=("breakglass", "other"))
    assert _refusal(h, CAROL, request) == "you are not an approver for role other (approvers need group sre)"


def test_a_request_for_a_role_gone_from_the_policy_cannot_be_decided_and_says_so() -> None:
    h = Harness(WATCHED)
    request = pending(roles=("breakglass", "old-role"))
    assert _refusal(h, CAROL, request) == (
        "role old-role is no longer in the policy or needs no approval; nobody can decide this request")


# --------------------------------------------------------------------------
# Who sees what in a listing


def test_a_listing_by_kind_shows_only_that_kind_and_never_the_callers_own() -> None:
    h = Harness(WATCHED)
    glass = pending("b00000000001", kind=BREAK_GLASS)
    mine = pending("b00000000002", kind=BREAK_GLASS, requester="carol@example.com", requester_sub="00uCAROL")
    plain = pending("b00000000003")
    h.store.pending_page.return_value = ([glass, mine, plain], None)
    h.store.requester_page.return_value = ([], None)
    found, _ = h.access.page(CAROL, kind=BREAK_GLASS)
    assert [r.id for r in found] == ["b00000000001"]
    assert h.store.pending_page.call_args.kwargs["partition"] == "review"
    found, _ = h.access.page(CAROL)
    assert [r.id for r in found] == ["b00000000001", "b00000000003"]  # not her own, of any kind


def test_a_break_glass_listing_shows_admins_and_auditors_every_break_glass() -> None:
    h = Harness(WATCHED)
    glass = pending("b00000000001", kind=BREAK_GLASS)
    h.store.pending_page.return_value = ([glass], None)
    h.store.requester_page.return_value = ([], None)
    for who in (ADA, AUDREY):
        assert [r.id for r in h.access.page(who, kind=BREAK_GLASS)[0]] == ["b00000000001"]
    assert h.access.page(BOB, kind=BREAK_GLASS)[0] == []


@pytest.mark.parametrize("kind", [None, BREAK_GLASS])
def test_a_page_of_waiting_requests_goes_on_from_its_token_and_stops_at_the_one_not_shown(kind: str | None) -> None:
    h = Harness(WATCHED)
    first = _requests("d", 3, kind=kind or "access")
    h.store.pending_page.return_value = (first, PageKey("dddddddddddd", "2026-03-01T11:59:00+00:00"))
    found, token = h.access.page(CAROL, limit=2, kind=kind)
    assert [r.id for r in found] == ["d00000000000", "d00000000001"]
    assert token is not None
    cursor = decode_cursor(token, kind)
    # The next page starts after the last one shown, not after the batch DynamoDB returned.
    assert _fields(cursor) == ("p", PageKey("d00000000001", first[1].created_at.isoformat()), kind)
    h.store.pending_page.return_value = ([], None)
    h.store.requester_page.return_value = ([], None)
    h.access.page(CAROL, limit=2, next_token=token, kind=kind)
    assert h.store.pending_page.call_args.kwargs["after"] == cursor.key


def test_an_admin_who_decides_nothing_lists_only_their_own_outside_break_glass() -> None:
    h = Harness(WATCHED)
    h.store.requester_page.return_value = ([], None)
    assert h.access.page(ADA) == ([], None)
    h.store.pending_page.assert_not_called()  # admins see every break-glass, not every request


@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_a_linked_deciders_person_goes_to_the_database_condition(decision: str) -> None:
    h = Harness(WATCHED)
    h.store.get.return_value = pending()
    if decision == "approve":
        h.access.approve(PARTNER_CAROL, "a1b2c3d4e5f6", context=CONTEXT)
    else:
        h.access.deny(PARTNER_CAROL, "a1b2c3d4e5f6", note="no", context=CONTEXT)
    call = getattr(h.store, decision).call_args
    assert (call.kwargs["approver"], call.kwargs["approver_sub"], call.kwargs["approver_person"]) == (
        "partner|00uCAROL", ("https://partner.example", "00uCAROL"), "carol@example.com")


# --------------------------------------------------------------------------
# An approval that does not complete the plan


TWO_OF_THEM = POLICY.replace("    approval: {approvers: {groups: [security]}}\n", """\
    approval: {approvers: {groups: [security]}, required: 2}
  breakglass-ro:
    account: production
    role_name: BreakGlassReadOnly
    allow: [{groups: [developers]}]
    approval: {approvers: {groups: [security]}, required: 2}
""")


def test_a_first_of_two_approvals_counts_keeps_the_request_pending_and_carries_its_narrowing() -> None:
    h = Harness(TWO_OF_THEM)
    approval = h.policy.role("breakglass").approval
    assert approval is not None
    h.store.get.return_value = pending(roles=("breakglass", "breakglass-ro"), plan=approval.plan)
    h.access.approve(CAROL, "a1b2c3d4e5f6", context=CONTEXT, roles=["breakglass-ro"])
    h.store.approve.assert_not_called()
    request, step, note = h.store.vote.call_args.args
    assert request.id == "a1b2c3d4e5f6"
    # Not final (the request stays in the approvers' index), in stage 0 as its first vote, narrowed as asked.
    assert step == ApprovalStep(approver="carol@example.com", approver_sub=(IDP, "00uCAROL"), now=NOW,
                                next_stage=0, next_count=1, final=False, roles=("breakglass-ro",),
                                approver_person="carol@example.com")
    assert note.startswith("approval 1 of 2 in stage 1 (")
    [line] = h.audits()
    assert (line["action"], line["outcome"], line["reason"], line["request_ref"]) == (
        "approve", "counted", note, "a1b2c3d4e5f6")
    h.notifier.request_changed.assert_called_once_with("a1b2c3d4e5f6")


# --------------------------------------------------------------------------
# Listing by kind: the token of the next page names the kind, whichever phase it stops in


def test_a_page_of_own_requests_by_kind_hands_out_a_token_for_that_kind(h: Harness) -> None:
    mine = _requests("b", 3, kind=BREAK_GLASS)
    h.store.requester_page.return_value = (mine, PageKey("b99999999999", "2026-03-01T11:00:00+00:00"))
    found, token = h.access.page(BOB, limit=2, kind=BREAK_GLASS)  # more than a page: cut after the last shown
    assert [r.id for r in found] == ["b00000000000", "b00000000001"] and token is not None
    assert _fields(decode_cursor(token, BREAK_GLASS)) == (
        "o", PageKey("b00000000001", mine[1].created_at.isoformat()), BREAK_GLASS)
    stop = PageKey("b00000000001", "2026-03-01T11:00:00+00:00")
    h.store.requester_page.return_value = (mine[:1], stop)  # DynamoDB stopped short
    found, token = h.access.page(BOB, limit=2, next_token=token, kind=BREAK_GLASS)
    assert len(found) == 1 and token is not None
    assert _fields(decode_cursor(token, BREAK_GLASS)) == ("o", stop, BREAK_GLASS)


def test_waiting_reads_that_run_out_by_kind_hand_out_a_token_for_that_kind() -> None:
    h = Harness(WATCHED)
    # Every break-glass waiting for review is Carol's own: none is listed, and each read stops short.
    own = _requests("c", 2, kind=BREAK_GLASS, requester="carol@example.com", requester_sub="00uCAROL")
    stops = [PageKey(f"{i:012x}", f"2026-03-01T11:0{i}:00+00:00") for i in range(MAX_READS_PER_PAGE)]
    h.store.pending_page.side_effect = [(own, stop) for stop in stops]
    found, token = h.access.page(CAROL, kind=BREAK_GLASS)
    assert found == [] and token is not None
    assert _fields(decode_cursor(token, BREAK_GLASS)) == ("p", stops[-1], BREAK_GLASS)
    h.store.requester_page.assert_not_called()


# --------------------------------------------------------------------------
# The sweep that marks timed-out requests expired


def test_the_sweep_audits_each_expiry_and_goes_on_past_one_decided_meanwhile(h: Harness) -> None:
    decided, late = pending("a00000000001"), pending("a00000000002", role="readonly", requester="dan@example.com")
    h.store.due_for_expiry.return_value = [decided, late]
    h.store.expire.side_effect = [Conflict("decided meanwhile"), None]
    assert h.access.expire_due(context=CONTEXT) == ["a00000000002"]
    assert [call.args[0].id for call in h.store.expire.call_args_list] == ["a00000000001", "a00000000002"]
    [line] = h.audits()
    assert {k: line.get(k) for k in ("action", "outcome", "role", "request_ref", "requester", "reason")} == {
        "action": "expire", "outcome": "expired", "role": "readonly", "request_ref": "a00000000002",
        "requester": "dan@example.com", "reason": "no decision before the pending timeout"}
    h.notifier.request_decided.assert_called_once_with("a00000000002")


# --------------------------------------------------------------------------
# A caller whose sessions are revoked


@pytest.mark.parametrize(("action", "what", "field", "value"), [
    ("request", "request access", "roles", ["breakglass"]),
    ("approve", "approve requests", "request_ref", "a1b2c3d4e5f6"),
    ("deny", "deny requests", "request_ref", "a1b2c3d4e5f6"),
    ("revoke", "revoke grants", "request_ref", "a1b2c3d4e5f6"),
])
def test_a_revoked_caller_is_refused_before_the_store_is_read_and_the_refusal_is_audited(
        action: str, what: str, field: str, value: object) -> None:
    h = Harness()
    refusals = {"carol@example.com": {"revocation": "rv-7", "created_at": "2026-03-01T11:00:00+00:00"}}
    h.access = AccessRequests(policy=lambda: h.policy, store=h.store, audit=AuditLog(emit=h.lines.append),
                              clock=lambda: NOW, notifier=h.notifier, revoked=lambda who: refusals.get(who.subject))
    calls = {"request": lambda: h.access.create(CAROL, "breakglass", duration_seconds=3600, reason="x",
                                                context=CONTEXT),
             "approve": lambda: h.access.approve(CAROL, "a1b2c3d4e5f6", context=CONTEXT),
             "deny": lambda: h.access.deny(CAROL, "a1b2c3d4e5f6", note=None, context=CONTEXT),
             "revoke": lambda: h.access.revoke(CAROL, "a1b2c3d4e5f6", note=None, context=CONTEXT)}
    reason = (f"your sessions are revoked (revocation rv-7, 2026-03-01T11:00:00+00:00): you may not {what} "
              "until an admin lifts it")
    with pytest.raises(Revoked) as caught:
        calls[action]()
    assert str(caught.value) == reason
    assert h.store.mock_calls == []
    [line] = h.audits()
    assert {k: line.get(k) for k in ("action", "outcome", "request_id", "principal", "reason", "revocation", field)} \
        == {"action": action, "outcome": "denied", "request_id": "req-1", "principal": "carol@example.com",
            "reason": reason, "revocation": "rv-7", field: value}


def test_the_approval_that_completes_the_plan_grants_only_the_roles_it_narrows_to_and_says_so() -> None:
    h = Harness(TWO_OF_THEM.replace("required: 2", "required: 1"))
    approval = h.policy.role("breakglass").approval
    assert approval is not None
    h.store.get.return_value = pending(roles=("breakglass", "breakglass-ro"), plan=approval.plan)
    h.access.approve(CAROL, "a1b2c3d4e5f6", context=CONTEXT, roles=["breakglass-ro"])
    h.store.vote.assert_not_called()
    call = h.store.approve.call_args
    assert call.kwargs["roles"] == ("breakglass-ro",)
    assert call.kwargs["grant_until"] == NOW + timedelta(hours=1)
    [line] = h.audits()
    assert (line["action"], line["outcome"], line["granted"], line["reason"]) == (
        "approve", "approved", ["breakglass-ro"], f"grant until {(NOW + timedelta(hours=1)).isoformat()}")
    h.store.approve.reset_mock()
    h.access.approve(CAROL, "a1b2c3d4e5f6", context=CONTEXT)  # all of them: nothing narrowed, nothing to say
    assert h.store.approve.call_args.kwargs["roles"] is None
    assert "granted" not in h.audits()[-1]


STAGED = POLICY.replace("    approval: {approvers: {groups: [security]}}\n", """\
    approval:
      stages:
        - {name: lead, approvers: {groups: [leads]}}
        - {name: security, approvers: {groups: [security]}}
""")


def test_an_approver_of_a_later_stage_is_refused_now_and_the_refusal_is_audited() -> None:
    h = Harness(STAGED)
    approval = h.policy.role("breakglass").approval
    assert approval is not None
    h.store.get.return_value = pending(plan=approval.plan)
    with pytest.raises(Forbidden, match="waits for stage 1 of 2 \\(lead\\)"):
        h.access.approve(CAROL, "a1b2c3d4e5f6", context=CONTEXT)
    h.store.vote.assert_not_called()
    [line] = h.audits()
    assert {k: line.get(k) for k in ("action", "outcome", "principal", "role", "reason", "request_ref")} == {
        "action": "approve", "outcome": "denied", "principal": "carol@example.com", "role": "breakglass",
        "reason": "not this stage", "request_ref": "a1b2c3d4e5f6"}


# --------------------------------------------------------------------------
# Filing a request


FILED = """\
version: 1
accounts:
  production: {id: "333333333333", region: us-east-1}
roles:
""" + "".join(f"""\
  {name}:
    account: production
    role_name: {name}
    allow: [{{groups: [developers]}}]
    approval:
      approvers: {{groups: [security]}}
      ticket: {{pattern: "^INC-[0-9]+$"}}
      max_grant_seconds: 7200
      pending_timeout_seconds: 3600
    scopes:
      logs: {{policy_arns: ["arn:aws:iam::aws:policy/CloudWatchLogsReadOnlyAccess"]}}
""" for name in ("app-a", "app-b"))


def test_a_request_for_several_roles_is_filed_with_all_it_was_given_and_audited() -> None:
    h = Harness(FILED)
    approval = h.policy.role("app-a").approval
    assert approval is not None
    h.store.open_requests.return_value = {}
    h.store.create.return_value = pending(role="app-a", roles=("app-a", "app-b"))
    start = NOW + timedelta(hours=2)
    h.access.create(BOB, ["app-a", "app-b"], duration_seconds=None, reason="INC-7 db failover", context=CONTEXT,
                    requester_slack="U0BOB", ticket="INC-7", scope="logs", start_at=start)
    kwargs = h.store.create.call_args.kwargs
    assert kwargs["spec"] == NewRequest(roles=("app-a", "app-b"), ticket="INC-7", scope="logs", start_at=start,
                                        plan=approval.plan)
    assert {k: kwargs[k] for k in ("role", "requester", "duration_seconds", "reason", "pending_seconds",
                                   "requester_slack", "requester_sub", "requester_person", "now")} == {
        "role": "app-a", "requester": "bob@example.com", "duration_seconds": 7200, "reason": "INC-7 db failover",
        "pending_seconds": 3600, "requester_slack": "U0BOB", "requester_sub": (IDP, "00uBOB"),
        "requester_person": None, "now": NOW}
    [line] = h.audits()
    assert {k: line.get(k) for k in ("action", "outcome", "role", "account", "reason", "request_ref", "roles",
                                     "ticket", "scope", "start_at")} == {
        "action": "request", "outcome": "created", "role": "app-a", "account": "333333333333",
        "reason": "INC-7 db failover", "request_ref": "a1b2c3d4e5f6", "roles": ["app-a", "app-b"],
        "ticket": "INC-7", "scope": "logs", "start_at": start.isoformat()}
    h.notifier.request_created.assert_called_once_with("a1b2c3d4e5f6")


def test_a_request_for_one_role_audits_no_role_list_and_nothing_it_was_not_given() -> None:
    h = Harness(FILED.replace('      ticket: {pattern: "^INC-[0-9]+$"}\n', ""))
    h.store.open_requests.return_value = {}
    h.store.create.return_value = pending(role="app-a")
    h.access.create(BOB, "app-a", duration_seconds=900, reason="look", context=CONTEXT)
    assert h.store.create.call_args.kwargs["duration_seconds"] == 900
    [line] = h.audits()
    assert not {"roles", "ticket", "scope", "start_at"} & line.keys()


def test_a_caller_the_role_does_not_allow_is_refused_and_audited_with_the_reason() -> None:
    h = Harness(FILED)
    stranger = Identity(subject="eve@example.com", groups=frozenset({"marketing"}), issuer=IDP, sub="00uEVE")
    with pytest.raises(Forbidden, match="you may not request role app-a"):
        h.access.create(stranger, ["app-a", "app-b"], duration_seconds=None, reason="x", context=CONTEXT,
                        ticket="INC-7")
    h.store.create.assert_not_called()
    [line] = h.audits()
    assert {k: line.get(k) for k in ("action", "outcome", "principal", "role", "account", "reason")} == {
        "action": "request", "outcome": "denied", "principal": "eve@example.com", "role": "app-a",
        "account": "333333333333", "reason": "role app-a requires group developers"}


@pytest.mark.parametrize(("start", "accepted"), [
    (NOW, False),  # now is already the past
    (NOW + timedelta(microseconds=1), True),
    (NOW + timedelta(days=30), True),
    (NOW + timedelta(days=30, microseconds=1), False),
])
def test_a_request_may_start_after_now_and_at_most_thirty_days_ahead(start: datetime, accepted: bool) -> None:
    h = Harness(FILED)
    h.store.open_requests.return_value = {}
    h.store.create.return_value = pending(role="app-a")
    if accepted:
        h.access.create(BOB, "app-a", duration_seconds=None, reason="x", context=CONTEXT, ticket="INC-7",
                        start_at=start)
        assert h.store.create.call_args.kwargs["spec"].start_at == start
    else:
        with pytest.raises(BadRequest, match="start_at"):
            h.access.create(BOB, "app-a", duration_seconds=None, reason="x", context=CONTEXT, ticket="INC-7",
                            start_at=start)
        h.store.create.assert_not_called()


# --------------------------------------------------------------------------
# Deciding: who may, on what, and how many tries a busy request gets


def test_a_requester_deciding_their_own_request_is_refused_and_audited_as_self_approval(h: Harness) -> None:
    h.store.get.return_value = pending(requester="carol@example.com", requester_sub="00uCAROL")
    with pytest.raises(Forbidden, match="your own request"):
        h.access.deny(CAROL, "a1b2c3d4e5f6", note=None, context=CONTEXT)
    h.store.deny.assert_not_called()
    [line] = h.audits()
    assert {k: line.get(k) for k in ("action", "outcome", "role", "reason", "request_ref")} == {
        "action": "deny", "outcome": "denied", "role": "breakglass", "reason": "self-approval",
        "request_ref": "a1b2c3d4e5f6"}


@pytest.mark.parametrize(("request_", "refusal"), [
    (pending(kind=BREAK_GLASS, status=APPROVED), "is a break-glass: it needs a review"),
    (pending(status="denied"), "is denied, not pending"),
    (pending(pending_until=NOW), "is expired, not pending"),
])
def test_only_a_pending_request_that_is_not_a_break_glass_can_be_decided(
        h: Harness, request_: AccessRequest, refusal: str) -> None:
    h.store.get.return_value = request_
    for decide in (lambda: h.access.approve(CAROL, "a1b2c3d4e5f6", context=CONTEXT),
                   lambda: h.access.deny(CAROL, "a1b2c3d4e5f6", note=None, context=CONTEXT)):
        with pytest.raises(Conflict, match=refusal):
            decide()
    assert h.store.approve.call_count == h.store.deny.call_count == 0
    assert h.audits() == []


def test_an_approval_that_loses_a_race_is_judged_again_on_the_request_as_it_now_is(h: Harness) -> None:
    h.store.get.return_value = pending()
    h.store.approve.side_effect = [Conflict("changed"), None]
    h.access.approve(CAROL, "a1b2c3d4e5f6", context=CONTEXT)
    assert h.store.approve.call_count == 2
    assert [line["outcome"] for line in h.audits()] == ["approved"]


def test_an_approval_that_keeps_losing_gives_up_with_a_409_after_a_bounded_number_of_tries(h: Harness) -> None:
    h.store.get.return_value = pending()
    h.store.approve.side_effect = Conflict("changed")
    with pytest.raises(Conflict, match="could not take your approval"):
        h.access.approve(CAROL, "a1b2c3d4e5f6", context=CONTEXT)
    assert h.store.approve.call_count == 5 * 10 + 2  # every place of the largest plan, and two more
    assert h.audits() == []


def test_a_request_id_that_is_not_one_is_a_404_before_anything_is_read(h: Harness) -> None:
    with pytest.raises(NotFound):
        h.access.approve(CAROL, "../../etc", context=CONTEXT)
    h.store.get.assert_not_called()


@pytest.mark.parametrize("roles", [[], ["breakglass", "breakglass"], ["breakglass", "other"]])
def test_a_narrowing_must_name_some_of_the_requests_roles_each_once(roles: list[str]) -> None:
    h = Harness(TWO_OF_THEM)
    h.store.get.return_value = pending(roles=("breakglass", "breakglass-ro"),
                                       plan=h.policy.role("breakglass").approval.plan)  # type: ignore[union-attr]
    with pytest.raises(BadRequest, match="narrows a request to some of its own roles \\(breakglass, breakglass-ro\\)"):
        h.access.approve(CAROL, "a1b2c3d4e5f6", context=CONTEXT, roles=roles)
    h.store.vote.assert_not_called()


def test_a_narrowing_keeps_the_requests_order() -> None:
    h = Harness(TWO_OF_THEM)
    h.store.get.return_value = pending(roles=("breakglass", "breakglass-ro"),
                                       plan=h.policy.role("breakglass").approval.plan)  # type: ignore[union-attr]
    h.access.approve(CAROL, "a1b2c3d4e5f6", context=CONTEXT, roles=["breakglass-ro", "breakglass"])
    assert h.store.vote.call_args.args[1].roles == ("breakglass", "breakglass-ro")


def test_an_extension_is_approved_for_every_role_of_its_grant_or_not_at_all() -> None:
    h = Harness(TWO_OF_THEM.replace("required: 2", "required: 1"))
    parent = pending("a1b2c3d4e5f6", status=APPROVED, roles=("breakglass", "breakglass-ro"),
                     grant_until=NOW + timedelta(minutes=30))
    extension = pending("e1e2e3e4e5e6", kind=EXTENSION, parent=parent.id, duration_seconds=600,
                        roles=("breakglass", "breakglass-ro"))
    h.store.get.side_effect = lambda request_id: {parent.id: parent, extension.id: extension}[request_id]
    with pytest.raises(BadRequest, match="extends every role of the grant of request a1b2c3d4e5f6"):
        h.access.approve(CAROL, extension.id, context=CONTEXT, roles=["breakglass"])
    h.store.extend_by_approval.assert_not_called()
    h.access.approve(CAROL, extension.id, context=CONTEXT, roles=["breakglass-ro", "breakglass"])
    h.store.extend_by_approval.assert_called_once()


def test_an_approval_needs_mfa_when_any_role_of_the_request_requires_it() -> None:
    h = Harness(TWO_OF_THEM.replace("required: 2", "required: 1").replace(
        "    role_name: BreakGlassReadOnly\n", "    role_name: BreakGlassReadOnly\n    require_mfa: true\n"))
    approval = h.policy.role("breakglass").approval
    assert approval is not None and not h.policy.role("breakglass").require_mfa
    h.store.get.return_value = pending(roles=("breakglass", "breakglass-ro"), plan=approval.plan)
    with pytest.raises(Forbidden, match="approving role breakglass requires MFA"):
        h.access.approve(CAROL, "a1b2c3d4e5f6", context=CONTEXT)
    with pytest.raises(Forbidden, match="which Slack cannot prove"):
        h.access.approve(CAROL, "a1b2c3d4e5f6", context=CallContext(request_id="req-2", channel="slack"))
    h.store.approve.assert_not_called()
    h.access.approve(replace(CAROL, claims={"amr": ["pwd", "mfa"]}), "a1b2c3d4e5f6", context=CONTEXT)
    h.store.approve.assert_called_once()
