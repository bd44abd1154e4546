"""``login --device``: the OAuth 2.0 Device Authorization Grant (RFC 8628), and saying at once when no browser opens."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from devstack.issuer import DevIssuer
from tests.client.fakes import DEVICE_GRANT, FakeBroker, FakeClock, FakeIssuer, Result


@pytest.fixture
def signed_out(env: dict[str, str], broker: FakeBroker, idp: FakeIssuer) -> dict[str, str]:
    broker.client_config = {"issuer": idp.url, "client_id": idp.client_id, "scopes": "openid email offline_access"}
    return {k: v for k, v in env.items() if k != "ROLEBROKER_TOKEN"}


def device_login(cli: Callable[..., Result], environ: dict[str, str], fake: FakeClock, *args: str) -> Result:
    return cli("login", "--device", *args, environ=environ, clock=fake, sleep=fake.sleep,
               open_browser=lambda url: pytest.fail("the device grant opens no browser"))


def stored(env: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(env["XDG_CONFIG_HOME"]) / "rolebroker" / "tokens.json").read_text())
    return data


def test_device_login_polls_through_pending_and_slow_down_and_binds_the_sign_in(
        cli: Callable[..., Result], broker: FakeBroker, idp: FakeIssuer, signed_out: dict[str, str]) -> None:
    idp.device_polls = ["authorization_pending", "slow_down", "authorization_pending", "ok"]
    fake = FakeClock()
    result = device_login(cli, signed_out, fake)
    assert result.code == 0, result.err
    assert result.out == f"signed in as alice@example.com at {idp.url}\n"
    assert fake.sleeps == [5, 5, 10, 10]  # slow_down adds 5 seconds to every later wait (RFC 8628 3.5)
    assert idp.device_requests == [{"client_id": "rolebroker-cli", "scope": "openid email offline_access"}]
    assert idp.grants == [DEVICE_GRANT] * 4
    assert f"open {idp.url}/device and enter the code WDJB-MJHT" in result.err
    assert f"{idp.url}/device?user_code=WDJB-MJHT" in result.err
    data = stored(signed_out)
    assert data["brokers"] == {broker.url: idp.url}
    assert data["issuers"][idp.url]["id_token"] == idp.issued_id_tokens[-1]
    assert idp.issued_id_tokens[-1] not in result.err
    assert cli("roles", environ=signed_out).code == 0
    assert broker.seen[-1].headers["authorization"] == f"Bearer {idp.issued_id_tokens[-1]}"


@pytest.mark.parametrize(("poll", "message"), [
    ("expired_token", "the code expired before the sign-in was approved; run `rolebroker login --device` again"),
    ("access_denied", "the sign-in was refused at the identity provider"),
    ("invalid_grant", "the identity provider did not issue tokens: invalid_grant"),
])
def test_device_login_ends_with_one_line_on_a_final_answer(
        cli: Callable[..., Result], idp: FakeIssuer, signed_out: dict[str, str], poll: str, message: str) -> None:
    idp.device_polls = ["authorization_pending", poll]
    result = device_login(cli, signed_out, FakeClock())
    assert (result.code, result.out) == (1, "")
    assert result.err_lines[-1] == f"rolebroker: {message}"


def test_device_login_gives_up_when_the_code_expires(cli: Callable[..., Result], idp: FakeIssuer,
                                                     signed_out: dict[str, str]) -> None:
    idp.device_polls = ["authorization_pending"]
    idp.device_start["expires_in"] = 30
    fake = FakeClock()
    result = device_login(cli, signed_out, fake)
    assert result.code == 1
    assert result.err_lines[-1] == ("rolebroker: no sign-in was approved within 30 s; "
                                    "run `rolebroker login --device` again")
    assert sum(fake.sleeps) <= 35


def test_an_identity_provider_without_the_device_grant_says_so(cli: Callable[..., Result], idp: FakeIssuer,
                                                               signed_out: dict[str, str]) -> None:
    idp.device = False
    result = device_login(cli, signed_out, FakeClock())
    assert result.code == 1 and len(result.err_lines) == 1
    assert "does not offer sign-in with a code (no device_authorization_endpoint)" in result.err
    assert idp.device_requests == []


@pytest.mark.parametrize(("field", "value"), [
    ("verification_uri", "javascript:alert(1)"),
    ("verification_uri", "http://idp.example.com/device"),  # plain http off this machine
    ("device_code", None),
    ("user_code", ""),
    ("expires_in", "600"),
    ("interval", -1),
])
def test_a_malformed_device_answer_is_one_line(cli: Callable[..., Result], idp: FakeIssuer,
                                               signed_out: dict[str, str], field: str, value: object) -> None:
    idp.device_start[field] = value
    result = device_login(cli, signed_out, FakeClock())
    assert result.code == 1 and len(result.err_lines) == 1 and result.out == ""
    assert idp.grants == []


def test_the_user_code_cannot_drive_the_terminal(cli: Callable[..., Result], idp: FakeIssuer,
                                                 signed_out: dict[str, str]) -> None:
    idp.device_start["user_code"] = "WDJB\x1b]0;owned\x07-MJHT\n"
    result = device_login(cli, signed_out, FakeClock())
    assert result.code == 0, result.err
    assert "\x1b" not in result.err and "\x07" not in result.err
    assert "enter the code WDJB-MJHT" in result.err


def test_the_verification_uri_of_an_older_draft_is_understood(cli: Callable[..., Result], idp: FakeIssuer,
                                                              signed_out: dict[str, str]) -> None:
    # Google's device endpoint answers with verification_url, from a draft of RFC 8628.
    idp.device_start["verification_url"] = idp.device_start.pop("verification_uri")
    del idp.device_start["verification_uri_complete"]
    result = device_login(cli, signed_out, FakeClock())
    assert result.code == 0, result.err
    assert f"open {idp.url}/device and enter the code WDJB-MJHT" in result.err


# --------------------------------------------------------------------------
# The dev issuer's own device flow, with the person approving on "another device"


@pytest.fixture
def dev_issuer() -> Iterator[DevIssuer]:
    issuer = DevIssuer(audience="rolebroker-dev-device", device_interval=1).start()
    yield issuer
    issuer.stop()


class Approver:
    """stderr for the login that, like the person reading the terminal, approves the code it shows."""

    def __init__(self, issuer: DevIssuer, user: str) -> None:
        self.issuer, self.user = issuer, user
        self.text = ""
        self.thread: threading.Thread | None = None

    def write(self, text: str) -> int:
        self.text += text
        if "enter the code " in self.text and self.thread is None:
            code = self.text.split("enter the code ", 1)[1].split()[0]
            self.thread = threading.Thread(target=self.approve, args=(code,))
            self.thread.start()
        return len(text)

    def flush(self) -> None:
        pass

    def approve(self, code: str) -> None:
        body = urlencode({"user_code": code, "user": self.user, "action": "approve"}).encode()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(urllib.request.Request(f"{self.issuer.url}/device", data=body), timeout=10) as page:
            assert page.status == 200 and f"Signed in as {self.user}" in page.read().decode()


def test_device_login_against_the_dev_issuer_as_bob(cli: Callable[..., Result], broker: FakeBroker,
                                                    dev_issuer: DevIssuer, signed_out: dict[str, str]) -> None:
    broker.client_config = {"issuer": dev_issuer.url, "client_id": dev_issuer.audience, "scopes": "openid email"}
    approver = Approver(dev_issuer, "bob@example.com")
    result = cli("login", "--device", environ=signed_out, stderr=approver)
    assert approver.thread is not None
    approver.thread.join()
    assert result.code == 0, approver.text
    assert result.out == f"signed in as bob@example.com at {dev_issuer.url}\n"
    entry = stored(signed_out)["issuers"][dev_issuer.url]
    claims = json.loads(__import__("base64").urlsafe_b64decode(entry["id_token"].split(".")[1] + "=="))
    assert (claims["email"], claims["groups"]) == ("bob@example.com", ["developers"])


def test_the_dev_issuer_device_endpoints_follow_rfc_8628() -> None:
    now = [1000.0]
    issuer = DevIssuer(audience="dev-cli", device_interval=5, clock=lambda: now[0]).start()

    def start() -> dict[str, Any]:
        status, answer = issuer.device_authorize({"client_id": "dev-cli", "scope": "openid"})
        assert status == 200
        return answer

    def poll(started: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return issuer.token({"grant_type": DEVICE_GRANT, "device_code": started["device_code"],
                             "client_id": "dev-cli"})

    try:
        first = start()
        assert first["interval"] == 5 and first["expires_in"] == 600
        assert first["verification_uri"] == f"{issuer.url}/device"
        assert first["verification_uri_complete"] == f"{issuer.url}/device?user_code={first['user_code']}"
        assert poll(first) == (400, {"error": "authorization_pending"})
        now[0] += 1
        assert poll(first) == (400, {"error": "slow_down"})  # sooner than the interval, which grows by 5
        now[0] += 10
        assert poll(first) == (400, {"error": "authorization_pending"})
        assert issuer.approve_device(first["user_code"].lower().replace("-", ""), "carol@example.com", approve=True)
        now[0] += 10
        status, tokens = poll(first)
        claims = json.loads(__import__("base64").urlsafe_b64decode(tokens["id_token"].split(".")[1] + "=="))
        assert status == 200 and (claims["email"], claims["groups"]) == ("carol@example.com", ["security"])
        assert poll(first) == (400, {"error": "invalid_grant"})  # a device code is used once

        second = start()
        assert issuer.approve_device(second["user_code"], "bob@example.com", approve=False)
        assert poll(second) == (400, {"error": "access_denied"})

        third = start()
        now[0] += 601
        assert poll(third) == (400, {"error": "expired_token"})
        assert not issuer.approve_device(third["user_code"], "alice@example.com", approve=True)
        assert not issuer.approve_device("NOPE-NOPE", "alice@example.com", approve=True)
        assert issuer.device_authorize({"client_id": "someone-else"})[0] == 401
    finally:
        issuer.stop()


# --------------------------------------------------------------------------
# The browser sign-in, when no browser opens


def test_when_no_browser_opens_the_login_says_so_at_once(cli: Callable[..., Result], idp: FakeIssuer,
                                                         signed_out: dict[str, str]) -> None:
    class Person:
        """Reads the terminal; only once told that no browser opened, follows the address by hand."""

        def __init__(self) -> None:
            self.text = ""
            self.thread: threading.Thread | None = None

        def write(self, text: str) -> int:
            self.text += text
            if "no browser opened" in text and self.thread is None:
                url = next(word for word in self.text.split() if "/authorize?" in word)
                self.thread = threading.Thread(target=follow, args=(url,))
                self.thread.start()
            return len(text)

        def flush(self) -> None:
            pass

    def follow(url: str) -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=10) as answer:
            answer.read()

    person = Person()
    result = cli("login", environ=signed_out, stderr=person, open_browser=lambda url: False, login_timeout=30)
    assert person.thread is not None, person.text
    person.thread.join()
    assert result.code == 0, person.text
    assert "rolebroker login --device" in person.text
