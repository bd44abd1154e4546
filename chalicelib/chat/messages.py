"""Every text rolebroker shows in Slack is made here, and nowhere else.

Slack reads message text as mrkdwn: ``<!channel>`` pings a whole channel,
``<https://…|label>`` hides a link behind any words, and a line break starts
a line that looks like the app's own ("*Approved* by …"). Most of what an
approval message shows comes from outside: reasons and notes people typed,
identities from the IdP, role and account names and descriptions from the
policy. So every such value goes through ``inline`` (one line, no control or
invisible characters, length-capped, then ``&``, ``<`` and ``>`` escaped as
Slack asks), and the builders below take plain data and return finished
messages; ``chatops`` only chooses which one to send.

mrkdwn has no escape for its emphasis markers, so outside code spans
``inline`` turns ``*``, ``_`` and ``~`` that could open or close emphasis
(all but those between two letters or digits, which Slack never formats:
``next_token``, ``bob_smith@``) and every backtick into look-alikes Slack
does not format (∗ ˍ ∼ ˋ): a reason reading ``*Approved* by ceo`` stays
plain text. Inside a code span (ids, role names to type, paging tokens)
nothing is formatted, so only the backtick, which would end the span, is
replaced (``inline(..., code=True)``) and the rest can be copied as it is.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

NAME_CHARS = 120  # identities, role and account names, ids, times
TEXT_CHARS = 500  # reasons, notes, descriptions, error messages (the API's own limit for reasons)
LIST_LINES = 20  # a longer list is cut, with a pointer to the client
_DROPPED = {"Cf", "Cs", "Co", "Cn"}  # bidi overrides, zero-width and unassigned characters
_BREAKS = {"Cc", "Zl", "Zp"}  # control characters (newlines, tabs), U+2028, U+2029
_URL_BREAKERS = str.maketrans({"<": "%3C", ">": "%3E", "|": "%7C", " ": "%20"})
_LOOK_ALIKES = {"*": "\u2217", "_": "\u02cd", "~": "\u223c", "`": "\u02cb"}
# An emphasis marker not between two letters or digits, or any backtick.
_MARKER = re.compile(r"`|(?<![^\W_])[*_~]|[*_~](?![^\W_])")

HELP = (
    "*rolebroker* — AWS access from Slack\n"
    "• `/aws roles` — roles you can use or request\n"
    "• `/aws console ROLE [SERVICE]` — a console sign-in link, only for you (e.g. `/aws console ROLE s3`)\n"
    "• `/aws request ROLE[,ROLE…] DURATION [ticket=ID] [scope=NAME] [start=ISO-TIME] REASON` — ask for "
    "time-bound access (e.g. `2h`, `90m`, `2h30m`); several roles get one decision\n"
    "• `/aws requests [break-glass] [more TOKEN]` — your requests and those waiting for you "
    "(`break-glass`: those waiting for a review)\n"
    "• `/aws approve ID [ROLE …]` / `/aws deny ID [REASON]` — decide a request (naming roles approves only "
    "those); a request may need several approvers, stage by stage\n"
    "• `/aws cancel ID` — withdraw your own pending request\n"
    "• `/aws break-glass ROLE TICKET REASON` — emergency access now, without an approver: announced to "
    "security at once, and reviewed afterwards\n"
    "• `/aws review ID [NOTE]` — review someone's break-glass (approvers of its role)\n"
    "• `/aws extend ID DURATION REASON` — more time on your grant (within the role's limit)\n"
    "Credentials never appear in Slack: use `rolebroker credential-process` or `aws --profile`."
)


def inline(value: object, limit: int = NAME_CHARS, *, code: bool = False) -> str:
    """``value`` as one line of plain mrkdwn text, at most ``limit`` characters before escaping;
    ``code``: for inside a code span (see the module docstring)."""
    text = "" if value is None else str(value)
    kept = []
    for ch in text:
        category = unicodedata.category(ch)
        if category in _BREAKS:
            kept.append(" ")
        elif category not in _DROPPED:
            kept.append(ch)
    text = " ".join("".join(kept).split())
    if len(text) > limit:
        # Cut before escaping, so an entity is never cut in half.
        text = text[: limit - 1].rstrip() + "…"
    text = text.replace("`", _LOOK_ALIKES["`"]) if code else _MARKER.sub(lambda m: _LOOK_ALIKES[m[0]], text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def ephemeral(text: str, blocks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"response_type": "ephemeral", "text": text}
    if blocks:
        message["blocks"] = blocks
    return message


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


# --------------------------------------------------------------------------
# Replies to the person who typed a command (ephemeral)


def help_reply() -> dict[str, Any]:
    return ephemeral(HELP)


def working_on(command: str) -> dict[str, Any]:
    return ephemeral(f":hourglass_flowing_sand: working on `/aws {inline(command, code=True)}` ...")


# How a reply that refuses or fails begins (``python -m devstack slack`` exits 1 on one).
REFUSAL_MARKS = (":warning:", ":no_entry:")


def warning(message: str) -> dict[str, Any]:
    return ephemeral(f"{REFUSAL_MARKS[0]} {inline(message, TEXT_CHARS)}")


def is_refusal(message: Mapping[str, Any]) -> bool:
    text = message.get("text")
    return isinstance(text, str) and text.startswith(REFUSAL_MARKS)


def roles_reply(who: str, roles: Sequence[Mapping[str, Any]], labels: Mapping[str, str]) -> dict[str, Any]:
    if not roles:
        return ephemeral(f"No roles for {inline(who)}. If you expected some, sign in once with "
                         "`rolebroker login` so the broker knows your groups.")
    lines = [f"• `{inline(r['name'], code=True)}` — {inline(r['account'])} {inline(r['account_id'])} "
             f"({inline(r['region'])}): {inline(_access_label(r['access'], labels))}" for r in roles[:LIST_LINES]]
    if len(roles) > LIST_LINES:
        lines.append(f"… and {len(roles) - LIST_LINES} more: `rolebroker roles` lists them all.")
    return ephemeral(f"Roles for {inline(who)}:\n" + "\n".join(lines))


def _access_label(access: str, labels: Mapping[str, str]) -> str:
    if access.startswith("granted_until:"):
        return f"granted until {access.split(':', 1)[1]}"
    return labels.get(access, access)


def console_reply(link: Mapping[str, Any]) -> dict[str, Any]:
    url = str(link["url"]).translate(_URL_BREAKERS)
    return ephemeral(f"<{url}|Open the AWS console as {inline(link['role'])}> "
                     f"(link valid until {inline(link['expires_at'])}; only you can see this)")


def request_filed(request: Mapping[str, Any]) -> dict[str, Any]:
    if request.get("kind") == "extension":
        return ephemeral(f"Extension request `{inline(request['id'], code=True)}` for *{_roles_text(request)}* "
                         "is pending; approvers have been asked.")
    return ephemeral(f"Request `{inline(request['id'], code=True)}` for *{_roles_text(request)}* is pending; "
                     "approvers have been asked.")


def break_glass_reply(request: Mapping[str, Any]) -> dict[str, Any]:
    return ephemeral(f":rotating_light: Break-glass `{inline(request['id'], code=True)}`: you have "
                     f"*{inline(request['role'])}* until {inline(request.get('grant_until'))}. Security has been "
                     "told; an approver will review it. Get credentials with `rolebroker credential-process` "
                     "or `aws --profile`.")


def reviewed_reply(request: Mapping[str, Any]) -> dict[str, Any]:
    return ephemeral(f"Reviewed break-glass `{inline(request['id'], code=True)}` ({inline(request['requester'])}, "
                     f"{inline(request['role'])}).")


def extended_reply(request: Mapping[str, Any], done: bool) -> dict[str, Any]:
    if done:
        return ephemeral(f"Extended `{inline(request['id'], code=True)}`: *{_roles_text(request)}* until "
                         f"{inline(request.get('grant_until'))}.")
    return ephemeral(f"Extension request `{inline(request['id'], code=True)}` is pending: that is beyond what the role "
                     "extends without an approver, so approvers have been asked.")


def requests_reply(requests: Sequence[Mapping[str, Any]], next_token: str | None) -> dict[str, Any]:
    if not requests:
        return ephemeral("No access requests for you or waiting for you.")
    lines = [f"• `{inline(r['id'], code=True)}` {_kind_label(r)}{inline(r['requester'])} → *{_roles_text(r)}* "
             f"({int(r['duration_seconds']) // 60} min): {inline(r['status'])}{_progress_text(r)}" for r in requests]
    if next_token:
        lines.append(f"More: `/aws requests more {inline(next_token, 400, code=True)}`")
    return ephemeral("\n".join(lines))


def approved_reply(request: Mapping[str, Any]) -> dict[str, Any]:
    if request.get("status") == "pending":
        return ephemeral(f"Counted your approval of `{inline(request['id'], code=True)}`;{_progress_text(request)}")
    return ephemeral(f"Approved `{inline(request['id'], code=True)}`: {inline(request['requester'])} has "
                     f"*{_roles_text(request)}* until {inline(request.get('grant_until') or '?')}.")


def denied_reply(request: Mapping[str, Any]) -> dict[str, Any]:
    return ephemeral(f"Denied `{inline(request['id'], code=True)}` ({inline(request['requester'])}, "
                     f"{inline(request['role'])}).")


def cancelled_reply(request: Mapping[str, Any]) -> dict[str, Any]:
    return ephemeral(f"Cancelled `{inline(request['id'], code=True)}` ({inline(request['role'])}).")


def not_served() -> dict[str, Any]:
    return ephemeral(f"{REFUSAL_MARKS[1]} rolebroker does not serve this Slack workspace or account. "
                     "Ask in your company's own workspace.")


# --------------------------------------------------------------------------
# The approvers' message and the requester's notice


def approval_request(request: Mapping[str, Any], *, description: str = "", mfa_note: bool,
                     audience: str = "approvers") -> tuple[str, list[dict[str, Any]]]:
    """A message about a request (fallback text, blocks): Approve / Deny buttons while it is pending,
    for approvers only; notified channels see the same facts and who decides."""
    if request.get("kind") == "break_glass":
        return break_glass_alert(request, description=description, audience=audience)
    text = f"{_title(request)} {inline(request['id'])}: {inline(request['requester'])} asks for {_roles_text(request)}"
    if request["status"] != "pending":
        text = f"{_title(request)} {inline(request['id'])}: {decided_line(request)}"
    return text, _request_blocks(request, description=description, mfa_note=mfa_note, audience=audience)


def decision_update(request: Mapping[str, Any], *, description: str = "",
                    audience: str = "approvers") -> tuple[str, list[dict[str, Any]]]:
    """A message after a decision: the same facts, the outcome, no buttons."""
    return approval_request(request, description=description, mfa_note=False, audience=audience)


def requester_notice(request: Mapping[str, Any]) -> str:
    if request.get("kind") == "break_glass":
        return (f"Your break-glass `{inline(request['id'], code=True)}` for *{inline(request['role'])}*: "
                f"{_review_line(request)}")
    return f"Your request `{inline(request['id'], code=True)}` for *{_roles_text(request)}*: {decided_line(request)}"


def break_glass_alert(request: Mapping[str, Any], *, description: str = "",
                      audience: str = "approvers") -> tuple[str, list[dict[str, Any]]]:
    """The loud message about a break-glass: who took what, until when, why, and its review.
    The security channel's copy mentions the channel; the approvers' has a Review button."""
    request_id = inline(request["id"])
    text = (f"BREAK-GLASS {request_id}: {inline(request['requester'])} took {inline(request['role'])} "
            "without an approver")
    head = ":rotating_light: *BREAK-GLASS*" + (" <!here>" if audience == "security" else "")
    lines = [
        f"{head} `{inline(request['id'], code=True)}`",
        f"*{inline(request['requester'])}* took *{inline(request['role'])}* without an approver, until "
        f"{inline(request.get('grant_until'))}.",
        f"> {inline(request['reason'], TEXT_CHARS)}",
        f"Ticket: `{inline(request.get('ticket'), code=True)}`",
    ]
    if description:
        lines.append(f"_{inline(description, TEXT_CHARS)}_")
    blocks: list[dict[str, Any]] = [_section("\n".join(lines))]
    if request.get("status") not in ("approved", "expired"):
        blocks.append(_section(decided_line(request)))
    review = request.get("review") or {}
    blocks.append(_section(_review_line(request)))
    if review.get("status") == "pending" and audience == "approvers":
        blocks.append({"type": "actions", "block_id": f"review:{request['id']}", "elements": [
            {"type": "button", "action_id": "review", "style": "primary", "value": request["id"],
             "text": {"type": "plain_text", "text": "Mark reviewed"}}]})
    return text, blocks


def _review_line(request: Mapping[str, Any]) -> str:
    review = request.get("review") or {}
    if review.get("status") == "done":
        line = f"*Reviewed* by {inline(review.get('by'))} at {inline(review.get('at'))}"
        return line + (f" ({inline(review['note'], TEXT_CHARS)})" if review.get("note") else "")
    return ":mag: *Review pending*: an approver of the role must review this access."


def _title(request: Mapping[str, Any]) -> str:
    return "Extension request" if request.get("kind") == "extension" else "Access request"


def _kind_label(request: Mapping[str, Any]) -> str:
    return {"break_glass": ":rotating_light: break-glass ", "extension": "extension "}.get(
        str(request.get("kind")), "")


def _roles_text(request: Mapping[str, Any]) -> str:
    """The request's role, or its roles (a few named, the rest counted)."""
    roles = [str(r) for r in request.get("roles") or [request["role"]]]
    shown = ", ".join(inline(r) for r in roles[:5])
    return shown + (f" (+{len(roles) - 5} more)" if len(roles) > 5 else "")


def _progress_text(request: Mapping[str, Any]) -> str:
    progress = request.get("progress")
    if not progress:
        return ""
    return (f" {int(progress['approvals'])} of {int(progress['required'])} approvals in stage "
            f"{int(progress['stage'])} of {int(progress['stages'])} ({inline(progress['stage_name'])})")


def _facts(request: Mapping[str, Any]) -> str:
    facts = []
    if request.get("ticket"):
        facts.append(f"Ticket: `{inline(request['ticket'], code=True)}`")
    if request.get("scope"):
        facts.append(f"Scope: `{inline(request['scope'], code=True)}`")
    if request.get("start_at"):
        facts.append(f"Starts: {inline(request['start_at'])}")
    return " · ".join(facts)


def _asks(request: Mapping[str, Any]) -> str:
    minutes = int(request["duration_seconds"]) // 60
    who = f"*{inline(request['requester'])}*"
    if request.get("kind") == "extension":
        return (f"{who} asks to extend request `{inline(request.get('parent'), code=True)}` "
                f"(*{_roles_text(request)}*) by {minutes} min.")
    roles = request.get("roles") or [request["role"]]
    if len(roles) > 1:
        return f"{who} asks for {len(roles)} roles, one decision for all: *{_roles_text(request)}*, for {minutes} min."
    return f"{who} asks for *{inline(request['role'])}* for {minutes} min."


def _request_blocks(request: Mapping[str, Any], *, description: str, mfa_note: bool,
                    audience: str = "approvers") -> list[dict[str, Any]]:
    request_id = inline(request["id"], code=True)  # shown only in code spans
    lines = [f"*{_title(request)}* `{request_id}`", _asks(request), f"> {inline(request['reason'], TEXT_CHARS)}"]
    if _facts(request):
        lines.append(_facts(request))
    if description:
        lines.append(f"_{inline(description, TEXT_CHARS)}_")
    approvals = request.get("approvals") or []
    if approvals:
        lines.append("Approved so far by " + ", ".join(
            f"{inline(a.get('who'))} ({inline(a.get('stage'))})" for a in approvals[:10]))
    if request["status"] == "pending" and request.get("progress"):
        lines.append(f":hourglass_flowing_sand: Waiting for{_progress_text(request)}.")
    blocks: list[dict[str, Any]] = [_section("\n".join(lines))]
    if request["status"] != "pending":
        blocks.append(_section(decided_line(request)))
    elif audience != "approvers":
        blocks.append(_section("_You are notified of this request; its approvers decide._"))
    elif mfa_note:
        blocks.append(_section(":lock: This role requires MFA, which Slack cannot prove: approve with "
                               f"`rolebroker approve {request_id}` or the API."))
    else:
        blocks.append({"type": "actions", "block_id": f"decide:{request['id']}", "elements": [
            {"type": "button", "action_id": "approve", "style": "primary", "value": request["id"],
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": "deny", "style": "danger", "value": request["id"],
             "text": {"type": "plain_text", "text": "Deny"}},
        ]})
    return blocks


def decided_line(request: Mapping[str, Any]) -> str:
    status = inline(str(request["status"]).capitalize())
    line = f"*{status}* by {inline(request.get('decided_by') or 'nobody')} at {inline(request.get('decided_at'))}"
    if request["status"] == "approved" and request.get("grant_from") and request.get("start_at"):
        line += f"; access from {inline(request['grant_from'])}"
    if request["status"] == "approved" and request.get("grant_until"):
        line += f"; access until {inline(request['grant_until'])}"
    if request.get("narrowed_from"):
        line += f"; narrowed to {_roles_text(request)}"
    if request.get("extended_seconds"):
        line += f" (extended by {int(request['extended_seconds']) // 60} min)"
    if request.get("note"):
        line += f" ({inline(request['note'], TEXT_CHARS)})"
    return line
