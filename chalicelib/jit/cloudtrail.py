"""Ready-to-run CloudTrail Lake and Athena queries that list the AWS actions
taken under a grant's sessions, in every account. Pure: text out, no calls.

Two questions, each asked of both engines:

* by access key: every event signed with one of the grant's recorded
  session keys. Exact: a key belongs to one session, and each session was
  recorded when the broker issued it.
* by identity: every event of a session stamped with the person's
  ``SourceIdentity`` in the grant's window. Wider: it also finds sessions
  chained from the grant's sessions (STS carries ``SourceIdentity`` through
  role chaining), and the person's other sessions in that window.

Neither engine takes bound parameters for these queries (CloudTrail Lake
has none; an Athena query pasted into the console has none), so every value
is a literal. Each is checked against the only shape it can legitimately
have (an access key id, an STS session name, a time we format ourselves)
right before it is written, whatever the table said: a value that fails is
left out with a warning, never quoted in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from chalicelib.jit.grants import IssuedSession

# Events are stamped by AWS's clocks, the window by ours.
CLOCK_SKEW = timedelta(minutes=5)
ACCESS_KEY_ID_RE = re.compile(r"\A[A-Z0-9]{16,128}\Z")
SESSION_NAME_RE = re.compile(r"\A[A-Za-z0-9_+=,.@-]{2,64}\Z")
EVENT_DATA_STORE_RE = re.compile(r"\A[A-Za-z0-9-]{1,128}\Z")
EVENT_DATA_STORE_ARN_RE = re.compile(
    r"\Aarn:aws[a-z-]*:cloudtrail:[a-z0-9-]+:\d{12}:eventdatastore/([A-Za-z0-9-]{1,128})\Z")
ATHENA_TABLE_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?\Z")
EDS_PLACEHOLDER = "<event-data-store-id>"

_LAKE_COLUMNS = ("SELECT eventTime, recipientAccountId, awsRegion, eventSource, eventName, errorCode, "
                 "sourceIPAddress,\n"
                 "       userIdentity.arn, userIdentity.accessKeyId, userIdentity.sessionContext.sourceIdentity")
# AWS's documented Athena table for CloudTrail has no sessioncontext.sourceidentity.
_ATHENA_COLUMNS = ("SELECT eventtime, recipientaccountid, awsregion, eventsource, eventname, errorcode, "
                   "sourceipaddress,\n"
                   "       useridentity.arn, useridentity.accesskeyid")


def event_data_store_id(value: str) -> str:
    """The ID that ``FROM`` takes, from an event data store's ID or ARN."""
    value = value.strip()
    match = EVENT_DATA_STORE_ARN_RE.match(value)
    if match:
        return match.group(1)
    if EVENT_DATA_STORE_RE.match(value):
        return value
    raise ValueError(f"not a CloudTrail Lake event data store ID or ARN: {value[:80]!r}")


@dataclass(frozen=True)
class QueryTargets:
    """Where the operator's CloudTrail lives (``ROLEBROKER_CLOUDTRAIL_EVENT_DATA_STORE``,
    ``ROLEBROKER_ATHENA_CLOUDTRAIL_TABLE``)."""

    event_data_store: str | None = None
    athena_table: str = "cloudtrail_logs"

    def __post_init__(self) -> None:
        if self.event_data_store is not None:
            object.__setattr__(self, "event_data_store", event_data_store_id(self.event_data_store))
        if not ATHENA_TABLE_RE.match(self.athena_table):
            raise ValueError(f"not an Athena table name ([database.]table): {self.athena_table[:80]!r}")


def evidence_queries(sessions: Sequence[IssuedSession], *, session_name: str, window_start: datetime,
                     window_end: datetime, targets: QueryTargets) -> dict[str, Any]:
    """Queries for the grant's sessions (by key) and its window (by identity)."""
    warnings: list[str] = []
    keys = sorted({s.access_key_id for s in sessions if ACCESS_KEY_ID_RE.match(s.access_key_id)})
    if len(keys) < len({s.access_key_id for s in sessions}):
        warnings.append("a recorded session has an access key id that is not one; it is left out of the "
                        "queries (check the table for tampering)")
    name = session_name if SESSION_NAME_RE.match(session_name) else None
    if name is None:
        warnings.append("the requester's session name is not one STS accepts; the identity queries are left out")
    grant_window = _window(window_start, window_end)
    key_window = _window(min(s.issued_at for s in sessions), max(s.expires_at for s in sessions)) if sessions \
        else grant_window
    eds = targets.event_data_store or EDS_PLACEHOLDER
    key_list = ", ".join(_quoted(k) for k in keys)
    lake_keys = _lake(eds, key_window, f"userIdentity.accessKeyId IN ({key_list})") if keys else None
    lake_identity = _lake(eds, grant_window, f"userIdentity.sessionContext.sourceIdentity = {_quoted(name)}") \
        if name else None
    athena_keys = _athena(targets.athena_table, key_window, f"useridentity.accesskeyid IN ({key_list})") \
        if keys else None
    athena_identity = _athena(targets.athena_table, grant_window,
                              f"useridentity.type = 'AssumedRole'\n"
                              f"  AND split_part(useridentity.arn, '/', 3) = {_quoted(name)}") if name else None
    return {
        "window": {"start": grant_window[0].isoformat(), "end": grant_window[1].isoformat()},
        "access_key_ids": keys,
        "cloudtrail_lake": {"event_data_store": eds, "by_access_key": lake_keys, "by_source_identity": lake_identity},
        "athena": {"table": targets.athena_table, "by_access_key": athena_keys, "by_session_name": athena_identity},
        "notes": _notes(targets),
        "warnings": warnings,
    }


def _window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    start = (start - CLOCK_SKEW).replace(second=0, microsecond=0)
    end = end + CLOCK_SKEW
    rounded = end.replace(second=0, microsecond=0)
    return start, rounded if rounded == end else rounded + timedelta(minutes=1)


def _quoted(value: str | None) -> str:
    # Only values that passed one of the shapes above get here; quote
    # doubling is the second lock, not the first.
    assert value is not None and "'" not in value
    return "'" + value.replace("'", "''") + "'"


def _lake(eds: str, window: tuple[datetime, datetime], condition: str) -> str:
    start, end = (t.strftime("%Y-%m-%d %H:%M:%S") for t in window)
    return (f"{_LAKE_COLUMNS}\nFROM {eds}\nWHERE eventTime >= '{start}' AND eventTime <= '{end}'\n"
            f"  AND {condition}\nORDER BY eventTime")


def _athena(table: str, window: tuple[datetime, datetime], condition: str) -> str:
    start, end = (t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in window)
    return (f"{_ATHENA_COLUMNS}\nFROM {table}\nWHERE eventtime >= '{start}' AND eventtime <= '{end}'\n"
            f"  AND {condition}\nORDER BY eventtime")


def _notes(targets: QueryTargets) -> list[str]:
    notes = [
        "CloudTrail Lake: run in the account that owns the event data store; an organization event data "
        "store covers every account.",
        "Athena: the table is AWS's documented CloudTrail table; over an organization trail it covers every "
        "account. Add your table's partition filter (for example its timestamp or region/year/month/day "
        "partitions) to limit the data scanned.",
        "The identity queries also list the person's other sessions in the window and sessions chained from "
        "these; Athena's documented table has no sessioncontext.sourceidentity column, so its identity query "
        "matches the session name, which chained sessions may change.",
    ]
    if targets.event_data_store is None:
        notes.insert(0, "Set ROLEBROKER_CLOUDTRAIL_EVENT_DATA_STORE on the broker to fill in the event data "
                        f"store (now {EDS_PLACEHOLDER}).")
    return notes
