"""Shell completion (issue 13 §5): scripts generated from the parser, run by the real shells.

bash's completion function is called with ``COMP_WORDS`` set by hand; zsh's
with its completion builtins replaced by ones that print; fish answers
``complete -C`` itself. zsh and fish tests run only where those shells are
installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.client.fakes import CLIENT_SCRIPT, FakeBroker, Result, rolebroker

ROLES = ["prod-admin", "sandbox-admin"]


@pytest.fixture
def shell_env(cli: Callable[..., Result], broker: FakeBroker, env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """An environment whose `rolebroker` on PATH is this client, with profiles configured for two roles."""
    assert cli("configure", which=lambda _name: "/usr/local/bin/rolebroker").code == 0
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "rolebroker"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {CLIENT_SCRIPT} \"$@\"\n")
    wrapper.chmod(0o755)
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}


def script(cli: Callable[..., Result], shell: str, tmp_path: Path) -> Path:
    result = cli("completion", shell)
    assert result.code == 0, result.err
    path = tmp_path / f"rolebroker.{shell}"
    path.write_text(result.out)
    return path


def test_list_roles_reads_the_configured_profiles_only(cli: Callable[..., Result], shell_env: dict[str, str],
                                                       broker: FakeBroker) -> None:
    seen = len(broker.seen)
    result = cli("completion", "--list-roles", environ=shell_env)
    assert (result.code, result.out.split()) == (0, ROLES)
    assert len(broker.seen) == seen  # no network on a Tab press


def test_list_roles_is_silent_without_a_config(cli: Callable[..., Result]) -> None:
    assert cli("completion", "--list-roles") == Result(0, "", "")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_every_command_of_the_parser_is_in_every_script(cli: Callable[..., Result], shell: str) -> None:
    import io

    parser = rolebroker.build_parser(io.StringIO(), io.StringIO())
    [commands] = [a for a in parser._actions if a.dest == "command"]
    text = cli("completion", shell).out
    for name, sub in commands.choices.items():
        assert name in text
        for action in sub._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and action.help != "==SUPPRESS==":
                    written = f"-l {flag[2:]}" if shell == "fish" else flag
                    assert written in text, (name, flag)


BASH_DRIVER = """
source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
_rolebroker
printf '%s\\n' "${COMPREPLY[@]}"
"""


@pytest.mark.parametrize(("words", "expected"), [
    (["rolebroker", "ex"], ["exec", "extend"]),
    (["rolebroker", "wh"], ["what-can", "who-can", "whoami"]),
    (["rolebroker", "exec", ""], ROLES),
    (["rolebroker", "exec", "sa"], ["sandbox-admin"]),
    (["rolebroker", "--url", "http://x", "env", "p"], ["prod-admin"]),
    (["rolebroker", "credential-process", "--role", ""], ROLES),
    (["rolebroker", "exec", "--d"], ["--duration"]),
    (["rolebroker", "roles", "--output", ""], ["json", "text"]),
    (["rolebroker", "cache", ""], ["clear"]),
    (["rolebroker", "completion", ""], ["bash", "fish", "zsh"]),
    (["rolebroker", "request", "--reason", "ex", ""], ROLES),
    (["rolebroker", "request", "sandbox-admin", "p"], ["prod-admin"]),
    (["rolebroker", "break-glass", "s"], ["sandbox-admin"]),
    (["rolebroker", "approve", "0123456789ab", "--role", "p"], ["prod-admin"]),
    (["rolebroker", "requests", "--kind", ""], ["access", "break_glass", "extension"]),
    (["rolebroker", "env", "sandbox-admin", "--s"], ["--scope"]),
    (["rolebroker", "exec", "sandbox-admin", "--", "printf"], ["printf"]),
])
def test_bash_completes(cli: Callable[..., Result], shell_env: dict[str, str], tmp_path: Path,
                        words: list[str], expected: list[str]) -> None:
    path = script(cli, "bash", tmp_path)
    done = subprocess.run(["bash", "-c", BASH_DRIVER, "driver", str(path), *words], env=shell_env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert sorted(set(done.stdout.split())) == expected, done.stderr


ZSH_DRIVER = """
compdef() { : }
compadd() { while [[ $1 == -* ]]; do if [[ $1 == -- ]]; then shift; break; fi; shift; done; print -l -- "$@" }
_describe() { local -a items; items=("${(@P)2}"); print -l -- "${items[@]%%:*}" }
_files() { print -- "<files>" }
_normal() { print -- "<normal ${words[1]}>" }
source "$1"; shift
words=("$@"); CURRENT=${#words}; PREFIX=${words[CURRENT]}
_rolebroker
"""


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
@pytest.mark.parametrize(("words", "expected"), [
    (["rolebroker", "ex"], ["exec", "extend"]),
    (["rolebroker", "exec", "s"], ["sandbox-admin"]),
    (["rolebroker", "--url", "http://x", "env", "p"], ["prod-admin"]),
    (["rolebroker", "exec", "--d"], ["--duration"]),
    (["rolebroker", "roles", "--output", ""], ["json", "text"]),
    (["rolebroker", "cache", "c"], ["clear"]),
    (["rolebroker", "--token-file", ""], ["<files>"]),
    (["rolebroker", "exec", "sandbox-admin", "--", "aw"], ["<normal aw>"]),
])
def test_zsh_completes(cli: Callable[..., Result], shell_env: dict[str, str], tmp_path: Path,
                       words: list[str], expected: list[str]) -> None:
    path = script(cli, "zsh", tmp_path)
    assert subprocess.run(["zsh", "-n", str(path)], capture_output=True, check=False).returncode == 0
    done = subprocess.run(["zsh", "-f", "-c", ZSH_DRIVER, "driver", str(path), *words], env=shell_env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    prefix = words[-1]
    offered = sorted({w for w in done.stdout.split("\n") if w and (w.startswith(prefix) or w.startswith("<"))})
    assert offered == expected, (done.stdout, done.stderr)


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
@pytest.mark.parametrize(("line", "expected"), [
    ("rolebroker ex", ["exec", "extend"]),
    ("rolebroker exec ", ROLES),
    ("rolebroker roles --output ", ["json", "text"]),
    ("rolebroker cache ", ["clear"]),
    ("rolebroker who-can s", ["sandbox-admin"]),
])
def test_fish_completes(cli: Callable[..., Result], shell_env: dict[str, str], tmp_path: Path, line: str,
                        expected: list[str]) -> None:
    path = script(cli, "fish", tmp_path)
    home = Path(shell_env["HOME"])
    done = subprocess.run(["fish", "--no-config", "-c", f"source {path}; complete -C '{line}'"],
                          env={**shell_env, "XDG_DATA_HOME": str(home / ".local" / "share")},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    offered = sorted({row.split("\t")[0] for row in done.stdout.splitlines() if row})
    assert offered == expected, (done.stdout, done.stderr)
