"""Questions about the access policy: who can use a role, what a person can
use, and what a policy change does to both. Pure: plain data in, plain data out.

The policy is the single decision point, so the answers are derived from the
same rules the broker decides with. ``what_can`` asks the rule index for the
caller's candidate roles and calls ``decide`` on each, exactly as
``/v1/roles`` does. ``who_can`` and ``diff`` read the rules themselves.

``diff`` is exact about people, not about text. A rule grants to anyone
holding one of its groups *and* a value of each of its claims, so it is an
OR of *grants*: each grant is a set of conditions that must all hold (one
group, one value per claim, and any other condition a rule has, such as the
issuer it applies to). Conditions only ever add requirements, so grant ``X``
reaches nobody new over a rule set exactly when some grant of that set needs
a subset of ``X``'s conditions: a person with exactly ``X``'s groups and
claims matches the set only through such a grant. A grant of the new policy
that no old grant covers is a gain for the people it describes; the reverse
is a loss. Reordering rules, splitting ``groups: [a, b]`` into two rules or
adding a rule an existing one already covers therefore changes nothing, and
the diff says so.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chalicelib.access.policy import AccessPolicy, Role, Rule, decide
from chalicelib.access.workflow import ExtensionRule
from chalicelib.identity.principal import DEFAULT_ISSUER
from chalicelib.identity.tokens import Identity

# A rule whose groups and claim values multiply out to more grants than this
# is compared as one opaque grant: the diff stays fast on any input, and such
# a rule is reported changed whenever its text changes.
MAX_GRANTS_PER_RULE = 1024


# --------------------------------------------------------------------------
# Conditions and grants


@dataclass(frozen=True, order=True)
class Condition:
    """One thing a caller must have: a group, a claim value, or another rule field."""

    kind: str  # group | claim | <rule field name, e.g. issuer> | rule (opaque)
    key: str
    value: str  # JSON text, so that true, 1 and "1" stay three different values

    def describe(self) -> str:
        if self.kind == "group":
            return f"group {json.loads(self.value)}"
        if self.kind == "claim":
            return f"claim {self.key}={self.value}"
        if self.kind == "rule":
            return f"rule {self.value}"
        return f"{self.kind} {self.value}"


Grant = frozenset[Condition]
_DEFAULT_ISSUER_CONDITION = Condition("issuer", "", json.dumps(DEFAULT_ISSUER))


def rule_conditions(rule: Rule) -> dict[str, Any]:
    """A rule as plain data: ``{"groups": [...], "claims": {key: [values]}, ...}``."""
    data: dict[str, Any] = {}
    if rule.groups:
        data["groups"] = sorted(rule.groups)
    if rule.claims:
        data["claims"] = {key: list(values) for key, values in rule.claims}
    data.update(_other_conditions(rule))
    if data.get("issuer") == DEFAULT_ISSUER:
        del data["issuer"]  # shown only when a rule names another issuer
    return data


def _other_conditions(rule: Rule) -> dict[str, Any]:
    # Any condition a rule gains beyond groups and claims is compared
    # generically, one condition per field, so it needs no change here.
    return {f.name: getattr(rule, f.name) for f in dataclasses.fields(rule)
            if f.name not in {"groups", "claims"} and not f.name.startswith("_")}


def grants_of(rule: Rule) -> set[Grant]:
    choices: list[list[Condition]] = []
    if rule.groups:
        choices.append([Condition("group", "", json.dumps(g)) for g in sorted(rule.groups)])
    for key, values in rule.claims:
        choices.append([Condition("claim", key, json.dumps(v)) for v in values])
    for name, value in _other_conditions(rule).items():
        choices.append([Condition(name, "", json.dumps(value, sort_keys=True, default=str))])
    count = 1
    for choice in choices:
        count *= len(choice)
    if count > MAX_GRANTS_PER_RULE:
        opaque = json.dumps(rule_conditions(rule), sort_keys=True, default=str)
        return {frozenset({Condition("rule", "", opaque)})}
    return {frozenset(combination) for combination in itertools.product(*choices)}


def grants_of_rules(rules: Iterable[Rule]) -> set[Grant]:
    found: set[Grant] = set()
    for rule in rules:
        found |= grants_of(rule)
    return found


def covered(grant: Grant, by: set[Grant]) -> bool:
    """Whether everyone ``grant`` reaches is already reached by ``by``."""
    return grant in by or any(other <= grant for other in by)


def _shown(grant: Grant) -> list[Condition]:
    # The default issuer stays a condition (a CI rule with the same group is
    # another grant), but goes unsaid, as in the policy itself.
    return [c for c in sorted(grant) if c != _DEFAULT_ISSUER_CONDITION]


def describe_grant(grant: Grant) -> str:
    return " and ".join(c.describe() for c in _shown(grant))


def grant_data(grant: Grant) -> dict[str, Any]:
    """A grant as plain data, shaped like a rule with one value per condition."""
    data: dict[str, Any] = {}
    for condition in _shown(grant):
        value = json.loads(condition.value) if condition.kind != "rule" else condition.value
        if condition.kind == "group":
            data["groups"] = [value]
        elif condition.kind == "claim":
            data.setdefault("claims", {})[condition.key] = value
        else:
            data[condition.kind] = value
    return data


# --------------------------------------------------------------------------
# Who can use a role


def how(role: Role) -> dict[str, bool]:
    return {"requires_mfa": role.require_mfa, "requires_approval": role.approval is not None}


def approval_facts(role: Role) -> dict[str, Any] | None:
    """A role's approval block as plain data: stages in order, ticket, extension limits."""
    approval = role.approval
    if approval is None:
        return None
    return {
        "approvers": [rule_conditions(r) for r in approval.approvers],
        "stages": [{"name": stage.name, "required": stage.required,
                    "approvers": [rule_conditions(r) for r in stage.approvers]} for stage in approval.stages],
        "ticket": {"required": approval.ticket.required, "pattern": approval.ticket.pattern}
        if approval.ticket else None,
        "max_grant_seconds": approval.max_grant_seconds,
        "pending_timeout_seconds": approval.pending_timeout_seconds,
        "extend": {"max_total_seconds": approval.extension.max_total_seconds,
                   "auto_approve_seconds": approval.extension.auto_approve_seconds},
    }


def break_glass_facts(role: Role) -> dict[str, Any] | None:
    glass = role.break_glass
    if glass is None:
        return None
    return {"allow": [rule_conditions(r) for r in glass.allow], "max_duration_seconds": glass.max_duration_seconds,
            "block_until_reviewed": glass.block_until_reviewed, "ticket_pattern": glass.ticket.pattern}


def scope_facts(role: Role) -> dict[str, Any]:
    return {name: {"description": scope.description, "policy": json.loads(scope.policy) if scope.policy else None,
                   "policy_arns": list(scope.policy_arns)} for name, scope in role.scopes.items()}


def notify_facts(role: Role) -> dict[str, Any] | None:
    if role.notify is None:
        return None
    return {"channels": list(role.notify.channels), "watchers": [rule_conditions(r) for r in role.notify.watchers]}


def who_can(policy: AccessPolicy, role_name: str) -> dict[str, Any]:
    """Every rule that grants ``role_name``, with the conditions each grant carries, and how
    access is granted: approval stages, break-glass, scopes, who is told."""
    role = policy.role(role_name)
    conditions = how(role)
    return {
        **role_facts(role),
        **conditions,
        "approval": approval_facts(role),
        "break_glass": break_glass_facts(role),
        "scopes": scope_facts(role),
        "notify": notify_facts(role),
        "rules": [{**rule_conditions(rule), **conditions} for rule in role.allow],
    }


def role_facts(role: Role) -> dict[str, Any]:
    return {"role": role.name, "account": role.account.name, "account_id": role.account.id,
            "role_arn": role.role_arn, "console": role.console,
            "max_duration_seconds": role.max_duration_seconds}


def format_who_can(answer: Mapping[str, Any]) -> str:
    lines = [f"{answer['role']}: {answer['role_arn']} (account {answer['account']})",
             f"  needs: {_needs(answer)}"]
    lines += approval_lines(answer.get("approval"))
    lines += break_glass_lines(answer.get("break_glass"))
    lines += scope_lines(answer.get("scopes") or {})
    notify = answer.get("notify")
    if notify:
        watchers = "; or ".join(_rule_text(r) for r in notify["watchers"]) or "nobody"
        lines.append(f"  notified (cannot decide): channels {', '.join(notify['channels']) or 'none'}; "
                     f"watchers {watchers}")
    if not answer["rules"]:
        lines.append("  nobody: the role has no allow rule")
    for number, rule in enumerate(answer["rules"], 1):
        lines.append(f"  rule {number}: {_rule_text(rule)}")
    return "\n".join(lines)


def approval_lines(approval: Mapping[str, Any] | None) -> list[str]:
    if not approval:
        return []
    stages = approval.get("stages") or [{"name": "approval", "required": 1, "approvers": approval["approvers"]}]
    if len(stages) == 1 and stages[0]["required"] == 1:
        approvers = "; or ".join(_rule_text(r) for r in approval["approvers"]) or "nobody (no approver rule)"
        lines = [f"  approvers: {approvers}; grants up to {approval['max_grant_seconds']} s"]
        return lines + _approval_extras(approval)
    lines = []
    for number, stage in enumerate(stages, 1):
        approvers = "; or ".join(_rule_text(r) for r in stage["approvers"]) or "nobody (no approver rule)"
        then = "then " if number > 1 else ""
        lines.append(f"  {then}stage {number} of {len(stages)} ({stage['name']}): {stage['required']} distinct "
                     f"approver(s) with {approvers}")
    lines.append(f"  grants up to {approval['max_grant_seconds']} s; approvers are never the requester nor "
                 "each other")
    return lines + _approval_extras(approval)


def _approval_extras(approval: Mapping[str, Any]) -> list[str]:
    lines = []
    ticket = approval.get("ticket")
    if ticket:
        lines.append(f"  ticket: {'required' if ticket['required'] else 'optional'}, matching {ticket['pattern']}")
    extend = approval.get("extend")
    if extend and (extend["auto_approve_seconds"] or extend["max_total_seconds"] != approval["max_grant_seconds"]):
        lines.append(f"  extensions: up to {extend['max_total_seconds']} s in all; {extend['auto_approve_seconds']} s "
                     "of it without an approver")
    return lines


def break_glass_lines(glass: Mapping[str, Any] | None) -> list[str]:
    if not glass:
        return ["  break-glass: none"]
    who = "; or ".join(_rule_text(r) for r in glass["allow"])
    review = "no second one until an approver reviews it" if glass["block_until_reviewed"] else \
        "reviewed afterwards, not blocking the next"
    return [f"  break-glass: {who} (and an allow rule), up to {glass['max_duration_seconds']} s, with a reason and a "
            f"ticket matching {glass['ticket_pattern']}; {review}"]


def scope_lines(scopes: Mapping[str, Any]) -> list[str]:
    lines = []
    for name, scope in scopes.items():
        parts = []
        if scope.get("policy") is not None:
            parts.append(f"inline policy of {len(scope['policy'].get('Statement') or [])} statement(s)")
        parts += scope.get("policy_arns") or []
        lines.append(f"  scope {name}: the role intersected with " + " + ".join(parts))
    return lines


def _needs(flags: Mapping[str, Any]) -> str:
    needs = [name for name, key in (("MFA", "requires_mfa"), ("an approved request", "requires_approval"))
             if flags.get(key)]
    return " and ".join(needs) if needs else "nothing more (allowed directly)"


def _rule_text(rule: Mapping[str, Any]) -> str:
    parts = []
    if rule.get("groups"):
        parts.append("group " + " or ".join(rule["groups"]))
    for key, values in (rule.get("claims") or {}).items():
        shown = values if isinstance(values, list) else [values]
        parts.append(f"claim {key} = " + " or ".join(json.dumps(v) for v in shown))
    for key, value in rule.items():
        if key not in {"groups", "claims", "requires_mfa", "requires_approval"}:
            parts.append(f"{key} {json.dumps(value, default=str)}")
    return " and ".join(parts)


# --------------------------------------------------------------------------
# What a person can use


def what_can(
    policy: AccessPolicy,
    identity: Identity,
    *,
    grants: Mapping[str, datetime] | None = None,
    now: datetime | None = None,
    show_rules: bool = True,
) -> list[dict[str, Any]]:
    """Every role ``identity`` may use or request, and how, decided by ``decide``.

    ``show_rules`` adds the matching rule with its claim values; leave it off
    for answers to the person themselves (a rule's value list may name others).
    """
    found = []
    for role in policy.candidate_roles(identity):
        decision = decide(role, identity, grant_until=(grants or {}).get(role.name), now=now)
        if not decision.listed:
            continue
        matched = role.matching_rule(identity)
        entry = {**role_facts(role), "access": decision.access, **how(role), "rule": decision.rule,
                 "break_glass": bool(role.break_glass and decision.access != "denied"
                                     and role.break_glass.may(identity)),
                 "scopes": list(role.scopes)}
        if show_rules and matched is not None:
            entry["rule_conditions"] = rule_conditions(matched)
        found.append(entry)
    return found


def format_what_can(subject: str, roles: Sequence[Mapping[str, Any]]) -> str:
    if not roles:
        return f"{subject}: no role"
    width = max(len(r["role"]) for r in roles)
    lines = [f"{subject}: {len(roles)} role(s)"]
    for r in roles:
        lines.append(f"  {r['role']:<{width}}  {r['access']:<18}  {r['account']} {r['account_id']}  "
                     f"via {r['rule']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# What a policy change does


ACCESS_SETTINGS = ("role_arn", "console", "max_duration_seconds", "require_mfa", "approval",
                   "max_grant_seconds", "approval_stages", "ticket", "extend", "break_glass", "scopes", "watchers")
OTHER_SETTINGS = ("pending_timeout_seconds", "region", "external_id", "notify_channels")


@dataclass
class RoleChange:
    role: str
    status: str  # added | removed | changed
    gains: list[dict[str, Any]] = field(default_factory=list)
    losses: list[dict[str, Any]] = field(default_factory=list)
    settings: list[dict[str, Any]] = field(default_factory=list)
    approvers_gained: list[dict[str, Any]] = field(default_factory=list)
    approvers_lost: list[dict[str, Any]] = field(default_factory=list)
    break_glass_gained: list[dict[str, Any]] = field(default_factory=list)
    break_glass_lost: list[dict[str, Any]] = field(default_factory=list)
    rules_added: list[dict[str, Any]] = field(default_factory=list)
    rules_removed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def changes_access(self) -> bool:
        return bool(self.gains or self.losses or self.approvers_gained or self.approvers_lost
                    or self.break_glass_gained or self.break_glass_lost or any(s["access"] for s in self.settings))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "changes_access": self.changes_access}


@dataclass
class PolicyDiff:
    roles: list[RoleChange]
    blocks: dict[str, dict[str, list[dict[str, Any]]]]  # admins / auditors: gained / lost
    slack_users: dict[str, list[dict[str, Any]]]
    other: list[str]

    @property
    def changes_access(self) -> bool:
        return (any(r.changes_access for r in self.roles)
                or any(b["gained"] or b["lost"] for b in self.blocks.values())
                or any(self.slack_users.values()))

    def to_dict(self) -> dict[str, Any]:
        return {"changes_access": self.changes_access, "roles": [r.to_dict() for r in self.roles],
                **self.blocks, "slack_users": self.slack_users, "other": self.other}


def diff(old: AccessPolicy, new: AccessPolicy) -> PolicyDiff:
    """Who gains or loses which access between two policies."""
    names = list(old.roles) + [name for name in new.roles if name not in old.roles]
    roles = [change for name in names
             if (change := _role_change(old.roles.get(name), new.roles.get(name))) is not None]
    blocks = {name: _gained_lost(getattr(old, name), getattr(new, name)) for name in ("admins", "auditors")}
    return PolicyDiff(roles=roles, blocks=blocks, slack_users=_slack_changes(old, new),
                      other=_other_changes(old, new))


def _gained_lost(old_rules: Sequence[Rule], new_rules: Sequence[Rule]) -> dict[str, list[dict[str, Any]]]:
    old, new = grants_of_rules(old_rules), grants_of_rules(new_rules)
    return {"gained": [grant_data(g) for g in sorted(new, key=_order) if not covered(g, old)],
            "lost": [grant_data(g) for g in sorted(old, key=_order) if not covered(g, new)]}


def _order(grant: Grant) -> list[Condition]:
    return sorted(grant)


def _role_change(old: Role | None, new: Role | None) -> RoleChange | None:
    if old is None and new is None:
        return None
    if old is None or new is None:
        return _role_added_or_removed(old, new)
    people = _gained_lost(old.allow, new.allow)
    approvers = _approvers(old, new)
    glass = _break_glass(old, new)
    old_rules = [rule_conditions(r) for r in old.allow]
    new_rules = [rule_conditions(r) for r in new.allow]
    change = RoleChange(
        new.name, "changed",
        gains=[{**g, **how(new)} for g in people["gained"]],
        losses=[{**g, **how(old)} for g in people["lost"]],
        settings=_settings(old, new),
        approvers_gained=approvers["gained"], approvers_lost=approvers["lost"],
        break_glass_gained=glass["gained"], break_glass_lost=glass["lost"],
        rules_added=[r for r in new_rules if r not in old_rules],
        rules_removed=[r for r in old_rules if r not in new_rules],
    )
    if change.changes_access or change.rules_added or change.rules_removed or change.settings:
        return change
    return None


def _role_added_or_removed(old: Role | None, new: Role | None) -> RoleChange:
    role = new or old
    assert role is not None
    everyone = [{**g, **how(role)} for g in _gained_lost((), role.allow)["gained"]]
    rules = [rule_conditions(r) for r in role.allow]
    approvers = _approvers(old, new)
    glass = _break_glass(old, new)
    if new is not None:
        return RoleChange(role.name, "added", gains=everyone, rules_added=rules,
                          approvers_gained=approvers["gained"], break_glass_gained=glass["gained"])
    return RoleChange(role.name, "removed", losses=everyone, rules_removed=rules, approvers_lost=approvers["lost"],
                      break_glass_lost=glass["lost"])


def _approvers(old: Role | None, new: Role | None) -> dict[str, list[dict[str, Any]]]:
    def rules(role: Role | None) -> Sequence[Rule]:
        return role.approval.approvers if role is not None and role.approval is not None else ()

    return _gained_lost(rules(old), rules(new))


def _break_glass(old: Role | None, new: Role | None) -> dict[str, list[dict[str, Any]]]:
    # Who may break glass among those the role allows: the break_glass rules, compared like approvers.
    def rules(role: Role | None) -> Sequence[Rule]:
        return role.break_glass.allow if role is not None and role.break_glass is not None else ()

    return _gained_lost(rules(old), rules(new))


def _setting_values(role: Role) -> dict[str, Any]:
    approval = role.approval
    facts = approval_facts(role) or {}
    glass = break_glass_facts(role)
    return {
        "approval_stages": facts.get("stages"), "ticket": facts.get("ticket"),
        # Only set limits count: the default follows max_grant_seconds, which is reported itself.
        "extend": facts.get("extend") if approval and approval.extension != ExtensionRule(
            approval.max_grant_seconds) else None,
        "break_glass": {k: v for k, v in glass.items() if k != "allow"} if glass else None,
        "scopes": scope_facts(role) or None, "watchers": (notify_facts(role) or {}).get("watchers") or None,
        "notify_channels": (notify_facts(role) or {}).get("channels") or None,
        "role_arn": role.role_arn, "console": role.console, "max_duration_seconds": role.max_duration_seconds,
        "require_mfa": role.require_mfa, "approval": approval is not None,
        "max_grant_seconds": approval.max_grant_seconds if approval else None,
        "pending_timeout_seconds": approval.pending_timeout_seconds if approval else None,
        "region": role.account.region, "external_id": role.account.external_id,
    }


def _settings(old: Role, new: Role) -> list[dict[str, Any]]:
    before, after = _setting_values(old), _setting_values(new)
    return [{"setting": name, "old": before[name], "new": after[name], "access": name in ACCESS_SETTINGS}
            for name in ACCESS_SETTINGS + OTHER_SETTINGS if before[name] != after[name]]


def _slack_changes(old: AccessPolicy, new: AccessPolicy) -> dict[str, list[dict[str, Any]]]:
    # A Slack user mapped to an identity acts as that person in Slack.
    users = sorted(set(old.slack_users) | set(new.slack_users))
    return {
        "added": [{"user": u, "identity": new.slack_users[u]} for u in users if u not in old.slack_users],
        "removed": [{"user": u, "identity": old.slack_users[u]} for u in users if u not in new.slack_users],
        "changed": [{"user": u, "old": old.slack_users[u], "new": new.slack_users[u]} for u in users
                    if u in old.slack_users and u in new.slack_users
                    and old.slack_users[u] != new.slack_users[u]],
    }


def _other_changes(old: AccessPolicy, new: AccessPolicy) -> list[str]:
    other = []
    if old.slack_channel != new.slack_channel:
        other.append(f"slack.approvals_channel: {old.slack_channel} -> {new.slack_channel}")
    for name in sorted(set(old.accounts) | set(new.accounts)):
        if name not in new.accounts:
            other.append(f"account {name} removed")
        elif name not in old.accounts:
            other.append(f"account {name} added")
        elif old.accounts[name] != new.accounts[name]:
            other.append(f"account {name} changed")
    return other


def format_diff(result: PolicyDiff) -> str:
    lines: list[str] = []
    for change in result.roles:
        lines.append(f"role {change.role} ({change.status})")
        lines += [f"  + now granted to {_rule_text(g)}{_conditions(g)}" for g in change.gains]
        lines += [f"  - no longer granted to {_rule_text(g)}" for g in change.losses]
        for setting in change.settings:
            note = "" if setting["access"] else " (no access change)"
            lines.append(f"  ~ {setting['setting']}: {_value(setting['old'])} -> {_value(setting['new'])}{note}")
        lines += [f"  + may now approve: {_rule_text(g)}" for g in change.approvers_gained]
        lines += [f"  - may no longer approve: {_rule_text(g)}" for g in change.approvers_lost]
        lines += [f"  + may now break glass: {_rule_text(g)}" for g in change.break_glass_gained]
        lines += [f"  - may no longer break glass: {_rule_text(g)}" for g in change.break_glass_lost]
        if not change.changes_access:
            lines.append("  rules rewritten; the same people have the same access")
    for block, changed in result.blocks.items():
        lines += [f"{block}: + {_rule_text(g)}" for g in changed["gained"]]
        lines += [f"{block}: - {_rule_text(g)}" for g in changed["lost"]]
    slack = result.slack_users
    lines += [f"slack.users: + {u['user']} acts as {u['identity']}" for u in slack["added"]]
    lines += [f"slack.users: - {u['user']} (was {u['identity']})" for u in slack["removed"]]
    lines += [f"slack.users: ~ {u['user']} acts as {u['new']} (was {u['old']})" for u in slack["changed"]]
    lines += [f"other: {text}" for text in result.other]
    summary = "access changes found" if result.changes_access else "no access change"
    counts = {status: sum(1 for r in result.roles if r.status == status) for status in ("added", "removed", "changed")}
    lines.append(f"{summary} (roles: {counts['added']} added, {counts['removed']} removed, "
                 f"{counts['changed']} changed)")
    return "\n".join(lines)


def _conditions(flags: Mapping[str, Any]) -> str:
    needs = _needs(flags)
    return "" if needs.startswith("nothing") else f" (needs {needs})"


def _value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value
