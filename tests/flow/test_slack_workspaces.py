"""Only the configured Slack workspaces (or Enterprise Grid organisations), and
only their own members, act through Slack: not another workspace the app is
installed in, not a Slack Connect guest from another company."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.flow.conftest import EVENTS, Jit


def slack_denials(jit: Jit) -> list[dict[str, Any]]:
    return [a for a in map(json.loads, jit.audit_lines) if a["action"] == "slack" and a["outcome"] == "denied"]


def command_from(jit: Jit, **fields: str) -> Any:
    form = json.loads((EVENTS / "slack_command_roles.json").read_text())
    form.update(response_url=jit.slack.url_for("/hooks/commands/1"), **fields)
    return jit.signed_post("/slack/commands", {k: v for k, v in form.items() if v != "-"})


def click_from(jit: Jit, request_id: str, team: Any, user_team: str | None, user: str = "U0CAROL",
               enterprise: Any = None) -> Any:
    payload = json.loads((EVENTS / "slack_interaction_approve.json").read_text().replace("REQUEST_ID", request_id))
    payload.update(team=team, enterprise=enterprise, response_url=jit.slack.url_for("/hooks/actions/1"))
    payload["user"]["id"] = user
    if user_team is None:
        payload["user"].pop("team_id")
    else:
        payload["user"]["team_id"] = user_team
    return jit.signed_post("/slack/interactions", {"payload": json.dumps(payload)})


def test_a_command_from_another_workspace_is_refused_before_any_work(jit: Jit) -> None:
    answer = command_from(jit, team_id="T0OTHER", enterprise_id="-")
    assert answer.status_code == 200
    assert answer.json_body["response_type"] == "ephemeral" and "does not serve" in answer.json_body["text"]
    assert jit.sent("/api/users.info") == [] and jit.sent("/hooks/commands/1") == []
    [denied] = slack_denials(jit)
    assert denied["reason"] == "Slack workspace T0OTHER is not one this broker serves"
    assert denied["path"] == "/slack/commands"


def test_a_command_from_an_allowed_enterprise_is_served(jit: Jit, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jit.services.slack_workspaces, "allowed", frozenset({"E0001"}))
    jit.users_info["U0ALICE"].update(team_id="T0SISTER", enterprise_user={"enterprise_id": "E0001"})
    answer = command_from(jit, team_id="T0SISTER", enterprise_id="E0001", user_id="U0ALICE")
    assert "working on" in answer.json_body["text"]
    assert "alice@example.com" in jit.sent("/hooks/commands/1")[-1]["text"]
    assert command_from(jit, team_id="T0SISTER", enterprise_id="E0OTHER").json_body["text"].startswith(
        ":no_entry:")


def test_a_command_without_a_workspace_is_refused(jit: Jit) -> None:
    assert "does not serve" in command_from(jit, team_id="-", enterprise_id="-").json_body["text"]


def test_a_click_from_another_workspace_or_an_external_user_is_dropped(jit: Jit) -> None:
    jit.call("GET", "/v1/roles", jit.carol())
    request = jit.request()
    assert click_from(jit, request["id"], {"id": "T0OTHER"}, "T0OTHER").status_code == 200
    assert click_from(jit, request["id"], {"id": "T0001"}, "T0EXTERNAL").status_code == 200
    assert click_from(jit, request["id"], None, "T0001").status_code == 200
    assert jit.call("GET", f"/v1/requests/{request['id']}", jit.bob()).json_body["status"] == "pending"
    assert [d["reason"] for d in slack_denials(jit)] == [
        "Slack workspace T0OTHER is not one this broker serves",
        "Slack user from workspace T0EXTERNAL (Slack Connect) is not one of this broker's people",
        "Slack workspace - is not one this broker serves",
    ]
    assert click_from(jit, request["id"], {"id": "T0001"}, "T0001").status_code == 200
    assert jit.call("GET", f"/v1/requests/{request['id']}", jit.bob()).json_body["status"] == "approved"


def test_users_slack_says_belong_elsewhere_are_refused(jit: Jit) -> None:
    jit.users_info["U0ALICE"]["team_id"] = "T0EXTERNAL"
    jit.users_info["U0DAVE"]["is_stranger"] = True
    for user in ("U0ALICE", "U0DAVE"):
        jit.command(user, "roles")
        reply = jit.sent("/hooks/commands/1")[-1]["text"]
        assert "another organisation" in reply, reply


def test_users_of_the_enterprise_are_accepted_from_any_of_its_workspaces(
        jit: Jit, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jit.services.slack_workspaces, "allowed", frozenset({"E0001"}))
    jit.users_info["U0ALICE"].update(team_id="T0SISTER", enterprise_user={"enterprise_id": "E0001"})
    jit.call("GET", "/v1/roles", jit.issuer.mint("alice@example.com", groups=["developers"]))  # signed in once
    command_from(jit, team_id="T0SISTER", enterprise_id="E0001", user_id="U0ALICE")
    assert "Roles for alice@example.com" in jit.sent("/hooks/commands/1")[-1]["text"]
    jit.users_info["U0ALICE"]["enterprise_user"] = {"enterprise_id": "E0OTHER"}
    jit.services.directory._emails.clear()
    command_from(jit, team_id="T0SISTER", enterprise_id="E0001", user_id="U0ALICE")
    assert "another organisation" in jit.sent("/hooks/commands/1")[-1]["text"]
