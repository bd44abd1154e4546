"""Mutation testing of the client (``client/rolebroker``), without mutmut.

mutmut does not fit the client:

* it wraps every function in a trampoline that imports ``mutmut``, so the
  ``credential_process`` hot path stops being the small import it must be
  (tests/client/test_client_processes.py::test_cache_hit_imports_nothing_heavy
  fails by design), and subprocess tests run a client that imports mutmut;
* it names mutants by file path (``client.rolebroker.cache``) while the tests
  import ``rolebroker.cache``, so it would find no test for any of them.

So each mutant here is the module's own source with one expression
replaced, written into a private copy of the tree, and the module's client
tests run against it in a fresh process (``-x``). The operators are
mutmut's main ones: comparison and boolean operators swapped, ``not``
dropped, ``True``/``False`` swapped, numbers + 1, strings wrapped in ``XX``,
arithmetic swapped, an assigned value or a call argument replaced by
``None``. Only code inside functions is mutated, never docstrings,
annotations or defaults. Message-text mutants are classified by the same
rule as the server's (``__main__.is_message_text``) and not run.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from mutation.textfilter import is_message_text

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "client" / "rolebroker"
WORK = ROOT / "mutants" / "client"
RESULTS = WORK / "results.json"
# The modules the client's security rests on, each with the test files that reach it (fast ones first).
MODULE_TESTS: dict[str, tuple[str, ...]] = {
    "files": ("test_client_files.py", "test_client_cache.py", "test_client_configure.py", "test_client_login.py"),
    "cache": ("test_client_cache.py", "test_client_credential_process.py", "test_client_commands.py"),
    "_fast": ("test_client_fast.py", "test_client_durations.py", "test_client_cache.py",
              "test_client_credential_process.py", "test_client_processes.py"),
    "errors": ("test_client_redaction.py", "test_client_credential_process.py", "test_client_commands.py",
               "test_client_serve.py"),
    "transport": ("test_client_credential_process.py", "test_client_commands.py", "test_client_everyday.py"),
    "text": ("test_client_commands.py", "test_client_everyday.py", "test_client_configure.py",
             "test_client_device_login.py"),
    "profiles": ("test_client_configure.py", "test_client_commands.py"),
}
SKIPPED_DIRS = {".git", ".venv", "mutants", "build", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
                ".devstack"}
_COMPARE_SWAPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
_BINOP_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
    ast.Mod: ast.Div, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd, ast.LShift: ast.RShift, ast.RShift: ast.LShift}


@dataclass(frozen=True)
class ClientMutant:
    name: str  # client.rolebroker.<module>.<function>__<n>
    module: str
    function: str
    start: tuple[int, int]  # line, column of the replaced source
    end: tuple[int, int]
    replacement: str
    diff: str
    text: bool = False


# --------------------------------------------------------------------------
# Making mutants


def mutants_of(module: str) -> list[ClientMutant]:
    source = (PACKAGE / f"{module}.py").read_text()
    lines = source.splitlines(keepends=True)
    tree = ast.parse(source)
    errors = _error_classes()
    found: list[ClientMutant] = []
    for qualname, function in _functions(tree):
        for n, (node, new) in enumerate(_mutations(function), start=1):
            start, end = (node.lineno, node.col_offset), (node.end_lineno or node.lineno, node.end_col_offset or 0)
            replacement = ast.unparse(new)
            mutated = _replace(lines, start, end, replacement)
            try:
                mutated_tree = ast.parse(mutated)
            except SyntaxError:
                continue
            mutated_function = dict(_functions(mutated_tree))[qualname]
            before = " ".join("".join(lines[start[0] - 1:end[0]]).split())
            after = " ".join(_replace(lines[start[0] - 1:end[0]], (1, start[1]), (end[0] - start[0] + 1, end[1]),
                                      replacement).split())
            found.append(ClientMutant(
                name=f"client.rolebroker.{module}.{qualname}__{n}", module=module, function=qualname, start=start,
                end=end, replacement=replacement, diff=f"- {before}\n+ {after}",
                text=is_message_text(function, mutated_function, extra_errors=errors)))
    return found


def _error_classes() -> set[str]:
    """The client's error classes (``errors.py``) and its message factory ``_refuse``."""
    tree = ast.parse((PACKAGE / "errors.py").read_text())
    return {node.name for node in tree.body if isinstance(node, ast.ClassDef)} | {"_refuse"}


def _functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef]]:
    def walk(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.FunctionDef]]:
        for node in body:
            if isinstance(node, ast.FunctionDef):
                yield prefix + node.name, node
            elif isinstance(node, ast.ClassDef):
                yield from walk(node.body, f"{prefix}{node.name}.")

    yield from walk(tree.body, "")


def _mutations(function: ast.FunctionDef) -> Iterator[tuple[ast.expr, ast.expr]]:
    """(node, its replacement) for every mutation inside ``function``'s body."""
    skip = {id(n) for n in ast.walk(function) if isinstance(n, ast.JoinedStr)}  # f-string parts keep their text
    body = function.body[1:] if ast.get_docstring(function) else function.body
    for statement in body:
        for node in ast.walk(statement):
            if isinstance(node, ast.JoinedStr):
                skip |= {id(part) for part in node.values}
            if isinstance(node, ast.AnnAssign | ast.arg):
                skip |= {id(n) for n in ast.walk(node.annotation)} if node.annotation else set()
            if id(node) not in skip:
                yield from _operators(node)


def _operators(node: ast.AST) -> Iterator[tuple[ast.expr, ast.expr]]:
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            swapped = _COMPARE_SWAPS.get(type(op))
            if swapped:
                yield node, ast.Compare(node.left, [*node.ops[:i], swapped(), *node.ops[i + 1:]], node.comparators)
    elif isinstance(node, ast.BoolOp):
        yield node, ast.BoolOp(ast.Or() if isinstance(node.op, ast.And) else ast.And(), node.values)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield node, node.operand
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAPS:
        yield node, ast.BinOp(node.left, _BINOP_SWAPS[type(node.op)](), node.right)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool):
            yield node, ast.Constant(not node.value)
        elif isinstance(node.value, int):
            yield node, ast.Constant(node.value + 1)
        elif isinstance(node.value, str):
            yield node, ast.Constant(f"XX{node.value}XX")
    elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
        if not (isinstance(node.value, ast.Constant) and node.value.value is None):
            yield node.value, ast.Constant(None)
    elif isinstance(node, ast.Call):
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            if not isinstance(arg, ast.Starred) and not (isinstance(arg, ast.Constant) and arg.value is None):
                yield arg, ast.Constant(None)


def _replace(lines: list[str], start: tuple[int, int], end: tuple[int, int], text: str) -> str:
    head = "".join(lines[:start[0] - 1]) + lines[start[0] - 1].encode()[:start[1]].decode()
    tail = lines[end[0] - 1].encode()[end[1]:].decode() + "".join(lines[end[0]:])
    if "\n" in text:
        text = f"({text})"
    return head + text + tail


# --------------------------------------------------------------------------
# Running them


def run(modules: Sequence[str], jobs: int) -> int:
    results: dict[str, dict[str, object]] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    trees = [_copy_tree(WORK / f"tree-{i}") for i in range(jobs)]
    free = list(trees)
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    for module in modules:
        tests = [f"tests/client/{name}" for name in MODULE_TESTS[module]]
        baseline = _baseline(trees[0], tests, env)
        mutants = mutants_of(module)
        todo = [m for m in mutants if not m.text]
        print(f"== client {module}: {len(mutants)} mutants, {len(todo)} to run "
              f"(tests pass in {baseline:.0f} s)", flush=True)

        def one(mutant: ClientMutant, tests: list[str], timeout: float) -> tuple[ClientMutant, str]:
            tree = free.pop()
            try:
                return mutant, _run_one(tree, mutant, tests, env, timeout=timeout)
            finally:
                free.append(tree)

        module_results = {m.name: {**asdict(m), "status": "not run"} for m in mutants}
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            work = partial(one, tests=tests, timeout=max(60.0, 5 * baseline))
            for done, (mutant, status) in enumerate(pool.map(work, todo), start=1):
                module_results[mutant.name]["status"] = status
                if status != "killed":
                    print(f"   {status}: {mutant.name}\n{mutant.diff}", flush=True)
                if done % 50 == 0:
                    print(f"   {done}/{len(todo)}", flush=True)
        results = {k: v for k, v in results.items() if v.get("module") != module} | module_results
        RESULTS.write_text(json.dumps(results, indent=1))
    return 0


def _copy_tree(target: Path) -> Path:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(ROOT, target, ignore=lambda folder, names: [n for n in names if n in SKIPPED_DIRS
                                                               or n.endswith(".egg-info")])
    return target


def _pytest(tree: Path, tests: list[str], env: dict[str, str], timeout: float) -> int:
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "pytest_httpserver", *tests]
    try:
        return subprocess.run(command, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=timeout, check=False).returncode
    except subprocess.TimeoutExpired:
        return -1


def _baseline(tree: Path, tests: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    if _pytest(tree, tests, env, timeout=1800) != 0:
        raise SystemExit(f"the client tests {tests} fail without any mutant; fix them first")
    return time.monotonic() - started


def _run_one(tree: Path, mutant: ClientMutant, tests: list[str], env: dict[str, str], timeout: float) -> str:
    path = tree / "client" / "rolebroker" / f"{mutant.module}.py"
    original = path.read_text()
    lines = original.splitlines(keepends=True)
    path.write_text(_replace(lines, mutant.start, mutant.end, mutant.replacement))
    try:
        code = _pytest(tree, tests, env, timeout)
    finally:
        path.write_text(original)
    return {0: "survived", -1: "timeout"}.get(code, "killed")


def load_results() -> dict[str, dict[str, object]]:
    results: dict[str, dict[str, object]] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    return results
