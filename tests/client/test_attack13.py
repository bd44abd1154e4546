"""Outside review of issue 13 (client 2.0), attack 13: what it confirmed, as tests.

Each finding (F1-F6) first landed here as a strict xfail that failed on the
code of the time; the fix removed the mark, and the tests after each
reviewer's test pin the fix down further. The re-attack of those fixes
confirmed two more (re-attack F2, F3), placed with the finding they extend.
``docs/security.md`` lists every one in its attack table.

The attacker is an outsider to this person's account: text in
``~/.aws/config`` they did not write themselves (a pasted snippet, a team's
dotfiles, an ``AWS_CONFIG_FILE`` a project points at), another user of the
same machine (loopback ports are shared by every user), or a server at a
wrong URL that echoes what it was sent.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import stat
import string
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import make_pyz  # client/make_pyz.py (conftest.py put client/ on sys.path): what `make client` runs
import pytest
from rolebroker import serve as serve_module
from rolebroker.loopback import LoopbackHandler, LoopbackServer

from tests.client.fakes import ALICE, CLIENT_SCRIPT, FakeBroker, FakeIssuer, Reply, Result

MARKER = "# managed by rolebroker (url=http://127.0.0.1:8000)"


def fragments(secret: str, size: int = 20) -> Iterator[str]:
    """Every run of ``size`` characters of ``secret``: none may reach the terminal."""
    return (secret[start:start + size] for start in range(len(secret) - size + 1))


# --------------------------------------------------------------------------
# F1: role names in ~/.aws/config are shell code to bash's completion


@pytest.fixture
def rolebroker_on_path(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """An environment whose `rolebroker` on PATH is this client."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "rolebroker"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {CLIENT_SCRIPT} \"$@\"\n")
    wrapper.chmod(0o755)
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}


BASH_DRIVER = """
source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
_rolebroker
printf '%s\\n' "${COMPREPLY[@]}"
"""


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
@pytest.mark.parametrize("words", [["rolebroker", "exec", ""], ["rolebroker", "credential-process", "--role", ""]])
def test_a_profile_name_in_the_aws_config_never_runs_as_code_on_tab(
        cli: Callable[..., Result], rolebroker_on_path: dict[str, str], tmp_path: Path, words: list[str]) -> None:
    pwned = tmp_path / "pwned"
    config = Path(rolebroker_on_path["AWS_CONFIG_FILE"])
    config.parent.mkdir(parents=True)
    config.write_text(f"{MARKER}\n[profile sandbox-admin]\nregion = eu-west-1\n\n"
                      f"{MARKER}\n[profile \"$(touch {pwned})\"]\nregion = eu-west-1\n")
    script = tmp_path / "rolebroker.bash"
    script.write_text(cli("completion", "bash").out)
    done = subprocess.run(["bash", "-c", BASH_DRIVER, "driver", str(script), *words], env=rolebroker_on_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert "sandbox-admin" in done.stdout.split(), done.stderr  # the completion itself ran
    assert not pwned.exists()


def test_configure_never_prints_a_profile_name_from_the_aws_config_raw(
        cli: Callable[..., Result], broker: FakeBroker, env: dict[str, str]) -> None:
    config = Path(env["AWS_CONFIG_FILE"])
    config.parent.mkdir(parents=True)
    config.write_text(f"{MARKER}\n[profile \"\x1b]0;owned\x07\x1b[2J\"]\nregion = eu-west-1\n")
    result = cli("configure", which=lambda _name: "/usr/local/bin/rolebroker")
    assert result.code == 0, result.err
    # Named safely or not named at all: either way, nothing a terminal acts on.
    assert "\x1b" not in result.err and "\x07" not in result.err
    assert "1 section(s)" in result.err and "marker" in result.err


EVIL_NAMES = ["$(touch {pwned})", "`touch {pwned}`", "a;touch {pwned}", "\x1b]0;owned\x07"]


def test_list_roles_prints_only_names_configure_could_have_written(
        cli: Callable[..., Result], env: dict[str, str], tmp_path: Path) -> None:
    config = Path(env["AWS_CONFIG_FILE"])
    config.parent.mkdir(parents=True)
    odd = "".join(f"{MARKER}\n[profile \"{name.format(pwned=tmp_path / 'pwned')}\"]\nregion = eu-west-1\n"
                  for name in EVIL_NAMES)
    config.write_text(f"{MARKER}\n[profile sandbox-admin]\nregion = eu-west-1\n{odd}"
                      f"{MARKER}\n[profile prod.admin_2]\nregion = eu-west-1\n")
    assert cli("completion", "--list-roles") == Result(0, "prod.admin_2\nsandbox-admin\n", "")


@pytest.fixture
def evil_rolebroker(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """A `rolebroker` on PATH whose --list-roles prints shell code: the scripts themselves must not run it."""
    bin_dir = tmp_path / "evil-bin"
    bin_dir.mkdir()
    names = "\n".join(["sandbox-admin", *(name.format(pwned=tmp_path / "pwned") for name in EVIL_NAMES[:3])])
    wrapper = bin_dir / "rolebroker"
    wrapper.write_text(f"#!/bin/sh\ncat <<'EOF'\n{names}\nEOF\n")
    wrapper.chmod(0o755)
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
@pytest.mark.parametrize("words", [["rolebroker", "exec", ""], ["rolebroker", "env", "--role", ""],
                                   ["rolebroker", "exec", "a"]])
def test_the_bash_script_never_expands_a_role_name(
        cli: Callable[..., Result], evil_rolebroker: dict[str, str], tmp_path: Path, words: list[str]) -> None:
    script = tmp_path / "rolebroker.bash"
    script.write_text(cli("completion", "bash").out)
    done = subprocess.run(["bash", "-c", BASH_DRIVER, "driver", str(script), *words], env=evil_rolebroker,
                          capture_output=True, text=True, timeout=60, check=False)
    offered = done.stdout.splitlines()
    assert not (tmp_path / "pwned").exists()
    if words[-1] == "a":
        assert offered == [f"a;touch {tmp_path / 'pwned'}"], done.stderr  # matched as text: offered, not run
    else:
        assert "sandbox-admin" in offered and f"$(touch {tmp_path / 'pwned'})" in offered, done.stderr


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_the_fish_script_never_expands_a_role_name(
        cli: Callable[..., Result], evil_rolebroker: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "rolebroker.fish"
    script.write_text(cli("completion", "fish").out)
    done = subprocess.run(["fish", "--no-config", "-c", f"source {script}; complete -C 'rolebroker exec '"],
                          env={**evil_rolebroker, "XDG_DATA_HOME": str(tmp_path / "share")},
                          capture_output=True, text=True, timeout=60, check=False)
    assert "sandbox-admin" in done.stdout.split(), done.stderr
    assert not (tmp_path / "pwned").exists()


ZSH_DRIVER = """
compdef() { : }
compadd() { while [[ $1 == -* ]]; do if [[ $1 == -- ]]; then shift; break; fi; shift; done; print -l -- "$@" }
source "$1"; shift
words=("$@"); CURRENT=${#words}; PREFIX=${words[CURRENT]}
_rolebroker
"""


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_the_zsh_script_never_expands_a_role_name(
        cli: Callable[..., Result], evil_rolebroker: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "rolebroker.zsh"
    script.write_text(cli("completion", "zsh").out)
    done = subprocess.run(["zsh", "-f", "-c", ZSH_DRIVER, "driver", str(script), "rolebroker", "exec", ""],
                          env=evil_rolebroker, capture_output=True, text=True, timeout=60, check=False)
    assert "sandbox-admin" in done.stdout.splitlines(), done.stderr
    assert f"$(touch {tmp_path / 'pwned'})" in done.stdout.splitlines()  # handed to compadd as one literal word
    assert not (tmp_path / "pwned").exists()


# --------------------------------------------------------------------------
# F2: 32 stalled connections lock the token holder out of `serve`

TOKEN = "run-token-" + "x" * 30


def fetch_nothing(role: str) -> dict[str, Any]:
    return {"credentials": {"AccessKeyId": "ASIAATTACK13", "SecretAccessKey": "secret", "SessionToken": "session"},
            "expires_at": time.time() + 3600}


def status_of(url: str, token: str) -> int | str:
    request = urllib.request.Request(url, headers={"Authorization": token})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:  # the endpoint hung up without an answer
        return type(exc).__name__


def test_stalled_connections_do_not_lock_the_token_holder_out_of_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    # An attacker sends one byte every few seconds to keep each connection; a long
    # read timeout stands in for that here, so the test needs no sleeping.
    monkeypatch.setattr(serve_module, "REQUEST_TIMEOUT_SECONDS", 600.0, raising=False)
    with serve_module.CredentialServer(fetch_nothing, ["sandbox-admin"], token=TOKEN) as server:
        stalled = [socket.create_connection(server.address, timeout=30) for _ in range(32)]
        try:
            for conn in stalled:
                conn.sendall(b"GET /role/sandbox-admin HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
            assert status_of(server.uri("sandbox-admin"), TOKEN) == 200
        finally:
            for conn in stalled:
                conn.close()


class StepClock:
    """A clock the test moves; ``wait_for_calls`` says when the server has looked at it (accepted, read)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls = 0
        self._changed = threading.Condition()

    def __call__(self) -> float:
        with self._changed:
            self.calls += 1
            self._changed.notify_all()
            return self.now

    def wait_for_calls(self, count: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.calls >= count, timeout=30), self.calls


def read_all(conn: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := conn.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_one_deadline_covers_the_whole_request_head_however_slowly_it_trickles(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve_module, "REQUEST_TIMEOUT_SECONDS", 600.0)  # in the clock's seconds; real reads wait
    clock = StepClock()
    head = [b"GET /role/sandbox-admin HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", f"Authorization: {TOKEN}\r\n".encode(),
            b"\r\n"]
    with serve_module.CredentialServer(fetch_nothing, ["sandbox-admin"], token=TOKEN, clock=clock) as server:
        for last_at, answered in ((599.0, True), (601.0, False)):
            clock.now, seen = 0.0, clock.calls
            with socket.create_connection(server.address, timeout=30) as conn:
                clock.wait_for_calls(seen + 1)  # accepted: its deadline is now + 600
                for step, (at, part) in enumerate(zip((0.0, 200.0, 400.0, last_at), head, strict=True)):
                    clock.now = at  # each gap well inside 600 s: only the whole head is late
                    seen = clock.calls
                    conn.sendall(part)
                    if step < len(head) - 1:
                        clock.wait_for_calls(seen + 1)  # the server read it and asked for more
                answer = read_all(conn)
            assert answer.startswith(b"HTTP/1.0 200") if answered else answer == b"", answer[:40]


def test_stalled_connections_make_room_but_never_take_an_admitted_ones_slot(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve_module, "MAX_CONNECTIONS", 2)
    monkeypatch.setattr(serve_module, "REQUEST_TIMEOUT_SECONDS", 600.0)
    entered, release = threading.Event(), threading.Event()

    def slow_fetch(role: str) -> dict[str, Any]:
        entered.set()
        assert release.wait(30)
        return fetch_nothing(role)

    with serve_module.CredentialServer(slow_fetch, ["sandbox-admin"], token=TOKEN) as server:
        statuses: list[int | str] = []
        program = threading.Thread(target=lambda: statuses.append(status_of(server.uri("sandbox-admin"), TOKEN)))
        program.start()
        try:
            assert entered.wait(30)  # the program's request is admitted and waiting for the broker
            stalled = []
            for _ in range(3):  # each sends before the next one connects, so before it can be hung up
                stalled.append(socket.create_connection(server.address, timeout=30))
                stalled[-1].sendall(b"GET /role/sandbox-admin HTTP/1.1\r\n")
            # Each newcomer took the slot of the oldest one still without a token; the last one holds it.
            assert [read_all(conn) for conn in stalled[:2]] == [b"", b""]
        finally:
            release.set()
            program.join(timeout=30)
        assert statuses == [200]
        stalled[2].close()


def test_a_newcomer_is_turned_away_only_when_every_slot_is_an_admitted_request(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve_module, "MAX_CONNECTIONS", 1)
    entered, release = threading.Event(), threading.Event()

    def slow_fetch(role: str) -> dict[str, Any]:
        entered.set()
        assert release.wait(30)
        return fetch_nothing(role)

    with serve_module.CredentialServer(slow_fetch, ["sandbox-admin"], token=TOKEN) as server:
        statuses: list[int | str] = []
        program = threading.Thread(target=lambda: statuses.append(status_of(server.uri("sandbox-admin"), TOKEN)))
        program.start()
        try:
            assert entered.wait(30)
            with socket.create_connection(server.address, timeout=30) as newcomer:
                newcomer.sendall(b"GET /role/sandbox-admin HTTP/1.1\r\n\r\n")
                assert read_all(newcomer) == b""  # hung up at once, not queued behind the broker
        finally:
            release.set()
            program.join(timeout=30)
        assert statuses == [200]


# Re-attack F2: a flood evicted the program's complete, authorized request
# before its thread had read it (admission waited on thread scheduling). The
# server now looks into what each candidate sent before it makes room.


def first_thread_waits(max_connections: int | None = None) -> Any:
    """A ``LoopbackServer`` whose first connection's thread runs only once ``go`` is set: what a busy machine (two
    cores, a flood of connections each starting a thread) does to a thread anyway."""

    class FirstThreadWaits(LoopbackServer):
        go = threading.Event()
        first = threading.Event()
        accepted = 0
        changed = threading.Condition()

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if max_connections is not None:
                kwargs.update(max_connections=max_connections, request_timeout=600.0)
            super().__init__(*args, **kwargs)

        def process_request(self, request: Any, client_address: Any) -> None:
            super().process_request(request, client_address)
            with FirstThreadWaits.changed:
                FirstThreadWaits.accepted += 1
                FirstThreadWaits.changed.notify_all()

        def process_request_thread(self, request: Any, client_address: Any) -> None:
            if not FirstThreadWaits.first.is_set():
                FirstThreadWaits.first.set()
                assert FirstThreadWaits.go.wait(30)
            super().process_request_thread(request, client_address)

        @classmethod
        def flood(cls, address: tuple[str, int], count: int) -> list[socket.socket]:
            """Once the first thread waits: ``count`` silent connections, each accepted (given a slot or refused)."""
            assert cls.first.wait(30)
            floods = [socket.create_connection(address, timeout=30) for _ in range(count)]
            with cls.changed:
                assert cls.changed.wait_for(lambda: cls.accepted >= 1 + count, timeout=30)
            return floods

    return FirstThreadWaits


def request_head(path: str, token: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {token}\r\n\r\n".encode()


@pytest.mark.parametrize("token", [TOKEN, "run-token-" + "n" * 30], ids=["this-runs-token", "a-wrong-token"])
def test_a_flood_cannot_evict_a_complete_authorized_request_before_its_thread_runs(
        monkeypatch: pytest.MonkeyPatch, token: str) -> None:
    server_class = first_thread_waits()
    monkeypatch.setattr(serve_module, "MAX_CONNECTIONS", 2)
    monkeypatch.setattr(serve_module, "REQUEST_TIMEOUT_SECONDS", 600.0)
    monkeypatch.setattr(serve_module, "LoopbackServer", server_class)
    with serve_module.CredentialServer(fetch_nothing, ["sandbox-admin"], token=TOKEN) as server:
        program = socket.create_connection(server.address, timeout=30)
        flood: list[socket.socket] = []
        try:
            # The SDK's whole request, token included, is on the wire before anyone else connects.
            program.sendall(request_head("/role/sandbox-admin", token))
            flood = server_class.flood(server.address, 2)  # another local user (a real flood sends thousands)
            server_class.go.set()
            answer = read_all(program)
        finally:
            server_class.go.set()
            program.close()
            for conn in flood:
                conn.close()
    if token == TOKEN:
        assert answer.startswith(b"HTTP/1.0 200"), answer[:60]
    else:  # a complete head proves nothing without this run's token: it made room like any other
        assert answer == b"", answer[:60]


def test_a_request_its_thread_has_read_but_not_yet_admitted_keeps_its_slot() -> None:
    read, go = threading.Event(), threading.Event()

    class AdmitsLate(LoopbackHandler):
        def do_GET(self) -> None:
            read.set()  # the whole head is off the socket, and the handler has not admitted it yet
            assert go.wait(30)
            self.admit()
            self.send_response(204)
            self.end_headers()

    server = LoopbackServer(AdmitsLate, max_connections=2, request_timeout=600.0,
                            proves=lambda head: head.headers.get("Authorization") == TOKEN)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    serving.start()
    try:
        with socket.create_connection(server.server_address[:2], timeout=30) as program:
            program.sendall(request_head("/", TOKEN))
            assert read.wait(30)
            flood = [socket.create_connection(server.server_address[:2], timeout=30) for _ in range(2)]
            try:
                # The second flood connection needed a slot: the first one made room, not the program.
                assert read_all(flood[0]) == b""
            finally:
                go.set()
                for conn in flood:
                    conn.close()
            assert read_all(program).startswith(b"HTTP/1.0 204")
    finally:
        go.set()
        server.shutdown()
        server.server_close()


def no_redirects(url: str) -> str:
    """Where the IdP's authorization answer points the browser (its Location), not followed."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        conn.request("GET", f"{parts.path}?{parts.query}")
        location = conn.getresponse().getheader("Location")
    finally:
        conn.close()
    assert location is not None
    return location


def test_a_flood_cannot_evict_the_browsers_redirect_before_its_thread_runs(
        monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Result], broker: FakeBroker, idp: FakeIssuer,
        env: dict[str, str]) -> None:
    from rolebroker import loopback

    server_class = first_thread_waits(max_connections=2)
    monkeypatch.setattr(loopback, "LoopbackServer", server_class)
    broker.client_config = {"issuer": idp.url, "client_id": idp.client_id, "scopes": "openid email offline_access"}
    signed_out = {k: v for k, v in env.items() if k != "ROLEBROKER_TOKEN"}
    answers: list[bytes] = []

    def browser_then_flood(url: str) -> bool:
        redirect = urlsplit(no_redirects(url))
        address = (redirect.hostname or "", redirect.port or 0)
        with socket.create_connection(address, timeout=30) as browser:
            browser.sendall(f"GET {redirect.path}?{redirect.query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            flood = server_class.flood(address, 2)
            try:
                server_class.go.set()
                answers.append(read_all(browser))
            finally:
                server_class.go.set()
                for conn in flood:
                    conn.close()
        return True

    result = cli("login", environ=signed_out, open_browser=browser_then_flood, login_timeout=30)
    assert len(answers) == 1 and answers[0].startswith(b"HTTP/1.0 200"), answers
    assert result.code == 0, result.err


# --------------------------------------------------------------------------
# F3: one idle connection to the login listener blocks the sign-in, and the
# login then hangs past its own timeout


def browser(url: str, timeout: float) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as answer:
        answer.read()
    return True


def test_an_idle_connection_to_the_login_listener_does_not_block_the_sign_in(
        cli: Callable[..., Result], broker: FakeBroker, idp: FakeIssuer, env: dict[str, str]) -> None:
    broker.client_config = {"issuer": idp.url, "client_id": idp.client_id, "scopes": "openid email offline_access"}
    signed_out = {k: v for k, v in env.items() if k != "ROLEBROKER_TOKEN"}
    answered: list[bool] = []

    def squatter_then_browser(url: str) -> bool:
        redirect = urlsplit(parse_qs(urlsplit(url).query)["redirect_uri"][0])
        squatter = socket.create_connection((redirect.hostname, redirect.port), timeout=30)  # sends nothing
        try:
            answered.append(browser(url, timeout=3))
        except OSError:
            answered.append(False)
        finally:
            squatter.close()  # else today's login never returns
        return answered[-1]

    result = cli("login", environ=signed_out, open_browser=squatter_then_browser, login_timeout=30)
    assert answered == [True], result.err
    assert result.code == 0, result.err


def test_login_stops_at_its_timeout_though_a_connection_to_its_listener_stays_silent(
        cli: Callable[..., Result], broker: FakeBroker, idp: FakeIssuer, env: dict[str, str]) -> None:
    broker.client_config = {"issuer": idp.url, "client_id": idp.client_id, "scopes": "openid email offline_access"}
    signed_out = {k: v for k, v in env.items() if k != "ROLEBROKER_TOKEN"}
    squatters: list[socket.socket] = []

    def squatter_and_no_browser(url: str) -> bool:
        redirect = urlsplit(parse_qs(urlsplit(url).query)["redirect_uri"][0])
        squatters.append(socket.create_connection((redirect.hostname, redirect.port), timeout=30))  # sends nothing
        return True  # "opened", but no redirect will ever come

    results: list[Result] = []
    login = threading.Thread(target=lambda: results.append(
        cli("login", environ=signed_out, open_browser=squatter_and_no_browser, login_timeout=0.2)))
    login.start()
    login.join(timeout=60)  # a hang guard, not a measurement: the login waits 0.2 s
    hung = login.is_alive()
    for squatter in squatters:
        squatter.close()  # lets today's login return
    login.join(timeout=60)
    assert not hung, "login kept waiting for the silent connection after its timeout"
    [result] = results
    assert result.code == 1 and "no sign-in arrived within 0.2 s" in result.err, result.err


# --------------------------------------------------------------------------
# F4: a token echoed by a wrong or hostile server is cut before it is redacted


def serve_status_line_echo(listener: socket.socket) -> None:
    """Answer one request with a malformed status line that carries its Authorization header."""
    conn, _ = listener.accept()
    with conn:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        header = next(line for line in data.split(b"\r\n") if line.lower().startswith(b"authorization:"))
        conn.sendall(b"XYZ " + header.split(b":", 1)[1].strip() + b"\r\n\r\n")


@pytest.mark.parametrize("status", [400, 401, 500])
def test_a_token_echoed_in_the_error_message_never_reaches_stderr(
        cli: Callable[..., Result], broker: FakeBroker, status: int) -> None:
    broker.route("POST", "/v1/credentials", Reply(status, {"Message": "x" * 100 + " Authorization=Bearer " + ALICE}))
    result = cli("credential-process", "--role", "sandbox-admin")
    assert result.code != 0 and result.out == ""
    assert not any(part in result.err for part in fragments(ALICE)), result.err


def test_a_token_echoed_in_a_broken_status_line_never_reaches_stderr(cli: Callable[..., Result]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        echo = threading.Thread(target=serve_status_line_echo, args=(listener,), daemon=True)
        echo.start()
        result = cli("roles", "--url", f"http://127.0.0.1:{listener.getsockname()[1]}")
        echo.join(timeout=10)
    assert result.code != 0 and "broke off the connection" in result.err
    assert not any(part in result.err for part in fragments(ALICE)), result.err


def test_error_lines_redact_before_they_cut() -> None:
    from rolebroker.errors import remember_secret
    from rolebroker.text import error_line

    secret = remember_secret("opaque-" + "s3cr3t" * 20)  # known, but in no shape
    for text in ("x" * 250 + secret, "x" * 250 + "Bearer " + "q" * 80, "x" * 250 + " " + ALICE,
                 "y" * 90 + " key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY and AKIAIOSFODNN7EXAMPLE"):
        shown = error_line(text, 300)
        assert len(shown) <= 300 and "[redacted]" in shown, shown
        for source in (secret, "q" * 80, ALICE, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"):
            assert not any(part in shown for part in fragments(source, 12)), shown
    assert "AKIAIOSFODNN7EXAMPLE" not in error_line("id AKIAIOSFODNN7EXAMPLE")


def test_error_lines_keep_what_only_looks_long() -> None:
    from rolebroker.text import error_line

    for text in ("cannot write /home/JohnSmith/Projects/Build2024/rolebroker/config: permission denied",
                 "role arn:aws:iam::123456789012:role/rolebroker/sandbox-admin refused", "x" * 120,
                 "request id 3f1c2b9e-8d7a-4e6f-9b0c-1a2b3c4d5e6f"):
        assert error_line(text, 500) == text


# Re-attack F3: a secret written with JSON's "\/" or URL-encoded slipped past
# redaction, even one the client remembered. An AWS secret access key and a
# session token have '/', '+' and '=' in them; a Google refresh token starts
# with "1//". All three are secrets the client handles.

SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = ("IQoJb3JpZ2luX2VjEPz//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+abcDEFghiJKLmnoPQRstUVWxyz0123456789"
                 "+/abcdefABCDEFG1234567890abcdefgh/IJKLMNOP==")
REFRESH_TOKEN = "1//0gReAttAck13-L9IrQxYzWvUt/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"


def json_escaped(text: str) -> str:
    """How PHP's json_encode (and others) write a string: every '/' as '\\/'."""
    return json.dumps({"error": "invalid_grant", "detail": text}).replace("/", "\\/")


def url_encoded(text: str) -> str:
    return "POST /token?refresh_token=" + quote(text, safe="")


# Every way the fix covers, each as another program writes it.
ENCODINGS = {
    "json-escaped-slash": json_escaped,
    "json-unicode-slash": lambda text: json.dumps({"detail": text}).replace("/", "\\u002f"),
    "json-unicode-slash-upper": lambda text: json.dumps({"detail": text}).replace("/", "\\u002F"),
    "url-encoded": url_encoded,
    "url-encoded-plus": lambda text: "refresh_token=" + quote_plus(text) + "&grant_type=refresh_token",
    "url-encoded-lower-case": lambda text: "token=" + re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(),
                                                             quote(text, safe="")),
}


def undo_encodings(shown: str) -> str:
    return re.sub(r"\\/|\\u002[fF]|%2[fF]", "/", shown).replace("%2B", "+").replace("%2b", "+").replace(
        "%3D", "=").replace("%3d", "=")


@pytest.mark.parametrize("encode", ENCODINGS.values(), ids=ENCODINGS.keys())
@pytest.mark.parametrize("secret", [SECRET_KEY, SESSION_TOKEN, REFRESH_TOKEN],
                         ids=["secret-key", "session-token", "refresh-token"])
def test_an_encoded_secret_never_reaches_an_error_line(encode: Callable[[str], str], secret: str) -> None:
    from rolebroker.errors import remember_secret
    from rolebroker.text import error_line

    remember_secret(secret)  # the client handled it: it is in the registry, not only in a shape
    shown = error_line(encode(secret), 500)
    assert "[redacted]" in shown
    assert not any(part in undo_encodings(shown) for part in fragments(secret, 12)), shown


@pytest.mark.parametrize("encode", ENCODINGS.values(), ids=ENCODINGS.keys())
@pytest.mark.parametrize("shape", ["secret-key", "session-token"])
def test_an_encoded_key_the_client_never_saw_is_redacted_by_its_shape(encode: Callable[[str], str],
                                                                      shape: str) -> None:
    from rolebroker.text import error_line

    # Never remembered (no other test makes these), so only the shape can find it.
    rng = random.Random(shape)  # noqa: S311 - a fixed, reproducible test value, not a real secret
    alphabet = string.ascii_letters + string.digits + "/+"
    body = "".join(rng.choice(alphabet) for _ in range(38 if shape == "secret-key" else 300))
    secret = "Ab" + body[:-2] + "9/" if shape == "secret-key" else "Ab9/" + body + "+/=="
    shown = error_line(encode(secret), 1000)
    assert "[redacted]" in shown
    assert not any(part in undo_encodings(shown) for part in fragments(secret, 12)), shown


def test_encoded_paths_and_arns_are_not_taken_for_keys() -> None:
    from rolebroker.text import error_line

    for text in ("cannot write /home/JohnSmith/Projects/Build2024/rolebroker/config: permission denied",
                 "arn:aws:iam::123456789012:role/rolebroker/sandbox-admin"):
        for encode in (lambda text: quote(text, safe=""), lambda text: json.dumps(text).replace("/", "\\/"),
                       lambda text: json.dumps(text).replace("/", "\\u002f")):
            assert error_line(encode(text), 500) == encode(text)


# --------------------------------------------------------------------------
# F5: `make run` with a cache directory others can write: a traceback, and the
# stack's servers left running


class StubStack:
    broker_url = "http://127.0.0.1:18999"

    def __init__(self) -> None:
        self.stopped = False

    def start(self) -> StubStack:
        return self

    def stop(self) -> None:
        self.stopped = True

    def banner(self, forgotten: int) -> str:
        return "stub stack"


def test_devstack_run_with_an_unsafe_cache_dir_stops_the_stack_and_says_one_line(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import devstack.__main__ as devstack_main
    from devstack.stack import LocalStack

    cache = tmp_path / "cache" / "rolebroker"
    cache.mkdir(parents=True)
    cache.chmod(0o775)
    assert stat.S_IMODE(cache.stat().st_mode) & 0o020
    stack = StubStack()
    monkeypatch.setattr(LocalStack, "from_environ", classmethod(lambda cls, environ: stack))
    monkeypatch.setattr(devstack_main, "signal", SimpleNamespace(signal=lambda *args: None, SIGTERM=signal.SIGTERM))

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt  # Ctrl-C at once, if the stack ever got that far

    monkeypatch.setattr(devstack_main, "time", SimpleNamespace(sleep=interrupted))
    environ = {"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": os.environ["PATH"]}
    try:
        code = devstack_main.run(environ)
    finally:
        err = capsys.readouterr().err
        assert stack.stopped, err
    assert "Traceback" not in err
    [line] = err.splitlines()  # one line, naming the directory and the fix
    assert code == 1 and line.startswith("devstack: ") and str(cache) in line and "chmod 700" in line, err


# --------------------------------------------------------------------------
# F6: configure makes every AWS call run a copy of the client that others can replace


@pytest.fixture(scope="module")
def built_pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pyz.build(tmp_path_factory.mktemp("pyz") / "rolebroker.pyz")


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o1777], ids=["world-writable", "group-writable", "sticky-tmp"])
def test_configure_never_points_credential_process_at_a_copy_others_can_replace(
        built_pyz: Path, broker: FakeBroker, home: Path, tmp_path: Path, private_tmp: Path, mode: int) -> None:
    shared = private_tmp / "shared"  # under tmp_path, /tmp itself would be the reason
    shared.mkdir()
    shared.chmod(mode)
    pyz = shared / "rolebroker.pyz"
    shutil.copy(built_pyz, pyz)
    nothing_installed = tmp_path / "empty-path"
    nothing_installed.mkdir()
    config = home / ".aws" / "config"
    env = {"HOME": str(home), "PATH": str(nothing_installed), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_CACHE_HOME": str(home / ".cache"), "AWS_CONFIG_FILE": str(config),
           "ROLEBROKER_URL": broker.url, "ROLEBROKER_TOKEN": ALICE}
    done = subprocess.run([sys.executable, str(pyz), "configure"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    written = config.read_text() if config.exists() else ""
    assert str(shared) not in written, done.stderr
    assert str(shared) in done.stderr  # and the person is told which copy, and why
    assert f"{shared} is writable by other users" in done.stderr
    assert "~/.local/bin" in done.stderr and "nothing was written" in done.stderr


def test_configure_never_points_credential_process_at_an_installed_command_others_can_replace(
        cli: Callable[..., Result], broker: FakeBroker, env: dict[str, str], private_tmp: Path) -> None:
    shared = private_tmp / "shared-bin"
    shared.mkdir()
    shared.chmod(0o777)
    result = cli("configure", which=lambda _name: str(shared / "rolebroker"))
    assert result.code == 1 and result.out == ""
    assert f"{shared} is writable by other users" in result.err and "install rolebroker where" in result.err
    assert not Path(env["AWS_CONFIG_FILE"]).exists()


def test_the_replaceable_check_follows_symlinks_and_passes_private_paths(private_tmp: Path) -> None:
    from rolebroker.files import replaceable_by_others

    mine = private_tmp / "bin"
    mine.mkdir(mode=0o700)
    (mine / "rolebroker.pyz").write_text("")
    assert replaceable_by_others(str(mine / "rolebroker.pyz"), os.getuid) is None
    shared = private_tmp / "shared"
    shared.mkdir()
    (shared / "rolebroker.pyz").write_text("")
    (mine / "linked.pyz").symlink_to(shared / "rolebroker.pyz")
    assert replaceable_by_others(str(mine / "linked.pyz"), os.getuid) is None
    shared.chmod(0o1777)
    assert replaceable_by_others(str(mine / "linked.pyz"), os.getuid) == f"{shared} is writable by other users"
    assert replaceable_by_others(str(mine / "linked.pyz"), None) is None  # no uid checks (Windows)


def test_a_private_directory_inside_a_sticky_one_is_no_way_in(private_tmp: Path) -> None:
    """A checkout or virtualenv of ours under /tmp (as CI makes them) is fine; a copy lying in /tmp itself is not."""
    from rolebroker.files import replaceable_by_others

    sticky = private_tmp / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    mine = sticky / "checkout" / "bin"
    mine.mkdir(parents=True, mode=0o755)
    (mine / "rolebroker").write_text("")
    assert replaceable_by_others(str(mine / "rolebroker"), os.getuid) is None
    (sticky / "rolebroker.pyz").write_text("")
    assert replaceable_by_others(str(sticky / "rolebroker.pyz"), os.getuid) == f"{sticky} is writable by other users"
