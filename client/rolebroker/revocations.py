"""The kill switch from the command line: ``revoke-sessions IDENTITY``, ``revocations`` and ``revocations --lift ID``.

Each is one broker call (``revocations`` follows its pages). A revocation is
recorded and in force even when some account was not written, so
``revoke-sessions`` says which accounts and what to fix, and exits
:data:`PARTLY_REVOKED` for scripts. ``--output json`` prints the broker's
document instead, as ASCII JSON; the exit status is the same.
"""

from __future__ import annotations

from rolebroker.errors import UsageError
from rolebroker.text import one_line, table, time_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from rolebroker.commands import Context

# The revocation is recorded and in force, but some account was not (yet) written.
PARTLY_REVOKED = 3


def accounts_table(doc: Mapping[str, Any]) -> str:
    rows = []
    accounts = doc.get("accounts")
    for account, outcome in sorted(accounts.items()) if isinstance(accounts, dict) else []:
        outcome = outcome if isinstance(outcome, dict) else {}
        detail = str(outcome.get("detail", ""))
        uncovered = outcome.get("uncovered")
        if isinstance(uncovered, list) and uncovered:
            detail += "; not reached: " + "; ".join(str(u) for u in uncovered)
        rows.append([one_line(str(account), 20), one_line(str(outcome.get("status", "?")), 12),
                     one_line(str(outcome.get("attempts", "?")), 4), one_line(detail, 400)])
    return table(["ACCOUNT", "STATUS", "TRIES", "DETAIL"], rows)


def cmd_revoke_sessions(ctx: Context) -> int:
    if not ctx.opts.reason or not ctx.opts.reason.strip():
        raise UsageError("revoke-sessions needs --reason TEXT: it is recorded and audited")
    doc = ctx.client().revoke_sessions(ctx.opts.identity or "", ctx.opts.reason)
    status = one_line(str(doc.get("status", "?")), 20)
    if ctx.json_output:
        ctx.out_json(doc)
        return 0 if status == "complete" else PARTLY_REVOKED
    ctx.out(f"revocation {one_line(str(doc['id']), 40)} for {one_line(str(doc.get('identity', '?')), 200)}: "
            f"{status}; sessions issued before {one_line(str(doc.get('cutoff', '?')), 40)} are denied, "
            "and the broker refuses them new credentials until it is lifted\n")
    ctx.out(accounts_table(doc))
    warnings = doc.get("warnings")
    for warning in warnings if isinstance(warnings, list) else []:
        ctx.warn(one_line(str(warning), 400))
    if status == "in_progress":
        ctx.warn("the broker is still writing the pending accounts in the background; `rolebroker revocations` "
                 "shows how far it got")
        return PARTLY_REVOKED
    if status != "complete":
        ctx.warn("some accounts were not fully revoked (see DETAIL); fix what it names and run the same "
                 "command again: writes are idempotent")
        return PARTLY_REVOKED
    return 0


def cmd_revocations(ctx: Context) -> int:
    if ctx.opts.lift:
        return _lift(ctx, ctx.opts.lift)
    items, more = ctx.client().revocations()
    if ctx.listed("revocations", items, more):
        return 0
    rows = [[one_line(str(item.get(key, "-")), 60) for key in ("id", "state", "status", "kind", "identity")]
            + [time_text(item.get("created_at")), one_line(str(item.get("reason", "")), 80)] for item in items]
    ctx.out(table(["ID", "STATE", "STATUS", "KIND", "IDENTITY", "CREATED", "REASON"], rows))
    return 0


def _lift(ctx: Context, revocation_id: str) -> int:
    doc = ctx.client().lift_revocation(revocation_id)
    if ctx.json_output:
        ctx.out_json(doc)
        return 0
    ctx.out(f"revocation {one_line(str(doc.get('id', revocation_id)), 40)} for "
            f"{one_line(str(doc.get('identity', '?')), 200)}: {one_line(str(doc.get('state', '?')), 20)}; "
            "sessions from before its cutoff stay denied\n")
    return 0
