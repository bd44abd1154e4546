"""The local stack's own commands (issue 13 §6.2, §6.4): finding a running stack, forgetting an old one's cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from devstack.stack import LocalStack, forget_cached_credentials, published_ports, stack_port

CLIENT_DIR = Path(__file__).resolve().parents[2] / "client"
if str(CLIENT_DIR) not in sys.path:
    sys.path.insert(0, str(CLIENT_DIR))


def write_ports(path: Path, pid: int, **ports: int) -> Path:
    path.write_text(json.dumps({"pid": pid, **ports}))
    return path


def test_a_running_stacks_ports_are_found_without_variables(tmp_path: Path) -> None:
    ports = write_ports(tmp_path / "ports.json", os.getpid(), broker=18000, issuer=18001, slack=18003)
    assert stack_port("issuer", {}, ports) == 18001
    assert stack_port("broker", {}, ports) == 18000
    assert stack_port("ci_issuer", {}, ports) == 8004  # not published: the default


def test_a_variable_still_wins(tmp_path: Path) -> None:
    ports = write_ports(tmp_path / "ports.json", os.getpid(), issuer=18001)
    assert stack_port("issuer", {"ROLEBROKER_ISSUER_PORT": "28001"}, ports) == 28001


def test_a_stopped_stacks_file_is_ignored(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    ports = write_ports(tmp_path / "ports.json", int(gone.stdout), issuer=18001)
    assert published_ports(ports) == {}
    assert stack_port("issuer", {}, ports) == 8001


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"pid": "1", "issuer": 1}', '{"issuer": 18001}'])
def test_a_damaged_file_is_ignored(tmp_path: Path, text: str) -> None:
    (tmp_path / "ports.json").write_text(text)
    assert published_ports(tmp_path / "ports.json") == {}


def fake_stack(**ports: int) -> LocalStack:
    stack = LocalStack(**ports)
    stack.issuer = SimpleNamespace(url=f"http://127.0.0.1:{ports.get('issuer_port', 8001)}")  # type: ignore[assignment]
    stack.ci_issuer = SimpleNamespace(url="http://127.0.0.1:8004")  # type: ignore[assignment]
    stack.policy_path = Path("devstack/access-policy.yaml")
    return stack


def test_the_banner_prints_the_exports_for_non_default_ports() -> None:
    banner = fake_stack(broker_port=18000, issuer_port=18001, aws_port=18002, slack_port=18003).banner()
    lines = [line.strip() for line in banner.splitlines()]
    assert "export ROLEBROKER_URL=http://127.0.0.1:18000" in lines
    assert "curl -s -H \"Authorization: Bearer $T\" $ROLEBROKER_URL/v1/roles" in lines
    assert any("AWS_ENDPOINT_URL_STS=http://127.0.0.1:18002 aws sts get-caller-identity" in line for line in lines)
    assert "8000" not in banner.replace("18000", "") and "8001" not in banner.replace("18001", "")


def test_the_banner_says_when_it_forgot_an_old_stacks_credentials() -> None:
    assert "forgot 2 cached credential(s) from an earlier stack at http://127.0.0.1:8000" in fake_stack().banner(2)
    assert "forgot" not in fake_stack().banner(0)


def cache_entry(cache: Any, url: str, sub: str, role: str) -> None:
    from rolebroker._fast import CACHE_FORMAT

    key = cache.key(url, ("http://127.0.0.1:8001", sub), role, None)
    creds = {"Version": 1, "AccessKeyId": "ASIAOLDSTACK", "SecretAccessKey": "s" * 40, "SessionToken": "t" * 80,
             "Expiration": "2100-01-01T00:00:00Z"}
    assert cache.put(key, {"format": CACHE_FORMAT, "role": role, "region": None, "expires_at": 4102444800.0,
                           "credentials": creds})


def test_a_new_stack_forgets_the_credentials_cached_from_the_last_one(tmp_path: Path) -> None:
    from rolebroker.cache import CredentialCache

    environ = {"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    cache = CredentialCache(str(tmp_path / "cache" / "rolebroker"), getuid=os.getuid)
    cache_entry(cache, "http://127.0.0.1:8000", "alice", "sandbox-admin")
    cache_entry(cache, "http://127.0.0.1:8000/", "bob", "prod-admin")
    cache_entry(cache, "https://broker.example.com", "alice", "sandbox-admin")
    assert forget_cached_credentials("http://127.0.0.1:8000", environ) == 2
    left = [entry["role"] for entry in cache.entries_for("https://broker.example.com",
                                                         ("http://127.0.0.1:8001", "alice"))]
    assert left == ["sandbox-admin"]
    assert cache.entries_for("http://127.0.0.1:8000", ("http://127.0.0.1:8001", "alice")) == []
    assert forget_cached_credentials("http://127.0.0.1:8000", environ) == 0


def test_forgetting_with_no_cache_at_all(tmp_path: Path) -> None:
    assert forget_cached_credentials("http://127.0.0.1:8000", {"HOME": str(tmp_path)}) == 0


def test_make_run_installs_no_test_tooling() -> None:
    """The run set (requirements-run.txt) holds what the local stack needs, not the test and lint tools."""
    root = Path(__file__).resolve().parents[2]
    lines = (root / "requirements-run.txt").read_text().lower().splitlines()
    run = "\n".join(line.split("#")[0] for line in lines)
    for tool in ("pytest", "mypy", "ruff", "cfn-lint", "schemathesis", "parliament", "moto[server]", "awscli",
                 "boto3-stubs"):
        assert tool not in run, tool
    dev = (root / "requirements-dev.txt").read_text()
    assert dev.splitlines()[0] == "-r requirements-run.txt"
    makefile = (root / "Makefile").read_text()
    assert "run: $(RUN_STAMP)" in makefile


def test_a_new_stack_forgets_scoped_credentials_too(tmp_path: Path) -> None:
    """A --scope entry has one more part in its key; it must not outlive the stack it came from."""
    from rolebroker._fast import CACHE_FORMAT
    from rolebroker.cache import CredentialCache

    environ = {"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    cache = CredentialCache(str(tmp_path / "cache" / "rolebroker"), getuid=os.getuid)
    creds = {"Version": 1, "AccessKeyId": "ASIAOLDSTACK", "SecretAccessKey": "s" * 40, "SessionToken": "t" * 80,
             "Expiration": "2100-01-01T00:00:00Z"}
    key = cache.key("http://127.0.0.1:8000", ("http://127.0.0.1:8001", "alice"), "sandbox-admin", None, "read-only")
    assert cache.put(key, {"format": CACHE_FORMAT, "role": "sandbox-admin", "region": None,
                           "expires_at": 4102444800.0, "credentials": creds})
    assert cache.entries_for("http://127.0.0.1:8000", ("http://127.0.0.1:8001", "alice")) == [
        {"role": "sandbox-admin", "duration": None, "scope": "read-only", "expires_at": 4102444800.0}]
    assert forget_cached_credentials("http://127.0.0.1:8000", environ) == 1
    assert cache.entries_for("http://127.0.0.1:8000", ("http://127.0.0.1:8001", "alice")) == []
