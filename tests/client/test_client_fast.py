"""The hot path (``rolebroker._fast``): it answers a plain cache hit exactly as the full client
would, and hands everything else over. It never prints an error of its own."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rolebroker import _fast

from tests.client.fakes import ALICE, BOB, FakeBroker, Result, make_jwt

CP = ["credential-process", "--role", "sandbox-admin"]


def fast(env: dict[str, str], *args: str, **kwargs: Any) -> str | None:
    return _fast.cached_document([*CP, *args], env, **kwargs)


def warm(cli: Callable[..., Result], *args: str, environ: dict[str, str] | None = None) -> str:
    result = cli(*CP, *args, environ=environ)
    assert result.code == 0, result.err
    return result.out


def test_a_hit_is_what_the_full_client_prints(cli: Callable[..., Result], broker: FakeBroker,
                                              env: dict[str, str]) -> None:
    assert fast(env) is None  # cold
    printed = warm(cli)
    assert fast(env) == printed
    assert fast(env, "--url", broker.url + "/") == printed
    assert _fast.cached_document(["--url", broker.url, *CP], {**env, "ROLEBROKER_URL": ""}) == printed
    assert broker.count("POST", "/v1/credentials") == 1


@pytest.mark.parametrize("args", [["--no-cache"], ["--duration", "900"], ["--role", "prod-admin"], ["--help"],
                                  ["--rol", "x"], ["--url", "http://127.0.0.1:1"]])
def test_anything_but_the_same_plain_request_is_handed_over(cli: Callable[..., Result], env: dict[str, str],
                                                            args: list[str]) -> None:
    warm(cli)
    assert fast(env, *args) is None


def test_another_identity_is_a_miss(cli: Callable[..., Result], env: dict[str, str]) -> None:
    warm(cli)
    assert fast({**env, "ROLEBROKER_TOKEN": BOB}) is None


def test_without_a_url_the_full_client_reads_the_config_file(cli: Callable[..., Result],
                                                             env: dict[str, str]) -> None:
    warm(cli)
    assert fast({k: v for k, v in env.items() if k != "ROLEBROKER_URL"}) is None


def test_entries_inside_the_refresh_window_are_handed_over(cli: Callable[..., Result], env: dict[str, str]) -> None:
    warm(cli)  # the fake broker's credentials last an hour
    assert fast(env, clock=lambda: time.time() + 3600 - 16 * 60) is not None
    assert fast(env, clock=lambda: time.time() + 3600 - 14 * 60) is None


def cache_dir(env: dict[str, str]) -> Path:
    return Path(env["XDG_CACHE_HOME"], "rolebroker")


def test_untrusted_cache_is_handed_over_and_the_full_client_says_why(cli: Callable[..., Result],
                                                                     env: dict[str, str]) -> None:
    warm(cli)
    assert fast(env, getuid=lambda: os.getuid() + 1) is None
    cache_dir(env).chmod(0o777)
    assert fast(env) is None
    result = cli(*CP)
    assert result.code == 1 and "is writable by other users" in result.err
    cache_dir(env).chmod(0o700)
    (entry,) = cache_dir(env).glob("*.json")
    entry.chmod(0o644)
    assert fast(env) is None


def test_token_file_hit(cli: Callable[..., Result], env: dict[str, str], tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(BOB + "\n")
    environ = {k: v for k, v in env.items() if k != "ROLEBROKER_TOKEN"}
    printed = warm(cli, "--token-file", str(token_file), environ=environ)
    assert fast(environ, "--token-file", str(token_file)) == printed
    assert fast(env, "--token-file", str(token_file)) is None  # ROLEBROKER_TOKEN (alice) wins, and missed


def signed_in(broker: FakeBroker, home: Path, env: dict[str, str], exp: float) -> dict[str, str]:
    from rolebroker.tokens import LoginStore

    token = make_jwt({"iss": "https://issuer.example.com", "sub": "alice", "exp": exp})
    LoginStore(str(home / ".config" / "rolebroker" / "tokens.json")).save(
        {"version": 1, "brokers": {broker.url: "https://issuer.example.com"},
         "issuers": {"https://issuer.example.com": {"id_token": token}}})
    return {k: v for k, v in env.items() if k != "ROLEBROKER_TOKEN"}


def test_login_store_hit(cli: Callable[..., Result], broker: FakeBroker, env: dict[str, str], home: Path) -> None:
    environ = signed_in(broker, home, env, time.time() + 3600)
    printed = warm(cli, environ=environ)
    assert fast(environ) == printed
    with FakeBroker() as other:  # the sign-in is bound to its broker
        assert fast(environ, "--url", other.url) is None


def test_login_token_about_to_expire_is_left_to_the_full_client_to_refresh(
        cli: Callable[..., Result], broker: FakeBroker, env: dict[str, str], home: Path) -> None:
    broker.ttl = 7200  # the credentials outlive the sign-in's token
    environ = signed_in(broker, home, env, time.time() + 3600)
    warm(cli, environ=environ)
    assert fast(environ, clock=lambda: time.time() + 3600 - 90) is not None
    assert fast(environ, clock=lambda: time.time() + 3600 - 30) is None


def test_token_directory_others_can_write_to_is_left_to_the_full_client(
        cli: Callable[..., Result], broker: FakeBroker, env: dict[str, str], home: Path) -> None:
    environ = signed_in(broker, home, env, time.time() + 3600)
    warm(cli, environ=environ)
    (home / ".config" / "rolebroker").chmod(0o777)
    assert fast(environ) is None
    assert fast(environ, getuid=None) is not None  # as on Windows: no uid checks at all


def test_config_file_with_a_token_command_is_left_to_the_full_client(
        cli: Callable[..., Result], broker: FakeBroker, env: dict[str, str], home: Path) -> None:
    environ = signed_in(broker, home, env, time.time() + 3600)
    printed = warm(cli, environ=environ)
    config = home / ".config" / "rolebroker" / "config"
    config.write_text(f"[default]\nurl = {broker.url}\n")
    assert fast(environ) == printed
    config.write_text("[default]\ntoken_command = /bin/false\n")
    assert fast(environ) is None
    config.write_text("[default]\nurll = typo\n")
    assert fast(environ) is None
    assert "unknown setting 'urll'" in cli(*CP, environ=environ).err


def test_environment_token_needs_no_config_file_at_all(cli: Callable[..., Result], env: dict[str, str],
                                                       home: Path) -> None:
    printed = warm(cli)
    config = home / ".config" / "rolebroker" / "config"
    config.parent.mkdir(parents=True)
    config.write_text("[default]\nurll = typo\n")  # the full client does not read it either
    assert fast(env) == printed
    assert cli(*CP).out == printed


@pytest.mark.parametrize(("argv", "expected"), [
    (["credential-process", "--role", "r"], {"role": "r"}),
    (["--url=https://b", "credential-process", "--role=r", "--no-cache", "--timeout", "2.5", "--duration", "900"],
     {"url": "https://b", "role": "r", "no_cache": True, "timeout": 2.5, "duration": 900}),
    (["credential-process", "--role", "r", "--role", "s"], {"role": "s"}),
])
def test_parse(argv: list[str], expected: dict[str, Any]) -> None:
    assert _fast.parse_credential_process(argv) == expected


def test_main_prints_a_hit_and_hands_the_rest_to_the_full_client(
        cli: Callable[..., Result], env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    printed = warm(cli)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    handed: list[list[str]] = []

    def full(args: list[str]) -> int:
        handed.append(args)
        return 7

    import rolebroker.cli

    monkeypatch.setattr(rolebroker.cli, "main", full)
    assert _fast.main(CP) == 0
    assert capsys.readouterr().out == printed
    assert handed == []
    assert _fast.main(["roles"]) == 7
    assert handed == [["roles"]]


def test_the_fast_path_never_writes_an_error(cli: Callable[..., Result], env: dict[str, str],
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in {**env, "ROLEBROKER_TOKEN": ALICE, "XDG_CACHE_HOME": "/nonexistent"}.items():
        monkeypatch.setenv(name, value)
    import rolebroker.cli

    monkeypatch.setattr(rolebroker.cli, "main", lambda args: 3)
    assert _fast.main(CP) == 3
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("data", [b"", b"a", b"ab", b"abc", b"abcd", bytes(range(256)),
                                  b'{"iss":"x","sub":"\xc3\xa9"}'])
def test_base64url_decoding_matches_the_standard_library(data: bytes) -> None:
    import base64

    encoded = base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert _fast.b64url_decode(encoded) == data
    assert _fast.b64url_decode(encoded + "=" * (-len(encoded) % 4)) == data


@pytest.mark.parametrize("text", ["a", "abcde", "ab+c", "ab/c", "ab c", "é"])
def test_base64url_decoding_refuses_what_is_not_base64url(text: str) -> None:
    with pytest.raises(ValueError):
        _fast.b64url_decode(text)


def test_private_files_are_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 200_000)
    path.chmod(0o600)
    assert _fast.read_private(str(path), os.getuid) == b"x" * 200_000
    path.chmod(0o640)
    assert _fast.read_private(str(path), os.getuid) is None
    assert _fast.read_private(str(tmp_path), os.getuid) is None  # a directory
    assert _fast.read_private(str(tmp_path / "missing"), os.getuid) is None
