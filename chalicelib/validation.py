"""Request body validation: strict, with messages that say what is wrong."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalicelib.access.policy import (
    MAX_GRANT_SECONDS,
    MAX_SESSION_SECONDS,
    MIN_SESSION_SECONDS,
    REGION_RE,
    ROLE_NAME_RE,
)
from chalicelib.access.workflow import TICKET_RE
from chalicelib.exceptions import BadRequest, NotFound

MAX_BODY_BYTES = 8 * 1024
MAX_REASON_CHARS = 500
_INVISIBLE = {"Cf", "Cs", "Co", "Cn"}
_LINE_BREAKS = {"Zl", "Zp"}  # U+2028, U+2029: Slack and browsers start a new line
REQUEST_REF_CHARS = frozenset("0123456789abcdef")
REQUEST_REF_LENGTH = 12
MAX_TOKEN_CHARS = 512
_HAS_ALNUM = re.compile(r"[A-Za-z0-9]")
# One request for several roles has one grant per role, all written in one
# transaction of at most 100 writes (the store checks that too).
MAX_ROLES_PER_REQUEST = 50
MAX_TIME_CHARS = 40
# The console's own service paths: s3, ec2, cloudwatch, dynamodbv2, systems-manager ...
CONSOLE_SERVICE_RE = re.compile(r"[a-z][a-z0-9-]{0,39}\Z")
MAX_DESTINATION_CHARS = 1024
MAX_REGION_CHARS = 32
# RFC 3986's unreserved, sub-delims, ':', '@', '/', '?', '#' and '%': a path,
# query and fragment, with anything else percent-encoded.
_URL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?#%")


@dataclass(frozen=True)
class Field:
    """One field a route accepts: what kind of value, and whether it must be there."""

    # role | roles | duration | grant_duration | text | ticket | scope | time | service | region | destination
    # | identity
    kind: str
    required: bool = True


def parse_json_object(raw: bytes | None) -> dict[str, Any]:
    if raw is None or not raw.strip():
        raise BadRequest("the request body must be a JSON object")
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"the request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("the request body is not valid UTF-8 JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def validate(raw: bytes | None, fields: Mapping[str, Field], *, empty_ok: bool = False) -> dict[str, Any]:
    """Parse ``raw`` and check it against ``fields``; unknown fields are errors."""
    body = {} if empty_ok and (raw is None or not raw.strip()) else parse_json_object(raw)
    return validate_fields(body, fields)


def validate_fields(body: Mapping[str, Any], fields: Mapping[str, Field]) -> dict[str, Any]:
    """Check already-parsed values against ``fields``; unknown fields are errors."""
    unknown = sorted(set(body) - set(fields))
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise BadRequest(f"unknown field(s) {shown}; allowed: {', '.join(fields)}")
    result: dict[str, Any] = {}
    for name, spec in fields.items():
        if name not in body or body[name] is None:
            if spec.required:
                raise BadRequest(f"missing required field {name!r}")
            continue
        result[name] = _CHECKS[spec.kind](name, body[name])
    return result


def role_name(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{name!r} must be a string")
    if not ROLE_NAME_RE.match(value):
        raise BadRequest(f"{name!r} must be 1-64 characters of letters, digits, '.', '_' or '-'")
    return value


def checked_request_id(value: str) -> str:
    """An access request id as the store makes them; anything else is unknown."""
    if len(value) != REQUEST_REF_LENGTH or not set(value) <= REQUEST_REF_CHARS:
        raise NotFound(f"no access request {value[:40]!r}")
    return value


def page_params(query: Mapping[str, str] | None, default_limit: int, max_limit: int) -> tuple[int, str | None]:
    """``?limit=`` and ``?next_token=`` of a list route; anything else is an error."""
    query = query or {}
    unknown = sorted(set(query) - {"limit", "next_token", "kind"})
    if unknown:
        raise BadRequest(f"unknown query parameter(s) {', '.join(repr(k[:40]) for k in unknown[:5])}; "
                         "allowed: limit, next_token, kind")
    limit = default_limit
    if "limit" in query:
        raw = query["limit"]
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= max_limit:
            raise BadRequest(f"limit must be a whole number from 1 to {max_limit}")
        limit = int(raw)
    token = query.get("next_token")
    if token is not None and not 0 < len(token) <= MAX_TOKEN_CHARS:
        raise BadRequest("next_token is not one this broker gave out; list again without it")
    return limit, token


def _integer(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name!r} must be a whole number of seconds")
    if not low <= value <= high:
        raise BadRequest(f"{name!r} must be between {low} and {high} seconds, got {value}")
    return value


def _duration(name: str, value: Any) -> int:
    return _integer(name, value, MIN_SESSION_SECONDS, MAX_SESSION_SECONDS)


def _grant_duration(name: str, value: Any) -> int:
    return _integer(name, value, MIN_SESSION_SECONDS, MAX_GRANT_SECONDS)


def _text(name: str, value: Any) -> str:
    """Free text (a reason): no control characters; invisible ones dropped.

    Bidi overrides and zero-width characters are removed rather than refused:
    they are how a reason is made to read differently in Slack than it is.
    """
    if not isinstance(value, str):
        raise BadRequest(f"{name!r} must be a string")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise BadRequest(f"{name!r} must not contain control characters")
    if any(unicodedata.category(ch) in _LINE_BREAKS for ch in value):
        raise BadRequest(f"{name!r} must be one line (no line or paragraph separators)")
    text = "".join(ch for ch in value if unicodedata.category(ch) not in _INVISIBLE).strip()
    if not _HAS_ALNUM.search(text):
        raise BadRequest(f"{name!r} must contain a letter or digit")
    if len(text) > MAX_REASON_CHARS:
        raise BadRequest(f"{name!r} must be at most {MAX_REASON_CHARS} characters")
    return text


def _roles(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_ROLES_PER_REQUEST:
        raise BadRequest(f"{name!r} must be a list of 1 to {MAX_ROLES_PER_REQUEST} role names")
    names = [role_name(name, item) for item in value]
    if len(set(names)) != len(names):
        raise BadRequest(f"{name!r} names a role twice")
    return names


def _ticket(name: str, value: Any) -> str:
    # The role's own pattern is checked later; this is what any ticket must be
    # to be stored, stamped as a session tag and shown in Slack.
    if not isinstance(value, str) or not TICKET_RE.match(value):
        raise BadRequest(f"{name!r} must be 1-64 printable ASCII characters without spaces (e.g. INC-1234)")
    return value


def _scope(name: str, value: Any) -> str:
    from chalicelib.access.scopes import SCOPE_NAME_RE  # scoped requests are rare; cold starts are not

    if not isinstance(value, str) or not SCOPE_NAME_RE.match(value):
        raise BadRequest(f"{name!r} must be a scope name: 1-64 characters of [a-z0-9._-]")
    return value


def _time(name: str, value: Any) -> datetime:
    """An ISO 8601 time with its UTC offset (``2026-03-01T09:00:00+01:00`` or ``...Z``)."""
    if not isinstance(value, str) or not value.isascii() or len(value) > MAX_TIME_CHARS:
        raise BadRequest(f"{name!r} must be an ISO 8601 time with an offset, e.g. 2026-03-01T09:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.upper())  # RFC 3339 allows a lower-case t and z
    except ValueError:
        raise BadRequest(f"{name!r} must be an ISO 8601 time with an offset, e.g. 2026-03-01T09:00:00Z") from None
    if parsed.utcoffset() is None:
        raise BadRequest(f"{name!r} needs a UTC offset (Z or +01:00): a bare time is ambiguous")
    return parsed


def request_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """``POST /v1/requests``: exactly one of ``role`` and ``roles``; the rest by ``REQUEST_FIELDS``."""
    checked = validate_fields(body, REQUEST_FIELDS)
    if ("role" in checked) == ("roles" in checked):
        raise BadRequest("give exactly one of 'role' (one role) or 'roles' (several, with one approval)")
    checked["roles"] = checked.pop("roles", None) or [checked.pop("role")]
    return checked


def console_service(name: str, value: Any) -> str:
    if not isinstance(value, str) or not CONSOLE_SERVICE_RE.match(value):
        raise BadRequest(f"{name!r} must be a console service name such as s3, ec2 or cloudwatch "
                         "(lower-case letters, digits and '-')")
    return value


def _region(name: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_REGION_CHARS or not REGION_RE.match(value):
        raise BadRequest(f"{name!r} must be an AWS region such as eu-west-1")
    return value


def _destination(name: str, value: Any) -> str:
    """A path on the AWS console (with its query and fragment), never a URL of its own.

    The link puts it after ``https://<console host>``: so it must start with
    one ``/`` (else it would extend the host, or name a user), and hold no
    ``//`` or ``\\`` (browsers read ``\\`` as ``/``), not even percent-encoded,
    so nothing downstream can turn it into a link to another site.
    """
    from urllib.parse import unquote

    usage = (f"{name!r} must be a path on the AWS console such as /s3/buckets?region=eu-west-1: "
             "it starts with one '/', has no '//' or '\\', and percent-encodes anything but URL characters")
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_DESTINATION_CHARS:
        raise BadRequest(f"{usage} (1-{MAX_DESTINATION_CHARS} characters)")
    decoded, previous = unquote(value), value
    while decoded != previous:  # %252F%252F is // to whatever decodes it twice
        decoded, previous = unquote(decoded), decoded
    if (not value.startswith("/") or not set(value) <= _URL_CHARS or "//" in decoded or "\\" in decoded
            or any(unicodedata.category(ch) == "Cc" for ch in decoded)):
        raise BadRequest(usage)
    return value


def _identity_field(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{name!r} must be a string")
    return _identity(value)


CREDENTIALS_FIELDS = {"role": Field("role"), "duration_seconds": Field("duration", False),
                      "scope": Field("scope", False)}
# duration_seconds left out: the role's max_grant_seconds (AccessRequests.create).
REQUEST_FIELDS = {"role": Field("role", False), "roles": Field("roles", False),
                  "duration_seconds": Field("grant_duration", False), "reason": Field("text"),
                  "ticket": Field("ticket", False), "scope": Field("scope", False), "start_at": Field("time", False)}
DECISION_FIELDS = {"reason": Field("text", False)}
APPROVE_FIELDS = {"roles": Field("roles", False)}
CONSOLE_FIELDS = {"role": Field("role"), "service": Field("service", False), "region": Field("region", False),
                  "destination": Field("destination", False)}
BREAK_GLASS_FIELDS = {"role": Field("role"), "reason": Field("text"), "ticket": Field("ticket"),
                      "duration_seconds": Field("duration", False)}
EXTEND_FIELDS = {"duration_seconds": Field("grant_duration"), "reason": Field("text")}
REVOCATION_FIELDS = {"identity": Field("identity"), "reason": Field("text")}

_CHECKS = {"role": role_name, "roles": _roles, "duration": _duration, "grant_duration": _grant_duration,
           "text": _text, "ticket": _ticket, "scope": _scope, "time": _time,
           "service": console_service, "region": _region, "destination": _destination, "identity": _identity_field}


MAX_IDENTITY_CHARS = 256
MAX_QUERY_GROUPS = 100


def access_query(params: Mapping[str, Sequence[str]] | None) -> dict[str, Any]:
    """``GET /v1/access`` parameters: any of ``role``, ``identity`` and ``groups``."""
    params = params or {}
    unknown = sorted(set(params) - {"role", "identity", "groups"})
    if unknown:
        raise BadRequest(f"unknown parameter(s) {', '.join(repr(k[:40]) for k in unknown[:5])}; "
                         "allowed: role, identity, groups")
    single = {name: _once(name, values) for name, values in params.items()}
    query: dict[str, Any] = {}
    if "role" in single:
        query["role"] = role_name("role", single["role"])
    if "identity" in single:
        query["identity"] = _identity(single["identity"])
    if "groups" in single:
        query["groups"] = _groups(single["groups"])
    return query


def _once(name: str, values: Sequence[str]) -> str:
    if len(values) != 1:
        raise BadRequest(f"{name!r} may be given once")
    return values[0]


def _identity(value: str) -> str:
    if not 1 <= len(value) <= MAX_IDENTITY_CHARS or not value.strip():
        raise BadRequest(f"'identity' must be 1-{MAX_IDENTITY_CHARS} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise BadRequest("'identity' must not contain control characters")
    return value


def _groups(value: str) -> list[str]:
    groups = value.split(",") if value else []
    if len(groups) > MAX_QUERY_GROUPS:
        raise BadRequest(f"'groups' may name at most {MAX_QUERY_GROUPS} groups")
    if any(not g or len(g) > MAX_IDENTITY_CHARS or any(unicodedata.category(ch) == "Cc" for ch in g)
           for g in groups):
        raise BadRequest("'groups' must be a comma-separated list of group names")
    return groups
