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
  PolicyError(...)``, a ``ValueError`` or an ``AssertionError`` (a guard
  on a path the design rules out), or the policy loader's
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
from mutation.client import MODULE_TESTS as CLIENT_MODULE_TESTS
from mutation.client import load_results as load_client_results
from mutation.client import run as run_client
from mutation.textfilter import is_message_text

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
CLIENT_MODULES = tuple(f"client.rolebroker.{module}" for module in CLIENT_MODULE_TESTS)
DETECTED = {"killed", "mypy", "timeout"}
# mutmut's exit codes (mutmut/stats.py), in the words used here.
STATUS = {1: "killed", 3: "killed", 37: "mypy", 0: "survived", 33: "no tests", 5: "no tests", None: "not run"}
TIMEOUTS = {36, 24, -24, 152, 255}
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
        for mutant in _any_mutants_of(module):
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
                if mutant.status not in DETECTED:
                    shown.append(mutant)
        rows.append((module, counts))
    _table(rows)
    stale += [f"{name}: no such mutant" for name in sorted(equivalents.keys() - seen)
              if any(name.startswith(module + ".") for module in modules)]
    for line in stale:
        print(f"stale entry in {EQUIVALENT.name}: {line}")
    if survivors:
        for mutant in shown:
            print(f"\n# {mutant.name}: {mutant.status}\n{mutant.diff}")
    return 0


def _any_mutants_of(module: str) -> Iterator[Mutant]:
    if module in CLIENT_MODULES:
        for name, entry in sorted(load_client_results().items(), key=lambda item: _natural(item[0])):
            if entry["module"] == module.rpartition(".")[2]:
                yield Mutant(name=name, module=module, status=str(entry["status"]), text=bool(entry["text"]),
                             diff=str(entry["diff"]))
    else:
        yield from mutants_of(module)


def _table(rows: list[tuple[str, Counter[str]]]) -> None:
    header = (f"{'module':<28} {'all':>5} {'killed':>6} {'timeout':>7} {'surv':>5} {'other':>5} {'text':>5} "
              f"{'equiv':>5} {'score':>7}")
    print(header)
    print("-" * len(header))
    total: Counter[str] = Counter()
    for module, counts in rows:
        total.update(counts)
        print(_row(module.removeprefix("chalicelib."), counts))
    print("-" * len(header))
    print(_row("all", total))
    print("score: (killed + timeout) / (all - text - equiv); other: not run, or no test reaches the function")


def _row(name: str, counts: Counter[str]) -> str:
    killed = counts["killed"] + counts["mypy"]
    detected = killed + counts["timeout"]
    other = counts["all"] - detected - counts["survived"] - counts["text"] - counts["equivalent"]
    counted = counts["all"] - counts["text"] - counts["equivalent"]
    score = f"{100 * detected / counted:6.1f}%" if counted else "      -"
    return (f"{name:<28} {counts['all']:>5} {killed:>6} {counts['timeout']:>7} {counts['survived']:>5} "
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
    client_parser = sub.add_parser("client", help="mutate the client (client/rolebroker) with mutation/client.py")
    client_parser.add_argument("--jobs", type=int, default=2, help="test processes at once (default 2)")
    client_parser.add_argument("modules", nargs="*")
    report_parser = sub.add_parser("report", help="print the score per module")
    report_parser.add_argument("--survivors", action="store_true", help="show every survivor that counts")
    report_parser.add_argument("modules", nargs="*")
    args = parser.parse_args(argv)
    if args.command == "client":
        chosen = [_module(name, CLIENT_MODULES) for name in args.modules] or list(CLIENT_MODULES)
        return run_client([m.rpartition(".")[2] for m in chosen], args.jobs) or report(chosen, survivors=False)
    modules = [_module(name, MODULES + CLIENT_MODULES) for name in args.modules] or list(MODULES)
    if args.command == "report" and not args.modules and load_client_results():
        modules += CLIENT_MODULES
    if args.command == "run":
        return run(modules, args.jobs, args.fresh, args.survivors) or report(modules, survivors=False)
    return report(modules, args.survivors)


def _module(name: str, choices: Sequence[str]) -> str:
    matches = [module for module in choices if module == name or module.endswith("." + name)]
    if len(matches) != 1:
        known = ", ".join(module.removeprefix("chalicelib.") for module in choices)
        raise SystemExit(f"unknown module {name!r}; one of: {known}")
    return matches[0]


if __name__ == "__main__":
    sys.exit(main())
