"""End to end: the local stack as `make run` starts it, and the real aws CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import LocalStack

pytestmark = pytest.mark.e2e
AWS = str(Path(sys.executable).with_name("aws"))


def call(stack: LocalStack, method: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(stack.broker_url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read().decode()
            status = response.status
            kind = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        raw, status, kind = exc.read().decode(), exc.code, exc.headers.get("Content-Type", "")
    return status, json.loads(raw) if kind.startswith("application/json") else raw


def test_token_command_prints_a_jwt_from_the_running_issuer(stack: LocalStack) -> None:
    assert stack.issuer is not None
    env = {**os.environ, "ROLEBROKER_ISSUER_PORT": stack.issuer.url.rsplit(":", 1)[1]}
    out = subprocess.run([sys.executable, "-m", "devstack", "token", "--sub", "alice@example.com",
                          "--groups", "platform-admins"], env=env, capture_output=True, text=True, check=True)
    token = out.stdout.strip()
    assert token.count(".") == 2
    status, body = call(stack, "GET", "/v1/roles", token)
    assert status == 200
    assert "sandbox-admin" in [role["name"] for role in body["roles"]]


def test_the_stack_runs_two_issuers_and_the_ci_one_gets_only_its_rules(stack: LocalStack) -> None:
    assert stack.issuer is not None and stack.ci_issuer is not None
    assert stack.ci_issuer.url in stack.banner() and "--issuer ci" in stack.banner()
    env = {**os.environ, "ROLEBROKER_CI_ISSUER_PORT": stack.ci_issuer.url.rsplit(":", 1)[1]}
    out = subprocess.run([sys.executable, "-m", "devstack", "token", "--issuer", "ci", "--claim",
                          "repository=acme/infra", "--claim", "ref=refs/heads/main", "--groups", "platform-admins"],
                         env=env, capture_output=True, text=True, check=True)
    token = out.stdout.strip()
    status, body = call(stack, "GET", "/v1/roles", token)
    assert status == 200, body
    assert [role["name"] for role in body["roles"]] == ["ci-deploy"]  # its groups claim matches no people's rule
    status, body = call(stack, "POST", "/v1/credentials", token, {"role": "ci-deploy"})
    assert status == 200, body
    assert body["source_identity"].startswith("ci-repo-acme-infra-ref-refs-heads-main-")


def test_credentials_work_with_the_real_aws_cli(stack: LocalStack) -> None:
    token = stack.mint("alice@example.com", groups=["platform-admins"])
    status, body = call(stack, "POST", "/v1/credentials", token, {"role": "sandbox-admin"})
    assert status == 200, body
    creds = body["credentials"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_STS": stack.aws_url,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    out = subprocess.run([AWS, "sts", "get-caller-identity", "--output", "json"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    identity = json.loads(out.stdout)
    assert identity["Arn"] == "arn:aws:sts::222222222222:assumed-role/CrossAccountAdminRole/alice@example.com"
    assert body["profile"]["config"].startswith("[profile sandbox-admin]")


def test_errors_over_real_http_are_clean(stack: LocalStack) -> None:
    status, body = call(stack, "GET", "/v1/roles", None)
    assert status == 401 and body["Code"] == "UnauthorizedError"
    token = stack.mint("bob@example.com", groups=["developers"])
    status, body = call(stack, "POST", "/v1/credentials", token, {"role": "sandbox-admin"})
    assert status == 403 and "requires group platform-admins" in body["Message"]
    status, body = call(stack, "GET", "/v1/config", token)
    assert status == 200 and "[profile sandbox-readonly]" in body


def test_devstack_slack_drives_chatops_without_slack(stack: LocalStack) -> None:
    env = {**os.environ, "ROLEBROKER_PORT": str(stack.broker_port), "ROLEBROKER_SLACK_PORT": str(stack.slack_port)}

    def slack(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "devstack", "slack", *args], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "`sandbox-admin`" in slack("/aws roles", "--user", "U0ALICE")
    requested = slack("/aws request prod-breakglass 1h INC-42 db down", "--user", "U0BOB")
    request_id = requested.split("Request `", 1)[1].split("`", 1)[0]
    approved = slack("--click", "approve", "--request", request_id, "--user", "U0CAROL")
    assert "Approved* by carol@example.com" in approved
    token = stack.mint("bob@example.com", groups=["developers"])
    status, body = call(stack, "POST", "/v1/credentials", token, {"role": "prod-breakglass"})
    assert status == 200, body
    assert body["assumed_role_arn"].endswith("assumed-role/BreakGlassRole/bob@example.com")


def test_revoke_sessions_on_the_local_stack_as_the_readme_shows(stack: LocalStack) -> None:
    """The kill switch through the installed client, against the stack `make run` starts: the StackSet's
    revoker and boundary exist in each emulated trusting account, and the deny lands there."""
    from chalicelib.jit import denies
    from devstack.trusting import iam_in

    erin = stack.mint("erin@example.com", groups=["developers"])
    assert call(stack, "POST", "/v1/credentials", erin, {"role": "sandbox-readonly"})[0] == 200
    rolebroker = str(Path(sys.executable).with_name("rolebroker"))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ROLEBROKER_"))},
           "ROLEBROKER_URL": stack.broker_url, "HOME": "/nonexistent",
           "ROLEBROKER_TOKEN": stack.mint("sam@example.com", groups=["security"], mfa=True)}
    out = subprocess.run([rolebroker, "revoke-sessions", "erin@example.com", "--reason", "laptop stolen"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "for erin@example.com: complete" in out.stdout
    assert {line.split()[1] for line in out.stdout.splitlines()[2:]} == {"written"}
    status, refused = call(stack, "POST", "/v1/credentials", erin, {"role": "sandbox-readonly"})
    assert status == 403 and "revoked your sessions" in refused["Message"]
    import boto3

    from devstack.stack import FAKE_AWS_CREDENTIALS

    session = boto3.session.Session(region_name="us-east-1",
                                    aws_access_key_id=FAKE_AWS_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                    aws_secret_access_key=FAKE_AWS_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    iam = iam_in("222222222222", session.client("sts", endpoint_url=stack.aws_url),
                 lambda service, creds: session.client(service, endpoint_url=stack.aws_url, **creds))
    arn = denies.boundary_arn("222222222222")
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
    assert "erin@example.com" in [e.source_identity for e in denies.entries_in(document)]
    listed = subprocess.run([rolebroker, "revocations"], env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "erin@example.com" in listed.stdout
    revocation = next(line.split()[0] for line in listed.stdout.splitlines() if "erin@example.com" in line)
    lifted = subprocess.run([rolebroker, "revocations", "--lift", revocation], env=env, capture_output=True,
                            text=True, timeout=60)
    assert lifted.returncode == 0 and ": lifted;" in lifted.stdout, lifted.stderr
    assert call(stack, "POST", "/v1/credentials", erin, {"role": "sandbox-readonly"})[0] == 200
