"""A synthetic organisation: an access policy with N accounts x R roles.

Used by the scale tests and ``make bench`` to measure what the generators
write and how fast the broker loads and decides at organisation scale
(500 accounts x 10 roles = 5,000 roles). It looks like a real organisation
rather than the best case for any one measurement: every account has an
ExternalId, role names repeat across accounts (as ReadOnly and Admin do in
real ones) but each account uses its own selection of them, rules mix groups
and claims, and some roles need MFA or an approval.

    python -m infra.synthetic --accounts 500 --roles-per-account 10 > policy.yaml
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

# Role names an organisation reuses from account to account.
ROLE_NAMES = (
    "ReadOnly", "Admin", "Deploy", "Billing", "NetworkAdmin", "DataEngineer", "SecurityAudit",
    "Support", "DatabaseAdmin", "Developer", "Operator", "IncidentResponse", "BreakGlass",
    "CostExplorer", "LogReader", "MLEngineer", "Analyst", "PipelineRunner", "BackupOperator",
    "DnsAdmin", "KeyAdmin", "ContainerDeploy", "Observability", "QA", "ReleaseManager",
)
REGIONS = ("eu-west-1", "us-east-1", "eu-central-1", "ap-southeast-2", "us-west-2")
BROKER_PATH = "rolebroker"


def account_id(index: int) -> str:
    return f"{100000000000 + index * 7919:012d}"


def synthetic_policy(accounts: int, roles_per_account: int) -> str:
    """The YAML text of an access policy for ``accounts`` x ``roles_per_account`` roles."""
    if not 1 <= roles_per_account <= len(ROLE_NAMES):
        raise ValueError(f"roles_per_account must be 1 to {len(ROLE_NAMES)}")
    lines = ["version: 1", "accounts:"]
    for a in range(accounts):
        lines += [f"  acct{a:04d}:",
                  f"    id: \"{account_id(a)}\"",
                  f"    external_id: rolebroker-acct{a:04d}",
                  f"    region: {REGIONS[a % len(REGIONS)]}"]
    lines.append("roles:")
    for a in range(accounts):
        for r in range(roles_per_account):
            lines += _role(a, r)
    lines += ["slack:", "  approvals_channel: C0APPROVALS"]
    return "\n".join(lines) + "\n"


def _role(a: int, r: int) -> list[str]:
    # Each account picks its own run of names, so the organisation's distinct
    # role names are all of ROLE_NAMES, not just the first few.
    name = ROLE_NAMES[(a * 3 + r) % len(ROLE_NAMES)]
    team = f"team-{a % 50:02d}"
    lines = [f"  acct{a:04d}-{name.lower()}:",
             f"    account: acct{a:04d}",
             f"    role_name: /{BROKER_PATH}/{name}",
             f"    max_duration_seconds: {3600 if r % 3 else 7200}",
             f"    console: {'true' if r % 2 else 'false'}",
             f"    description: {name} in account {a} for {team}"]
    if r % 7 == 3:
        lines.append("    require_mfa: true")
    lines += ["    allow:",
              f"      - groups: [{team}-{name.lower()}, platform-admins]"]
    if r % 4 == 1:
        lines += ["      - claims:",
                  f"          repository: acme/service-{a:04d}",
                  "          ref: refs/heads/main"]
    if r % 5 == 2:
        lines += ["    approval:",
                  f"      approvers: {{groups: [{team}-leads, security]}}",
                  "      max_grant_seconds: 14400"]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--roles-per-account", type=int, default=10)
    args = parser.parse_args(argv)
    sys.stdout.write(synthetic_policy(args.accounts, args.roles_per_account))
    return 0


if __name__ == "__main__":
    sys.exit(main())
