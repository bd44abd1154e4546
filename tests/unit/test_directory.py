"""Slack users as principals of the default issuer, and their group snapshots."""

from __future__ import annotations

from datetime import datetime, timezone
from unittest.mock import Mock

import pytest

from chalicelib.access.policy import AccessPolicy
from chalicelib.aws.store import AccessStore
from chalicelib.chat.directory import Directory
from chalicelib.chat.slack import SlackApi
from chalicelib.exceptions import Forbidden
from chalicelib.identity.principal import Principal
from chalicelib.identity.tokens import Identity

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _directory(identity_claim: str = "email") -> tuple[Directory, Mock]:
    store = Mock(spec=AccessStore)
    store.recall_identity.return_value = frozenset({"security"})
    return Directory(store, clock=lambda: NOW, identity_claim=identity_claim), store


def _policy(users: dict[str, str] | None = None) -> AccessPolicy:
    return AccessPolicy(accounts={}, roles={}, slack_users=users or {})


def test_snapshots_are_kept_by_principal_with_the_tokens_iat() -> None:
    directory, store = _directory()
    person = Identity(subject="Erin@Example.com", principal=Principal("default", "erin@example.com"),
                      groups=frozenset({"security"}), issued_at=1700000000)
    directory.remember(person)
    store.remember_identity.assert_called_once()
    args, kwargs = store.remember_identity.call_args
    assert args[0] == "erin@example.com" and kwargs["issued_at"] == 1700000000


def test_workloads_of_other_issuers_leave_no_snapshot() -> None:
    directory, store = _directory()
    directory.remember(Identity(subject="repo:acme/infra", principal=Principal("ci", "repo:acme/infra"),
                                groups=frozenset({"security"})))
    store.remember_identity.assert_not_called()


def test_a_slack_email_maps_to_the_casefolded_principal() -> None:
    directory, store = _directory()
    slack = Mock(spec=SlackApi)
    slack.user_email.return_value = "Erin@Example.com"
    who = directory.slack_identity("U0ERIN", _policy(), slack)
    assert who.principal == Principal("default", "erin@example.com") and who.subject == "Erin@Example.com"
    assert who.claims == {"email": "erin@example.com"} and who.groups == {"security"}
    store.recall_identity.assert_called_once_with("erin@example.com", NOW)


def test_without_an_email_identity_claim_only_the_static_mapping_counts() -> None:
    directory, store = _directory("preferred_username")
    slack = Mock(spec=SlackApi)
    slack.user_email.return_value = "erin@example.com"
    with pytest.raises(Forbidden, match=r"slack\.users"):
        directory.slack_identity("U0ERIN", _policy(), slack)
    slack.user_email.assert_not_called()
    who = directory.slack_identity("U0ERIN", _policy({"U0ERIN": "Erin"}), slack)
    assert who.principal.key == "Erin" and who.claims == {"preferred_username": "Erin"}
    store.recall_identity.assert_called_once_with("Erin", NOW)


def test_a_non_ascii_slack_email_links_to_nobody() -> None:
    # Review ATTACK9 F4: casefold() made the KELVIN SIGN profile email kate@'s principal.
    directory, store = _directory()
    slack = Mock(spec=SlackApi)
    slack.user_email.return_value = "\u212aate@example.com"
    with pytest.raises(Forbidden, match="not plain ASCII"):
        directory.slack_identity("U0MALLORY", _policy(), slack)
    store.recall_identity.assert_not_called()
