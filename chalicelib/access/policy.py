"""The access policy: strict loading and pure decisions.

Loading is strict because a typo in a security policy must not silently
widen or narrow access: an unknown key, a bad ARN, an unknown account or a
duration out of range stops the load with the file and line.

Deciding is pure (no I/O, no clock unless passed in). Rules are indexed by
their most selective condition (a group or a claim value), so a caller's
decision touches only the rules that could match them, however large the
policy grows.

Every rule belongs to one issuer: ``issuer: NAME`` names one declared under
``issuers:``; a rule without it matches the default issuer only, so a CI
provider's token that happens to carry ``groups: [security]`` matches no
people's rule, approvers' rules included.

Patterns end in ``\\Z`` and use ASCII classes: ``$`` would accept a trailing
newline and ``\\d`` or ``\\w`` non-ASCII digits and letters.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import yaml

from chalicelib.access.workflow import (
    SLACK_CHANNEL_RE,
    BreakGlass,
    ExtensionRule,
    Notify,
    Plan,
    Stage,
    TicketRule,
    load_break_glass,
    load_extension,
    load_notify,
    load_stages,
    load_ticket,
    plan_of,
)
from chalicelib.exceptions import BadRequest, NotFound, PolicyError
from chalicelib.gcpause import gc_paused
from chalicelib.identity.issuers import Issuer, is_safe_url
from chalicelib.identity.principal import DEFAULT_ISSUER, canonical_value
from chalicelib.identity.tokens import Identity

if TYPE_CHECKING:  # loaded with the first role that declares scopes
    from chalicelib.access.scopes import Scope

ROLE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
ACCOUNT_ID_RE = re.compile(r"[0-9]{12}\Z")
IAM_ROLE_NAME_RE = re.compile(r"(/[\w+=,.@-]+)*/?[\w+=,.@-]{1,64}\Z", re.ASCII)
ROLE_ARN_RE = re.compile(r"arn:aws(-[a-z]+)*:iam::([0-9]{12}):role/([\w+=,.@/-]{1,512})\Z", re.ASCII)
REGION_RE = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}\Z")
EXTERNAL_ID_RE = re.compile(r"[\w+=,.@:/-]{2,1224}\Z", re.ASCII)
SLACK_USER_RE = re.compile(r"[UW][A-Z0-9]{2,}\Z")
ISSUER_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}\Z")

MIN_SESSION_SECONDS = 900
SYSTEM_ROLE_PATH = "/rolebroker-system/"  # the revoker's (chalicelib/jit/denies.py); never in a policy
MAX_SESSION_SECONDS = 43200
MAX_GRANT_SECONDS = 7 * 24 * 3600
MAX_TOKEN_AGE_SECONDS = 7 * 24 * 3600
DEFAULT_PENDING_TIMEOUT_SECONDS = 24 * 3600
Scalar = str | int | bool


# --------------------------------------------------------------------------
# Model


@dataclass(frozen=True)
class Account:
    """A trusting account, by the name the policy gives it."""

    name: str
    id: str
    region: str
    external_id: str | None = None


@dataclass(frozen=True)
class Rule:
    """One ``allow`` (or ``approvers``) entry: every condition must hold."""

    groups: frozenset[str] = frozenset()
    claims: tuple[tuple[str, tuple[Scalar, ...]], ...] = ()
    issuer: str = DEFAULT_ISSUER

    def matches(self, identity: Identity) -> bool:
        if identity.principal.issuer != self.issuer:
            return False
        if self.groups and not (self.groups & identity.groups):
            return False
        return all(_claim_matches(identity.claims.get(k), allowed) for k, allowed in self.claims)

    def describe(self) -> str:
        """A description safe to show any caller: claim values are omitted."""
        parts = [] if self.issuer == DEFAULT_ISSUER else [f"issuer {self.issuer}"]
        if self.groups:
            parts.append("group " + " or ".join(sorted(self.groups)))
        if self.claims:
            parts.append("a matching " + ", ".join(k for k, _ in self.claims) + " claim")
        return " and ".join(parts)

    def evidence(self, identity: Identity) -> dict[str, Any]:
        """The caller's groups and claims this rule matched on, for the audit line."""
        used: dict[str, Any] = {}
        if self.groups:
            used["groups"] = sorted(self.groups & identity.groups)
        for key, _ in self.claims:
            used[key] = identity.claims.get(key)
        return used

    def anchors(self) -> list[tuple[str, str]]:
        """Index keys: a caller can only match if they hold one of these."""
        if self.groups:
            return [("group", g) for g in self.groups]
        key, values = self.claims[0]
        return [("claim", _index_key(key, v)) for v in values]


@dataclass(frozen=True)
class Approval:
    """Who decides a role's requests: ``stages`` in order (one, unless the policy names several),
    each needing its own count of distinct approvers; ``approvers`` is every stage's rules."""

    approvers: tuple[Rule, ...]
    max_grant_seconds: int
    pending_timeout_seconds: int = DEFAULT_PENDING_TIMEOUT_SECONDS
    stages: tuple[Stage, ...] = ()
    ticket: TicketRule | None = None
    extend: ExtensionRule | None = None

    def __post_init__(self) -> None:
        if not self.stages:
            object.__setattr__(self, "stages", (Stage("approval", self.approvers),))
        if self.extend is None:
            object.__setattr__(self, "extend", ExtensionRule(max_total_seconds=self.max_grant_seconds))

    def is_approver(self, identity: Identity) -> bool:
        """Whether ``identity`` approves in any stage (and so may deny, revoke and review)."""
        return any(rule.matches(identity) for rule in self.approvers)

    @property
    def plan(self) -> Plan:
        return plan_of(self.stages)

    @property
    def extension(self) -> ExtensionRule:
        assert self.extend is not None
        return self.extend


@dataclass(frozen=True)
class Role:
    """A role people may ask for by name: where it is, who may use it, and how."""

    name: str
    account: Account
    role_arn: str
    max_duration_seconds: int
    console: bool
    require_mfa: bool
    allow: tuple[Rule, ...]
    approval: Approval | None = None
    description: str = ""
    break_glass: BreakGlass | None = None
    scopes: Mapping[str, Scope] = field(default_factory=dict)
    notify: Notify | None = None
    _index: RuleIndex = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        index = RuleIndex()
        for rule in self.allow:
            index.add(rule, rule)
        object.__setattr__(self, "_index", index)

    def matching_rule(self, identity: Identity) -> Rule | None:
        for rule in self._index.candidates(identity):
            if isinstance(rule, Rule) and rule.matches(identity):
                return rule
        return None

    def scope(self, name: str) -> Scope:
        try:
            return self.scopes[name]
        except KeyError:
            listed = ", ".join(self.scopes) or "none"
            raise BadRequest(f"role {self.name} has no scope {name!r} (its scopes: {listed})") from None

    def is_watcher(self, identity: Identity) -> bool:
        """Sees the role's requests (``notify.watchers``) without deciding them."""
        return bool(self.notify and self.notify.is_watcher(identity))

    def rules_for(self, issuer: str) -> tuple[Rule, ...]:
        """The ``allow`` rules a token of ``issuer`` could match: the only ones its caller is told about."""
        return tuple(rule for rule in self.allow if rule.issuer == issuer)


class RuleIndex:
    """Maps each rule's anchors to payloads, so lookups touch few rules."""

    def __init__(self) -> None:
        self._by_anchor: dict[tuple[str, str], list[Any]] = defaultdict(list)

    def add(self, rule: Rule, payload: Any) -> None:
        for anchor in rule.anchors():
            self._by_anchor[anchor].append(payload)

    def candidates(self, identity: Identity) -> Iterator[Any]:
        seen: set[int] = set()
        for anchor in _identity_anchors(identity):
            for payload in self._by_anchor.get(anchor, ()):
                if id(payload) not in seen:
                    seen.add(id(payload))
                    yield payload


@dataclass(frozen=True)
class Decision:
    """The outcome for one caller and one role, with a reason a person can read."""

    role: str
    allowed: bool
    access: str  # allowed | approval_required | mfa_required | granted_until:<iso> | denied
    reason: str
    rule: str | None = None
    claims_used: Mapping[str, Any] = field(default_factory=dict)

    @property
    def listed(self) -> bool:
        """Whether ``/v1/roles`` shows the role to this caller."""
        return self.access != "denied"


@dataclass(frozen=True)
class AccessPolicy:
    """A whole validated access policy; replaced, never changed, when the source changes."""

    accounts: Mapping[str, Account]
    roles: Mapping[str, Role]
    slack_users: Mapping[str, str] = field(default_factory=dict)
    slack_channel: str | None = None
    security_channel: str | None = None
    admins: tuple[Rule, ...] = ()
    auditors: tuple[Rule, ...] = ()
    issuers: Mapping[str, Issuer] = field(default_factory=dict)
    _index: RuleIndex = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    _order: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    _by_url: dict[str, Issuer] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = RuleIndex()
        for role in self.roles.values():
            for rule in role.allow:
                index.add(rule, role)
        object.__setattr__(self, "_index", index)
        self._order.update((name, position) for position, name in enumerate(self.roles))
        self._by_url.update((issuer.url, issuer) for issuer in self.issuers.values())

    def issuer_for_url(self, url: str) -> Issuer | None:
        """The declared issuer whose ``url`` is exactly ``url`` (a token's ``iss``)."""
        return self._by_url.get(url)

    def role(self, name: str) -> Role:
        try:
            return self.roles[name]
        except KeyError:
            raise _unknown_role(name) from None

    def role_for(self, name: str, identity: Identity) -> Role:
        """Role ``name`` as ``identity`` may learn of it: a role none of whose ``allow`` rules is of
        the caller's issuer is answered exactly like an unknown one.

        An issuer such as GitHub Actions signs tokens for every repository in
        the world; without this, anyone's CI token could map the organisation's
        roles (404 or 403) and, from the 403's reason, its group names.
        """
        role = self.role(name)
        if not role.rules_for(identity.principal.issuer):
            raise _unknown_role(name)
        return role

    def candidate_roles(self, identity: Identity) -> list[Role]:
        """Roles with at least one rule that could match, in policy order."""
        found: list[Role] = list(self._index.candidates(identity))
        return sorted(found, key=lambda role: self._order[role.name])

    def is_admin(self, identity: Identity) -> bool:
        """May revoke sessions and ask about anyone's access (``admins:``)."""
        return any(rule.matches(identity) for rule in self.admins)

    def is_auditor(self, identity: Identity) -> bool:
        """May ask about anyone's access and read any request's evidence (``auditors:``)."""
        return any(rule.matches(identity) for rule in self.auditors)


# --------------------------------------------------------------------------
# Decisions (pure)


def describe_rules(rules: Iterable[Rule], identity: Identity) -> str:
    """``rules`` as ``identity`` may be told of them: only those of its own issuer (another issuer's
    groups are not its caller's to learn), without claim values."""
    own = [rule.describe() for rule in rules if rule.issuer == identity.principal.issuer]
    return "; or ".join(own) or "a rule that names your token's issuer (it has none)"


def decide(
    role: Role,
    identity: Identity,
    *,
    grant_until: datetime | None = None,
    now: datetime | None = None,
    describe_every_rule: bool = False,
) -> Decision:
    """Decide whether ``identity`` may assume ``role`` now.

    ``grant_until`` is the end of the caller's approved grant for the role,
    if any; it only matters for roles with an ``approval`` block. A denial
    describes the rules of the caller's own issuer only, unless
    ``describe_every_rule`` (tools of those who hold the whole policy).
    """
    rule = role.matching_rule(identity)
    if rule is None:
        # Only rules of the caller's own issuer: the others' groups and claims are not theirs to learn.
        own = role.allow if describe_every_rule else role.rules_for(identity.principal.issuer)
        needs = "; or ".join(r.describe() for r in own) or "a rule that names your token's issuer (it has none)"
        return Decision(role.name, False, "denied", f"role {role.name} requires {needs}")
    matched = rule.describe()
    used = rule.evidence(identity)
    if role.require_mfa:
        used["amr"] = list(identity.amr)
        if not identity.has_mfa:
            return Decision(
                role.name,
                False,
                "mfa_required",
                f"role {role.name} requires MFA: sign in to your identity provider with MFA "
                "(the token's amr claim must contain 'mfa')",
                matched,
                used,
            )
    if role.approval is None:
        return Decision(role.name, True, "allowed", f"allowed by {matched}", matched, used)
    if grant_until is not None and now is not None and grant_until > now:
        until = grant_until.isoformat()
        return Decision(role.name, True, f"granted_until:{until}", f"approved grant until {until}", matched, used)
    return Decision(
        role.name,
        False,
        "approval_required",
        f"role {role.name} requires an approved access request "
        f"(rolebroker request --role {role.name} --reason ...)",
        matched,
        used,
    )


def _unknown_role(name: str) -> NotFound:
    return NotFound(f"unknown role {name!r}; `rolebroker roles` lists yours")


def _claim_matches(value: Any, allowed: tuple[Scalar, ...]) -> bool:
    if isinstance(value, list):
        return any(_same(v, a) for v in value for a in allowed)
    return any(_same(value, a) for a in allowed)


def _same(value: Any, expected: Scalar) -> bool:
    # bool is an int in Python; keep true != 1 as it is in JSON.
    return type(value) is type(expected) and value == expected


def _index_key(key: str, value: Scalar) -> str:
    return f"{key}\x00{type(value).__name__}\x00{value}"


def _identity_anchors(identity: Identity) -> Iterable[tuple[str, str]]:
    for group in identity.groups:
        yield ("group", group)
    for key, value in identity.claims.items():
        for item in value if isinstance(value, list) else [value]:
            yield ("claim", _index_key(key, item))


# --------------------------------------------------------------------------
# Loading (strict)


class _Map(dict):  # type: ignore[type-arg]
    """A mapping that remembers the line of itself and of each key."""

    line: int = 0
    key_lines: dict[str, int]


# PyYAML's C parser when it is built (it is in the Lambda wheels); the pure
# Python one otherwise. Either way the constructor below runs in Python.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> _Map:
        result = _Map()
        result.line = node.start_mark.line + 1
        result.key_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                raise PolicyError(f"key {key!r} must be a string", line=key_node.start_mark.line + 1)
            if key in result:
                raise PolicyError(f"duplicate key {key!r}", line=key_node.start_mark.line + 1)
            result[key] = self.construct_object(value_node, deep=deep)
            result.key_lines[key] = key_node.start_mark.line + 1
        return result


_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _LineLoader.construct_mapping,
)


def parse_policy(text: str, source: str = "policy") -> AccessPolicy:
    """Parse and validate policy text (YAML or JSON)."""
    with gc_paused():  # every object built here lives as long as the policy
        return _parse_policy(text, source)


def _parse_policy(text: str, source: str) -> AccessPolicy:
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader (C or Python) subclass
    except PolicyError as exc:
        raise PolicyError(exc.message, source=source, line=exc.line) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or "not valid YAML or JSON"
        raise PolicyError(f"syntax error: {problem}", source=source, line=line) from None
    return _Validator(source).policy(data)


class _Validator:
    def __init__(self, source: str) -> None:
        self.source = source
        self.issuer_names: set[str] = {DEFAULT_ISSUER}

    def fail(self, where: str, message: str, line: int | None) -> PolicyError:
        return PolicyError(f"{where}: {message}", source=self.source, line=line)

    def mapping(self, value: Any, where: str, line: int | None, allowed: set[str],
                required: set[str] = frozenset()) -> _Map:  # type: ignore[assignment]
        if not isinstance(value, _Map):
            raise self.fail(where, "must be a mapping", line)
        for key in value:
            if key not in allowed:
                raise self.fail(
                    where, f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})",
                    value.key_lines[key],
                )
        for key in sorted(required - value.keys()):
            raise self.fail(where, f"missing required key {key!r}", value.line)
        return value

    def string(self, m: _Map, key: str, where: str, pattern: re.Pattern[str], what: str) -> str:
        value = m[key]
        if not isinstance(value, str) or not pattern.match(value):
            raise self.fail(f"{where}.{key}", f"must be {what}, got {value!r}", m.key_lines[key])
        return value

    def integer(self, m: _Map, key: str, where: str, low: int, high: int, default: int) -> int:
        if key not in m:
            return default
        value = m[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(
                f"{where}.{key}", f"must be a whole number of seconds from {low} to {high}, got {value!r}",
                m.key_lines[key],
            )
        return value

    def boolean(self, m: _Map, key: str, where: str, default: bool) -> bool:
        value = m.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"{where}.{key}", f"must be true or false, got {value!r}", m.key_lines[key])
        return value

    def policy(self, data: Any) -> AccessPolicy:
        top = self.mapping(data, "policy", 1, {"version", "issuers", "accounts", "roles", "slack", "admins",
                                               "auditors"},
                           {"version", "accounts", "roles"})
        if top["version"] != 1 or isinstance(top["version"], bool):
            raise self.fail("version", f"must be 1, got {top['version']!r}", top.key_lines["version"])
        issuers = self.issuers(top)
        self.issuer_names |= set(issuers)
        accounts_map = self.mapping(top["accounts"], "accounts", top.key_lines["accounts"],
                                    set(top["accounts"]) if isinstance(top["accounts"], dict) else set())
        accounts = {name: self.account(name, value, accounts_map) for name, value in accounts_map.items()}
        roles_map = self.mapping(top["roles"], "roles", top.key_lines["roles"],
                                 set(top["roles"]) if isinstance(top["roles"], dict) else set())
        roles = {name: self.role(name, value, roles_map, accounts) for name, value in roles_map.items()}
        users, channel, security = self.slack(top)
        return AccessPolicy(accounts=accounts, roles=roles, slack_users=users, slack_channel=channel,
                            security_channel=security,
                            admins=self.rules(top, "admins", "policy") if "admins" in top else (),
                            auditors=self.rules(top, "auditors", "policy") if "auditors" in top else (),
                            issuers=issuers)

    def issuers(self, top: _Map) -> dict[str, Issuer]:
        if "issuers" not in top:
            return {}
        m = self.mapping(top["issuers"], "issuers", top.key_lines["issuers"],
                         set(top["issuers"]) if isinstance(top["issuers"], dict) else set())
        issuers: dict[str, Issuer] = {}
        for name, value in m.items():
            issuer = self.issuer(name, value, m.key_lines[name])
            same = next((other for other in issuers.values() if other.url == issuer.url), None)
            if same is not None:
                raise self.fail(f"issuers.{name}.url", f"has the same url as issuer {same.name}; "
                                "a token's iss must select exactly one issuer", value.key_lines["url"])
            issuers[name] = issuer
        return issuers

    def issuer(self, name: str, value: Any, line: int) -> Issuer:
        where = f"issuers.{name}"
        if name == DEFAULT_ISSUER:
            raise self.fail(where, "the name 'default' is reserved for the issuer ROLEBROKER_OIDC_ISSUER "
                            "defines; rules without issuer match it", line)
        if not ISSUER_NAME_RE.match(name):
            raise self.fail(where, "issuer names are 1-32 characters of [a-z0-9_-], starting with a letter", line)
        i = self.mapping(value, where, line,
                         {"url", "audiences", "identity_claim", "groups_claim", "require_email_verified",
                          "max_token_age_seconds", "jwks_url", "approval_identity_claim"},
                         {"url", "audiences", "identity_claim"})
        if i.get("approval_identity_claim") == "email" and i.get("require_email_verified") is False:
            raise self.fail(f"{where}.approval_identity_claim", "an unverified email can name anyone, so it cannot "
                            "say who the person is; keep require_email_verified true",
                            i.key_lines["approval_identity_claim"])
        return Issuer(
            name=name,
            url=self.url(i, "url", where),
            audiences=self.audiences(i, where),
            identity_claim=self.claim_name(i, "identity_claim", where, "email"),
            groups_claim=self.claim_name(i, "groups_claim", where, "groups"),
            require_email_verified=self.boolean(i, "require_email_verified", where, True),
            max_token_age_seconds=self.integer(i, "max_token_age_seconds", where, 60, MAX_TOKEN_AGE_SECONDS, 0)
            if "max_token_age_seconds" in i else None,
            jwks_url=self.url(i, "jwks_url", where) if "jwks_url" in i else None,
            approval_identity_claim=self.claim_name(i, "approval_identity_claim", where, "")
            if "approval_identity_claim" in i else None,
        )

    def url(self, m: _Map, key: str, where: str) -> str:
        value = m[key]
        if not isinstance(value, str) or not is_safe_url(value):
            raise self.fail(f"{where}.{key}", f"must be an https:// URL (http:// only on loopback), got {value!r}",
                            m.key_lines[key])
        return value

    def audiences(self, m: _Map, where: str) -> tuple[str, ...]:
        value = m["audiences"]
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            raise self.fail(f"{where}.audiences", "must be a client id or a non-empty list of them",
                            m.key_lines["audiences"])
        return tuple(values)

    def claim_name(self, m: _Map, key: str, where: str, default: str) -> str:
        value = m.get(key, default)
        if not isinstance(value, str) or not value or not value.isprintable() or len(value) > 256:
            raise self.fail(f"{where}.{key}", f"must be a claim name, got {value!r}", m.key_lines[key])
        return value

    def account(self, name: str, value: Any, parent: _Map) -> Account:
        where = f"accounts.{name}"
        m = self.mapping(value, where, parent.key_lines[name], {"id", "external_id", "region"},
                         {"id", "region"})
        if isinstance(m["id"], int) and not isinstance(m["id"], bool):
            raise self.fail(f"{where}.id", "must be a quoted string (YAML drops leading zeros)",
                            m.key_lines["id"])
        return Account(
            name=name,
            id=self.string(m, "id", where, ACCOUNT_ID_RE, "a 12-digit account id"),
            region=self.string(m, "region", where, REGION_RE, "an AWS region such as eu-west-1"),
            external_id=self.string(m, "external_id", where, EXTERNAL_ID_RE,
                                    "2-1224 characters of [\\w+=,.@:/-]") if "external_id" in m else None,
        )

    def role(self, name: str, value: Any, parent: _Map, accounts: Mapping[str, Account]) -> Role:
        where = f"roles.{name}"
        line = parent.key_lines[name]
        if not ROLE_NAME_RE.fullmatch(name):
            raise self.fail(where, "role names are 1-64 characters of [A-Za-z0-9._-]", line)
        if name.casefold() == "default":  # the name users type is the profile name configure writes
            raise self.fail(where, f"{name!r} would become the AWS default profile ([profile default]) on every "
                            "machine that runs `rolebroker configure`; choose another name", line)
        m = self.mapping(
            value, where, line,
            {"account", "role_name", "role_arn", "max_duration_seconds", "console", "require_mfa",
             "allow", "approval", "description", "break_glass", "scopes", "notify"},
            {"account", "allow"},
        )
        account_name = m["account"]
        if account_name not in accounts:
            raise self.fail(f"{where}.account", f"unknown account {account_name!r} (define it under accounts)",
                            m.key_lines["account"])
        account = accounts[account_name]
        approval = self.approval(m, where) if "approval" in m else None
        return Role(
            name=name,
            account=account,
            role_arn=self.role_arn(m, where, account),
            max_duration_seconds=self.integer(m, "max_duration_seconds", where,
                                              MIN_SESSION_SECONDS, MAX_SESSION_SECONDS, 3600),
            console=self.boolean(m, "console", where, False),
            require_mfa=self.boolean(m, "require_mfa", where, False),
            allow=self.rules(m, "allow", where),
            approval=approval,
            description=str(m.get("description") or ""),
            break_glass=load_break_glass(self, m, where, approval.ticket if approval else None,
                                         MIN_SESSION_SECONDS, MAX_SESSION_SECONDS) if "break_glass" in m else None,
            scopes=self.scopes(m, where) if "scopes" in m else {},
            notify=load_notify(self, m, where) if "notify" in m else None,
        )

    def scopes(self, m: _Map, where: str) -> dict[str, Scope]:
        from chalicelib.access.scopes import load_scopes

        return load_scopes(self, m, where)

    def role_arn(self, m: _Map, where: str, account: Account) -> str:
        arn = self._role_arn(m, where, account)
        if f":role{SYSTEM_ROLE_PATH}" in arn:  # the revoker's path: never a role to hand a person
            key = "role_name" if "role_name" in m else "role_arn"
            raise self.fail(f"{where}.{key}", f"roles under {SYSTEM_ROLE_PATH} are the broker's own (the revoker); "
                            "they are never handed out", m.key_lines[key])
        return arn

    def _role_arn(self, m: _Map, where: str, account: Account) -> str:
        if ("role_name" in m) == ("role_arn" in m):
            raise self.fail(where, "give exactly one of role_name or role_arn", m.line)
        if "role_name" in m:
            name = self.string(m, "role_name", where, IAM_ROLE_NAME_RE, "an IAM role name")
            return f"arn:aws:iam::{account.id}:role/{name.lstrip('/')}"
        arn = self.string(m, "role_arn", where, ROLE_ARN_RE, "an IAM role ARN arn:aws:iam::<id>:role/<name>")
        match = ROLE_ARN_RE.match(arn)
        if match and match.group(2) != account.id:
            raise self.fail(f"{where}.role_arn", f"is in account {match.group(2)}, "
                            f"but the role's account {account.name} is {account.id}", m.key_lines["role_arn"])
        return arn

    def rules(self, m: _Map, key: str, where: str) -> tuple[Rule, ...]:
        value = m[key]
        if isinstance(value, _Map):
            value = [value]
        if not isinstance(value, list):
            raise self.fail(f"{where}.{key}", "must be a list of rules", m.key_lines[key])
        return tuple(self.rule(item, f"{where}.{key}[{i}]", m.key_lines[key]) for i, item in enumerate(value))

    def rule(self, value: Any, where: str, line: int) -> Rule:
        r = self.mapping(value, where, line, {"groups", "claims", "issuer"})
        if "groups" not in r and "claims" not in r:
            raise self.fail(where, "an empty rule would match everybody; name groups or claims", r.line)
        issuer = r.get("issuer", DEFAULT_ISSUER)
        if issuer not in self.issuer_names:
            raise self.fail(f"{where}.issuer", f"unknown issuer {issuer!r} (define it under issuers, or leave "
                            "issuer out for the default issuer)", r.key_lines["issuer"])
        groups: frozenset[str] = frozenset()
        if "groups" in r:
            g = r["groups"]
            if isinstance(g, str):
                g = [g]
            if not isinstance(g, list) or not g or not all(isinstance(x, str) and x for x in g):
                raise self.fail(f"{where}.groups", "must be a non-empty list of group names", r.key_lines["groups"])
            groups = frozenset(g)
        claims: list[tuple[str, tuple[Scalar, ...]]] = []
        if "claims" in r:
            c = r["claims"]
            if not isinstance(c, _Map) or not c:
                raise self.fail(f"{where}.claims", "must be a non-empty mapping of claim: value",
                                r.key_lines["claims"])
            for k, v in c.items():
                values = v if isinstance(v, list) else [v]
                if not values or not all(isinstance(x, (str, int, bool)) for x in values):
                    raise self.fail(f"{where}.claims.{k}", "must be a string, number, boolean or a list of them",
                                    c.key_lines[k])
                if k == "email":  # tokens' emails are compared in ASCII lower case; so are the policy's
                    values = [self.email(x, f"{where}.claims.{k}", c.key_lines[k]) if isinstance(x, str) else x
                              for x in values]
                claims.append((k, tuple(values)))
        return Rule(groups=groups, claims=tuple(claims), issuer=issuer)

    def email(self, value: str, where: str, line: int) -> str:
        try:
            return canonical_value("email", value)
        except ValueError as exc:  # such a token's email counts as absent: the rule could never match
            raise self.fail(where, f"{value!r} {exc}", line) from None

    def approval(self, m: _Map, where: str) -> Approval:
        where = f"{where}.approval"
        a = self.mapping(m["approval"], where, m.key_lines["approval"],
                         {"approvers", "required", "stages", "ticket", "extend", "max_grant_seconds",
                          "pending_timeout_seconds"})
        stages = load_stages(self, a, where)
        max_grant = self.integer(a, "max_grant_seconds", where, MIN_SESSION_SECONDS, MAX_GRANT_SECONDS, 4 * 3600)
        return Approval(
            approvers=tuple(rule for stage in stages for rule in stage.approvers),
            max_grant_seconds=max_grant,
            pending_timeout_seconds=self.integer(a, "pending_timeout_seconds", where, 300,
                                                 MAX_GRANT_SECONDS, DEFAULT_PENDING_TIMEOUT_SECONDS),
            stages=stages,
            ticket=load_ticket(self, a, "ticket", where, required_default=True) if "ticket" in a else None,
            extend=load_extension(self, a, where, max_grant, MIN_SESSION_SECONDS, MAX_GRANT_SECONDS),
        )

    def slack(self, top: _Map) -> tuple[dict[str, str], str | None, str | None]:
        if "slack" not in top:
            return {}, None, None
        s = self.mapping(top["slack"], "slack", top.key_lines["slack"],
                         {"users", "approvals_channel", "security_channel"})
        users: dict[str, str] = {}
        if "users" in s:
            u = self.mapping(s["users"], "slack.users", s.key_lines["users"],
                             set(s["users"]) if isinstance(s["users"], dict) else set())
            for user_id, identity in u.items():
                if not SLACK_USER_RE.match(user_id) or not isinstance(identity, str) or not identity:
                    raise self.fail(f"slack.users.{user_id}", "must map a Slack user id (U...) to an identity",
                                    u.key_lines[user_id])
                users[user_id] = identity
        channel = s.get("approvals_channel")
        if channel is not None and not isinstance(channel, str):
            raise self.fail("slack.approvals_channel", "must be a channel id", s.key_lines["approvals_channel"])
        # Where break-glass is announced, besides the approvers' channel.
        security = s.get("security_channel")
        if security is not None and (not isinstance(security, str) or not SLACK_CHANNEL_RE.match(security)):
            raise self.fail("slack.security_channel", "must be one Slack channel id (C… or G…)",
                            s.key_lines["security_channel"])
        return users, channel, security
