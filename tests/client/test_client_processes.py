"""The client as the AWS tools run it: separate processes of ``python client/rolebroker``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client.fakes import ALICE, CLIENT_SCRIPT, FakeBroker, imported_modules

PROCESSES = 20


def process_env(home: Path) -> dict[str, str]:
    return {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "ROLEBROKER_TOKEN": ALICE,
    }


def credential_process(broker: FakeBroker) -> list[str]:
    return [sys.executable, str(CLIENT_SCRIPT), "credential-process", "--url", broker.url, "--role", "sandbox-admin"]


def test_twenty_processes_at_once_make_one_broker_request(broker: FakeBroker, home: Path) -> None:
    broker.delay = 0.3  # keep the first request open while the others arrive
    env = process_env(home)
    running = [subprocess.Popen(credential_process(broker), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for _ in range(PROCESSES)]
    results = [(p.communicate(timeout=120), p.returncode) for p in running]
    assert [code for _, code in results] == [0] * PROCESSES, [err for (_, err), _ in results]
    assert all(err == b"" for (_, err), _ in results)
    outputs = {out for (out, _), _ in results}
    assert len(outputs) == 1
    assert json.loads(outputs.pop())["AccessKeyId"] == "FAKEKEY0000000000001"
    assert broker.count("POST", "/v1/credentials") == 1


@pytest.mark.parametrize("extra", [[], ["--scope", "read-only"]])
def test_cache_hit_imports_nothing_heavy(broker: FakeBroker, home: Path, extra: list[str]) -> None:
    env = process_env(home)
    command = credential_process(broker) + extra  # a --scope is part of the key, and still a hit
    first = subprocess.run(command, env=env, capture_output=True, check=True)
    hit = subprocess.run([sys.executable, "-X", "importtime", *command[1:]], env=env,
                         capture_output=True, check=True)
    assert hit.stdout == first.stdout
    assert broker.count("POST", "/v1/credentials") == 1
    modules = imported_modules(hit.stderr)
    assert "json" in modules  # the measurement works
    heavy = {"urllib.request", "http.client", "ssl", "socket", "argparse", "hashlib", "configparser", "tempfile",
             "subprocess", "typing", "datetime", "shlex", "email"}
    assert modules & heavy == set()
    # Of the package, a hit loads only the hot path.
    assert {name for name in modules if name.startswith("rolebroker")} == {"rolebroker", "rolebroker._fast"}


def test_a_miss_goes_to_the_full_client(broker: FakeBroker, home: Path) -> None:
    miss = subprocess.run([sys.executable, "-X", "importtime", *credential_process(broker)[1:]],
                          env=process_env(home), capture_output=True, check=True)
    assert json.loads(miss.stdout)["AccessKeyId"] == "FAKEKEY0000000000001"
    assert {"rolebroker.cli", "rolebroker.cache", "urllib.request"} <= imported_modules(miss.stderr)


def test_exec_passes_the_exit_status_and_environment_through(broker: FakeBroker, home: Path) -> None:
    env = process_env(home) | {"AWS_PROFILE": "stale", "AWS_DEFAULT_PROFILE": "stale"}
    check = ("import os, sys; e = os.environ; "
             "ok = e['AWS_ACCESS_KEY_ID'].startswith('FAKEKEY') and e['AWS_REGION'] == 'eu-west-1' "
             "and 'AWS_PROFILE' not in e and 'AWS_DEFAULT_PROFILE' not in e and e['AWS_SESSION_TOKEN']; "
             "sys.exit(7 if ok else 1)")
    done = subprocess.run([sys.executable, str(CLIENT_SCRIPT), "--url", broker.url, "exec", "--role",
                           "sandbox-admin", "--", sys.executable, "-c", check], env=env, capture_output=True)
    assert done.returncode == 7, done.stderr
    assert done.stdout == b""


def test_exec_reports_a_signal_like_the_command_itself(broker: FakeBroker, home: Path) -> None:
    suicide = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    done = subprocess.run([sys.executable, str(CLIENT_SCRIPT), "--url", broker.url, "exec", "--role",
                           "sandbox-admin", "--", sys.executable, "-c", suicide], env=process_env(home),
                          capture_output=True)
    assert done.returncode == -signal.SIGTERM


def test_exec_of_a_missing_command_is_127(broker: FakeBroker, home: Path) -> None:
    done = subprocess.run([sys.executable, str(CLIENT_SCRIPT), "--url", broker.url, "exec", "--role",
                           "sandbox-admin", "--", "no-such-command-rolebroker"], env=process_env(home),
                          capture_output=True)
    assert done.returncode == 127
    assert done.stderr == b"rolebroker: command not found: no-such-command-rolebroker\n"
