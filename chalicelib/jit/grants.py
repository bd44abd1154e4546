"""Plain data about grants in use: the grant a session is issued under, and
the record of each session issued under one (never its secrets)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ActiveGrant:
    """An approved, unexpired grant: its request id names it in AWS (session tag) and in evidence."""

    request_id: str
    role: str
    until: datetime
    ticket: str | None = None
    scope: str | None = None  # the scope every session under it gets (None: the whole role)
    break_glass: bool = False
    starts: datetime | None = None  # a scheduled grant counts only from here

    def live_at(self, now: datetime) -> bool:
        return (self.starts is None or self.starts <= now) and now < self.until


@dataclass(frozen=True)
class IssuedSession:
    """One STS session issued under a grant: what CloudTrail knows it by, and when it lived."""

    request_id: str
    role: str
    role_arn: str
    account_id: str
    assumed_role_arn: str
    access_key_id: str
    session_name: str
    issued_at: datetime
    expires_at: datetime
    kind: str  # credentials | console

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "role_arn": self.role_arn, "account_id": self.account_id,
                "assumed_role_arn": self.assumed_role_arn, "access_key_id": self.access_key_id,
                "source_identity": self.session_name, "issued_at": self.issued_at.isoformat(),
                "expires_at": self.expires_at.isoformat(), "kind": self.kind}
