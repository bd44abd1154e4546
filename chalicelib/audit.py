"""One structured JSON line per decision: allowed, denied or error.

The record says who asked, what for, from where, what we decided and why.
It never holds a token, a key, a signature or a session token: callers pass
named fields, and nothing here accepts a credential object.

A sink (EventBridge, when ``ROLEBROKER_EVENT_BUS`` is set) may also receive
each entry. Entries wait in a small buffer that ``flush`` empties, once per
request or task, so one request's lines go out in one batch; a sink never
fails a request.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from chalicelib.identity.tokens import Identity

LOGGER_NAME = "rolebroker.audit"
LOG = logging.getLogger(__name__)
SINK_BATCH = 10


class AuditSink(Protocol):
    def publish(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Send entries somewhere else too; must not raise."""
        ...


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
        self._sink: AuditSink | None = None
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def publish_to(self, sink: AuditSink) -> None:
        self._sink = sink

    def flush(self) -> None:
        """Hand the buffered entries to the sink, if there is one."""
        if self._sink is None:
            return
        with self._lock:
            entries, self._pending = self._pending, []
        if not entries:
            return
        try:
            self._sink.publish(entries)
        except Exception as exc:  # a copy for SIEMs must never cost a request
            LOG.warning("%d audit events not published (%s); they are in the audit log",
                        len(entries), type(exc).__name__)

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
        if self._sink is not None:
            with self._lock:
                self._pending.append(entry)
                full = len(self._pending) >= SINK_BATCH
            if full:
                self.flush()
