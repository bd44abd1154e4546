"""One structured JSON line per decision: allowed, denied or error.

The record says who asked, what for, from where, what we decided and why.
It never holds a token, a key, a signature or a session token: callers pass
named fields, and nothing here accepts a credential object.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chalicelib.identity.tokens import Identity

LOGGER_NAME = "rolebroker.audit"


@dataclass(frozen=True)
class CallContext:
    """Where a call came from; filled in by ``app.py`` from the request."""

    request_id: str
    source_ip: str | None = None
    user_agent: str | None = None
    channel: str = "api"  # api | slack


def _stdout_logger() -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


class AuditLog:
    def __init__(self, emit: Callable[[str], None] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._emit = emit or _stdout_logger().info
        self._clock = clock

    def record(
        self,
        *,
        action: str,
        outcome: str,
        context: CallContext,
        identity: Identity | None = None,
        reason: str = "",
        **fields: Any,
    ) -> None:
        entry: dict[str, Any] = {
            "audit": "rolebroker",
            "time": self._clock().isoformat(),
            "action": action,
            "outcome": outcome,
            "request_id": context.request_id,
            "channel": context.channel,
            "source_ip": context.source_ip,
            "user_agent": (context.user_agent or "")[:256] or None,
            "reason": reason,
        }
        if identity is not None:
            entry["who"] = identity.subject  # as the token gave it
            entry["principal"] = identity.principal.key
            entry["issuer"] = identity.issuer
            if identity.sub:
                entry["sub"] = identity.sub
            entry["groups"] = sorted(identity.groups)
            entry["amr"] = list(identity.amr)
        entry.update({k: v for k, v in fields.items() if v is not None})
        self._emit(json.dumps(entry, sort_keys=True, default=str))
