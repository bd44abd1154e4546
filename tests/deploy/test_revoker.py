"""The kill switch's IAM side, on the generated documents: the revocations boundary, the revoker role,
and why the revoker cannot widen any role (evaluated with tests/iam_eval.py, checked with parliament)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from chalicelib.access.policy import parse_policy
from chalicelib.jit import denies
from infra.revoker import BOUNDARY_ACTIONS, ROLE_ACTIONS, revoker_policy, revoker_trust_policy
from infra.trusting import Broker, plan_stacksets
from tests import iam_eval
from tests.deploy.test_generate import parliament_findings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "infra" / "example-access-policy.yaml"
BROKER = "arn:aws:iam::111111111111:role/rolebroker-prod-api_handler"
WORKER = "arn:aws:iam::111111111111:role/rolebroker-prod-slack_worker"
ACCOUNT = "222222222222"
BOUNDARY = denies.boundary_arn(ACCOUNT)
ROLE = f"arn:aws:iam::{ACCOUNT}:role/rolebroker/ReadOnlyRole"
OTHER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/rolebroker/AdminRole"
NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
READ_ONLY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:ListAllMyBuckets", "ec2:Describe*"], "Resource": "*"}]}


def resolved_revoker_policy() -> dict[str, Any]:
    """The revoker's policy as IAM holds it in account 222222222222."""
    return revoker_policy(BOUNDARY, f"arn:aws:iam::{ACCOUNT}:role/rolebroker/*")


def session(identity: str, issued: datetime, role: str = ROLE) -> dict[str, Any]:
    return {"aws:SourceIdentity": identity, "aws:TokenIssueTime": issued.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "aws:PrincipalArn": role}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    policy = parse_policy(EXAMPLE.read_text(), str(EXAMPLE))
    [part] = plan_stacksets(policy, Broker.from_arns([BROKER, WORKER]))
    loaded: dict[str, Any] = yaml.safe_load(part.body)  # what is deployed is what is checked
    return loaded


# --------------------------------------------------------------------------
# The template


def test_every_broker_role_has_the_revocations_boundary_and_it_starts_narrowing_nothing(
        template: dict[str, Any]) -> None:
    resources = template["Resources"]
    roles = {name: r for name, r in resources.items() if r["Type"] == "AWS::IAM::Role" and name != "Revoker"}
    assert sorted(roles) == ["BreakGlassRole", "CrossAccountAdminRole", "ReadOnlyRole"]
    expected = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/rolebroker-system/"
                           "rolebroker-revocations"}
    for role in roles.values():
        assert role["Properties"]["PermissionsBoundary"] == expected
        assert role["DependsOn"] == "RevocationsBoundary"
    boundary = resources["RevocationsBoundary"]
    assert boundary["Type"] == "AWS::IAM::ManagedPolicy"
    assert boundary["Properties"]["ManagedPolicyName"] == "rolebroker-revocations"
    assert boundary["Properties"]["Path"] == "/rolebroker-system/"
    assert boundary["Properties"]["PolicyDocument"] == {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "BoundaryDoesNotNarrow", "Effect": "Allow", "Action": "*", "Resource": "*"}]}
    assert "PermissionsBoundaryArn" not in template["Parameters"]  # the one boundary slot is the kill switch's


def test_the_revoker_role_is_exactly_the_generated_documents(template: dict[str, Any]) -> None:
    revoker = template["Resources"]["Revoker"]["Properties"]
    assert (revoker["RoleName"], revoker["Path"]) == ("rolebroker-revoker", "/rolebroker-system/")
    root = {"Fn::Sub": "arn:${AWS::Partition}:iam::${TrustedAccountId}:root"}
    assert revoker["AssumeRolePolicyDocument"] == revoker_trust_policy(root, {"Ref": "BrokerPrincipalArns"})
    [inline] = revoker["Policies"]
    boundary = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/rolebroker-system/"
                           "rolebroker-revocations"}
    roles = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/rolebroker/*"}
    assert inline["PolicyDocument"] == revoker_policy(boundary, roles)
    assert [s["Effect"] for s in inline["PolicyDocument"]["Statement"]] == ["Allow", "Allow", "Deny", "Deny", "Deny"]


# --------------------------------------------------------------------------
# The widening hole, closed


DANGEROUS = [
    ("iam:PutRolePolicy", ROLE), ("iam:AttachRolePolicy", ROLE), ("iam:PutRolePermissionsBoundary", ROLE),
    ("iam:DeleteRolePermissionsBoundary", ROLE), ("iam:UpdateAssumeRolePolicy", ROLE), ("iam:DeleteRolePolicy", ROLE),
    ("iam:DetachRolePolicy", ROLE), ("iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/rolebroker/New"),
    ("iam:PassRole", ROLE), ("iam:SetDefaultPolicyVersion", BOUNDARY), ("iam:DeletePolicy", BOUNDARY),
    ("iam:CreatePolicyVersion", f"arn:aws:iam::{ACCOUNT}:policy/SomeTeamsPolicy"),
    ("iam:CreatePolicyVersion", f"arn:aws:iam::{ACCOUNT}:policy/rolebroker-system/rolebroker-revocations-2"),
    ("iam:GetRole", f"arn:aws:iam::{ACCOUNT}:role/rolebroker-system/rolebroker-revoker"),
    ("iam:CreateUser", f"arn:aws:iam::{ACCOUNT}:user/mallory"), ("sts:AssumeRole", ROLE), ("s3:GetObject", "*"),
]


@pytest.mark.parametrize(("action", "resource"), DANGEROUS)
def test_the_revoker_can_change_no_role_and_no_other_policy(action: str, resource: str) -> None:
    policy = resolved_revoker_policy()
    assert iam_eval.decide([policy], action, resource, {}) == iam_eval.EXPLICIT_DENY
    # ...even if someone later attaches AdministratorAccess to the revoker.
    admin = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    assert iam_eval.decide([policy, admin], action, resource, {}) == iam_eval.EXPLICIT_DENY


def test_the_revoker_can_do_exactly_its_job() -> None:
    policy = resolved_revoker_policy()
    for action in BOUNDARY_ACTIONS:
        assert iam_eval.decide([policy], action, BOUNDARY, {}) == iam_eval.ALLOWED
    for action in ROLE_ACTIONS:
        assert iam_eval.decide([policy], action, ROLE, {}) == iam_eval.ALLOWED


def test_what_the_revoker_writes_into_the_boundary_can_only_take_permissions_away() -> None:
    """The hole: IAM cannot limit a writer to deny-only content. Write the worst it could: Allow iam:*."""
    entry = denies.entry_for("bob@example.com", NOW, 3600)
    document = denies.render([entry], NOW + timedelta(seconds=1))
    rogue = copy.deepcopy(document)
    rogue["Statement"].append({"Sid": "Rogue", "Effect": "Allow", "Action": "iam:*", "Resource": "*"})
    carol = session("carol@example.com", NOW)
    for boundary in (document, rogue):
        # The role's own policy is read-only; nothing in its boundary makes it more.
        assert iam_eval.decide([READ_ONLY], "iam:CreateUser", "*", carol, boundary=boundary) == \
            iam_eval.IMPLICIT_DENY
        assert iam_eval.decide([READ_ONLY], "s3:ListAllMyBuckets", "*", carol, boundary=boundary) == iam_eval.ALLOWED


def test_each_deny_ends_older_sessions_of_that_person_only() -> None:
    """Old and new sessions' request context against the generated document."""
    entry = denies.entry_for("bob@example.com", NOW, 3600)
    boundary = denies.render([entry], NOW)
    old = session("bob@example.com", NOW - timedelta(minutes=40))
    same_second = session("bob@example.com", NOW)
    new = session("bob@example.com", NOW + timedelta(seconds=1))
    other = session("alice@example.com", NOW - timedelta(minutes=40))
    decide = lambda ctx: iam_eval.decide([READ_ONLY], "s3:ListAllMyBuckets", "*", ctx, boundary=boundary)  # noqa: E731
    assert decide(old) == iam_eval.EXPLICIT_DENY
    assert decide(same_second) == iam_eval.ALLOWED  # cutoff is whole seconds: the revocation time rounded up
    assert decide(new) == iam_eval.ALLOWED
    assert decide(other) == iam_eval.ALLOWED
    # No SourceIdentity (a session the broker did not issue) is untouched: StringEquals on a missing key.
    assert decide({"aws:TokenIssueTime": "2025-03-01T11:00:00Z"}) == iam_eval.ALLOWED


def test_a_grant_deny_ends_that_roles_sessions_only() -> None:
    entry = denies.entry_for("bob@example.com", NOW, 3600, role_arn=ROLE)
    boundary = denies.render([entry], NOW)
    old = NOW - timedelta(minutes=5)
    assert iam_eval.decide([READ_ONLY], "ec2:DescribeInstances", "*", session("bob@example.com", old, ROLE),
                           boundary=boundary) == iam_eval.EXPLICIT_DENY
    assert iam_eval.decide([READ_ONLY], "ec2:DescribeInstances", "*", session("bob@example.com", old, OTHER_ROLE),
                           boundary=boundary) == iam_eval.ALLOWED


def test_the_revoker_trust_refuses_stamped_or_tagged_sessions_and_everyone_but_the_broker() -> None:
    root = "arn:aws:iam::111111111111:root"
    trust = revoker_trust_policy(root, [BROKER, WORKER])
    broker = {"aws:PrincipalArn": BROKER}
    assert iam_eval.trust_allows(trust, root, "sts:AssumeRole", broker)
    assert not iam_eval.trust_allows(trust, root, "sts:AssumeRole", {**broker, "sts:SourceIdentity": "bob"})
    assert not iam_eval.trust_allows(trust, root, "sts:SetSourceIdentity", broker)
    assert not iam_eval.trust_allows(trust, root, "sts:TagSession", broker)
    assert not iam_eval.trust_allows(trust, root, "sts:AssumeRole",
                                     {"aws:PrincipalArn": "arn:aws:iam::111111111111:role/someone-else"})
    assert not iam_eval.trust_allows(trust, "arn:aws:iam::999999999999:root", "sts:AssumeRole", broker)


def test_parliament_finds_nothing_in_the_revoker_and_boundary_documents() -> None:
    assert parliament_findings(resolved_revoker_policy()) == []
    full = denies.render([denies.entry_for("bob@example.com", NOW, 3600),
                          denies.entry_for("ci-repo-acme-infra-0123456789", NOW, 3600, role_arn=ROLE)], NOW)
    assert parliament_findings(full) == []
    trust = revoker_trust_policy("arn:aws:iam::111111111111:root", [BROKER])
    for statement in trust["Statement"]:  # as in test_generate: a trust policy read as an identity policy
        statement.pop("Principal")
        statement["Resource"] = denies.revoker_arn(ACCOUNT)
    assert parliament_findings(trust) == []


# --------------------------------------------------------------------------
# The evaluator itself, on answers AWS documents


def test_the_evaluator_agrees_with_the_iam_user_guide() -> None:
    # AWS's own "Revoke active sessions" policy (AWSRevokeOlderSessions): deny every older token.
    revoke_older = {"Statement": [{"Effect": "Deny", "Action": ["*"], "Resource": ["*"],
                                   "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2025-03-01T12:00:00Z"}}}]}
    allow_all = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    assert iam_eval.decide([allow_all, revoke_older], "s3:GetObject", "*",
                           {"aws:TokenIssueTime": "2025-03-01T11:59:59Z"}) == iam_eval.EXPLICIT_DENY
    assert iam_eval.decide([allow_all, revoke_older], "s3:GetObject", "*",
                           {"aws:TokenIssueTime": "2025-03-01T12:00:00Z"}) == iam_eval.ALLOWED
    # A boundary limits; it never grants (IAM User Guide, permissions boundaries).
    assert iam_eval.decide([READ_ONLY], "iam:CreateUser", "*", {}, boundary=allow_all) == iam_eval.IMPLICIT_DENY
    assert iam_eval.decide([allow_all], "iam:CreateUser", "*", {}, boundary=READ_ONLY) == iam_eval.IMPLICIT_DENY
    # Actions compare case-insensitively, resources case-sensitively.
    assert iam_eval.decide([READ_ONLY], "EC2:describeinstances", "*", {}) == iam_eval.ALLOWED
    with pytest.raises(iam_eval.Unsupported):
        iam_eval.decide([{"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*",
                                         "Condition": {"NumericLessThan": {"aws:MultiFactorAuthAge": "60"}}}]}],
                        "s3:GetObject", "*", {})


def test_the_generated_documents_round_trip_through_json() -> None:
    document = denies.render([denies.entry_for("bob@example.com", NOW, 3600)], NOW)
    assert json.loads(json.dumps(document)) == document
    assert denies.entries_in(document) == [denies.entry_for("bob@example.com", NOW, 3600)]


def test_iam_offers_no_condition_key_on_what_a_policy_writer_writes() -> None:
    """Why the denies live in a boundary: per the Service Authorization Reference (as parliament ships it),
    PutRolePolicy can be conditioned only on the role's boundary, CreatePolicyVersion on nothing, and no key
    names an inline policy (there is no iam:PolicyName). Should AWS add one, this test says so."""
    import os

    import parliament

    definitions = json.loads(Path(os.path.dirname(parliament.__file__), "iam_definition.json").read_text())
    iam = next(service for service in definitions if service["prefix"] == "iam")
    keys = {p["privilege"]: sorted({k for r in p["resource_types"] for k in r["condition_keys"]})
            for p in iam["privileges"]}
    assert keys["PutRolePolicy"] == ["iam:PermissionsBoundary"]
    assert keys["CreatePolicyVersion"] == []
    assert "iam:PolicyName" not in {c["condition"] for c in iam["conditions"]}
