"""A deliberately small IAM policy evaluator, for the documents rolebroker generates.

Why hand-written: the only Python local simulator that evaluates
conditions and permissions boundaries, NCC Group's principalmapper (and its
fork principalmapper-0ca), was last released in 2022 and no longer imports
on Python 3.10+ (``from collections import Mapping``); the others on PyPI
summarise permissions without a request context. So this follows the IAM
User Guide's evaluation logic for exactly the constructs the generated
documents use (Allow/Deny, Action/NotAction, Resource/NotResource with
wildcards, StringEquals, StringLike, ArnEquals, ArnLike, DateLessThan,
Null) and **raises** on anything else, so an unsupported construct can never
pass a test by accident. ``tests/deploy/test_revoker.py`` checks it against
cases whose answer AWS documents.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

ALLOWED, EXPLICIT_DENY, IMPLICIT_DENY = "allowed", "explicit_deny", "implicit_deny"


class Unsupported(Exception):
    """The document uses something this evaluator does not implement."""


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, value: str, *, case: bool) -> bool:
    """IAM's wildcards: ``*`` any run of characters, ``?`` one; nothing else is special."""
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _matches_action(statement: Mapping[str, Any], action: str) -> bool:
    if "Action" in statement:
        return any(_wildcard(p, action, case=False) for p in _listed(statement["Action"]))
    if "NotAction" in statement:
        return not any(_wildcard(p, action, case=False) for p in _listed(statement["NotAction"]))
    raise Unsupported("statement without Action or NotAction")


def _matches_resource(statement: Mapping[str, Any], resource: str) -> bool:
    if "Resource" in statement:
        return any(_wildcard(p, resource, case=True) for p in _listed(statement["Resource"]))
    if "NotResource" in statement:
        return not any(_wildcard(p, resource, case=True) for p in _listed(statement["NotResource"]))
    raise Unsupported("statement without Resource or NotResource")


def _date(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


OPERATORS = {"Null", "StringEquals", "StringLike", "ArnEquals", "ArnLike", "DateLessThan"}


def _operator(name: str, key: str, expected: list[Any], context: Mapping[str, Any]) -> bool:
    if name not in OPERATORS:
        raise Unsupported(f"condition operator {name}")
    if name == "Null":
        present = key in context
        return any((str(e).lower() == "true") != present for e in expected)
    if key not in context:
        return False  # a condition on a key the request lacks does not match
    actual = [str(v) for v in _listed(context[key])]
    if name == "StringEquals":
        return any(a == e for a in actual for e in expected)
    if name == "StringLike" or name == "ArnLike":
        return any(_wildcard(e, a, case=True) for a in actual for e in expected)
    if name == "ArnEquals":
        return any(a == e for a in actual for e in expected)
    return any(_date(a) < _date(e) for a in actual for e in expected)  # DateLessThan


def _matches_condition(statement: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    for name, block in statement.get("Condition", {}).items():
        if name.startswith(("ForAllValues:", "ForAnyValue:")) or name.endswith("IfExists"):
            raise Unsupported(f"condition operator {name}")
        for key, expected in block.items():
            if not _operator(name, key, [str(e) for e in _listed(expected)], context):
                return False
    return True


def matching(document: Mapping[str, Any], effect: str, action: str, resource: str,
             context: Mapping[str, Any]) -> list[str]:
    """The Sids (or indexes) of the document's statements of ``effect`` that apply to this request."""
    found = []
    for index, statement in enumerate(_listed(document["Statement"])):
        if statement["Effect"] not in ("Allow", "Deny"):
            raise Unsupported(f"effect {statement['Effect']}")
        if "Principal" in statement or "NotPrincipal" in statement:
            raise Unsupported("Principal: evaluate trust policies with trust_allows")
        if (statement["Effect"] == effect and _matches_action(statement, action)
                and _matches_resource(statement, resource) and _matches_condition(statement, context)):
            found.append(statement.get("Sid", str(index)))
    return found


def decide(identity_policies: Sequence[Mapping[str, Any]], action: str, resource: str,
           context: Mapping[str, Any], *, boundary: Mapping[str, Any] | None = None) -> str:
    """Same-account identity-based evaluation with an optional permissions boundary."""
    documents = [*identity_policies, *([boundary] if boundary is not None else [])]
    if any(matching(d, "Deny", action, resource, context) for d in documents):
        return EXPLICIT_DENY
    allowed = any(matching(d, "Allow", action, resource, context) for d in identity_policies)
    if allowed and (boundary is None or matching(boundary, "Allow", action, resource, context)):
        return ALLOWED
    return IMPLICIT_DENY


def trust_allows(trust: Mapping[str, Any], principal_account_root: str, action: str,
                 context: Mapping[str, Any]) -> bool:
    """Whether a role trust policy lets a caller of ``principal_account_root`` take ``action``."""
    without_principals = []
    for statement in _listed(trust["Statement"]):
        principals = _listed(statement["Principal"]["AWS"])
        if principal_account_root in principals:
            without_principals.append({k: v for k, v in statement.items() if k != "Principal"} | {"Resource": "*"})
    document = {"Statement": without_principals}
    return (not matching(document, "Deny", action, "*", context)
            and bool(matching(document, "Allow", action, "*", context)))
