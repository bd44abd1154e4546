"""What we stamp on every session, derived only from the verified identity.

STS allows ``[\\w+=,.@-]`` (ASCII word characters) and 2-64 characters for
both ``RoleSessionName`` and ``SourceIdentity``. When an identity needs
changing to fit (other characters, or too long), we append a short hash of
the original so that two different people can never end up with the same
session name.
"""

from __future__ import annotations

import hashlib
import re

from chalicelib.identity.tokens import Identity
from chalicelib.jit.grants import ActiveGrant

_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_+=,.@-]")
_TAG_NOT_ALLOWED = re.compile(r"[^\w .:/=+@-]", re.UNICODE)
MAX_NAME = 64
MAX_TAGS = 50
MAX_TAG_VALUE = 256
IDENTITY_TAG = "rolebroker:identity"
GROUPS_TAG = "rolebroker:groups"
ISSUER_TAG = "rolebroker:issuer"
GRANT_TAG = "rolebroker:grant"  # the JIT request id a session was issued under
TICKET_TAG = "rolebroker:ticket"  # the request's ticket, when it has one


def session_name_for(identity: Identity) -> str:
    """``RoleSessionName`` (and ``SourceIdentity``) for a verified identity."""
    raw = identity.subject
    clean = _NOT_ALLOWED.sub("-", raw)
    if clean == raw and 2 <= len(clean) <= MAX_NAME:
        return clean
    digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()[:10]
    return f"{clean[: MAX_NAME - len(digest) - 1]}-{digest}"


def _tag_value(value: str) -> str:
    return _TAG_NOT_ALLOWED.sub("_", value)[:MAX_TAG_VALUE]


def session_tags_for(identity: Identity) -> list[dict[str, str]]:
    """Session tags within STS limits (50 tags, key 128, value 256).

    Groups are joined into one value with ``:`` (commas are not allowed in tag
    values) and truncated at a group boundary; the full list is in the audit
    log.
    """
    tags = [{"Key": IDENTITY_TAG, "Value": _tag_value(identity.subject)}]
    if identity.issuer:
        tags.append({"Key": ISSUER_TAG, "Value": _tag_value(identity.issuer)})
    groups = ""
    for group in sorted(identity.groups):
        candidate = f"{groups}:{_tag_value(group)}" if groups else _tag_value(group)
        if len(candidate) > MAX_TAG_VALUE:
            break
        groups = candidate
    if groups:
        tags.append({"Key": GROUPS_TAG, "Value": groups})
    return tags[:MAX_TAGS]


def grant_tags(grant: ActiveGrant | None) -> list[dict[str, str]]:
    """Tags naming the grant (and its ticket) a session is issued under, so
    every CloudTrail event of that session can be tied back to the request."""
    if grant is None:
        return []
    tags = [{"Key": GRANT_TAG, "Value": _tag_value(grant.request_id)}]
    if grant.ticket:
        tags.append({"Key": TICKET_TAG, "Value": _tag_value(grant.ticket)})
    return tags
