"""The deny documents that end live sessions: what they say, how big they get, when an entry is garbage.

Pure: plain data in, plain data out. ``chalicelib/aws/iam.py`` writes the
documents; ``chalicelib/jit/revocations.py`` decides what goes in them.

**Where the denies live.** Each trusting account has one customer managed
policy, ``/rolebroker-system/rolebroker-revocations``, that the generated
StackSet attaches to every broker-managed role as its *permissions
boundary* (``infra/trusting.py``). A boundary can only take permissions
away: a role's permissions are what its own policies allow *and* its
boundary allows, less any explicit deny in either. So the document is
``Allow *`` (the boundary does not narrow the roles) plus one ``Deny *``
per revocation entry. The ``rolebroker-revoker`` role that writes it may
version that one policy and nothing else. IAM cannot hold a writer to
deny-only content, nor to one policy name: ``iam:PutRolePolicy`` can be
conditioned only on the role's boundary (``iam:PermissionsBoundary``),
``iam:CreatePolicyVersion`` on nothing, and there is no ``iam:PolicyName``.
So a revoker that wrote a role's inline or attached policy could grant that
role anything; writing the boundary instead, the worst an Allow it adds can do is
nothing, while every Deny it adds applies.

**An entry** denies everything to sessions stamped with one
``SourceIdentity`` (exactly ``chalicelib.stamping.session_name_for_key`` of
the person's principal) whose ``aws:TokenIssueTime`` is before the cutoff,
in every broker-managed role of the account, or only in one role
(``aws:PrincipalArn``, for a JIT grant that ended). Sessions issued after
the cutoff are untouched, so a person whose revocation is lifted (or whose
grant is renewed) works again with new credentials.

**Garbage.** A session lives at most its role's ``MaxSessionDuration`` *as
it was when the session was issued* (and at most the broker's own cap), so
an entry is useless once the cutoff is the longer of the two past and every
session the broker recorded there has expired; its ``Sid`` carries
that moment (``Until<yyyymmddHHMMSS>...``), and every write drops expired
entries and entries another entry covers. What remains must fit the managed
policy quota (6,144 characters, whitespace not counted):
:func:`capacity` says how many entries fit, and :func:`render` refuses,
naming the remedy, rather than drop a live one.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from chalicelib.access.policy import SYSTEM_ROLE_PATH
from chalicelib.exceptions import RevocationsFull

SYSTEM_PATH = SYSTEM_ROLE_PATH  # outside /rolebroker/, which the broker may assume for people
BOUNDARY_POLICY_NAME = "rolebroker-revocations"
REVOKER_ROLE_NAME = "rolebroker-revoker"
MANAGED_POLICY_LIMIT = 6_144  # IAM: a managed policy's size, whitespace not counted
MAX_ROLE_SESSION_SECONDS = 43_200  # IAM's largest MaxSessionDuration
BASE_SID = "BoundaryDoesNotNarrow"
_SID_RE = re.compile(r"Until(\d{14})[0-9a-f]{12}\Z")
_WHITESPACE = re.compile(r"\s")


def boundary_arn(account_id: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account_id}:policy{SYSTEM_PATH}{BOUNDARY_POLICY_NAME}"


def revoker_arn(account_id: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account_id}:role{SYSTEM_PATH}{REVOKER_ROLE_NAME}"


@dataclass(frozen=True)
class DenyEntry:
    """Deny every session of ``source_identity`` issued before ``cutoff`` (in ``role_arn``, or in every role)."""

    source_identity: str
    cutoff: datetime
    expires: datetime
    role_arn: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.source_identity, self.role_arn or "*"

    def covers(self, other: DenyEntry) -> bool:
        """Whether this entry already denies everything ``other`` does, for at least as long."""
        return (self.source_identity == other.source_identity and self.role_arn in (None, other.role_arn)
                and self.cutoff >= other.cutoff and self.expires >= other.expires)


def entry_for(source_identity: str, cutoff: datetime, longest_session_seconds: int,
              role_arn: str | None = None, *, at_least: datetime | None = None) -> DenyEntry:
    """An entry whose cutoff is ``cutoff`` (whole seconds, rounded up) and that expires when no session it
    denies can still be alive: ``longest_session_seconds`` after the cutoff, and not before ``at_least``
    (the latest expiry of a session the broker recorded there)."""
    cutoff = _ceil_second(cutoff)
    expires = cutoff + timedelta(seconds=longest_session_seconds)
    if at_least is not None:
        expires = max(expires, _ceil_second(at_least))
    return DenyEntry(source_identity, cutoff, expires, role_arn)


def statement(entry: DenyEntry) -> dict[str, object]:
    condition: dict[str, dict[str, str]] = {
        "StringEquals": {"aws:SourceIdentity": entry.source_identity},
        "DateLessThan": {"aws:TokenIssueTime": _iso(entry.cutoff)},
    }
    if entry.role_arn:
        condition["ArnEquals"] = {"aws:PrincipalArn": entry.role_arn}
    return {"Sid": _sid(entry), "Effect": "Deny", "Action": "*", "Resource": "*", "Condition": condition}


def base_document() -> dict[str, object]:
    """The boundary with no revocation in it: it narrows nothing. The template deploys exactly this."""
    return {"Version": "2012-10-17",
            "Statement": [{"Sid": BASE_SID, "Effect": "Allow", "Action": "*", "Resource": "*"}]}


def live(entries: Iterable[DenyEntry], now: datetime) -> list[DenyEntry]:
    """Entries that can still deny a session at ``now``: one per person (and role), none that another
    covers, in a stable order."""
    merged: dict[tuple[str, str], DenyEntry] = {}
    for entry in entries:
        if entry.expires > now:
            merged[entry.key] = _merged(entry, merged.get(entry.key))
    found = [e for e in merged.values() if not any(o is not e and o.covers(e) for o in merged.values())]
    return sorted(found, key=lambda e: (e.source_identity, e.role_arn or ""))


def _merged(entry: DenyEntry, other: DenyEntry | None) -> DenyEntry:
    # Two revocations of the same person (and role): the later cutoff denies
    # everything the earlier one did, for as long as either needs.
    if other is None:
        return entry
    return DenyEntry(entry.source_identity, max(entry.cutoff, other.cutoff), max(entry.expires, other.expires),
                     entry.role_arn)


def render(entries: Sequence[DenyEntry], now: datetime, limit: int = MANAGED_POLICY_LIMIT) -> dict[str, object]:
    """The whole boundary document for one account: the base Allow and every live entry.

    Raises :class:`RevocationsFull` if the live entries do not fit: never
    drops one silently.
    """
    kept = live(entries, now)
    document = base_document()
    statements = document["Statement"]
    assert isinstance(statements, list)
    statements.extend(statement(e) for e in kept)
    size = policy_size(document)
    if size > limit:
        soonest = min(e.expires for e in kept)
        raise RevocationsFull(
            f"the revocations boundary would be {size:,} characters with {len(kept)} live entries, over IAM's "
            f"managed policy quota of {limit:,}; nothing was written. The oldest entry expires at "
            f"{_iso(soonest)}: revoke again after it. Entries live as long as the longest session they may "
            "deny (the roles' MaxSessionDuration, the broker's ROLEBROKER_MAX_SESSION_SECONDS and the sessions "
            "it recorded), so shortening sessions makes only later entries expire sooner (see docs/security.md, "
            "kill switch)")
    return document


def capacity(identity_length: int, *, per_role: bool = False, limit: int = MANAGED_POLICY_LIMIT,
             role_arn_length: int = 0) -> int:
    """How many concurrent entries of this shape fit in one account's boundary."""
    sample = DenyEntry("x" * identity_length, datetime(2000, 1, 1, tzinfo=UTC), datetime(2000, 1, 1, tzinfo=UTC),
                       ("a" * role_arn_length) if per_role else None)
    each = policy_size(statement(sample)) + 1  # the comma between statements
    return math.floor((limit - policy_size(base_document())) / each)


def policy_size(document: object) -> int:
    """The size IAM counts for a policy: its characters less whitespace (see ``infra/quotas.py``)."""
    return len(_WHITESPACE.sub("", json.dumps(document, separators=(",", ":"), ensure_ascii=False)))


def entries_in(document: dict[str, object]) -> list[DenyEntry]:
    """The entries a boundary document holds (what the revoker wrote), for checks and the canary."""
    found = []
    statements = document.get("Statement")
    for item in statements if isinstance(statements, list) else []:
        match = _SID_RE.match(str(item.get("Sid", ""))) if isinstance(item, dict) else None
        if match is None or not isinstance(item, dict):
            continue
        condition = item["Condition"]
        found.append(DenyEntry(
            source_identity=condition["StringEquals"]["aws:SourceIdentity"],
            cutoff=datetime.fromisoformat(condition["DateLessThan"]["aws:TokenIssueTime"]),
            expires=datetime.strptime(match.group(1), "%Y%m%d%H%M%S").replace(tzinfo=UTC),
            role_arn=condition.get("ArnEquals", {}).get("aws:PrincipalArn")))
    return found


def _sid(entry: DenyEntry) -> str:
    # Sids are [A-Za-z0-9] and unique within a policy: the expiry, then a
    # digest of what the entry is about (person, role), which live() keeps unique.
    digest = hashlib.sha256("\x00".join(entry.key).encode("utf-8")).hexdigest()[:12]
    return f"Until{entry.expires.astimezone(UTC):%Y%m%d%H%M%S}{digest}"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ceil_second(value: datetime) -> datetime:
    whole = value.replace(microsecond=0)
    return whole if whole == value else whole + timedelta(seconds=1)
