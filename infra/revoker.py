"""What the kill switch needs in every trusting account: the revocations boundary and the revoker role.

``chalicelib/jit/denies.py`` explains the design; this module writes the
IAM side of it for the StackSet template (``infra/trusting.py``):

* ``/rolebroker-system/rolebroker-revocations``, a customer managed policy
  that starts as ``Allow *`` and is the permissions boundary of every
  broker-managed role (so it narrows nothing until a revocation adds a deny);
* ``/rolebroker-system/rolebroker-revoker``, a role the broker's roles
  assume (by ``aws:PrincipalArn``, like the trusting roles) with no
  ``SourceIdentity`` and no session tags, whose one inline policy allows
  versioning that boundary and reading the broker-managed roles, and
  explicitly denies everything else, whatever else is ever attached to it.

Nothing here lets the revoker widen a role: it cannot touch a role's own
policies, its trust or its boundary attachment, and what it writes into the
boundary can only take permissions away. The path ``/rolebroker-system/`` is
outside ``/rolebroker/``, the path the broker may assume for people, and the
policy loader refuses roles under it.
"""

from __future__ import annotations

from typing import Any

from chalicelib.aws.sts import BROKER_ROLE_PATH
from chalicelib.jit.denies import BOUNDARY_POLICY_NAME, REVOKER_ROLE_NAME, SYSTEM_PATH, base_document

BOUNDARY_ID = "RevocationsBoundary"
REVOKER_ID = "Revoker"
# Everything the revoker may do, and the resource each applies to (chalicelib/aws/iam.py calls them).
BOUNDARY_ACTIONS = ("iam:CreatePolicyVersion", "iam:DeletePolicyVersion", "iam:GetPolicy", "iam:GetPolicyVersion",
                    "iam:ListPolicyVersions")
ROLE_ACTIONS = ("iam:GetRole",)


def boundary_arn_expression() -> dict[str, str]:
    return {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:policy{SYSTEM_PATH}{BOUNDARY_POLICY_NAME}"}


def broker_roles_expression() -> dict[str, str]:
    return {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role{BROKER_ROLE_PATH}*"}


def revoker_trust_policy(root: Any, principal_arns: Any) -> dict[str, Any]:
    """Only the broker's roles, and only for plain sessions: none carrying a SourceIdentity or tags.

    A revoker session and a person's session are told apart by the trust
    policy itself: the broker stamps every person's session with a
    ``SourceIdentity`` (which needs ``sts:SetSourceIdentity``, not allowed
    here) and tags (``sts:TagSession``, not allowed either), so even a policy
    that named this role could never hand it to a person.
    """
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "BrokerWritesRevocations", "Effect": "Allow", "Principal": {"AWS": root},
        "Action": "sts:AssumeRole",
        "Condition": {"ArnEquals": {"aws:PrincipalArn": principal_arns}, "Null": {"sts:SourceIdentity": "true"}},
    }]}


def revoker_policy(boundary: Any, broker_roles: Any) -> dict[str, Any]:
    """The revoker's one inline policy: version the boundary, read the broker's roles, nothing else."""
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "VersionTheRevocationsBoundary", "Effect": "Allow", "Action": list(BOUNDARY_ACTIONS),
         "Resource": boundary},
        {"Sid": "ReadBrokerRoles", "Effect": "Allow", "Action": list(ROLE_ACTIONS), "Resource": broker_roles},
        # Explicit denies hold even if someone later attaches a broad policy to this role.
        {"Sid": "NothingElse", "Effect": "Deny", "NotAction": [*BOUNDARY_ACTIONS, *ROLE_ACTIONS], "Resource": "*"},
        {"Sid": "NoOtherPolicy", "Effect": "Deny", "Action": list(BOUNDARY_ACTIONS), "NotResource": boundary},
        {"Sid": "NoOtherRole", "Effect": "Deny", "Action": list(ROLE_ACTIONS), "NotResource": broker_roles},
    ]}


def per_account_resources(root: Any, principal_arns: Any) -> dict[str, Any]:
    """The boundary policy and the revoker role: once per account (the first template)."""
    return {
        BOUNDARY_ID: {
            "Type": "AWS::IAM::ManagedPolicy",
            "Properties": {
                "ManagedPolicyName": BOUNDARY_POLICY_NAME,
                "Path": SYSTEM_PATH,
                "Description": "rolebroker: permissions boundary of every broker-managed role; Allow * plus a "
                               "deny per revoked person (versioned by rolebroker-revoker; expected drift)",
                "PolicyDocument": base_document(),
            },
        },
        REVOKER_ID: {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": REVOKER_ROLE_NAME,
                "Path": SYSTEM_PATH,
                "Description": "rolebroker: writes the revocations boundary of this account, nothing else",
                "MaxSessionDuration": 3600,
                "AssumeRolePolicyDocument": revoker_trust_policy(root, principal_arns),
                "Policies": [{"PolicyName": REVOKER_ROLE_NAME,
                              "PolicyDocument": revoker_policy(boundary_arn_expression(),
                                                               broker_roles_expression())}],
                "Tags": [{"Key": "managed-by", "Value": "rolebroker"}],
            },
        },
    }
