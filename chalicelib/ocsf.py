"""Audit lines as OCSF 1.1.0 events, so a SIEM takes them without a mapping.

Pure: one audit entry (the dict ``AuditLog`` writes as a line) in, one OCSF
event out. The class follows what happened, not where:

=======================  ===============================  ===========================
audit ``action``         OCSF class (uid)                 activity
=======================  ===============================  ===========================
authenticate, slack      Authentication (3002)            Logon (1), always a failure
credentials, console     Authentication (3002)            Logon (1): a role session
approve, break-glass,    User Access Management (3005)    Assign Privileges (1)
extend
revoke                   User Access Management (3005)    Revoke Privileges (2)
request                  Entity Management (3004)         Create (1)
deny, cancel, review,    Entity Management (3004)         Update (3)
expire
access-query, evidence   Entity Management (3004)         Read (2)
anything else            Entity Management (3004)         Other (99)
=======================  ===============================  ===========================

The original line travels as ``raw_data``, so nothing the audit line says is
lost; it never holds a secret, so neither does the event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

OCSF_VERSION = "1.1.0"
IAM_CATEGORY = (3, "Identity & Access Management")
AUTHENTICATION = (3002, "Authentication")
ENTITY_MANAGEMENT = (3004, "Entity Management")
USER_ACCESS = (3005, "User Access Management")

_CLASSES: dict[str, tuple[tuple[int, str], tuple[int, str]]] = {
    "authenticate": (AUTHENTICATION, (1, "Logon")),
    "slack": (AUTHENTICATION, (1, "Logon")),
    "credentials": (AUTHENTICATION, (1, "Logon")),
    "console": (AUTHENTICATION, (1, "Logon")),
    "approve": (USER_ACCESS, (1, "Assign Privileges")),
    "break-glass": (USER_ACCESS, (1, "Assign Privileges")),
    "extend": (USER_ACCESS, (1, "Assign Privileges")),
    "revoke": (USER_ACCESS, (2, "Revoke Privileges")),
    "request": (ENTITY_MANAGEMENT, (1, "Create")),
    "deny": (ENTITY_MANAGEMENT, (3, "Update")),
    "cancel": (ENTITY_MANAGEMENT, (3, "Update")),
    "review": (ENTITY_MANAGEMENT, (3, "Update")),
    "expire": (ENTITY_MANAGEMENT, (3, "Update")),
    "access-query": (ENTITY_MANAGEMENT, (2, "Read")),
    "evidence": (ENTITY_MANAGEMENT, (2, "Read")),
}
_OTHER = (ENTITY_MANAGEMENT, (99, "Other"))
_DONE = {"allowed", "created", "approved", "cancelled", "revoked", "counted", "extended", "reviewed", "expired"}
SUCCESS, FAILURE, UNKNOWN = (1, "Success"), (2, "Failure"), (0, "Unknown")
INFORMATIONAL, LOW, MEDIUM, HIGH = (1, "Informational"), (2, "Low"), (3, "Medium"), (4, "High")


def class_of(entry: Mapping[str, Any]) -> tuple[int, str]:
    return _CLASSES.get(str(entry.get("action")), _OTHER)[0]


def status_of(entry: Mapping[str, Any]) -> tuple[int, str]:
    outcome = entry.get("outcome")
    if outcome in _DONE:
        return SUCCESS
    if outcome == "denied":
        # A deny decision is recorded as "denied" when it succeeds (then it
        # names the requester) and when it is refused (then it does not).
        return SUCCESS if entry.get("action") == "deny" and "requester" in entry else FAILURE
    if outcome == "error":
        return FAILURE
    return UNKNOWN


def to_ocsf(entry: Mapping[str, Any]) -> dict[str, Any]:
    (class_uid, class_name), (activity_id, activity_name) = _CLASSES.get(str(entry.get("action")), _OTHER)
    status = status_of(entry)
    severity = _severity(entry, status)
    event: dict[str, Any] = {
        "category_uid": IAM_CATEGORY[0], "category_name": IAM_CATEGORY[1],
        "class_uid": class_uid, "class_name": class_name,
        "activity_id": activity_id, "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id, "type_name": f"{class_name}: {activity_name}",
        "severity_id": severity[0], "severity": severity[1],
        "status_id": status[0], "status": status[1],
        "time": _epoch_ms(entry.get("time")),
        "message": f"{entry.get('action')} {entry.get('outcome')}" + (f": {entry['reason']}" if entry.get("reason")
                                                                       else ""),
        "metadata": {"version": OCSF_VERSION, "product": {"name": "rolebroker", "vendor_name": "rolebroker"},
                     "log_name": "rolebroker.audit", "event_code": str(entry.get("action")),
                     "correlation_uid": entry.get("request_id")},
        "raw_data": json.dumps(entry, sort_keys=True, default=str),
    }
    if entry.get("reason"):
        event["status_detail"] = entry["reason"]
    if entry.get("who"):
        event["actor"] = {"user": _user(entry["who"], entry.get("groups")),
                          **({"idp": {"name": entry["issuer"]}} if entry.get("issuer") else {})}
    if entry.get("source_ip"):
        event["src_endpoint"] = {"ip": entry["source_ip"]}
    if entry.get("user_agent"):
        event["http_request"] = {"user_agent": entry["user_agent"]}
    event.update(_class_fields(class_uid, entry))
    return event


def _class_fields(class_uid: int, entry: Mapping[str, Any]) -> dict[str, Any]:
    if class_uid == AUTHENTICATION[0]:
        fields: dict[str, Any] = {"user": _user(entry["who"], entry.get("groups")) if entry.get("who")
                                  else {"name": "unknown", "type_id": 0, "type": "Unknown"},
                                  "service": {"name": entry.get("role") or "rolebroker",
                                              **({"uid": entry["account"]} if entry.get("account") else {})}}
        if "amr" in entry:
            fields["is_mfa"] = "mfa" in (entry.get("amr") or [])
        if entry.get("session_name"):
            fields["session"] = {"uid": entry["session_name"], "issuer": "rolebroker"}
        return fields
    if class_uid == USER_ACCESS[0]:
        return {"user": _user(entry.get("requester") or "unknown", None),
                "privileges": [entry["role"]] if entry.get("role") else [],
                "resources": [{"name": entry.get("role"), "uid": entry.get("account"), "type": "AWS IAM role"}]}
    subject = entry.get("request_ref") or entry.get("about") or entry.get("role") or entry.get("action")
    kind = "Access Request" if entry.get("request_ref") or entry.get("action") in {"request", "deny", "cancel",
                                                                                  "review", "expire"} \
        else "Access Policy"
    fields = {"entity": {"name": str(subject), "type": kind}}
    if entry.get("reason"):
        fields["comment"] = entry["reason"]
    return fields


def _user(name: str, groups: Any) -> dict[str, Any]:
    user: dict[str, Any] = {"name": name, "uid": name, "type_id": 1, "type": "User"}
    if groups:
        user["groups"] = [{"name": g} for g in groups]
    return user


def _severity(entry: Mapping[str, Any], status: tuple[int, str]) -> tuple[int, str]:
    if entry.get("action") == "break-glass" and status == SUCCESS:
        return HIGH  # access without an approver: a SIEM should page on it
    if status != FAILURE:
        return INFORMATIONAL
    # A refused token or Slack signature may be an attack; a policy denial is routine.
    return MEDIUM if entry.get("action") in {"authenticate", "slack"} else LOW


def _epoch_ms(value: Any) -> int:
    try:
        return int(datetime.fromisoformat(str(value)).timestamp() * 1000)
    except ValueError:
        return 0
