"""`make package`: the project copied into build/package with the IAM policies
generated for the access policy, infra/resources.json pinned to the stage,
then `chalice package` (SAM), linted with cfn-lint like a platform team's
pipeline would.

Packaging makes no AWS call: chalice only needs a region to start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from infra.generate import main as generate

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BROKER = "arn:aws:iam::111111111111:role/rolebroker-prod-api_handler"
EXAMPLE = ROOT / "infra" / "example-access-policy.yaml"
# The same directory as `make package`, so chalice's cache of the deployment
# zip (build/package/.chalice/deployments) serves both.
PACKAGE_DIR = ROOT / "build" / "package"


def run(*command: str | Path, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    return subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def cfn_lint(*templates: Path) -> None:
    result = run(BIN / "cfn-lint", *templates, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("sam")
    assert generate(["package", "--policy", str(EXAMPLE), "--stage", "prod", "--out", str(PACKAGE_DIR),
                     "--account-id", "111111111111", "--region", "eu-west-1"]) == 0
    result = run(BIN / "chalice", "package", "--stage", "prod", "--merge-template", "resources.json", out,
                 cwd=PACKAGE_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    result = run(sys.executable, "-m", "infra.bytecode", out)
    assert result.returncode == 0, result.stdout + result.stderr
    yield out


@pytest.fixture(scope="module")
def sam(packaged: Path) -> dict[str, Any]:
    template: dict[str, Any] = json.loads((packaged / "sam.json").read_text())
    return template


def test_sam_template_is_cfn_lint_clean(packaged: Path) -> None:
    cfn_lint(packaged / "sam.json")


def test_packaging_leaves_the_checked_in_policies_alone() -> None:
    """Following the deploy guide must not break `make test`: the generated files go to build/."""
    generated = json.loads((PACKAGE_DIR / ".chalice" / "policy-prod.json").read_text())
    checked_in = json.loads((ROOT / ".chalice" / "policy-prod.json").read_text())
    assert "arn:aws:dynamodb:eu-west-1:111111111111:table/rolebroker-prod" in json.dumps(generated)
    assert "111111111111" not in json.dumps(checked_in)
    assert not list((PACKAGE_DIR / "chalicelib").rglob("__pycache__"))


def test_each_function_gets_its_own_generated_policy(packaged: Path, sam: dict[str, Any]) -> None:
    assert (packaged / "deployment.zip").stat().st_size > 0
    for role, name in (("ApiHandlerRole", "policy-prod.json"), ("SlackWorkerRole", "policy-prod-slack_worker.json")):
        [inline] = sam["Resources"][role]["Properties"]["Policies"]
        assert inline["PolicyDocument"] == json.loads((PACKAGE_DIR / ".chalice" / name).read_text())
    api = json.dumps(sam["Resources"]["ApiHandlerRole"]["Properties"]["Policies"])
    worker = json.dumps(sam["Resources"]["SlackWorkerRole"]["Properties"]["Policies"])
    assert "slack-signing-secret" in api and "slack-bot-token" not in api
    assert "slack-bot-token" in worker and "slack-signing-secret" not in worker


def test_names_match_what_chalice_deploy_would_use(sam: dict[str, Any]) -> None:
    """The trust policies name these roles, whichever way the stack was deployed."""
    resources = sam["Resources"]
    assert resources["ApiHandlerRole"]["Properties"]["RoleName"] == {"Fn::Sub": "rolebroker-${Stage}-api_handler"}
    assert resources["SlackWorkerRole"]["Properties"]["RoleName"] == {
        "Fn::Sub": "rolebroker-${Stage}-slack_worker"}
    assert resources["APIHandler"]["Properties"]["FunctionName"] == {"Fn::Sub": "rolebroker-${Stage}"}
    assert resources["APIHandler"]["DependsOn"] == "APIHandlerLogGroup"


def test_stage_accepts_only_the_stage_the_package_was_built_for(sam: dict[str, Any]) -> None:
    """Finding 9: a prod package deployed as Stage=dev would log nowhere and miss its table."""
    assert sam["Parameters"]["Stage"]["AllowedValues"] == ["prod"]
    assert sam["Parameters"]["Stage"]["Default"] == "prod"


def test_a_failed_first_create_leaves_no_log_groups_behind(sam: dict[str, Any]) -> None:
    """Finding 8: RetainExceptOnCreate, so the retry does not fail with 'already exists'."""
    for name in ("APIHandlerLogGroup", "SlackWorkerLogGroup", "SecretsKey"):
        assert sam["Resources"][name]["DeletionPolicy"] == "RetainExceptOnCreate", name
        assert sam["Resources"][name]["UpdateReplacePolicy"] == "Retain", name
    # The table is kept, even after a failed first create (deletion protection would stop a
    # rollback from deleting it): docs/deploy.md says how to remove it before a retry.
    assert sam["Resources"]["RequestTable"]["DeletionPolicy"] == "Retain"


def test_the_api_has_one_throttled_stage(sam: dict[str, Any]) -> None:
    """Finding 10: without OpenApiVersion SAM adds a stage named 'Stage' without the throttling."""
    api = sam["Resources"]["RestAPI"]["Properties"]
    assert api["OpenApiVersion"] == "2.0"
    assert api["StageName"] == "api"
    assert api["MethodSettings"] == [{"ResourcePath": "/*", "HttpMethod": "*", "ThrottlingBurstLimit": 100,
                                      "ThrottlingRateLimit": 50}]


def test_alarms_notify_a_topic_that_exists(sam: dict[str, Any]) -> None:
    """Created by the stack unless one is passed: never assumed to exist."""
    topic = sam["Resources"]["AlarmTopic"]
    assert topic["Condition"] == "CreateAlarmTopic"
    assert sam["Conditions"]["CreateAlarmTopic"] == {"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}
    target = [{"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}]
    alarms = {k: v["Properties"] for k, v in sam["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    assert {(a["Namespace"], a["MetricName"]) for a in alarms.values()} == {
        ("AWS/Lambda", "Errors"), ("AWS/Lambda", "Throttles"), ("AWS/ApiGateway", "5XXError")}
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == alarm["OKActions"] == target
    assert sam["Outputs"]["AlarmTopic"]["Value"] == target[0]


def test_the_secrets_key_decrypts_only_for_the_brokers_roles(sam: dict[str, Any]) -> None:
    """Finding 12: a customer managed key, not aws/ssm, which any principal with ssm:GetParameter can use."""
    key = sam["Resources"]["SecretsKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    statements = {s["Sid"]: s for s in key["KeyPolicy"]["Statement"]}
    decrypting = [s for s in statements.values() if "kms:Decrypt" in s["Action"] or s["Action"] == "kms:*"]
    assert [s["Sid"] for s in decrypting] == ["BrokerDecryptsSecrets"]
    assert decrypting[0]["Principal"] == {"AWS": [{"Fn::GetAtt": ["ApiHandlerRole", "Arn"]},
                                                  {"Fn::GetAtt": ["SlackWorkerRole", "Arn"]}]}
    assert decrypting[0]["Condition"]["StringEquals"]["kms:ViaService"] == [
        {"Fn::Sub": f"{service}.${{AWS::Region}}.amazonaws.com"} for service in ("s3", "secretsmanager", "ssm")]
    admin = statements["KeyAdministration"]
    assert not any(a in {"kms:Decrypt", "kms:*", "kms:ReEncrypt*"} for a in admin["Action"])
    assert sam["Resources"]["SecretsKeyAlias"]["Properties"]["AliasName"] == {"Fn::Sub": "alias/rolebroker-${Stage}"}


ACCOUNT = {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
# What yields plaintext of this key's ciphertexts, directly or by a grant to oneself.
DECRYPTING = ("kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:CreateGrant")


def test_no_principal_of_the_account_can_grant_itself_decrypt(sam: dict[str, Any]) -> None:
    # Review ATTACK9 F6: "kms:Create*" (and so kms:CreateGrant) for the account meant that
    # any IAM principal allowed kms:CreateGrant could grant itself Decrypt and read the
    # task key, the Slack signing secret and the bot token. Actions are named one by one.
    statements = sam["Resources"]["SecretsKey"]["Properties"]["KeyPolicy"]["Statement"]
    for statement in (s for s in statements if s["Principal"] == ACCOUNT):
        actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        assert not [a for a in actions if "*" in a or "?" in a], statement["Sid"]
        assert not [d for d in DECRYPTING for a in actions if fnmatchcase(d, a)], statement["Sid"]
    admin = next(s for s in statements if s["Sid"] == "KeyAdministration")
    # PutKeyPolicy stays (KMS refuses a policy that locks everyone out); whoever holds it
    # can always take Decrypt: docs/security.md says so.
    assert "kms:PutKeyPolicy" in admin["Action"] and "kms:RevokeGrant" in admin["Action"]


def _put_parameter_commands(text: str) -> list[str]:
    """Each `aws ssm put-parameter` command of a guide, continuation lines joined."""
    joined = text.replace("\\\n", " ")
    return [line for line in joined.splitlines() if "aws ssm put-parameter" in line]


def test_the_guide_stores_every_stage_secret_under_the_stacks_key() -> None:
    # Review ATTACK9 F7: the guide never created the task signing key, and its rotation
    # commands had no --key-id, so SSM used aws/ssm, which any principal allowed
    # ssm:GetParameter can use: the exposure the customer managed key exists to close.
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    variables = config["stages"]["prod"]["environment_variables"]
    wanted = sorted(v[len("ssm:"):].replace("/prod/", "/$STAGE/") for v in variables.values()
                    if str(v).startswith("ssm:"))
    assert "/rolebroker/$STAGE/task-signing-key" in wanted
    commands = _put_parameter_commands((ROOT / "docs" / "deploy.md").read_text())
    created = {name for name in wanted for c in commands if f'"{name}"' in c}
    assert created == set(wanted), f"deploy.md never creates {sorted(set(wanted) - created)}"
    secure = [c for c in commands if "--type SecureString" in c]
    assert len(secure) == len(commands) >= len(wanted) + 2  # the rotations too
    assert not [c.strip()[:90] for c in secure if '--key-id "$SECRETS_KEY"' not in c]
    assert not [c.strip()[:90] for c in commands if "/prod/" in c]  # every command follows $STAGE


def test_merged_resources_keep_the_stage_settings(sam: dict[str, Any]) -> None:
    props = sam["Resources"]["APIHandler"]["Properties"]
    variables = props["Environment"]["Variables"]
    assert variables["ROLEBROKER_TABLE"] == {"Ref": "RequestTable"}
    assert variables["ROLEBROKER_POLICY"] == "ssm:/rolebroker/prod/access-policy"
    assert variables["ROLEBROKER_STAGE"] == "prod"
    assert variables["AWS_STS_REGIONAL_ENDPOINTS"] == "regional"
    assert props["ReservedConcurrentExecutions"] == 20
    assert sam["Resources"]["RestAPI"]["Properties"]["EndpointConfiguration"] == "REGIONAL"


def test_there_is_no_terraform_target() -> None:
    """Finding 11: chalice's Terraform pins Terraform < 1.4 and the AWS provider < 5 and lacks the table,
    log groups and alarms; no Terraform runs here to check a replacement, so none is shipped."""
    makefile = (ROOT / "Makefile").read_text()
    assert "terraform" not in makefile.lower()
    assert "Terraform" in (ROOT / "README.md").read_text() and "removed" in (ROOT / "README.md").read_text()


def test_trusting_account_templates_are_cfn_lint_clean(tmp_path: Path) -> None:
    assert generate(["trust", "--policy", str(EXAMPLE), "--broker-role-arn", BROKER, "--out", str(tmp_path)]) == 0
    templates = sorted(tmp_path.glob("roles-*.yaml"))
    assert len(templates) == 1
    cfn_lint(*templates)


def test_every_module_in_the_package_ships_bytecode_that_matches_its_source(packaged: Path,
                                                                             sam: dict[str, Any]) -> None:
    from importlib.util import MAGIC_NUMBER, cache_from_source, source_hash

    from infra.bytecode import runtime_of

    assert runtime_of(sam) == f"python{sys.version_info.major}.{sys.version_info.minor}"
    with zipfile.ZipFile(packaged / "deployment.zip") as archive:
        names = set(archive.namelist())
        sources = sorted(name for name in names if name.endswith(".py"))
        assert {"app.py", "chalicelib/broker.py", "jwt/api_jwt.py", "yaml/__init__.py", "chalice/app.py"} <= set(
            sources)
        for name in sources:
            compiled = archive.read(cache_from_source(name))
            # PEP 552: magic, flags (0b11: hash-based, checked against the source), the source's hash.
            assert compiled[:4] == MAGIC_NUMBER, name
            assert int.from_bytes(compiled[4:8], "little") == 0b11, name
            assert compiled[8:16] == source_hash(archive.read(name)), name


def _compiled_on_import(task_root: Path, modules: str) -> list[str]:
    """Import ``modules`` from an unpacked package as Lambda does (nothing written); the sources compiled."""
    code = f"""
import builtins, json, sys
compiled = []
real = builtins.compile
def compile(source, filename, *args, **kwargs):
    compiled.append(str(filename))
    return real(source, filename, *args, **kwargs)
builtins.compile = compile
sys.path.insert(0, {str(task_root)!r})
import {modules}
builtins.compile = real
print(json.dumps([name for name in compiled if name.startswith({str(task_root)!r})]))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ROLEBROKER_"))}
    env.update({"PYTHONDONTWRITEBYTECODE": "1", "ROLEBROKER_OIDC_ISSUER": "https://idp.example.com",
                "ROLEBROKER_OIDC_AUDIENCE": "rolebroker", "ROLEBROKER_POLICY": str(EXAMPLE)})
    done = subprocess.run([sys.executable, "-c", code], cwd=task_root, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    names: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return names


def test_a_cold_start_from_the_package_compiles_nothing_and_a_changed_source_is_compiled_again(
        packaged: Path, tmp_path: Path) -> None:
    task_root = tmp_path / "task"
    with zipfile.ZipFile(packaged / "deployment.zip") as archive:
        archive.extractall(task_root)
    modules = "app, chalicelib.broker, chalicelib.aws.sts, chalicelib.access.source, jwt, yaml"
    assert _compiled_on_import(task_root, modules) == []
    # Checked-hash bytecode: an edited source is compiled again, its stale bytecode never runs.
    broker = task_root / "chalicelib" / "broker.py"
    broker.write_text(broker.read_text() + "\n# edited after packaging\n")
    assert _compiled_on_import(task_root, modules) == [str(broker)]


def test_bytecode_is_refused_for_another_python(tmp_path: Path) -> None:
    from infra.bytecode import BytecodeError, add_bytecode, runtime_of

    package = tmp_path / "deployment.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("app.py", "x = 1\n")
    with pytest.raises(BytecodeError, match=r"the functions run python3\.9 but this is python3"):
        add_bytecode(package, "python3.9")
    function = {"Type": "AWS::Serverless::Function", "Properties": {"Runtime": "python3.12"}}
    with pytest.raises(BytecodeError, match="expected one Python runtime"):
        runtime_of({"Resources": {"A": function, "B": {**function, "Properties": {"Runtime": "python3.11"}}}})
    assert add_bytecode(package, f"python{sys.version_info.major}.{sys.version_info.minor}") == 1
    with zipfile.ZipFile(package) as archive:
        assert sorted(archive.namelist()) == ["__pycache__/app." + sys.implementation.cache_tag + ".pyc", "app.py"]


def _entries(package: Path) -> dict[str, tuple[object, ...]]:
    with zipfile.ZipFile(package) as archive:
        return {i.filename: (i.date_time, i.external_attr, i.compress_type, archive.read(i))
                for i in archive.infolist()}


def test_bytecode_already_in_the_package_is_replaced_and_everything_else_kept_byte_for_byte(tmp_path: Path) -> None:
    """A package that arrives with ``__pycache__`` (``chalice package`` run from a checkout ships the
    checkout's; some wheels ship theirs) gets checked-hash bytecode for every source all the same."""
    import py_compile
    from importlib.util import cache_from_source, source_hash

    from infra.bytecode import add_bytecode

    old = tmp_path / "old.py"
    old.write_text("ANSWER = 'stale'\n")
    stale = py_compile.compile(str(old), cfile=str(tmp_path / "old.pyc"),
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    package = tmp_path / "deployment.zip"
    with zipfile.ZipFile(package, "w") as archive:
        for name, mode, data, compression in (
                ("pkg/", 0o40755, b"", zipfile.ZIP_STORED),
                ("pkg/__init__.py", 0o644, b"", zipfile.ZIP_STORED),
                ("pkg/tool.py", 0o755, b"#!/usr/bin/env python3\nANSWER = 'fresh'\n", zipfile.ZIP_DEFLATED),
                ("pkg/broken.py", 0o644, b"def (:\n", zipfile.ZIP_DEFLATED),
                ("pkg/data.txt", 0o600, b"not python\n", zipfile.ZIP_DEFLATED),
                (cache_from_source("pkg/tool.py"), 0o644, Path(stale).read_bytes(), zipfile.ZIP_DEFLATED)):
            info = zipfile.ZipInfo(name, date_time=(2021, 2, 3, 4, 5, 6))
            info.external_attr, info.compress_type = mode << 16, compression
            archive.writestr(info, data)
    before = _entries(package)
    add_bytecode(package, f"python{sys.version_info.major}.{sys.version_info.minor}")
    after = _entries(package)
    compiled = {cache_from_source(name) for name in ("pkg/__init__.py", "pkg/tool.py")}
    # Every entry that is not bytecode of a source in the package is kept as it was: data, mode, date, compression.
    assert {k: v for k, v in after.items() if k not in compiled} == {k: v for k, v in before.items()
                                                                     if k not in compiled}
    assert set(after) == set(before) | compiled  # nothing for the source that does not compile
    for name in ("pkg/__init__.py", "pkg/tool.py"):
        pyc = after[cache_from_source(name)][3]
        assert isinstance(pyc, bytes)
        assert int.from_bytes(pyc[4:8], "little") == 0b11, name  # checked-hash
        assert pyc[8:16] == source_hash(after[name][3]), name
