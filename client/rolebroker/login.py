"""``rolebroker login``: OpenID Connect authorization code + PKCE on a loopback redirect.

The client opens (or prints) the identity provider's sign-in address and
serves the redirect on 127.0.0.1 with an ephemeral port. Only the answer that
carries this login's ``state`` counts; anything else that calls the port is
told so and ignored, and the login keeps waiting until its timeout.
"""

from __future__ import annotations

from rolebroker._fast import jwt_claims
from rolebroker.broker import BrokerClient
from rolebroker.errors import ConfigError, LoginError, UnexpectedAnswer
from rolebroker.text import one_line
from rolebroker.tokens import token_entry, token_request
from rolebroker.transport import check_transport, http_request

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from rolebroker.settings import Runtime, Settings

DEFAULT_SCOPES = "openid email profile offline_access"


def discover(issuer: str, rt: Runtime, timeout: float) -> dict[str, str]:
    """The issuer's authorization and token endpoints from its OpenID configuration."""
    check_transport(issuer, "issuer")
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    answer = http_request("GET", url, what="identity provider", timeout=timeout, urlopen=rt.urlopen,
                          headers={"Accept": "application/json"})
    doc = answer.json_object() if answer.status == 200 else None
    endpoints = {name: (doc or {}).get(name) for name in ("authorization_endpoint", "token_endpoint")}
    if doc is None or not all(isinstance(value, str) for value in endpoints.values()):
        raise UnexpectedAnswer(f"unexpected answer from the identity provider at {url} ({answer.describe()})")
    if str(doc.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        raise LoginError(f"the identity provider at {issuer} names itself {one_line(str(doc.get('issuer')), 80)}")
    for value in endpoints.values():
        check_transport(str(value), "identity provider")
    return {name: str(value) for name, value in endpoints.items()}


def _b64url_encode(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def pkce_pair() -> tuple[str, str]:
    """A PKCE code verifier and its S256 challenge."""
    import hashlib
    import secrets

    verifier = secrets.token_urlsafe(64)
    return verifier, _b64url_encode(hashlib.sha256(verifier.encode("ascii")).digest())


_CALLBACK_PAGE = (
    "<!doctype html><meta charset=utf-8><title>rolebroker</title>"
    "<p style='font-family:sans-serif'>{text} You can close this window.</p>"
)


def wait_for_redirect(authorize_url: Callable[[str], str], state: str, rt: Runtime, *, no_browser: bool
                      ) -> tuple[dict[str, str], str]:
    """Serve the loopback redirect, send the user to the IdP, return (callback query, redirect_uri)."""
    import contextlib
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from urllib.parse import parse_qs, urlsplit

    answer: dict[str, str] = {}
    done = threading.Event()
    lock = threading.Lock()

    class Callback(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            with lock:
                if parts.path != "/callback" or done.is_set():
                    self.send_error(404)
                    return
                query = {key: values[0] for key, values in parse_qs(parts.query).items()}
                if query.get("state") != state:
                    # Anything on this machine can call us; only the answer to our
                    # own authorization request counts, so keep waiting for it.
                    rt.stderr.write("rolebroker: ignored a sign-in answer with the wrong state (not from this "
                                    "login); still waiting\n")
                    rt.stderr.flush()
                    self._page(400, "This answer is not from the sign-in rolebroker is waiting for.")
                    return
                answer.update(query)
                done.set()
            ok = "code" in answer
            self._page(200 if ok else 400, "Signed in to rolebroker." if ok else "Sign-in failed; see the terminal.")

        def _page(self, status: int, text: str) -> None:
            page = _CALLBACK_PAGE.format(text=text).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: Any) -> None:
            return  # keep the terminal for the user

    server = HTTPServer(("127.0.0.1", 0), Callback)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="rolebroker-login",
                              daemon=True)
    thread.start()
    try:
        redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/callback"
        url = authorize_url(redirect_uri)
        rt.stderr.write(f"Sign in at this address (waiting up to {rt.login_timeout:g} s):\n  {url}\n")
        rt.stderr.flush()
        if not no_browser:
            # No browser is fine: the address is printed above.
            with contextlib.suppress(Exception):
                rt.open_browser(url)
        if not done.wait(rt.login_timeout):
            raise LoginError(f"no sign-in arrived within {rt.login_timeout:g} s; run `rolebroker login` again")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    return answer, redirect_uri


def login(settings: Settings, rt: Runtime, *, issuer: str | None = None, client_id: str | None = None,
          no_browser: bool = False) -> tuple[str, dict[str, Any]]:
    """Sign in interactively; the issuer and its new token entry."""
    import secrets
    from urllib.parse import urlencode

    issuer, client_id, scopes = _login_provider(settings, rt, issuer, client_id)
    timeout = settings.timeout
    endpoints = discover(issuer, rt, timeout)
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)

    def authorize_url(redirect_uri: str) -> str:
        query = urlencode({
            "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": scopes,
            "state": state, "nonce": nonce, "code_challenge": challenge, "code_challenge_method": "S256",
        })
        base = endpoints["authorization_endpoint"]
        return f"{base}{'&' if '?' in base else '?'}{query}"

    answer, redirect_uri = wait_for_redirect(authorize_url, state, rt, no_browser=no_browser)
    if "error" in answer:
        detail = one_line(answer.get("error_description") or answer["error"], 160)
        raise LoginError(f"the identity provider refused the sign-in: {detail}")
    if not answer.get("code"):
        raise LoginError("the sign-in answer carried no authorization code; run `rolebroker login` again")
    form = {"grant_type": "authorization_code", "code": answer["code"], "redirect_uri": redirect_uri,
            "client_id": client_id, "code_verifier": verifier}
    status, tokens = token_request(endpoints["token_endpoint"], form, rt, timeout)
    if status != 200:
        reason = one_line(str(tokens.get("error_description") or tokens.get("error") or f"HTTP {status}"), 160)
        raise LoginError(f"the identity provider did not issue tokens: {reason}")
    entry = token_entry(tokens, {"client_id": client_id, "token_endpoint": endpoints["token_endpoint"]}, rt.clock())
    claims = jwt_claims(str(entry.get("id_token", ""))) or {}
    if "nonce" in claims and claims["nonce"] != nonce:
        raise LoginError("the id_token carries the wrong nonce; run `rolebroker login` again")
    return issuer, entry


def _login_provider(settings: Settings, rt: Runtime, issuer: str | None, client_id: str | None
                    ) -> tuple[str, str, str]:
    """Issuer, client_id and scopes: from the options, the config file, else the broker's /v1/client-config."""
    issuer = issuer or settings.issuer
    client_id = client_id or settings.client_id
    scopes = settings.file.get("scopes") or DEFAULT_SCOPES
    if not (issuer and client_id):
        if not settings.url:
            raise ConfigError(
                "no identity provider: pass --url (the broker tells us) or --issuer and --client-id, "
                f"or set them under [default] in {settings.config_path}")
        doc = BrokerClient(settings.require_url(), None, timeout=settings.timeout,
                           urlopen=rt.urlopen).client_config()
        issuer = issuer or doc.get("issuer")
        client_id = client_id or doc.get("client_id")
        scopes = settings.file.get("scopes") or str(doc.get("scopes") or DEFAULT_SCOPES)
    if not isinstance(issuer, str) or not isinstance(client_id, str) or not issuer or not client_id:
        raise UnexpectedAnswer("unexpected answer from broker (client-config without issuer or client_id)")
    return issuer, client_id, scopes

