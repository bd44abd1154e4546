"""Slack text: one cleaner, used by every message builder, and no Slack text
built anywhere else."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chalicelib.chat import messages
from chalicelib.chat.messages import inline

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = "<!channel> & <https://evil.example|click>\n*Approved* by mallory\u2028\u2029\u202e\u200b\x00\x1b[31m"


@pytest.mark.parametrize(("raw", "shown"), [
    ("<!channel>", "&lt;!channel&gt;"),
    ("a & b", "a &amp; b"),
    ("&lt;", "&amp;lt;"),
    ("<https://evil.example|docs>", "&lt;https://evil.example|docs&gt;"),
    ("line one\n*Approved* by x", "line one \u2217Approved\u2217 by x"),
    ("tab\there\r\nand\x0bthere", "tab here and there"),
    ("a\u2028b\u2029c\x85d", "a b c d"),
    ("evil\u202etxt.exe\u200b", "eviltxt.exe"),
    ("\x00\x07\x1b[31mred", "[31mred"),
    ("  spaced   out  ", "spaced out"),
    (None, ""),
    (42, "42"),
])
def test_inline_makes_one_plain_escaped_line(raw: object, shown: str) -> None:
    assert inline(raw) == shown


@pytest.mark.parametrize(("raw", "shown", "in_code"), [
    ("*Approved* by ceo", "\u2217Approved\u2217 by ceo", "*Approved* by ceo"),
    ("_urgent_ ~denied~", "\u02cdurgent\u02cd \u223cdenied\u223c", "_urgent_ ~denied~"),
    ("`code` here", "\u02cbcode\u02cb here", "\u02cbcode\u02cb here"),
    ("bob_smith@example.com next_token", "bob_smith@example.com next_token", "bob_smith@example.com next_token"),
    ("a*b*c x_*y*_z", "a*b*c x\u02cd\u2217y\u2217\u02cdz", "a*b*c x_*y*_z"),
    ("__init__ ~x~", "\u02cd\u02cdinit\u02cd\u02cd \u223cx\u223c", "__init__ ~x~"),
])
def test_inline_neutralises_mrkdwn_markers_outside_code_spans(raw: str, shown: str, in_code: str) -> None:
    # Second review (*): a reason could render a bold fake "*Approved* by ceo".
    assert inline(raw) == shown
    assert inline(raw, code=True) == in_code


def test_paging_tokens_and_role_names_stay_copyable() -> None:
    token = "eyJwIjoibyIsImkiOiIwMTIzNDU2Nzg5YWIifQ_-x"
    assert f"`/aws requests more {token}`" in messages.requests_reply([], None)["text"] + \
        messages.requests_reply([{**REQUEST, "id": "0123456789ab"}], token)["text"]
    roles = messages.roles_reply("bob", [{**ROLE, "name": "prod_admin", "access": "allowed"}], {})["text"]
    assert "`prod_admin`" in roles


def test_inline_caps_before_escaping() -> None:
    assert inline("x" * 500, 10) == "x" * 9 + "…"
    capped = inline("<" * 50, 10)
    assert capped == "&lt;" * 9 + "…"
    assert inline("a" * 10, 10) == "a" * 10


REQUEST = {"id": HOSTILE, "role": HOSTILE, "requester": HOSTILE, "duration_seconds": 3600, "reason": HOSTILE * 20,
           "status": "approved", "decided_by": HOSTILE, "decided_at": HOSTILE, "note": HOSTILE * 20,
           "grant_until": HOSTILE, "created_at": HOSTILE, "pending_until": HOSTILE}
FULL = {**REQUEST, "status": "pending", "kind": "access", "roles": [HOSTILE] * 12, "ticket": HOSTILE, "scope": HOSTILE,
        "start_at": HOSTILE, "grant_from": HOSTILE, "parent": HOSTILE, "extended_seconds": 600,
        "narrowed_from": [HOSTILE], "approvals": [{"who": HOSTILE, "stage": HOSTILE, "at": HOSTILE}] * 12,
        "progress": {"stage": 1, "stages": 2, "stage_name": HOSTILE, "approvals": 1, "required": 2}}
GLASS = {**REQUEST, "kind": "break_glass", "ticket": HOSTILE,
         "review": {"status": "pending", "by": None, "at": None, "note": None}}
ROLE = {"name": HOSTILE, "account": HOSTILE, "account_id": HOSTILE, "region": HOSTILE,
        "access": "granted_until:" + HOSTILE}
BUILDERS: dict[str, Callable[[], Any]] = {
    "working_on": lambda: messages.working_on(HOSTILE),
    "warning": lambda: messages.warning(HOSTILE * 50),
    "roles_reply": lambda: messages.roles_reply(HOSTILE, [ROLE] * 3, {}),
    "no_roles": lambda: messages.roles_reply(HOSTILE, [], {}),
    "console_reply": lambda: messages.console_reply({"url": "https://signin.example/x?a=1|<b>", "role": HOSTILE,
                                                     "expires_at": HOSTILE}),
    "request_filed": lambda: messages.request_filed(REQUEST),
    "requests_reply": lambda: messages.requests_reply([REQUEST, {**REQUEST, "status": HOSTILE}], HOSTILE),
    "approved_reply": lambda: messages.approved_reply(REQUEST),
    "denied_reply": lambda: messages.denied_reply(REQUEST),
    "cancelled_reply": lambda: messages.cancelled_reply(REQUEST),
    "approval_request": lambda: messages.approval_request({**REQUEST, "status": "pending"}, description=HOSTILE,
                                                          mfa_note=False),
    "approval_request_mfa": lambda: messages.approval_request({**REQUEST, "status": "pending"}, mfa_note=True),
    "decision_update": lambda: messages.decision_update(REQUEST, description=HOSTILE * 30),
    "requester_notice": lambda: messages.requester_notice(REQUEST),
    "request_with_everything": lambda: messages.approval_request(FULL, description=HOSTILE, mfa_note=False),
    "request_for_watchers": lambda: messages.approval_request(FULL, mfa_note=False, audience="notify"),
    "extension_request": lambda: messages.approval_request({**FULL, "kind": "extension"}, mfa_note=False),
    "decided_with_everything": lambda: messages.decision_update({**FULL, "status": "approved"}),
    "break_glass_alert": lambda: messages.break_glass_alert(GLASS, description=HOSTILE),
    "break_glass_reviewed": lambda: messages.break_glass_alert(
        {**GLASS, "review": {"status": "done", "by": HOSTILE, "at": HOSTILE, "note": HOSTILE}}),
    "break_glass_security": lambda: messages.break_glass_alert(GLASS, audience="security"),
    "break_glass_reply": lambda: messages.break_glass_reply(GLASS),
    "break_glass_notice": lambda: messages.requester_notice(GLASS),
    "reviewed_reply": lambda: messages.reviewed_reply(GLASS),
    "extended_reply": lambda: messages.extended_reply(FULL, True),
    "extension_filed": lambda: messages.extended_reply(FULL, False),
    "counted_reply": lambda: messages.approved_reply(FULL),
    "many_requests": lambda: messages.requests_reply([FULL, GLASS], None),
}


def shown_texts(message: Any) -> list[str]:
    """Every string Slack would render from a message (texts, fallback text, block texts)."""
    found: list[str] = []

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and key in {"text", ""}:
            found.append(value)

    walk(message)
    return found


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_builder_cleans_every_value(name: str) -> None:
    texts = shown_texts(BUILDERS[name]())
    assert texts
    for text in texts:
        text = text.replace("*BREAK-GLASS* <!here>", "*BREAK-GLASS*", 1)  # our own mention, security's copy only
        for raw in ("<!", "<https://evil", "\u2028", "\u2029", "\u202e", "\u200b", "\x00", "\x1b"):
            assert raw not in text, (name, raw, text)
        assert not any(line.lstrip("•> _").startswith("*Approved* by mallory") for line in text.splitlines()), text
        # Not even mid-line: outside code spans (where Slack formats nothing) markers are neutralised.
        assert "*Approved* by mallory" not in re.sub(r"`[^`]*`", "", text), text
        assert len(text) < 4000, (name, len(text))


def test_the_approvers_message_has_buttons_only_while_pending() -> None:
    pending = {**REQUEST, "id": "0123456789ab", "status": "pending"}
    _, blocks = messages.approval_request(pending, mfa_note=False)
    assert blocks[-1]["type"] == "actions"
    assert [b["value"] for b in blocks[-1]["elements"]] == ["0123456789ab", "0123456789ab"]
    assert messages.approval_request(pending, mfa_note=True)[1][-1]["type"] == "section"
    _, decided = messages.decision_update({**pending, "status": "approved", "decided_by": "carol@example.com"})
    assert all(b["type"] != "actions" for b in decided)
    assert decided[-1]["text"]["text"].startswith("*Approved* by carol@example.com")


def test_long_role_lists_point_to_the_client() -> None:
    roles = [{**ROLE, "name": f"role-{i}", "access": "allowed"} for i in range(messages.LIST_LINES + 7)]
    text = messages.roles_reply("bob@example.com", roles, {})["text"]
    assert text.count("\n• ") == messages.LIST_LINES and "… and 7 more: `rolebroker roles`" in text


def test_console_links_keep_their_url_and_cannot_break_out_of_it() -> None:
    reply = messages.console_reply({"url": "https://signin.aws.amazon.com/federation?Action=login&SigninToken=abc",
                                    "role": "readonly", "expires_at": "2026-01-01T00:15:00+00:00"})
    assert reply["text"].startswith("<https://signin.aws.amazon.com/federation?Action=login&SigninToken=abc|")
    odd = messages.console_reply({"url": "https://x.example/?q=a|b>c<d e", "role": "r", "expires_at": "t"})
    assert odd["text"].startswith("<https://x.example/?q=a%7Cb%3Ec%3Cd%20e|Open the AWS console as r>")


def test_no_slack_text_is_built_outside_the_builders() -> None:
    """In chatops.py an f-string may only be an error message (which ``messages.warning`` cleans)."""
    tree = ast.parse((ROOT / "chalicelib" / "chat" / "chatops.py").read_text())
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            allowed |= {id(arg) for arg in node.exc.args}
    strays = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) and id(node) not in allowed
              and not _inside_logging(tree, node)]
    assert strays == [], f"chatops.py builds text outside chalicelib/chat/messages.py at lines {strays}"
    assert "ephemeral(" not in json.dumps((ROOT / "app.py").read_text())


def _inside_logging(tree: ast.AST, target: ast.AST) -> bool:
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value,
                                                                                              ast.Name)
                and node.func.value.id == "LOG" and target in node.args):
            return True
    return False


def test_only_the_security_copy_of_a_break_glass_mentions_the_channel() -> None:
    texts = {audience: json.dumps(messages.break_glass_alert({**GLASS, "id": "0123456789ab"}, audience=audience))
             for audience in ("approvers", "security", "notify")}
    assert texts["security"].count("<!here>") == 1
    assert "<!" not in texts["approvers"] and "<!" not in texts["notify"]
    _, approvers = messages.break_glass_alert({**GLASS, "id": "0123456789ab"})
    assert approvers[-1]["elements"][0]["action_id"] == "review"


def test_watchers_never_get_buttons() -> None:
    _, blocks = messages.approval_request({**FULL, "id": "0123456789ab"}, mfa_note=False, audience="notify")
    assert all(b["type"] != "actions" for b in blocks)


def test_the_help_text_names_every_slack_command() -> None:
    """Commands of both issue 12 (break-glass, review, extend) and issue 13 (console SERVICE) are listed."""
    from chalicelib.chat.chatops import ChatOps

    commands = sorted(name[len("_cmd_"):].replace("_", "-") for name in dir(ChatOps) if name.startswith("_cmd_"))
    assert {"break-glass", "console", "extend", "request", "review"} <= set(commands)
    for command in commands:
        assert f"`/aws {command}" in messages.HELP, command
    assert "`/aws console ROLE [SERVICE]`" in messages.HELP


# Values a person copies out of a code span (ids to type, tickets, scopes) and that mrkdwn would
# otherwise format outside one: inside `...` they stay as typed, except a backtick, which would end it.
TYPED = {"id": "0123456789ab", "ticket": "_CHG-7_*x*", "scope": "ro_", "parent": "0123456789ac"}
SPANNED = {**FULL, **TYPED, "status": "approved", "progress": None}
SPANNED_GLASS = {**GLASS, **TYPED}
SPAN_BUILDERS: dict[str, Callable[[], Any]] = {
    "request_filed": lambda: messages.request_filed(SPANNED),
    "extension_filed": lambda: messages.request_filed({**SPANNED, "kind": "extension"}),
    "break_glass_reply": lambda: messages.break_glass_reply(SPANNED_GLASS),
    "reviewed_reply": lambda: messages.reviewed_reply(SPANNED_GLASS),
    "extended_reply": lambda: messages.extended_reply(SPANNED, True),
    "extension_pending": lambda: messages.extended_reply(SPANNED, False),
    "requests_reply": lambda: messages.requests_reply([SPANNED], None),
    "approved_reply": lambda: messages.approved_reply(SPANNED),
    "counted_reply": lambda: messages.approved_reply({**SPANNED, "status": "pending"}),
    "requester_notice": lambda: messages.requester_notice(SPANNED),
    "break_glass_notice": lambda: messages.requester_notice(SPANNED_GLASS),
    "approvers_message": lambda: messages.approval_request({**SPANNED, "status": "pending"}, mfa_note=True),
    "extension_message": lambda: messages.approval_request({**SPANNED, "kind": "extension"}, mfa_note=False),
    "break_glass_alert": lambda: messages.break_glass_alert(SPANNED_GLASS),
}


@pytest.mark.parametrize("name", sorted(SPAN_BUILDERS))
def test_ids_tickets_and_scopes_in_code_spans_stay_as_typed(name: str) -> None:
    spans = [span for text in shown_texts(SPAN_BUILDERS[name]()) for span in re.findall(r"`([^`]*)`", text)]
    shown = [value for value in TYPED.values() if any(value in span for span in spans)]
    assert shown, (name, spans)
    for span in spans:  # nothing of ours in a span is a look-alike: each reads as it was typed
        assert not set(span) & {"\u2217", "\u02cd", "\u223c", "\u02cb"}, (name, span)


def test_a_backtick_in_a_ticket_cannot_end_its_code_span() -> None:
    text = json.dumps(messages.approval_request({**SPANNED, "ticket": "INC`*Approved* by ceo`"}, mfa_note=False))
    assert "Ticket: `INC\u02cb*Approved* by ceo\u02cb`" in json.loads(text)[1][0]["text"]["text"]
