"""One issuer's key set (``KeySet``) and the fetch under it (``urlopen``), in detail.

The JWT-level behaviour (rotation, outages, pre-checks) is in
test_identity.py; here are the parts a token cannot show: what is fetched,
how (timeout, headers, size), and the edges of the outage cap.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from chalicelib.exceptions import DependencyDown, Unauthenticated
from chalicelib.identity import keys as keys_module
from chalicelib.identity.issuers import is_safe_url
from chalicelib.identity.keys import MAX_DOCUMENT_BYTES, KeySet, urlopen
from devstack.issuer import new_key

KEY = new_key()


@dataclass
class FakeIdP:
    """An opener serving one issuer's discovery document and JWKS, recording each fetch."""

    issuer: str
    up: bool = True
    fetched: list[tuple[str, float]] = field(default_factory=list)

    def __call__(self, url: str, timeout: float) -> bytes:
        self.fetched.append((url, timeout))
        if not self.up:
            raise OSError("connection refused")
        if url.endswith("/.well-known/openid-configuration"):
            return json.dumps({"issuer": self.issuer, "jwks_uri": "https://keys.example/jwks.json"}).encode()
        return json.dumps({"keys": [KEY.jwk()]}).encode()


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def test_discovery_is_read_under_an_issuer_url_with_or_without_its_trailing_slash() -> None:
    for issuer in ("https://idp.example/tenant/", "https://idp.example/tenant"):
        idp = FakeIdP(issuer)
        KeySet(issuer, None, opener=idp).key(KEY.kid)
        assert idp.fetched[0][0] == "https://idp.example/tenant/.well-known/openid-configuration"


def test_every_fetch_uses_the_configured_timeout() -> None:
    idp = FakeIdP("https://idp.example")
    KeySet("https://idp.example", None, opener=idp, timeout=1.5).key(KEY.kid)
    assert [timeout for _, timeout in idp.fetched] == [1.5, 1.5]
    idp = FakeIdP("https://idp.example")
    KeySet("https://idp.example", None, opener=idp).key(KEY.kid)
    assert [timeout for _, timeout in idp.fetched] == [3.0, 3.0]


def test_the_discovered_jwks_url_is_kept_so_refreshes_fetch_only_keys() -> None:
    idp, clock = FakeIdP("https://idp.example"), FakeClock()
    keys = KeySet("https://idp.example", None, opener=idp, monotonic=clock)
    keys.key(KEY.kid)
    clock.now += keys_module.JWKS_LIFESPAN_SECONDS
    keys.key(KEY.kid)
    assert [url for url, _ in idp.fetched] == ["https://idp.example/.well-known/openid-configuration",
                                               "https://keys.example/jwks.json", "https://keys.example/jwks.json"]


def test_the_last_good_keys_serve_up_to_the_cap_itself() -> None:
    idp, clock = FakeIdP("https://idp.example"), FakeClock()
    keys = KeySet("https://idp.example", "https://keys.example/jwks.json", opener=idp, monotonic=clock,
                  max_stale_seconds=600)
    keys.key(KEY.kid)
    idp.up = False
    clock.now += 600  # a refresh is due and fails: exactly as old as the cap still serves
    assert keys.key(KEY.kid).key_id == KEY.kid
    clock.now += keys_module.JWKS_LIFESPAN_SECONDS
    with pytest.raises(DependencyDown):
        keys.key(KEY.kid)


def test_urlopen_asks_for_json_and_reads_at_most_a_mebibyte(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/jwks.json", headers={"Accept": "application/json"}).respond_with_data(
        b"x" * (MAX_DOCUMENT_BYTES + 10))
    assert len(urlopen(httpserver.url_for("/jwks.json"), 3)) == MAX_DOCUMENT_BYTES


def test_urlopen_fetches_https(unused_port: int) -> None:
    # Nothing listens there: the point is that the fetch is tried, not refused as a scheme.
    with pytest.raises(OSError):
        urlopen(f"https://127.0.0.1:{unused_port}/jwks.json", 3)


def test_urlopen_passes_its_timeout_to_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    class Opener:
        def open(self, request: Any, timeout: Any = "no timeout given") -> Any:
            seen.append(timeout)
            raise OSError("stop here")

    monkeypatch.setattr(keys_module.urllib.request, "build_opener", lambda *handlers: Opener())
    with pytest.raises(OSError):
        urlopen("https://idp.example/jwks.json", 2.5)
    assert seen == [2.5]


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(("url", "safe"), [
    ("https://idp.example/tenant", True),
    ("http://127.0.0.1:8001", True), ("http://127.9.9.9/", True), ("http://[::1]:8001/", True),
    ("http://localhost:8001/", True),
    ("http://idp.example/", False), ("http://127.attacker.example/", False), ("http://localhost.example/", False),
    ("ftp://idp.example/", False), ("https:///no-host", False), ("https://idp.example/#keys", False),
    ("https://user@idp.example/", False), ("https://user:secret@idp.example/", False),
    ("https://:secret@idp.example/", False), ("http://[::1", False),
])
def test_only_https_or_http_to_loopback_is_fetched(url: str, safe: bool) -> None:
    assert is_safe_url(url) is safe


def _serving(jwks: Any) -> Any:
    """An opener whose discovery points at a JWKS of ``jwks`` (any JSON)."""
    def opener(url: str, timeout: float) -> bytes:
        if url.endswith("/.well-known/openid-configuration"):
            return json.dumps({"issuer": "https://idp.example", "jwks_uri": "https://keys.example/jwks"}).encode()
        return json.dumps(jwks).encode()
    return opener


@pytest.mark.parametrize("jwks", [[KEY.jwk()], "keys", 42, None])
def test_a_key_set_that_is_not_a_json_object_is_a_clear_503(jwks: Any) -> None:
    with pytest.raises(DependencyDown, match="key set is not a JSON object"):
        KeySet("https://idp.example", None, opener=_serving(jwks)).key(KEY.kid)


def test_only_signing_keys_with_a_kid_are_kept() -> None:
    encryption, no_kid = new_key(), new_key()
    jwks = {"keys": [KEY.jwk(), {**encryption.jwk(), "use": "enc"},
                     {k: v for k, v in no_kid.jwk().items() if k != "kid"}]}
    keys = KeySet("https://idp.example", None, opener=_serving(jwks))
    assert keys.key(KEY.kid).key_id == KEY.kid
    with pytest.raises(Unauthenticated, match="does not publish"):
        keys.key(encryption.kid)  # published, but for encryption: never trusted to sign


def test_a_key_without_use_signs() -> None:
    unmarked = {k: v for k, v in KEY.jwk().items() if k != "use"}
    assert KeySet("https://idp.example", None, opener=_serving({"keys": [unmarked]})).key(KEY.kid).key_id == KEY.kid


def test_discovery_keeps_an_issuer_paths_own_last_letters() -> None:
    # Only trailing slashes are dropped before the well-known path, never the path's own letters.
    idp = FakeIdP("https://idp.example/tenantX")
    KeySet("https://idp.example/tenantX", None, opener=idp).key(KEY.kid)
    assert idp.fetched[0][0] == "https://idp.example/tenantX/.well-known/openid-configuration"
