"""Questions about access: ``whoami``, ``who-can`` and ``what-can``.

All three ask the broker's ``GET /v1/access``, which decides with the same
policy it issues credentials under: with no parameters it answers about the
caller, from the caller's own verified token; asking about a role or another
person is for the policy's admins and auditors (anyone else gets the
broker's 403, which says who may). ``whoami`` adds what only this machine
knows: where the token comes from, when the sign-in ends, and which
credentials are cached.
"""

from __future__ import annotations

import contextlib

from rolebroker._fast import identity_of, jwt_claims
from rolebroker.cache import CredentialCache
from rolebroker.errors import RoleBrokerError
from rolebroker.text import human_duration, local_time, one_line, table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from rolebroker.commands import Context


def _iso(epoch: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _until(epoch: float, now: float) -> str:
    left = int(epoch - now)
    if left <= 0:
        return f"{local_time(epoch)} (expired)"
    return f"{local_time(epoch)} (in {human_duration(left - left % 60) if left >= 60 else f'{left}s'})"


class LocalFacts:
    """What this machine knows: the broker, where the token comes from, its issuer and expiry, the cache."""

    def __init__(self, ctx: Context) -> None:
        self.broker_url = ctx.settings.require_url()
        source = ctx.token_source()
        token = source.peek()
        claims = jwt_claims(token) or {}
        self.token_source = source.origin
        self.renews = source.renews()
        self.issuer = claims.get("iss") if isinstance(claims.get("iss"), str) else None
        self.subject = claims.get("sub") if isinstance(claims.get("sub"), str) else None
        exp = claims.get("exp")
        self.expires = float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None
        cache = CredentialCache(ctx.settings.cache_dir, getuid=ctx.rt.getuid)
        self.cached = sorted(cache.entries_for(self.broker_url, identity_of(token)),
                             key=lambda e: (e["role"], e["duration"] or 0, e["scope"] or ""))

    def as_json(self) -> dict[str, Any]:
        return {
            "broker_url": self.broker_url,
            "token_source": self.token_source,
            "issuer": self.issuer,
            "subject": self.subject,
            "token_expires_at": _iso(self.expires) if self.expires is not None else None,
            "renews": self.renews,
            "cached_credentials": [{"role": e["role"], "duration_seconds": e["duration"], "scope": e["scope"],
                                    "expires_at": _iso(float(e["expires_at"]))} for e in self.cached],
        }


def cmd_whoami(ctx: Context) -> int:
    try:
        answer = ctx.client().access()
    except RoleBrokerError:
        if not ctx.json_output:  # what is known here still helps to see what is wrong
            with contextlib.suppress(RoleBrokerError):
                ctx.out(whoami_text(LocalFacts(ctx), None, ctx.rt.clock()))
        raise
    facts = LocalFacts(ctx)  # after the call, which may have renewed the sign-in
    if ctx.json_output:
        ctx.out_json({**facts.as_json(), **_broker_facts(answer)})
        return 0
    ctx.out(whoami_text(facts, answer, ctx.rt.clock()))
    return 0


def _broker_facts(answer: Mapping[str, Any]) -> dict[str, Any]:
    roles = answer.get("roles")
    return {
        "identity": answer.get("identity"),
        "groups": answer.get("groups") if isinstance(answer.get("groups"), list) else [],
        "admin": answer.get("admin") is True,
        "auditor": answer.get("auditor") is True,
        "roles": len(roles) if isinstance(roles, list) else 0,
    }


def whoami_text(facts: LocalFacts, answer: Mapping[str, Any] | None, now: float) -> str:
    rows: list[tuple[str, str]] = []
    if answer is not None:
        broker = _broker_facts(answer)
        oversight = [name for name in ("admin", "auditor") if broker[name]]
        rows += [
            ("identity", one_line(str(broker["identity"] or "-"), 200)),
            ("groups", one_line(", ".join(str(g) for g in broker["groups"]), 500) or "(none)"),
            ("roles", f"{broker['roles']} you may use or request (`rolebroker roles`)"
                      + (f"; you are an {' and '.join(oversight)}" if oversight else "")),
        ]
    sign_in = "no expiry in the token" if facts.expires is None else f"valid until {_until(facts.expires, now)}"
    if facts.renews:
        sign_in += ", renewed automatically"
    rows += [
        ("issuer", one_line(facts.issuer or "- (not a JWT)", 200)),
        ("token", f"{one_line(facts.token_source, 200)}, {sign_in}"),
        ("broker", one_line(facts.broker_url, 200)),
    ]
    if not facts.cached:
        rows.append(("cached", "no credentials"))
    for index, entry in enumerate(facts.cached):
        length = f" (--duration {human_duration(entry['duration'])})" if entry["duration"] else ""
        scope = f" (--scope {one_line(entry['scope'], 64)})" if entry["scope"] else ""
        rows.append(("cached" if index == 0 else "", f"{one_line(entry['role'], 80)}{length}{scope} until "
                     f"{_until(float(entry['expires_at']), now)}"))
    width = max(len(label) for label, _ in rows)
    return "".join(f"{label.ljust(width)}  {value}".rstrip() + "\n" for label, value in rows)


def cmd_who_can(ctx: Context) -> int:
    answer = ctx.client().access(role=ctx.role())
    if ctx.json_output:
        ctx.out_json(answer)
        return 0
    ctx.out(who_can_text(answer) + "\n")
    return 0


def who_can_text(answer: Mapping[str, Any]) -> str:
    """Like ``policycheck who-can``: the role, what it needs on top, its approvers, each rule."""
    lines = [f"{_text(answer, 'role')}: {_text(answer, 'role_arn', 200)} (account {_text(answer, 'account')} "
             f"{_text(answer, 'account_id')})"]
    needs = [name for name, key in (("MFA", "requires_mfa"), ("an approved request", "requires_approval"))
             if answer.get(key) is True]
    lines.append(f"  needs: {' and '.join(needs) if needs else 'nothing more (allowed directly)'}")
    approval = answer.get("approval")
    if isinstance(approval, dict):
        lines += approval_lines(approval)
    lines += access_extras(answer)
    rules = [r for r in answer.get("rules") or [] if isinstance(r, dict)]
    if not rules:
        lines.append("  nobody: the role has no allow rule")
    lines += [f"  rule {number}: {rule_text(rule)}" for number, rule in enumerate(rules, 1)]
    return "\n".join(lines)


def _rules_text(rules: object) -> str:
    return "; or ".join(rule_text(r) for r in rules if isinstance(r, dict)) if isinstance(rules, list) else ""


def approval_lines(approval: Mapping[str, Any]) -> list[str]:
    """Who approves: one line, or a line per stage when approvals come in stages or several at a time."""
    grant = f"grants up to {human_duration(approval.get('max_grant_seconds'))}"
    stages = [st for st in approval.get("stages") or [] if isinstance(st, dict)]
    if len(stages) < 2 and all(st.get("required") == 1 for st in stages):
        lines = [f"  approvers: {_rules_text(approval.get('approvers')) or 'nobody (no approver rule)'}; {grant}"]
    else:
        lines = []
        for number, stage in enumerate(stages, 1):
            required = stage.get("required")
            count = f"{required} approver{'s' if required != 1 else ''}" if isinstance(required, int) else "?"
            lines.append(f"  {'then ' if number > 1 else ''}stage {number} of {len(stages)} "
                         f"({one_line(str(stage.get('name', '?')), 40)}): {count} with "
                         f"{_rules_text(stage.get('approvers')) or 'nobody (no approver rule)'}")
        lines[-1] += f"; {grant}"
    ticket = approval.get("ticket")
    if isinstance(ticket, dict):
        lines.append(f"  ticket: {'required' if ticket.get('required') else 'optional'}, matching "
                     f"{one_line(str(ticket.get('pattern')), 120)}")
    return lines


def access_extras(answer: Mapping[str, Any]) -> list[str]:
    """Break-glass, scopes and who is told, when the broker's answer has them."""
    lines = []
    glass = answer.get("break_glass")
    if isinstance(glass, dict):
        lines.append(f"  break-glass: {_rules_text(glass.get('allow')) or 'nobody'} (and a rule below), up to "
                     f"{human_duration(glass.get('max_duration_seconds'))}, with a reason and a ticket matching "
                     f"{one_line(str(glass.get('ticket_pattern')), 120)}")
    scopes = answer.get("scopes")
    for name, scope in scopes.items() if isinstance(scopes, dict) else []:
        about = scope.get("description") if isinstance(scope, dict) else None
        lines.append(f"  scope {one_line(str(name), 64)}: {one_line(str(about or 'a session policy'), 200)}")
    notify = answer.get("notify")
    if isinstance(notify, dict):
        channels = ", ".join(one_line(str(c), 40) for c in notify.get("channels") or []) or "none"
        lines.append(f"  told, cannot decide: channels {channels}; watchers "
                     f"{_rules_text(notify.get('watchers')) or 'nobody'}")
    return lines


def rule_text(rule: Mapping[str, Any]) -> str:
    parts = []
    groups = rule.get("groups")
    if isinstance(groups, list) and groups:
        parts.append("group " + " or ".join(one_line(str(g), 80) for g in groups))
    claims = rule.get("claims")
    for key, values in (claims.items() if isinstance(claims, dict) else []):
        shown = " or ".join(one_line(str(v), 80) for v in values) if isinstance(values, list) else "?"
        parts.append(f"claim {one_line(str(key), 80)} = {shown}")
    if isinstance(rule.get("issuer"), str):
        parts.append(f"from issuer {one_line(rule['issuer'], 80)}")
    return " and ".join(parts) or "anyone"


def cmd_what_can(ctx: Context) -> int:
    groups = ctx.opts.groups
    if groups is not None:
        groups = ",".join(g.strip() for g in groups.split(",") if g.strip())
    answer = ctx.client().access(identity=ctx.opts.identity, groups=groups)
    if ctx.json_output:
        ctx.out_json(answer)
        return 0
    ctx.out(what_can_text(answer) + "\n")
    return 0


_ACCESS = {"allowed": "allowed", "approval_required": "approval required", "mfa_required": "MFA required"}


def what_can_text(answer: Mapping[str, Any]) -> str:
    """Like ``policycheck what-can``: each role and how the person may use it."""
    subject = answer.get("identity")
    groups = answer.get("groups")
    groups = groups if isinstance(groups, list) else []
    who = one_line(str(subject), 200) if subject else "anyone"
    if answer.get("source") == "query" or not subject:
        who += f" with groups {one_line(', '.join(str(g) for g in groups), 300) or '(none)'}"
    roles: Sequence[Any] = [r for r in answer.get("roles") or [] if isinstance(r, dict)]
    if not roles:
        return f"{who}: no role"
    rows = [[_text(r, "role"), _access(r.get("access")), f"{_text(r, 'account')} {_text(r, 'account_id')}",
             f"via {_text(r, 'rule', 200)}"] for r in roles]
    return f"{who}: {len(roles)} role(s)\n" + table(["ROLE", "ACCESS", "ACCOUNT", "RULE"], rows).rstrip("\n")


def _access(value: object) -> str:
    text = str(value)
    if text.startswith("granted_until:"):
        return "granted until " + one_line(text.split(":", 1)[1], 40)
    return _ACCESS.get(text, one_line(text, 40))


def _text(doc: Mapping[str, Any], key: str, limit: int = 80) -> str:
    value = doc.get(key)
    return "-" if value is None else one_line(str(value), limit)
