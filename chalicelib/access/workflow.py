"""How a role's access is granted over time: ordered approval stages, each
needing N of its approvers; tickets; break-glass; extensions; who is told.

Plain data and pure questions. ``access/policy.py`` loads these blocks
strictly (``load_*`` below, called with its validator, so every error names
the file and line); ``jit/`` acts on them; the store's conditions enforce
the parts that must hold against races (distinct approvers, counts, the
break-glass lock, extension budgets).

Ticket patterns are matched with ``re.fullmatch`` and ASCII classes: the
whole ticket must match (a trailing newline does not, whatever ``$`` in
the pattern would allow), and ``\\d`` means 0-9 only. A ticket must also be
1-64 printable ASCII characters without spaces before any pattern sees it,
so a pattern written too loosely still cannot let a newline or markup into
a session tag or a Slack message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chalicelib.access.policy import Rule, _Map, _Validator
    from chalicelib.identity.tokens import Identity

STAGE_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}\Z")
SLACK_CHANNEL_RE = re.compile(r"[CG][A-Z0-9]{2,20}\Z")
TICKET_RE = re.compile(r"[\x21-\x7e]{1,64}\Z")  # printable ASCII, no space
DEFAULT_TICKET_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:#/-]{0,63}"
MAX_STAGES = 5
MAX_REQUIRED = 10
MAX_PATTERN_CHARS = 200
MAX_CHANNELS = 10
DEFAULT_BREAK_GLASS_SECONDS = 3600


@dataclass(frozen=True)
class Stage:
    """One step of an approval: ``required`` distinct approvers matching ``approvers``."""

    name: str
    approvers: tuple[Rule, ...]
    required: int = 1

    def is_approver(self, identity: Identity) -> bool:
        return any(rule.matches(identity) for rule in self.approvers)


@dataclass(frozen=True)
class TicketRule:
    """Whether a ticket is required, and the form it must have."""

    required: bool = False
    pattern: str = DEFAULT_TICKET_PATTERN
    _compiled: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", re.compile(self.pattern, re.ASCII))

    def problem(self, ticket: str | None, what: str) -> str | None:
        """Why ``ticket`` is not acceptable for ``what`` (a role's request, a break-glass), or None."""
        if ticket is None:
            return f"{what} needs a ticket matching {self.pattern}" if self.required else None
        compiled = self._compiled or re.compile(self.pattern, re.ASCII)
        if not TICKET_RE.match(ticket) or not compiled.fullmatch(ticket):
            return f"ticket {ticket[:64]!r} does not match {self.pattern}, the form {what} requires"
        return None


@dataclass(frozen=True)
class ExtensionRule:
    """How far a grant may be extended, and how much of that needs no approver."""

    max_total_seconds: int
    auto_approve_seconds: int = 0


@dataclass(frozen=True)
class BreakGlass:
    """Immediate access without an approver, for the people ``allow`` names
    (who must also match the role's own ``allow``), always with a reason and a ticket."""

    allow: tuple[Rule, ...]
    max_duration_seconds: int = DEFAULT_BREAK_GLASS_SECONDS
    block_until_reviewed: bool = True
    ticket: TicketRule = field(default_factory=lambda: TicketRule(required=True))

    def may(self, identity: Identity) -> bool:
        return any(rule.matches(identity) for rule in self.allow)


@dataclass(frozen=True)
class Notify:
    """Who sees a role's requests without deciding them: Slack channels and watchers (rules)."""

    channels: tuple[str, ...] = ()
    watchers: tuple[Rule, ...] = ()

    def is_watcher(self, identity: Identity) -> bool:
        return any(rule.matches(identity) for rule in self.watchers)


@dataclass(frozen=True)
class Plan:
    """The stages a request must pass, as filed: names and counts (the rules stay in the policy)."""

    stages: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        return sum(required for _, required in self.stages)


def plan_of(stages: tuple[Stage, ...]) -> Plan:
    return Plan(tuple((stage.name, stage.required) for stage in stages))


# --------------------------------------------------------------------------
# Loading (called by access/policy.py's validator, which owns the file and line)


def load_stages(v: _Validator, a: _Map, where: str) -> tuple[Stage, ...]:
    if ("approvers" in a) == ("stages" in a):
        raise v.fail(where, "give exactly one of approvers (one stage) or stages (several, in order)", a.line)
    if "approvers" in a:
        return (Stage("approval", v.rules(a, "approvers", where), _required(v, a, where)),)
    if "required" in a:
        raise v.fail(f"{where}.required", "with stages, each stage says how many approvals it requires",
                     a.key_lines["required"])
    value = a["stages"]
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_STAGES:
        raise v.fail(f"{where}.stages", f"must be a list of 1 to {MAX_STAGES} stages", a.key_lines["stages"])
    stages: list[Stage] = []
    for i, item in enumerate(value):
        stage = _stage(v, item, f"{where}.stages[{i}]", a.key_lines["stages"])
        if any(other.name == stage.name for other in stages):
            raise v.fail(f"{where}.stages[{i}].name", f"stage name {stage.name!r} is used twice",
                         item.key_lines["name"])
        stages.append(stage)
    return tuple(stages)


def _stage(v: _Validator, value: Any, where: str, line: int) -> Stage:
    s = v.mapping(value, where, line, {"name", "approvers", "required"}, {"name", "approvers"})
    name = s["name"]
    if not isinstance(name, str) or not STAGE_NAME_RE.match(name):
        raise v.fail(f"{where}.name", f"must be 1-32 characters of [a-z0-9_-] starting with a letter, got {name!r}",
                     s.key_lines["name"])
    return Stage(name, v.rules(s, "approvers", where), _required(v, s, where))


def _required(v: _Validator, m: _Map, where: str) -> int:
    value = m.get("required", 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_REQUIRED:
        raise v.fail(f"{where}.required", f"must be a whole number of approvers from 1 to {MAX_REQUIRED}, "
                     f"got {value!r}", m.key_lines.get("required", m.line))
    return value


def load_ticket(v: _Validator, m: _Map, key: str, where: str, *, required_default: bool) -> TicketRule:
    where = f"{where}.{key}"
    t = v.mapping(m[key], where, m.key_lines[key], {"required", "pattern"})
    pattern = t.get("pattern", DEFAULT_TICKET_PATTERN)
    return TicketRule(required=v.boolean(t, "required", where, required_default),
                      pattern=ticket_pattern(v, pattern, f"{where}.pattern", t.key_lines.get("pattern", t.line)))


def ticket_pattern(v: _Validator, pattern: Any, where: str, line: int) -> str:
    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN_CHARS:
        raise v.fail(where, f"must be a regular expression of 1-{MAX_PATTERN_CHARS} characters", line)
    try:
        re.compile(pattern, re.ASCII)
    except re.error as exc:
        raise v.fail(where, f"is not a valid regular expression ({exc})", line) from None
    return pattern


def load_extension(v: _Validator, a: _Map, where: str, max_grant_seconds: int, low: int, high: int) -> ExtensionRule:
    if "extend" not in a:
        return ExtensionRule(max_total_seconds=max_grant_seconds)
    where = f"{where}.extend"
    e = v.mapping(a["extend"], where, a.key_lines["extend"], {"max_total_seconds", "auto_approve_seconds"})
    total = v.integer(e, "max_total_seconds", where, low, high, max_grant_seconds)
    auto = v.integer(e, "auto_approve_seconds", where, 0, total, 0)
    return ExtensionRule(max_total_seconds=total, auto_approve_seconds=auto)


def load_break_glass(v: _Validator, m: _Map, where: str, approval_ticket: TicketRule | None,
                     low: int, high: int) -> BreakGlass:
    where = f"{where}.break_glass"
    line = m.key_lines["break_glass"]
    if "approval" not in m:
        raise v.fail(where, "needs an approval block on the role: without one, everyone the role allows "
                     "already has access", line)
    b = v.mapping(m["break_glass"], where, line,
                  {"allow", "max_duration_seconds", "block_until_reviewed", "ticket_pattern"}, {"allow"})
    if "ticket_pattern" in b:
        pattern = ticket_pattern(v, b["ticket_pattern"], f"{where}.ticket_pattern", b.key_lines["ticket_pattern"])
    else:  # the role's own ticket form, when it has one
        pattern = approval_ticket.pattern if approval_ticket else DEFAULT_TICKET_PATTERN
    return BreakGlass(
        allow=v.rules(b, "allow", where),
        max_duration_seconds=v.integer(b, "max_duration_seconds", where, low, high, DEFAULT_BREAK_GLASS_SECONDS),
        block_until_reviewed=v.boolean(b, "block_until_reviewed", where, True),
        ticket=TicketRule(required=True, pattern=pattern),
    )


def load_notify(v: _Validator, m: _Map, where: str) -> Notify:
    where = f"{where}.notify"
    n = v.mapping(m["notify"], where, m.key_lines["notify"], {"channels", "watchers"})
    if not n:
        raise v.fail(where, "name channels, watchers or both", n.line)
    channels: tuple[str, ...] = ()
    if "channels" in n:
        channels = channel_list(v, n, "channels", where)
    return Notify(channels=channels, watchers=v.rules(n, "watchers", where) if "watchers" in n else ())


def channel_list(v: _Validator, m: _Map, key: str, where: str) -> tuple[str, ...]:
    value = m[key]
    values = [value] if isinstance(value, str) else value
    if (not isinstance(values, list) or not 1 <= len(values) <= MAX_CHANNELS
            or not all(isinstance(c, str) and SLACK_CHANNEL_RE.match(c) for c in values)):
        raise v.fail(f"{where}.{key}", f"must be 1-{MAX_CHANNELS} Slack channel ids (C… or G…)", m.key_lines[key])
    return tuple(dict.fromkeys(values))
