"""Run mutmut per package and print what the tests let through.

``python -m mutation run [--jobs N] [--fresh] [--survivors] [MODULE ...]``
    Writes ``mutants/`` (every mutant of every module), then one ``mutmut
    run`` per package naming that package's mutants, at most ``--jobs`` test
    processes at once, all on one moto server. mutmut maps each test of
    ``tests/unit``, ``tests/api`` and ``tests/flow`` to the functions it
    calls (``[tool.mutmut]`` in pyproject.toml), and ``pytest_plugin.py``
    narrows that to the unit and api tests plus the flow tests of the
    module's concern. Message-text mutants (below) are not run. ``--fresh``
    starts from an empty ``mutants/``; ``--survivors`` tests again only the
    mutants nothing has killed yet, after tests were added.

``python -m mutation report [--survivors] [MODULE ...]``
    One line per module: mutants in all, killed (by a test, or by mypy
    when configured), survived, other (timeouts, not run), excluded as
    message text, equivalent, and the score: killed / (all - text -
    equivalent). ``--survivors`` also prints each survivor that counts.

What is excluded as message text (decided on the mutant's AST, not by
configuration, so a mutant is never hidden by the line it happens to be on):
the mutation changes, replaces with ``None`` or removes only a string literal
(or an f-string, or a value formatted into one) that is a positional
argument of

* a domain error's constructor (``Forbidden("...")``, ``raise
  PolicyError(...)``, a ``ValueError``, or the policy loader's
  ``self.fail(where, message, line)``: the place and the message, never
  the line). People read these messages (in an answer, in Slack, as an
  audit line's reason); no code compares them: ``app.py`` answers with the
  error's class, its status and its code; or
* a logging call (``LOG.warning("...", ...)``): there, any change to its
  arguments.

Everything else counts as behaviour: audit fields and reasons, error
*classes*, ``TaskRejected`` reasons (they are audit content), Slack blocks and
text (what people see is the product), strings compared in logic.

Equivalent mutants are listed in ``mutation/equivalent.toml`` with the diff
the mutant makes and a one-line reason; an entry whose mutant no longer
makes that change, or no longer survives, is reported as stale.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.stack import aws_emulation

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"
EQUIVALENT = Path(__file__).resolve().parent / "equivalent.toml"
MODULES = (
    "chalicelib.identity.tokens",
    "chalicelib.identity.keys",
    "chalicelib.identity.issuers",
    "chalicelib.identity.principal",
    "chalicelib.access.policy",
    "chalicelib.jit.requests",
    "chalicelib.aws.store",
    "chalicelib.broker",
    "chalicelib.stamping",
    "chalicelib.chat.slack",
    "chalicelib.chat.messages",
    "chalicelib.chat.tasks",
    "chalicelib.chat.directory",
    "chalicelib.chat.chatops",
)
# mutmut's exit codes (mutmut/stats.py), in the words used here.
STATUS = {1: "killed", 3: "killed", 37: "mypy", 0: "survived", 33: "no tests", 5: "no tests", None: "not run"}
TIMEOUTS = {36, 24, -24, 152, 255}
MESSAGE_ERRORS = {"RolebrokerError", "BadRequest", "Unauthenticated", "Forbidden", "NotFound", "Conflict",
                  "Throttled", "AwsRefused", "DependencyDown", "SlotTaken", "ConfigurationError", "PolicyError",
                  "ValueError"}
POLICY_FAIL_TEXT_ARGS = 2  # self.fail(where, message, line): the first two are text
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical"}
MUTMUT = ROOT / ".venv" / "bin" / "mutmut"
SHARED_MOTO_URL = "ROLEBROKER_TEST_MOTO_URL"  # tests/conftest.py uses this server instead of its own


# --------------------------------------------------------------------------
# Running


def run(modules: Sequence[str], jobs: int, fresh: bool, survivors_only: bool) -> int:
    if fresh and MUTANTS.exists():
        shutil.rmtree(MUTANTS)
    generate(jobs)
    # One moto server for every pytest run of every mutant (tests/conftest.py).
    with aws_emulation() as (moto_url, _):
        # Each pytest start loads no plugin it is not told to: 1.3 s instead of 5 s.
        env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1",
               SHARED_MOTO_URL: moto_url}
        for package, members in _by_package(modules):
            # Message-text mutants are not run at all: they do not count, and a
            # surviving mutant costs every test of its function.
            names = [mutant.name for module in members for mutant in mutants_of(module) if not mutant.text
                     and not (survivors_only and mutant.status in ("killed", "mypy"))]
            print(f"== mutmut: {', '.join(members)}: {len(names)} mutants", flush=True)
            if not names:
                continue
            # One mutmut run per package: each run first runs the tests of every function it mutates once.
            command = [str(MUTMUT) if MUTMUT.exists() else "mutmut", "run", "--max-children", str(jobs), *names]
            # mutmut redraws a progress line many times a second; keep only its real lines.
            with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, errors="replace") as process:
                assert process.stdout is not None
                for line in _lines(process.stdout):
                    print(line, flush=True)
            if process.returncode != 0:
                print(f"mutmut failed on {package} (exit {process.returncode})", file=sys.stderr)
                return 1
    return 0


def generate(jobs: int) -> None:
    """Write ``mutants/`` (a copy of the tree with every mutant in it), as ``mutmut run`` starts by doing.

    Done first, on its own, so that the runs below can name the mutants to test.
    These are mutmut 3.8's own steps (pinned in constraints.txt).
    """
    from mutmut.__main__ import create_mutants
    from mutmut.utils.file_utils import copy_also_copy_files, copy_src_dir

    cwd = Path.cwd()
    os.chdir(ROOT)
    try:
        MUTANTS.mkdir(exist_ok=True)
        copy_src_dir()
        copy_also_copy_files()
        stats = create_mutants(jobs)
        print(f"== mutants written: {stats.mutated} files mutated, {stats.unmodified} unchanged", flush=True)
    finally:
        os.chdir(cwd)


def _by_package(modules: Sequence[str]) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = {}
    for module in modules:
        groups.setdefault(module.rpartition(".")[0], []).append(module)
    return list(groups.items())


def _lines(stream: Iterator[str]) -> Iterator[str]:
    for chunk in stream:
        for line in chunk.replace("\r", "\n").splitlines():
            if line.strip() and line.lstrip()[:1] not in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏🎉":
                yield line


# --------------------------------------------------------------------------
# What a mutant changed


@dataclass(frozen=True)
class Mutant:
    name: str
    module: str
    status: str
    text: bool
    diff: str  # the lines it removes and adds


def mutants_of(module: str) -> Iterator[Mutant]:
    path = MUTANTS / (module.replace(".", "/") + ".py")
    meta_path = path.with_name(path.name + ".meta")
    if not meta_path.exists():
        return
    exit_codes = json.loads(meta_path.read_text())["exit_code_by_key"]
    functions = {node.name: node for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.FunctionDef)}
    source = path.read_text().splitlines()
    for name, code in sorted(exit_codes.items(), key=lambda item: _natural(item[0])):
        local = name.rpartition(".")[2]
        original = functions[local.rpartition("__mutmut_")[0] + "__mutmut_orig"]
        mutant = functions[local]
        status = "timeout" if code in TIMEOUTS else STATUS.get(code, f"suspicious ({code})")
        removed, added = _changed_lines(source, original, mutant)
        yield Mutant(name=name, module=module, status=status, text=is_message_text(original, mutant),
                     diff="\n".join([f"- {line}" for line in removed] + [f"+ {line}" for line in added]))


def _natural(name: str) -> tuple[str, int]:
    head, _, number = name.rpartition("__mutmut_")
    return head, int(number) if number.isdigit() else -1


def _changed_lines(source: list[str], original: ast.FunctionDef,
                   mutant: ast.FunctionDef) -> tuple[list[str], list[str]]:
    before = [line.strip() for line in _lines_of(source, original)]
    after = [line.strip() for line in _lines_of(source, mutant)]
    start = 0
    while start < min(len(before), len(after)) and before[start] == after[start]:
        start += 1
    end = 0
    while end < min(len(before), len(after)) - start and before[-1 - end] == after[-1 - end]:
        end += 1
    return before[start:len(before) - end], after[start:len(after) - end]


def _lines_of(source: list[str], function: ast.FunctionDef) -> list[str]:
    """The function's text from its ``def`` on (defaults are mutated too), under one name."""
    lines = source[function.lineno - 1:function.end_lineno]
    return [line.replace(function.name, "f", 1) if i == 0 else line for i, line in enumerate(lines)]


def is_message_text(original: ast.FunctionDef, mutant: ast.FunctionDef) -> bool:
    """Whether the mutant changes nothing but the text of an error message or a log line."""
    found = _difference(original.body, mutant.body, [])
    if found is None:
        return False
    before, after, parents = found
    if isinstance(before, ast.Call) and isinstance(after, ast.Call) and len(before.args) != len(after.args):
        return _argument_removed_is_text(before, after)
    if any(isinstance(parent, ast.Call) and _is_log_call(parent) for parent in parents):
        return True  # anything in a log line's arguments
    fstrings = [i for i, parent in enumerate(parents) if isinstance(parent, ast.JoinedStr)]
    if fstrings and _is_message_argument(parents[fstrings[0]], parents[:fstrings[0]]):
        return True  # a value formatted into a message: only the text changes
    if isinstance(after, ast.Constant) and after.value is None:
        return _is_message_argument(before, parents, any_value=not _is_text(before))
    if (isinstance(before, ast.Constant) and isinstance(after, ast.Constant) and isinstance(before.value, str)
            and isinstance(after.value, str)):
        return _is_message_argument(before, parents)
    return False


def _difference(a: object, b: object, parents: list[ast.AST]) -> tuple[object, object, list[ast.AST]] | None:
    """The first place where two trees differ, with the ancestors of the first tree's node.

    A list of different length (a call that lost an argument) differs at the
    node that holds it.
    """
    if type(a) is not type(b):
        return a, b, parents
    if isinstance(a, list) and isinstance(b, list):
        for x, y in zip(a, b, strict=False):
            found = _difference(x, y, parents)
            if found is not None:
                return found
        return None
    if isinstance(a, ast.AST) and isinstance(b, ast.AST):
        for name in a._fields:
            va, vb = getattr(a, name, None), getattr(b, name, None)
            if isinstance(va, list) and isinstance(vb, list) and len(va) != len(vb):
                return a, b, parents
            if not isinstance(va, ast.AST | list) and (type(va), va) != (type(vb), vb):
                return a, b, parents  # a value of this node itself: a constant, an operator's name
            found = _difference(va, vb, [*parents, a])
            if found is not None:
                return found
        return None
    return None if a == b else (a, b, parents)


def _argument_removed_is_text(before: ast.Call, after: ast.Call) -> bool:
    if _is_log_call(before):
        return True  # any argument of a log line is its text
    kept = [ast.dump(arg) for arg in after.args]
    removed = [arg for arg in before.args if ast.dump(arg) not in kept]
    # Removing an argument of self.fail() breaks the call (TypeError): that is behaviour.
    return (len(removed) == 1 and _is_text(removed[0])
            and _callee(before) in MESSAGE_ERRORS - {"PolicyError"})


def _is_text(node: object) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and _is_text(node.left) and _is_text(node.right)


def _is_message_argument(node: object, parents: list[ast.AST], *, any_value: bool = False) -> bool:
    """Whether ``node`` is (part of) the text argument of an error or a log call.

    ``any_value``: the node is not a string; only a log call's arguments count then.
    """
    child: object = node
    for parent in reversed(parents):
        # Climb out of f-strings and concatenations to the argument itself.
        if isinstance(parent, ast.JoinedStr | ast.FormattedValue) or (
                isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Add)):
            child = parent
            continue
        if not isinstance(parent, ast.Call) or not any(arg is child for arg in parent.args):
            return False
        if _is_log_call(parent):
            return True
        if any_value:
            return False
        position = next(i for i, arg in enumerate(parent.args) if arg is child)
        if _callee(parent) == "fail":
            return position < POLICY_FAIL_TEXT_ARGS
        return _callee(parent) in MESSAGE_ERRORS and position == 0
    return False


def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name) and call.func.value.id == "self":
        return call.func.attr
    return None


def _is_log_call(call: ast.Call) -> bool:
    func = call.func
    return (isinstance(func, ast.Attribute) and func.attr in LOG_METHODS and isinstance(func.value, ast.Name)
            and func.value.id in {"LOG", "logging"})


# --------------------------------------------------------------------------
# Reporting


@dataclass(frozen=True)
class Equivalent:
    diff: str
    reason: str


def load_equivalents() -> dict[str, Equivalent]:
    if not EQUIVALENT.exists():
        return {}
    data = tomllib.loads(EQUIVALENT.read_text())
    return {name: Equivalent(diff=entry["diff"].strip(), reason=entry["reason"])
            for name, entry in data.get("mutant", {}).items()}


def report(modules: Sequence[str], survivors: bool) -> int:
    equivalents = load_equivalents()
    seen: set[str] = set()
    rows: list[tuple[str, Counter[str]]] = []
    shown: list[Mutant] = []
    stale: list[str] = []
    for module in modules:
        counts: Counter[str] = Counter()
        for mutant in mutants_of(module):
            counts["all"] += 1
            entry = equivalents.get(mutant.name)
            if entry is not None:
                seen.add(mutant.name)
                if mutant.status != "survived" or entry.diff != mutant.diff:
                    stale.append(f"{mutant.name}: now {mutant.status}:\n{mutant.diff}")
            if mutant.text:
                counts["text"] += 1
            elif entry is not None and entry.diff == mutant.diff and mutant.status == "survived":
                counts["equivalent"] += 1
            else:
                counts[mutant.status] += 1
                if mutant.status not in ("killed", "mypy"):
                    shown.append(mutant)
        rows.append((module, counts))
    _table(rows)
    stale += [f"{name}: no such mutant" for name in sorted(equivalents.keys() - seen)
              if name.rpartition(".")[0] in modules]
    for line in stale:
        print(f"stale entry in {EQUIVALENT.name}: {line}")
    if survivors:
        for mutant in shown:
            print(f"\n# {mutant.name}: {mutant.status}\n{mutant.diff}")
    return 0


def _table(rows: list[tuple[str, Counter[str]]]) -> None:
    header = f"{'module':<30} {'all':>5} {'killed':>6} {'mypy':>5} {'surv':>5} {'other':>5} {'text':>5} " \
             f"{'equiv':>5} {'score':>7}"
    print(header)
    print("-" * len(header))
    total: Counter[str] = Counter()
    for module, counts in rows:
        total.update(counts)
        print(_row(module.removeprefix("chalicelib."), counts))
    print("-" * len(header))
    print(_row("all", total))


def _row(name: str, counts: Counter[str]) -> str:
    killed = counts["killed"] + counts["mypy"]
    other = counts["all"] - killed - counts["survived"] - counts["text"] - counts["equivalent"]
    counted = counts["all"] - counts["text"] - counts["equivalent"]
    score = f"{100 * killed / counted:6.1f}%" if counted else "      -"
    return (f"{name:<30} {counts['all']:>5} {counts['killed']:>6} {counts['mypy']:>5} {counts['survived']:>5} "
            f"{other:>5} {counts['text']:>5} {counts['equivalent']:>5} {score:>7}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mutation", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="run mutmut on each module")
    run_parser.add_argument("--jobs", type=int, default=2, help="test processes at once (default 2)")
    run_parser.add_argument("--fresh", action="store_true", help="start from an empty mutants/")
    run_parser.add_argument("--survivors", action="store_true",
                            help="test again only the mutants no test has killed yet (after adding tests)")
    run_parser.add_argument("modules", nargs="*")
    report_parser = sub.add_parser("report", help="print the score per module")
    report_parser.add_argument("--survivors", action="store_true", help="show every survivor that counts")
    report_parser.add_argument("modules", nargs="*")
    args = parser.parse_args(argv)
    modules = [_module(name) for name in args.modules] or list(MODULES)
    if args.command == "run":
        return run(modules, args.jobs, args.fresh, args.survivors) or report(modules, survivors=False)
    return report(modules, args.survivors)


def _module(name: str) -> str:
    matches = [module for module in MODULES if module == name or module.endswith("." + name)]
    if len(matches) != 1:
        known = ", ".join(module.removeprefix("chalicelib.") for module in MODULES)
        raise SystemExit(f"unknown module {name!r}; one of: {known}")
    return matches[0]


if __name__ == "__main__":
    sys.exit(main())
