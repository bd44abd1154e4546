"""Validate an access policy, explain decisions, and answer who-can / what-can /
diff from it: usable in the policy's CI.

    python -m chalicelib.policycheck policy.yaml
    python -m chalicelib.policycheck policy.yaml --role sandbox-admin \\
        --claims '{"sub": "00u1", "email": "alice@example.com", "email_verified": true,
                   "groups": ["platform-admins"]}' --expect allow
    python -m chalicelib.policycheck policy.yaml --issuer ci --role ci-deploy \\
        --claims '{"sub": "repo:acme/infra:ref:refs/heads/main", "repository": "acme/infra"}'
    python -m chalicelib.policycheck who-can ROLE [--policy PATH] [--json]
    python -m chalicelib.policycheck what-can --claims JSON [--issuer NAME] [--policy PATH] [--json]
    python -m chalicelib.policycheck diff OLD NEW [--json]

The claims are read as the named issuer's verified token would be (its
identity claim, groups claim and email rules); ``--identity-claim`` and
``--groups-claim`` describe the default issuer.

``--policy`` defaults to ``$ROLEBROKER_POLICY`` when that is a file path.

Validating a policy also runs parliament (a development dependency) over
every scope's inline session policy: unknown actions, condition keys that
do not apply, malformed ARNs fail the check. ``RESOURCE_STAR`` is not
reported: a session policy only narrows the role. The broker itself checks
scopes' structure at load time, without parliament.

Explaining a decision also says how the role is granted: its approval
stages (in order, how many distinct approvers each), its ticket form,
whether this caller may break glass into it (and what happens then), and
the scopes a request or a credentials call may name.

Exit status: 0 valid (with ``--expect``, the decision matched; with ``diff``,
no access changed), 1 invalid policy (or a scope parliament finds fault
with), 2 usage error (including an unknown role, issuer or an unreadable
file), 3 the decision differed from ``--expect``, 4 ``diff`` found access
changes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chalicelib.access import queries
from chalicelib.access.policy import AccessPolicy, Role, decide, parse_policy
from chalicelib.exceptions import NotFound, PolicyError, RolebrokerError
from chalicelib.identity.issuers import Issuer
from chalicelib.identity.principal import DEFAULT_ISSUER
from chalicelib.identity.tokens import Identity, identity_from_claims

OK, INVALID, USAGE, UNEXPECTED, ACCESS_CHANGED = 0, 1, 2, 3, 4
QUERIES = ("who-can", "what-can", "diff")


class _Usage(Exception):
    """A usage error: one line on stderr, exit 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.policycheck", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("policy", type=Path, help="access policy file (YAML or JSON)")
    parser.add_argument("--role", help="explain the decision for this role")
    _claims_options(parser)
    parser.add_argument("--granted", action="store_true", help="assume an approved grant exists")
    parser.add_argument("--expect", choices=["allow", "deny"], help="exit 3 unless the decision is this")
    return parser


def _claims_options(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--claims", default=None if required else "{}", required=required,
                        help="the caller's token claims as a JSON object")
    parser.add_argument("--issuer", default=DEFAULT_ISSUER, help="the issuer (a name under issuers:) of the token")
    parser.add_argument("--identity-claim", default="email", help="the default issuer's identity claim")
    parser.add_argument("--groups-claim", default="groups", help="the default issuer's groups claim")


def _query_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.policycheck", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    who = commands.add_parser("who-can", help="every rule that grants a role, with its conditions")
    who.add_argument("role")
    what = commands.add_parser("what-can", help="every role a token's claims may use or request, and how")
    _claims_options(what, required=True)
    changes = commands.add_parser("diff", help="who gains or loses which access; exit 4 when anyone does")
    changes.add_argument("old", type=Path)
    changes.add_argument("new", type=Path)
    for command in (who, what):
        command.add_argument("--policy", type=Path, help="access policy file (default: $ROLEBROKER_POLICY)")
    for command in (who, what, changes):
        command.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def identity_for(policy: AccessPolicy, claims: Mapping[str, object], *, issuer: str = DEFAULT_ISSUER,
                 identity_claim: str = "email", groups_claim: str = "groups") -> Identity:
    """The identity a token from ``issuer`` with these claims would have (the broker's own mapping).

    ``sub`` decides nothing in a policy, so a question may leave it out.
    """
    claims = {"sub": "policycheck", **claims}
    if issuer == DEFAULT_ISSUER:
        chosen = Issuer(name=DEFAULT_ISSUER, url="", audiences=("",), identity_claim=identity_claim,
                        groups_claim=groups_claim)
    elif issuer in policy.issuers:
        chosen = policy.issuers[issuer]
    else:
        raise NotFound(f"unknown issuer {issuer!r}; the policy defines {', '.join(policy.issuers) or 'none'}")
    return identity_from_claims(claims, chosen)


def explain(policy: AccessPolicy, role_name: str, claims: dict[str, object], *, identity_claim: str = "email",
            groups_claim: str = "groups", granted: bool = False, issuer: str = DEFAULT_ISSUER) -> tuple[bool, str]:
    identity = identity_for(policy, claims, issuer=issuer, identity_claim=identity_claim, groups_claim=groups_claim)
    now = datetime.now(UTC)
    grant_until = now.replace(year=now.year + 1) if granted else None
    role = policy.role(role_name)
    decision = decide(role, identity, grant_until=grant_until, now=now, describe_every_rule=True)
    verdict = "ALLOW" if decision.allowed else "DENY"
    lines = [f"{verdict} {role_name} for {identity.subject}: {decision.reason}"]
    lines += queries.approval_lines(queries.approval_facts(role))
    lines.append(_break_glass_line(role, identity, decision.access != "denied"))
    lines += queries.scope_lines(queries.scope_facts(role))
    return decision.allowed, "\n".join(lines)


def _break_glass_line(role: Role, identity: Identity, allowed_by_role: bool) -> str:
    glass = role.break_glass
    if glass is None:
        return "  break-glass: the role has none"
    if allowed_by_role and glass.may(identity):
        review = "no second break-glass until an approver reviews it" if glass.block_until_reviewed else \
            "an approver reviews it afterwards"
        return (f"  break-glass: this caller may break glass (immediate access without an approver, up to "
                f"{glass.max_duration_seconds} s, with a reason and a ticket matching {glass.ticket.pattern}; "
                f"approvers and the security channel are told at once; {review})")
    needs = "; or ".join(rule.describe() for rule in glass.allow)
    return f"  break-glass: not for this caller (it needs {needs}, and an allow rule of the role)"


def scope_problems(policy: AccessPolicy) -> list[str]:
    """parliament's findings on every scope's inline session policy, one line each."""
    from chalicelib.access.scopes import parliament_findings

    return [f"roles.{role.name}.scopes.{name}: {finding}" for role in policy.roles.values()
            for name, scope in role.scopes.items() for finding in parliament_findings(scope)]


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] in QUERIES:
            return _query(_query_parser().parse_args(args), os.environ if environ is None else environ)
        return _check(_parser().parse_args(args))
    except PolicyError as exc:
        print(f"policycheck: {exc}", file=sys.stderr)
        return INVALID
    except (_Usage, NotFound, RolebrokerError) as exc:
        print(f"policycheck: {exc}", file=sys.stderr)
        return USAGE


def _load(path: Path) -> AccessPolicy:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _Usage(f"cannot read {path}: {exc.strerror}") from None
    return parse_policy(text, str(path))


def _claims(text: str) -> dict[str, object]:
    try:
        claims = json.loads(text)
    except ValueError as exc:
        raise _Usage(f"--claims must be a JSON object ({exc})") from None
    if not isinstance(claims, dict):
        raise _Usage("--claims must be a JSON object (not an object)")
    return claims


def _check(args: argparse.Namespace) -> int:
    policy = _load(args.policy)
    try:
        problems = scope_problems(policy)
    except ImportError:
        print("policycheck: parliament is not installed; scopes were checked for structure only", file=sys.stderr)
        problems = []
    if problems:
        for problem in problems:
            print(f"policycheck: {args.policy}: {problem}", file=sys.stderr)
        return INVALID
    issuers = ", ".join([DEFAULT_ISSUER, *policy.issuers])
    print(f"{args.policy}: valid ({len(policy.accounts)} accounts, {len(policy.roles)} roles; issuers: {issuers})")
    if not args.role:
        return OK
    allowed, line = explain(policy, args.role, _claims(args.claims), identity_claim=args.identity_claim,
                            groups_claim=args.groups_claim, granted=args.granted, issuer=args.issuer)
    print(line)
    if args.expect and (args.expect == "allow") != allowed:
        print(f"policycheck: expected {args.expect}", file=sys.stderr)
        return UNEXPECTED
    return OK


def _policy_path(args: argparse.Namespace, environ: Mapping[str, str]) -> Path:
    if args.policy is not None:
        return Path(args.policy)
    source = environ.get("ROLEBROKER_POLICY", "").strip()
    if not source:
        raise _Usage("give --policy PATH or set ROLEBROKER_POLICY to the policy file")
    if source.startswith(("ssm:", "s3://")):
        raise _Usage(f"ROLEBROKER_POLICY is {source}: fetch it to a file first and pass --policy PATH")
    return Path(source)


def _query(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.command == "diff":
        result = queries.diff(_load(args.old), _load(args.new))
        _print(args, result.to_dict(), lambda: queries.format_diff(result))
        return ACCESS_CHANGED if result.changes_access else OK
    policy = _load(_policy_path(args, environ))
    if args.command == "who-can":
        answer = queries.who_can(policy, args.role)
        _print(args, answer, lambda: queries.format_who_can(answer))
        return OK
    identity = identity_for(policy, _claims(args.claims), issuer=args.issuer, identity_claim=args.identity_claim,
                            groups_claim=args.groups_claim)
    roles = queries.what_can(policy, identity)
    document = {"identity": identity.subject, "groups": sorted(identity.groups),
                "admin": policy.is_admin(identity), "auditor": policy.is_auditor(identity), "roles": roles}
    _print(args, document, lambda: queries.format_what_can(identity.subject, roles))
    return OK


def _print(args: argparse.Namespace, document: Mapping[str, Any], text: Any) -> None:
    print(json.dumps(document, indent=2, default=str) if args.json else text())


if __name__ == "__main__":
    sys.exit(main())
