"""What the trusting accounts deploy: trust policies and one StackSet for all of them.

Design, for an organisation of hundreds of accounts:

* **Trust that survives the broker.** A trust policy's ``Principal`` is the
  trusted account (``arn:aws:iam::<trusted>:root``) and an ``ArnEquals``
  condition on ``aws:PrincipalArn`` names the broker's roles. IAM resolves a
  role ARN in ``Principal`` to the role's unique id when the policy is saved,
  so naming the broker's roles there means the broker must exist first, and
  re-creating them silently breaks trust in every account. A condition keeps
  the ARN as text: deploy order does not matter and a re-created broker is
  trusted again. The account root as principal alone would trust every
  principal in the trusted account; the condition narrows it to the broker.
* **One template, every account.** Roles are the same few names across an
  organisation (ReadOnly, Admin ...) with per-account differences. The
  template creates the union of the policy's role names, each under a
  condition read from a mapping keyed by ``AWS::AccountId``: the account's
  ExternalId and, per role, its ``MaxSessionDuration`` or ``"0"`` for "not in
  this account". A mapping holds 200 accounts, so accounts are grouped by
  the last digit of their id and each stack instance names its group in a
  parameter override. One StackSet deploys it to every account (SERVICE_MANAGED,
  Organizations targets). When a template would break a CloudFormation quota
  (200 attributes per mapping key, 200 parameters, 500 resources, 1 MB),
  the roles are split over as many templates as needed, each its own
  StackSet.
* **Roles under the broker's IAM path** (``/rolebroker/``) are what the
  templates create and what the broker's constant-size identity policy
  allows. Roles outside it (existing roles an operator brings) are not
  created; they get a trust policy file to apply and a warning.
* **Extensible**: later features add per-account resources (a revoker role)
  or change every broker-managed role (a permissions boundary) through
  :class:`TemplateExtension`; every quota is checked after extensions ran.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from chalicelib.access.policy import AccessPolicy, Account
from chalicelib.aws.sts import BROKER_ROLE_PATH
from chalicelib.stamping import GRANT_TAG, GROUPS_TAG, IDENTITY_TAG, ISSUER_TAG, TICKET_TAG
from infra import quotas

BROKER_PATH = BROKER_ROLE_PATH
IAM_MIN_SESSION = 3600  # IAM refuses a MaxSessionDuration below one hour
ABSENT = "0"  # mapping value: this role is not in this account
NO_EXTERNAL_ID = "-"  # mapping value: this account has no ExternalId (IAM's minimum length is 2)
# The session tag keys the broker may set, in one place. The three the broker
# stamps today, and three reserved for features being built (JIT grants,
# ticket references, break-glass sessions), allowed now so that trusting
# accounts need no redeploy when they ship.
RESERVED_TAG_KEYS = ("rolebroker:breakglass", GRANT_TAG, TICKET_TAG)
SESSION_TAG_KEYS = tuple(sorted({GROUPS_TAG, IDENTITY_TAG, ISSUER_TAG, *RESERVED_TAG_KEYS}))
PRINCIPAL_ARN_RE = re.compile(r"^arn:(aws[a-z-]*):iam::(\d{12}):(role|user)/[\w+=,.@/-]+$")
# create-stack-instances: how many accounts at once. IAM is global, so one
# region; a failed account stops the rollout early rather than repeating the
# same mistake in 500 accounts.
OPERATION_PREFERENCES = {"RegionConcurrencyType": "SEQUENTIAL", "MaxConcurrentPercentage": 25,
                         "FailureTolerancePercentage": 5, "ConcurrencyMode": "SOFT_FAILURE_TOLERANCE"}
FIXED_PARAMETERS = 4  # TrustedAccountId, BrokerPrincipalArns, PermissionsBoundaryArn, AccountGroup
# A role's logical id shares the template's namespaces with these names: its
# Resources with the Parameters (Ref reads both; CloudFormation refuses a
# duplicate), its mapping attribute with the account's ExternalId.
TEMPLATE_NAMES = {"AccountGroup": "a parameter", "TrustedAccountId": "a parameter",
                  "BrokerPrincipalArns": "a parameter", "PermissionsBoundaryArn": "a parameter",
                  "ExternalId": "the mapping attribute of each account's ExternalId"}
POLICIES_SUFFIX = "ManagedPolicyArns"  # each role's parameter: <logical id>ManagedPolicyArns
# A mapping holds at most 200 keys (cfn-lint's E7010), so accounts are spread
# over mappings by the last digit of their id, Accounts0 ... Accounts9, and
# each stack instance is told its mapping through the AccountGroup parameter:
# still one template, one StackSet. The digit never changes, so adding an
# account never moves another to a different group (which would break its
# stack instance's parameter override); ten groups of 200 hold 2,000 accounts.
ACCOUNTS_PER_MAPPING = 200


class TrustError(Exception):
    """The inputs cannot produce sound trusting-account artefacts; the message says why."""


# --------------------------------------------------------------------------
# The roles, as IAM sees them


@dataclass(frozen=True)
class IamRole:
    """One IAM role in one account; several policy roles may share it."""

    account: Account
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

    @property
    def under_broker_path(self) -> bool:
        return self.path.startswith(BROKER_PATH)

    @property
    def key(self) -> tuple[str, str]:
        """What makes two accounts' roles 'the same role' in the template."""
        return self.path, self.role_name


def iam_roles(policy: AccessPolicy) -> list[IamRole]:
    """The policy's distinct IAM roles, sorted by ARN."""
    by_arn: dict[str, list[Any]] = {}
    for role in policy.roles.values():
        by_arn.setdefault(role.role_arn, []).append(role)
    return [IamRole(account=same[0].account, arn=arn, names=tuple(sorted(r.name for r in same)),
                    max_session_seconds=max(IAM_MIN_SESSION, *(r.max_duration_seconds for r in same)))
            for arn, same in sorted(by_arn.items())]


def partition_of(arn: str) -> str:
    return arn.split(":", 2)[1]


# --------------------------------------------------------------------------
# Trust policies


@dataclass(frozen=True)
class Broker:
    """The principals the trusting roles trust, all in one trusted account."""

    principals: tuple[str, ...]

    @classmethod
    def from_arns(cls, arns: Sequence[str]) -> Broker:
        accounts = set()
        for arn in arns:
            match = PRINCIPAL_ARN_RE.match(arn)
            if not match:
                raise TrustError(
                    f"--broker-role-arn must be an IAM role (or user) ARN such as "
                    f"arn:aws:iam::111111111111:role/rolebroker-prod-api_handler, not {arn!r}; "
                    "an account root or an assumed-role session would trust far more than the broker")
            accounts.add(match.group(2))
        if len(accounts) != 1:
            raise TrustError(f"the broker's principals must all be in the trusted account, got {sorted(accounts)}")
        return cls(tuple(sorted(set(arns))))

    @property
    def account(self) -> str:
        return self.principals[0].split(":")[4]

    @property
    def partition(self) -> str:
        return partition_of(self.principals[0])

    @property
    def root(self) -> str:
        return f"arn:{self.partition}:iam::{self.account}:root"


def trust_policy(root: Any, principal_arns: Any, external_id: Any | None) -> dict[str, Any]:
    """A trusting role's trust policy. Arguments may be CloudFormation expressions.

    One statement per action, because each is authorised on its own during
    the one AssumeRole call; each names the broker by ``aws:PrincipalArn``.
    The ExternalId and the demand for a SourceIdentity sit on sts:AssumeRole.
    TagSession may set only the broker's own tag keys, none of them
    transitive, so a session cannot carry tags into a chained role.
    """
    broker = {"ArnEquals": {"aws:PrincipalArn": principal_arns}}
    assume: dict[str, Any] = {**broker, "Null": {"sts:SourceIdentity": "false"}}
    if external_id is not None:
        assume["StringEquals"] = {"sts:ExternalId": external_id}
    who = {"AWS": root}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "BrokerAssumesRole", "Effect": "Allow", "Principal": who, "Action": "sts:AssumeRole",
             "Condition": assume},
            {"Sid": "BrokerSetsSourceIdentity", "Effect": "Allow", "Principal": who,
             "Action": "sts:SetSourceIdentity", "Condition": broker},
            {"Sid": "BrokerTagsSession", "Effect": "Allow", "Principal": who, "Action": "sts:TagSession",
             "Condition": {**broker, "ForAllValues:StringEquals": {"aws:TagKeys": list(SESSION_TAG_KEYS)},
                           "Null": {"sts:TransitiveTagKeys": "true"}}},
        ],
    }


def account_trust_policy(broker: Broker, account: Account, quota: quotas.Quota) -> dict[str, Any]:
    document = trust_policy(broker.root, list(broker.principals), account.external_id)
    quota.check(quotas.iam_policy_size(document), f"the trust policy for account {account.name} ({account.id})")
    return document


# --------------------------------------------------------------------------
# StackSet templates


class TemplateExtension(Protocol):
    """Adds to the trusting-account template (see the module docstring)."""

    def extend(self, template: dict[str, Any], role_ids: Sequence[str], first: bool) -> None:
        """Change ``template`` in place. ``role_ids`` are the broker-managed roles'
        logical ids in it; per-account resources go only where ``first`` is true."""
        ...


@dataclass
class RoleSlot:
    """One role name of the template and the accounts that have it."""

    logical_id: str
    path: str
    role_name: str
    by_account: dict[str, IamRole] = field(default_factory=dict)


def _slots(roles: Sequence[IamRole]) -> list[RoleSlot]:
    slots: dict[tuple[str, str], RoleSlot] = {}
    used: set[str] = set()
    for role in roles:
        slot = slots.get(role.key)
        if slot is None:
            base = re.sub(r"[^A-Za-z0-9]", "", role.path.removeprefix(BROKER_PATH).title() + role.role_name) or "Role"
            logical, n = base, 2
            while logical in used:
                logical, n = f"{base}{n}", n + 1
            used.add(logical)
            slot = slots[role.key] = RoleSlot(logical, role.path, role.role_name)
        slot.by_account[role.account.id] = role
    _refuse_shared_names(list(slots.values()))
    return sorted(slots.values(), key=lambda s: s.logical_id)


def _refuse_shared_names(slots: Sequence[RoleSlot]) -> None:
    """Refuse roles whose logical id is a name the template already uses: CloudFormation
    would refuse the template, or (``TrustedAccountId``) read the role where the account was meant."""
    taken = dict(TEMPLATE_NAMES)
    taken.update((f"{slot.logical_id}{POLICIES_SUFFIX}", f"the managed policies parameter of role "
                  f"{slot.path}{slot.role_name}") for slot in slots)
    for slot in slots:
        if slot.logical_id in taken:
            raise TrustError(
                f"role {slot.path}{slot.role_name} would have the logical id {slot.logical_id}, which the "
                f"trusting-account template already uses for {taken[slot.logical_id]}; rename the role or put it "
                f"under another path below {BROKER_PATH}")


def _in_account(attribute: str) -> dict[str, Any]:
    return {"Fn::FindInMap": [{"Ref": "AccountGroup"}, {"Ref": "AWS::AccountId"}, attribute]}


def account_groups(accounts: Sequence[Account]) -> dict[str, list[Account]]:
    """Accounts by mapping name: the last digit of the id, so membership is stable."""
    groups: dict[str, list[Account]] = {}
    for account in sorted(accounts, key=lambda a: a.id):
        groups.setdefault(f"Accounts{account.id[-1]}", []).append(account)
    for name, members in groups.items():
        quotas.Quota(quotas.MAPPING_KEYS.name, ACCOUNTS_PER_MAPPING, quotas.MAPPING_KEYS.unit,
                     quotas.MAPPING_KEYS.remedy).check(len(members), f"{name} (accounts whose id ends in {name[-1]})")
    return dict(sorted(groups.items()))


def stackset_template(slots: Sequence[RoleSlot], accounts: Sequence[Account], broker: Broker,
                      extensions: Sequence[TemplateExtension] = (), first: bool = True) -> dict[str, Any]:
    """One template for every account in ``accounts``, creating the ``slots`` each account has."""
    mappings: dict[str, dict[str, dict[str, str]]] = {}
    for name, group in account_groups(accounts).items():
        mapping = mappings[name] = {}
        for account in group:
            row = {"ExternalId": account.external_id or NO_EXTERNAL_ID}
            for slot in slots:
                role = slot.by_account.get(account.id)
                row[slot.logical_id] = str(role.max_session_seconds) if role else ABSENT
            mapping[account.id] = row
    parameters: dict[str, Any] = {
        "AccountGroup": {"Type": "String", "Default": min(mappings), "AllowedValues": sorted(mappings),
                         "Description": "The mapping that lists this account (create-stack-instances overrides it)"},
        "TrustedAccountId": {"Type": "String", "Default": broker.account, "AllowedPattern": r"^\d{12}$",
                             "Description": "The account the broker runs in"},
        "BrokerPrincipalArns": {
            "Type": "CommaDelimitedList", "Default": ",".join(broker.principals),
            "Description": "The broker's execution roles (or its source principal), trusted by ARN"},
        "PermissionsBoundaryArn": {"Type": "String", "Default": "",
                                   "Description": "Optional permissions boundary for every role (empty: none)"},
    }
    conditions: dict[str, Any] = {
        "HasExternalId": {"Fn::Not": [{"Fn::Equals": [_in_account("ExternalId"), NO_EXTERNAL_ID]}]},
        "HasPermissionsBoundary": {"Fn::Not": [{"Fn::Equals": [{"Ref": "PermissionsBoundaryArn"}, ""]}]},
    }
    external_id = {"Fn::If": ["HasExternalId", _in_account("ExternalId"), {"Ref": "AWS::NoValue"}]}
    trust = trust_policy({"Fn::Sub": "arn:${AWS::Partition}:iam::${TrustedAccountId}:root"},
                         {"Ref": "BrokerPrincipalArns"}, external_id)
    resources: dict[str, Any] = {}
    for slot in slots:
        policies = f"{slot.logical_id}{POLICIES_SUFFIX}"
        parameters[policies] = {"Type": "CommaDelimitedList", "Default": "",
                                "Description": f"Managed policy ARNs giving {slot.role_name} its permissions"}
        conditions[f"{slot.logical_id}InAccount"] = {
            "Fn::Not": [{"Fn::Equals": [_in_account(slot.logical_id), ABSENT]}]}
        conditions[f"{slot.logical_id}HasPolicies"] = {
            "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": policies}]}, ""]}]}
        resources[slot.logical_id] = {
            "Type": "AWS::IAM::Role",
            "Condition": f"{slot.logical_id}InAccount",
            # Removing a role from the policy removes it from the account: a
            # retained role whose trust still names the broker is access that
            # nobody reviews any more.
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {
                "RoleName": slot.role_name,
                "Path": slot.path,
                "Description": f"rolebroker: {slot.role_name} (generated from the access policy)",
                "MaxSessionDuration": _in_account(slot.logical_id),
                "AssumeRolePolicyDocument": trust,
                "ManagedPolicyArns": {"Fn::If": [f"{slot.logical_id}HasPolicies", {"Ref": policies},
                                                 {"Ref": "AWS::NoValue"}]},
                "PermissionsBoundary": {"Fn::If": ["HasPermissionsBoundary", {"Ref": "PermissionsBoundaryArn"},
                                                   {"Ref": "AWS::NoValue"}]},
                "Tags": [{"Key": "managed-by", "Value": "rolebroker"}],
            },
        }
    template: dict[str, Any] = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "rolebroker trusting roles for every account of the organisation "
                       "(generated by python -m infra.generate trust; do not edit)",
        "Parameters": parameters,
        "Mappings": mappings,
        "Conditions": conditions,
        "Resources": resources,
    }
    for extension in extensions:
        extension.extend(template, [s.logical_id for s in slots], first)
    shared = sorted(set(template["Resources"]) & set(template["Parameters"]))
    if shared:  # an extension's name met a role's
        raise TrustError(f"the trusting-account template would use {', '.join(shared)} both as a resource and "
                         "as a parameter; rename the role")
    return template


@dataclass(frozen=True)
class StackSetPart:
    """One template of the organisation's roles, and the accounts it deploys to."""

    number: int
    template: dict[str, Any]
    body: str
    groups: dict[str, tuple[str, ...]]  # mapping name -> its account ids
    sizes: dict[str, int]


def plan_stacksets(policy: AccessPolicy, broker: Broker,
                   extensions: Sequence[TemplateExtension] = ()) -> list[StackSetPart]:
    """Templates for every role under the broker path, split only as far as the quotas require."""
    slots = _slots([r for r in iam_roles(policy) if r.under_broker_path])
    if not slots:
        return []
    capacity = min(quotas.MAPPING_ATTRIBUTES.limit - 1, quotas.TEMPLATE_PARAMETERS.limit - FIXED_PARAMETERS)
    chunks = [slots[i:i + capacity] for i in range(0, len(slots), capacity)]
    parts: list[StackSetPart] = []
    pending = list(chunks)
    while pending:
        chunk = pending.pop(0)
        first = not parts
        accounts = _accounts_of(policy, chunk, every_account=first)
        template = stackset_template(chunk, accounts, broker, extensions, first)
        body = render_yaml(template)
        try:
            sizes = quotas.check_template(template, body, f"trusting-account template {len(parts) + 1}")
        except quotas.QuotaExceeded:
            if len(chunk) == 1:
                raise
            half = len(chunk) // 2
            pending[:0] = [chunk[:half], chunk[half:]]
            continue
        groups = {name: tuple(mapping) for name, mapping in template["Mappings"].items()}
        parts.append(StackSetPart(len(parts) + 1, template, body, groups, sizes))
    return parts


def _accounts_of(policy: AccessPolicy, chunk: Sequence[RoleSlot], every_account: bool) -> list[Account]:
    if every_account:
        return list(policy.accounts.values())
    ids = {account for slot in chunk for account in slot.by_account}
    return [a for a in policy.accounts.values() if a.id in ids]


def create_stack_set_request(part: StackSetPart, name: str, template_url: str | None) -> dict[str, Any]:
    """The CreateStackSet request (``aws cloudformation create-stack-set --cli-input-json``)."""
    request: dict[str, Any] = {
        "StackSetName": name if part.number == 1 else f"{name}-{part.number}",
        "Description": "rolebroker trusting roles (python -m infra.generate trust)",
        "Capabilities": ["CAPABILITY_NAMED_IAM"],
        "PermissionModel": "SERVICE_MANAGED",
        "AutoDeployment": {"Enabled": False},
        "ManagedExecution": {"Active": True},
    }
    if template_url:
        request["TemplateURL"] = template_url
    elif part.sizes["needs_s3"]:
        raise TrustError(
            f"trusting-account template {part.number} is {part.sizes['bytes']:,} bytes, over the "
            f"{quotas.TEMPLATE_BODY_INLINE.name} quota of {quotas.TEMPLATE_BODY_INLINE.limit:,}: "
            "upload it to S3: pass --template-bucket")
    else:
        request["TemplateBody"] = part.body
    return request


def create_stack_instances_requests(part: StackSetPart, stack_set_name: str, organizational_unit: str,
                                    region: str) -> dict[str, dict[str, Any]]:
    """CreateStackInstances requests, one per account group: the OU (or root) intersected with its accounts."""
    return {group: {
        "StackSetName": stack_set_name,
        "DeploymentTargets": {"OrganizationalUnitIds": [organizational_unit], "Accounts": list(accounts),
                              "AccountFilterType": "INTERSECTION"},
        "Regions": [region],
        "ParameterOverrides": [{"ParameterKey": "AccountGroup", "ParameterValue": group}],
        "OperationPreferences": dict(OPERATION_PREFERENCES),
    } for group, accounts in part.groups.items()}


# --------------------------------------------------------------------------
# Writing it all


@dataclass(frozen=True)
class TrustOptions:
    out: Path
    trust_quota: quotas.Quota = quotas.TRUST_POLICY
    stack_set_name: str = "rolebroker-roles"
    organizational_unit: str = "r-root"
    region: str = "us-east-1"
    template_bucket: str | None = None
    extensions: tuple[TemplateExtension, ...] = ()


def write_trust(policy: AccessPolicy, broker: Broker, options: TrustOptions) -> list[Path]:
    written: list[Path] = []
    policies = options.out / "trust-policies"
    policies.mkdir(parents=True, exist_ok=True)
    for account in sorted(policy.accounts.values(), key=lambda a: a.name):
        path = policies / f"{account.name}.json"
        path.write_text(render_json(account_trust_policy(broker, account, options.trust_quota)), encoding="utf-8")
        written.append(path)
    # The template's trust policy, resolved, is the same document as the files
    # above; checking those checked every account's.
    outside = [r for r in iam_roles(policy) if not r.under_broker_path]
    if outside:
        print(f"warning: {len(outside)} role(s) outside {BROKER_PATH} are not created by the templates; apply "
              f"{policies}/<account>.json to each with aws iam update-assume-role-policy: "
              + ", ".join(r.arn for r in outside[:5]) + (" ..." if len(outside) > 5 else ""), file=sys.stderr)
    for part in plan_stacksets(policy, broker, options.extensions):
        template_path = options.out / f"roles-{part.number}.yaml"
        template_path.write_text(part.body, encoding="utf-8")
        url = None
        if options.template_bucket:
            url = f"https://{options.template_bucket}.s3.amazonaws.com/rolebroker/{template_path.name}"
        request = create_stack_set_request(part, options.stack_set_name, url)
        documents = {f"stackset-{part.number}.json": request}
        for group, instances in create_stack_instances_requests(
                part, request["StackSetName"], options.organizational_unit, options.region).items():
            documents[f"instances-{part.number}-{group}.json"] = instances
        for name, document in documents.items():
            (options.out / name).write_text(render_json(document), encoding="utf-8")
            written.append(options.out / name)
        written.append(template_path)
    return written


def render_json(document: Any) -> str:
    return json.dumps(document, indent=2) + "\n"


class _NoAliasDumper(yaml.SafeDumper):
    """Writes shared objects out in full: anchors would only puzzle a reviewer."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_yaml(document: Mapping[str, Any]) -> str:
    header = "# Generated by `python -m infra.generate trust` from the access policy; do not edit.\n"
    body = yaml.dump(dict(document), Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=False, width=120)
    return header + body
