"""Fixtures for the client's tests; the fakes themselves live in ``fakes.py``.

``client/`` goes on sys.path so the tests import the client package from
the source tree, not an installed copy.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CLIENT_DIR = Path(__file__).resolve().parents[2] / "client"
PACKAGE_DIR = CLIENT_DIR / "rolebroker"
if str(CLIENT_DIR) not in sys.path:
    sys.path.insert(0, str(CLIENT_DIR))
_loaded = sys.modules.get("rolebroker")
if _loaded is not None and Path(_loaded.__file__ or "").resolve().parent != PACKAGE_DIR:
    # an installed copy (pip install ./client) may be older than the source
    for _name in [name for name in sys.modules if name.split(".")[0] == "rolebroker"]:
        del sys.modules[_name]

from tests.client.fakes import ALICE, FakeBroker, FakeIssuer, Result, rolebroker  # noqa: E402

assert Path(rolebroker.__file__).resolve().parent == PACKAGE_DIR, rolebroker.__file__


@pytest.fixture
def broker() -> Iterator[FakeBroker]:
    with FakeBroker() as server:
        yield server


@pytest.fixture
def idp() -> Iterator[FakeIssuer]:
    with FakeIssuer() as server:
        yield server


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def env(home: Path, broker: FakeBroker) -> dict[str, str]:
    """A whole environment for ``main``: nothing is read from the real user's files."""
    return {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", ""),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "AWS_CONFIG_FILE": str(home / ".aws" / "config"),
        "ROLEBROKER_URL": broker.url,
        "ROLEBROKER_TOKEN": ALICE,
    }


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], env: dict[str, str]) -> Callable[..., Result]:
    """Run ``rolebroker.main`` like the command line would; Runtime options as keywords."""

    def run(*argv: str, environ: dict[str, str] | None = None, **runtime: Any) -> Result:
        capsys.readouterr()
        code = rolebroker.main(list(argv), environ=env if environ is None else environ,
                               runtime=rolebroker.Runtime(**runtime))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run
