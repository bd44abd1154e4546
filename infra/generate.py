"""Generate (and check) the IAM documents and templates rolebroker deploys.

    python -m infra.generate iam   --policy FILE --stage STAGE [--organization-id o-..] [--account-id ID] [--region R]
    python -m infra.generate check --policy FILE --stage STAGE (same options as iam)
    python -m infra.generate trust --policy FILE --broker-role-arn ARN [...] --out DIR
    python -m infra.generate source-principal --policy FILE [--organization-id o-..] [--out FILE]
    python -m infra.generate resources --stage STAGE --out FILE
    python -m infra.generate package --policy FILE --stage STAGE --out DIR (iam options)

Two inputs decide everything: the access policy (its accounts, and which
roles sit outside the broker's IAM path) and the stage's section of
``.chalice/config.json`` (where the policy, the table and the secrets live,
and which function reads which). Output is deterministic, so ``check`` can
run in CI.

**Constant size.** The broker's identity policy does not list roles: it
allows ``sts:AssumeRole`` (with ``TagSession`` and ``SetSourceIdentity``) on
``arn:aws:iam::*:role/rolebroker/*``, limited to the organisation
(``aws:ResourceOrgID``, with ``--organization-id``) or else to the policy's
accounts (``aws:ResourceAccount``, a list that is itself size-checked).
Which person may use which role stays in the access policy and the trust
policies; adding a role needs no IAM change. Roles outside the path get an
explicit statement, size-checked, and a warning.

**One policy per function.** The API function and the Slack worker read
different secrets (see ``SETTING_READERS``); each gets only its own.

Account and region: chalice reads ``policy-<stage>*.json`` as static JSON, so
it cannot say ``${AWS::AccountId}``. ``--account-id`` and ``--region`` write
literal ARNs for the broker's own resources; without them the account and
region parts are ``*`` (what the checked-in example files use, because this
repository cannot know your account). ``make package`` writes the policies
for your account into ``build/``, never over the checked-in files.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib.access.policy import AccessPolicy, parse_policy
from chalicelib.exceptions import PolicyError
from infra import quotas
from infra.trusting import BROKER_PATH, Broker, TrustError, TrustOptions, iam_roles, render_json, write_trust

ROOT = Path(__file__).resolve().parent.parent
APP_NAME = "rolebroker"

ASSUME_ACTIONS = ("sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession")
# What chalicelib/aws/store.py calls. TransactWriteItems is not an IAM action of
# its own: each Put/Update/Delete inside a transaction is authorised as
# PutItem/UpdateItem/DeleteItem. The store writes no ConditionCheck items,
# so dynamodb:ConditionCheckItem is left out.
TABLE_ACTIONS = ("dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem",
                 "dynamodb:Query", "dynamodb:UpdateItem")
INDEX_ACTIONS = ("dynamodb:Query",)
ACCOUNT_RE = re.compile(r"^(\d{12}|\*)$")
REGION_RE = re.compile(r"^([a-z]{2}(-[a-z]+)+-\d{1,2}|\*)$")
ORGANIZATION_RE = re.compile(r"^o-[a-z0-9]{10,32}$")

API, WORKER = "api_handler", "slack_worker"
FUNCTIONS = (API, WORKER)
# Which function reads which secret setting (app.py): the API verifies Slack's
# signatures and never talks to Slack's Web API; the worker posts to Slack and
# never sees a Slack request. Both sign or verify the tasks between them, and
# both assume roles.
SETTING_READERS: Mapping[str, frozenset[str]] = {
    "ROLEBROKER_POLICY": frozenset(FUNCTIONS),
    "ROLEBROKER_SLACK_SIGNING_SECRET": frozenset({API}),
    "ROLEBROKER_SLACK_BOT_TOKEN": frozenset({WORKER}),
    "ROLEBROKER_TASK_SIGNING_KEY": frozenset(FUNCTIONS),
    "ROLEBROKER_SOURCE_CREDENTIALS_SECRET": frozenset(FUNCTIONS),
}


class GenerateError(Exception):
    """The inputs cannot produce a sound artefact; the message says why."""


# --------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class Stage:
    """What the broker's permissions depend on, from one stage of the chalice config."""

    name: str
    environment: Mapping[str, str]
    policy_files: Mapping[str, str]

    def setting(self, name: str) -> str | None:
        return self.environment.get(name, "").strip() or None

    @property
    def policy_location(self) -> str:
        return self.setting("ROLEBROKER_POLICY") or ""

    def parameters(self, function: str) -> list[str]:
        """The SSM parameters (``ssm:/name``) that ``function`` reads."""
        names = set()
        for variable, value in self.environment.items():
            if not value.startswith("ssm:"):
                continue
            readers = SETTING_READERS.get(variable)
            if readers is None:
                raise GenerateError(f"{variable} names an SSM parameter, but infra.generate does not know which "
                                    "function reads it: add it to infra.generate.SETTING_READERS")
            if function in readers:
                names.add(value[len("ssm:"):])
        return sorted(names)

    def log_group(self, function: str) -> str:
        # chalice names the API handler <app>-<stage> and every other function
        # <app>-<stage>-<name>, whether it deploys itself, or through SAM.
        suffix = "" if function == API else f"-{function}"
        return f"/aws/lambda/{APP_NAME}-{self.name}{suffix}"


def stage_from_config(config: Mapping[str, Any], stage: str) -> Stage:
    stages = config.get("stages", {})
    if stage not in stages:
        raise GenerateError(f"stage {stage!r} is not in .chalice/config.json (stages: {', '.join(stages)})")
    section = stages[stage]
    env = {**config.get("environment_variables", {}), **section.get("environment_variables", {})}
    if not str(env.get("ROLEBROKER_POLICY", "")).strip():
        raise GenerateError(f"stage {stage!r} sets no ROLEBROKER_POLICY")
    default = section.get("iam_policy_file", f"policy-{stage}.json")
    files = {API: default}
    for function in FUNCTIONS[1:]:
        files[function] = section.get("lambda_functions", {}).get(function, {}).get("iam_policy_file", default)
    if len(set(files.values())) != len(files):
        raise GenerateError(f"stage {stage!r}: the API and the Slack worker share {default}; give "
                            "lambda_functions.slack_worker its own iam_policy_file so each gets least privilege")
    variables = {k: str(v) for k, v in env.items()}
    quotas.LAMBDA_ENVIRONMENT.check(quotas.lambda_environment_size(variables),
                                    f"stage {stage!r}'s environment variables")
    return Stage(name=stage, environment=variables, policy_files=files)


def load_policy(path: Path) -> AccessPolicy:
    return parse_policy(path.read_text(encoding="utf-8"), str(path))


def load_config(project_dir: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((project_dir / ".chalice" / "config.json").read_text(encoding="utf-8"))
    return config


def check_policy_fits_source(text: str, location: str, ssm_tier: str) -> None:
    """An ``ssm:`` policy must fit its parameter tier; past 8 KB only ``s3://`` holds it."""
    if location.startswith("ssm:"):
        quotas.ssm_tier_quota(ssm_tier).check(len(text.encode("utf-8")), f"the access policy for {location}")


# --------------------------------------------------------------------------
# The broker's own permissions (trusted account)


@dataclass(frozen=True)
class Scope:
    """Partition, region and account written into the broker's resource ARNs, and its organisation."""

    partition: str = "aws"
    region: str = "*"
    account: str = "*"
    organization: str | None = None

    def arn(self, service: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{resource}"


def _statement(sid: str, actions: Sequence[str], resources: Sequence[str],
               condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": sorted(actions),
                                 "Resource": sorted(resources)}
    if condition:
        statement["Condition"] = condition
    return statement


def assume_statements(policy: AccessPolicy, scope: Scope) -> list[dict[str, Any]]:
    """sts:AssumeRole with stamping: every role under the broker path in the organisation, and the rest by ARN."""
    if not policy.roles:
        raise GenerateError("the access policy names no roles; the broker would have nothing to assume")
    if scope.organization:
        where: dict[str, Any] = {"StringEquals": {"aws:ResourceOrgID": scope.organization}}
    else:
        where = {"StringEquals": {"aws:ResourceAccount": sorted({a.id for a in policy.accounts.values()})}}
    path = f"arn:{scope.partition}:iam::*:role{BROKER_PATH}*"
    statements = [_statement("AssumeBrokerRoles", ASSUME_ACTIONS, [path], where)]
    outside = sorted(r.arn for r in iam_roles(policy) if not r.under_broker_path)
    if outside:
        print(f"warning: {len(outside)} role(s) outside {BROKER_PATH} are listed one by one in the broker's "
              "policy, which grows with each; create new roles under the path: "
              + ", ".join(outside[:5]) + (" ..." if len(outside) > 5 else ""), file=sys.stderr)
        statements.append(_statement("AssumeRolesOutsideBrokerPath", ASSUME_ACTIONS, outside))
    return statements


def _parameter_arn(scope: Scope, name: str) -> str:
    return scope.arn("ssm", "parameter/" + name.lstrip("/"))


def _secret_arn(scope: Scope, secret_id: str) -> str:
    if secret_id.startswith("arn:"):
        return secret_id
    # Secrets Manager appends a hyphen and six random characters to the name.
    return scope.arn("secretsmanager", f"secret:{secret_id}-??????")


def _decrypt(sid: str, scope: Scope, service: str, context_key: str, values: Sequence[str]) -> dict[str, Any]:
    # Any key, customer managed or AWS managed, but only through that service
    # and only for these resources: the encryption context names the resource.
    return _statement(sid, ["kms:Decrypt"], [scope.arn("kms", "key/*")], {
        "StringLike": {f"kms:EncryptionContext:{context_key}": list(values),
                       "kms:ViaService": f"{service}.{scope.region}.amazonaws.com"},
    })


def broker_policy(policy: AccessPolicy, stage: Stage, scope: Scope = Scope(),
                  function: str = API) -> dict[str, Any]:
    """One function's execution role policy: ``.chalice/policy-<stage>[-<function>].json``."""
    source_secret = stage.setting("ROLEBROKER_SOURCE_CREDENTIALS_SECRET")
    if source_secret:
        # STS calls are signed with the source principal's key (see
        # chalicelib/aws/source_credentials.py): the role only reads the secret.
        secret = _secret_arn(scope, source_secret)
        statements = [_statement("ReadSourceCredentials", ["secretsmanager:GetSecretValue"], [secret]),
                      _decrypt("DecryptSourceCredentials", scope, "secretsmanager", "SecretARN", [secret])]
    else:
        statements = assume_statements(policy, scope)
    statements += _table_statements(stage, scope) + _settings_statements(stage, scope, function)
    worker = stage.setting("ROLEBROKER_WORKER_FUNCTION")
    if worker:
        # Slack's slow half runs in the worker, invoked asynchronously
        # (chalicelib/chat/dispatch.py); the worker dispatches to itself when a
        # Slack command creates a request.
        statements.append(_statement("InvokeWorker", ["lambda:InvokeFunction"],
                                     [scope.arn("lambda", f"function:{worker}")]))
    bus = stage.setting("ROLEBROKER_EVENT_BUS")
    if bus:
        # Both functions write audit lines, so both publish them (chalicelib/aws/events.py).
        arn = bus if bus.startswith("arn:") else scope.arn("events", f"event-bus/{bus}")
        statements.append(_statement("PublishAuditEvents", ["events:PutEvents"], [arn]))
    # No logs:CreateLogGroup: the stack creates each group with its retention;
    # a group a function created itself would keep logs forever.
    statements.append(_statement("WriteLogs", ["logs:CreateLogStream", "logs:PutLogEvents"],
                                 [scope.arn("logs", f"log-group:{stage.log_group(function)}:*")]))
    document = {"Version": "2012-10-17", "Statement": statements}
    quotas.ROLE_INLINE_POLICIES.check(quotas.iam_policy_size(document),
                                      f"the {function} policy ({stage.policy_files[function]})")
    return document


def _table_statements(stage: Stage, scope: Scope) -> list[dict[str, Any]]:
    table_name = stage.setting("ROLEBROKER_TABLE")
    if not table_name:
        return []
    table = scope.arn("dynamodb", f"table/{table_name}")
    return [_statement("RequestTable", TABLE_ACTIONS, [table]),
            _statement("RequestTableIndexes", INDEX_ACTIONS, [f"{table}/index/*"])]


def _settings_statements(stage: Stage, scope: Scope, function: str) -> list[dict[str, Any]]:
    statements = []
    parameters = stage.parameters(function)
    if parameters:
        arns = [_parameter_arn(scope, name) for name in parameters]
        statements.append(_statement("ReadSettings", ["ssm:GetParameter"], arns))
        statements.append(_decrypt("DecryptSettings", scope, "ssm", "PARAMETER_ARN", arns))
    if stage.policy_location.startswith("s3://"):
        bucket, _, key = stage.policy_location[len("s3://"):].partition("/")
        obj = f"arn:{scope.partition}:s3:::{bucket}/{key}"
        statements.append(_statement("ReadPolicyObject", ["s3:GetObject"], [obj]))
        # SSE-KMS names the object (or, with S3 Bucket Keys, the bucket) in the context.
        statements.append(_decrypt("DecryptPolicyObject", scope, "s3", "aws:s3:arn",
                                   [obj, f"arn:{scope.partition}:s3:::{bucket}"]))
    return statements


def source_principal_policy(policy: AccessPolicy, scope: Scope = Scope(), attach: str = "managed") -> dict[str, Any]:
    """The policy of the dedicated IAM user whose keys the broker may hold (long sessions)."""
    document = {"Version": "2012-10-17", "Statement": assume_statements(policy, scope)}
    quota = quotas.MANAGED_POLICY if attach == "managed" else quotas.USER_INLINE_POLICIES
    quota.check(quotas.iam_policy_size(document), f"the source principal's policy ({attach})")
    return document


# --------------------------------------------------------------------------
# The broker's stack: infra/resources.json, pinned to one stage


def stage_resources(template: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """``infra/resources.json`` for a package built for ``stage``: Stage accepts only that stage."""
    pinned = json.loads(json.dumps(template))
    pinned["Parameters"]["Stage"].update({"AllowedValues": [stage], "Default": stage})
    return dict(pinned)


# --------------------------------------------------------------------------
# The command line


def _scope(args: argparse.Namespace) -> Scope:
    if not ACCOUNT_RE.match(args.account_id):
        raise GenerateError(f"--account-id must be 12 digits, got {args.account_id!r}")
    if not REGION_RE.match(args.region):
        raise GenerateError(f"--region must be an AWS region such as eu-west-1, got {args.region!r}")
    if args.organization_id and not ORGANIZATION_RE.match(args.organization_id):
        raise GenerateError(f"--organization-id must look like o-abcdef1234, got {args.organization_id!r}")
    return Scope(partition=args.partition, region=args.region, account=args.account_id,
                 organization=args.organization_id)


def _expected_broker_policies(args: argparse.Namespace) -> dict[Path, str]:
    project = Path(args.project_dir)
    stage = stage_from_config(load_config(project), args.stage)
    policy_path = Path(args.policy)
    check_policy_fits_source(policy_path.read_text(encoding="utf-8"), stage.policy_location, args.ssm_tier)
    policy, scope = load_policy(policy_path), _scope(args)
    return {project / ".chalice" / stage.policy_files[function]:
            render_json(broker_policy(policy, stage, scope, function)) for function in FUNCTIONS}


def cmd_iam(args: argparse.Namespace) -> int:
    for path, text in _expected_broker_policies(args).items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    drifted = 0
    for path, expected in _expected_broker_policies(args).items():
        actual = path.read_text(encoding="utf-8") if path.exists() else ""
        if actual == expected:
            print(f"{path} is up to date", file=sys.stderr)
            continue
        drifted += 1
        sys.stdout.writelines(difflib.unified_diff(
            actual.splitlines(keepends=True), expected.splitlines(keepends=True),
            fromfile=str(path), tofile="generated"))
    if drifted:
        print(f"{drifted} policy file(s) drift from the generator; run: python -m infra.generate iam "
              f"--policy {args.policy} --stage {args.stage} (with the same options)", file=sys.stderr)
        return 1
    return 0


def cmd_trust(args: argparse.Namespace) -> int:
    quota = quotas.TRUST_POLICY_RAISED if args.trust_policy_quota == 4096 else quotas.TRUST_POLICY
    options = TrustOptions(out=Path(args.out), trust_quota=quota, stack_set_name=args.stack_set_name,
                           organizational_unit=args.organizational_unit, region=args.region,
                           template_bucket=args.template_bucket)
    for path in write_trust(load_policy(Path(args.policy)), Broker.from_arns(args.broker_role_arn), options):
        print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_source_principal(args: argparse.Namespace) -> int:
    text = render_json(source_principal_policy(load_policy(Path(args.policy)), _scope(args), args.attach))
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


# What `chalice package` needs of the project, copied so that the policies
# generated for an operator's account never overwrite the checked-in examples.
PACKAGE_FILES = ("app.py", "requirements.txt", "chalicelib")


def cmd_package(args: argparse.Namespace) -> int:
    """build/package: the project, its per-function policies and its stage-pinned resources."""
    project, out = Path(args.project_dir), Path(args.out)
    (out / ".chalice").mkdir(parents=True, exist_ok=True)
    for name in PACKAGE_FILES:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        if (project / name).is_dir():
            shutil.copytree(project / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(project / name, target)
    shutil.copy2(project / ".chalice" / "config.json", out / ".chalice" / "config.json")
    args.project_dir = str(out)
    cmd_iam(args)
    template = json.loads((project / "infra" / "resources.json").read_text(encoding="utf-8"))
    (out / "resources.json").write_text(render_json(stage_resources(template, args.stage)), encoding="utf-8")
    print(f"wrote {out}: chalice package --stage {args.stage} --merge-template resources.json", file=sys.stderr)
    return 0


def cmd_resources(args: argparse.Namespace) -> int:
    template = json.loads((Path(args.project_dir) / "infra" / "resources.json").read_text(encoding="utf-8"))
    stage_from_config(load_config(Path(args.project_dir)), args.stage)
    Path(args.out).write_text(render_json(stage_resources(template, args.stage)), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _scope_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--organization-id", help="AWS Organizations id (o-...): the broker may assume roles under "
                                             f"{BROKER_PATH} in any of its accounts, with a constant-size policy")
    p.add_argument("--account-id", default="*", help="trusted account id (default *: see module doc)")
    p.add_argument("--region", default="*", help="the broker's region (default *)")
    p.add_argument("--partition", default="aws")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m infra.generate", description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="command", required=True)
    for name, helptext in (("iam", "write .chalice/policy-<stage>*.json"),
                           ("check", "exit 1 with a diff if .chalice/policy-<stage>*.json drift")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--policy", required=True, help="access policy file (YAML or JSON)")
        p.add_argument("--stage", required=True)
        _scope_options(p)
        p.add_argument("--ssm-tier", choices=("standard", "advanced"), default="advanced",
                       help="tier of the ssm: parameter holding the policy (default advanced: 8 KB)")
        p.add_argument("--project-dir", default=str(ROOT), help="where .chalice/ is (default: this repository)")
        p.set_defaults(run=cmd_iam if name == "iam" else cmd_check)
    p = sub.add_parser("package", help="copy the project into DIR with its generated policies, for chalice package")
    p.add_argument("--policy", required=True, help="access policy file (YAML or JSON)")
    p.add_argument("--stage", required=True)
    p.add_argument("--out", required=True)
    _scope_options(p)
    p.add_argument("--ssm-tier", choices=("standard", "advanced"), default="advanced")
    p.add_argument("--project-dir", default=str(ROOT), help=argparse.SUPPRESS)
    p.set_defaults(run=cmd_package)
    p = sub.add_parser("trust", help="trust policies and StackSet templates for the trusting accounts")
    p.add_argument("--policy", required=True)
    p.add_argument("--broker-role-arn", required=True, action="append",
                   help="a broker execution role, e.g. arn:aws:iam::ID:role/rolebroker-prod-api_handler; "
                        "repeat it for each function that assumes roles (the Slack worker too)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--trust-policy-quota", type=int, choices=(2048, 4096), default=2048,
                   help="the account's 'Role trust policy length' quota (4096 after a quota increase)")
    p.add_argument("--stack-set-name", default="rolebroker-roles")
    p.add_argument("--organizational-unit", default="r-root",
                   help="OU or root id the StackSet deploys to, intersected with the policy's accounts")
    p.add_argument("--region", default="us-east-1", help="the one region the roles' stacks live in (IAM is global)")
    p.add_argument("--template-bucket", help="S3 bucket the templates are uploaded to (needed above 51,200 bytes)")
    p.set_defaults(run=cmd_trust)
    p = sub.add_parser("source-principal", help="the IAM policy of the long-session source principal")
    p.add_argument("--policy", required=True)
    _scope_options(p)
    p.add_argument("--attach", choices=("managed", "inline"), default="managed",
                   help="managed policy (6,144 characters, the default) or user inline policy (2,048)")
    p.add_argument("--out")
    p.set_defaults(run=cmd_source_principal)
    p = sub.add_parser("resources", help="infra/resources.json with Stage pinned to one stage")
    p.add_argument("--stage", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--project-dir", default=str(ROOT), help=argparse.SUPPRESS)
    p.set_defaults(run=cmd_resources)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except (GenerateError, TrustError, quotas.QuotaExceeded, PolicyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
