"""``GET /v1/requests`` pages (``limit``, an opaque ``next_token``) so no
request hides behind others, over the API and Slack; and each person has at
most a few open requests, enforced by the database even for racing creates."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest

from chalicelib.aws.store import AccessStore
from tests.flow.conftest import Jit

REASON = "INC-7 payments down"


def store(jit: Jit) -> AccessStore:
    found: AccessStore = jit.services.access._store
    return found


def spam(jit: Jit, count: int, *, step: timedelta = timedelta(seconds=1)) -> list[str]:
    """``count`` pending requests from as many people, straight into the store, oldest first."""
    ids = []
    for i in range(count):
        request = store(jit).create(role="breakglass", requester=f"spammer{i}@example.com", duration_seconds=3600,
                                    reason="spam", now=jit.clock() - step * (count - i), pending_seconds=86400)
        ids.append(request.id)
    return ids


def file(jit: Jit, who: str = "bob@example.com") -> Any:
    token = jit.issuer.mint(who, groups=["developers"])
    return jit.call("POST", "/v1/requests", token, {"role": "breakglass", "duration_seconds": 3600, "reason": REASON})


def pages(jit: Jit, token: str, limit: int | None = None) -> list[list[dict[str, Any]]]:
    found: list[list[dict[str, Any]]] = []
    next_token: str | None = None
    while True:
        query = [f"limit={limit}"] if limit else []
        if next_token:
            query.append(f"next_token={quote(next_token)}")
        response = jit.call("GET", "/v1/requests" + ("?" + "&".join(query) if query else ""), token)
        assert response.status_code == 200, response.body
        assert set(response.json_body) == {"requests", "next_token"}
        found.append(response.json_body["requests"])
        next_token = response.json_body["next_token"]
        if next_token is None:
            return found
        assert len(found) < 50, "pagination does not end"


def test_a_real_request_behind_a_hundred_spam_ones_is_reachable(jit: Jit) -> None:
    spammed = spam(jit, 100)
    real = file(jit).json_body["id"]
    seen = pages(jit, jit.carol())
    assert [len(page) for page in seen] == [50, 50, 1]
    ids = [r["id"] for page in seen for r in page]
    assert ids == [*spammed, real]


def test_small_pages_cover_everything_exactly_once(jit: Jit) -> None:
    spammed = spam(jit, 12)
    seen = pages(jit, jit.carol(), limit=5)
    assert [len(page) for page in seen] == [5, 5, 2]
    assert [r["id"] for page in seen for r in page] == spammed


def test_pages_hold_up_when_requests_are_decided_between_them(jit: Jit) -> None:
    spammed = spam(jit, 6)
    first = jit.call("GET", "/v1/requests?limit=3", jit.carol()).json_body
    for request_id in spammed[:4]:  # the page's last item and one beyond it leave the pending index
        jit.call("POST", f"/v1/requests/{request_id}/deny", jit.carol(), {})
    second = jit.call("GET", f"/v1/requests?limit=3&next_token={quote(first['next_token'])}", jit.carol()).json_body
    assert [r["id"] for r in second["requests"]] == spammed[4:] and second["next_token"] is None


def test_approvers_see_pending_requests_first_then_their_own(jit: Jit) -> None:
    spammed = spam(jit, 2)
    erin = jit.issuer.mint("erin@example.com", groups=["developers", "security"])
    erins = jit.call("POST", "/v1/requests", erin, {"role": "breakglass", "duration_seconds": 3600,
                                                      "reason": REASON}).json_body["id"]
    seen = [r["id"] for page in pages(jit, erin, limit=1) for r in page]
    assert seen == [*spammed, erins]


def test_expired_requests_are_not_listed_for_approvers(jit: Jit) -> None:
    old = spam(jit, 3, step=timedelta(days=1))  # 3, 2 and 1 days old: all past their 24 h
    fresh = spam(jit, 1)
    assert [r["id"] for page in pages(jit, jit.carol()) for r in page] == fresh
    assert old


def test_requesters_see_their_own_newest_first(jit: Jit) -> None:
    mine = []
    for _ in range(3):
        mine.append(file(jit).json_body["id"])
        jit.clock.now += timedelta(seconds=1)
    seen = pages(jit, jit.bob(), limit=2)
    assert [r["id"] for page in seen for r in page] == mine[::-1]


@pytest.mark.parametrize(("query", "fragment"), [
    ("limit=0", "limit"), ("limit=101", "limit"), ("limit=ten", "limit"), ("limit=-1", "limit"),
    ("limit=%F0%9D%9F%9D", "limit"), ("next_token=garbage", "next_token"), ("next_token=", "next_token"),
    ("next_token=" + "A" * 513, "next_token"),
    ("next_token=eyJwIjoicCIsImkiOiIuLi8uLiIsImEiOiJ4In0", "next_token"), ("page=2", "unknown"),
    ("kind=emergency", "kind must be one of access, break_glass, extension"),
])
def test_bad_paging_parameters_are_a_400(jit: Jit, query: str, fragment: str) -> None:
    response = jit.call("GET", f"/v1/requests?{query}", jit.carol())
    assert response.status_code == 400, response.body
    assert fragment in response.json_body["Message"]


def test_slack_shows_a_page_and_how_to_see_more(jit: Jit) -> None:
    spammed = spam(jit, 12)
    jit.call("GET", "/v1/roles", jit.carol())
    jit.command("U0CAROL", "requests")
    first = jit.sent("/hooks/commands/1")[-1]["text"]
    assert [i for i in spammed if i in first] == spammed[:10]
    more = first.splitlines()[-1]
    assert more.startswith("More: `/aws requests more ")
    jit.command("U0CAROL", more.removeprefix("More: `/").removesuffix("`").removeprefix("aws "))
    second = jit.sent("/hooks/commands/1")[-1]["text"]
    assert [i for i in spammed if i in second] == spammed[10:] and "More:" not in second
    jit.command("U0CAROL", "requests more not-a-token")
    assert "next_token" in jit.sent("/hooks/commands/1")[-1]["text"]


# --------------------------------------------------------------------------
# The cap on open requests


def test_a_sixth_open_request_is_refused_with_how_to_cancel_one(jit: Jit) -> None:
    ids = [file(jit).json_body["id"] for _ in range(5)]
    refused = file(jit)
    assert refused.status_code == 429
    message = refused.json_body["Message"]
    assert "5 open access requests" in message and "at most 5" in message
    assert all(i in message for i in ids) and "cancel" in message
    assert jit.call("POST", f"/v1/requests/{ids[0]}/cancel", jit.bob(), {}).status_code == 200
    assert file(jit).status_code == 201
    assert file(jit).status_code == 429


def test_decided_and_expired_requests_free_their_place(jit: Jit) -> None:
    ids = [file(jit).json_body["id"] for _ in range(5)]
    jit.call("POST", f"/v1/requests/{ids[0]}/deny", jit.carol(), {})
    jit.call("POST", f"/v1/requests/{ids[1]}/approve", jit.carol(), {})
    assert [file(jit).status_code for _ in range(3)] == [201, 201, 429]
    jit.clock.now += timedelta(hours=1, seconds=1)  # breakglass requests wait at most an hour
    assert [file(jit).status_code for _ in range(6)] == [201] * 5 + [429]
    other = file(jit, "dave@example.com")
    assert other.status_code == 201  # the cap is per person


def test_racing_creates_cannot_exceed_the_cap(jit: Jit) -> None:
    """Ten creates at once, each on its own thread with its own DynamoDB client (chalice's test
    client serves one request at a time, so this goes one layer down, where the race is)."""
    from chalicelib.audit import CallContext
    from chalicelib.exceptions import RolebrokerError
    from chalicelib.identity.tokens import Identity

    bob = Identity(subject="bob@example.com", groups=frozenset({"developers"}), issuer=jit.issuer.url)
    barrier = threading.Barrier(10)
    outcomes: list[str] = []

    def create() -> None:
        barrier.wait()
        try:
            jit.services.access.create(bob, "breakglass", duration_seconds=3600, reason=REASON,
                                       context=CallContext(request_id="race"))
            outcomes.append("created")
        except RolebrokerError as exc:
            outcomes.append(f"{exc.status}")

    threads = [threading.Thread(target=create) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["429"] * 5 + ["created"] * 5
    listed = [r for page in pages(jit, jit.bob()) for r in page]
    assert len(listed) == 5 and all(r["status"] == "pending" for r in listed)


def test_the_store_refuses_a_taken_slot_whatever_the_caller_checked(jit: Jit) -> None:
    from chalicelib.exceptions import SlotTaken

    first = store(jit).create(role="breakglass", requester="bob@example.com", duration_seconds=3600, reason="a",
                              now=jit.clock(), pending_seconds=3600, slot=0)
    with pytest.raises(SlotTaken):
        store(jit).create(role="breakglass", requester="bob@example.com", duration_seconds=3600, reason="b",
                          now=jit.clock(), pending_seconds=3600, slot=0)
    assert store(jit).open_requests("bob@example.com", jit.clock()) == {0: first.id}
    later = jit.clock() + timedelta(hours=1)
    assert store(jit).open_requests("bob@example.com", later) == {}
    store(jit).create(role="breakglass", requester="bob@example.com", duration_seconds=3600, reason="c",
                      now=later, pending_seconds=3600, slot=0)
