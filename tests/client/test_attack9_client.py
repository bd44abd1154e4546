"""ATTACK9 (security review of issues 9 and 10): confirmed client findings.

Each test demonstrates a finding on the code as merged and is marked
``xfail(strict=True)``: it fails today (which is the finding), and once the
finding is fixed it passes, which strict xfail reports as a failure, so the
fix must remove the marker. Run them as plain tests with ``--runxfail``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.client.fakes import FakeBroker, FakeIssuer, Reply, Result, Seen

ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b]8;;https://evil.example/\x07"


@pytest.mark.xfail(strict=True, reason="ATTACK9 F3: login prints the IdP's authorization_endpoint raw")
def test_attack9_login_address_from_a_hostile_issuer_carries_no_terminal_escapes(
        cli: Callable[..., Result], broker: FakeBroker, idp: FakeIssuer, env: dict[str, str]) -> None:
    # A broker the user points `rolebroker login --url` at names the issuer
    # (/v1/client-config); that issuer's discovery document names the
    # authorization endpoint, which login prints for the user to open.
    # check_transport refuses whitespace only, so ESC and BEL pass.
    broker.client_config = {"issuer": idp.url, "client_id": idp.client_id}
    original = idp.handle

    def hostile(request: Seen) -> Reply:
        if request.path == "/.well-known/openid-configuration":
            return Reply(200, {"issuer": idp.url, "authorization_endpoint": f"{idp.url}/authorize{ESCAPES}",
                               "token_endpoint": f"{idp.url}/token"})
        return original(request)

    idp.handle = hostile  # type: ignore[method-assign]
    signed_out = {k: v for k, v in env.items() if k != "ROLEBROKER_TOKEN"}
    result = cli("login", "--no-browser", environ=signed_out, open_browser=lambda url: True, login_timeout=0.2)
    assert f"{idp.url}/authorize" in result.err  # the address was printed
    assert "\x1b" not in result.err and "\x07" not in result.err


@pytest.mark.xfail(strict=True, reason="ATTACK9 F3: env prints the broker's credential strings raw")
def test_attack9_env_output_carries_no_terminal_escapes(cli: Callable[..., Result], broker: FakeBroker) -> None:
    # `rolebroker env` is also read on screen, not only eval'd; shlex.quote
    # keeps the shell safe but passes ESC/BEL through to the terminal.
    def hostile(request: Seen) -> Reply:
        reply = broker.credentials(request)
        assert isinstance(reply.body, dict)
        reply.body["credentials"]["SessionToken"] = "session-token" + ESCAPES
        return reply

    broker.route("POST", "/v1/credentials", hostile)
    result = cli("env", "--role", "sandbox-admin")
    assert result.code != 0 or ("\x1b" not in result.out and "\x07" not in result.out)
