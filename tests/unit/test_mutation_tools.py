"""``make mutate``'s own rules: which mutants are message text, which tests a mutant runs.

Each text case is an original function and one mutant of it, written as
mutmut writes them; the classifier must call text exactly the mutants that
change what a person reads and nothing a program compares.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from mutation.pytest_plugin import FLOW_TESTS, flow_tests_for
from mutation.textfilter import is_message_text


def _pair(original: str, mutant: str) -> tuple[ast.FunctionDef, ast.FunctionDef]:
    functions = []
    for body in (original, mutant):
        tree = ast.parse("def f(self, x):\n" + textwrap.indent(textwrap.dedent(body), "    "))
        function = tree.body[0]
        assert isinstance(function, ast.FunctionDef)
        functions.append(function)
    return functions[0], functions[1]


TEXT = {
    "error message": ('raise Forbidden("only the requester can cancel a request")',
                      'raise Forbidden("XXonly the requester can cancel a requestXX")'),
    "error message, case": ('raise BadRequest("usage: /aws console ROLE")',
                            'raise BadRequest("USAGE: /AWS CONSOLE ROLE")'),
    "error message set to None": ('raise Unauthenticated(f"token has no {x!r} claim")',
                                  "raise Unauthenticated(None)"),
    "error message removed": ('raise Conflict("no longer pending", x)', "raise Conflict(x)"),
    "a value formatted into a message": ('raise Unauthenticated(f"algorithm {str(x)[:16]!r} is not accepted")',
                                         'raise Unauthenticated(f"algorithm {str(x)[:17]!r} is not accepted")'),
    "a log argument's own expression": ('LOG.error("failed: %s", type(x).__name__)',
                                        'LOG.error("failed: %s", type(None).__name__)'),
    "a later domain error's message": ('raise Revoked("your sessions were revoked meanwhile")',
                                       'raise Revoked(None)'),
    "a later domain error's message, case": ('raise BreakGlassLocked("your last break-glass waits")',
                                             'raise BreakGlassLocked("YOUR LAST BREAK-GLASS WAITS")'),
    "returned error": ('return Throttled("the request store is throttling")',
                       'return Throttled("XXthe request store is throttlingXX")'),
    "part of a concatenated message": ('raise NotFound("no request " + f"{x!r}")',
                                       'raise NotFound("XXno request XX" + f"{x!r}")'),
    "policy place and message": ('raise self.fail(where, "must be a mapping", x)',
                                 'raise self.fail(where, "XXmust be a mappingXX", x)'),
    "log line": ('LOG.warning("refusing to post outside %s", x)', 'LOG.warning("XXrefusing to post outside %sXX", x)'),
    "log argument removed": ('LOG.warning("refusing to post outside %s", x)',
                             'LOG.warning("refusing to post outside %s")'),
    "log argument set to None": ('LOG.warning("refusing to post outside %s", x)',
                                 'LOG.warning("refusing to post outside %s", None)'),
}

BEHAVIOUR = {
    "string compared in logic": ('if x == "approve":\n    return 1', 'if x == "XXapproveXX":\n    return 1'),
    "error class kept, condition changed": ('if x:\n    raise Forbidden("no")', 'if not x:\n    raise Forbidden("no")'),
    "audit reason": ('self._record("request", "denied", x, "too many open requests")',
                     'self._record("request", "denied", x, "XXtoo many open requestsXX")'),
    "task rejection reason (audit content)": ('raise TaskRejected("expired", kind=x)',
                                              'raise TaskRejected("XXexpiredXX", kind=x)'),
    "keyword of an error": ('raise PolicyError(x, source="policy")', 'raise PolicyError(x, source="XXpolicyXX")'),
    "policy error's line": ('raise self.fail(where, "must be a mapping", x)',
                            'raise self.fail(where, "must be a mapping", None)'),
    "policy error's argument removed (TypeError)": ('raise self.fail(where, "must be a mapping", x)',
                                                    "raise self.fail(where, x)"),
    "message from a variable": ("raise Forbidden(x)", "raise Forbidden(None)"),
    "slack text": ('return ephemeral("No access requests for you")',
                   'return ephemeral("XXNo access requests for youXX")'),
    "a nested call's argument": ('raise Forbidden(describe("a"))', 'raise Forbidden(describe("XXaXX"))'),
    "an f-string that is not a message": ('return {"key": f"GRANT#{x}"}', 'return {"key": f"GRANT#{None}"}'),
    "an f-string keyword of an error": ('raise TaskRejected(x, kind=f"{x[:40]}")',
                                        'raise TaskRejected(x, kind=f"{x[:41]}")'),
    "a different error class": ('raise Forbidden("no")', 'raise NotFound("no")'),
}


@pytest.mark.parametrize(("original", "mutant"), TEXT.values(), ids=TEXT.keys())
def test_message_text_is_excluded(original: str, mutant: str) -> None:
    assert is_message_text(*_pair(original, mutant))


@pytest.mark.parametrize(("original", "mutant"), BEHAVIOUR.values(), ids=BEHAVIOUR.keys())
def test_behaviour_is_never_excluded(original: str, mutant: str) -> None:
    assert not is_message_text(*_pair(original, mutant))


def test_each_mutant_runs_the_flow_tests_of_its_concern() -> None:
    assert flow_tests_for("chalicelib.identity.tokens.x__bearer__mutmut_3") == ("test_identity_flow.py",)
    assert "test_evidence.py" in (flow_tests_for("chalicelib.stamping.x_grant_tags__mutmut_1") or ())
    assert flow_tests_for("chalicelib.jit.grants.x_f__mutmut_1") is None  # not listed: every flow test
    for run in ("stats", "", "fail"):  # mutmut's own runs: every test
        assert flow_tests_for(run) is None


def test_every_flow_file_named_for_a_module_exists() -> None:
    flows = Path(__file__).resolve().parents[1] / "flow"
    named = {name for names in FLOW_TESTS.values() for name in names}
    assert named and all((flows / name).is_file() for name in named), named - {p.name for p in flows.iterdir()}
