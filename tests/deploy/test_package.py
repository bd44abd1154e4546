"""`chalice package` for prod (SAM with infra/resources.json merged, and
Terraform), linted with cfn-lint like a platform team's pipeline would.

Packaging makes no AWS call: chalice only needs a region to start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.generate import main as generate

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BROKER = "arn:aws:iam::111111111111:role/rolebroker-prod-api_handler"


def run(*command: str | Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    return subprocess.run([str(c) for c in command], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def cfn_lint(*templates: Path) -> None:
    result = run(BIN / "cfn-lint", *templates, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("sam")
    result = run(BIN / "chalice", "package", "--stage", "prod", "--merge-template", "infra/resources.json", out)
    assert result.returncode == 0, result.stdout + result.stderr
    yield out


@pytest.fixture(scope="module")
def sam(packaged: Path) -> dict[str, Any]:
    template: dict[str, Any] = json.loads((packaged / "sam.json").read_text())
    return template


def test_sam_template_is_cfn_lint_clean(packaged: Path) -> None:
    cfn_lint(packaged / "sam.json")


def test_sam_template_carries_the_code_and_the_checked_in_iam_policy(packaged: Path, sam: dict[str, Any]) -> None:
    assert (packaged / "deployment.zip").stat().st_size > 0
    expected = json.loads((ROOT / ".chalice" / "policy-prod.json").read_text())
    for role in ("ApiHandlerRole", "SlackWorkerRole"):
        [inline] = sam["Resources"][role]["Properties"]["Policies"]
        assert inline["PolicyDocument"] == expected


def test_names_match_what_chalice_deploy_and_terraform_would_use(sam: dict[str, Any]) -> None:
    """The trust policies name these roles, whichever way the stack was deployed."""
    resources = sam["Resources"]
    assert resources["ApiHandlerRole"]["Properties"]["RoleName"] == {"Fn::Sub": "rolebroker-${Stage}-api_handler"}
    assert resources["SlackWorkerRole"]["Properties"]["RoleName"] == {
        "Fn::Sub": "rolebroker-${Stage}-slack_worker"}
    assert resources["APIHandler"]["Properties"]["FunctionName"] == {"Fn::Sub": "rolebroker-${Stage}"}
    assert resources["APIHandler"]["DependsOn"] == "APIHandlerLogGroup"
    assert sam["Parameters"]["Stage"]["AllowedValues"] == ["dev", "prod"]


def test_merged_resources_keep_the_stage_settings(sam: dict[str, Any]) -> None:
    props = sam["Resources"]["APIHandler"]["Properties"]
    variables = props["Environment"]["Variables"]
    assert variables["ROLEBROKER_TABLE"] == {"Ref": "RequestTable"}
    assert variables["ROLEBROKER_POLICY"] == "ssm:/rolebroker/prod/access-policy"
    assert variables["ROLEBROKER_STAGE"] == "prod"
    assert variables["AWS_STS_REGIONAL_ENDPOINTS"] == "regional"
    assert props["ReservedConcurrentExecutions"] == 20
    assert sam["Resources"]["RestAPI"]["Properties"]["EndpointConfiguration"] == "REGIONAL"
    alarms = {k: v["Properties"] for k, v in sam["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    assert {(a["Namespace"], a["MetricName"]) for a in alarms.values()} == {
        ("AWS/Lambda", "Errors"), ("AWS/Lambda", "Throttles"), ("AWS/ApiGateway", "5XXError")}


def test_terraform_package_writes_a_configuration(tmp_path: Path) -> None:
    result = run(BIN / "chalice", "package", "--stage", "prod", "--pkg-format", "terraform", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    config = json.loads((tmp_path / "chalice.tf.json").read_text())
    functions = config["resource"]["aws_lambda_function"]
    assert functions["api_handler"]["function_name"] == "rolebroker-prod"
    roles = config["resource"]["aws_iam_role"]
    assert roles["api_handler_role"]["name"] == "rolebroker-prod-api_handler"
    policy = json.loads(config["resource"]["aws_iam_role_policy"]["api_handler_role"]["policy"])
    assert policy == json.loads((ROOT / ".chalice" / "policy-prod.json").read_text())


def test_trusting_account_templates_are_cfn_lint_clean(tmp_path: Path) -> None:
    assert generate(["trust", "--policy", str(ROOT / "infra" / "example-access-policy.yaml"),
                     "--broker-role-arn", BROKER, "--out", str(tmp_path)]) == 0
    templates = sorted(tmp_path.glob("roles-*.yaml"))
    assert len(templates) == 1
    cfn_lint(*templates)
