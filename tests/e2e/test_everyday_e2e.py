"""Issue 13 §5 and §6 on the local stack as `make run` starts it: the devstack commands and the client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack import __main__ as devstack_main
from devstack.slack_cli import run as slack
from devstack.stack import LocalStack

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
ROLEBROKER = str(BIN / "rolebroker")


class Ticks:
    """A clock that moves only when the code under test sleeps (it also really sleeps, for the worker)."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
        self.now += seconds


# --------------------------------------------------------------------------
# §6.2: a second terminal finds the running stack without exported variables


def test_the_stack_publishes_its_ports(stack: LocalStack) -> None:
    published = json.loads(stack.ports_file.read_text())
    assert published == {"pid": os.getpid(), **stack.ports()}
    assert published["broker"] == stack.broker_port


def test_devstack_token_finds_the_running_issuer(stack: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    assert stack.issuer is not None
    code = devstack_main.main(["token", "--sub", "alice@example.com"], environ={}, ports_file=stack.ports_file)
    token = capsys.readouterr().out.strip()
    assert code == 0
    from rolebroker._fast import jwt_claims

    assert (jwt_claims(token) or {}).get("iss") == stack.issuer.url  # this stack's issuer, not one on 8001


def test_devstack_slack_finds_the_running_broker(stack: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    assert devstack_main.main(["slack", "/aws help"], environ={}, ports_file=stack.ports_file) == 0
    out = capsys.readouterr().out
    assert out.startswith("HTTP 200\n{")
    # §6.8: readable JSON, not \u escapes
    assert "\\u" not in out and "• `/aws roles` — roles you can use" in out


# --------------------------------------------------------------------------
# §6.8: the Slack simulator stops when the answer is complete and fails on a refusal


def test_a_click_returns_as_soon_as_the_decision_is_posted(stack: LocalStack) -> None:
    ports = {"broker": stack.broker_port, "slack": stack.slack_port}
    lines: list[str] = []
    assert slack("/aws request prod-breakglass 1h INC-7 disk full", "U0BOB", None, None, ports, out=lines.append) == 0
    request_id = "\n".join(lines).split("Request `", 1)[1].split("`", 1)[0]
    ticks, clicked = Ticks(), []
    code = slack(None, "U0CAROL", "approve", request_id, ports, wait=60, out=clicked.append, clock=ticks.clock,
                 sleep=ticks.sleep)
    assert code == 0, clicked
    assert any(f"Access request {request_id}: *Approved* by carol@example.com" in line for line in clicked)
    assert ticks.now < 60  # it stopped on the update, not at the deadline
    again: list[str] = []
    assert slack(None, "U0CAROL", "approve", request_id, ports, wait=60, out=again.append) == 1
    assert any(f":warning: request {request_id} is approved, not pending" in line for line in again)


def test_a_refused_command_exits_1(stack: LocalStack) -> None:
    ports = {"broker": stack.broker_port, "slack": stack.slack_port}
    lines: list[str] = []
    assert slack("/aws approve 000000000000", "U0CAROL", None, None, ports, out=lines.append) == 1
    assert any(":warning:" in line for line in lines)


# --------------------------------------------------------------------------
# The client against the real broker


def client(stack: LocalStack, tmp_path: Path, token: str, *argv: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ROLEBROKER_"))}
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache"),
                "AWS_CONFIG_FILE": str(home / ".aws" / "config"), "ROLEBROKER_URL": stack.broker_url,
                "ROLEBROKER_TOKEN": token})
    return subprocess.run([ROLEBROKER, *argv], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_request_without_a_duration(stack: LocalStack, tmp_path: Path) -> None:
    bob = stack.mint("bob@example.com", groups=["developers"])
    done = client(stack, tmp_path, bob, "request", "prod-breakglass", "--reason", "INC-9 queue stuck")
    assert done.returncode == 0, done.stderr
    first, progress = done.stdout.splitlines()
    assert first.startswith("request ") and first.endswith(" for prod-breakglass: pending")
    assert progress == "  waiting for 0 of 1 approvals in stage 1 of 1 (approval)"
    assert done.stderr == "rolebroker: without --duration the broker asked for 4h, the longest grant the role allows\n"
    request_id = done.stdout.split()[1]
    shown = client(stack, tmp_path, bob, "show", request_id, "--output", "json")
    assert json.loads(shown.stdout)["duration_seconds"] == 14400
    cancelled = client(stack, tmp_path, bob, "cancel", request_id)
    assert cancelled.stdout == f"request {request_id} (prod-breakglass for bob@example.com): cancelled\n"


def test_a_wrong_url_path_against_chalice_local(stack: LocalStack, tmp_path: Path) -> None:
    alice = stack.mint("alice@example.com", groups=["platform-admins"])
    done = client(stack, tmp_path, alice, "credential-process", "--role", "sandbox-admin", "--url",
                  stack.broker_url + "/v1")
    assert done.returncode == 1
    assert done.stderr.startswith(f"rolebroker: {stack.broker_url}/v1 does not answer like a rolebroker broker")
    assert "eyJ" not in done.stderr and "access denied" not in done.stderr and done.stdout == ""


def test_whoami_and_who_can(stack: LocalStack, tmp_path: Path) -> None:
    alice = stack.mint("alice@example.com", groups=["platform-admins"])
    assert client(stack, tmp_path, alice, "credential-process", "--role", "sandbox-admin", "--duration",
                  "1h").returncode == 0
    who = json.loads(client(stack, tmp_path, alice, "whoami", "--output", "json").stdout)
    assert (who["identity"], who["groups"], who["broker_url"]) == (
        "alice@example.com", ["platform-admins"], stack.broker_url)
    assert [(c["role"], c["duration_seconds"]) for c in who["cached_credentials"]] == [("sandbox-admin", 3600)]
    sam = stack.mint("sam@example.com", groups=["security"])
    answer = client(stack, tmp_path, sam, "who-can", "prod-breakglass")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.splitlines()[1:3] == ["  needs: an approved request",
                                               "  approvers: group security; grants up to 4h"]
    refused = client(stack, tmp_path, alice, "who-can", "prod-breakglass")
    assert refused.returncode == 1 and "only admins (group security)" in refused.stderr
