"""What we stamp on every session, derived only from the verified identity.

``RoleSessionName`` and ``SourceIdentity`` are one pure function of the
caller's principal key (``principal.py``), ``session_name_for_key``, so that
anyone holding a principal can recompute the exact value AWS recorded (in
CloudTrail, or in an IAM condition on ``aws:SourceIdentity``):

* if the key is 2-64 characters of STS's alphabet ``[A-Za-z0-9_+=,.@-]`` and
  does not end like a hashed name (``-`` and 16 lower-case hex digits), it
  is used as it is (``alice@example.com``);
* otherwise every other character becomes ``-``, the result is cut to 47
  characters, and ``-`` plus the first 16 hex digits of the SHA-256 of the
  key (UTF-8) are appended
  (``ci|repo:acme/infra:ref:refs/heads/main`` becomes
  ``ci-repo-acme-infra-ref-refs-heads-main-<16 hex>``).

So a name kept as it is never looks hashed, and two hashed names are equal
only if their keys' digests share 64 bits: no principal can take another's
name, neither by choosing a value shaped like a hashed name nor by trying
values until 40 bits of digest match (the former 10 hex digits fell to about
10^12 tries, minutes on one GPU).

The session tag ``rolebroker:identity`` follows the same rule over the tag
alphabet (Unicode letters and digits, space, ``_.:/=+@-``, 256 characters),
so it names exactly one principal too: IAM conditions may match it alone.

Emails are already in lower case in the key, so ``Erin@Example.com`` and
``erin@example.com`` are stamped alike.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from chalicelib.identity.tokens import Identity

if TYPE_CHECKING:
    from chalicelib.jit.grants import ActiveGrant

_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_+=,.@-]")
# Session tag values may hold Unicode letters and digits (\p{L}\p{N} in STS's
# pattern), so Unicode \w is meant here, unlike in session names.
_TAG_NOT_ALLOWED = re.compile(r"[^\w .:/=+@-]", re.UNICODE)
MAX_NAME = 64
MAX_TAGS = 50
MAX_TAG_VALUE = 256
IDENTITY_TAG = "rolebroker:identity"
GROUPS_TAG = "rolebroker:groups"
ISSUER_TAG = "rolebroker:issuer"
GRANT_TAG = "rolebroker:grant"  # the JIT request id a session was issued under
TICKET_TAG = "rolebroker:ticket"  # the request's ticket, when it has one
BREAK_GLASS_TAG = "rolebroker:breakglass"  # "true" on every session under a break-glass grant


DIGEST_HEX = 16
_HASHED = re.compile(rf"-[0-9a-f]{{{DIGEST_HEX}}}\Z")


def _injective(key: str, not_allowed: re.Pattern[str], replacement: str, shortest: int, longest: int) -> str:
    """``key`` if it is already clean and cannot be mistaken for a hashed value, else a hashed value."""
    clean = not_allowed.sub(replacement, key)
    if clean == key and shortest <= len(clean) <= longest and not _HASHED.search(clean):
        return clean
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:DIGEST_HEX]
    return f"{clean[: longest - DIGEST_HEX - 1]}-{digest}"


def session_name_for_key(principal_key: str) -> str:
    """``RoleSessionName`` and ``SourceIdentity`` for a principal key (see the module docstring)."""
    return _injective(principal_key, _NOT_ALLOWED, "-", 2, MAX_NAME)


def identity_tag_for_key(principal_key: str) -> str:
    """The ``rolebroker:identity`` session tag for a principal key: one value per principal."""
    return _injective(principal_key, _TAG_NOT_ALLOWED, "_", 1, MAX_TAG_VALUE)


def session_name_for(identity: Identity) -> str:
    """``RoleSessionName`` (and ``SourceIdentity``) for a verified identity."""
    return session_name_for_key(identity.principal.key)


def _tag_value(value: str) -> str:
    return _TAG_NOT_ALLOWED.sub("_", value)[:MAX_TAG_VALUE]


def session_tags_for(identity: Identity) -> list[dict[str, str]]:
    """Session tags within STS limits (50 tags, key 128, value 256).

    Groups are joined into one value with ``:`` (commas are not allowed in tag
    values) and truncated at a group boundary; the full list is in the audit
    log.
    """
    tags = [{"Key": IDENTITY_TAG, "Value": identity_tag_for_key(identity.principal.key)}]
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
    """Tags naming the grant (its ticket, and whether it is a break-glass) a session is issued
    under, so every CloudTrail event of that session can be tied back to the request, and an
    IAM condition or an alarm can single out break-glass sessions."""
    if grant is None:
        return []
    tags = [{"Key": GRANT_TAG, "Value": _tag_value(grant.request_id)}]
    if grant.ticket:
        tags.append({"Key": TICKET_TAG, "Value": _tag_value(grant.ticket)})
    if grant.break_glass:
        tags.append({"Key": BREAK_GLASS_TAG, "Value": "true"})
    return tags
