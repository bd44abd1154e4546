"""ATTACK9 (security review of issues 9 and 10): the secrets key's policy.

docs/security.md: "a customer managed key whose key policy lets only the
broker's two roles decrypt ... the account administers the key but cannot
decrypt with it". The ``KeyAdministration`` statement gives the account
root ``kms:Create*``, which includes ``kms:CreateGrant``: with the account
as principal, any IAM principal in the trusted account whose identity
policy allows ``kms:CreateGrant`` (common in automation and backup roles,
and in ``PowerUserAccess``) can grant *itself* ``Decrypt`` on this key, and
then read the task signing key, the Slack signing secret and the bot token
through ``ssm:GetParameter``: with the signing secret it can forge Slack
requests as any approver.

Marked ``xfail(strict=True)``: it fails today (the finding); the fix must
remove the marker. Run with ``--runxfail`` to see the failure.
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.xfail(strict=True, reason="ATTACK9 F6: kms:Create* lets IAM principals grant themselves Decrypt")
def test_attack9_no_principal_of_the_account_can_grant_itself_decrypt() -> None:
    template = json.loads((ROOT / "infra" / "resources.json").read_text())
    statements = template["Resources"]["SecretsKey"]["Properties"]["KeyPolicy"]["Statement"]
    account_wide = [s for s in statements
                    if s["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}]
    for statement in account_wide:
        actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        granting = [a for a in actions if fnmatchcase("kms:CreateGrant", a)]
        assert not granting, f"{statement['Sid']} delegates kms:CreateGrant to IAM through {granting}"


def _put_parameter_commands(text: str) -> list[str]:
    """Each `aws ssm put-parameter` command of a guide, continuation lines joined."""
    joined = text.replace("\\\n", " ")
    return [line for line in joined.splitlines() if "aws ssm put-parameter" in line]


@pytest.mark.xfail(strict=True, reason="ATTACK9 F7: the guide never stores the task key, rotates on aws/ssm")
def test_attack9_the_guide_stores_every_stage_secret_under_the_stacks_key() -> None:
    # PutParameter without KeyId encrypts with the account's default key
    # (aws/ssm), which any principal allowed ssm:GetParameter can use: the
    # very exposure the customer managed key exists to close.
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    variables = config["stages"]["prod"]["environment_variables"]
    wanted = sorted(v[len("ssm:"):].replace("/prod/", "/$STAGE/") for v in variables.values()
                    if str(v).startswith("ssm:"))
    commands = _put_parameter_commands((ROOT / "docs" / "deploy.md").read_text())
    created = {name for name in wanted for c in commands if f'"{name}"' in c or name.replace("$STAGE", "prod") in c}
    assert created == set(wanted), f"deploy.md never creates {sorted(set(wanted) - created)}"
    without_key = [c.strip()[:90] for c in commands if "--type SecureString" in c and "--key-id" not in c]
    assert not without_key, without_key
