"""Validate an access policy and explain decisions: usable in the policy's CI.

    python -m chalicelib.policycheck policy.yaml
    python -m chalicelib.policycheck policy.yaml --role sandbox-admin \\
        --claims '{"email": "alice@example.com", "groups": ["platform-admins"]}' --expect allow

Exit status: 0 valid (and, with ``--expect``, the decision matched), 1 invalid
policy, 2 usage error, 3 the decision differed from ``--expect``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from chalicelib.access.policy import AccessPolicy, decide, parse_policy
from chalicelib.exceptions import NotFound, PolicyError, RolebrokerError
from chalicelib.identity.tokens import identity_from_claims
from chalicelib.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.policycheck", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("policy", type=Path, help="access policy file (YAML or JSON)")
    parser.add_argument("--role", help="explain the decision for this role")
    parser.add_argument("--claims", default="{}", help="the caller's token claims as a JSON object")
    parser.add_argument("--identity-claim", default="email")
    parser.add_argument("--groups-claim", default="groups")
    parser.add_argument("--granted", action="store_true", help="assume an approved grant exists")
    parser.add_argument("--expect", choices=["allow", "deny"], help="exit 3 unless the decision is this")
    return parser


def explain(policy: AccessPolicy, role_name: str, claims: dict[str, object], *, identity_claim: str = "email",
            groups_claim: str = "groups", granted: bool = False) -> tuple[bool, str]:
    settings = Settings(issuer="", audiences=("",), policy_source="", identity_claim=identity_claim,
                        groups_claim=groups_claim)
    identity = identity_from_claims(claims, settings)
    now = datetime.now(UTC)
    grant_until = now.replace(year=now.year + 1) if granted else None
    decision = decide(policy.role(role_name), identity, grant_until=grant_until, now=now)
    verdict = "ALLOW" if decision.allowed else "DENY"
    return decision.allowed, f"{verdict} {role_name} for {identity.subject}: {decision.reason}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        policy = parse_policy(args.policy.read_text(encoding="utf-8"), str(args.policy))
    except OSError as exc:
        print(f"policycheck: cannot read {args.policy}: {exc.strerror}", file=sys.stderr)
        return 2
    except PolicyError as exc:
        print(f"policycheck: {exc}", file=sys.stderr)
        return 1
    print(f"{args.policy}: valid ({len(policy.accounts)} accounts, {len(policy.roles)} roles)")
    if not args.role:
        return 0
    try:
        claims = json.loads(args.claims)
        if not isinstance(claims, dict):
            raise ValueError("not an object")
        allowed, line = explain(policy, args.role, claims, identity_claim=args.identity_claim,
                                groups_claim=args.groups_claim, granted=args.granted)
    except ValueError as exc:
        print(f"policycheck: --claims must be a JSON object ({exc})", file=sys.stderr)
        return 2
    except (NotFound, RolebrokerError) as exc:
        print(f"policycheck: {exc}", file=sys.stderr)
        return 2
    print(line)
    if args.expect and (args.expect == "allow") != allowed:
        print(f"policycheck: expected {args.expect}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
