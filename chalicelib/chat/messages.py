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
    "• `/aws request ROLE DURATION REASON` — ask for time-bound access (e.g. `2h`, `30m`)\n"
    "• `/aws requests` — your requests and those waiting for you\n"
    "• `/aws approve ID` / `/aws deny ID [REASON]` — decide a request\n"
    "• `/aws cancel ID` — withdraw your own pending request\n"
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
    return ephemeral(f"Request `{inline(request['id'], code=True)}` for *{inline(request['role'])}* is pending; "
                     "approvers have been asked.")


def requests_reply(requests: Sequence[Mapping[str, Any]], next_token: str | None) -> dict[str, Any]:
    if not requests:
        return ephemeral("No access requests for you or waiting for you.")
    lines = [f"• `{inline(r['id'], code=True)}` {inline(r['requester'])} → *{inline(r['role'])}* "
             f"({int(r['duration_seconds']) // 60} min): {inline(r['status'])}" for r in requests]
    if next_token:
        lines.append(f"More: `/aws requests more {inline(next_token, 400, code=True)}`")
    return ephemeral("\n".join(lines))


def approved_reply(request: Mapping[str, Any]) -> dict[str, Any]:
    return ephemeral(f"Approved `{inline(request['id'], code=True)}`: {inline(request['requester'])} has "
                     f"*{inline(request['role'])}* until {inline(request.get('grant_until') or '?')}.")


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


def approval_request(request: Mapping[str, Any], *, description: str = "",
                     mfa_note: bool) -> tuple[str, list[dict[str, Any]]]:
    """The approvers' message (fallback text, blocks), with Approve / Deny buttons while pending."""
    request_id = inline(request["id"])
    text = f"Access request {request_id}: {inline(request['requester'])} asks for {inline(request['role'])}"
    return text, _request_blocks(request, description=description, mfa_note=mfa_note)


def decision_update(request: Mapping[str, Any], *, description: str = "") -> tuple[str, list[dict[str, Any]]]:
    """The approvers' message after a decision: the same facts, the outcome, no buttons."""
    text = f"Access request {inline(request['id'])}: {decided_line(request)}"
    return text, _request_blocks(request, description=description, mfa_note=False)


def requester_notice(request: Mapping[str, Any]) -> str:
    return f"Your request `{inline(request['id'], code=True)}` for *{inline(request['role'])}*: {decided_line(request)}"


def _request_blocks(request: Mapping[str, Any], *, description: str, mfa_note: bool) -> list[dict[str, Any]]:
    request_id = inline(request["id"])
    minutes = int(request["duration_seconds"]) // 60
    lines = [
        f"*Access request* `{request_id}`",
        f"*{inline(request['requester'])}* asks for *{inline(request['role'])}* for {minutes} min.",
        f"> {inline(request['reason'], TEXT_CHARS)}",
    ]
    if description:
        lines.append(f"_{inline(description, TEXT_CHARS)}_")
    blocks: list[dict[str, Any]] = [_section("\n".join(lines))]
    if request["status"] != "pending":
        blocks.append(_section(decided_line(request)))
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
    if request["status"] == "approved" and request.get("grant_until"):
        line += f"; access until {inline(request['grant_until'])}"
    if request.get("note"):
        line += f" ({inline(request['note'], TEXT_CHARS)})"
    return line
