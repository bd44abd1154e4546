"""DynamoDB items of the access store, to and from plain data (no I/O).

``store.py`` decides what to write and under which conditions; this module
only knows how each thing looks as an item.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.access.workflow import Plan
from chalicelib.jit.grants import ActiveGrant, IssuedSession
from chalicelib.jit.model import ACCESS, SINGLE_STAGE, AccessRequest, Review, SlackCopy, Vote

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Item = dict[str, Any]


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def micros(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int | float) -> dict[str, str]:
    return {"N": str(int(value))}


def strings(values: tuple[str, ...] | list[str]) -> dict[str, Any]:
    return {"L": [s(v) for v in values]}


def sub_key(iss: str, sub: str) -> str:
    """One string for a token's ``iss`` + ``sub``, for a string set the database can test."""
    return json.dumps([iss, sub], separators=(",", ":"))


def vote_value(who: str, stage: int, at: datetime) -> dict[str, Any]:
    return {"M": {"who": s(who), "stage": n(stage), "at": s(iso(at))}}


def plan_value(plan: Plan) -> dict[str, Any]:
    return {"L": [{"M": {"name": s(name), "required": n(required)}} for name, required in plan.stages]}


def grant_item(request: AccessRequest, role: str, *, approver: str, grant_from: datetime, grant_until: datetime,
               ttl_grace: timedelta, break_glass: bool = False) -> Item:
    item: Item = {
        "pk": s(f"GRANT#{request.requester}"), "sk": s(f"ROLE#{role}#{request.id}"),
        "role": s(role), "from": s(iso(grant_from)), "until": s(iso(grant_until)), "request_id": s(request.id),
        "approved_by": s(approver), "expires_at_epoch": n((grant_until + ttl_grace).timestamp()),
    }
    if request.ticket:
        item["ticket"] = s(request.ticket)
    if request.scope:
        item["scope"] = s(request.scope)
    if break_glass:
        item["break_glass"] = {"BOOL": True}
    return item


def grant(item: Mapping[str, Any]) -> ActiveGrant:
    return ActiveGrant(request_id=item["request_id"]["S"], role=item["role"]["S"],
                       until=datetime.fromisoformat(item["until"]["S"]),
                       starts=_dt(item.get("from", {}).get("S")), ticket=item.get("ticket", {}).get("S"),
                       scope=item.get("scope", {}).get("S"), break_glass=item.get("break_glass", {}).get("BOOL", False))


def session_item(session: IssuedSession) -> Item:
    # No requester or pending_pk: session items stay out of both indexes.
    return {
        "pk": s(f"REQUEST#{session.request_id}"),
        "sk": s(f"SESSION#{iso(session.issued_at)}#{session.access_key_id}"),
        "request_id": s(session.request_id), "role": s(session.role), "role_arn": s(session.role_arn),
        "account_id": s(session.account_id), "assumed_role_arn": s(session.assumed_role_arn),
        "access_key_id": s(session.access_key_id), "session_name": s(session.session_name),
        "issued_at": s(iso(session.issued_at)), "expires_at": s(iso(session.expires_at)),
        "kind": s(session.kind),
    }


def session(item: Mapping[str, Any]) -> IssuedSession:
    return IssuedSession(
        request_id=item["request_id"]["S"], role=item["role"]["S"], role_arn=item["role_arn"]["S"],
        account_id=item["account_id"]["S"], assumed_role_arn=item["assumed_role_arn"]["S"],
        access_key_id=item["access_key_id"]["S"], session_name=item["session_name"]["S"],
        issued_at=datetime.fromisoformat(item["issued_at"]["S"]),
        expires_at=datetime.fromisoformat(item["expires_at"]["S"]), kind=item["kind"]["S"],
    )


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _plan(item: Mapping[str, Any]) -> Plan:
    if "plan" not in item:
        return SINGLE_STAGE  # filed before stages existed: one approver decides
    return Plan(tuple((m["M"]["name"]["S"], int(m["M"]["required"]["N"])) for m in item["plan"]["L"]))


def _votes(item: Mapping[str, Any]) -> tuple[Vote, ...]:
    return tuple(Vote(who=v["M"]["who"]["S"], stage=int(v["M"]["stage"]["N"]),
                      at=datetime.fromisoformat(v["M"]["at"]["S"])) for v in item.get("votes", {}).get("L", []))


def _copies(item: Mapping[str, Any]) -> tuple[SlackCopy, ...]:
    return tuple(SlackCopy(*(part["S"] for part in m["L"][:3])) for m in item.get("messages", {}).get("L", []))


def _review(item: Mapping[str, Any]) -> Review | None:
    if "review_status" not in item:
        return None
    return Review(status=item["review_status"]["S"], by=item.get("reviewed_by", {}).get("S"),
                  at=_dt(item.get("reviewed_at", {}).get("S")), note=item.get("review_note", {}).get("S"))


def request(item: Mapping[str, Any]) -> AccessRequest:
    def opt(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if value else None

    def number(name: str) -> int:
        return int(item[name]["N"]) if name in item else 0

    return AccessRequest(
        id=item["id"]["S"], role=item["role"]["S"], requester=item["requester"]["S"],
        duration_seconds=int(item["duration_seconds"]["N"]), reason=item["reason"]["S"],
        status=item["status"]["S"], created_at=datetime.fromisoformat(item["created_at"]["S"]),
        pending_until=datetime.fromisoformat(item["pending_until"]["S"]), decided_by=opt("decided_by"),
        decided_at=_dt(opt("decided_at")), note=opt("note"), grant_until=_dt(opt("grant_until")),
        requester_slack=opt("requester_slack"), ticket=opt("ticket"), requester_iss=opt("requester_iss"),
        requester_sub=opt("requester_sub"), requester_person=opt("requester_person"),
        slot=int(item["open_slot"]["N"]) if "open_slot" in item else None,
        messages=_copies(item),
        kind=opt("kind") or ACCESS,
        roles=tuple(r["S"] for r in item.get("roles", {}).get("L", [])),
        scope=opt("scope"), start_at=_dt(opt("start_at")), grant_from=_dt(opt("grant_from")),
        plan=_plan(item), stage=number("stage_now"), votes=_votes(item),
        approver_subs=frozenset(item.get("approver_subs", {}).get("SS", [])),
        approver_persons=frozenset(item.get("approver_persons", {}).get("SS", [])),
        review=_review(item), parent=opt("parent"), extended_seconds=number("extended_seconds"),
        auto_extended_seconds=number("auto_extended_seconds"), extensions=number("extensions"),
        holds_lock=item.get("holds_lock", {}).get("BOOL", False),
        narrowed_from=tuple(r["S"] for r in item.get("narrowed_from", {}).get("L", [])),
    )
