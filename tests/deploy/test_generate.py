"""The generated IAM documents: least privilege, drift detection, parliament."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest.mock import Mock

import pytest
import yaml
from parliament import analyze_policy_string

from chalicelib.access.policy import parse_policy
from chalicelib.aws.store import create_table
from infra import quotas
from infra.generate import API as API_FUNCTION
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
)
from infra.generate import WORKER as WORKER_FUNCTION
from infra.trusting import SESSION_TAG_KEYS, Broker, TrustError, plan_stacksets

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "infra" / "example-access-policy.yaml"
BROKER = "arn:aws:iam::111111111111:role/rolebroker-prod-api_handler"
WORKER = "arn:aws:iam::111111111111:role/rolebroker-prod-slack_worker"
STS_ACTIONS = {"sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"}
POLICY_FILES = ("config.json", "policy-dev.json", "policy-dev-slack_worker.json", "policy-prod.json",
                "policy-prod-slack_worker.json")


def extra_role(role_name: str) -> str:
    return f"""
  sandbox-auditor:
    account: sandbox
    role_name: {role_name}
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
    for name in POLICY_FILES:
        shutil.copy(ROOT / ".chalice" / name, tmp_path / ".chalice" / name)
    return tmp_path


def statements_with(document: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    return [s for s in document["Statement"] if any(a.startswith(prefix) for a in s["Action"])]


def parliament_findings(document: dict[str, Any]) -> list[str]:
    found = analyze_policy_string(json.dumps(document)).findings
    return [f"{f.issue}: {f.detail}" for f in found]


def prod_policy(example: Any, scope: Scope | None = None, function: str = API_FUNCTION, **env: str) -> dict[str, Any]:
    stage = stage_from_config(load_config(ROOT), "prod")
    if env:
        stage = Stage(stage.name, {**stage.environment, **env}, stage.policy_files)
    return broker_policy(example, stage, scope or Scope(), function)


# --------------------------------------------------------------------------
# Drift


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_checked_in_policies_match_the_generator(stage: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--policy", str(EXAMPLE), "--stage", stage]) == 0, capsys.readouterr().out


def grown_policy(tmp_path: Path, role_name: str) -> Path:
    grown = tmp_path / "grown.yaml"
    grown.write_text(EXAMPLE.read_text().replace("\nroles:\n", "\nroles:\n" + extra_role(role_name), 1))
    return grown


def test_a_role_added_under_the_broker_path_needs_no_iam_change(project: Path, tmp_path: Path) -> None:
    """Finding 5: a role added to the live policy is allowed by the broker's own policy as it stands."""
    grown = grown_policy(tmp_path, "/rolebroker/AuditorRole")
    assert main(["check", "--policy", str(grown), "--stage", "prod", "--project-dir", str(project)]) == 0


def test_check_fails_with_a_diff_when_a_role_outside_the_path_is_added(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grown = grown_policy(tmp_path, "AuditorRole")
    assert main(["check", "--policy", str(grown), "--stage", "prod", "--project-dir", str(project)]) == 1
    out = capsys.readouterr()
    assert '+        "arn:aws:iam::222222222222:role/AuditorRole",' in out.out
    assert "python -m infra.generate iam" in out.err
    assert "outside /rolebroker/" in out.err

    assert main(["iam", "--policy", str(grown), "--stage", "prod", "--project-dir", str(project)]) == 0
    assert main(["check", "--policy", str(grown), "--stage", "prod", "--project-dir", str(project)]) == 0


def test_check_fails_when_someone_widens_the_file_by_hand(project: Path) -> None:
    path = project / ".chalice" / "policy-prod-slack_worker.json"
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


@pytest.mark.parametrize("function", [API_FUNCTION, WORKER_FUNCTION])
def test_sts_actions_are_allowed_on_the_broker_path_in_the_policys_accounts(example: Any, function: str) -> None:
    [path, outside] = statements_with(prod_policy(example, function=function), "sts:")
    assert set(path["Action"]) == STS_ACTIONS == set(outside["Action"])
    assert path["Resource"] == ["arn:aws:iam::*:role/rolebroker/*"]
    assert path["Condition"] == {"StringEquals": {"aws:ResourceAccount": ["222222222222", "333333333333"]}}
    # The one role an operator brought from outside the path, by its exact ARN.
    assert outside["Resource"] == ["arn:aws:iam::222222222222:role/ci/DeployRole"]
    assert "Condition" not in outside


def test_the_organisation_replaces_the_account_list(example: Any) -> None:
    [path, _] = statements_with(prod_policy(example, Scope(organization="o-abcdef1234")), "sts:")
    assert path["Condition"] == {"StringEquals": {"aws:ResourceOrgID": "o-abcdef1234"}}


def test_no_statement_allows_every_resource(example: Any) -> None:
    for statement in prod_policy(example)["Statement"]:
        assert statement["Effect"] == "Allow"
        assert "*" not in statement["Resource"]
        assert not any(action.endswith("*") for action in statement["Action"])
    [kms] = statements_with(prod_policy(example), "kms:")
    assert kms["Action"] == ["kms:Decrypt"]
    assert kms["Condition"]["StringLike"]["kms:ViaService"] == "ssm.*.amazonaws.com"
    assert kms["Condition"]["StringLike"]["kms:EncryptionContext:PARAMETER_ARN"] == statements_with(
        prod_policy(example), "ssm:")[0]["Resource"]


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


def test_each_function_reads_only_its_own_settings(example: Any) -> None:
    """Finding 12: the API never reads the bot token, the worker never the signing secret."""
    task_key = {"ROLEBROKER_TASK_SIGNING_KEY": "ssm:/rolebroker/prod/task-signing-key"}
    [api] = statements_with(prod_policy(example, function=API_FUNCTION, **task_key), "ssm:")
    [worker] = statements_with(prod_policy(example, function=WORKER_FUNCTION, **task_key), "ssm:")
    assert api["Action"] == worker["Action"] == ["ssm:GetParameter"]
    assert api["Resource"] == [
        "arn:aws:ssm:*:*:parameter/rolebroker/prod/access-policy",
        "arn:aws:ssm:*:*:parameter/rolebroker/prod/slack-signing-secret",
        "arn:aws:ssm:*:*:parameter/rolebroker/prod/task-signing-key",
    ]
    assert worker["Resource"] == [
        "arn:aws:ssm:*:*:parameter/rolebroker/prod/access-policy",
        "arn:aws:ssm:*:*:parameter/rolebroker/prod/slack-bot-token",
        "arn:aws:ssm:*:*:parameter/rolebroker/prod/task-signing-key",
    ]
    assert not statements_with(prod_policy(example), "s3:")


def test_an_ssm_setting_nobody_claims_is_refused(example: Any) -> None:
    with pytest.raises(Exception, match="SETTING_READERS"):
        prod_policy(example, ROLEBROKER_NEW_SECRET="ssm:/rolebroker/prod/new")


def test_the_api_and_the_worker_must_not_share_a_policy_file() -> None:
    config = load_config(ROOT)
    del config["stages"]["prod"]["lambda_functions"]["slack_worker"]["iam_policy_file"]
    with pytest.raises(Exception, match="least privilege"):
        stage_from_config(config, "prod")


def test_s3_policy_source_grants_get_object_on_that_object_only(example: Any) -> None:
    document = prod_policy(example, ROLEBROKER_POLICY="s3://acme-config/rolebroker/policy.yaml")
    [s3] = statements_with(document, "s3:")
    assert s3["Action"] == ["s3:GetObject"]
    assert s3["Resource"] == ["arn:aws:s3:::acme-config/rolebroker/policy.yaml"]
    # A customer managed key on the bucket: decrypt through S3, for this object (or its bucket key) only.
    [_, decrypt] = statements_with(document, "kms:")
    assert decrypt["Sid"] == "DecryptPolicyObject"
    assert decrypt["Condition"]["StringLike"] == {
        "kms:EncryptionContext:aws:s3:arn": ["arn:aws:s3:::acme-config/rolebroker/policy.yaml",
                                             "arn:aws:s3:::acme-config"],
        "kms:ViaService": "s3.*.amazonaws.com"}


def test_each_function_logs_to_its_own_log_group_only(example: Any) -> None:
    [api] = statements_with(prod_policy(example, function=API_FUNCTION), "logs:")
    [worker] = statements_with(prod_policy(example, function=WORKER_FUNCTION), "logs:")
    assert api["Action"] == worker["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert api["Resource"] == ["arn:aws:logs:*:*:log-group:/aws/lambda/rolebroker-prod:*"]
    assert worker["Resource"] == ["arn:aws:logs:*:*:log-group:/aws/lambda/rolebroker-prod-slack_worker:*"]


def test_source_credentials_mode_moves_sts_to_the_source_principal(example: Any) -> None:
    document = prod_policy(example, ROLEBROKER_SOURCE_CREDENTIALS_SECRET="rolebroker/prod/source-credentials")
    assert not statements_with(document, "sts:")
    [secret] = statements_with(document, "secretsmanager:")
    assert secret["Resource"] == ["arn:aws:secretsmanager:*:*:secret:rolebroker/prod/source-credentials-??????"]
    decrypt = next(s for s in document["Statement"] if s["Sid"] == "DecryptSourceCredentials")
    assert decrypt["Condition"]["StringLike"] == {
        "kms:EncryptionContext:SecretARN": secret["Resource"], "kms:ViaService": "secretsmanager.*.amazonaws.com"}
    statements = source_principal_policy(example)["Statement"]
    assert all(set(s["Action"]) == STS_ACTIONS and "*" not in s["Resource"] for s in statements)


@pytest.mark.parametrize("variant", [*(f.removesuffix(".json") for f in POLICY_FILES[1:]), "literal", "source",
                                     "s3", "organization"])
def test_parliament_finds_nothing_in_the_broker_policies(example: Any, variant: str) -> None:
    if variant.startswith("policy-"):
        document = json.loads((ROOT / ".chalice" / f"{variant}.json").read_text())
    elif variant == "organization":
        document = prod_policy(example, Scope(organization="o-abcdef1234"))
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


def test_trust_writes_a_policy_per_account_and_one_stackset_for_all(trust_dir: Path) -> None:
    files = sorted(str(p.relative_to(trust_dir)) for p in trust_dir.rglob("*") if p.is_file())
    assert files == ["instances-1-Accounts2.json", "instances-1-Accounts3.json", "roles-1.yaml", "stackset-1.json",
                     "trust-policies/production.json", "trust-policies/sandbox.json"]


def test_trust_names_the_trusted_account_and_the_brokers_roles_by_arn(trust_dir: Path) -> None:
    """Finding 6: no role ARN in Principal, so deploy order and re-created broker roles do not matter."""
    for path in (trust_dir / "trust-policies").glob("*.json"):
        for statement in json.loads(path.read_text())["Statement"]:
            assert statement["Principal"] == {"AWS": "arn:aws:iam::111111111111:root"}
            assert statement["Condition"]["ArnEquals"] == {"aws:PrincipalArn": [BROKER, WORKER]}


def test_external_id_is_required_exactly_for_accounts_that_have_one(trust_dir: Path, example: Any) -> None:
    for account in example.accounts.values():
        statements = {s["Sid"]: s for s in json.loads(
            (trust_dir / "trust-policies" / f"{account.name}.json").read_text())["Statement"]}
        assume = statements["BrokerAssumesRole"]
        assert assume["Action"] == "sts:AssumeRole"
        assert assume["Condition"]["Null"] == {"sts:SourceIdentity": "false"}
        if account.external_id:
            assert assume["Condition"]["StringEquals"] == {"sts:ExternalId": account.external_id}
        else:
            assert "StringEquals" not in assume["Condition"]
        tags = statements["BrokerTagsSession"]
        assert tags["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"] == [
            "rolebroker:breakglass", "rolebroker:grant", "rolebroker:groups", "rolebroker:identity",
            "rolebroker:issuer", "rolebroker:ticket"] == list(SESSION_TAG_KEYS)
        assert tags["Condition"]["Null"] == {"sts:TransitiveTagKeys": "true"}
        assert statements["BrokerSetsSourceIdentity"]["Action"] == "sts:SetSourceIdentity"


def test_trust_refuses_an_account_root_or_a_session(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for principal in ("arn:aws:iam::111111111111:root",
                      "arn:aws:sts::111111111111:assumed-role/rolebroker-prod-api_handler/x"):
        assert main(["trust", "--policy", str(EXAMPLE), "--broker-role-arn", principal,
                     "--out", str(tmp_path)]) == 2
        assert "would trust far more than the broker" in capsys.readouterr().err
    assert main(["trust", "--policy", str(EXAMPLE), "--broker-role-arn", BROKER, "--broker-role-arn",
                 "arn:aws:iam::999999999999:role/other", "--out", str(tmp_path)]) == 2
    assert "must all be in the trusted account" in capsys.readouterr().err


def _roles_policy(*role_names: str) -> str:
    roles = "".join(f"  r{i}: {{account: a, role_name: {name}, allow: [{{groups: [x]}}]}}\n"
                    for i, name in enumerate(role_names))
    return f'version: 1\naccounts: {{a: {{id: "222222222222", region: us-east-1}}}}\nroles:\n{roles}'


@pytest.mark.parametrize(("role_names", "refused", "used_for"), [
    (["/rolebroker/TrustedAccountId"], "/rolebroker/TrustedAccountId", "a parameter"),
    (["/rolebroker/AccountGroup"], "/rolebroker/AccountGroup", "a parameter"),
    (["/rolebroker/BrokerPrincipalArns"], "/rolebroker/BrokerPrincipalArns", "a parameter"),
    (["/rolebroker/PermissionsBoundaryArn"], "/rolebroker/PermissionsBoundaryArn", "a parameter"),
    (["/rolebroker/ExternalId"], "/rolebroker/ExternalId", "ExternalId"),
    (["/rolebroker/Admin", "/rolebroker/AdminManagedPolicyArns"], "/rolebroker/AdminManagedPolicyArns",
     "the managed policies parameter of role /rolebroker/Admin"),
])
def test_role_names_never_collide_with_the_templates_own_names(role_names: list[str], refused: str,
                                                                used_for: str) -> None:
    # Review ATTACK9 F9: a role named TrustedAccountId turned ${TrustedAccountId} in every
    # trust policy into a Ref to that role (cfn-lint W1001); AdminManagedPolicyArns next
    # to Admin was a duplicate logical id (E3007); ExternalId overwrote each account's
    # ExternalId in the mapping. The generator wrote templates AWS refuses.
    broker = Broker.from_arns([BROKER])
    with pytest.raises(TrustError, match=f"role {refused} would have the logical id .*{used_for}"):
        plan_stacksets(parse_policy(_roles_policy(*role_names)), broker)


def test_the_same_names_under_a_sub_path_are_fine(tmp_path: Path) -> None:
    policy = parse_policy(_roles_policy("/rolebroker/ops/TrustedAccountId", "/rolebroker/Admin",
                                        "/rolebroker/ops/AdminManagedPolicyArns", "/rolebroker/ops/ExternalId"))
    for part in plan_stacksets(policy, Broker.from_arns([BROKER])):
        assert not set(part.template["Resources"]) & set(part.template["Parameters"])
        for mapping in part.template["Mappings"].values():
            assert all(row["ExternalId"] == "-" for row in mapping.values())
        path = tmp_path / f"roles-{part.number}.yaml"
        path.write_text(part.body)
        result = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), str(path)], capture_output=True,
                                text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_a_colliding_role_name_stops_the_generator_with_one_line(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(_roles_policy("/rolebroker/TrustedAccountId"))
    assert main(["trust", "--policy", str(policy), "--broker-role-arn", BROKER, "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "rename the role" in err


def test_one_template_serves_every_account_through_a_mapping(trust_dir: Path) -> None:
    template = yaml.safe_load((trust_dir / "roles-1.yaml").read_text())
    roles = template["Resources"]
    assert sorted(roles) == ["BreakGlassRole", "CrossAccountAdminRole", "ReadOnlyRole"]  # ci/DeployRole: outside
    for role in roles.values():
        assert role["DeletionPolicy"] == role["UpdateReplacePolicy"] == "Delete"
        assert role["Properties"]["Path"] == "/rolebroker/"
    assert template["Mappings"] == {  # grouped by the last digit of the account id
        "Accounts2": {"222222222222": {"ExternalId": "rolebroker-sandbox", "BreakGlassRole": "0",
                                       "CrossAccountAdminRole": "3600", "ReadOnlyRole": "7200"}},
        "Accounts3": {"333333333333": {"ExternalId": "-", "BreakGlassRole": "3600",
                                       "CrossAccountAdminRole": "3600", "ReadOnlyRole": "3600"}},
    }
    assert template["Conditions"]["BreakGlassRoleInAccount"] == {"Fn::Not": [{"Fn::Equals": [
        {"Fn::FindInMap": [{"Ref": "AccountGroup"}, {"Ref": "AWS::AccountId"}, "BreakGlassRole"]}, "0"]}]}
    assert roles["BreakGlassRole"]["Condition"] == "BreakGlassRoleInAccount"
    params = template["Parameters"]
    assert params["BrokerPrincipalArns"]["Default"] == f"{BROKER},{WORKER}"
    assert params["TrustedAccountId"]["Default"] == "111111111111"
    assert params["ReadOnlyRoleManagedPolicyArns"]["Type"] == "CommaDelimitedList"


def test_stackset_requests_are_service_managed_and_target_an_ou_intersected_with_the_accounts(
        trust_dir: Path) -> None:
    """Finding 7: the requests validate against CloudFormation's own API model."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("cloudformation")
    stackset = json.loads((trust_dir / "stackset-1.json").read_text())
    instances = json.loads((trust_dir / "instances-1-Accounts2.json").read_text())
    for operation, params in (("CreateStackSet", stackset), ("CreateStackInstances", instances)):
        report = ParamValidator().validate(params, model.operation_model(operation).input_shape)
        assert not report.has_errors(), report.generate_report()
    assert stackset["PermissionModel"] == "SERVICE_MANAGED"
    assert stackset["TemplateBody"] == (trust_dir / "roles-1.yaml").read_text()
    assert instances["DeploymentTargets"] == {"OrganizationalUnitIds": ["r-root"], "Accounts": ["222222222222"],
                                              "AccountFilterType": "INTERSECTION"}
    assert instances["Regions"] == ["us-east-1"]
    assert instances["ParameterOverrides"] == [{"ParameterKey": "AccountGroup", "ParameterValue": "Accounts2"}]
    assert instances["OperationPreferences"]["MaxConcurrentPercentage"] == 25


def test_parliament_finds_nothing_in_the_trust_policies(trust_dir: Path) -> None:
    # parliament reads identity policies: state the trust policy as one
    # whose resource is the role it protects, which is what it means.
    for path in (trust_dir / "trust-policies").glob("*.json"):
        document = json.loads(path.read_text())
        for statement in document["Statement"]:
            statement.pop("Principal")
            statement["Resource"] = "arn:aws:iam::222222222222:role/rolebroker/ReadOnlyRole"
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


class RevokerAndBoundary:
    """What a later feature adds: a per-account revoker role and a boundary on every broker role."""

    def extend(self, template: dict[str, Any], role_ids: Sequence[str], first: bool) -> None:
        for role_id in role_ids:
            template["Resources"][role_id]["Properties"]["PermissionsBoundary"] = {"Ref": "BoundaryPolicy"}
        template["Resources"]["BoundaryPolicy"] = {"Type": "AWS::IAM::ManagedPolicy", "Properties": {
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Deny", "Action": "iam:*", "Resource": "*"}]}}}
        if first:
            template["Resources"]["Revoker"] = {"Type": "AWS::IAM::Role", "Properties": {
                "RoleName": "rolebroker-revoker", "Path": "/rolebroker/",
                "AssumeRolePolicyDocument": template["Resources"][role_ids[0]]["Properties"][
                    "AssumeRolePolicyDocument"]}}


def test_extensions_add_per_account_resources_once_and_are_quota_checked(example: Any) -> None:
    broker = Broker.from_arns([BROKER, WORKER])
    [part] = plan_stacksets(example, broker, [RevokerAndBoundary()])
    resources = part.template["Resources"]
    assert "Revoker" in resources and "BoundaryPolicy" in resources
    assert all(resources[r]["Properties"]["PermissionsBoundary"] == {"Ref": "BoundaryPolicy"}
               for r in ("BreakGlassRole", "CrossAccountAdminRole", "ReadOnlyRole"))
    assert part.sizes["resources"] == 5
    assert "Revoker" in part.body  # what is written is what was checked

    class Flood:
        def extend(self, template: dict[str, Any], role_ids: Sequence[str], first: bool) -> None:
            for n in range(600):
                template["Resources"][f"Topic{n}"] = {"Type": "AWS::SNS::Topic"}

    with pytest.raises(quotas.QuotaExceeded, match="CloudFormation resources per template"):
        plan_stacksets(example, broker, [Flood()])


def test_adding_an_account_never_moves_another_to_a_different_group() -> None:
    """A stack instance's AccountGroup override must stay true as the organisation grows."""
    from chalicelib.access.policy import Account
    from infra.trusting import account_groups

    accounts = [Account(f"a{i}", f"{100000000000 + i * 7919:012d}", "eu-west-1") for i in range(300)]
    before = {a.id: name for name, members in account_groups(accounts).items() for a in members}
    grown = [*accounts, Account("new", "100000000001", "eu-west-1")]
    after = {a.id: name for name, members in account_groups(grown).items() for a in members}
    assert all(after[account] == group for account, group in before.items())
    crowded = [Account(f"c{i}", f"{100000000000 + i * 10:012d}", "eu-west-1") for i in range(201)]
    with pytest.raises(quotas.QuotaExceeded, match="keys per mapping"):
        account_groups(crowded)  # 201 ids ending in 0


@pytest.mark.parametrize(("bus", "arn"), [
    ("rolebroker-audit", "arn:aws:events:*:*:event-bus/rolebroker-audit"),
    ("arn:aws:events:eu-west-1:111111111111:event-bus/siem", "arn:aws:events:eu-west-1:111111111111:event-bus/siem"),
])
def test_both_functions_may_publish_audit_events_to_the_configured_bus_only(example: Any, bus: str,
                                                                            arn: str) -> None:
    assert not statements_with(prod_policy(example), "events:")
    for function in (API_FUNCTION, WORKER_FUNCTION):
        [publish] = statements_with(prod_policy(example, function=function, ROLEBROKER_EVENT_BUS=bus), "events:")
        assert publish["Action"] == ["events:PutEvents"] and publish["Resource"] == [arn]
