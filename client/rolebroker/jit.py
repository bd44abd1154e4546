"""Just-in-time access from the command line: request, list, show, decide, break-glass, review, extend,
and a grant's evidence.

Each command is one broker call (``requests`` follows its pages). Every
string from the broker passes through ``text`` before it reaches the
terminal; ``--output json`` prints the broker's document instead, as ASCII
JSON, for scripts.
"""

from __future__ import annotations

from rolebroker._fast import DURATION_HELP
from rolebroker.errors import UsageError
from rolebroker.text import human_duration, local_time, one_line, parse_timestamp, safe_lines, table, time_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from rolebroker.commands import Context


def _field(doc: Mapping[str, Any], key: str, limit: int = 80) -> str:
    value = doc.get(key)
    return "-" if value is None else one_line(str(value), limit)


def cmd_request(ctx: Context) -> int:
    if not ctx.opts.reason or not ctx.opts.reason.strip():
        raise UsageError("request needs --reason TEXT: approvers see it")
    roles = _asked_roles(ctx)
    doc = ctx.client().create_request(roles if len(roles) > 1 else roles[0], ctx.opts.duration, ctx.opts.reason,
                                      ticket=ctx.opts.ticket, scope=ctx.opts.scope, start_at=ctx.opts.start)
    if ctx.json_output:
        ctx.out_json(doc)
        return 0
    shown = [one_line(str(doc.get("id", "?")), 80), _roles_text(doc, roles), one_line(str(doc.get("status", "?")), 40)]
    ctx.out("request {} for {}: {}\n".format(*shown) + _progress_text(doc))
    seconds = doc.get("duration_seconds")
    if ctx.opts.duration is None and isinstance(seconds, int) and not isinstance(seconds, bool):
        ctx.warn(f"without --duration the broker asked for {human_duration(seconds)}, the longest grant the "
                 "role allows")
    return 0


def _asked_roles(ctx: Context) -> list[str]:
    """ROLE ... and --role NAME ... together, in order, each once."""
    roles = list(dict.fromkeys([*(ctx.opts.role_args or []), *(ctx.opts.roles or [])]))
    if not roles:
        raise UsageError("request needs a role: rolebroker request ROLE [ROLE ...] --reason TEXT (several roles "
                         "get one decision; `rolebroker roles` lists them)")
    return roles


def _roles_text(doc: Mapping[str, Any], asked: list[str] | None = None) -> str:
    roles = doc.get("roles")
    if isinstance(roles, list) and roles:
        names = [str(r) for r in roles]
    elif "role" in doc:
        names = [str(doc["role"])]
    else:
        names = asked or ["?"]
    return one_line(", ".join(names), 200)


def _progress_text(doc: Mapping[str, Any]) -> str:
    """How far a pending request has come, on a line of its own (nothing when it is not pending)."""
    progress = doc.get("progress")
    if not isinstance(progress, dict):
        return ""
    try:
        return "  waiting for {} of {} approvals in stage {} of {} ({})\n".format(
            int(progress["approvals"]), int(progress["required"]), int(progress["stage"]),
            int(progress["stages"]), one_line(str(progress["stage_name"]), 40))
    except (KeyError, TypeError, ValueError):
        return ""


def cmd_break_glass(ctx: Context) -> int:
    if not ctx.opts.reason or not ctx.opts.reason.strip():
        raise UsageError("break-glass needs --reason TEXT: approvers and security see it")
    if not ctx.opts.ticket:
        raise UsageError("break-glass needs --ticket ID: the incident or change it is for")
    role = ctx.role()
    doc = ctx.client().break_glass(role, ctx.opts.reason, ctx.opts.ticket, ctx.opts.duration)
    ctx.out(f"break-glass {one_line(str(doc.get('id', '?')), 40)} for {one_line(role, 80)}: "
            f"{one_line(str(doc.get('status', '?')), 40)} until {time_text(doc.get('grant_until'))}\n")
    ctx.warn("security and the role's approvers have been told; an approver will review this access. "
             f"Credentials: rolebroker credential-process --role {one_line(role, 80)}")
    return 0


def cmd_review(ctx: Context) -> int:
    request_id = ctx.opts.request_id or ""
    doc = ctx.client().decide(request_id, "review", ctx.opts.reason)
    value = doc.get("review")
    review = value if isinstance(value, dict) else {}
    ctx.out(f"break-glass {one_line(request_id, 40)} ({one_line(str(doc.get('role', '?')), 80)} for "
            f"{one_line(str(doc.get('requester', '?')), 80)}): review {one_line(str(review.get('status', '?')), 20)}\n")
    return 0


def cmd_extend(ctx: Context) -> int:
    if not ctx.opts.reason or not ctx.opts.reason.strip():
        raise UsageError("extend needs --reason TEXT")
    if not ctx.opts.duration:
        raise UsageError(f"extend needs --duration: {DURATION_HELP}")
    request_id = ctx.opts.request_id or ""
    doc, done = ctx.client().extend(request_id, ctx.opts.duration, ctx.opts.reason)
    if done:
        ctx.out(f"request {one_line(request_id, 40)} ({_roles_text(doc)}): extended until "
                f"{time_text(doc.get('grant_until'))}\n")
    else:
        ctx.out(f"extension request {one_line(str(doc.get('id', '?')), 40)} for {_roles_text(doc)}: "
                f"{one_line(str(doc.get('status', '?')), 40)} (beyond what the role extends without an approver: "
                "approvers were asked)\n" + _progress_text(doc))
    return 0


def cmd_requests(ctx: Context) -> int:
    items, more = ctx.client().requests(kind=ctx.opts.kind)
    if ctx.json_output:
        ctx.out_json({"requests": items, "complete": not more})
        return 0
    if more:
        ctx.warn(f"showing the first {len(items)} requests; the broker has more")
    if not items:
        ctx.warn("no access requests")
        return 0
    rows = []
    for item in items:
        created = item.get("created_at")
        try:
            created_text = local_time(parse_timestamp(created)) if isinstance(created, str) else "-"
        except ValueError:
            created_text = one_line(str(created), 40)
        rows.append([one_line(str(item.get("id", "-")), 60), _status_text(item), _roles_text(item),
                     one_line(str(item.get("requester", "-")), 60), human_duration(item.get("duration_seconds")),
                     created_text, one_line(str(item.get("reason", "")), 80)])
    ctx.out(table(["ID", "STATUS", "ROLE", "REQUESTER", "DURATION", "CREATED", "REASON"], rows))
    return 0


def _status_text(item: Mapping[str, Any]) -> str:
    """The status, with what kind of request it is and how far an approval has come."""
    status = one_line(str(item.get("status", "-")), 40)
    kind = item.get("kind")
    if kind == "break_glass":
        value = item.get("review")
        review = value if isinstance(value, dict) else {}
        return f"{status} (break-glass, review {one_line(str(review.get('status', '?')), 20)})"
    if kind == "extension":
        status += " (extension)"
    progress = item.get("progress")
    if isinstance(progress, dict):
        try:
            status += f" {int(progress['approvals'])}/{int(progress['required'])}"
            if int(progress["stages"]) > 1:
                status += f" stage {int(progress['stage'])}/{int(progress['stages'])}"
        except (KeyError, TypeError, ValueError):
            pass
    return status


def cmd_show(ctx: Context) -> int:
    doc = ctx.client().request(ctx.opts.request_id or "")
    if ctx.json_output:
        ctx.out_json(doc)
        return 0
    ctx.out(request_text(doc) + "\n")
    history = doc.get("history")
    if isinstance(history, list) and history:
        ctx.out("history:\n" + history_text(history) + "\n")
    return 0


def request_text(doc: Mapping[str, Any]) -> str:
    """A request as a few labelled lines: who asked for what and why, who decided, when, the note."""
    lines = [f"request {_field(doc, 'id')}: {_field(doc, 'status')}"]
    rows = [
        ("role", _roles_text(doc)),
        ("requester", _field(doc, "requester")),
        ("reason", _field(doc, "reason", 500)),
        ("duration", human_duration(doc.get("duration_seconds"))),
        ("asked", time_text(doc.get("created_at"))),
    ]
    rows += _approval_rows(doc)
    if doc.get("decided_by") is not None:
        rows.append(("decided by", f"{_field(doc, 'decided_by')} at {time_text(doc.get('decided_at'))}"))
    elif doc.get("status") == "pending":
        rows.append(("waits until", time_text(doc.get("pending_until"))))
    if doc.get("note") is not None:
        rows.append(("note", _field(doc, "note", 500)))
    if doc.get("grant_until") is not None:
        rows.append(("grant until", time_text(doc.get("grant_until"))))
    width = max(len(label) for label, _ in rows)
    lines += [f"  {label.ljust(width)}  {value}" for label, value in rows]
    return "\n".join(lines)


def _approval_rows(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What only some requests have: their kind, ticket, scope, start, approvals so far and review."""
    rows = []
    kind = doc.get("kind")
    if kind in ("break_glass", "extension"):
        of = f" of {_field(doc, 'parent')}" if kind == "extension" and doc.get("parent") else ""
        rows.append(("kind", ("break-glass" if kind == "break_glass" else "extension") + of))
    for label, key in (("ticket", "ticket"), ("scope", "scope")):
        if doc.get(key) is not None:
            rows.append((label, _field(doc, key)))
    if doc.get("start_at") is not None:
        rows.append(("starts", time_text(doc.get("start_at"))))
    votes = [v for v in doc.get("approvals") or [] if isinstance(v, dict)]
    if votes:
        rows.append(("approved by", "; ".join(f"{_field(v, 'who')} ({_field(v, 'stage', 40)}) at "
                                              f"{time_text(v.get('at'))}" for v in votes)))
    progress = _progress_text(doc).strip()
    if progress:
        rows.append(("progress", progress))
    review = doc.get("review")
    if isinstance(review, dict):
        by = f" by {_field(review, 'by')} at {time_text(review.get('at'))}" if review.get("by") else ""
        note = f": {_field(review, 'note', 500)}" if review.get("note") else ""
        rows.append(("review", f"{_field(review, 'status', 20)}{by}{note}"))
    return rows


def history_text(history: Sequence[Any]) -> str:
    rows = []
    for event in history:
        if not isinstance(event, dict):
            continue
        change = f"{_field(event, 'from')} -> {_field(event, 'to')}"
        note = f"\"{one_line(str(event['note']), 300)}\"" if event.get("note") else ""
        rows.append([time_text(event.get("at")), _field(event, "who"), change, note])
    return "  " + table(["AT", "WHO", "CHANGE", "NOTE"], rows).rstrip("\n").replace("\n", "\n  ")


def _decide(ctx: Context, verdict: str, with_reason: bool = False) -> int:
    request_id = ctx.opts.request_id or ""
    doc = ctx.client().decide(request_id, verdict, ctx.opts.reason if with_reason else None,
                              roles=ctx.opts.grant if verdict == "approve" else None)
    who = one_line(str(doc.get("requester", "?")), 80)
    ctx.out(f"request {request_id} ({_roles_text(doc)} for {who}): {one_line(str(doc.get('status', verdict)), 40)}\n"
            + _progress_text(doc))
    return 0


def cmd_approve(ctx: Context) -> int:
    return _decide(ctx, "approve")


def cmd_deny(ctx: Context) -> int:
    return _decide(ctx, "deny", with_reason=True)


def cmd_cancel(ctx: Context) -> int:
    return _decide(ctx, "cancel")


def cmd_revoke(ctx: Context) -> int:
    return _decide(ctx, "revoke", with_reason=True)


def cmd_evidence(ctx: Context) -> int:
    doc = ctx.client().evidence(ctx.opts.request_id or "")
    if ctx.json_output:
        ctx.out_json(doc)
        return 0
    request = doc.get("request")
    ctx.out(request_text(request if isinstance(request, dict) else {}) + "\n")
    history = doc.get("history")
    if isinstance(history, list) and history:
        ctx.out("history:\n" + history_text(history) + "\n")
    ctx.out(sessions_text(doc) + "\n")
    queries = doc.get("queries")
    ctx.out(queries_text(queries) if isinstance(queries, dict) else "no queries: the request was never approved\n")
    return 0


def sessions_text(doc: Mapping[str, Any]) -> str:
    sessions = [s for s in doc.get("sessions") or [] if isinstance(s, dict)]
    if not sessions:
        return "sessions: none issued under this grant"
    rows = [[time_text(s.get("issued_at")), time_text(s.get("expires_at")), _field(s, "kind"),
             _field(s, "access_key_id", 40), _field(s, "assumed_role_arn", 200)] for s in sessions]
    limit = doc.get("sessions_limit")
    header = f"sessions: {len(sessions)}" + (f" (a grant issues at most {limit})" if isinstance(limit, int) else "")
    body = table(["ISSUED", "EXPIRES", "KIND", "ACCESS KEY", "ASSUMED ROLE"], rows).rstrip("\n")
    return header + "\n  " + body.replace("\n", "\n  ")


_QUERIES = (
    ("cloudtrail_lake", "by_access_key", "CloudTrail Lake, by the sessions' access keys (exact)"),
    ("cloudtrail_lake", "by_source_identity", "CloudTrail Lake, by the requester's SourceIdentity in the window"),
    ("athena", "by_access_key", "Athena, by the sessions' access keys (exact)"),
    ("athena", "by_session_name", "Athena, by the requester's session name in the window"),
)


def queries_text(queries: Mapping[str, Any]) -> str:
    """The ready-to-run queries, each under a SQL comment saying what it finds."""
    window = queries.get("window")
    window = window if isinstance(window, dict) else {}
    parts = [f"queries for {time_text(window.get('start'))} to {time_text(window.get('end'))}:"]
    for store, name, title in _QUERIES:
        section = queries.get(store)
        sql = section.get(name) if isinstance(section, dict) else None
        if isinstance(sql, str) and sql.strip():
            parts.append(f"-- {title}\n{safe_lines(sql.strip())};")
    for label in ("notes", "warnings"):
        items = queries.get(label)
        for item in items if isinstance(items, list) else []:
            parts.append(f"-- {label[:-1]}: {one_line(str(item), 500)}")
    return "\n\n".join(parts) + "\n"
