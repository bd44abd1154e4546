"""Validate an access policy and explain decisions: usable in the policy's CI.

    python -m chalicelib.policycheck policy.yaml
    python -m chalicelib.policycheck policy.yaml --role sandbox-admin \\
        --claims '{"sub": "00u1", "email": "alice@example.com", "email_verified": true,
                   "groups": ["platform-admins"]}' --expect allow
    python -m chalicelib.policycheck policy.yaml --issuer ci --role ci-deploy \\
        --claims '{"sub": "repo:acme/infra:ref:refs/heads/main", "repository": "acme/infra"}'

The claims are read as the named issuer's verified token would be (its
identity claim, groups claim and email rules); ``--identity-claim`` and
``--groups-claim`` describe the default issuer.

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
from chalicelib.identity.issuers import Issuer
from chalicelib.identity.principal import DEFAULT_ISSUER
from chalicelib.identity.tokens import identity_from_claims


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.policycheck", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("policy", type=Path, help="access policy file (YAML or JSON)")
    parser.add_argument("--role", help="explain the decision for this role")
    parser.add_argument("--claims", default="{}", help="the caller's token claims as a JSON object")
    parser.add_argument("--issuer", default=DEFAULT_ISSUER, help="the issuer (a name under issuers:) of the token")
    parser.add_argument("--identity-claim", default="email", help="the default issuer's identity claim")
    parser.add_argument("--groups-claim", default="groups", help="the default issuer's groups claim")
    parser.add_argument("--granted", action="store_true", help="assume an approved grant exists")
    parser.add_argument("--expect", choices=["allow", "deny"], help="exit 3 unless the decision is this")
    return parser


def explain(policy: AccessPolicy, role_name: str, claims: dict[str, object], *, identity_claim: str = "email",
            groups_claim: str = "groups", granted: bool = False, issuer: str = DEFAULT_ISSUER) -> tuple[bool, str]:
    if issuer == DEFAULT_ISSUER:
        chosen = Issuer(name=DEFAULT_ISSUER, url="", audiences=("",), identity_claim=identity_claim,
                        groups_claim=groups_claim)
    elif issuer in policy.issuers:
        chosen = policy.issuers[issuer]
    else:
        raise NotFound(f"unknown issuer {issuer!r}; the policy defines {', '.join(policy.issuers) or 'none'}")
    identity = identity_from_claims(claims, chosen)
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
    issuers = ", ".join([DEFAULT_ISSUER, *policy.issuers])
    print(f"{args.policy}: valid ({len(policy.accounts)} accounts, {len(policy.roles)} roles; issuers: {issuers})")
    if not args.role:
        return 0
    try:
        claims = json.loads(args.claims)
        if not isinstance(claims, dict):
            raise ValueError("not an object")
        allowed, line = explain(policy, args.role, claims, identity_claim=args.identity_claim,
                                groups_claim=args.groups_claim, granted=args.granted, issuer=args.issuer)
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
