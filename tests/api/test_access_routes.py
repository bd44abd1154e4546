"""GET /v1/access: who-can and what-can over the API, and who may ask what."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from tests.conftest import Harness


def ask(api: Harness, params: dict[str, str] | None = None, **token: object) -> object:
    path = "/v1/access" + (f"?{urlencode(params)}" if params else "")
    return api.get(path, **token)


def test_anyone_may_ask_what_they_can_do_from_their_own_token(api: Harness) -> None:
    response = ask(api, sub="bob@example.com", groups=["developers"])
    assert response.status_code == 200, response.body
    body = response.json_body
    assert body["identity"] == "bob@example.com" and body["source"] == "token"
    assert body["groups"] == ["developers"] and body["admin"] is False and body["auditor"] is False
    assert {r["role"]: r["access"] for r in body["roles"]} == {
        "sandbox-readonly": "allowed", "prod-breakglass": "approval_required"}
    assert all("rule_conditions" not in r for r in body["roles"])  # no other people's claim values


def test_naming_oneself_answers_from_the_token_too(api: Harness) -> None:
    response = ask(api, {"identity": "alice@example.com"}, groups=["platform-admins"], mfa=True)
    assert response.status_code == 200, response.body
    roles = {r["role"]: r["access"] for r in response.json_body["roles"]}
    assert roles["prod-admin"] == "allowed"  # the token's own MFA counts
    assert response.json_body["source"] == "token"


def test_admins_and_auditors_may_ask_about_anyone(api: Harness) -> None:
    for groups in (["security"], ["audit"]):
        response = ask(api, {"identity": "bob@example.com", "groups": "developers,sre"},
                       sub="carol@example.com", groups=groups)
        assert response.status_code == 200, response.body
        body = response.json_body
        assert body["identity"] == "bob@example.com" and body["source"] == "query"
        assert body["groups"] == ["developers", "sre"]
        assert {r["role"]: r["access"] for r in body["roles"]} == {
            "sandbox-readonly": "allowed", "prod-readonly": "allowed", "prod-breakglass": "approval_required"}
        assert body["roles"][0]["rule_conditions"] == {"groups": ["developers", "platform-admins"]}
    audits = [a for a in api.audits() if a["action"] == "access-query"]
    assert [(a["outcome"], a["about"], a["who"]) for a in audits] == [
        ("allowed", "bob@example.com", "carol@example.com")] * 2


def test_admins_and_auditors_may_ask_who_can_use_a_role(api: Harness) -> None:
    response = ask(api, {"role": "prod-breakglass"}, sub="carol@example.com", groups=["audit"])
    assert response.status_code == 200, response.body
    body = response.json_body
    assert body["role"] == "prod-breakglass" and body["requires_approval"] is True
    assert body["rules"] == [{"groups": ["developers", "platform-admins"], "requires_mfa": False,
                              "requires_approval": True}]
    assert body["approval"]["approvers"] == [{"groups": ["security"]}]


@pytest.mark.parametrize("params", [
    {"role": "prod-breakglass"},
    {"identity": "alice@example.com"},
    {"identity": "bob@example.com", "groups": "security"},
])
def test_others_get_a_403_that_says_who_may(api: Harness, params: dict[str, str]) -> None:
    response = ask(api, params, sub="bob@example.com", groups=["developers"])
    assert response.status_code == 403
    message = response.json_body["Message"]
    assert "only admins (group security) and auditors (group audit) may" in message
    assert "GET /v1/access with no parameters" in message
    denied = [a for a in api.audits() if a["action"] == "access-query"]
    assert denied and denied[-1]["outcome"] == "denied"


@pytest.mark.parametrize(("query", "fragment"), [
    ("role=no/such", "'role' must be 1-64 characters"),
    ("identity=", "'identity' must be 1-256 characters"),
    ("identity=" + "x" * 257, "'identity' must be 1-256 characters"),
    ("identity=bob%0a@example.com", "must not contain control characters"),
    ("identity=bob@example.com&groups=a,,b", "'groups' must be a comma-separated list"),
    ("identity=b&groups=" + ",".join(f"g{i}" for i in range(101)), "at most 100 groups"),
    ("identity=a&identity=b", "'identity' may be given once"),
    ("colour=blue", "unknown parameter(s) 'colour'"),
    ("identity=%20%20", "'identity' must be 1-256 characters"),
])
def test_bad_parameters_are_400(api: Harness, query: str, fragment: str) -> None:
    response = api.get(f"/v1/access?{query}", sub="carol@example.com", groups=["security"])
    assert response.status_code == 400, response.body
    assert fragment in response.json_body["Message"]


def test_an_unknown_role_is_404(api: Harness) -> None:
    response = ask(api, {"role": "nope"}, sub="carol@example.com", groups=["security"])
    assert response.status_code == 404
    assert "unknown role 'nope'" in response.json_body["Message"]


def test_groups_without_identity_ask_about_anyone_with_those_groups(api: Harness) -> None:
    response = ask(api, {"groups": "sre"}, sub="carol@example.com", groups=["audit"])
    assert response.status_code == 200, response.body
    body = response.json_body
    assert body["identity"] is None and body["groups"] == ["sre"]
    assert [r["role"] for r in body["roles"]] == ["prod-readonly"]
    assert ask(api, {"groups": "sre"}, sub="bob@example.com", groups=["developers"]).status_code == 403


def test_role_with_identity_narrows_the_answer_to_that_role(api: Harness) -> None:
    response = ask(api, {"role": "prod-breakglass", "identity": "bob@example.com", "groups": "developers"},
                   sub="carol@example.com", groups=["security"])
    assert response.status_code == 200, response.body
    assert [(r["role"], r["access"]) for r in response.json_body["roles"]] == [
        ("prod-breakglass", "approval_required")]
    mine = ask(api, {"role": "sandbox-admin", "identity": "bob@example.com"}, sub="bob@example.com",
               groups=["developers"])
    assert mine.status_code == 200 and mine.json_body["roles"] == []


def test_no_token_is_401(api: Harness) -> None:
    assert api.client.http.get("/v1/access?role=prod-admin").status_code == 401
