"""GET /v1/access: who-can and what-can over the API, and who may ask what."""

from __future__ import annotations

import re
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


# --------------------------------------------------------------------------
# What a stranger's CI token learns (review ATTACK9 F5). A CI issuer such as
# GitHub Actions signs tokens for every repository in the world, with any
# audience the workflow asks for: every GitHub user is a verified caller.

ORGANISATION = ("platform-admins", "developers", "security", "audit", "sre", "acme/infra", "refs/heads/main",
                "dana@example.com")


def stranger(api: Harness) -> str:
    # A workflow in someone else's repository, asking for our CI audience.
    return api.ci.mint("", claims={"repository": "stranger/fork", "ref": "refs/heads/main"})


def messages(*responses: object) -> str:
    return " ".join(str(r.json_body.get("Message", "")) for r in responses)  # type: ignore[attr-defined]


def leaked(text: str) -> list[str]:
    """The organisation's names in ``text``, as words ("auditors" does not name the group "audit")."""
    return [name for name in ORGANISATION if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)]


def test_a_strangers_ci_token_learns_no_role_or_group_names(api: Harness) -> None:
    token = stranger(api)
    known = api.post("/v1/credentials", {"role": "prod-breakglass"}, token=token)
    unknown = api.post("/v1/credentials", {"role": "no-such-role"}, token=token)
    oversight = api.get("/v1/access?role=prod-breakglass", token=token)
    said = messages(known, unknown, oversight)
    assert not leaked(said), said
    assert known.status_code == unknown.status_code == oversight.status_code == 404
    assert known.json_body["Message"] == unknown.json_body["Message"].replace("no-such-role", "prod-breakglass")


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/v1/console", {"role": "{role}"}),
    ("GET", "/v1/access?role={role}", None),
])  # POST /v1/requests: tests/flow/test_issuers_and_jit.py (it needs the table)
def test_every_route_answers_a_stranger_alike_for_known_and_unknown_roles(api: Harness, method: str, path: str,
                                                                          body: dict[str, object] | None) -> None:
    token = stranger(api)

    def call(role: str) -> object:
        if method == "GET":
            return api.get(path.format(role=role), token=token)
        return api.post(path, {k: v.format(role=role) if isinstance(v, str) else v for k, v in (body or {}).items()},
                        token=token)

    known, unknown = call("prod-breakglass"), call("no-such-role")
    assert known.status_code == unknown.status_code == 404  # type: ignore[attr-defined]
    assert not leaked(messages(known, unknown))


def test_a_stranger_is_told_only_its_own_issuers_rules_without_values(api: Harness) -> None:
    token = stranger(api)
    denied = api.post("/v1/credentials", {"role": "ci-deploy"}, token=token)
    assert denied.status_code == 403
    assert denied.json_body["Message"] == "role ci-deploy requires issuer ci and a matching repository, ref claim"
    who = api.get("/v1/access?role=ci-deploy", token=token)
    anyone = api.get("/v1/access?identity=bob@example.com", token=token)
    assert who.status_code == anyone.status_code == 403
    assert "only the policy's admins and auditors may" in messages(who, anyone)
    assert not leaked(messages(denied, who, anyone))


def test_people_get_404_for_a_role_only_ci_jobs_may_use(api: Harness) -> None:
    person = api.post("/v1/credentials", {"role": "ci-deploy"}, sub="bob@example.com", groups=["developers"])
    unknown = api.post("/v1/credentials", {"role": "no-such-role"}, sub="bob@example.com", groups=["developers"])
    assert person.status_code == unknown.status_code == 404
    asked = ask(api, {"role": "ci-deploy"}, sub="bob@example.com", groups=["developers"])
    assert asked.status_code == 404


def test_admins_still_ask_about_roles_of_any_issuer(api: Harness) -> None:
    response = ask(api, {"role": "ci-deploy"}, sub="carol@example.com", groups=["audit"])
    assert response.status_code == 200, response.body
    assert response.json_body["role"] == "ci-deploy"
