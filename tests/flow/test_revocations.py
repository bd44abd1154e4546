"""The kill switch end to end on a moto server: several trusting accounts, each with its own IAM.

moto scopes IAM by account and takes the account from the caller's
credentials, so ``devstack.trusting`` assumes a role into each account and
creates there what the StackSet would; the broker then assumes each
account's revoker role, as it does in AWS. moto does not enforce IAM
policies, so the documents written are read back and checked exactly, and
their effect on old and new sessions is evaluated in tests/deploy/test_revoker.py.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from chalice.test import Client

from chalicelib.access.policy import parse_policy
from chalicelib.audit import AuditLog
from chalicelib.aws.revocation_store import RevocationStore
from chalicelib.aws.store import create_table
from chalicelib.jit import denies
from chalicelib.stamping import session_name_for_key
from devstack.issuer import DevIssuer
from devstack.trusting import BROKER_ACCOUNT, iam_in, seed_trusting_accounts
from tests.conftest import CI_AUDIENCE, Moto, broker_environ
from tests.flow.conftest import FakeClock

# Placeholders: every test gets accounts of its own, so the session's one moto server never mixes their IAM.
SANDBOX, PRODUCTION, ORPHAN, EMERGENCY = "200000000001", "300000000001", "400000000001", "500000000001"
BROKER_ROLE = f"arn:aws:iam::{BROKER_ACCOUNT}:role/rolebroker-api"
POLICY = f"""\
version: 1
accounts:
  sandbox: {{id: "{SANDBOX}", region: eu-west-1}}
  production: {{id: "{PRODUCTION}", region: us-east-1}}
roles:
  sandbox-dev:
    account: sandbox
    role_name: /rolebroker/DevRole
    allow: [{{groups: [developers]}}]
  prod-readonly:
    account: production
    role_name: /rolebroker/ReadOnlyRole
    max_duration_seconds: 7200
    allow: [{{groups: [developers, sre]}}]
  prod-breakglass:
    account: production
    role_name: /rolebroker/BreakGlassRole
    allow: [{{groups: [developers]}}]
    approval: {{approvers: {{groups: [security]}}, max_grant_seconds: 7200}}
  dana-tools:
    account: sandbox
    role_name: /rolebroker/DanaRole
    allow: [{{claims: {{email: dana@example.com}}}}]
admins: [{{groups: [security]}}]
auditors: [{{groups: [audit]}}]
"""
ORPHAN_ROLE = """  orphan:
    account: orphan
    role_name: /rolebroker/OrphanRole
    allow: [{groups: [developers]}]
"""


def with_orphan(policy: str) -> str:
    """The policy plus an account where nobody deployed the StackSet (no revoker, no boundary)."""
    return policy.replace("roles:\n", f"  orphan: {{id: \"{ORPHAN}\", region: us-east-1}}\nroles:\n", 1) \
        .replace("admins:", ORPHAN_ROLE + "admins:", 1)


@dataclass
class KillSwitch:
    client: Client
    issuer: DevIssuer
    moto: Moto
    clock: FakeClock
    services: Any
    policy_path: Path
    table: str
    audit_lines: list[str]
    sleeps: list[float] = field(default_factory=list)
    accounts: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, placeholder: str) -> str:
        """This test's account id for a placeholder (SANDBOX, PRODUCTION, ORPHAN, EMERGENCY)."""
        return self.accounts[placeholder]

    def call(self, method: str, path: str, token: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        http = self.client.http
        if method == "GET":
            return http.get(path, headers=headers)
        if method == "DELETE":
            return http.delete(path, headers=headers)
        return http.post(path, headers=headers, body=json.dumps(body) if body is not None else "")

    def sam(self, mfa: bool = True) -> str:
        return self.issuer.mint("sam@example.com", groups=["security"], mfa=mfa)

    def bob(self) -> str:
        return self.issuer.mint("bob@example.com", groups=["developers"])

    def revoke(self, identity: str, token: str | None = None) -> Any:
        return self.call("POST", "/v1/revocations", token or self.sam(),
                         {"identity": identity, "reason": "laptop stolen, INC-7"})

    def boundary(self, account: str) -> dict[str, Any]:
        iam = iam_in(account, self.moto.client("sts"), client_with(self.moto))
        arn = denies.boundary_arn(account)
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
        return json.loads(document) if isinstance(document, str) else dict(document)

    def audits(self, action: str) -> list[dict[str, Any]]:
        return [e for e in map(json.loads, self.audit_lines) if e["action"] == action]


def client_with(moto: Moto) -> Any:
    def make(service: str, creds: dict[str, str]) -> Any:
        return boto3.client(service, region_name="us-east-1", endpoint_url=moto.url, **creds)  # type: ignore[call-overload]

    return make


def build(issuer: DevIssuer, moto: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy_text: str,
          wrap_iam: Any = None) -> KillSwitch:
    import app as app_module

    table = f"rolebroker-{uuid.uuid4().hex[:8]}"
    create_table(moto.client("dynamodb"), table)
    accounts = {p: f"{secrets.randbelow(10**11) + 10**11:012d}" for p in (SANDBOX, PRODUCTION, ORPHAN, EMERGENCY)}
    for placeholder, account in accounts.items():
        policy_text = policy_text.replace(placeholder, account)
    policy_path = tmp_path / "policy.yaml"
    policy_path.write_text(policy_text)
    seed_trusting_accounts(parse_policy(policy_text), moto.client("sts"), client_with(moto), [BROKER_ROLE],
                           skip=[accounts[ORPHAN]])
    clock = FakeClock()
    lines: list[str] = []
    sleeps: list[float] = []
    make = client_with(moto)
    services = app_module._build_services(
        broker_environ(issuer, ROLEBROKER_POLICY=str(policy_path), ROLEBROKER_TABLE=table),
        client_factory=moto.client, audit=AuditLog(emit=lines.append), clock=clock,
        client_with=(lambda s, c: wrap_iam(make(s, c))) if wrap_iam else make, sleep=sleeps.append)
    monkeypatch.setattr(app_module, "_services", services)
    return KillSwitch(Client(app_module.app), issuer, moto, clock, services, policy_path, table, lines, sleeps,
                      accounts)


@pytest.fixture
def kill(issuer: DevIssuer, moto_server: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KillSwitch]:
    switch = build(issuer, moto_server, tmp_path, monkeypatch, POLICY)
    with switch.client:
        yield switch


def credentials(kill: KillSwitch, token: str, role: str) -> Any:
    return kill.call("POST", "/v1/credentials", token, {"role": role})


# --------------------------------------------------------------------------
# Revoking a person


def test_a_revocation_writes_the_exact_deny_in_every_account_the_person_could_reach(kill: KillSwitch) -> None:
    assert credentials(kill, kill.bob(), "prod-readonly").status_code == 200  # a live session, before
    answer = kill.revoke("Bob@Example.com")  # any case: one principal
    assert answer.status_code == 201, answer.body
    body = answer.json_body
    assert (body["identity"], body["source_identity"], body["status"], body["state"]) == (
        "bob@example.com", "bob@example.com", "complete", "in_force")
    assert body["revoked_by"] == "sam@example.com" and body["reason"] == "laptop stolen, INC-7"
    # Every role a developer could use or request (dana-tools names someone else).
    assert body["roles"] == ["sandbox-dev", "prod-readonly", "prod-breakglass"]
    assert sorted(body["accounts"]) == sorted([kill[SANDBOX], kill[PRODUCTION]])
    assert all(o["status"] == "written" and o["attempts"] == 1 for o in body["accounts"].values())
    cutoff = datetime.fromisoformat(body["cutoff"])
    assert cutoff == kill.clock.now + timedelta(seconds=30)
    # Each account's boundary is exactly the base Allow and bob's deny, expiring with the longest session there.
    sandbox = denies.entry_for("bob@example.com", cutoff, 3600)
    production = denies.entry_for("bob@example.com", cutoff, 7200)
    assert kill.boundary(kill[SANDBOX]) == denies.render([sandbox], kill.clock.now)
    assert kill.boundary(kill[PRODUCTION]) == denies.render([production], kill.clock.now)
    assert denies.entries_in(kill.boundary(kill[PRODUCTION])) == [production]
    assert body["warnings"] == []  # bob asked for credentials above: the broker has seen him
    stranger = kill.revoke("bbo@example.com").json_body  # a typo still reaches every group rule: no 404
    assert stranger["warnings"] == ["the broker has no record of bbo@example.com signing in within the last 12 "
                                    "hours: check the spelling. The revocation stands either way (it also refuses "
                                    "them future credentials)."]
    [recorded, done, *_] = kill.audits("revoke-sessions")
    assert (recorded["outcome"], done["outcome"]) == ("recorded", "complete")
    assert recorded["about"] == "bob@example.com" and done["accounts_failed"] == []


def test_a_revoked_person_gets_no_credentials_until_an_admin_lifts_it(kill: KillSwitch) -> None:
    revocation = kill.revoke("bob@example.com").json_body["id"]
    refused = credentials(kill, kill.bob(), "prod-readonly")
    assert refused.status_code == 403
    assert f"revocation {revocation}" in refused.json_body["Message"]
    assert "until an admin lifts it" in refused.json_body["Message"]
    assert credentials(kill, kill.issuer.mint("alice@example.com", groups=["developers"]),
                       "prod-readonly").status_code == 200  # only bob
    assert [a["outcome"] for a in kill.audits("credentials")][-2:] == ["denied", "allowed"]
    lifted = kill.call("DELETE", f"/v1/revocations/{revocation}", kill.sam())
    assert lifted.status_code == 200, lifted.body
    assert (lifted.json_body["state"], lifted.json_body["ended_by"]) == ("lifted", "sam@example.com")
    assert credentials(kill, kill.bob(), "prod-readonly").status_code == 200
    # Lifting never removes the deny: sessions from before the cutoff stay dead.
    assert len(denies.entries_in(kill.boundary(kill[PRODUCTION]))) == 1
    assert kill.call("DELETE", f"/v1/revocations/{revocation}", kill.sam()).status_code == 400


def test_revocations_are_listed_newest_first_for_admins_and_auditors(kill: KillSwitch) -> None:
    first = kill.revoke("bob@example.com").json_body["id"]
    kill.clock.now += timedelta(seconds=5)
    second = kill.revoke("dana@example.com").json_body["id"]
    auditor = kill.issuer.mint("ann@example.com", groups=["audit"])
    listed = kill.call("GET", "/v1/revocations", auditor)
    assert listed.status_code == 200
    assert [r["id"] for r in listed.json_body["revocations"]] == [second, first]
    assert listed.json_body["revocations"][0]["roles"] == ["sandbox-dev", "prod-readonly", "prod-breakglass",
                                                           "dana-tools"]
    page = kill.call("GET", "/v1/revocations?limit=1", auditor).json_body
    assert [r["id"] for r in page["revocations"]] == [second] and page["next_token"]
    rest = kill.call("GET", f"/v1/revocations?limit=1&next_token={page['next_token']}", auditor).json_body
    assert [r["id"] for r in rest["revocations"]] == [first]
    assert kill.call("GET", f"/v1/revocations/{first}", auditor).json_body["identity"] == "bob@example.com"
    assert kill.call("GET", "/v1/revocations", kill.bob()).status_code == 403
    assert kill.call("GET", "/v1/revocations/0000000000000000", auditor).status_code == 404


# --------------------------------------------------------------------------
# Bad input: refused before anything is written


@pytest.mark.parametrize(("token", "identity", "status", "message"), [
    ("bob", "alice@example.com", 403, "only the policy's admins (group security) may revoke sessions"),
    ("sam-no-mfa", "bob@example.com", 403, "requires MFA"),
    ("sam", "sam@example.com", 403, "you cannot revoke your own sessions"),
    ("sam", "gitlab|someone", 404, "names issuer 'gitlab', which the access policy does not declare"),
    # No token could carry it (emails are ASCII only, docs/security.md, identity model): a 400, never a 500.
    ("sam", "k\u0430te@example.com", 400, "'identity' cannot name anyone: the email claim is not plain ASCII"),
])
def test_refusals_write_nothing(kill: KillSwitch, token: str, identity: str, status: int, message: str) -> None:
    tokens = {"bob": kill.bob(), "sam": kill.sam(), "sam-no-mfa": kill.sam(mfa=False)}
    answer = kill.revoke(identity, tokens[token])
    assert answer.status_code == status, answer.body
    assert message in answer.json_body["Message"]
    assert kill.call("GET", "/v1/revocations", kill.sam()).json_body["revocations"] == []
    assert denies.entries_in(kill.boundary(kill[SANDBOX])) == []
    assert kill.audits("revoke-sessions")[-1]["outcome"] == "denied" if status == 403 else True


def test_bad_bodies_are_400(kill: KillSwitch) -> None:
    for body in ({"identity": "bob@example.com"}, {"identity": 7, "reason": "x1"},
                 {"identity": "bob@example.com", "reason": "x1", "extra": 1}, {"identity": "", "reason": "r1"},
                 {"identity": "bob\n@example.com", "reason": "r1"}):
        answer = kill.call("POST", "/v1/revocations", kill.sam(), body)
        assert answer.status_code == 400, (body, answer.body)


CI_ISSUER = "issuers:\n  ci: {url: CI_URL, audiences: [CI_AUDIENCE], identity_claim: sub}\naccounts:\n"
CI_POLICY = POLICY.replace("accounts:\n", CI_ISSUER, 1).replace("admins:", """  ci-deploy:
    account: sandbox
    role_name: /rolebroker/DeployRole
    allow: [{issuer: ci, claims: {repository: acme/infra}}]
admins:""", 1)


def test_a_ci_jobs_deny_names_exactly_the_source_identity_its_sessions_carry(
        issuer: DevIssuer, ci_issuer: DevIssuer, moto_server: Moto, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A hashed principal key: the deny's aws:SourceIdentity is what the broker stamped, character for character."""
    policy = CI_POLICY.replace("CI_URL", f'"{ci_issuer.url}"').replace("CI_AUDIENCE", CI_AUDIENCE)
    switch = build(issuer, moto_server, tmp_path, monkeypatch, policy)
    job = ci_issuer.mint("", claims={"repository": "acme/infra", "ref": "refs/heads/main"})
    with switch.client:
        issued = credentials(switch, job, "ci-deploy")
        assert issued.status_code == 200, issued.body
        stamped = issued.json_body["source_identity"]
        assert issued.json_body["assumed_role_arn"].endswith(f"/DeployRole/{stamped}")
        key = "ci|repo:acme/infra:ref:refs/heads/main"
        assert stamped == session_name_for_key(key) and re.search(r"-[0-9a-f]{16}\Z", stamped)
        answer = switch.revoke(key)
        assert answer.status_code == 201, answer.body
        assert (answer.json_body["identity"], answer.json_body["source_identity"]) == (key, stamped)
        [entry] = denies.entries_in(switch.boundary(switch[SANDBOX]))
        assert entry.source_identity == stamped
        assert credentials(switch, job, "ci-deploy").status_code == 403


def test_nobody_the_policy_could_ever_grant_is_a_404(issuer: DevIssuer, moto_server: Moto, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """'Unknown': a principal no rule can ever match, whatever groups they hold."""
    only_named = POLICY.replace("allow: [{groups: [developers]}]", "allow: [{claims: {email: dana@example.com}}]") \
        .replace("allow: [{groups: [developers, sre]}]", "allow: [{claims: {email: dana@example.com}}]")
    switch = build(issuer, moto_server, tmp_path, monkeypatch, only_named)
    with switch.client:
        answer = switch.revoke("nobody@example.com")
        assert answer.status_code == 404
        assert "no role in the access policy could ever be granted to 'nobody@example.com'" in \
            answer.json_body["Message"]
        assert switch.revoke("dana@example.com").status_code == 201


# --------------------------------------------------------------------------
# Partial failures: retried, recorded, reported


def test_an_account_without_a_revoker_is_a_recorded_failure_and_a_207(
        issuer: DevIssuer, moto_server: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    switch = build(issuer, moto_server, tmp_path, monkeypatch, with_orphan(POLICY))
    with switch.client:
        answer = switch.revoke("bob@example.com")
        assert answer.status_code == 207, answer.body
        body = answer.json_body
        assert body["status"] == "partial" and body["Message"] == "1 account(s) not fully revoked"
        orphan = body["accounts"][switch[ORPHAN]]
        assert orphan["status"] == "failed" and orphan["attempts"] == 1  # a missing revoker is not retried
        assert "deploy the trusting-account StackSet there" in orphan["detail"]
        assert {body["accounts"][switch[a]]["status"] for a in (SANDBOX, PRODUCTION)} == {"written"}
        stored = switch.call("GET", f"/v1/revocations/{body['id']}", switch.sam()).json_body
        assert stored["accounts"] == body["accounts"]  # the record says the same
        assert switch.audits("revoke-sessions")[-1]["accounts_failed"] == [switch[ORPHAN]]


class Throttling:
    """An IAM client whose first CreatePolicyVersion calls are throttled."""

    def __init__(self, inner: Any, failures: list[int]) -> None:
        self._inner = inner
        self._failures = failures

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)
        if name != "create_policy_version":
            return method

        def throttled(**kwargs: Any) -> Any:
            if self._failures and self._failures[0] > 0:
                self._failures[0] -= 1
                raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}},
                                  "CreatePolicyVersion")
            return method(**kwargs)

        return throttled


def test_throttling_is_retried_with_backoff_and_says_how_many_attempts(
        issuer: DevIssuer, moto_server: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    only_sandbox = POLICY.replace("account: production", "account: sandbox")
    failures = [2]
    switch = build(issuer, moto_server, tmp_path, monkeypatch, only_sandbox,
                   wrap_iam=lambda client: Throttling(client, failures))
    with switch.client:
        answer = switch.revoke("bob@example.com")
        assert answer.status_code == 201, answer.body
        assert answer.json_body["accounts"][switch[SANDBOX]]["attempts"] == 3
        assert switch.sleeps == [0.5, 1.0]  # exponential backoff, through the injected sleep
        failures[0] = 10
        again = switch.revoke("alice@example.com")
        assert again.status_code == 502, again.body
        assert again.json_body["Code"] == "BadGatewayError"
        failed = again.json_body["revocation"]["accounts"][switch[SANDBOX]]
        assert failed["status"] == "failed" and failed["attempts"] == 4
        assert "gave up after 4 attempts" in failed["detail"] and "throttling" in failed["detail"]


def test_a_full_boundary_refuses_the_next_revocation_and_keeps_every_live_entry(kill: KillSwitch) -> None:
    store = RevocationStore(kill.moto.client("dynamodb"), kill.table)
    fits = denies.capacity(len("person-00@example.com"))
    cutoff = kill.clock.now
    for n in range(fits):
        store.put_entry(kill[SANDBOX], denies.entry_for(f"person-{n:02d}@example.com", cutoff, 3600), "0" * 16)
    answer = kill.revoke("bob@example.com")
    assert answer.status_code == 207, answer.body
    sandbox = answer.json_body["accounts"][kill[SANDBOX]]
    assert sandbox["status"] == "failed" and "over IAM's managed policy quota of 6,144; nothing was written" in \
        sandbox["detail"]
    assert denies.entries_in(kill.boundary(kill[SANDBOX])) == []  # nothing written there, nothing dropped
    assert len(store.entries(kill[SANDBOX])) == fits
    assert answer.json_body["accounts"][kill[PRODUCTION]]["status"] == "written"
    # Once the earlier entries have expired, the same revocation fits.
    kill.clock.now += timedelta(hours=2)
    assert kill.revoke("bob@example.com").status_code == 201
    assert [e.source_identity for e in denies.entries_in(kill.boundary(kill[SANDBOX]))] == ["bob@example.com"]
    assert [e.source_identity for e in store.entries(kill[SANDBOX])] == ["bob@example.com"]  # the rest collected


# --------------------------------------------------------------------------
# JIT grants: credentials never outlive the grant


def test_revoking_a_grant_ends_that_roles_sessions(kill: KillSwitch) -> None:
    carol = kill.issuer.mint("carol@example.com", groups=["security"])
    created = kill.call("POST", "/v1/requests", kill.bob(),
                        {"role": "prod-breakglass", "duration_seconds": 3600, "reason": "INC-9 db down"})
    request_id = created.json_body["id"]
    assert kill.call("POST", f"/v1/requests/{request_id}/approve", carol).status_code == 200
    assert credentials(kill, kill.bob(), "prod-breakglass").status_code == 200
    revoked = kill.call("POST", f"/v1/requests/{request_id}/revoke", carol, {"reason": "done early"})
    assert revoked.status_code == 200, revoked.body
    sessions = revoked.json_body["sessions"]
    assert (sessions["kind"], sessions["status"], sessions["request"]) == ("grant", "complete", request_id)
    assert list(sessions["accounts"]) == [kill[PRODUCTION]]
    role = f"arn:aws:iam::{kill[PRODUCTION]}:role/rolebroker/BreakGlassRole"
    [entry] = denies.entries_in(kill.boundary(kill[PRODUCTION]))
    assert (entry.source_identity, entry.role_arn) == ("bob@example.com", role)
    assert entry.cutoff == denies.entry_for("x", kill.clock.now + timedelta(seconds=30), 0).cutoff
    # A grant revocation refuses nothing else: bob keeps his other roles.
    assert credentials(kill, kill.bob(), "prod-readonly").status_code == 200


# --------------------------------------------------------------------------
# "Until the policy changes"


def test_a_revocation_ends_when_the_policy_changes_what_it_says_about_the_person_by_name(kill: KillSwitch) -> None:
    dana = kill.issuer.mint("dana@example.com", groups=[])
    revocation = kill.revoke("dana@example.com").json_body["id"]
    assert credentials(kill, dana, "dana-tools").status_code == 403
    policy = kill.services.kill_switch
    # A change about groups (a new role for developers, which dana might be in) leaves it in force.
    grown = kill.policy_path.read_text().replace("admins:", "  extra:\n    account: sandbox\n"
                                                 "    role_name: /rolebroker/Extra\n"
                                                 "    allow: [{groups: [developers]}]\nadmins:")
    assert policy.policy_changed(parse_policy(grown)) == 0
    # The admin removes dana's rule from the policy: a decision about her by name; the revocation is over.
    without = POLICY.replace("  dana-tools:\n    account: sandbox\n    role_name: /rolebroker/DanaRole\n"
                             "    allow: [{claims: {email: dana@example.com}}]\n", "")
    assert policy.policy_changed(parse_policy(without)) == 1
    ended = kill.call("GET", f"/v1/revocations/{revocation}", kill.sam()).json_body
    assert (ended["state"], ended["ended_by"]) == ("ended_by_policy", "the access policy")
    # Granting her again later is a reviewed decision that stands on its own.
    assert credentials(kill, dana, "dana-tools").status_code == 200
    assert kill.audits("lift-revocation")[-1]["outcome"] == "ended_by_policy"


SHARED = POLICY.replace("allow: [{claims: {email: dana@example.com}}]",
                        "allow: [{claims: {email: [dana@example.com, erin@example.com]}}]")


def test_someone_else_added_to_a_shared_rule_leaves_the_revocation_in_force(
        issuer: DevIssuer, moto_server: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ATTACK11 F1: a rule listing dana and erin; a pull request adding frank is about frank, not dana."""
    switch = build(issuer, moto_server, tmp_path, monkeypatch, SHARED)

    def served(text: str) -> Any:
        for placeholder, account in switch.accounts.items():
            text = text.replace(placeholder, account)
        return parse_policy(text)

    with switch.client:
        dana = switch.issuer.mint("dana@example.com", groups=[])
        revocation = switch.revoke("dana@example.com").json_body["id"]
        assert credentials(switch, dana, "dana-tools").status_code == 403
        kill_switch = switch.services.kill_switch
        listed = "[dana@example.com, erin@example.com]"
        for others in ("[dana@example.com, erin@example.com, frank@example.com]", "[dana@example.com]"):
            assert kill_switch.policy_changed(served(SHARED.replace(listed, others))) == 0, others
        state = switch.call("GET", f"/v1/revocations/{revocation}", switch.sam()).json_body["state"]
        assert state == "in_force"
        assert credentials(switch, dana, "dana-tools").status_code == 403
        # Taking dana herself out of the shared rule is about her: it ends the revocation.
        assert kill_switch.policy_changed(served(SHARED.replace(listed, "[erin@example.com]"))) == 1
        state = switch.call("GET", f"/v1/revocations/{revocation}", switch.sam()).json_body["state"]
        assert state == "ended_by_policy"


# --------------------------------------------------------------------------
# Past the API's deadline, the worker finishes


class HeldAssume:
    """An STS client whose AssumeRole into one account waits until released (a slow account)."""

    def __init__(self, inner: Any, account: str) -> None:
        self._inner = inner
        self._account = account
        self.release = threading.Event()

    def assume_role(self, **kwargs: Any) -> Any:
        if f"::{self._account}:" in kwargs["RoleArn"]:
            self.release.wait(timeout=60)
        return self._inner.assume_role(**kwargs)


def test_accounts_left_at_the_deadline_are_handed_to_the_worker_and_finished_there(kill: KillSwitch) -> None:
    from chalicelib.audit import CallContext
    from chalicelib.aws.iam import Revoker
    from chalicelib.identity.tokens import Identity
    from chalicelib.jit.revocations import Revocations

    policy = parse_policy(kill.policy_path.read_text())
    store = RevocationStore(kill.moto.client("dynamodb"), kill.table)
    held = HeldAssume(kill.moto.client("sts"), kill[PRODUCTION])

    def revocations(sts: Any, deadline: float) -> Revocations:
        return Revocations(policy=lambda: policy, store=store, revoker=Revoker(sts, client_with(kill.moto)),
                           audit=AuditLog(emit=kill.audit_lines.append), clock=kill.clock, sleep=kill.sleeps.append,
                           deadline_seconds=deadline)

    api = revocations(held, deadline=5)  # generous: the sandbox account must land before it
    handed: list[str] = []
    api.handoff = handed.append
    admin = Identity(subject="sam@example.com", groups=frozenset({"security"}), claims={"amr": ["mfa"]})
    try:
        answered = api.revoke(admin, "bob@example.com", "laptop stolen", context=CallContext(request_id="r1"))
        assert answered.status == "in_progress"
        assert answered.accounts[kill[SANDBOX]].status == "written"
        assert answered.accounts[kill[PRODUCTION]].status == "pending"
        assert handed == [answered.id]
        assert store.get(answered.id).accounts[kill[PRODUCTION]].status == "pending"  # the record says so too
        finished = revocations(kill.moto.client("sts"), deadline=30).resume(answered.id,
                                                                          context=CallContext(request_id="w1"))
        assert finished.status == "complete"
        assert [e.source_identity for e in denies.entries_in(kill.boundary(kill[PRODUCTION]))] == ["bob@example.com"]
    finally:
        held.release.set()


def test_credentials_issued_while_a_revocation_is_recorded_never_leave_the_broker(
        kill: KillSwitch, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race: the decision allowed bob, then an admin revoked him, then STS answered. The refusal is
    checked after AssumeRole, so these credentials stay in the broker; and the cutoff covers them anyway."""
    from chalicelib.audit import CallContext
    from chalicelib.identity.tokens import Identity

    broker_sts = kill.services.broker._sts
    real_assume = broker_sts.assume
    issued: list[datetime] = []

    def assume_then_revoked(**kwargs: Any) -> Any:
        session = real_assume(**kwargs)
        issued.append(kill.clock.now)
        admin = Identity(subject="sam@example.com", groups=frozenset({"security"}), claims={"amr": ["mfa"]})
        kill.services.kill_switch.revoke(admin, "bob@example.com", "in the middle",
                                         context=CallContext(request_id="race"))
        return session

    monkeypatch.setattr(broker_sts, "assume", assume_then_revoked)
    answer = credentials(kill, kill.bob(), "prod-readonly")
    assert answer.status_code == 403 and "revoked your sessions" in answer.json_body["Message"]
    assert "credentials" not in answer.json_body
    [cutoff] = {e.cutoff for e in denies.entries_in(kill.boundary(kill[PRODUCTION]))}
    assert issued[0] < cutoff  # the session that stayed in the broker is denied in AWS too
