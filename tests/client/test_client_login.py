"""``login``/``logout`` against a fake OIDC issuer, and the silent refresh the other commands do."""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from rolebroker import tokens

from tests.client.fakes import ALICE, FakeBroker, FakeIssuer, Reply, Result, Seen, cache_files, rolebroker

CP = ("credential-process", "--role", "sandbox-admin")


def browser(url: str) -> bool:
    """What a browser does: GET the authorize URL and follow the IdP's redirect to the loopback callback."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as answer:
        answer.read()
    return True


@pytest.fixture
def signed_out(env: dict[str, str], broker: FakeBroker, idp: FakeIssuer) -> dict[str, str]:
    broker.client_config = {"issuer": idp.url, "client_id": idp.client_id, "scopes": "openid email offline_access"}
    return {k: v for k, v in env.items() if k != "ROLEBROKER_TOKEN"}


def tokens_file(env: dict[str, str]) -> Path:
    return Path(env["XDG_CONFIG_HOME"]) / "rolebroker" / "tokens.json"


def stored(env: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(tokens_file(env).read_text())
    return data


def login(cli: Callable[..., Result], environ: dict[str, str], **runtime: Any) -> Result:
    runtime.setdefault("open_browser", browser)
    runtime.setdefault("login_timeout", 30)
    return cli("login", environ=environ, **runtime)


def test_login_stores_tokens_privately_and_commands_use_them(
        cli: Callable[..., Result], broker: FakeBroker, idp: FakeIssuer, signed_out: dict[str, str]) -> None:
    result = login(cli, signed_out)
    assert result.code == 0, result.err
    assert result.out == f"signed in as alice@example.com at {idp.url}\n"
    assert f"{idp.url}/authorize?" in result.err
    assert idp.grants == ["authorization_code"]

    path = tokens_file(signed_out)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    data = stored(signed_out)
    entry = data["issuers"][idp.url]
    assert entry["id_token"] == idp.issued_id_tokens[-1]
    assert entry["refresh_token"] in idp.refresh_tokens
    assert data["brokers"] == {broker.url: idp.url}

    assert cli("roles", environ=signed_out).code == 0
    assert broker.seen[-1].headers["authorization"] == f"Bearer {idp.issued_id_tokens[-1]}"
    assert entry["id_token"] not in result.err


def test_authorize_request_uses_pkce_s256_and_a_fresh_state(
        cli: Callable[..., Result], idp: FakeIssuer, signed_out: dict[str, str]) -> None:
    asked: list[dict[str, str]] = []

    def recording_browser(url: str) -> bool:
        asked.append({k: v[0] for k, v in parse_qs(urlsplit(url).query).items()})
        return browser(url)

    assert login(cli, signed_out, open_browser=recording_browser).code == 0
    assert login(cli, signed_out, open_browser=recording_browser).code == 0
    first, second = asked
    assert first["code_challenge_method"] == "S256"
    assert len(first["code_challenge"]) == 43
    assert first["scope"] == "openid email offline_access"
    assert first["state"] != second["state"]
    assert first["code_challenge"] != second["code_challenge"]


def test_pkce_pair() -> None:
    verifier, challenge = rolebroker.pkce_pair()
    assert 43 <= len(verifier) <= 128
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    assert challenge == expected


def test_expired_id_token_is_refreshed_silently(cli: Callable[..., Result], broker: FakeBroker, idp: FakeIssuer,
                                                signed_out: dict[str, str]) -> None:
    idp.id_token_ttl = -120  # the IdP hands out an already expired id_token
    assert login(cli, signed_out).code == 0
    first_refresh = stored(signed_out)["issuers"][idp.url]["refresh_token"]
    idp.id_token_ttl = 3600
    opened: list[str] = []

    result = cli(*CP, environ=signed_out, open_browser=opened.append)
    assert result.code == 0, result.err
    assert result.err == ""
    assert idp.grants == ["authorization_code", "refresh_token"]
    assert broker.seen[-1].headers["authorization"] == f"Bearer {idp.issued_id_tokens[-1]}"
    entry = stored(signed_out)["issuers"][idp.url]
    assert entry["id_token"] == idp.issued_id_tokens[-1]
    assert entry["refresh_token"] != first_refresh  # the rotated one was kept
    assert opened == []

    again = cli(*CP, environ=signed_out)
    assert again.out == result.out
    assert idp.grants == ["authorization_code", "refresh_token"]


def test_revoked_refresh_token_asks_for_login(cli: Callable[..., Result], broker: FakeBroker, idp: FakeIssuer,
                                              signed_out: dict[str, str]) -> None:
    idp.id_token_ttl = -120
    assert login(cli, signed_out).code == 0
    entry = stored(signed_out)["issuers"][idp.url]
    idp.refresh_tokens.clear()
    result = cli(*CP, environ=signed_out)
    assert (result.code, result.out) == (1, "")
    assert result.err == "rolebroker: your sign-in has expired (invalid_grant): run `rolebroker login`\n"
    assert entry["refresh_token"] not in result.err
    assert broker.count("POST", "/v1/credentials") == 0


def test_refusal_at_the_identity_provider(cli: Callable[..., Result], idp: FakeIssuer,
                                          signed_out: dict[str, str]) -> None:
    idp.deny = True
    result = login(cli, signed_out)
    assert result.code == 1
    assert result.err_lines[-1] == "rolebroker: the identity provider refused the sign-in: user said no"


def test_no_browser_prints_the_address_and_gives_up_after_the_timeout(
        cli: Callable[..., Result], idp: FakeIssuer, signed_out: dict[str, str]) -> None:
    opened: list[str] = []
    result = cli("login", "--no-browser", environ=signed_out, open_browser=opened.append, login_timeout=0.2)
    assert result.code == 1
    assert opened == []
    assert f"{idp.url}/authorize?" in result.err
    assert result.err_lines[-1] == "rolebroker: no sign-in arrived within 0.2 s; run `rolebroker login` again"


ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b]8;;https://evil.example/\x07"


@pytest.mark.parametrize("endpoint", ["authorization_endpoint", "token_endpoint"])
def test_an_endpoint_with_terminal_escapes_is_refused_before_anything_is_printed(
        cli: Callable[..., Result], broker: FakeBroker, idp: FakeIssuer, signed_out: dict[str, str],
        endpoint: str) -> None:
    # Review ATTACK9 F3: the broker the user points `login --url` at names the issuer,
    # whose discovery document named an authorization endpoint that login printed raw.
    original = idp.handle

    def hostile(request: Seen) -> Reply:
        if request.path == "/.well-known/openid-configuration":
            doc = {"issuer": idp.url, "authorization_endpoint": f"{idp.url}/authorize",
                   "token_endpoint": f"{idp.url}/token"}
            doc[endpoint] += ESCAPES
            return Reply(200, doc)
        return original(request)

    idp.handle = hostile  # type: ignore[method-assign]
    opened: list[str] = []
    result = cli("login", "--no-browser", environ=signed_out, open_browser=opened.append, login_timeout=0.2)
    assert result.code != 0 and opened == []
    assert "\x1b" not in result.err and "\x07" not in result.err
    assert result.err_lines[-1].startswith("rolebroker: identity provider URL ")
    assert "is not plain printable ASCII" in result.err_lines[-1] and "Sign in at" not in result.err


def test_issuer_from_the_config_file(cli: Callable[..., Result], broker: FakeBroker, idp: FakeIssuer,
                                     signed_out: dict[str, str], home: Path) -> None:
    config = home / "rb.ini"
    config.write_text(f"[default]\nissuer = {idp.url}\nclient_id = {idp.client_id}\n")
    result = login(cli, signed_out | {"ROLEBROKER_CONFIG": str(config)})
    assert result.code == 0, result.err
    assert broker.count("GET", "/v1/client-config") == 0


def test_logout_forgets_tokens_and_cached_credentials(cli: Callable[..., Result], idp: FakeIssuer,
                                                      signed_out: dict[str, str]) -> None:
    assert login(cli, signed_out).code == 0
    assert cli(*CP, environ=signed_out).code == 0
    assert len(cache_files(signed_out)) == 1
    result = cli("logout", environ=signed_out)
    assert result.out == f"signed out of {idp.url}; removed 1 cached credential(s)\n"
    assert stored(signed_out)["issuers"] == {}
    assert cache_files(signed_out) == []
    after = cli(*CP, environ=signed_out)
    assert after.err == "rolebroker: not signed in: run `rolebroker login` (or set ROLEBROKER_TOKEN)\n"


def test_damaged_token_store_means_signed_out(cli: Callable[..., Result], signed_out: dict[str, str]) -> None:
    path = tokens_file(signed_out)
    path.parent.mkdir(parents=True)
    path.write_text("{oops")
    result = cli(*CP, environ=signed_out)
    assert result.err == "rolebroker: not signed in: run `rolebroker login` (or set ROLEBROKER_TOKEN)\n"


# --------------------------------------------------------------------------
# Issue 9, item 5: a sign-in is bound to the broker URL(s) it was made for.


def test_sign_in_is_only_sent_to_the_broker_it_was_made_for(
        cli: Callable[..., Result], broker: FakeBroker, idp: FakeIssuer, signed_out: dict[str, str]) -> None:
    assert login(cli, signed_out).code == 0
    with FakeBroker() as other:
        result = cli(*CP, "--url", other.url, environ=signed_out)
        assert (result.code, result.out) == (1, "")
        assert result.err == (f"rolebroker: not signed in for {other.url}: run `rolebroker login --url {other.url}` "
                              "(or set ROLEBROKER_TOKEN)\n")
        assert other.seen == []
        roles = cli("roles", "--url", other.url, environ=signed_out)
        assert roles.code == 1
        assert other.seen == []
    assert cli(*CP, environ=signed_out).code == 0  # the broker it was made for still gets it
    assert broker.seen[-1].headers["authorization"] == f"Bearer {idp.issued_id_tokens[-1]}"


def test_old_store_without_a_binding_is_not_used(cli: Callable[..., Result], broker: FakeBroker,
                                                 signed_out: dict[str, str]) -> None:
    # A store written by an older client: one issuer, bound to no broker.
    store = rolebroker.LoginStore(str(tokens_file(signed_out)))
    store.save({"version": 1, "brokers": {}, "issuers": {"https://issuer.example.com": {"id_token": ALICE}}})
    result = cli(*CP, environ=signed_out)
    assert result.err.startswith(f"rolebroker: not signed in for {broker.url}: ")
    assert broker.seen == []


def test_configured_issuer_does_not_bind_a_sign_in_to_another_broker(
        cli: Callable[..., Result], broker: FakeBroker, idp: FakeIssuer, signed_out: dict[str, str],
        home: Path) -> None:
    config = home / "rb.ini"
    config.write_text(f"[default]\nissuer = {idp.url}\nclient_id = {idp.client_id}\n")
    environ = signed_out | {"ROLEBROKER_CONFIG": str(config)}
    assert login(cli, environ).code == 0
    with FakeBroker() as other:
        result = cli(*CP, "--url", other.url, environ=environ)
        assert result.err.startswith(f"rolebroker: not signed in for {other.url}: ")
        assert other.seen == []


def test_one_sign_in_can_serve_several_brokers(cli: Callable[..., Result], broker: FakeBroker, idp: FakeIssuer,
                                               signed_out: dict[str, str]) -> None:
    assert login(cli, signed_out).code == 0
    with FakeBroker() as other:
        other.client_config = broker.client_config
        assert login(cli, signed_out | {"ROLEBROKER_URL": other.url}).code == 0
        assert stored(signed_out)["brokers"] == {broker.url: idp.url, other.url: idp.url}
        assert cli(*CP, "--url", other.url, environ=signed_out).code == 0
        assert other.seen[-1].headers["authorization"] == f"Bearer {idp.issued_id_tokens[-1]}"


def test_login_needs_the_broker_url(cli: Callable[..., Result], idp: FakeIssuer, signed_out: dict[str, str]) -> None:
    environ = {k: v for k, v in signed_out.items() if k != "ROLEBROKER_URL"}
    result = cli("login", "--issuer", idp.url, "--client-id", idp.client_id, environ=environ, open_browser=browser)
    assert result.code == 2
    assert result.err == ("rolebroker: login needs the broker URL the sign-in is for: pass --url or set "
                          "ROLEBROKER_URL\n")
    assert idp.grants == []


def test_login_reports_a_failed_write(cli: Callable[..., Result], signed_out: dict[str, str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(path: str, data: bytes, mode: int = 0o600) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tokens, "atomic_write", disk_full)
    result = login(cli, signed_out)
    assert result.code == 1
    assert result.out == ""
    assert result.err_lines[-1] == f"rolebroker: cannot write {tokens_file(signed_out)}: No space left on device"


# --------------------------------------------------------------------------
# Issue 9, item 13: a callback with the wrong state is ignored, not fatal.


def test_callback_with_the_wrong_state_is_ignored_and_the_real_one_still_counts(
        cli: Callable[..., Result], broker: FakeBroker, idp: FakeIssuer, signed_out: dict[str, str]) -> None:
    forged_status: list[int] = []

    def forged_then_real(url: str) -> bool:
        redirect_uri = parse_qs(urlsplit(url).query)["redirect_uri"][0]
        for query in ("code=stolen&state=forged", "code=stolen", "error=access_denied&state=forged"):
            try:
                browser(f"{redirect_uri}?{query}")
            except urllib.error.HTTPError as exc:
                forged_status.append(exc.code)
        return browser(url)

    result = login(cli, signed_out, open_browser=forged_then_real)
    assert result.code == 0, result.err
    assert forged_status == [400, 400, 400]
    assert result.err.count("rolebroker: ignored a sign-in answer with the wrong state (not from this login); "
                            "still waiting\n") == 3
    assert idp.grants == ["authorization_code"]
    assert stored(signed_out)["issuers"][idp.url]["id_token"] == idp.issued_id_tokens[-1]


def test_only_wrong_state_callbacks_end_in_the_timeout(cli: Callable[..., Result], idp: FakeIssuer,
                                                       signed_out: dict[str, str]) -> None:
    def forged(url: str) -> bool:
        redirect_uri = parse_qs(urlsplit(url).query)["redirect_uri"][0]
        with pytest.raises(urllib.error.HTTPError):
            browser(f"{redirect_uri}?code=stolen&state=forged")
        return True

    result = login(cli, signed_out, open_browser=forged, login_timeout=0.5)
    assert result.code == 1
    assert result.err_lines[-1] == "rolebroker: no sign-in arrived within 0.5 s; run `rolebroker login` again"
    assert "ignored a sign-in answer with the wrong state" in result.err
    assert idp.grants == []
    assert not tokens_file(signed_out).exists()


# Issue 13 §5: whoami after `rolebroker login`, including a renewal the broker call itself made.
def test_whoami_after_login_shows_the_renewed_sign_in(cli: Callable[..., Result], broker: FakeBroker,
                                                      idp: FakeIssuer, signed_out: dict[str, str]) -> None:
    from tests.client.fakes import Reply

    idp.id_token_ttl = -120
    assert login(cli, signed_out).code == 0
    idp.id_token_ttl = 3600
    broker.route("GET", "/v1/access", Reply(200, {"identity": "alice@example.com", "groups": [], "source": "token",
                                                  "admin": False, "auditor": False, "roles": []}))
    doc = json.loads(cli("whoami", "--output", "json", environ=signed_out).out)
    assert idp.grants == ["authorization_code", "refresh_token"]
    assert (doc["token_source"], doc["renews"], doc["issuer"]) == ("rolebroker login", True, idp.url)
    renewed = json.loads(rolebroker._fast.b64url_decode(idp.issued_id_tokens[-1].split(".")[1]))
    assert doc["token_expires_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(renewed["exp"]))


def test_the_browser_gets_its_page_before_the_login_closes_its_listener(
        cli: Callable[..., Result], idp: FakeIssuer, signed_out: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Closing the listener hangs up what is still open, so the sign-in may end only once the page is sent.

    The handler is held back until the listener starts closing (or 1 s has passed): a login that ends when
    the code arrives closes the browser's connection first, and the browser sees no page at all.
    """
    import threading

    from rolebroker import loopback

    closing = threading.Event()
    real_close, real_send = loopback.LoopbackServer.server_close, loopback.LoopbackHandler.send_response

    def server_close(self: loopback.LoopbackServer) -> None:
        closing.set()
        real_close(self)

    def send_response(self: loopback.LoopbackHandler, *args: Any, **kwargs: Any) -> None:
        closing.wait(1)
        real_send(self, *args, **kwargs)

    monkeypatch.setattr(loopback.LoopbackServer, "server_close", server_close)
    monkeypatch.setattr(loopback.LoopbackHandler, "send_response", send_response)
    pages: list[object] = []

    def separate_browser(url: str) -> bool:
        def visit() -> None:
            try:
                browser(url)
                pages.append(200)
            except Exception as exc:  # what the person would see instead of the page
                pages.append(exc)

        thread = threading.Thread(target=visit)
        thread.start()
        browsers.append(thread)
        return True

    browsers: list[threading.Thread] = []
    result = login(cli, signed_out, open_browser=separate_browser)
    for thread in browsers:
        thread.join(10)
    assert result.code == 0, result.err
    assert pages == [200]
