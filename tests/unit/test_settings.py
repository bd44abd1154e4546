from __future__ import annotations

import pytest

from chalicelib.exceptions import ConfigurationError
from chalicelib.settings import Settings

BASE = {"ROLEBROKER_OIDC_ISSUER": "https://idp.example.com", "ROLEBROKER_OIDC_AUDIENCE": "a, b",
        "ROLEBROKER_POLICY": "policy.yaml"}


def test_minimal_settings_and_defaults() -> None:
    settings = Settings.from_environ(BASE)
    assert settings.audiences == ("a", "b") and settings.client_id == "a"
    assert settings.identity_claim == "email" and settings.groups_claim == "groups"
    assert "HS256" not in settings.algorithms and settings.session_limit_seconds == 3600


@pytest.mark.parametrize(("extra", "fragment"), [
    ({"ROLEBROKER_OIDC_ISSUER": ""}, "ROLEBROKER_OIDC_ISSUER"),
    ({"ROLEBROKER_JWT_ALGORITHMS": "RS256,HS256"}, "asymmetric"),
    ({"ROLEBROKER_JWT_ALGORITHMS": "none"}, "asymmetric"),
    ({"ROLEBROKER_JWT_LEEWAY": "300"}, "between 0 and 60"),
    ({"ROLEBROKER_JWT_LEEWAY": "soon"}, "integer"),
    ({"ROLEBROKER_MAX_SESSION_SECONDS": "7200"}, "role chaining"),
    ({"ROLEBROKER_MAX_SESSION_SECONDS": "100"}, "between 900 and 43200"),
])
def test_bad_settings_fail_clearly(extra: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_environ({**BASE, **extra})
    assert fragment in str(caught.value)


def test_longer_sessions_with_a_source_principal() -> None:
    settings = Settings.from_environ({**BASE, "ROLEBROKER_MAX_SESSION_SECONDS": "43200",
                                      "ROLEBROKER_SOURCE_CREDENTIALS_SECRET": "rolebroker/source"})
    assert settings.session_limit_seconds == 43200


def test_secrets_are_not_in_repr() -> None:
    settings = Settings.from_environ({**BASE, "ROLEBROKER_SLACK_SIGNING_SECRET": "s3cr3t-value",
                                      "ROLEBROKER_SLACK_TEAM_ID": "T0001",
                                      "ROLEBROKER_SLACK_BOT_TOKEN": "fake-bot-token-secret"})
    assert "s3cr3t-value" not in repr(settings) and "fake-bot-token-secret" not in repr(settings)


@pytest.mark.parametrize("stage", ["dev", "prod", "staging"])
def test_the_public_url_is_required_outside_the_local_stage(stage: str) -> None:
    with pytest.raises(ConfigurationError, match="ROLEBROKER_PUBLIC_URL"):
        Settings.from_environ({**BASE, "ROLEBROKER_STAGE": stage})
    settings = Settings.from_environ({**BASE, "ROLEBROKER_STAGE": stage,
                                      "ROLEBROKER_PUBLIC_URL": "https://broker.example.com/"})
    assert settings.public_url == "https://broker.example.com"


def test_the_local_stage_may_derive_the_public_url() -> None:
    assert Settings.from_environ(BASE).public_url is None


@pytest.mark.parametrize("url", ["broker.example.com", "ftp://broker.example.com", "https://"])
def test_the_public_url_must_be_an_http_url(url: str) -> None:
    with pytest.raises(ConfigurationError, match="ROLEBROKER_PUBLIC_URL"):
        Settings.from_environ({**BASE, "ROLEBROKER_PUBLIC_URL": url})


def test_the_default_issuer_comes_from_the_existing_variables() -> None:
    settings = Settings.from_environ({**BASE, "ROLEBROKER_IDENTITY_CLAIM": "preferred_username",
                                      "ROLEBROKER_GROUPS_CLAIM": "roles",
                                      "ROLEBROKER_JWKS_URL": "https://idp.example.com/keys",
                                      "ROLEBROKER_MAX_TOKEN_AGE_SECONDS": "3600",
                                      "ROLEBROKER_REQUIRE_EMAIL_VERIFIED": "false"})
    issuer = settings.default_issuer
    assert (issuer.name, issuer.url, issuer.audiences) == ("default", "https://idp.example.com", ("a", "b"))
    assert (issuer.identity_claim, issuer.groups_claim, issuer.jwks_url) == (
        "preferred_username", "roles", "https://idp.example.com/keys")
    assert issuer.max_token_age_seconds == 3600 and not issuer.require_email_verified
    plain = Settings.from_environ(BASE).default_issuer
    assert plain.require_email_verified and plain.max_token_age_seconds is None


@pytest.mark.parametrize(("extra", "fragment"), [
    ({"ROLEBROKER_MAX_TOKEN_AGE_SECONDS": "5"}, "ROLEBROKER_MAX_TOKEN_AGE_SECONDS"),
    ({"ROLEBROKER_JWKS_MAX_STALE_SECONDS": "-1"}, "ROLEBROKER_JWKS_MAX_STALE_SECONDS"),
    ({"ROLEBROKER_JWKS_MAX_STALE_SECONDS": "１２"}, "integer"),
    ({"ROLEBROKER_REQUIRE_EMAIL_VERIFIED": "maybe"}, "ROLEBROKER_REQUIRE_EMAIL_VERIFIED"),
])
def test_bad_identity_settings_fail_clearly(extra: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        Settings.from_environ({**BASE, **extra})


SLACK = {**BASE, "ROLEBROKER_SLACK_SIGNING_SECRET": "ssm:/rolebroker/prod/slack-signing-secret"}


def test_slack_needs_the_workspaces_it_serves() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_environ(SLACK)
    assert "ROLEBROKER_SLACK_TEAM_ID" in str(caught.value)
    settings = Settings.from_environ({**SLACK, "ROLEBROKER_SLACK_TEAM_ID": "T0123ABCD, E0456EFGH"})
    assert settings.slack_team_ids == ("T0123ABCD", "E0456EFGH")


@pytest.mark.parametrize("value", ["acme", "T0123ABCD,acme", "t0123abcd", "U0123ABCD", "T"])
def test_slack_workspace_ids_look_like_slack_ids(value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_environ({**SLACK, "ROLEBROKER_SLACK_TEAM_ID": value})
    assert "ROLEBROKER_SLACK_TEAM_ID" in str(caught.value)


def test_a_worker_function_needs_a_task_signing_key() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_environ({**BASE, "ROLEBROKER_WORKER_FUNCTION": "rolebroker-prod-slack_worker"})
    assert "ROLEBROKER_TASK_SIGNING_KEY" in str(caught.value)
    settings = Settings.from_environ({**BASE, "ROLEBROKER_WORKER_FUNCTION": "rolebroker-prod-slack_worker",
                                      "ROLEBROKER_TASK_SIGNING_KEY": "ssm:/rolebroker/prod/task-signing-key"})
    assert settings.task_signing_key == "ssm:/rolebroker/prod/task-signing-key"
    assert "task-signing-key" not in repr(settings)


def test_a_literal_task_signing_key_must_be_long_enough() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_environ({**BASE, "ROLEBROKER_TASK_SIGNING_KEY": "tooshort"})
    assert "32" in str(caught.value) and "tooshort" not in str(caught.value)


@pytest.mark.parametrize(("value", "cap"), [("", 5), ("1", 1), ("100", 100)])
def test_the_open_request_cap(value: str, cap: int) -> None:
    assert Settings.from_environ({**BASE, "ROLEBROKER_MAX_OPEN_REQUESTS": value}).max_open_requests == cap


@pytest.mark.parametrize("value", ["0", "101", "five"])
def test_a_bad_open_request_cap_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_environ({**BASE, "ROLEBROKER_MAX_OPEN_REQUESTS": value})
    assert "ROLEBROKER_MAX_OPEN_REQUESTS" in str(caught.value)
