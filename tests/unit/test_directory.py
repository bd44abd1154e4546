"""Slack users as principals of the default issuer, and their group snapshots."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from unittest.mock import Mock

import pytest

from chalicelib.access.policy import AccessPolicy
from chalicelib.aws.store import AccessStore, IdentitySnapshot
from chalicelib.chat.directory import Directory
from chalicelib.chat.slack import SlackApi
from chalicelib.exceptions import Forbidden
from chalicelib.identity.principal import Principal
from chalicelib.identity.tokens import Identity

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
SNAPSHOT_CLAIMS = {"email": "erin@example.com", "department": "platform"}


def _directory(identity_claim: str = "email",
               monotonic: Callable[[], float] = time.monotonic) -> tuple[Directory, Mock]:
    store = Mock(spec=AccessStore)
    store.recall_identity.return_value = IdentitySnapshot(frozenset({"security"}), SNAPSHOT_CLAIMS)
    return Directory(store, clock=lambda: NOW, monotonic=monotonic, identity_claim=identity_claim), store


def _policy(users: dict[str, str] | None = None) -> AccessPolicy:
    return AccessPolicy(accounts={}, roles={}, slack_users=users or {})


def test_snapshots_are_kept_by_principal_with_the_tokens_iat_and_claims() -> None:
    directory, store = _directory()
    person = Identity(subject="Erin@Example.com", principal=Principal("default", "erin@example.com"),
                      groups=frozenset({"security"}), issued_at=1700000000,
                      claims={"email": "erin@example.com", "department": "platform", "amr": ["mfa"],
                              "acr": "high", "iat": 1700000000, "exp": 1700003600, "nonce": "n", "jti": "j"})
    directory.remember(person)
    store.remember_identity.assert_called_once()
    args, kwargs = store.remember_identity.call_args
    assert args[0] == "erin@example.com" and kwargs["issued_at"] == 1700000000
    assert kwargs["claims"] == {"email": "erin@example.com", "department": "platform"}  # never MFA, never times


def test_a_changed_claim_is_recorded_at_once() -> None:
    directory, store = _directory()
    person = Identity(subject="erin@example.com", groups=frozenset({"security"}), claims={"department": "a"})
    directory.remember(person)
    directory.remember(person)
    assert store.remember_identity.call_count == 1
    directory.remember(Identity(subject="erin@example.com", groups=frozenset({"security"}),
                                claims={"department": "b"}))
    assert store.remember_identity.call_count == 2


def test_a_slack_user_without_a_recent_sign_in_is_refused() -> None:
    # Review ATTACK9 F2: Slack's profile email became the identity's email claim,
    # so claim rules matched people who never showed the broker a token.
    directory, store = _directory()
    store.recall_identity.return_value = None
    slack = Mock(spec=SlackApi)
    slack.user_email.return_value = "dave@example.com"
    with pytest.raises(Forbidden, match=r"not seen a sign-in of yours \(dave@example.com\) in the last 12 hours"):
        directory.slack_identity("U0DAVE", _policy(), slack)


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
    assert who.claims == SNAPSHOT_CLAIMS and who.groups == {"security"}  # the token's, never Slack's
    store.recall_identity.assert_called_once_with("erin@example.com", NOW)


def test_without_an_email_identity_claim_only_the_static_mapping_counts() -> None:
    directory, store = _directory("preferred_username")
    slack = Mock(spec=SlackApi)
    slack.user_email.return_value = "erin@example.com"
    with pytest.raises(Forbidden, match=r"slack\.users"):
        directory.slack_identity("U0ERIN", _policy(), slack)
    slack.user_email.assert_not_called()
    who = directory.slack_identity("U0ERIN", _policy({"U0ERIN": "Erin"}), slack)
    assert who.principal.key == "Erin" and who.claims == SNAPSHOT_CLAIMS
    store.recall_identity.assert_called_once_with("Erin", NOW)


def test_a_non_ascii_slack_email_links_to_nobody() -> None:
    # Review ATTACK9 F4: casefold() made the KELVIN SIGN profile email kate@'s principal.
    directory, store = _directory()
    slack = Mock(spec=SlackApi)
    slack.user_email.return_value = "\u212aate@example.com"
    with pytest.raises(Forbidden, match="not plain ASCII"):
        directory.slack_identity("U0MALLORY", _policy(), slack)
    store.recall_identity.assert_not_called()


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_default_identity_claim_is_email_so_slack_profiles_count() -> None:
    store = Mock(spec=AccessStore)
    store.recall_identity.return_value = IdentitySnapshot(frozenset({"security"}), SNAPSHOT_CLAIMS)
    slack = Mock(spec=SlackApi)
    slack.user_email.return_value = "erin@example.com"
    who = Directory(store, clock=lambda: NOW).slack_identity("U0ERIN", _policy(), slack)
    assert who.principal == Principal("default", "erin@example.com") and who.issuer == "slack"


def test_slack_profile_emails_are_cached_for_an_hour_per_user() -> None:
    ticks = Ticks(50_000.0)
    directory, _ = _directory(monotonic=ticks)
    slack = Mock(spec=SlackApi)
    slack.user_email.side_effect = lambda user: {"U0ERIN": "erin@example.com", "U0DAVE": "dave@example.com"}[user]
    assert directory.slack_identity("U0ERIN", _policy(), slack).subject == "erin@example.com"
    ticks.now += 3599
    assert directory.slack_identity("U0ERIN", _policy(), slack).subject == "erin@example.com"
    assert directory.slack_identity("U0DAVE", _policy(), slack).subject == "dave@example.com"
    assert [c.args for c in slack.user_email.call_args_list] == [("U0ERIN",), ("U0DAVE",)]
    ticks.now += 1  # an hour after the first look-up: Slack is asked again (a changed profile counts)
    slack.user_email.side_effect = None
    slack.user_email.return_value = "erin.new@example.com"
    assert directory.slack_identity("U0ERIN", _policy(), slack).subject == "erin.new@example.com"
    assert slack.user_email.call_count == 3


def test_the_first_snapshot_is_written_whatever_the_monotonic_clock_reads() -> None:
    # A fresh Lambda's monotonic clock can read less than the refresh interval.
    directory, store = _directory(monotonic=Ticks(0.0))
    directory.remember(Identity(subject="erin@example.com", groups=frozenset({"security"})))
    assert store.remember_identity.call_count == 1


def test_an_unchanged_snapshot_is_rewritten_after_ten_minutes() -> None:
    ticks = Ticks(10_000.0)
    directory, store = _directory(monotonic=ticks)
    person = Identity(subject="erin@example.com", groups=frozenset({"security"}))
    directory.remember(person)
    ticks.now += 599
    directory.remember(person)
    assert store.remember_identity.call_count == 1
    ticks.now += 1
    directory.remember(person)
    assert store.remember_identity.call_count == 2


def test_the_same_claims_in_another_order_are_the_same_snapshot() -> None:
    directory, store = _directory()
    directory.remember(Identity(subject="erin@example.com", groups=frozenset({"security"}),
                                claims={"department": "a", "email": "erin@example.com"}))
    directory.remember(Identity(subject="erin@example.com", groups=frozenset({"security"}),
                                claims={"email": "erin@example.com", "department": "a"}))
    assert store.remember_identity.call_count == 1
