"""The client end to end: the real aws CLI and real boto3 sessions consume
`rolebroker credential-process` against the local stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from devstack.stack import LocalStack, free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
AWS = str(BIN / "aws")
ROLEBROKER = str(BIN / "rolebroker")


@pytest.fixture
def user_env(tmp_path: Path, stack: LocalStack) -> dict[str, str]:
    """A person's environment: no AWS keys at all, only the broker."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ROLEBROKER_"))}
    env.update({
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "AWS_CONFIG_FILE": str(home / ".aws" / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / ".aws" / "credentials"),
        "AWS_ENDPOINT_URL_STS": stack.aws_url,  # STS is the emulation; everything else is real
        "ROLEBROKER_URL": stack.broker_url,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    return env


def run(argv: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, **kwargs)


def allowed(stack: LocalStack, who: str) -> int:
    return sum(1 for a in stack.audit_lines()
               if a.get("who") == who and a.get("action") == "credentials" and a.get("outcome") == "allowed")


def test_configure_then_the_aws_cli_just_works(stack: LocalStack, user_env: dict[str, str]) -> None:
    user_env["ROLEBROKER_TOKEN"] = stack.mint("alice@example.com", groups=["platform-admins"])
    configured = run([ROLEBROKER, "configure", "--all"], user_env)
    assert configured.returncode == 0, configured.stderr
    config = Path(user_env["AWS_CONFIG_FILE"]).read_text()
    assert "[profile sandbox-admin]" in config and "credential_process = " in config
    out = run([AWS, "sts", "get-caller-identity", "--profile", "sandbox-admin", "--output", "json"], user_env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Arn"] == (
        "arn:aws:sts::222222222222:assumed-role/CrossAccountAdminRole/alice@example.com")


def test_token_command_needs_no_environment(stack: LocalStack, user_env: dict[str, str]) -> None:
    assert stack.issuer is not None
    config_dir = Path(user_env["XDG_CONFIG_HOME"]) / "rolebroker"
    config_dir.mkdir(parents=True)
    (config_dir / "config").write_text(
        "[default]\n"
        f"token_command = {sys.executable} -m devstack token --sub erin@example.com --groups developers\n")
    user_env["PYTHONPATH"] = str(ROOT)
    user_env["ROLEBROKER_ISSUER_PORT"] = stack.issuer.url.rsplit(":", 1)[1]
    assert run([ROLEBROKER, "configure", "--role", "sandbox-readonly"], user_env, cwd=ROOT).returncode == 0
    out = run([AWS, "sts", "get-caller-identity", "--profile", "sandbox-readonly"], user_env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Arn"].endswith("assumed-role/ReadOnlyRole/erin@example.com")


def test_boto3_session_refreshes_short_lived_credentials(
        stack: LocalStack, user_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    who = f"refresh-{uuid.uuid4().hex[:8]}@example.com"
    config = Path(user_env["AWS_CONFIG_FILE"])
    config.parent.mkdir(parents=True)
    # 900 s is inside botocore's 15-minute refresh window: every use refreshes.
    config.write_text(f"[profile short]\ncredential_process = {ROLEBROKER} credential-process "
                      f"--url {stack.broker_url} --role sandbox-admin --duration 900\nregion = eu-west-1\n")
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    for key, value in user_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ROLEBROKER_TOKEN", stack.mint(who, groups=["platform-admins"]))
    session = boto3.Session(profile_name="short")
    arn = session.client("sts").get_caller_identity()["Arn"]
    assert arn.endswith(f"assumed-role/CrossAccountAdminRole/{who}")
    credentials = session.get_credentials()
    first = credentials.get_frozen_credentials()
    second = credentials.get_frozen_credentials()
    assert first.access_key != second.access_key
    assert allowed(stack, who) >= 3


def test_twenty_parallel_runs_make_one_broker_request(stack: LocalStack, user_env: dict[str, str]) -> None:
    who = f"parallel-{uuid.uuid4().hex[:8]}@example.com"
    user_env["ROLEBROKER_TOKEN"] = stack.mint(who, groups=["platform-admins"])
    argv = [ROLEBROKER, "credential-process", "--role", "sandbox-admin"]
    processes = [subprocess.Popen(argv, env=user_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(20)]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert all(p.returncode == 0 for p in processes), [o[1] for o in outputs]
    documents = {out for out, _ in outputs}
    assert len(documents) == 1
    assert json.loads(documents.pop())["Version"] == 1
    assert allowed(stack, who) == 1


def test_broker_down_is_a_clean_failure(user_env: dict[str, str], stack: LocalStack) -> None:
    user_env["ROLEBROKER_TOKEN"] = token = stack.mint("alice@example.com", groups=["platform-admins"])
    url = f"http://127.0.0.1:{free_port()}"
    out = run([ROLEBROKER, "credential-process", "--role", "sandbox-admin", "--url", url], user_env)
    assert out.returncode != 0
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and url in out.stderr
    assert token not in out.stderr
    via_cli = run([AWS, "sts", "get-caller-identity", "--profile", "nope"], user_env)
    assert via_cli.returncode != 0


def test_not_allowed_role_fails_with_the_servers_reason(stack: LocalStack, user_env: dict[str, str]) -> None:
    user_env["ROLEBROKER_TOKEN"] = stack.mint("bob@example.com", groups=["developers"])
    out = run([ROLEBROKER, "credential-process", "--role", "sandbox-admin"], user_env)
    assert out.returncode != 0 and out.stdout == ""
    assert "requires group platform-admins" in out.stderr


def test_configure_keeps_a_hand_written_config(stack: LocalStack, user_env: dict[str, str]) -> None:
    user_env["ROLEBROKER_TOKEN"] = stack.mint("alice@example.com", groups=["platform-admins"])
    config = Path(user_env["AWS_CONFIG_FILE"])
    config.parent.mkdir(parents=True)
    original = ("# my AWS config\n[default]\nregion = eu-central-1\noutput = json\n\n"
                "; the classic way, kept for now\n[profile legacy]\nrole_arn = arn:aws:iam::222222222222:role/Old\n"
                "source_profile = default\n\n[profile sandbox-admin]\n# hand-written, must survive\n"
                "region = us-west-2\n\n[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\n")
    config.write_text(original)
    first = run([ROLEBROKER, "configure", "--all"], user_env)
    assert first.returncode == 0, first.stderr
    after = config.read_text()
    assert after.startswith(original.split("[profile sandbox-admin]")[0])
    assert "# hand-written, must survive\nregion = us-west-2\n" in after  # not ours: untouched without --force
    assert "[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\n" in after
    assert "[profile prod-readonly]" in after
    assert run([ROLEBROKER, "configure", "--all"], user_env).returncode == 0
    assert config.read_text() == after


def test_login_against_the_dev_issuer(stack: LocalStack, user_env: dict[str, str]) -> None:
    import urllib.request

    process = subprocess.Popen([ROLEBROKER, "login", "--no-browser"], env=user_env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    url = ""
    for _ in range(20):
        line = process.stderr.readline()
        if "/authorize?" in line:
            url = line[line.index("http"):].split()[0]
            break
    assert url, "login printed no sign-in address"
    with urllib.request.urlopen(url, timeout=10) as response:  # the "browser" follows the redirect
        assert response.status == 200
    assert process.wait(timeout=30) == 0
    tokens = Path(user_env["XDG_CONFIG_HOME"]) / "rolebroker" / "tokens.json"
    assert tokens.stat().st_mode & 0o777 == 0o600
    roles = run([ROLEBROKER, "roles"], user_env)
    assert roles.returncode == 0 and "sandbox-admin" in roles.stdout


def test_the_aws_cli_reads_credentials_from_serve(stack: LocalStack, user_env: dict[str, str]) -> None:
    who = f"serve-cli-{uuid.uuid4().hex[:8]}@example.com"
    user_env["ROLEBROKER_TOKEN"] = stack.mint(who, groups=["platform-admins"])
    out = run([ROLEBROKER, "serve", "--role", "sandbox-admin", "--", AWS, "sts", "get-caller-identity", "--output",
               "json"], user_env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Arn"].endswith(f"assumed-role/CrossAccountAdminRole/{who}")
    failed = run([ROLEBROKER, "serve", "--role", "sandbox-admin", "--", AWS, "s3api", "no-such-operation"], user_env)
    assert failed.returncode == 2  # the aws CLI's own status for a usage error, passed through


# A long-running program: one boto3 client used again and again while its credentials are
# replaced underneath it. 900-second sessions sit inside botocore's 15-minute refresh window
# from the start, so every call makes botocore ask the endpoint again, and the endpoint must
# fetch new credentials from the broker each time (the clock-driven refresh at 15 minutes is
# tests/client/test_client_serve.py::test_credentials_are_refreshed_once_less_than_15_minutes_are_left).
LONG_RUNNING = """
import json, sys
import boto3
session = boto3.Session()
sts = session.client("sts")
arns, keys = [], []
for _ in range(3):
    arns.append(sts.get_caller_identity()["Arn"])
    keys.append(session.get_credentials().get_frozen_credentials().access_key)
print(json.dumps({"arns": arns, "keys": keys, "method": session.get_credentials().method}))
"""


def test_a_long_running_boto3_program_spans_refreshes_through_serve(
        stack: LocalStack, user_env: dict[str, str]) -> None:
    who = f"serve-boto3-{uuid.uuid4().hex[:8]}@example.com"
    user_env["ROLEBROKER_TOKEN"] = stack.mint(who, groups=["platform-admins"])
    out = run([ROLEBROKER, "serve", "--role", "sandbox-admin", "--duration", "900", "--",
               sys.executable, "-c", LONG_RUNNING], user_env)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["method"] == "container-role"
    assert all(arn.endswith(f"assumed-role/CrossAccountAdminRole/{who}") for arn in seen["arns"])
    assert len(set(seen["keys"])) == 3
    assert allowed(stack, who) >= 4  # serve's check at start, then one per refresh


def test_device_login_against_the_dev_issuer_as_bob(stack: LocalStack, user_env: dict[str, str]) -> None:
    import urllib.parse
    import urllib.request

    assert stack.issuer is not None
    process = subprocess.Popen([ROLEBROKER, "login", "--device"], env=user_env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    line = process.stderr.readline()
    assert f"open {stack.issuer.url}/device and enter the code " in line, line
    code = line.rsplit(" ", 1)[1].strip()
    form = urllib.parse.urlencode({"user_code": code, "user": "bob@example.com"}).encode()
    with urllib.request.urlopen(f"{stack.issuer.url}/device", data=form, timeout=10) as page:  # the other device
        assert "Signed in as bob@example.com" in page.read().decode()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out == f"signed in as bob@example.com at {stack.issuer.url}\n"
    roles = run([ROLEBROKER, "roles"], user_env)
    assert roles.returncode == 0 and "sandbox-readonly" in roles.stdout and "sandbox-admin" not in roles.stdout
