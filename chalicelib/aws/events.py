"""The one adapter to Amazon EventBridge: audit entries published as OCSF events.

Publishing is a copy for SIEMs; the audit line on stdout stays the record.
So it never fails or holds up a request: errors become one warning (with a
count, never the content), and after a failure the publisher stays quiet for
a cool-down, so an EventBridge outage costs one short timeout per container
and cool-down, not one per request. Entries go in ``PutEvents`` batches of
at most 10 entries and 256 KB, EventBridge's limits.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.ocsf import to_ocsf

LOG = logging.getLogger(__name__)

SOURCE = "rolebroker"
MAX_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024
COOL_DOWN_SECONDS = 60.0


class EventBridgePublisher:
    def __init__(self, client: Any, bus: str, *, monotonic: Callable[[], float] = time.monotonic,
                 cool_down: float = COOL_DOWN_SECONDS) -> None:
        self._client = client
        self._bus = bus
        self._monotonic = monotonic
        self._cool_down = cool_down
        self._quiet_until = 0.0

    def publish(self, entries: Sequence[Mapping[str, Any]]) -> None:
        if not entries:
            return
        if self._monotonic() < self._quiet_until:
            LOG.warning("%d audit events not published to EventBridge (cooling down after a failure); "
                        "they are in the audit log", len(entries))
            return
        batches = _batches([self._entry(e) for e in entries])
        for number, batch in enumerate(batches):
            try:
                answer = self._client.put_events(Entries=batch)
            except (ClientError, BotoCoreError) as exc:
                left = sum(len(b) for b in batches[number:])
                LOG.warning("%d audit events not published to EventBridge (%s); they are in the audit log",
                            left, _code(exc))
                self._quiet_until = self._monotonic() + self._cool_down
                return
            failed = answer.get("FailedEntryCount", 0)
            if failed:
                codes = sorted({e.get("ErrorCode", "?") for e in answer.get("Entries", []) if e.get("ErrorCode")})
                LOG.warning("%d audit events refused by EventBridge (%s); they are in the audit log",
                            failed, ", ".join(codes))

    def _entry(self, audit: Mapping[str, Any]) -> dict[str, Any]:
        event = to_ocsf(audit)
        return {"Source": SOURCE, "DetailType": f"OCSF {event['class_name']}", "Detail": json.dumps(event),
                "EventBusName": self._bus, "Time": datetime.fromtimestamp(event["time"] / 1000, UTC)}


def _batches(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    batches: list[list[dict[str, Any]]] = []
    size = 0
    for entry in entries:
        entry_size = len(entry["Detail"]) + len(entry["DetailType"]) + len(entry["Source"]) + 14
        if entry_size > MAX_BATCH_BYTES:
            LOG.warning("an audit event of %d bytes is too large for EventBridge; it is in the audit log",
                        entry_size)
            continue
        if not batches or len(batches[-1]) == MAX_ENTRIES or size + entry_size > MAX_BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(entry)
        size += entry_size
    return batches


def _code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "error"))
    return type(exc).__name__
