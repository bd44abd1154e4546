"""Copy-anywhere mode: ``make client`` builds one file, ``python3 rolebroker.pyz``, that runs everything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import make_pyz  # client/make_pyz.py (conftest.py put client/ on sys.path): what `make client` runs
import pytest

from tests.client.fakes import ALICE, PACKAGE_DIR, FakeBroker, imported_modules, rolebroker


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield make_pyz.build(tmp_path_factory.mktemp("pyz") / "rolebroker.pyz")


def environment(home: Path, broker: FakeBroker) -> dict[str, str]:
    return {"HOME": str(home), "PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"), "AWS_CONFIG_FILE": str(home / ".aws" / "config"),
            "ROLEBROKER_URL": broker.url, "ROLEBROKER_TOKEN": ALICE}


def run(pyz: Path, env: dict[str, str], *args: str, python: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *python, str(pyz), *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_every_module_is_in_the_archive_with_its_bytecode(pyz: Path) -> None:
    names = set(zipfile.ZipFile(pyz).namelist())
    modules = sorted(p.name for p in PACKAGE_DIR.glob("*.py") if p.name != "__main__.py")
    assert len(modules) > 10
    expected = {"__main__.py", "__main__.pyc"} | {f"rolebroker/{m}{c}" for m in modules for c in ("", "c")}
    assert names == expected  # zipimport takes module.pyc beside module.py; no directory entries
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    main = zipfile.ZipFile(pyz).read("__main__.py").decode()
    assert main.startswith((PACKAGE_DIR / "_fast.py").read_text())  # the hot path is the archive's __main__


def test_version(pyz: Path, home: Path, broker: FakeBroker) -> None:
    done = run(pyz, environment(home, broker), "--version")
    assert (done.returncode, done.stdout) == (0, f"rolebroker {rolebroker.__version__}\n")


def test_a_miss_then_a_hit_through_the_archive(pyz: Path, home: Path, broker: FakeBroker) -> None:
    env = environment(home, broker)
    miss = run(pyz, env, "credential-process", "--role", "sandbox-admin")
    assert miss.returncode == 0, miss.stderr
    hit = run(pyz, env, "credential-process", "--role", "sandbox-admin", python=("-X", "importtime"))
    assert hit.returncode == 0
    assert hit.stdout == miss.stdout
    assert json.loads(hit.stdout)["AccessKeyId"] == "FAKEKEY0000000000001"
    assert broker.count("POST", "/v1/credentials") == 1
    modules = imported_modules(hit.stderr.encode())
    assert {name for name in modules if name.startswith("rolebroker")} == set()  # __main__ is the hot path
    assert not modules & {"argparse", "urllib.request", "py_compile", "hashlib"}


def test_a_real_command_through_the_archive(pyz: Path, home: Path, broker: FakeBroker) -> None:
    done = run(pyz, environment(home, broker), "roles")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].split() == ["sandbox-admin", "222222222222", "eu-west-1", "allowed"]
    failed = run(pyz, environment(home, broker), "credential-process")
    assert (failed.returncode, failed.stdout) == (2, "")
    assert failed.stderr.startswith("rolebroker: the following arguments are required: --role")


def test_configure_from_the_archive_writes_profiles_that_run_it(pyz: Path, home: Path, broker: FakeBroker,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """No installed command: the profile runs `python3 rolebroker.pyz`, and botocore gets credentials through it."""
    import botocore.session

    env = environment(home, broker)
    done = run(pyz, env, "configure", "--role", "sandbox-admin")
    assert done.returncode == 0, done.stderr
    config = Path(env["AWS_CONFIG_FILE"]).read_text()
    assert f"credential_process = {sys.executable} {pyz} credential-process --url {broker.url}" in config
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    frozen = botocore.session.Session(profile="sandbox-admin").get_credentials().get_frozen_credentials()
    assert frozen.access_key == "FAKEKEY0000000000001"


def other_pythons() -> list[str]:
    """Interpreters of other versions on this machine (pyenv keeps several): the archive must run there too."""
    found = []
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for version in ("3.9", "3.10", "3.12", "3.13"):
        pyenv = sorted(Path("/root/.pyenv/versions").glob(f"{version}.*/bin/python{version}"))
        candidates = [path for path in [*pyenv, Path(f"/usr/bin/python{version}")] if path.exists()]
        if candidates and version != running:
            found.append(str(candidates[0]))
    return found


@pytest.mark.parametrize("python", other_pythons() or [pytest.param("", marks=pytest.mark.skip("no other Python"))])
def test_the_archive_runs_on_another_python_from_its_sources(pyz: Path, home: Path, broker: FakeBroker,
                                                             python: str) -> None:
    env = environment(home, broker)
    argv = [python, str(pyz), "credential-process", "--role", "sandbox-admin"]
    miss = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    hit = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert (miss.returncode, miss.stderr) == (0, ""), miss.stderr
    assert hit.stdout == miss.stdout
    assert broker.count("POST", "/v1/credentials") == 1
    roles = subprocess.run([python, str(pyz), "roles"], env=env, capture_output=True, text=True, timeout=60)
    assert roles.returncode == 0, roles.stderr
    assert "sandbox-admin" in roles.stdout
