"""Generate (and check) the IAM documents and templates rolebroker deploys.

    python -m infra.generate iam   --policy FILE --stage STAGE [--account-id ID] [--region R]
    python -m infra.generate check --policy FILE --stage STAGE [--account-id ID] [--region R]
    python -m infra.generate trust --policy FILE --broker-role-arn ARN --out DIR
    python -m infra.generate source-principal --policy FILE [--out FILE]

Two inputs that already exist decide everything: the access policy (which
roles the broker may assume, with which ExternalId and session length) and
the stage's section of ``.chalice/config.json`` (where the policy, the table
and the Slack secret live). Output is deterministic, so ``check`` can run in
CI and fail when someone adds a role to the policy but not to the broker's
permissions.

Account and region: chalice reads ``policy-<stage>.json`` as static JSON, so
it cannot say ``${AWS::AccountId}``. The trusting roles are exact ARNs
whatever we do. For the broker's own resources (its table, its parameters,
its log group) ``--account-id`` and ``--region`` write literal ARNs; without
them the account and region parts are ``*``. That default is what the
checked-in example files use, because this repository cannot know your
account: it still pins the resource names, and a resource in another
account would also have to grant access through its own resource policy.
Pass both for the tightest policy, and pass the same to ``check``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chalicelib.access.policy import AccessPolicy, Account, parse_policy
from chalicelib.exceptions import PolicyError
from chalicelib.stamping import GROUPS_TAG, IDENTITY_TAG, ISSUER_TAG

ROOT = Path(__file__).resolve().parent.parent
APP_NAME = "rolebroker"

ASSUME_ACTIONS = ("sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession")
SESSION_TAG_KEYS = (GROUPS_TAG, IDENTITY_TAG, ISSUER_TAG)
# What chalicelib/aws/store.py calls. TransactWriteItems is not an IAM action of
# its own: each Put/Update/Delete inside a transaction is authorised as
# PutItem/UpdateItem/DeleteItem. The store writes no ConditionCheck items,
# so dynamodb:ConditionCheckItem is left out.
TABLE_ACTIONS = ("dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem",
                 "dynamodb:Query", "dynamodb:UpdateItem")
INDEX_ACTIONS = ("dynamodb:Query",)
IAM_MIN_SESSION = 3600  # IAM refuses a MaxSessionDuration below one hour
PRINCIPAL_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")
ACCOUNT_RE = re.compile(r"^(\d{12}|\*)$")
REGION_RE = re.compile(r"^([a-z]{2}(-[a-z]+)+-\d{1,2}|\*)$")


class GenerateError(Exception):
    """The inputs cannot produce a sound artefact; the message says why."""


# --------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class Stage:
    """What the broker's permissions depend on, from one stage of the chalice config."""

    name: str
    environment: Mapping[str, str]

    def setting(self, name: str) -> str | None:
        return self.environment.get(name, "").strip() or None

    @property
    def policy_location(self) -> str:
        return self.setting("ROLEBROKER_POLICY") or ""

    @property
    def parameters(self) -> list[str]:
        """Every SSM parameter a setting names (``ssm:/name``): the policy and the Slack secrets."""
        return sorted({value[len("ssm:"):] for value in self.environment.values() if value.startswith("ssm:")})

    @property
    def function_prefix(self) -> str:
        # chalice names the API handler <app>-<stage> and every other function
        # <app>-<stage>-<name>, whether it deploys itself, via SAM or Terraform.
        return f"{APP_NAME}-{self.name}"


def stage_from_config(config: Mapping[str, Any], stage: str) -> Stage:
    stages = config.get("stages", {})
    if stage not in stages:
        raise GenerateError(f"stage {stage!r} is not in .chalice/config.json (stages: {', '.join(stages)})")
    env = {**config.get("environment_variables", {}), **stages[stage].get("environment_variables", {})}
    if not str(env.get("ROLEBROKER_POLICY", "")).strip():
        raise GenerateError(f"stage {stage!r} sets no ROLEBROKER_POLICY")
    return Stage(name=stage, environment={k: str(v) for k, v in env.items()})


def load_policy(path: Path) -> AccessPolicy:
    return parse_policy(path.read_text(encoding="utf-8"), str(path))


def load_config(project_dir: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((project_dir / ".chalice" / "config.json").read_text(encoding="utf-8"))
    return config


# --------------------------------------------------------------------------
# The broker's own permissions (trusted account)


@dataclass(frozen=True)
class Scope:
    """Partition, region and account written into the broker's resource ARNs."""

    partition: str = "aws"
    region: str = "*"
    account: str = "*"

    def arn(self, service: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{resource}"


def _statement(sid: str, actions: Sequence[str], resources: Sequence[str],
               condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": sorted(actions),
                                 "Resource": sorted(resources)}
    if condition:
        statement["Condition"] = condition
    return statement


def assume_statement(policy: AccessPolicy) -> dict[str, Any]:
    """sts:AssumeRole with stamping, on exactly the roles the policy names."""
    arns = sorted({role.role_arn for role in policy.roles.values()})
    if not arns:
        raise GenerateError("the access policy names no roles; the broker would have nothing to assume")
    return _statement("AssumeTrustingRoles", ASSUME_ACTIONS, arns)


def _parameter_arn(scope: Scope, name: str) -> str:
    return scope.arn("ssm", "parameter/" + name.lstrip("/"))


def _secret_arn(scope: Scope, secret_id: str) -> str:
    if secret_id.startswith("arn:"):
        return secret_id
    # Secrets Manager appends a hyphen and six random characters to the name.
    return scope.arn("secretsmanager", f"secret:{secret_id}-??????")


def broker_policy(policy: AccessPolicy, stage: Stage, scope: Scope = Scope()) -> dict[str, Any]:
    """The functions' execution role policy: ``.chalice/policy-<stage>.json``."""
    source_secret = stage.setting("ROLEBROKER_SOURCE_CREDENTIALS_SECRET")
    if source_secret:
        # STS calls are signed with the source principal's key (see
        # chalicelib/aws/source_credentials.py): the role only reads the secret.
        statements = [_statement("ReadSourceCredentials", ["secretsmanager:GetSecretValue"],
                                 [_secret_arn(scope, source_secret)])]
    else:
        statements = [assume_statement(policy)]
    statements += _table_statements(stage, scope) + _settings_statements(stage, scope)
    worker = stage.setting("ROLEBROKER_WORKER_FUNCTION")
    if worker:
        # Slack's slow half runs in the worker, invoked asynchronously (chalicelib/chat/dispatch.py).
        statements.append(_statement("InvokeWorker", ["lambda:InvokeFunction"],
                                     [scope.arn("lambda", f"function:{worker}")]))
    # No logs:CreateLogGroup: the stack (infra/resources.json) creates each group
    # with its retention; a group a function created itself would keep logs forever.
    prefix = stage.function_prefix
    statements.append(_statement("WriteLogs", ["logs:CreateLogStream", "logs:PutLogEvents"], [
        scope.arn("logs", f"log-group:/aws/lambda/{prefix}:*"),
        scope.arn("logs", f"log-group:/aws/lambda/{prefix}-*:*"),
    ]))
    return {"Version": "2012-10-17", "Statement": statements}


def _table_statements(stage: Stage, scope: Scope) -> list[dict[str, Any]]:
    table_name = stage.setting("ROLEBROKER_TABLE")
    if not table_name:
        return []
    table = scope.arn("dynamodb", f"table/{table_name}")
    return [_statement("RequestTable", TABLE_ACTIONS, [table]),
            _statement("RequestTableIndexes", INDEX_ACTIONS, [f"{table}/index/*"])]


def _settings_statements(stage: Stage, scope: Scope) -> list[dict[str, Any]]:
    statements = []
    if stage.parameters:
        arns = [_parameter_arn(scope, name) for name in stage.parameters]
        statements.append(_statement("ReadSettings", ["ssm:GetParameter"], arns))
        # SecureString parameters: only through SSM, only for these parameters.
        # (With the AWS managed aws/ssm key the key policy already allows it;
        # this statement is what a customer managed key needs.)
        statements.append(_statement("DecryptSettings", ["kms:Decrypt"], [scope.arn("kms", "key/*")], {
            "StringLike": {
                "kms:EncryptionContext:PARAMETER_ARN": arns,
                "kms:ViaService": f"ssm.{scope.region}.amazonaws.com",
            },
        }))
    if stage.policy_location.startswith("s3://"):
        bucket, _, key = stage.policy_location[len("s3://"):].partition("/")
        statements.append(_statement("ReadPolicyObject", ["s3:GetObject"],
                                     [f"arn:{scope.partition}:s3:::{bucket}/{key}"]))
    return statements


def source_principal_policy(policy: AccessPolicy) -> dict[str, Any]:
    """The policy of the dedicated IAM user whose keys the broker may hold (long sessions)."""
    return {"Version": "2012-10-17", "Statement": [assume_statement(policy)]}


# --------------------------------------------------------------------------
# Trusting accounts


@dataclass(frozen=True)
class TrustingRole:
    """One IAM role in a trusting account; several policy roles may share it."""

    arn: str
    names: tuple[str, ...]
    max_session_seconds: int

    @property
    def path(self) -> str:
        parts = self.arn.split(":role/", 1)[1].split("/")
        return "/" + "".join(p + "/" for p in parts[:-1])

    @property
    def role_name(self) -> str:
        return self.arn.rsplit("/", 1)[1]


def trusting_roles(policy: AccessPolicy) -> dict[str, tuple[Account, list[TrustingRole]]]:
    """Per account name: the account and its distinct IAM roles, sorted by ARN."""
    grouped: dict[str, dict[str, list[Any]]] = {}
    for role in policy.roles.values():
        by_arn = grouped.setdefault(role.account.name, {})
        by_arn.setdefault(role.role_arn, []).append(role)
    result: dict[str, tuple[Account, list[TrustingRole]]] = {}
    for account_name in sorted(grouped):
        by_arn = grouped[account_name]
        roles = [
            TrustingRole(
                arn=arn,
                names=tuple(sorted(r.name for r in by_arn[arn])),
                max_session_seconds=max(IAM_MIN_SESSION, *(r.max_duration_seconds for r in by_arn[arn])),
            )
            for arn in sorted(by_arn)
        ]
        result[account_name] = (by_arn[roles[0].arn][0].account, roles)
    return result


def trust_policy(principal: Any, external_id: Any | None) -> dict[str, Any]:
    """The trust policy of a trusting role. ``principal``/``external_id`` may be CFN refs.

    One statement per action, because each action is authorised on its own
    during the one AssumeRole call. The ExternalId and the demand for a
    SourceIdentity sit on sts:AssumeRole: without that statement nothing is
    assumed, so repeating them on the others would add nothing. TagSession
    may set only the broker's own tags, none of them transitive, so a
    session cannot carry tags into a chained role.
    """
    assume_condition: dict[str, Any] = {"Null": {"sts:SourceIdentity": "false"}}
    if external_id is not None:
        assume_condition["StringEquals"] = {"sts:ExternalId": external_id}
    who = {"AWS": principal}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "BrokerAssumesRole", "Effect": "Allow", "Principal": who, "Action": "sts:AssumeRole",
             "Condition": assume_condition},
            {"Sid": "BrokerSetsSourceIdentity", "Effect": "Allow", "Principal": who,
             "Action": "sts:SetSourceIdentity"},
            {"Sid": "BrokerTagsSession", "Effect": "Allow", "Principal": who, "Action": "sts:TagSession",
             "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": list(SESSION_TAG_KEYS)},
                           "Null": {"sts:TransitiveTagKeys": "true"}}},
        ],
    }


def _logical_ids(roles: Sequence[TrustingRole]) -> list[str]:
    ids: list[str] = []
    for role in roles:
        base = re.sub(r"[^A-Za-z0-9]", "", role.role_name) or "Role"
        candidate, n = base, 2
        while candidate in ids:
            candidate, n = f"{base}{n}", n + 1
        ids.append(candidate)
    return ids


def roles_template(account: Account, roles: Sequence[TrustingRole],
                   broker_principals: Sequence[str]) -> dict[str, Any]:
    """CloudFormation for one trusting account's roles; StackSet-ready (no account literals)."""
    parameters: dict[str, Any] = {
        "BrokerRoleArns": {
            "Type": "CommaDelimitedList", "Default": ",".join(broker_principals),
            "AllowedPattern": PRINCIPAL_ARN_RE.pattern,
            "Description": "The broker's execution roles (or its source principal) in the trusted account",
        },
    }
    if account.external_id:
        parameters["ExternalId"] = {
            "Type": "String", "Default": account.external_id, "MinLength": 2, "MaxLength": 1224,
            "AllowedPattern": r"^[\w+=,.@:/-]+$",
            "Description": "Must equal this account's external_id in the access policy",
        }
    parameters["PermissionsBoundaryArn"] = {
        "Type": "String", "Default": "",
        "Description": "Optional permissions boundary for every role (empty: none)",
    }
    conditions: dict[str, Any] = {
        "HasPermissionsBoundary": {"Fn::Not": [{"Fn::Equals": [{"Ref": "PermissionsBoundaryArn"}, ""]}]},
    }
    resources: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    external_id = {"Ref": "ExternalId"} if account.external_id else None
    for logical_id, role in zip(_logical_ids(roles), roles, strict=True):
        policies = f"{logical_id}ManagedPolicyArns"
        has_policies = f"{logical_id}HasManagedPolicies"
        parameters[policies] = {
            "Type": "CommaDelimitedList", "Default": "",
            "Description": f"Managed policy ARNs that give {role.role_name} its permissions "
                           f"(used by: {', '.join(role.names)})",
        }
        conditions[has_policies] = {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": policies}]}, ""]}]}
        resources[logical_id] = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": role.role_name,
                "Path": role.path,
                "Description": f"rolebroker: {', '.join(role.names)}"[:1000],
                "MaxSessionDuration": role.max_session_seconds,
                "AssumeRolePolicyDocument": trust_policy({"Ref": "BrokerRoleArns"}, external_id),
                "ManagedPolicyArns": {"Fn::If": [has_policies, {"Ref": policies}, {"Ref": "AWS::NoValue"}]},
                "PermissionsBoundary": {"Fn::If": ["HasPermissionsBoundary", {"Ref": "PermissionsBoundaryArn"},
                                                   {"Ref": "AWS::NoValue"}]},
                "Tags": [{"Key": "managed-by", "Value": "rolebroker"}],
            },
        }
        outputs[f"{logical_id}Arn"] = {"Value": {"Fn::GetAtt": [logical_id, "Arn"]}}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"rolebroker trusting roles for account {account.name} "
                       "(generated by python -m infra.generate trust; do not edit)",
        "Parameters": parameters,
        "Conditions": conditions,
        "Resources": resources,
        "Outputs": outputs,
    }


def write_trust(policy: AccessPolicy, broker_principals: Sequence[str], out: Path) -> list[Path]:
    for arn in broker_principals:
        if not PRINCIPAL_ARN_RE.match(arn):
            raise GenerateError(
                f"--broker-role-arn must be an IAM role (or user) ARN such as "
                f"arn:aws:iam::111111111111:role/rolebroker-prod-api_handler, not {arn!r}; "
                "an account root or an assumed-role session would trust far more than the broker"
            )
    principals = sorted(set(broker_principals))
    principal: Any = principals[0] if len(principals) == 1 else principals
    written = []
    for account_name, (account, roles) in trusting_roles(policy).items():
        directory = out / account_name
        directory.mkdir(parents=True, exist_ok=True)
        for role in roles:
            path = directory / f"trust-policy-{role.role_name}.json"
            path.write_text(render_json(trust_policy(principal, account.external_id)), encoding="utf-8")
            written.append(path)
        template = roles_template(account, roles, principals)
        path = directory / "roles.yaml"
        path.write_text(render_yaml(template), encoding="utf-8")
        written.append(path)
    return written


# --------------------------------------------------------------------------
# Rendering and the command line


def render_json(document: Any) -> str:
    return json.dumps(document, indent=2) + "\n"


class _NoAliasDumper(yaml.SafeDumper):
    """Writes shared objects out in full: anchors would only puzzle a reviewer."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_yaml(document: Any) -> str:
    header = "# Generated by `python -m infra.generate trust` from the access policy; do not edit.\n"
    body = yaml.dump(document, Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=False, width=120)
    return header + body


def _scope(args: argparse.Namespace) -> Scope:
    if not ACCOUNT_RE.match(args.account_id):
        raise GenerateError(f"--account-id must be 12 digits, got {args.account_id!r}")
    if not REGION_RE.match(args.region):
        raise GenerateError(f"--region must be an AWS region such as eu-west-1, got {args.region!r}")
    return Scope(partition=args.partition, region=args.region, account=args.account_id)


def _expected_broker_policy(args: argparse.Namespace) -> tuple[Path, str]:
    project = Path(args.project_dir)
    stage = stage_from_config(load_config(project), args.stage)
    text = render_json(broker_policy(load_policy(Path(args.policy)), stage, _scope(args)))
    return project / ".chalice" / f"policy-{args.stage}.json", text


def cmd_iam(args: argparse.Namespace) -> int:
    path, text = _expected_broker_policy(args)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    path, expected = _expected_broker_policy(args)
    actual = path.read_text(encoding="utf-8") if path.exists() else ""
    if actual == expected:
        print(f"{path} is up to date", file=sys.stderr)
        return 0
    sys.stdout.writelines(difflib.unified_diff(
        actual.splitlines(keepends=True), expected.splitlines(keepends=True),
        fromfile=str(path), tofile="generated"))
    print(f"{path} drifts from the access policy; run: python -m infra.generate iam "
          f"--policy {args.policy} --stage {args.stage} (with the same --account-id/--region)", file=sys.stderr)
    return 1


def cmd_trust(args: argparse.Namespace) -> int:
    for path in write_trust(load_policy(Path(args.policy)), args.broker_role_arn, Path(args.out)):
        print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_source_principal(args: argparse.Namespace) -> int:
    text = render_json(source_principal_policy(load_policy(Path(args.policy))))
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m infra.generate", description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="command", required=True)
    for name, helptext in (("iam", "write .chalice/policy-<stage>.json"),
                           ("check", "exit 1 with a diff if .chalice/policy-<stage>.json drifts")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--policy", required=True, help="access policy file (YAML or JSON)")
        p.add_argument("--stage", required=True)
        p.add_argument("--account-id", default="*", help="trusted account id (default *: see module doc)")
        p.add_argument("--region", default="*", help="the broker's region (default *)")
        p.add_argument("--partition", default="aws")
        p.add_argument("--project-dir", default=str(ROOT), help=argparse.SUPPRESS)
        p.set_defaults(run=cmd_iam if name == "iam" else cmd_check)
    p = sub.add_parser("trust", help="trust policies and a CloudFormation template per trusting account")
    p.add_argument("--policy", required=True)
    p.add_argument("--broker-role-arn", required=True, action="append",
                   help="a broker execution role, e.g. arn:aws:iam::ID:role/rolebroker-prod-api_handler; "
                        "repeat it for each function that assumes roles (the Slack worker too)")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(run=cmd_trust)
    p = sub.add_parser("source-principal", help="the IAM policy of the long-session source principal")
    p.add_argument("--policy", required=True)
    p.add_argument("--out")
    p.set_defaults(run=cmd_source_principal)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except (GenerateError, PolicyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
