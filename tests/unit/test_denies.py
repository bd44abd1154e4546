"""The deny documents: exact content, garbage collection, and the managed-policy quota at its boundary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.exceptions import RevocationsFull
from chalicelib.jit import denies

NOW = datetime(2025, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)
ROLE = "arn:aws:iam::222222222222:role/rolebroker/BreakGlassRole"


def test_an_entry_is_exactly_a_deny_of_older_sessions_of_one_source_identity() -> None:
    entry = denies.entry_for("bob@example.com", NOW, 3600)
    assert entry.cutoff == datetime(2025, 3, 1, 12, 0, 1, tzinfo=UTC)  # rounded up: this second's sessions too
    assert entry.expires == entry.cutoff + timedelta(hours=1)
    assert denies.render([entry], NOW) == {"Version": "2012-10-17", "Statement": [
        {"Sid": "BoundaryDoesNotNarrow", "Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Sid": denies.statement(entry)["Sid"], "Effect": "Deny", "Action": "*", "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceIdentity": "bob@example.com"},
                       "DateLessThan": {"aws:TokenIssueTime": "2025-03-01T12:00:01Z"}}},
    ]}
    assert str(denies.statement(entry)["Sid"]).startswith("Until20250301130001")
    grant = denies.statement(denies.entry_for("bob@example.com", NOW, 3600, role_arn=ROLE))
    assert grant["Condition"]["ArnEquals"] == {"aws:PrincipalArn": ROLE}  # type: ignore[index]


def test_an_entry_lives_at_least_until_the_latest_recorded_session() -> None:
    """ATTACK11 F4: a session issued when the role allowed 2 h outlives an entry of today's 1 h."""
    session_ends = NOW + timedelta(hours=2, microseconds=500)
    entry = denies.entry_for("bob@example.com", NOW, 3600, at_least=session_ends)
    assert entry.expires == datetime(2025, 3, 1, 14, 0, 1, tzinfo=UTC)  # whole seconds, rounded up
    assert entry.expires >= session_ends
    assert denies.entries_in(denies.render([entry], NOW)) == [entry]  # the Sid carries it exactly
    shorter = denies.entry_for("bob@example.com", NOW, 3600, at_least=NOW + timedelta(minutes=5))
    assert shorter == denies.entry_for("bob@example.com", NOW, 3600)  # never shorter than the role's


def test_expired_entries_are_garbage_and_one_person_is_one_entry() -> None:
    old = denies.entry_for("bob@example.com", NOW - timedelta(hours=2), 3600)
    earlier = denies.entry_for("alice@example.com", NOW - timedelta(minutes=30), 3600)
    later = denies.entry_for("alice@example.com", NOW, 900)
    kept = denies.live([old, earlier, later], NOW)
    assert kept == [denies.DenyEntry("alice@example.com", later.cutoff, earlier.expires)]


def test_a_grant_entry_under_a_person_entry_is_dropped_but_not_one_that_outlives_it() -> None:
    person = denies.entry_for("bob@example.com", NOW, 3600)
    grant_before = denies.entry_for("bob@example.com", NOW - timedelta(minutes=10), 1800, role_arn=ROLE)
    grant_after = denies.entry_for("bob@example.com", NOW + timedelta(minutes=5), 3600, role_arn=ROLE)
    assert denies.live([person, grant_before], NOW) == [person]
    assert denies.live([person, grant_after], NOW) == [person, grant_after]


def test_capacity_is_computed_and_one_more_entry_fails_loudly_without_dropping_any() -> None:
    identity = "someone.with.a.long.name@example.com"
    fits = denies.capacity(len(identity))
    people = [denies.entry_for(f"{n:03d}{identity[3:]}", NOW, 3600) for n in range(fits + 1)]
    document = denies.render(people[:fits], NOW)
    assert denies.policy_size(document) <= denies.MANAGED_POLICY_LIMIT
    assert len(document["Statement"]) == fits + 1  # type: ignore[arg-type]
    with pytest.raises(RevocationsFull, match=r"over IAM's managed policy quota of 6,144; nothing was written") as err:
        denies.render(people, NOW)
    assert "The oldest entry expires at 2025-03-01T13:00:01Z" in str(err.value)


def test_the_figures_the_documentation_states() -> None:
    # docs/security.md: concurrent revocations per account, by identity length.
    assert denies.capacity(17) == 27  # alice@example.com
    assert denies.capacity(64) == 22  # the longest SourceIdentity
    assert denies.capacity(64, per_role=True, role_arn_length=80) == 15  # JIT grant entries, a long role ARN


def test_entries_read_back_from_a_document() -> None:
    entries = [denies.entry_for("bob@example.com", NOW, 3600),
               denies.entry_for("carol@example.com", NOW, 7200, role_arn=ROLE)]
    assert denies.entries_in(denies.render(entries, NOW)) == entries
