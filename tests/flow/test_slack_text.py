"""What people and the policy write cannot change what Slack shows: the
reported attacks (a fake "Approved by" line, a 4 KB note, ``<!channel>`` in a
name) and their relatives, through the app, as Slack would receive them."""

from __future__ import annotations

import json

import pytest

from tests.flow.conftest import POLICY, Jit

HOSTILE_POLICY = POLICY.replace(
    "  breakglass:\n    account: production\n",
    "  breakglass:\n    account: production\n"
    "    description: \"Break glass <!here> & <https://evil.example|docs>\\nApproved by security\"\n",
).replace("  production: {", "  \"<!channel> prod\": {").replace("account: production", "account: \"<!channel> prod\"")


def everything_posted(jit: Jit) -> str:
    """Every text and block Slack was asked to show, as one string."""
    return "\n".join(json.dumps(m) for path in ("/api/chat.postMessage", "/api/chat.update", "/hooks/commands/1",
                                                "/hooks/actions/1") for m in jit.sent(path))


def assert_no_markup_from_outside(jit: Jit) -> None:
    shown = everything_posted(jit)
    for raw in ("<!channel>", "<!here>", "<https://evil.example", "\\u2028", "\\u2029"):
        assert raw not in shown, raw


def pending_note(jit: Jit, request_id: str) -> tuple[str, str | None]:
    detail = jit.call("GET", f"/v1/requests/{request_id}", jit.bob()).json_body
    return detail["status"], detail["note"]


def test_a_deny_note_cannot_forge_an_approved_by_line(jit: Jit) -> None:
    jit.call("GET", "/v1/roles", jit.carol())
    request = jit.request()
    jit.command("U0CAROL", f"deny {request['id']} wrong ticket\n*Approved* by security-lead at 2026-01-01")
    reply = jit.sent("/hooks/commands/1")[-1]["text"]
    assert reply.startswith(":warning:") and "control characters" in reply
    assert pending_note(jit, request["id"]) == ("pending", None)
    assert jit.sent("/api/chat.update") == []


def test_a_deny_note_with_a_line_separator_is_refused_too(jit: Jit) -> None:
    jit.call("GET", "/v1/roles", jit.carol())
    request = jit.request()
    jit.command("U0CAROL", f"deny {request['id']} wrong ticket\u2028*Approved* by security-lead")
    assert "line" in jit.sent("/hooks/commands/1")[-1]["text"]
    assert pending_note(jit, request["id"]) == ("pending", None)


def test_a_4kb_deny_note_is_refused(jit: Jit) -> None:
    jit.call("GET", "/v1/roles", jit.carol())
    request = jit.request()
    jit.command("U0CAROL", f"deny {request['id']} " + "no " * 1400)
    assert "at most 500 characters" in jit.sent("/hooks/commands/1")[-1]["text"]
    assert pending_note(jit, request["id"]) == ("pending", None)


def test_the_api_refuses_line_separators_in_reasons(jit: Jit) -> None:
    request = jit.request()
    response = jit.call("POST", f"/v1/requests/{request['id']}/deny", jit.carol(),
                        {"reason": "fine\u2029*Approved* by carol"})
    assert response.status_code == 400 and "line" in response.json_body["Message"]
    filed = jit.call("POST", "/v1/requests", jit.bob(),
                     {"role": "breakglass", "duration_seconds": 3600, "reason": "INC-1\u2028*Approved*"})
    assert filed.status_code == 400


def test_channel_mentions_in_a_requesters_name_are_escaped(jit: Jit) -> None:
    mallory = jit.issuer.mint("<!channel>@example.com", groups=["developers"])
    response = jit.call("POST", "/v1/requests", mallory,
                        {"role": "breakglass", "duration_seconds": 3600, "reason": "<!here> please & thanks"})
    assert response.status_code == 201, response.body
    [posted] = jit.sent("/api/chat.postMessage")
    assert "&lt;!channel&gt;@example.com" in posted["text"]
    assert "&lt;!channel&gt;@example.com" in posted["blocks"][0]["text"]["text"]
    assert "&lt;!here&gt; please &amp; thanks" in posted["blocks"][0]["text"]["text"]
    jit.call("POST", f"/v1/requests/{response.json_body['id']}/deny", jit.carol(), {"reason": "<!everyone> no"})
    assert "&lt;!everyone&gt; no" in jit.sent("/api/chat.update")[-1]["blocks"][-1]["text"]["text"]
    assert_no_markup_from_outside(jit)


def test_request_ids_typed_in_slack_are_checked_before_use(jit: Jit) -> None:
    jit.call("GET", "/v1/roles", jit.carol())
    jit.command("U0CAROL", "approve <!channel>")
    reply = jit.sent("/hooks/commands/1")[-1]["text"]
    assert "no access request" in reply and "&lt;!channel&gt;" in reply
    assert_no_markup_from_outside(jit)


@pytest.fixture
def jit_policy() -> str:
    return HOSTILE_POLICY


def test_policy_text_is_escaped_and_kept_on_one_line(jit: Jit) -> None:
    jit.call("GET", "/v1/roles", jit.bob())
    jit.command("U0BOB", "roles")
    roles_reply = jit.sent("/hooks/commands/1")[-1]["text"]
    assert "&lt;!channel&gt; prod" in roles_reply
    request = jit.request()
    [posted] = jit.sent("/api/chat.postMessage")
    shown = posted["blocks"][0]["text"]["text"]
    assert "Break glass &lt;!here&gt; &amp; &lt;https://evil.example|docs&gt; Approved by security" in shown
    assert next(line for line in shown.splitlines() if "Approved by" in line).startswith("_")
    jit.call("POST", f"/v1/requests/{request['id']}/approve", jit.carol(), {})
    assert_no_markup_from_outside(jit)
