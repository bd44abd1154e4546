"""What a revocation reaches beyond today's policy: a person's other principals, and the sessions they hold.

Attack 11 (the kill switch review) found three ways a revoked person kept
working: a linked issuer's token is the same person but another principal
(F2); the accounts came from today's policy, so a rule removed before the
revocation left its sessions alive (F3); and an entry expired by the role's
*current* MaxSessionDuration, so lowering it let an older, longer session
outlive its deny (F4). The broker now records every session it issues (where,
until when, under the person) before it checks the refusal, and a revocation
writes every account, identity and expiry that record holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chalicelib.access.policy import parse_policy
from chalicelib.audit import CallContext
from chalicelib.aws import limits
from chalicelib.aws.iam import MAX_CALLS_PER_WRITE
from chalicelib.aws.revocation_store import LiveSession, RevocationStore
from chalicelib.aws.store import AccessStore
from chalicelib.identity.tokens import Identity
from chalicelib.jit import denies
from chalicelib.jit.revocations import LEASE
from chalicelib.stamping import session_name_for_key
from devstack.issuer import DevIssuer
from devstack.trusting import iam_in
from tests.conftest import Moto, broker_environ
from tests.flow.conftest import PARTNER_AUDIENCE
from tests.flow.test_revocations import (
    EMERGENCY,
    POLICY,
    PRODUCTION,
    SANDBOX,
    KillSwitch,
    build,
    client_with,
    credentials,
)


def serve(kill: KillSwitch, text: str) -> None:
    """The broker now serves ``text`` (as after a reload), with this test's account ids."""
    for placeholder, account in kill.accounts.items():
        text = text.replace(placeholder, account)
    new = parse_policy(text)
    kill.services.kill_switch._policy = lambda: new


@pytest.fixture
def kill(issuer: DevIssuer, moto_server: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KillSwitch]:
    switch = build(issuer, moto_server, tmp_path, monkeypatch, POLICY)
    with switch.client:
        yield switch


# --------------------------------------------------------------------------
# F2: a person, not a principal


LINKED = """\
version: 1
issuers:
  partner:
    url: PARTNER_URL
    audiences: [PARTNER_AUDIENCE]
    identity_claim: sub
    approval_identity_claim: email
accounts:
  production: {id: "300000000001", region: us-east-1}
roles:
  prod-readonly:
    account: production
    role_name: /rolebroker/ReadOnlyRole
    allow: [{groups: [developers]}, {issuer: partner, groups: [developers]}]
admins: [{groups: [security]}, {issuer: partner, groups: [security]}]
auditors: [{groups: [audit]}]
"""


def linked_switch(issuer: DevIssuer, partner: DevIssuer, moto: Moto, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch, text: str = LINKED) -> KillSwitch:
    text = text.replace("PARTNER_URL", partner.url).replace("PARTNER_AUDIENCE", PARTNER_AUDIENCE)
    return build(issuer, moto, tmp_path, monkeypatch, text)


@pytest.fixture
def linked(issuer: DevIssuer, partner: DevIssuer, moto_server: Moto, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[KillSwitch]:
    switch = linked_switch(issuer, partner, moto_server, tmp_path, monkeypatch)
    with switch.client:
        yield switch


def at_partner(partner: DevIssuer, name: str, *groups: str, mfa: bool = False) -> str:
    """``name``'s token at the linked partner IdP: its own sub, the same verified email."""
    return partner.mint(f"p-{name}", groups=list(groups), mfa=mfa,
                        claims={"email": f"{name}@example.com", "email_verified": True})


def test_a_revoked_person_gets_no_credentials_from_their_linked_issuer(linked: KillSwitch,
                                                                      partner: DevIssuer) -> None:
    assert linked.revoke("erin@example.com").status_code == 201
    assert credentials(linked, linked.issuer.mint("erin@example.com", groups=["developers"]),
                       "prod-readonly").status_code == 403
    from_partner = credentials(linked, at_partner(partner, "erin", "developers"), "prod-readonly")
    assert from_partner.status_code == 403, from_partner.body
    assert "revoked your sessions" in from_partner.json_body["Message"]
    assert credentials(linked, at_partner(partner, "finn", "developers"), "prod-readonly").status_code == 200


def test_a_persons_revocation_denies_the_sessions_of_their_linked_principals(linked: KillSwitch,
                                                                            partner: DevIssuer) -> None:
    issued = credentials(linked, at_partner(partner, "erin", "developers"), "prod-readonly")
    assert issued.status_code == 200, issued.body
    stamped = issued.json_body["source_identity"]
    assert stamped == session_name_for_key("partner|p-erin")
    answer = linked.revoke("erin@example.com")
    assert answer.status_code == 201, answer.body
    production = answer.json_body["accounts"][linked[PRODUCTION]]
    assert sorted(production["identities"]) == sorted(["erin@example.com", stamped])
    found = {e.source_identity for e in denies.entries_in(linked.boundary(linked[PRODUCTION]))}
    assert found == {"erin@example.com", stamped}


def test_a_revoked_admin_cannot_lift_their_own_revocation_from_a_linked_issuer(
        linked: KillSwitch, partner: DevIssuer) -> None:
    carol = linked.issuer.mint("carol@example.com", groups=["security"], mfa=True)
    revocation = linked.revoke("sam@example.com", carol).json_body["id"]
    lifted = linked.call("DELETE", f"/v1/revocations/{revocation}", at_partner(partner, "sam", "security", mfa=True))
    assert lifted.status_code == 403, lifted.body
    assert linked.call("GET", f"/v1/revocations/{revocation}", carol).json_body["state"] == "in_force"
    assert credentials(linked, linked.sam(), "prod-readonly").status_code == 403


def test_an_admin_cannot_revoke_themselves_from_a_linked_issuer(linked: KillSwitch, partner: DevIssuer) -> None:
    answer = linked.revoke("sam@example.com", at_partner(partner, "sam", "security", mfa=True))
    assert answer.status_code == 403, answer.body
    assert "you cannot revoke your own sessions" in answer.json_body["Message"]
    assert linked.call("GET", "/v1/revocations", linked.sam()).json_body["revocations"] == []


def test_a_person_reached_only_through_a_linked_issuer_is_no_404(
        issuer: DevIssuer, partner: DevIssuer, moto_server: Moto, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the partner's rule gives prod-readonly: erin@ holds it through her partner account."""
    only_partner = LINKED.replace("allow: [{groups: [developers]}, {issuer: partner, groups: [developers]}]",
                                  "allow: [{issuer: partner, groups: [developers]}]")
    switch = linked_switch(issuer, partner, moto_server, tmp_path, monkeypatch, only_partner)
    with switch.client:
        answer = switch.revoke("erin@example.com")
        assert answer.status_code == 201, answer.body
        assert answer.json_body["roles"] == ["prod-readonly"]


# --------------------------------------------------------------------------
# F3: the sessions a person holds, not only what today's policy gives them


NAMED_ONLY = POLICY.replace("roles:\n", f'  emergency: {{id: "{EMERGENCY}", region: us-east-1}}\nroles:\n', 1) \
    .replace("  dana-tools:\n    account: sandbox\n", "  dana-tools:\n    account: emergency\n")
DANA_RULE = ("  dana-tools:\n    account: emergency\n    role_name: /rolebroker/DanaRole\n"
             "    allow: [{claims: {email: dana@example.com}}]\n")


@pytest.fixture
def named(issuer: DevIssuer, moto_server: Moto, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[KillSwitch]:
    switch = build(issuer, moto_server, tmp_path, monkeypatch, NAMED_ONLY)
    with switch.client:
        yield switch


def test_offboarding_in_the_natural_order_still_ends_live_sessions(named: KillSwitch) -> None:
    dana = named.issuer.mint("dana@example.com", groups=[])
    issued = credentials(named, dana, "dana-tools")
    assert issued.status_code == 200  # a live session in the emergency account, up to an hour
    # Offboarding: the policy PR that removes her rule lands first, then an admin revokes her.
    serve(named, NAMED_ONLY.replace(DANA_RULE, ""))
    named.clock.now += timedelta(minutes=5)
    answer = named.revoke("dana@example.com")
    assert answer.status_code == 201, answer.body  # her group rules reach sandbox and production, not here
    emergency = answer.json_body["accounts"][named[EMERGENCY]]
    assert emergency["roles"] == [f"arn:aws:iam::{named[EMERGENCY]}:role/rolebroker/DanaRole"]
    assert emergency["sessions_until"] == issued.json_body["credentials"]["Expiration"]
    assert [e.source_identity for e in denies.entries_in(named.boundary(named[EMERGENCY]))] == ["dana@example.com"]


def test_live_sessions_alone_are_not_a_404(named: KillSwitch) -> None:
    assert credentials(named, named.issuer.mint("dana@example.com", groups=[]), "dana-tools").status_code == 200
    # No rule reaches dana any more, whatever her groups: only her live session does.
    erin_only = "{claims: {email: erin@example.com}}"
    serve(named, NAMED_ONLY.replace(DANA_RULE, "").replace("{groups: [developers]}", erin_only)
          .replace("{groups: [developers, sre]}", erin_only))
    answer = named.revoke("dana@example.com")
    assert answer.status_code == 201, answer.body
    assert list(answer.json_body["accounts"]) == [named[EMERGENCY]]
    assert named.revoke("mallory@example.com").status_code == 404  # still: no rule, no session


def test_a_session_issued_while_the_revocation_is_recorded_is_written_too(named: KillSwitch,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The read after the refusal: a session recorded between the first read and the refusal is found."""
    dana = named.issuer.mint("dana@example.com", groups=[])
    serve(named, NAMED_ONLY.replace(DANA_RULE, ""))
    store = named.services.kill_switch._store
    real_create = store.create

    def create_after_a_session(revocation: Any, *, naming: str | None) -> None:
        store.record_issued("dana@example.com", LiveSession(
            "dana@example.com", "dana@example.com", named[EMERGENCY],
            f"arn:aws:iam::{named[EMERGENCY]}:role/rolebroker/DanaRole", named.clock.now + timedelta(hours=1)))
        real_create(revocation, naming=naming)

    monkeypatch.setattr(store, "create", create_after_a_session)
    answer = named.revoke("dana@example.com")
    assert answer.status_code == 201, answer.body
    assert answer.json_body["accounts"][named[EMERGENCY]]["status"] == "written"
    stored = named.call("GET", f"/v1/revocations/{answer.json_body['id']}", named.sam()).json_body
    assert stored["accounts"] == answer.json_body["accounts"]
    refused = credentials(named, dana, "dana-tools")  # the broker's own policy still has her rule
    assert refused.status_code == 403 and "revoked your sessions" in refused.json_body["Message"]


def test_a_grant_whose_role_left_the_policy_still_ends_its_sessions(kill: KillSwitch) -> None:
    carol = kill.issuer.mint("carol@example.com", groups=["security"])
    created = kill.call("POST", "/v1/requests", kill.bob(),
                        {"role": "prod-breakglass", "duration_seconds": 3600, "reason": "INC-9 db down"})
    request_id = created.json_body["id"]
    assert kill.call("POST", f"/v1/requests/{request_id}/approve", carol).status_code == 200
    assert credentials(kill, kill.bob(), "prod-breakglass").status_code == 200
    serve(kill, POLICY.replace("prod-breakglass:", "prod-breakglass-renamed:"))
    request = AccessStore(kill.moto.client("dynamodb"), kill.table).get(request_id)
    admin = Identity(subject="carol@example.com", groups=frozenset({"security"}))
    ended = kill.services.kill_switch.end_grant(admin, request, "done", context=CallContext(request_id="g1"))
    assert ended is not None and ended.status == "complete"
    role = f"arn:aws:iam::{kill[PRODUCTION]}:role/rolebroker/BreakGlassRole"
    [entry] = denies.entries_in(kill.boundary(kill[PRODUCTION]))
    assert (entry.source_identity, entry.role_arn) == ("bob@example.com", role)


def test_the_broker_records_each_session_under_the_person_keeping_the_latest_expiry(kill: KillSwitch) -> None:
    store = RevocationStore(kill.moto.client("dynamodb"), kill.table)
    now = kill.clock.now
    where = ("bob@example.com", "bob@example.com", kill[SANDBOX], "arn:aws:iam::1:role/rolebroker/A")
    store.record_issued("bob@example.com", LiveSession(*where, now + timedelta(hours=2)))
    store.record_issued("bob@example.com", LiveSession(*where, now + timedelta(minutes=15)))  # shorter: kept out
    assert store.issued("bob@example.com", now) == [LiveSession(*where, now + timedelta(hours=2))]
    assert store.issued("bob@example.com", now + timedelta(hours=3)) == []  # over, though TTL deletes late
    issued = credentials(kill, kill.bob(), "prod-readonly").json_body
    [recorded] = [s for s in store.issued("bob@example.com", now) if s.account_id == kill[PRODUCTION]]
    assert recorded.role_arn == issued["role_arn"] and recorded.source_identity == issued["source_identity"]
    assert recorded.expires == datetime.fromisoformat(issued["credentials"]["Expiration"])


# --------------------------------------------------------------------------
# F4: an entry lives as long as the sessions it must end


def test_lowering_max_session_duration_never_lets_a_live_session_outlive_its_deny(kill: KillSwitch) -> None:
    # A deployment with source credentials (ROLEBROKER_MAX_SESSION_SECONDS up to 12 h, docs/deploy.md):
    # sessions are not capped at role chaining's hour.
    kill.services.broker._limit = 7200
    issued = credentials(kill, kill.bob(), "prod-readonly")  # 7200 s: the role's MaxSessionDuration today
    assert issued.status_code == 200, issued.body
    expires = datetime.fromisoformat(issued.json_body["credentials"]["Expiration"])
    # An operator lowers ReadOnlyRole's MaxSessionDuration to make entries expire sooner; bob's 2-hour
    # session is still alive.
    iam_in(kill[PRODUCTION], kill.moto.client("sts"), client_with(kill.moto)).update_role(
        RoleName="ReadOnlyRole", MaxSessionDuration=3600)
    kill.clock.now += timedelta(minutes=1)
    assert kill.revoke("bob@example.com").status_code == 201
    [entry] = denies.entries_in(kill.boundary(kill[PRODUCTION]))
    assert entry.expires >= expires, f"bob's deny ends {entry.expires}, his session {expires}"


def test_an_entry_lives_at_least_the_brokers_own_session_cap(kill: KillSwitch) -> None:
    """No recorded session (issued before the record existed, say): the broker's cap bounds what it issued."""
    switch = kill.services.kill_switch
    assert switch._session_cap == kill.services.broker._limit  # both from ROLEBROKER_MAX_SESSION_SECONDS
    switch._session_cap = 7200
    iam_in(kill[PRODUCTION], kill.moto.client("sts"), client_with(kill.moto)).update_role(
        RoleName="ReadOnlyRole", MaxSessionDuration=3600)
    answer = kill.revoke("alice@example.com")
    assert answer.status_code == 201, answer.body
    cutoff = datetime.fromisoformat(answer.json_body["cutoff"])
    [entry] = denies.entries_in(kill.boundary(kill[PRODUCTION]))
    assert entry == denies.entry_for("alice@example.com", cutoff, 7200)


# --------------------------------------------------------------------------
# The per-account lease is fenced


def test_a_writer_stalled_past_its_lease_overwrites_nothing(kill: KillSwitch, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer took the account's lease while this one stalled: this one writes no document, retries."""
    store = kill.services.kill_switch._store
    real_put = store.put_entry
    stolen: list[str] = []
    writes: list[str] = []

    def stall_then_lose_the_lease(account_id: str, entry: Any, revocation_id: str) -> None:
        if account_id == kill[PRODUCTION] and not stolen:
            kill.clock.now += LEASE + timedelta(seconds=1)  # past this writer's lease
            assert store.lock(account_id, "another-writer", kill.clock.now, LEASE)
            stolen.append(account_id)
        real_put(account_id, entry, revocation_id)

    real_account = kill.services.kill_switch._revoker.account

    def counting(account_id: str, name: str) -> Any:
        boundary = real_account(account_id, name)
        real_write = boundary.write

        def write(document: Any) -> str:
            writes.append(account_id)
            return real_write(document)

        monkeypatch.setattr(boundary, "write", write)
        return boundary

    monkeypatch.setattr(store, "put_entry", stall_then_lose_the_lease)
    monkeypatch.setattr(kill.services.kill_switch._revoker, "account", counting)
    answer = kill.revoke("bob@example.com")
    production = answer.json_body["accounts"][kill[PRODUCTION]]
    # Its first attempt lost the lease after storing its entries; the retries found it held by the other.
    assert production["status"] == "failed" and "another revocation is writing" in production["detail"]
    assert kill[PRODUCTION] not in writes  # no document from the stalled writer, on any attempt
    assert denies.entries_in(kill.boundary(kill[PRODUCTION])) == []
    assert answer.json_body["accounts"][kill[SANDBOX]]["status"] == "written"
    store.unlock(kill[PRODUCTION], "another-writer")
    assert kill.revoke("bob@example.com").json_body["accounts"][kill[PRODUCTION]]["status"] == "written"


def late_writes(kill: KillSwitch, monkeypatch: pytest.MonkeyPatch, meanwhile: Any, times: int) -> list[str]:
    """IAM takes the first ``times`` boundary writes into production past the lease: ``meanwhile`` runs while
    each is under way (the client's retries and timeouts of its several IAM calls add up). Returns the versions
    IAM took, in order."""
    switch = kill.services.kill_switch
    real_account = switch._revoker.account
    versions: list[str] = []
    late: list[str] = []

    def slow_iam(account_id: str, name: str) -> Any:
        boundary = real_account(account_id, name)
        real_write = boundary.write

        def write(document: Any) -> str:
            if account_id == kill[PRODUCTION] and len(late) < times:
                late.append(account_id)
                kill.clock.now += LEASE + timedelta(seconds=1)
                meanwhile()
            version = real_write(document)
            if account_id == kill[PRODUCTION]:
                versions.append(version)
            return str(version)

        monkeypatch.setattr(boundary, "write", write)
        return boundary

    monkeypatch.setattr(switch._revoker, "account", slow_iam)
    return versions


# Re-attack of attack 11's fix (F1): renewing the lease just before the IAM write is no fence for a write
# that IAM itself takes past the lease.
def test_a_write_stalled_inside_iam_never_erases_the_next_writers_entry(
        kill: KillSwitch, monkeypatch: pytest.MonkeyPatch) -> None:
    carol: list[Any] = []
    versions = late_writes(kill, monkeypatch, lambda: carol.append(kill.revoke("carol@example.com")), times=1)
    bob = kill.revoke("bob@example.com")
    assert len(carol) == 1
    # Carol's document (bob's stored entry and hers) landed first, bob's older one after it; bob's check
    # after the write saw the lease gone, and its second attempt wrote every stored entry again.
    assert len(versions) == 3, versions
    assert carol[0].json_body["accounts"][kill[PRODUCTION]]["status"] == "written"
    production = bob.json_body["accounts"][kill[PRODUCTION]]
    assert (production["status"], production["attempts"]) == ("written", 2), production
    assert production["detail"].startswith(f"boundary version {versions[-1]}:")
    identities = {entry.source_identity for entry in denies.entries_in(kill.boundary(kill[PRODUCTION]))}
    assert identities == {"bob@example.com", "carol@example.com"}, identities


def test_a_write_that_never_lands_within_its_lease_fails_and_says_what_may_be_missing(
        kill: KillSwitch, monkeypatch: pytest.MonkeyPatch) -> None:
    store = kill.services.kill_switch._store

    def another_writer_takes_and_releases_the_lease() -> None:
        assert store.lock(kill[PRODUCTION], "another-writer", kill.clock.now, LEASE)
        store.unlock(kill[PRODUCTION], "another-writer")

    versions = late_writes(kill, monkeypatch, another_writer_takes_and_releases_the_lease, times=99)
    answer = kill.revoke("bob@example.com")
    production = answer.json_body["accounts"][kill[PRODUCTION]]
    assert answer.status_code == 207
    assert (production["status"], production["attempts"]) == ("failed", 4), production
    assert len(versions) == 4  # each attempt wrote, and each found its lease gone afterwards
    assert "after this writer's lease had passed to another revocation" in production["detail"]
    assert "gave up after 4 attempts" in production["detail"]
    assert "may lack the denies of a revocation written meanwhile" in production["detail"]
    assert kill.sleeps == [0.5, 1.0, 2.0]
    assert answer.json_body["accounts"][kill[SANDBOX]]["status"] == "written"


def test_the_lease_outlasts_the_longest_write_the_iam_clients_settings_allow(issuer: DevIssuer) -> None:
    """Read from the clients app.py really builds, so a change to their retries or timeouts moves the lease."""
    import app as app_module

    services = app_module._build_services(broker_environ(issuer, ROLEBROKER_TABLE="rolebroker-lease"))
    iam = services.kill_switch._revoker._client_for(
        "iam", {"aws_access_key_id": "AKIA" + "A" * 16, "aws_secret_access_key": "x" * 40,
                "aws_session_token": "t"})
    dynamodb = services.kill_switch._store._client
    worst = 0.0
    for client in (iam, dynamodb):
        config = client.meta.config
        assert config.retries["mode"] == "standard"
        worst = max(worst, limits.worst_call_seconds(config.retries["total_max_attempts"], config.connect_timeout,
                                                      config.read_timeout))
    # Renewing the lease (one DynamoDB call), then AccountBoundary.write's IAM calls, each at its worst.
    assert worst == limits.worst_call_seconds() == 3 * (3 + 5) + (1 + 5) + (2 + 5)
    assert LEASE.total_seconds() >= 1.5 * (1 + MAX_CALLS_PER_WRITE) * worst
    assert MAX_CALLS_PER_WRITE == 8  # two rounds of list, two deletes (five versions, three kept), create
