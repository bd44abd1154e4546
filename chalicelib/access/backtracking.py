"""Ticket patterns that cannot make Python's backtracking ``re`` take long.

A ticket pattern comes from the policy file and meets a caller's ticket
(at most 64 characters) on every request and break-glass. Python's ``re``
backtracks, so ``^([A-Z]+-?)+[0-9]+$`` takes seconds on a 24-character
ticket and twice as long for each character more: one request would pin a
Lambda until its timeout. Rather than time a probe (machines are noisy, and
a probe proves nothing about the next input), the loader refuses patterns
whose shape allows it, on the tree Python's own parser builds from the
pattern (``re._parser``, the first step of ``re.compile``), so the check
reads exactly what runs:

* nothing that may repeat (``*``, ``+``, ``{m,n}`` with n > 1) contains a
  choice: a variable repetition (even ``?``) or an alternation (``a|b``);
  every way to split the input between the inner and the outer loop, or
  between overlapping alternatives, is otherwise tried, which is
  exponential;
* at most ``MAX_CHOICES`` choices in all: side by side they multiply
  (``a?a?a?…aaa`` is exponential too; four ``[0-9]*`` in a row, the worst
  case allowed, fail on 64 digits within tens of milliseconds);
* no backreferences or conditionals (``\\1``, ``(?P=name)``, ``(?(1)...)``),
  which no ticket form needs.

Repeating a fixed piece (``([A-Z]-)+``, ``(x{2})+``) stays allowed: each
turn consumes a fixed number of characters, so there is one way to split.
Real ticket forms (``^(INC|CHG)-[0-9]+$``, a Jira key
``^[A-Z][A-Z0-9]+-[0-9]+$``) use one or two choices.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

# Private but stable in form since Python 3.11 (before: ``sre_parse``); tests/unit pins the shapes it yields.
_PARSER: Any = importlib.import_module("re._parser")
MAX_CHOICES = 4
_REPEATS = frozenset({"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"})
_REFERENCES = frozenset({"GROUPREF", "GROUPREF_EXISTS", "GROUPREF_IGNORE", "GROUPREF_LOC_IGNORE",
                         "GROUPREF_UNI_IGNORE"})


def backtracking_problem(pattern: str) -> str | None:
    """Why ``pattern`` (a valid regular expression) could backtrack for long, or None."""
    choices: list[str] = []
    problem = _walk(_PARSER.parse(pattern, re.ASCII), choices, repeated=False)
    if problem is None and len(choices) > MAX_CHOICES:
        problem = (f"has {len(choices)} variable repetitions and alternations; at most {MAX_CHOICES} are allowed, "
                   "since each multiplies the ways a match can be tried")
    return problem


def _walk(subpattern: Any, choices: list[str], *, repeated: bool) -> str | None:
    for op, av in subpattern.data:
        name = op.name
        if name in _REFERENCES:
            return "uses a backreference or a conditional group, which ticket patterns may not"
        problem = None
        if name in _REPEATS:
            low, high = av[0], av[1]
            if low != high:  # {n} is a fixed piece, not a choice
                if repeated:
                    return ("repeats something that itself repeats (a nested quantifier such as (a+)+), which "
                            "backtracks exponentially; repeat a fixed piece, e.g. ([A-Z]-)+, or write it flat")
                choices.append(name)
            problem = _walk(av[2], choices, repeated=repeated or high > 1)
        elif name == "BRANCH":
            if repeated:
                return ("repeats an alternation (such as (a|ab)+), which backtracks exponentially; "
                        "repeat a character class instead, e.g. [AB]+")
            choices.append(name)
            problem = next(filter(None, (_walk(branch, choices, repeated=False) for branch in av[1])), None)
        elif name == "SUBPATTERN":
            problem = _walk(av[3], choices, repeated=repeated)
        elif name in ("ASSERT", "ASSERT_NOT"):
            problem = _walk(av[1], choices, repeated=repeated)
        elif name == "ATOMIC_GROUP":
            problem = _walk(av, choices, repeated=repeated)
        if problem:
            return problem
    return None
