"""The generated IAM documents: least privilege, drift detection, parliament."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path
from typing import Any
from unittest.mock import Mock

import pytest
import yaml
from parliament import analyze_policy_string

from chalicelib.access.policy import parse_policy
from chalicelib.aws.store import create_table
from infra.generate import (
    INDEX_ACTIONS,
    TABLE_ACTIONS,
    Scope,
    Stage,
    broker_policy,
    load_config,
    main,
    source_principal_policy,
    stage_from_config,
    trust_policy,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "infra" / "example-access-policy.yaml"
BROKER = "arn:aws:iam::111111111111:role/rolebroker-prod-api_handler"
WORKER = "arn:aws:iam::111111111111:role/rolebroker-prod-slack_worker"
STS_ACTIONS = {"sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"}

EXTRA_ROLE = """
  sandbox-auditor:
    account: sandbox
    role_name: AuditorRole
    allow:
      - groups: [auditors]
"""


@pytest.fixture(scope="module")
def example() -> Any:
    return parse_policy(EXAMPLE.read_text(), str(EXAMPLE))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of .chalice/ to break without touching the checked-in files."""
    (tmp_path / ".chalice").mkdir()
    for name in ("config.json", "policy-dev.json", "policy-prod.json"):
        shutil.copy(ROOT / ".chalice" / name, tmp_path / ".chalice" / name)
    return tmp_path


def statements_with(document: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    return [s for s in document["Statement"] if any(a.startswith(prefix) for a in s["Action"])]


def parliament_findings(document: dict[str, Any]) -> list[str]:
    found = analyze_policy_string(json.dumps(document)).findings
    return [f"{f.issue}: {f.detail}" for f in found]


def prod_policy(example: Any, scope: Scope | None = None, **env: str) -> dict[str, Any]:
    stage = stage_from_config(load_config(ROOT), "prod")
    if env:
        stage = Stage(stage.name, {**stage.environment, **env})
    return broker_policy(example, stage, scope or Scope())


# --------------------------------------------------------------------------
# Drift


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_checked_in_policies_match_the_generator(stage: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--policy", str(EXAMPLE), "--stage", stage]) == 0, capsys.readouterr().out


def test_check_fails_with_a_diff_when_the_access_policy_gains_a_role(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grown = tmp_path / "grown.yaml"
    text = EXAMPLE.read_text()
    grown.write_text(text.replace("\nroles:\n", "\nroles:\n" + EXTRA_ROLE, 1))

    assert main(["check", "--policy", str(grown), "--stage", "prod", "--project-dir", str(project)]) == 1
    out = capsys.readouterr()
    assert '+        "arn:aws:iam::222222222222:role/AuditorRole",' in out.out
    assert "python -m infra.generate iam" in out.err

    assert main(["iam", "--policy", str(grown), "--stage", "prod", "--project-dir", str(project)]) == 0
    assert main(["check", "--policy", str(grown), "--stage", "prod", "--project-dir", str(project)]) == 0


def test_check_fails_when_someone_widens_the_file_by_hand(project: Path) -> None:
    path = project / ".chalice" / "policy-prod.json"
    document = json.loads(path.read_text())
    document["Statement"][0]["Resource"] = "*"
    path.write_text(json.dumps(document, indent=2) + "\n")
    assert main(["check", "--policy", str(EXAMPLE), "--stage", "prod", "--project-dir", str(project)]) == 1


def test_check_takes_the_same_account_and_region_as_iam(project: Path) -> None:
    args = ["--policy", str(EXAMPLE), "--stage", "dev", "--project-dir", str(project),
            "--account-id", "111111111111", "--region", "eu-central-1"]
    assert main(["iam", *args]) == 0
    assert main(["check", *args]) == 0
    assert main(["check", "--policy", str(EXAMPLE), "--stage", "dev", "--project-dir", str(project)]) == 1


def test_bad_inputs_exit_2_with_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["iam", "--policy", str(EXAMPLE), "--stage", "nope"]) == 2
    assert "stage 'nope'" in capsys.readouterr().err
    assert main(["iam", "--policy", str(EXAMPLE), "--stage", "prod", "--account-id", "12"]) == 2
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\naccounts: {}\nroles: {}\nextra: 1\n")
    assert main(["check", "--policy", str(broken), "--stage", "prod"]) == 2
    assert "unknown key 'extra'" in capsys.readouterr().err


# --------------------------------------------------------------------------
# The broker's own policy


def test_sts_actions_are_allowed_on_exactly_the_policys_role_arns(example: Any) -> None:
    [sts] = statements_with(prod_policy(example), "sts:")
    assert set(sts["Action"]) == STS_ACTIONS
    assert sts["Resource"] == sorted({role.role_arn for role in example.roles.values()})
    assert not any("*" in arn for arn in sts["Resource"])
    assert "arn:aws:iam::222222222222:role/ci/DeployRole" in sts["Resource"]


def test_no_statement_allows_every_resource(example: Any) -> None:
    for statement in prod_policy(example)["Statement"]:
        assert statement["Effect"] == "Allow"
        assert "*" not in statement["Resource"]
        assert not any(action.endswith("*") for action in statement["Action"])
    [kms] = statements_with(prod_policy(example), "kms:")
    assert kms["Action"] == ["kms:Decrypt"]
    assert kms["Condition"]["StringLike"]["kms:ViaService"] == "ssm.*.amazonaws.com"


def test_literal_account_and_region_pin_every_broker_resource(example: Any) -> None:
    document = prod_policy(example, Scope(region="eu-west-1", account="111111111111"))
    for statement in document["Statement"]:
        for arn in statement["Resource"]:
            _, _, service, region, account, _ = arn.split(":", 5)
            if service in {"iam", "s3"}:
                continue
            assert (region, account) == ("eu-west-1", "111111111111"), arn
    [kms] = statements_with(document, "kms:")
    assert kms["Condition"]["StringLike"]["kms:ViaService"] == "ssm.eu-west-1.amazonaws.com"


def test_table_permissions_are_what_the_store_calls_and_no_more(example: Any) -> None:
    """Fails when chalicelib/aws/store.py starts calling something the policy does not allow."""
    operations: set[str] = set()
    for node in ast.walk(ast.parse((ROOT / "chalicelib" / "aws" / "store.py").read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "_client"):
            operations.add(node.func.attr)
        if isinstance(node, ast.Dict):
            operations |= {k.value for k in node.keys if isinstance(k, ast.Constant)
                           and k.value in {"Put", "Update", "Delete", "ConditionCheck"}}
    as_iam = {"get_item": "GetItem", "query": "Query", "put_item": "PutItem", "update_item": "UpdateItem",
              "delete_item": "DeleteItem", "Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
              "ConditionCheck": "ConditionCheckItem"}
    operations.discard("transact_write_items")  # authorised per item, mapped above
    unknown = operations - as_iam.keys()
    assert not unknown, f"store.py calls {unknown}: add them to infra.generate.TABLE_ACTIONS"
    assert {f"dynamodb:{as_iam[o]}" for o in operations} == set(TABLE_ACTIONS)

    document = prod_policy(example)
    [table, index] = statements_with(document, "dynamodb:")
    assert table["Resource"] == ["arn:aws:dynamodb:*:*:table/rolebroker-prod"]
    assert index == {"Sid": "RequestTableIndexes", "Effect": "Allow", "Action": list(INDEX_ACTIONS),
                     "Resource": ["arn:aws:dynamodb:*:*:table/rolebroker-prod/index/*"]}


def test_settings_are_read_from_exactly_the_stages_parameters(example: Any) -> None:
    [ssm] = statements_with(prod_policy(example), "ssm:")
    assert ssm["Action"] == ["ssm:GetParameter"]
    assert ssm["Resource"] == [
        "arn:aws:ssm:*:*:parameter/rolebroker/prod/access-policy",
        "arn:aws:ssm:*:*:parameter/rolebroker/prod/slack-bot-token",
        "arn:aws:ssm:*:*:parameter/rolebroker/prod/slack-signing-secret",
        "arn:aws:ssm:*:*:parameter/rolebroker/prod/task-signing-key",
    ]
    assert not statements_with(prod_policy(example), "s3:")


def test_s3_policy_source_grants_get_object_on_that_object_only(example: Any) -> None:
    document = prod_policy(example, ROLEBROKER_POLICY="s3://acme-config/rolebroker/policy.yaml")
    [s3] = statements_with(document, "s3:")
    assert s3["Action"] == ["s3:GetObject"]
    assert s3["Resource"] == ["arn:aws:s3:::acme-config/rolebroker/policy.yaml"]


def test_logs_go_to_the_stages_own_log_groups_only(example: Any) -> None:
    [logs] = statements_with(prod_policy(example), "logs:")
    assert logs["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert logs["Resource"] == ["arn:aws:logs:*:*:log-group:/aws/lambda/rolebroker-prod-*:*",
                                "arn:aws:logs:*:*:log-group:/aws/lambda/rolebroker-prod:*"]


def test_source_credentials_mode_moves_sts_to_the_source_principal(example: Any) -> None:
    document = prod_policy(example, ROLEBROKER_SOURCE_CREDENTIALS_SECRET="rolebroker/prod/source-credentials")
    assert not statements_with(document, "sts:")
    [secret] = statements_with(document, "secretsmanager:")
    assert secret["Resource"] == ["arn:aws:secretsmanager:*:*:secret:rolebroker/prod/source-credentials-??????"]
    [sts] = source_principal_policy(example)["Statement"]
    assert set(sts["Action"]) == STS_ACTIONS and "*" not in sts["Resource"]


@pytest.mark.parametrize("variant", ["dev", "prod", "literal", "source", "s3"])
def test_parliament_finds_nothing_in_the_broker_policies(example: Any, variant: str) -> None:
    if variant in {"dev", "prod"}:
        document = json.loads((ROOT / ".chalice" / f"policy-{variant}.json").read_text())
    elif variant == "literal":
        document = prod_policy(example, Scope(region="eu-west-1", account="111111111111"))
    elif variant == "source":
        document = prod_policy(example, ROLEBROKER_SOURCE_CREDENTIALS_SECRET="rolebroker/prod/source")
    else:
        document = prod_policy(example, ROLEBROKER_POLICY="s3://acme-config/policy.yaml")
    assert parliament_findings(document) == []


def test_parliament_does_catch_mistakes() -> None:
    """Guards the tests above against a parliament that silently checks nothing."""
    bad = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["sts:AssumeRole"], "Resource": "*"},
        {"Effect": "Allow", "Action": ["sts:AssumeRole"], "Resource": "arn:aws:iam::222222222222:role/X",
         "Condition": {"StringEquals": {"sts:ExternalIdd": "x"}}},
    ]}
    findings = " ".join(parliament_findings(bad))
    assert "RESOURCE_STAR" in findings and "UNKNOWN_CONDITION_FOR_ACTION" in findings


# --------------------------------------------------------------------------
# Trusting accounts


@pytest.fixture
def trust_dir(tmp_path: Path) -> Path:
    out = tmp_path / "trust"
    assert main(["trust", "--policy", str(EXAMPLE), "--broker-role-arn", BROKER,
                 "--broker-role-arn", WORKER, "--out", str(out)]) == 0
    return out


def test_trust_writes_one_policy_per_role_and_a_template_per_account(trust_dir: Path) -> None:
    files = sorted(str(p.relative_to(trust_dir)) for p in trust_dir.rglob("*") if p.is_file())
    assert files == [
        "production/roles.yaml",
        "production/trust-policy-BreakGlassRole.json",
        "production/trust-policy-CrossAccountAdminRole.json",
        "production/trust-policy-ReadOnlyRole.json",
        "sandbox/roles.yaml",
        "sandbox/trust-policy-CrossAccountAdminRole.json",
        "sandbox/trust-policy-DeployRole.json",
        "sandbox/trust-policy-ReadOnlyRole.json",
    ]


def test_trust_principal_is_the_brokers_roles_never_an_account_root(trust_dir: Path) -> None:
    for path in trust_dir.rglob("trust-policy-*.json"):
        for statement in json.loads(path.read_text())["Statement"]:
            assert statement["Principal"] == {"AWS": [BROKER, WORKER]}
            assert ":root" not in json.dumps(statement)


def test_external_id_is_required_exactly_for_accounts_that_have_one(trust_dir: Path, example: Any) -> None:
    for account in example.accounts.values():
        for path in (trust_dir / account.name).glob("trust-policy-*.json"):
            statements = {s["Sid"]: s for s in json.loads(path.read_text())["Statement"]}
            assume = statements["BrokerAssumesRole"]
            assert assume["Action"] == "sts:AssumeRole"
            assert assume["Condition"]["Null"] == {"sts:SourceIdentity": "false"}
            if account.external_id:
                assert assume["Condition"]["StringEquals"] == {"sts:ExternalId": account.external_id}
            else:
                assert "StringEquals" not in assume["Condition"]
            tags = statements["BrokerTagsSession"]
            assert tags["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"] == [
                "rolebroker:groups", "rolebroker:identity", "rolebroker:issuer"]
            assert statements["BrokerSetsSourceIdentity"]["Action"] == "sts:SetSourceIdentity"


def test_trust_refuses_an_account_root_or_a_session(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for principal in ("arn:aws:iam::111111111111:root",
                      "arn:aws:sts::111111111111:assumed-role/rolebroker-prod-api_handler/x"):
        assert main(["trust", "--policy", str(EXAMPLE), "--broker-role-arn", principal,
                     "--out", str(tmp_path)]) == 2
        assert "would trust far more than the broker" in capsys.readouterr().err


def test_roles_template_takes_names_and_durations_from_the_policy(trust_dir: Path) -> None:
    template = yaml.safe_load((trust_dir / "sandbox" / "roles.yaml").read_text())
    roles = template["Resources"]
    assert {k: (v["Properties"]["RoleName"], v["Properties"]["Path"], v["Properties"]["MaxSessionDuration"])
            for k, v in roles.items()} == {
        "CrossAccountAdminRole": ("CrossAccountAdminRole", "/", 3600),
        "ReadOnlyRole": ("ReadOnlyRole", "/", 7200),
        "DeployRole": ("DeployRole", "/ci/", 3600),  # policy says 900; IAM's floor is 3600
    }
    params = template["Parameters"]
    assert params["BrokerRoleArns"]["Default"] == f"{BROKER},{WORKER}"
    assert params["ExternalId"]["Default"] == "rolebroker-sandbox"
    assert params["DeployRoleManagedPolicyArns"]["Type"] == "CommaDelimitedList"
    trust = roles["DeployRole"]["Properties"]["AssumeRolePolicyDocument"]
    assert trust == trust_policy({"Ref": "BrokerRoleArns"}, {"Ref": "ExternalId"})
    # StackSet-ready: nothing pins the template to the account it was made for.
    assert "222222222222" not in (trust_dir / "sandbox" / "roles.yaml").read_text()

    production = yaml.safe_load((trust_dir / "production" / "roles.yaml").read_text())
    assert "ExternalId" not in production["Parameters"]


def test_policy_roles_sharing_an_iam_role_become_one_resource(tmp_path: Path) -> None:
    shared = tmp_path / "shared.yaml"
    shared.write_text(EXAMPLE.read_text().replace("\nroles:\n", "\nroles:\n" + """
  sandbox-readonly-long:
    account: sandbox
    role_name: ReadOnlyRole
    max_duration_seconds: 14400
    allow:
      - groups: [sre]
""", 1))
    out = tmp_path / "out"
    assert main(["trust", "--policy", str(shared), "--broker-role-arn", BROKER, "--out", str(out)]) == 0
    roles = yaml.safe_load((out / "sandbox" / "roles.yaml").read_text())["Resources"]
    assert sorted(roles) == ["CrossAccountAdminRole", "DeployRole", "ReadOnlyRole"]
    assert roles["ReadOnlyRole"]["Properties"]["MaxSessionDuration"] == 14400
    policy = json.loads((out / "sandbox" / "trust-policy-ReadOnlyRole.json").read_text())
    assert policy["Statement"][0]["Principal"] == {"AWS": BROKER}


def test_parliament_finds_nothing_in_the_trust_policies(trust_dir: Path) -> None:
    # parliament reads identity policies: state the trust policy as one
    # whose resource is the role it protects, which is what it means.
    for path in trust_dir.rglob("trust-policy-*.json"):
        role_arn = f"arn:aws:iam::222222222222:role/{path.stem.removeprefix('trust-policy-')}"
        document = json.loads(path.read_text())
        for statement in document["Statement"]:
            statement.pop("Principal")
            statement["Resource"] = role_arn
        assert parliament_findings(document) == [], path


# --------------------------------------------------------------------------
# The table in infra/resources.json is the one the store creates


def test_resources_table_matches_store_create_table() -> None:
    client = Mock()
    create_table(client, "rolebroker-prod")
    created = client.create_table.call_args.kwargs
    ttl = client.update_time_to_live.call_args.kwargs["TimeToLiveSpecification"]

    table = json.loads((ROOT / "infra" / "resources.json").read_text())["Resources"]["RequestTable"]["Properties"]
    assert table["BillingMode"] == created["BillingMode"] == "PAY_PER_REQUEST"
    assert table["AttributeDefinitions"] == created["AttributeDefinitions"]
    assert table["KeySchema"] == created["KeySchema"]
    by_name = {i["IndexName"]: i for i in created["GlobalSecondaryIndexes"]}
    assert {i["IndexName"]: i for i in table["GlobalSecondaryIndexes"]} == by_name
    assert table["TimeToLiveSpecification"] == ttl
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}
