"""Organisation scale: 500 trusting accounts and 5,000 roles inside every AWS quota.

The synthetic organisations come from infra/synthetic.py: 1 x 10, 100 x 10
and 500 x 10 roles. Every generated artefact is measured against the quota
AWS applies to it (infra/quotas.py), and every quota has a test at its
boundary: one character or byte under passes, one over fails with the
quota's name, the size and the remedy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from chalicelib.access.policy import AccessPolicy, parse_policy
from infra import quotas
from infra.generate import (
    FUNCTIONS,
    Scope,
    Stage,
    broker_policy,
    load_config,
    main,
    source_principal_policy,
    stage_from_config,
)
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


@pytest.fixture(scope="module")
def orgs(org_files: dict[int, Path]) -> dict[int, AccessPolicy]:
    return {roles: parse_policy(path.read_text(), path.name) for roles, path in org_files.items()}


def s3_stage() -> Stage:
    stage = stage_from_config(load_config(ROOT), "prod")
    return Stage(stage.name, {**stage.environment, "ROLEBROKER_POLICY": "s3://acme-config/policy.yaml"},
                 stage.policy_files)


@pytest.mark.parametrize("organization", [None, ORG], ids=["account-list", "organization"])
@pytest.mark.parametrize("roles", [10, 1000, 5000])
def test_broker_policies_fit_the_role_inline_quota_at_any_size(
        orgs: dict[int, AccessPolicy], roles: int, organization: str | None) -> None:
    for function in FUNCTIONS:
        document = broker_policy(orgs[roles], s3_stage(), Scope(organization=organization), function)
        assert quotas.iam_policy_size(document) <= quotas.ROLE_INLINE_POLICIES.limit, function


def test_broker_policy_does_not_grow_with_roles_when_the_organisation_is_known(orgs: dict[int, AccessPolicy]) -> None:
    sizes = {roles: [quotas.iam_policy_size(broker_policy(policy, s3_stage(), Scope(organization=ORG), f))
                     for f in FUNCTIONS] for roles, policy in orgs.items()}
    assert sizes[10] == sizes[1000] == sizes[5000]


def test_iam_command_writes_both_functions_policies(project: Path, org_files: dict[int, Path]) -> None:
    written = generated_iam(project, org_files[1000], "--organization-id", ORG)
    assert sorted(written) == ["policy-prod-slack_worker.json", "policy-prod.json"]


# --------------------------------------------------------------------------
# Finding 2: the source principal's policy was a user inline policy


def test_source_principal_policy_fits_at_5000_roles(orgs: dict[int, AccessPolicy]) -> None:
    document = source_principal_policy(orgs[5000], Scope(organization=ORG), attach="inline")
    assert quotas.iam_policy_size(document) <= quotas.USER_INLINE_POLICIES.limit


def test_source_principal_command_writes_a_managed_policy(org_files: dict[int, Path], tmp_path: Path) -> None:
    out = tmp_path / "source.json"
    assert main(["source-principal", "--policy", str(org_files[10]), "--out", str(out)]) == 0
    assert quotas.iam_policy_size(json.loads(out.read_text())) <= quotas.MANAGED_POLICY.limit


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


# --------------------------------------------------------------------------
# Done means: the 500 x 10 organisation, every artefact within quota, linted


@pytest.fixture(scope="module")
def org_5000_trust(org_files: dict[int, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trust5000")
    assert main(["trust", "--policy", str(org_files[5000]), "--broker-role-arn", BROKER, "--broker-role-arn", WORKER,
                 "--out", str(out), "--template-bucket", "acme-artefacts"]) == 0
    return out


def test_the_500_account_organisation_deploys_from_one_stackset(
        org_5000_trust: Path, orgs: dict[int, AccessPolicy]) -> None:
    [template_path] = sorted(org_5000_trust.glob("roles-*.yaml"))
    template = yaml.safe_load(template_path.read_text())
    sizes = quotas.check_template(template, template_path.read_text(), "roles-1.yaml")
    assert sizes["needs_s3"] == 1  # 51,200 < size <= 1,000,000: deployed by URL
    stackset = json.loads((org_5000_trust / "stackset-1.json").read_text())
    assert stackset["TemplateURL"] == "https://acme-artefacts.s3.amazonaws.com/rolebroker/roles-1.yaml"
    assert "TemplateBody" not in stackset
    groups = {}
    for path in sorted(org_5000_trust.glob("instances-1-*.json")):
        request = json.loads(path.read_text())
        groups[request["ParameterOverrides"][0]["ParameterValue"]] = request["DeploymentTargets"]["Accounts"]
    assert sorted(groups) == sorted(template["Mappings"]) == [f"Accounts{d}" for d in range(10)]
    assert sorted(a for accounts in groups.values() for a in accounts) == sorted(
        a.id for a in orgs[5000].accounts.values())
    for name, mapping in template["Mappings"].items():
        assert sorted(mapping) == sorted(groups[name])
    # Every account's roles are in its row, with the duration the policy asks for (IAM's floor: 3600).
    account = orgs[5000].roles["acct0000-readonly"].account.id
    row = template["Mappings"][f"Accounts{account[-1]}"][account]
    assert row["ReadOnly"] == "7200" and row["ExternalId"] == "rolebroker-acct0000"


def test_every_trust_policy_of_the_500_accounts_fits(org_5000_trust: Path) -> None:
    from parliament import analyze_policy_string

    files = sorted((org_5000_trust / "trust-policies").glob("*.json"))
    assert len(files) == 500
    largest = max(quotas.iam_policy_size(json.loads(p.read_text())) for p in files)
    assert largest <= quotas.TRUST_POLICY.limit
    for path in files[::100]:  # a sample through parliament: they differ only in the ExternalId
        document = json.loads(path.read_text())
        for statement in document["Statement"]:
            statement.pop("Principal")
            statement["Resource"] = "arn:aws:iam::100000000000:role/rolebroker/ReadOnly"
        assert analyze_policy_string(json.dumps(document)).findings == [], path


def test_the_500_account_template_is_cfn_lint_clean(org_5000_trust: Path) -> None:
    """The whole template, not a sample: it is the one template every account deploys."""
    result = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), *sorted(org_5000_trust.glob("*.yaml"))],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_500_account_broker_and_source_policies_are_parliament_clean(orgs: dict[int, AccessPolicy]) -> None:
    from parliament import analyze_policy_string

    documents = [broker_policy(orgs[5000], s3_stage(), Scope(organization=organization), function)
                 for function in FUNCTIONS for organization in (None, ORG)]
    source = source_principal_policy(orgs[5000], Scope(organization=ORG))
    assert quotas.iam_policy_size(source) <= quotas.MANAGED_POLICY.limit
    for document in [*documents, source]:
        assert quotas.iam_policy_size(document) <= quotas.ROLE_INLINE_POLICIES.limit
        assert analyze_policy_string(json.dumps(document)).findings == []


# --------------------------------------------------------------------------
# Every quota at its boundary


ALL_QUOTAS = [value for value in vars(quotas).values() if isinstance(value, quotas.Quota)]


@pytest.mark.parametrize("quota", ALL_QUOTAS, ids=lambda q: q.name)
def test_each_quota_passes_at_its_limit_and_names_itself_one_over(quota: quotas.Quota) -> None:
    assert quota.check(quota.limit, "the artefact") == quota.limit
    with pytest.raises(quotas.QuotaExceeded) as caught:
        quota.check(quota.limit + 1, "the artefact")
    message = str(caught.value)
    assert quota.name in message and f"{quota.limit + 1:,}" in message and quota.remedy in message


def test_iam_counts_characters_but_not_whitespace() -> None:
    document = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                                                        "Resource": "arn:aws:s3:::a b/c"}]}
    compact = json.dumps(document, separators=(",", ":"))
    assert quotas.iam_policy_size(document) == len(compact) - 1  # the space inside the ARN
    assert quotas.iam_policy_size(json.loads(json.dumps(document, indent=4))) == len(compact) - 1


def _trust_at(tmp_path: Path, external_id_length: int, *extra: str) -> tuple[int, str]:
    """Run `trust` for one account whose ExternalId makes the trust policy a chosen size."""
    policy = tmp_path / f"p{external_id_length}.yaml"
    policy.write_text(f"""version: 1
accounts:
  a: {{id: "222222222222", region: eu-west-1, external_id: "{'x' * external_id_length}"}}
roles:
  r: {{account: a, role_name: /rolebroker/R, allow: [{{groups: [g]}}]}}
""")
    out = tmp_path / f"out{external_id_length}"
    code = main(["trust", "--policy", str(policy), "--broker-role-arn", BROKER, "--out", str(out), *extra])
    size = 0
    if code == 0:
        size = quotas.iam_policy_size(json.loads((out / "trust-policies" / "a.json").read_text()))
    return code, str(size)


def test_trust_policy_quota_boundary_through_the_generator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, size = _trust_at(tmp_path, 2)
    base = int(size) - 2  # the trust policy without the ExternalId's characters
    assert _trust_at(tmp_path, quotas.TRUST_POLICY.limit - base) == (0, str(quotas.TRUST_POLICY.limit))
    assert _trust_at(tmp_path, quotas.TRUST_POLICY.limit - base + 1)[0] == 2
    err = capsys.readouterr().err
    assert "IAM role trust policy length quota of 2,048" in err and "2,049" in err
    assert "--trust-policy-quota 4096" in err
    assert _trust_at(tmp_path, quotas.TRUST_POLICY.limit - base + 1, "--trust-policy-quota", "4096")[0] == 0


def test_template_body_boundaries() -> None:
    template: dict[str, Any] = {"Resources": {}}
    assert quotas.check_template(template, "x" * 51_200, "t")["needs_s3"] == 0
    assert quotas.check_template(template, "x" * 51_201, "t")["needs_s3"] == 1
    assert quotas.check_template(template, "x" * 1_000_000, "t")["bytes"] == 1_000_000
    with pytest.raises(quotas.QuotaExceeded, match="template body in an S3 object quota of 1,000,000"):
        quotas.check_template(template, "x" * 1_000_001, "t")


@pytest.mark.parametrize(("section", "quota"), [("Parameters", quotas.TEMPLATE_PARAMETERS),
                                                ("Resources", quotas.TEMPLATE_RESOURCES),
                                                ("Outputs", quotas.TEMPLATE_OUTPUTS),
                                                ("Mappings", quotas.TEMPLATE_MAPPINGS)])
def test_template_section_boundaries(section: str, quota: quotas.Quota) -> None:
    at_limit = {section: {f"X{i}": {} for i in range(quota.limit)}}
    quotas.check_template(at_limit, "{}", "t")
    over = {section: {f"X{i}": {} for i in range(quota.limit + 1)}}
    with pytest.raises(quotas.QuotaExceeded, match=quota.name):
        quotas.check_template(over, "{}", "t")


def test_mapping_attribute_boundary() -> None:
    quotas.check_template({"Mappings": {"M": {"k": {f"a{i}": "v" for i in range(200)}}}}, "{}", "t")
    with pytest.raises(quotas.QuotaExceeded, match="attributes per mapping key"):
        quotas.check_template({"Mappings": {"M": {"k": {f"a{i}": "v" for i in range(201)}}}}, "{}", "t")


def test_lambda_environment_boundary_through_the_stage() -> None:
    config = load_config(ROOT)
    env = config["stages"]["prod"]["environment_variables"]
    env["PADDING"] = ""
    size = quotas.lambda_environment_size({**config["environment_variables"], **env})
    env["PADDING"] = "p" * (quotas.LAMBDA_ENVIRONMENT.limit - size)
    stage_from_config(config, "prod")
    env["PADDING"] += "p"
    with pytest.raises(quotas.QuotaExceeded, match="Lambda environment variables"):
        stage_from_config(config, "prod")


@pytest.mark.parametrize(("tier", "limit"), [("standard", 4096), ("advanced", 8192)])
def test_ssm_policy_source_refuses_a_policy_above_its_tier(tier: str, limit: int) -> None:
    """Finding 3: past the tier, the generator says to use s3://."""
    from infra.generate import check_policy_fits_source

    check_policy_fits_source("x" * limit, "ssm:/rolebroker/prod/access-policy", tier)
    with pytest.raises(quotas.QuotaExceeded) as caught:
        check_policy_fits_source("x" * (limit + 1), "ssm:/rolebroker/prod/access-policy", tier)
    assert "s3://" in str(caught.value)
    check_policy_fits_source("x" * (limit + 1), "s3://bucket/policy.yaml", tier)  # S3 has no such limit


def test_an_account_list_too_long_for_the_role_says_to_name_the_organisation(project: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(synthetic_policy(700, 1))  # 700 accounts: 10,500 characters of account ids alone
    assert main(["iam", "--policy", str(big), "--stage", "prod", "--project-dir", str(project)]) == 2
    err = capsys.readouterr().err
    assert "IAM role inline policies" in err and "--organization-id" in err
