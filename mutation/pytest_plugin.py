"""Test selection for mutants: loaded into every pytest run mutmut makes.

mutmut runs, for each mutant, the tests that called the mutated function
(``-x``: until one fails). Here those tests are narrowed and ordered:

* unit tests first, then api tests, then flow tests, so most mutants die
  in the first second;
* of the flow tests, only those of the mutated module's concern (below):
  a token check is called by every flow test, but only the identity flows
  are about it, and the others would cost a minute per surviving mutant.

Outside a mutant's run (mutmut's stats, clean and forced-fail runs, or a
plain ``pytest -p mutation.pytest_plugin``) every test runs, in that order.
"""

from __future__ import annotations

import os

import pytest

LAYERS = ("tests/unit/", "tests/api/", "tests/flow/")
JIT_FLOWS = ("test_jit_decisions.py", "test_jit_and_slack.py", "test_request_pages.py", "test_approvals.py",
             "test_approvals_across_issuers.py", "test_break_glass.py", "test_time.py")
SLACK_FLOWS = ("test_slack_text.py", "test_slack_workspaces.py", "test_worker_tasks.py")
# Module (or package) -> the flow test files about it; the longest prefix wins.
FLOW_TESTS: dict[str, tuple[str, ...]] = {
    "chalicelib.identity.": ("test_identity_flow.py",),
    "chalicelib.access.policy.": ("test_identity_flow.py", "test_jit_decisions.py"),
    "chalicelib.jit.requests.": (*JIT_FLOWS, "test_evidence.py", "test_identity_flow.py"),
    "chalicelib.aws.store.": (*JIT_FLOWS, "test_evidence.py", "test_faults.py", "test_worker_tasks.py",
                              "test_identity_flow.py"),
    "chalicelib.broker.": ("test_moto_flow.py", "test_faults.py", "test_evidence.py", "test_jit_and_slack.py",
                           "test_identity_flow.py", "test_scopes_and_roles.py", "test_break_glass.py"),
    "chalicelib.stamping.": ("test_moto_flow.py", "test_evidence.py", "test_scopes_and_roles.py"),
    "chalicelib.chat.": (*JIT_FLOWS, *SLACK_FLOWS),
}


def flow_tests_for(mutant: str) -> tuple[str, ...] | None:
    """The flow test files a mutant runs, or None for all (not a mutant, or a module not listed)."""
    if "__mutmut_" not in mutant:
        return None
    prefixes = [prefix for prefix in FLOW_TESTS if mutant.startswith(prefix)]
    return FLOW_TESTS[max(prefixes, key=len)] if prefixes else None


def _layer(item: pytest.Item) -> int:
    return next((i for i, layer in enumerate(LAYERS) if item.nodeid.startswith(layer)), len(LAYERS))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_layer)
    flows = flow_tests_for(os.environ.get("MUTANT_UNDER_TEST", ""))
    if flows is None:
        return
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        unrelated = item.nodeid.startswith("tests/flow/") and item.nodeid.split("::")[0].rpartition("/")[2] not in flows
        (dropped if unrelated else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
