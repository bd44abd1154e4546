"""``rolebroker serve``: the loopback credential endpoint, as botocore and a person's shell use it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import ContainerProvider
from rolebroker import serve as serve_module
from rolebroker.commands import Context, Options, credentials_for
from rolebroker.errors import BrokerError
from rolebroker.settings import Runtime, Settings

from tests.client.fakes import ALICE, CLIENT_SCRIPT, FakeBroker, FakeClock, Reply, Result

# A program run under `serve --`: botocore's own container provider, as every boto3 session has,
# writes what it got (and the environment it ran in) to the file named by its argument.
BOTOCORE_CHILD = """
import json, os, sys
from botocore.credentials import ContainerProvider
creds = ContainerProvider().load()
frozen = creds.get_frozen_credentials()
json.dump({"method": creds.method, "access_key": frozen.access_key, "token": frozen.token,
           "env": {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "ROLEBROKER_"))}},
          open(sys.argv[1], "w"))
"""


def get(url: str, token: str | None, method: str = "GET", body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, method=method, data=body)
    if token is not None:
        request.add_header("Authorization", token)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def clock() -> FakeClock:
    import time

    return FakeClock(time.time())


@pytest.fixture
def served(env: dict[str, str], clock: FakeClock) -> Iterator[serve_module.CredentialServer]:
    """The endpoint for sandbox-admin over the real cache and fetcher, with an injected clock."""
    opts = Options()
    rt = Runtime(clock=clock)
    settings = Settings(env, getuid=rt.getuid)

    def fetch(role: str) -> Any:
        return credentials_for(Context(opts, settings, rt), role, None)

    with serve_module.CredentialServer(fetch, ["sandbox-admin"], token="run-token-" + "x" * 30) as server:
        yield server


def test_botocore_reads_the_role_through_serve_and_the_command_gets_no_bearer_token(
        cli: Callable[..., Result], broker: FakeBroker, env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "child.json"
    env.update(AWS_PROFILE="elsewhere", AWS_ACCESS_KEY_ID="AKIASTATIC", AWS_SECRET_ACCESS_KEY="static",
               AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="/nonexistent")
    result = cli("serve", "--role", "sandbox-admin", "--", sys.executable, "-c", BOTOCORE_CHILD, str(out))
    assert result.code == 0, result.err
    seen = json.loads(out.read_text())
    assert seen["method"] == "container-role"
    assert seen["access_key"] == "FAKEKEY0000000000001" and seen["token"].startswith("session-1-")
    child_env = seen["env"]
    assert child_env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://127.0.0.1:")
    assert child_env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].endswith("/role/sandbox-admin")
    assert child_env["AWS_REGION"] == "eu-west-1"
    for name in ("ROLEBROKER_TOKEN", "ROLEBROKER_URL", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"):
        assert name not in child_env
    assert ALICE not in json.dumps(seen) and ALICE not in result.err
    assert broker.issued == 1  # the check before the command, then the cache


@pytest.mark.parametrize(("script", "expected"), [
    ("import sys; sys.exit(7)", 7),
    ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", 128 + signal.SIGTERM),
])
def test_the_commands_exit_status_passes_through(cli: Callable[..., Result], script: str, expected: int) -> None:
    assert cli("serve", "--role", "sandbox-admin", "--", sys.executable, "-c", script).code == expected


def test_a_missing_command_is_one_line(cli: Callable[..., Result]) -> None:
    result = cli("serve", "--role", "sandbox-admin", "--", "no-such-command-rolebroker")
    assert (result.code, result.err) == (127, "rolebroker: command not found: no-such-command-rolebroker\n")
    assert cli("serve", "--role", "sandbox-admin", "--").code == 2


def test_a_role_you_cannot_use_fails_before_anything_runs(cli: Callable[..., Result], broker: FakeBroker,
                                                          tmp_path: Path) -> None:
    broker.route("POST", "/v1/credentials", Reply(403, {"Message": "role sandbox-admin requires group admins"}))
    marker = tmp_path / "ran"
    result = cli("serve", "--role", "sandbox-admin", "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')")
    assert result.code == 1 and not marker.exists() and result.out == ""
    assert result.err_lines == ["rolebroker: role sandbox-admin requires group admins"]


def test_credentials_are_refreshed_once_less_than_15_minutes_are_left(
        served: serve_module.CredentialServer, broker: FakeBroker, clock: FakeClock) -> None:
    url, token = served.uri("sandbox-admin"), served.token
    status, first = get(url, token)
    assert status == 200 and set(first) == {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}
    assert first["Expiration"].endswith("Z")
    clock.now += 44 * 60  # 16 minutes left: still served from the cache
    assert get(url, token)[1]["AccessKeyId"] == first["AccessKeyId"]
    assert broker.issued == 1
    clock.now += 2 * 60  # 14 minutes left: botocore would refresh now, so we must hand out new ones
    status, second = get(url, token)
    assert status == 200 and second["AccessKeyId"] != first["AccessKeyId"]
    assert broker.issued == 2


def test_botocore_spans_a_refresh_through_the_endpoint(
        served: serve_module.CredentialServer, broker: FakeBroker) -> None:
    # 14-minute sessions are inside botocore's 15-minute advisory window from the start, by a
    # whole minute (900 s sat on its edge): every use of the credentials asks the endpoint again,
    # which must fetch anew each time.
    broker.ttl = 840
    environ = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": served.uri("sandbox-admin"),
               "AWS_CONTAINER_AUTHORIZATION_TOKEN": served.token}
    credentials = ContainerProvider(environ=environ).load()
    keys = {credentials.get_frozen_credentials().access_key for _ in range(3)}
    assert len(keys) == 3 and broker.issued == 4  # the load, then one refresh per use


@pytest.mark.parametrize(("header", "status"), [
    (None, 401),
    ("", 403),
    ("wrong-token", 403),
    ("Bearer run-token-" + "x" * 30, 403),
    ("run-token-" + "x" * 29, 403),
    ("run-token-" + "x" * 30 + "x", 403),
])
def test_a_missing_or_wrong_token_is_refused_and_nothing_is_fetched(
        served: serve_module.CredentialServer, broker: FakeBroker, header: str | None, status: int) -> None:
    code, body = get(served.uri("sandbox-admin"), header)
    assert code == status
    assert set(body) == {"Code", "Message"} and served.token not in body["Message"]
    assert broker.issued == 0


@pytest.mark.parametrize(("path", "method", "body", "status"), [
    ("/role/prod-admin", "GET", None, 404),
    ("/role/", "GET", None, 404),
    ("/", "GET", None, 404),
    ("/role/sandbox-admin/../prod-admin", "GET", None, 404),
    ("/role/sandbox-admin", "POST", b"{}", 405),
    ("/role/sandbox-admin?x=" + "a" * 600, "GET", None, 414),
])
def test_anything_but_get_of_a_served_role_is_a_clear_4xx(
        served: serve_module.CredentialServer, broker: FakeBroker, path: str, method: str, body: bytes | None,
        status: int) -> None:
    base = served.uri("sandbox-admin").split("/role/")[0]
    code, answer = get(base + path, served.token, method, body)
    assert code == status and answer["Message"]
    assert broker.issued == 0


def test_a_request_with_a_body_is_refused_without_reading_it(served: serve_module.CredentialServer) -> None:
    host, port = served.address
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(f"GET /role/sandbox-admin HTTP/1.1\r\nHost: x\r\nAuthorization: {served.token}\r\n"
                     "Content-Length: 1000000000\r\n\r\n".encode())
        assert conn.recv(100).startswith(b"HTTP/1.0 413")


def test_a_broker_failure_is_a_502_with_one_clean_line(broker: FakeBroker) -> None:
    logged: list[str] = []

    def fetch(role: str) -> Any:
        raise BrokerError(f"the broker rejected your token: expired; run `rolebroker login` {ALICE}")

    from rolebroker.errors import remember_secret

    remember_secret(ALICE)
    with serve_module.CredentialServer(fetch, ["r"], token="t" * 40, log=logged.append) as server:
        code, body = get(server.uri("r"), server.token)
    assert code == 502 and "run `rolebroker login`" in body["Message"]
    assert ALICE not in body["Message"] and ALICE not in "".join(logged)
    assert logged == [f"cannot refresh credentials for r: {body['Message']}"]


def test_only_loopback_is_bound(served: serve_module.CredentialServer) -> None:
    sock = served._server.socket
    assert sock.family == socket.AF_INET
    assert sock.getsockname()[0] == "127.0.0.1"
    assert served.uri("sandbox-admin").startswith("http://127.0.0.1:")


def test_a_port_in_use_is_one_line(cli: Callable[..., Result]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--role", "sandbox-admin", "--port", str(port), "--", sys.executable, "-c", "0")
    assert result.code == 1 and len(result.err_lines) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.err


def listening_addresses(pid: int) -> list[str]:
    """The local addresses of the TCP sockets process ``pid`` listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes and fields[3] == "0A":  # LISTEN
                found.append(fields[1])
    return found


@pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="reads /proc")
def test_print_mode_prints_the_variables_listens_on_loopback_only_and_stops_on_ctrl_c(
        env: dict[str, str], broker: FakeBroker) -> None:
    process = subprocess.Popen([sys.executable, str(CLIENT_SCRIPT), "serve", "--role", "sandbox-admin"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stderr is not None
        lines = [process.stdout.readline() for _ in range(5)]
        assert lines[0].startswith("unset AWS_PROFILE ") and "AWS_ACCESS_KEY_ID" in lines[0]
        exported = dict(line.removeprefix("export ").rstrip("\n").split("=", 1) for line in lines[1:])
        assert set(exported) == {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                                 "AWS_REGION", "AWS_DEFAULT_REGION"}
        note = process.stderr.readline()
        assert note.startswith("rolebroker: serving sandbox-admin at http://127.0.0.1:") and "Ctrl-C" in note
        frozen = ContainerProvider(environ=exported).load().get_frozen_credentials()
        assert frozen.access_key == "FAKEKEY0000000000001"
        port = int(exported["AWS_CONTAINER_CREDENTIALS_FULL_URI"].split(":")[2].split("/")[0])
        assert listening_addresses(process.pid) == [f"0100007F:{port:04X}"]  # 127.0.0.1, and nothing else
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        rest = process.stderr.read()
        assert exported["AWS_CONTAINER_AUTHORIZATION_TOKEN"] not in note + rest
        assert rest.strip().splitlines()[-1] == "rolebroker: stopped"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_default_profile_with_its_own_credentials_is_warned_about(
        cli: Callable[..., Result], env: dict[str, str], home: Path) -> None:
    credentials = home / ".aws" / "credentials"
    credentials.parent.mkdir()
    credentials.write_text("[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = x\n")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(credentials)
    result = cli("serve", "--role", "sandbox-admin", "--", sys.executable, "-c", "0")
    assert result.code == 0
    assert result.err_lines == [f"rolebroker: [default] in {credentials} has credentials of its own, which the AWS "
                                "SDKs use before this endpoint: move them to a named profile, or point "
                                "AWS_SHARED_CREDENTIALS_FILE elsewhere for the program"]
    credentials.write_text("[default]\nregion = eu-west-1\n")
    assert cli("serve", "--role", "sandbox-admin", "--", sys.executable, "-c", "0").err == ""
