"""The trusting accounts, in the AWS emulation: what the StackSet would create in each.

moto keeps IAM per account and picks the account from the caller's
credentials, so for each account of the access policy this assumes a role
there (moto's STS hands out credentials of that account) and creates, from
the same document builders the StackSet template uses: the revocations
boundary, the revoker role, and every role the policy names, trusting the
broker and bounded by the revocations policy. Roles outside ``/rolebroker/``
get the boundary as an operator would attach it by hand (docs/deploy.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from chalicelib.access.policy import AccessPolicy
from chalicelib.jit.denies import BOUNDARY_POLICY_NAME, REVOKER_ROLE_NAME, SYSTEM_PATH, base_document, boundary_arn
from infra.revoker import revoker_policy, revoker_trust_policy
from infra.trusting import iam_roles, trust_policy

# What moto calls the caller without other credentials: the broker's "own" account.
BROKER_ACCOUNT = "123456789012"
SETUP_ROLE = "devstack-setup"


def iam_in(account_id: str, sts: Any, client_with: Callable[[str, dict[str, str]], Any]) -> Any:
    """An IAM client acting in ``account_id`` (moto: credentials of an assumed role there)."""
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/{SETUP_ROLE}",
                            RoleSessionName="devstack-setup")["Credentials"]
    return client_with("iam", {"aws_access_key_id": creds["AccessKeyId"],
                               "aws_secret_access_key": creds["SecretAccessKey"],
                               "aws_session_token": creds["SessionToken"]})


def seed_trusting_accounts(policy: AccessPolicy, sts: Any, client_with: Callable[[str, dict[str, str]], Any],
                           broker_principals: Sequence[str], *, skip: Sequence[str] = ()) -> list[str]:
    """Create every account's boundary, revoker and roles; returns the account ids seeded."""
    root = f"arn:aws:iam::{broker_principals[0].split(':')[4]}:root"
    seeded = []
    roles = iam_roles(policy)
    for account in sorted(policy.accounts.values(), key=lambda a: a.id):
        if account.id in skip:
            continue
        iam = iam_in(account.id, sts, client_with)
        _create_boundary(iam)
        _create_revoker(iam, account.id, root, list(broker_principals))
        for role in (r for r in roles if r.account.id == account.id):
            _create_role(iam, role.arn, role.max_session_seconds,
                         trust_policy(root, list(broker_principals), account.external_id), account.id)
        seeded.append(account.id)
    return seeded


def _exists(call: Callable[[], Any]) -> None:
    try:
        call()
    except Exception as exc:  # moto's EntityAlreadyExists: the stack is being restarted on the same emulation
        if "EntityAlreadyExists" not in str(exc):
            raise


def _create_boundary(iam: Any) -> None:
    _exists(lambda: iam.create_policy(PolicyName=BOUNDARY_POLICY_NAME, Path=SYSTEM_PATH,
                                      PolicyDocument=json.dumps(base_document())))


def _create_revoker(iam: Any, account_id: str, root: str, principals: list[str]) -> None:
    _exists(lambda: iam.create_role(RoleName=REVOKER_ROLE_NAME, Path=SYSTEM_PATH,
                                    AssumeRolePolicyDocument=json.dumps(revoker_trust_policy(root, principals))))
    document = revoker_policy(boundary_arn(account_id), f"arn:aws:iam::{account_id}:role/rolebroker/*")
    iam.put_role_policy(RoleName=REVOKER_ROLE_NAME, PolicyName=REVOKER_ROLE_NAME, PolicyDocument=json.dumps(document))


def _create_role(iam: Any, arn: str, max_session: int, trust: dict[str, Any], account_id: str) -> None:
    parts = arn.split(":role", 1)[1].split("/")
    path, name = "/".join(parts[:-1]) + "/", parts[-1]
    _exists(lambda: iam.create_role(RoleName=name, Path=path, MaxSessionDuration=max_session,
                                    AssumeRolePolicyDocument=json.dumps(trust),
                                    PermissionsBoundary=boundary_arn(account_id)))
