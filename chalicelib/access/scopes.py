"""Scoped sessions: a role's named session policies.

A scope is an inline session policy, managed policy ARNs, or both. STS
intersects them with the role's own permissions (``Policy``/``PolicyArns``
on ``AssumeRole``), so a scope can only narrow a session, never widen it.

Two levels of vetting:

* at load time, in the broker and everywhere else, the structure STS will
  hold us to: a JSON object with ``Version`` 2012-10-17 and statements of
  known keys (no ``Principal``: a session policy is an identity policy),
  ``Effect`` Allow or Deny, one of ``Action``/``NotAction`` and one of
  ``Resource``/``NotResource`` with well-formed values, at most 2,048
  characters of STS's alphabet once minified, at most 10 well-formed
  managed policy ARNs. This needs nothing beyond the standard library, so the
  Lambda package stays small and the runtime never differs from CI;
* in ``policycheck`` (the policy repository's CI) and the tests, parliament
  (a development dependency) on each inline policy: unknown actions, bad
  condition keys, malformed ARNs. Its ``RESOURCE_STAR`` findings are left
  out: they warn that a policy *grants* on every resource, and a session
  policy grants nothing the role does not already have.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chalicelib.access.policy import _Map, _Validator

SCOPE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\Z")
POLICY_ARN_RE = re.compile(r"arn:aws(-[a-z]+)*:iam::(aws|[0-9]{12}):policy/[\w+=,.@/-]{1,512}\Z", re.ASCII)
ACTION_RE = re.compile(r"(\*|[a-z0-9-]{2,64}:[A-Za-z0-9*?]{1,128})\Z")
RESOURCE_RE = re.compile(r"(\*|arn:[^\x00-\x1f\x7f]{1,2000})\Z")
STATEMENT_KEYS = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}
MAX_POLICY_CHARS = 2048  # STS: inline plus managed session policies' plaintext, at most 2,048 characters
MAX_POLICY_ARNS = 10
MAX_SCOPES = 20
MAX_STATEMENTS = 50
# STS accepts tab, LF, CR and U+0020-U+00FF in a session policy.
_STS_CHARS = re.compile(r"[\t\n\r\x20-\xff]*\Z")
# Warnings about granting on every resource: meaningless for a policy that can only narrow.
IGNORED_PARLIAMENT_ISSUES = frozenset({"RESOURCE_STAR", "RESOURCE_EFFECTIVELY_STAR"})


@dataclass(frozen=True)
class Scope:
    """A named session policy of one role: minified inline JSON, managed policy ARNs, or both."""

    name: str
    policy: str | None = None
    policy_arns: tuple[str, ...] = ()
    description: str = ""

    def describe(self) -> str:
        parts = []
        if self.policy is not None:
            parts.append(f"inline policy ({len(self.policy)} characters)")
        if self.policy_arns:
            parts.append("managed " + ", ".join(self.policy_arns))
        return " + ".join(parts)


def load_scopes(v: _Validator, m: _Map, where: str) -> dict[str, Scope]:
    where = f"{where}.scopes"
    value = m["scopes"]
    s = v.mapping(value, where, m.key_lines["scopes"], set(value) if isinstance(value, dict) else set())
    if not 1 <= len(s) <= MAX_SCOPES:
        raise v.fail(where, f"name 1 to {MAX_SCOPES} scopes", s.line)
    return {name: _scope(v, name, item, f"{where}.{name}", s.key_lines[name]) for name, item in s.items()}


def _scope(v: _Validator, name: str, value: Any, where: str, line: int) -> Scope:
    if not SCOPE_NAME_RE.match(name):
        raise v.fail(where, "scope names are 1-64 characters of [a-z0-9._-], starting with a letter or digit", line)
    s = v.mapping(value, where, line, {"policy", "policy_arns", "description"})
    if "policy" not in s and "policy_arns" not in s:
        raise v.fail(where, "give policy (an inline session policy), policy_arns (managed policies) or both", s.line)
    policy = None
    if "policy" in s:
        problem, policy = session_policy_text(s["policy"])
        if problem:
            raise v.fail(f"{where}.policy", problem, s.key_lines["policy"])
    arns: tuple[str, ...] = ()
    if "policy_arns" in s:
        arns = _policy_arns(v, s, where)
    description = s.get("description", "")
    if not isinstance(description, str):
        raise v.fail(f"{where}.description", "must be text", s.key_lines["description"])
    return Scope(name=name, policy=policy, policy_arns=arns, description=description)


def _policy_arns(v: _Validator, s: _Map, where: str) -> tuple[str, ...]:
    value = s["policy_arns"]
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not 1 <= len(values) <= MAX_POLICY_ARNS:
        raise v.fail(f"{where}.policy_arns", f"must be 1 to {MAX_POLICY_ARNS} managed policy ARNs",
                     s.key_lines["policy_arns"])
    for arn in values:
        if not isinstance(arn, str) or not POLICY_ARN_RE.match(arn):
            raise v.fail(f"{where}.policy_arns", f"{arn!r} is not a managed policy ARN "
                         "(arn:aws:iam::aws:policy/NAME or arn:aws:iam::<account id>:policy/NAME)",
                         s.key_lines["policy_arns"])
    if len(set(values)) != len(values):
        raise v.fail(f"{where}.policy_arns", "names a policy twice", s.key_lines["policy_arns"])
    return tuple(values)


def session_policy_text(value: Any) -> tuple[str | None, str | None]:
    """(problem, minified JSON): a session policy given as a mapping or as JSON text, checked."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            return f"is not valid JSON ({exc})", None
    if not isinstance(value, Mapping):
        return "must be a policy document (a mapping, or JSON text of one)", None
    problem = _document_problem(value)
    if problem:
        return problem, None
    text = json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False)
    if not _STS_CHARS.match(text):
        return "holds characters STS does not accept in a session policy (only tab, newline and U+0020-U+00FF)", None
    if len(text) > MAX_POLICY_CHARS:
        return (f"is {len(text)} characters minified; STS accepts at most {MAX_POLICY_CHARS} for a session "
                "policy (use policy_arns for larger ones)"), None
    return None, text


def _plain(value: Any) -> Any:
    """The loader's line-remembering mappings as plain dicts, for json.dumps."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _document_problem(document: Mapping[str, Any]) -> str | None:
    unknown = sorted(set(document) - {"Version", "Statement", "Id"})
    if unknown:
        return f"has unknown key(s) {', '.join(map(repr, unknown))} (a session policy has Version and Statement)"
    if document.get("Version") != "2012-10-17":
        return "must have Version \"2012-10-17\" (quoted: YAML would read the date as a date)"
    statements = document.get("Statement")
    if isinstance(statements, Mapping):
        statements = [statements]
    if not isinstance(statements, list) or not 1 <= len(statements) <= MAX_STATEMENTS:
        return f"must have a Statement list of 1 to {MAX_STATEMENTS} statements"
    for i, statement in enumerate(statements):
        problem = _statement_problem(statement)
        if problem:
            return f"Statement[{i}] {problem}"
    return None


def _statement_problem(statement: Any) -> str | None:
    if not isinstance(statement, Mapping):
        return "must be a mapping"
    if "Principal" in statement or "NotPrincipal" in statement:
        return "names a Principal; a session policy is an identity policy and has none"
    unknown = sorted(set(statement) - STATEMENT_KEYS)
    if unknown:
        return f"has unknown key(s) {', '.join(map(repr, unknown))}"
    if statement.get("Effect") not in ("Allow", "Deny"):
        return "must have Effect Allow or Deny"
    for keys, pattern, what in ((("Action", "NotAction"), ACTION_RE, "service:Action"),
                                (("Resource", "NotResource"), RESOURCE_RE, "an ARN or *")):
        given = [key for key in keys if key in statement]
        if len(given) != 1:
            return f"must have exactly one of {keys[0]} or {keys[1]}"
        values = statement[given[0]]
        values = [values] if isinstance(values, str) else values
        if not isinstance(values, list) or not values or not all(
                isinstance(x, str) and pattern.match(x) for x in values):
            return f"{given[0]} must be {what}, or a non-empty list of them"
    condition = statement.get("Condition")
    if condition is not None and (not isinstance(condition, Mapping) or not all(
            isinstance(block, Mapping) and block for block in condition.values())):
        return "Condition must map operators to mappings of condition keys"
    return None


def parliament_findings(scope: Scope) -> list[str]:
    """parliament's findings on a scope's inline policy (a development dependency: CI and tests)."""
    if scope.policy is None:
        return []
    from parliament import analyze_policy_string  # type: ignore[import-untyped]

    found = analyze_policy_string(scope.policy).findings
    return sorted(f"{f.issue}: {f.detail}" for f in found if f.issue not in IGNORED_PARLIAMENT_ISSUES)
