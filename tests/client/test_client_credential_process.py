"""``credential-process`` through ``main``: exactly one JSON document, or one line on stderr."""

from __future__ import annotations

import io
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rolebroker import errors, transport

from tests.client.fakes import ALICE, BOB, FakeBroker, Reply, Result, Seen, cache_files, iso, make_jwt, rolebroker

CP = ("credential-process", "--role", "sandbox-admin")


def assert_one_document(result: Result) -> dict[str, Any]:
    assert result.code == 0, result.err
    assert result.err == ""
    assert result.out.endswith("}\n")
    assert result.out.count("\n") == 1
    doc = json.loads(result.out)
    assert list(doc) == ["Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"]
    assert doc["Version"] == 1
    return dict(doc)


def assert_one_line_failure(result: Result, *secrets: str) -> str:
    assert result.code != 0
    assert result.out == ""
    assert len(result.err_lines) == 1, result.err
    line = result.err_lines[0]
    assert line.startswith("rolebroker: ")
    assert "Traceback" not in result.err
    for secret in (ALICE, *secrets):
        assert secret not in result.err
    return line


def test_prints_the_credentials_document(cli: Callable[..., Result], broker: FakeBroker) -> None:
    doc = assert_one_document(cli(*CP))
    assert doc["AccessKeyId"] == "FAKEKEY0000000000001"
    (call,) = broker.seen
    assert (call.method, call.path) == ("POST", "/v1/credentials")
    assert call.json() == {"role": "sandbox-admin"}
    assert call.headers["authorization"] == f"Bearer {ALICE}"
    assert call.headers["user-agent"] == f"rolebroker-client/{rolebroker.__version__}"


def test_second_call_is_served_from_the_cache(cli: Callable[..., Result], broker: FakeBroker,
                                              env: dict[str, str]) -> None:
    first = cli(*CP)
    second = cli(*CP)
    assert first.out == second.out
    assert broker.count("POST", "/v1/credentials") == 1
    assert len(cache_files(env)) == 1
    cached = Path(env["XDG_CACHE_HOME"], "rolebroker", cache_files(env)[0]).read_text()
    assert ALICE not in cached  # the token is never written to the cache


def test_another_identity_gets_its_own_entry(cli: Callable[..., Result], broker: FakeBroker,
                                             env: dict[str, str]) -> None:
    alice = assert_one_document(cli(*CP))
    bob = assert_one_document(cli(*CP, environ={**env, "ROLEBROKER_TOKEN": BOB}))
    assert alice["AccessKeyId"] != bob["AccessKeyId"]
    assert broker.count("POST", "/v1/credentials") == 2
    assert len(cache_files(env)) == 2


def test_duration_is_sent_and_keys_the_cache(cli: Callable[..., Result], broker: FakeBroker) -> None:
    assert_one_document(cli(*CP, "--duration", "900"))
    assert_one_document(cli(*CP))
    assert [s.json() for s in broker.seen] == [{"role": "sandbox-admin", "duration_seconds": 900},
                                              {"role": "sandbox-admin"}]


def test_no_cache_always_asks_and_writes_nothing(cli: Callable[..., Result], broker: FakeBroker,
                                                 env: dict[str, str]) -> None:
    assert_one_document(cli(*CP, "--no-cache"))
    assert cache_files(env) == []
    cached = assert_one_document(cli(*CP))
    uncached = assert_one_document(cli(*CP, "--no-cache"))
    assert cached != uncached
    assert broker.count("POST", "/v1/credentials") == 3


def test_base_path_of_the_url_is_kept(cli: Callable[..., Result], broker: FakeBroker) -> None:
    assert_one_document(cli(*CP, "--url", broker.url + "/api/"))
    assert broker.seen[0].path == "/api/v1/credentials"


def test_url_from_flag_then_environment_then_config_file(cli: Callable[..., Result], broker: FakeBroker,
                                                         env: dict[str, str], home: Path) -> None:
    config = home / "rb.ini"
    config.write_text(f"[default]\nurl = {broker.url}/api\n")
    base = {k: v for k, v in env.items() if k != "ROLEBROKER_URL"} | {"ROLEBROKER_CONFIG": str(config)}
    assert_one_document(cli(*CP, "--no-cache", environ=base))
    assert_one_document(cli(*CP, "--no-cache", environ=base | {"ROLEBROKER_URL": broker.url}))
    assert_one_document(cli(*CP, "--no-cache", "--url", broker.url + "/flag",
                            environ=base | {"ROLEBROKER_URL": "http://127.0.0.1:1"}))
    assert [s.path for s in broker.seen] == ["/api/v1/credentials", "/v1/credentials", "/flag/v1/credentials"]


def test_missing_url_says_how_to_set_it(cli: Callable[..., Result], env: dict[str, str]) -> None:
    environ = {k: v for k, v in env.items() if k != "ROLEBROKER_URL"}
    line = assert_one_line_failure(cli(*CP, environ=environ))
    assert "--url" in line
    assert "ROLEBROKER_URL" in line


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_unreachable_broker_is_named(cli: Callable[..., Result]) -> None:
    url = closed_port_url()
    line = assert_one_line_failure(cli(*CP, "--url", url))
    assert line == f"rolebroker: cannot reach the broker at {url} (connection refused)"


def test_slow_broker_times_out(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.stall("POST", "/v1/credentials")
    line = assert_one_line_failure(cli(*CP, "--timeout", "0.3"))
    assert line == f"rolebroker: the broker at {broker.url} did not answer within 0.3 s (try again, or raise --timeout)"


def error(status: int, message: str, request_id: str = "1234", code: str = "Error") -> Reply:
    return Reply(status, {"Code": code, "Message": message, "RequestId": request_id})


@pytest.mark.parametrize(("reply", "expected"), [
    (error(403, "requires MFA", code="ForbiddenError"),
     "rolebroker: access denied for role sandbox-admin: requires MFA (request id 1234)"),
    (error(403, "access denied for role sandbox-admin: not in platform-admins"),
     "rolebroker: access denied for role sandbox-admin: not in platform-admins (request id 1234)"),
    (error(401, "token expired", code="UnauthorizedError"),
     "rolebroker: the broker rejected your token: token expired (request id 1234); set a fresh ROLEBROKER_TOKEN, "
     "or unset it and run `rolebroker login`"),
    (error(404, "unknown role sandbox-admin"), "rolebroker: unknown role sandbox-admin (request id 1234)"),
    (error(429, "slow down"), "rolebroker: slow down (request id 1234); the broker is busy, try again in a moment"),
    (error(500, "unexpected error; report request id r-500 to the operators", "r-500"),
     "rolebroker: unexpected error; report request id r-500 to the operators (HTTP 500, request id r-500)"),
    (error(502, "the trust policy of arn:aws:iam::2:role/X does not trust the broker", "r-502"),
     "rolebroker: the trust policy of arn:aws:iam::2:role/X does not trust the broker (HTTP 502, request id r-502)"),
    (Reply(503, {"message": "Service Unavailable"}), "rolebroker: Service Unavailable (HTTP 503)"),
    (Reply(502, "<html><body>Bad Gateway</body></html>", "text/html"),
     "rolebroker: unexpected answer from broker (HTTP 502, text/html)"),
    (Reply(200, b"", "application/json"), "rolebroker: unexpected answer from broker (HTTP 200, empty body)"),
    (Reply(200, b"{\"credentials\": {", "application/json"),
     "rolebroker: unexpected answer from broker (HTTP 200, application/json)"),
    (Reply(200, b"\x00\xff garbage", ""), "rolebroker: unexpected answer from broker (HTTP 200, no content type)"),
    (Reply(200, {"role": "sandbox-admin"}), "rolebroker: unexpected answer from broker (HTTP 200, application/json: "
                                            "no credentials)"),
    (Reply(200, {"credentials": {"Version": 2}}), "rolebroker: unexpected answer from broker (HTTP 200, "
                                                  "application/json: credentials Version is not 1)"),
    (Reply(302, b"", "text/html", {"Location": "/elsewhere"}),
     "rolebroker: unexpected answer from broker (HTTP 302, empty body)"),
])
def test_broker_failures_are_one_line(cli: Callable[..., Result], broker: FakeBroker, reply: Reply,
                                      expected: str) -> None:
    broker.route("POST", "/v1/credentials", reply)
    line = assert_one_line_failure(cli(*CP))
    assert line == expected


def test_redirect_is_not_followed_with_the_token(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("POST", "/v1/credentials", Reply(307, b"", "", {"Location": f"{broker.url}/stolen"}))
    assert_one_line_failure(cli(*CP))
    assert [s.path for s in broker.seen] == ["/v1/credentials"]


def expiring_credentials(seconds: float) -> Callable[[Seen], Reply]:
    def reply(request: Seen) -> Reply:
        creds = {"Version": 1, "AccessKeyId": "FAKEEXPIRINGKEY00001", "SecretAccessKey": "expiring-secret-key-123",
                 "SessionToken": "expiring-session-token-123", "Expiration": iso(time.time() + seconds)}
        return Reply(200, {"role": "sandbox-admin", "credentials": creds})

    return reply


@pytest.mark.parametrize(("seconds", "words"), [(-120, "that expired at"), (20, "that expire in")])
def test_expired_credentials_from_the_broker(cli: Callable[..., Result], broker: FakeBroker, env: dict[str, str],
                                             seconds: float, words: str) -> None:
    broker.route("POST", "/v1/credentials", expiring_credentials(seconds))
    line = assert_one_line_failure(cli(*CP), "FAKEEXPIRINGKEY00001", "expiring-secret-key-123",
                                   "expiring-session-token-123")
    assert words in line
    assert "clock" in line
    assert cache_files(env) == []


def test_short_lived_credentials_are_printed_but_not_cached(cli: Callable[..., Result], broker: FakeBroker,
                                                            env: dict[str, str]) -> None:
    broker.route("POST", "/v1/credentials", expiring_credentials(600))
    assert_one_document(cli(*CP))
    assert cache_files(env) == []


def test_no_token_fails_at_once_without_network_or_browser(cli: Callable[..., Result], broker: FakeBroker,
                                                           env: dict[str, str]) -> None:
    opened: list[str] = []
    environ = {k: v for k, v in env.items() if k != "ROLEBROKER_TOKEN"}
    line = assert_one_line_failure(cli(*CP, environ=environ, open_browser=opened.append, login_timeout=0.01))
    assert "rolebroker login" in line
    assert broker.seen == []
    assert opened == []


def test_token_file_is_read(cli: Callable[..., Result], broker: FakeBroker, env: dict[str, str],
                            tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(BOB + "\n")
    environ = {k: v for k, v in env.items() if k != "ROLEBROKER_TOKEN"}
    assert_one_document(cli(*CP, "--token-file", str(token_file), environ=environ))
    assert broker.seen[0].headers["authorization"] == f"Bearer {BOB}"
    line = assert_one_line_failure(cli(*CP, "--token-file", str(tmp_path / "missing"), environ=environ))
    assert "cannot read token file" in line


def test_token_command_is_run_without_a_shell(cli: Callable[..., Result], broker: FakeBroker, env: dict[str, str],
                                              home: Path) -> None:
    config = home / ".config" / "rolebroker" / "config"
    config.parent.mkdir(parents=True)
    command = f"{sys.executable} -c \"print('  {BOB}  ')\""
    config.write_text(f"[default]\ntoken_command = {command}\n")
    environ = {k: v for k, v in env.items() if k != "ROLEBROKER_TOKEN"}
    assert_one_document(cli(*CP, environ=environ))
    assert broker.seen[0].headers["authorization"] == f"Bearer {BOB}"


def test_failing_token_command_reports_its_last_line(cli: Callable[..., Result], env: dict[str, str],
                                                     home: Path) -> None:
    config = home / "rb.ini"
    failing = "import sys; sys.stderr.write('warming up\\nyou are not logged in to the IdP\\n'); sys.exit(3)"
    config.write_text(f'[default]\ntoken_command = {sys.executable} -c "{failing}"\n')
    environ = {k: v for k, v in env.items() if k != "ROLEBROKER_TOKEN"} | {"ROLEBROKER_CONFIG": str(config)}
    line = assert_one_line_failure(cli(*CP, environ=environ))
    assert line == "rolebroker: token_command failed (exit 3): you are not logged in to the IdP"


def test_environment_token_wins_over_token_command(cli: Callable[..., Result], broker: FakeBroker,
                                                   env: dict[str, str], home: Path) -> None:
    config = home / "rb.ini"
    config.write_text("[default]\ntoken_command = /nonexistent/never-run\n")
    assert_one_document(cli(*CP, environ=env | {"ROLEBROKER_CONFIG": str(config)}))
    assert broker.seen[0].headers["authorization"] == f"Bearer {ALICE}"


def test_bad_config_file_is_one_line(cli: Callable[..., Result], env: dict[str, str], home: Path) -> None:
    config = home / "rb.ini"
    config.write_text("[default]\nurll = https://typo.example.com\n")
    environ = {k: v for k, v in env.items() if k not in ("ROLEBROKER_URL", "ROLEBROKER_TOKEN")}
    line = assert_one_line_failure(cli(*CP, environ=environ | {"ROLEBROKER_CONFIG": str(config)}))
    assert "unknown setting 'urll'" in line


def test_plain_http_to_another_host_is_refused(cli: Callable[..., Result]) -> None:
    line = assert_one_line_failure(cli(*CP, "--url", "http://broker.example.com"))
    assert line == "rolebroker: refusing to send a token to http://broker.example.com over plain http; use https"


def test_unexpected_errors_are_one_redacted_line(cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError(f"boom while holding {ALICE}\nsecond line")

    monkeypatch.setattr(rolebroker.CredentialCache, "key", staticmethod(explode))
    line = assert_one_line_failure(cli(*CP))
    assert line.startswith("rolebroker: unexpected error (RuntimeError: boom while holding [redacted] second line)")


def test_usage_errors_are_one_line_with_exit_2(cli: Callable[..., Result]) -> None:
    result = cli("credential-process")
    assert result.code == 2
    assert result.out == ""
    assert len(result.err_lines) == 1
    assert "--role" in result.err


def test_help_goes_to_stdout(cli: Callable[..., Result]) -> None:
    result = cli("credential-process", "--help")
    assert result.code == 0
    assert "--no-cache" in result.out


@pytest.mark.parametrize("argv", [
    ["credential-process", "--role", "r"],
    ["credential-process", "--url", "https://b.example.com/api", "--role", "r", "--duration", "900"],
    ["credential-process", "--role", "r", "--duration", "1h30m"],
    ["--url=https://b.example.com", "credential-process", "--role=r", "--no-cache", "--timeout", "2.5"],
    ["--token-file", "/t", "credential-process", "--role", "r", "--token-file=/u"],
    ["credential-process", "--role", "r", "--url", "https://a.example.com", "--url", "https://b.example.com"],
])
def test_fast_parser_agrees_with_argparse(argv: list[str]) -> None:
    fast = rolebroker.parse_fast(argv)
    assert fast is not None
    full = rolebroker.Options()
    rolebroker.build_parser(sys.stdout, sys.stderr).parse_args(argv, namespace=full)
    assert fast.values() == full.values()


@pytest.mark.parametrize("argv", [
    ["credential-process"],
    ["credential-process", "--role"],
    ["credential-process", "--rol", "r"],
    ["credential-process", "--role", "r", "--duration", "soon"],
    ["credential-process", "--role", "r", "--timeout", "0"],
    ["credential-process", "--role", "r", "--help"],
    ["--role", "r", "credential-process"],
    ["roles"],
])
def test_fast_parser_leaves_anything_unusual_to_argparse(argv: list[str]) -> None:
    assert rolebroker.parse_fast(argv) is None


def test_login_session_expired_without_refresh_token(cli: Callable[..., Result], broker: FakeBroker,
                                                     env: dict[str, str], home: Path) -> None:
    store = rolebroker.LoginStore(str(home / ".config" / "rolebroker" / "tokens.json"))
    stale = make_jwt({"iss": "https://issuer.example.com", "sub": "alice", "exp": int(time.time()) - 3600})
    store.save({"version": 1, "brokers": {broker.url: "https://issuer.example.com"},
                "issuers": {"https://issuer.example.com": {"id_token": stale}}})
    environ = {k: v for k, v in env.items() if k != "ROLEBROKER_TOKEN"}
    line = assert_one_line_failure(cli(*CP, environ=environ), stale)
    assert line == "rolebroker: your sign-in has expired: run `rolebroker login`"
    assert broker.seen == []


# --------------------------------------------------------------------------
# Issue 9, item 6: plain http only to this machine, decided on the parsed host.


@pytest.mark.parametrize("url", [
    "http://127.attacker.example",
    "http://127.0.0.1.nip.io",
    "http://localhost.attacker.example",
    "http://localhost@attacker.example",
    "http://[::ffff:7f00:1]",  # not ::1, and not written like 127.0.0.1 either
    "http://attacker.example#@127.0.0.1",
])
def test_plain_http_to_a_look_alike_host_is_refused(cli: Callable[..., Result], url: str) -> None:
    line = assert_one_line_failure(cli(*CP, "--url", url))
    assert line == f"rolebroker: refusing to send a token to {url} over plain http; use https"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "[::1]"])
def test_plain_http_to_this_machine_is_allowed(cli: Callable[..., Result], host: str) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind(("::1" if ":" in host else "127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://{host}:{port}"
    line = assert_one_line_failure(cli(*CP, "--url", url))  # nothing listens: the request was tried
    assert line.startswith(f"rolebroker: cannot reach the broker at {url} ("), line


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.255.255.254", True), ("::1", True), ("localhost", True),
    ("127.attacker.example", False), ("127.0.0.1.nip.io", False), ("128.0.0.1", False), ("::2", False),
    ("localhost.", False), ("", False), ("0.0.0.0", False),  # noqa: S104 - a host name under test, nothing binds
])
def test_is_loopback_parses_the_host(host: str, loopback: bool) -> None:
    assert transport.is_loopback(host) is loopback


# --------------------------------------------------------------------------
# Issue 9, item 7, through the command line: the default owner check is on,
# and directories other users can write to are refused in one line.


def cache_path(env: dict[str, str]) -> Path:
    return Path(env["XDG_CACHE_HOME"], "rolebroker")


def test_default_runtime_checks_the_owner_and_mode_of_cache_files(
        cli: Callable[..., Result], broker: FakeBroker, env: dict[str, str]) -> None:
    if sys.platform != "win32":
        assert rolebroker.Runtime().getuid is not None
    first = assert_one_document(cli(*CP))
    (name,) = cache_files(env)
    (cache_path(env) / name).chmod(0o644)  # readable by others: leaked, never served
    second = assert_one_document(cli(*CP))
    assert first["AccessKeyId"] != second["AccessKeyId"]
    assert broker.count("POST", "/v1/credentials") == 2


def test_cache_directory_of_another_user_is_one_line(cli: Callable[..., Result], broker: FakeBroker,
                                                     env: dict[str, str]) -> None:
    assert_one_document(cli(*CP))
    directory = cache_path(env)
    line = assert_one_line_failure(cli(*CP, getuid=lambda: os.getuid() + 1))
    assert line == (f"rolebroker: {directory} belongs to another user (uid {os.getuid()}), so rolebroker will not "
                    f"use it; move it away (mv {directory} {directory}.untrusted) and try again")
    assert broker.count("POST", "/v1/credentials") == 1


def test_cache_directory_writable_by_others_is_one_line(cli: Callable[..., Result], broker: FakeBroker,
                                                        env: dict[str, str]) -> None:
    assert_one_document(cli(*CP))
    directory = cache_path(env)
    directory.chmod(0o777)
    line = assert_one_line_failure(cli(*CP))
    assert line == (f"rolebroker: {directory} is writable by other users, so rolebroker will not use it; "
                    f"run `chmod 700 {directory}` and try again")


def test_config_file_writable_by_others_is_refused(cli: Callable[..., Result], broker: FakeBroker,
                                                   env: dict[str, str], home: Path) -> None:
    # token_command runs a program: a config others can edit would run theirs.
    config = home / ".config" / "rolebroker" / "config"
    config.parent.mkdir(parents=True)
    config.write_text(f"[default]\ntoken_command = {sys.executable} -c \"print('{BOB}')\"\n")
    environ = {k: v for k, v in env.items() if k != "ROLEBROKER_TOKEN"}
    config.chmod(0o666)
    line = assert_one_line_failure(cli(*CP, environ=environ))
    assert line == (f"rolebroker: {config} is writable by other users, so rolebroker will not use it; "
                    f"run `chmod 600 {config}` and try again")
    config.chmod(0o644)
    config.parent.chmod(0o777)
    line = assert_one_line_failure(cli(*CP, environ=environ))
    assert line == (f"rolebroker: {config.parent} is writable by other users, so rolebroker will not use it; "
                    f"run `chmod 700 {config.parent}` and try again")
    assert broker.seen == []


def test_token_directory_writable_by_others_is_refused(cli: Callable[..., Result], broker: FakeBroker,
                                                       env: dict[str, str], home: Path) -> None:
    directory = home / ".config" / "rolebroker"
    store = rolebroker.LoginStore(str(directory / "tokens.json"))
    store.save({"version": 1, "brokers": {broker.url: "https://issuer.example.com"},
                "issuers": {"https://issuer.example.com": {"id_token": ALICE}}})
    environ = {k: v for k, v in env.items() if k != "ROLEBROKER_TOKEN"}
    assert_one_document(cli(*CP, environ=environ))
    directory.chmod(0o777)
    line = assert_one_line_failure(cli(*CP, "--no-cache", environ=environ))
    assert line == (f"rolebroker: {directory} is writable by other users, so rolebroker will not use it; "
                    f"run `chmod 700 {directory}` and try again")
    assert broker.count("POST", "/v1/credentials") == 1


# --------------------------------------------------------------------------
# Issue 9, mutation survivors: keys, fetched or cached, never reach stderr.


class BrokenStdout(io.StringIO):
    """A stdout that fails with what it was given, as a careless library might."""

    def write(self, text: str) -> int:
        raise ValueError(f"cannot write {text!r}")


@pytest.mark.parametrize("source", ["fetched", "cached"])
def test_keys_are_redacted_from_unexpected_errors(cli: Callable[..., Result], broker: FakeBroker,
                                                  monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    if source == "cached":
        assert_one_document(cli(*CP))
    monkeypatch.setattr(errors, "_SECRETS", set())  # a fresh process: nothing remembered yet
    result = cli(*CP, stdout=BrokenStdout())
    line = assert_one_line_failure(result, "secret-1-" + "s" * 30, "session-1-" + "t" * 60)
    assert line.startswith("rolebroker: unexpected error (ValueError: cannot write ")
    assert "[redacted]" in line
    assert broker.count("POST", "/v1/credentials") == 1


# --------------------------------------------------------------------------
# Regexes and numbers: ASCII only, no trailing newline.


@pytest.mark.parametrize("argv", [
    ["credential-process", "--role", "r", "--duration", "٩٠٠"],
    ["credential-process", "--role", "r", "--duration", "9_00"],
    ["credential-process", "--role", "r", "--duration", " 900"],
    ["credential-process", "--role", "r", "--timeout", "١"],
    ["credential-process", "--role", "r", "--timeout", "inf"],
    ["credential-process", "--role", "r", "--timeout", "nan"],
])
def test_numbers_on_the_command_line_are_plain_ascii(cli: Callable[..., Result], broker: FakeBroker,
                                                     argv: list[str]) -> None:
    assert rolebroker.parse_fast(argv) is None
    result = cli(*argv)
    assert result.code == 2, result.err
    assert broker.seen == []


@pytest.mark.parametrize("text", ["2030-01-01T00:00:00.١٢٣Z", "2030-01-01T00:00:00+٠١٠٠", "2030-01-01T00:00:00+0100\n",
                                  "soon", ""])
def test_timestamps_are_ascii_iso_8601(text: str) -> None:
    with pytest.raises(ValueError, match="not an ISO 8601 time"):
        rolebroker.parse_timestamp(text)


@pytest.mark.parametrize(("text", "epoch"), [
    ("2030-01-01T00:00:00Z", 1893456000.0), ("2030-01-01T01:00:00+0100", 1893456000.0),
    ("2030-01-01T00:00:00.5+00:00", 1893456000.5), ("2030-01-01T00:00:00.123456789Z", 1893456000.123456),
])
def test_timestamps_in_every_form_the_broker_may_send(text: str, epoch: float) -> None:
    assert rolebroker.parse_timestamp(text) == pytest.approx(epoch)
