"""``rolebroker login``: OpenID Connect sign-in, with a browser on this machine or a code on another device.

The browser way is the authorization code + PKCE on a loopback redirect:
the client opens (or prints) the identity provider's sign-in address and
serves the redirect on 127.0.0.1 with an ephemeral port. Only the answer that
carries this login's ``state`` counts; anything else that calls the port is
told so and ignored, and the login keeps waiting until its timeout. The
redirect comes back to this machine, so the browser must run here too.

``--device`` is the OAuth 2.0 Device Authorization Grant (RFC 8628), for a
machine without a browser (a server over SSH, a container): the identity
provider hands out a short user code, the person enters it at the
provider's address on any device, and the client polls the token endpoint
at the interval the provider asks for (``slow_down`` adds 5 seconds) until
the sign-in is approved, refused or the code expires.
"""

from __future__ import annotations

from rolebroker._fast import jwt_claims
from rolebroker.broker import BrokerClient
from rolebroker.errors import ConfigError, LoginError, UnexpectedAnswer
from rolebroker.text import error_line, one_line
from rolebroker.tokens import token_entry, token_request
from rolebroker.transport import check_transport, http_request

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from rolebroker.settings import Runtime, Settings

DEFAULT_SCOPES = "openid email profile offline_access"


DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEVICE_INTERVAL_SECONDS = 5  # RFC 8628 3.2: the default when the provider names none
SLOW_DOWN_SECONDS = 5


def discover(issuer: str, rt: Runtime, timeout: float) -> dict[str, str]:
    """The issuer's authorization and token endpoints (and device endpoint, if any) from its OpenID configuration."""
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
    device = doc.get("device_authorization_endpoint")
    if isinstance(device, str) and device:
        endpoints["device_authorization_endpoint"] = device
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


def _query(query: str) -> dict[str, str]:
    from urllib.parse import parse_qs

    return {key: values[0] for key, values in parse_qs(query).items()}


def _is_the_redirect(target: str, state: str) -> bool:
    """The request target is this login's redirect: the one request the listener keeps a slot for."""
    from urllib.parse import urlsplit

    parts = urlsplit(target)
    return parts.path == "/callback" and _query(parts.query).get("state") == state


def wait_for_redirect(authorize_url: Callable[[str], str], state: str, rt: Runtime, *, no_browser: bool
                      ) -> tuple[dict[str, str], str]:
    """Serve the loopback redirect, send the user to the IdP, return (callback query, redirect_uri)."""
    import threading
    from urllib.parse import urlsplit

    from rolebroker.loopback import LoopbackHandler, LoopbackServer

    answer: dict[str, str] = {}
    done = threading.Event()
    lock = threading.Lock()

    class Callback(LoopbackHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            parts = urlsplit(self.path)
            with lock:
                if parts.path != "/callback" or answer:
                    self.send_error(404)
                    return
                query = _query(parts.query)
                if query.get("state") == state:
                    self.admit()
                else:
                    # Anything on this machine can call us; only the answer to our
                    # own authorization request counts, so keep waiting for it.
                    rt.stderr.write("rolebroker: ignored a sign-in answer with the wrong state (not from this "
                                    "login); still waiting\n")
                    rt.stderr.flush()
                    self._page(400, "This answer is not from the sign-in rolebroker is waiting for.")
                    return
                answer.update(query)  # holds this login's state from now on: a second answer is a 404
            ok = "code" in answer
            try:
                self._page(200 if ok else 400,
                           "Signed in to rolebroker." if ok else "Sign-in failed; see the terminal.")
            finally:
                # Only now: the login then closes its listener, which hangs up every connection still open.
                done.set()

        def _page(self, status: int, text: str) -> None:
            page = _CALLBACK_PAGE.format(text=text).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

    # Threaded, with a deadline per request head and room made for the real
    # redirect: a silent connection from anyone on this machine can neither
    # hold the redirect back nor keep the login past its timeout.
    server = LoopbackServer(Callback, proves=lambda head: _is_the_redirect(head.path, state))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="rolebroker-login",
                              daemon=True)
    thread.start()
    try:
        redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/callback"
        url = authorize_url(redirect_uri)
        rt.stderr.write(f"Sign in at this address (waiting up to {rt.login_timeout:g} s):\n  {url}\n")
        rt.stderr.flush()
        if not no_browser and not _opened(rt, url):
            # Said at once: otherwise the person waits for a browser that never comes.
            rt.stderr.write("rolebroker: no browser opened; open the address above in a browser on this machine "
                            "(the sign-in comes back to 127.0.0.1), or press Ctrl-C and run `rolebroker login "
                            "--device` to sign in from another device\n")
            rt.stderr.flush()
        if not done.wait(rt.login_timeout):
            raise LoginError(f"no sign-in arrived within {rt.login_timeout:g} s; run `rolebroker login` again")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    return answer, redirect_uri


def _opened(rt: Runtime, url: str) -> bool:
    try:
        return bool(rt.open_browser(url))
    except Exception:  # webbrowser fails in many ways where there is no browser; the address is printed
        return False


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
        detail = error_line(answer.get("error_description") or answer["error"], 160)
        raise LoginError(f"the identity provider refused the sign-in: {detail}")
    if not answer.get("code"):
        raise LoginError("the sign-in answer carried no authorization code; run `rolebroker login` again")
    form = {"grant_type": "authorization_code", "code": answer["code"], "redirect_uri": redirect_uri,
            "client_id": client_id, "code_verifier": verifier}
    status, tokens = token_request(endpoints["token_endpoint"], form, rt, timeout)
    if status != 200:
        reason = error_line(str(tokens.get("error_description") or tokens.get("error") or f"HTTP {status}"), 160)
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



def device_login(settings: Settings, rt: Runtime, *, issuer: str | None = None, client_id: str | None = None
                 ) -> tuple[str, dict[str, Any]]:
    """Sign in with a code entered on another device (RFC 8628); the issuer and its new token entry."""
    issuer, client_id, scopes = _login_provider(settings, rt, issuer, client_id)
    timeout = settings.timeout
    endpoints = discover(issuer, rt, timeout)
    device_endpoint = endpoints.get("device_authorization_endpoint")
    if not device_endpoint:
        raise LoginError(f"the identity provider at {issuer} does not offer sign-in with a code (no "
                         "device_authorization_endpoint); run `rolebroker login` where a browser can open")
    status, answer = token_request(device_endpoint, {"client_id": client_id, "scope": scopes}, rt, timeout)
    if status != 200:
        reason = error_line(str(answer.get("error_description") or answer.get("error") or f"HTTP {status}"), 160)
        raise LoginError(f"the identity provider did not start a sign-in with a code: {reason}")
    grant = DeviceGrant.from_answer(answer)
    rt.stderr.write(f"To sign in, open {grant.verification_uri} and enter the code {grant.user_code}\n")
    if grant.verification_uri_complete:
        rt.stderr.write(f"  (or open {grant.verification_uri_complete}, which carries the code)\n")
    rt.stderr.write(f"Waiting up to {grant.expires_in:g} s for the sign-in to be approved...\n")
    rt.stderr.flush()
    tokens = poll_device_grant(grant, endpoints["token_endpoint"], client_id, rt, timeout)
    return issuer, token_entry(tokens, {"client_id": client_id, "token_endpoint": endpoints["token_endpoint"]},
                               rt.clock())


class DeviceGrant:
    """The device authorization answer (RFC 8628 3.2), checked: what is shown and polled with."""

    def __init__(self, device_code: str, user_code: str, verification_uri: str,
                 verification_uri_complete: str | None, expires_in: float, interval: float) -> None:
        self.device_code = device_code
        self.user_code = user_code
        self.verification_uri = verification_uri
        self.verification_uri_complete = verification_uri_complete
        self.expires_in = expires_in
        self.interval = interval

    @classmethod
    def from_answer(cls, answer: dict[str, Any]) -> DeviceGrant:
        from rolebroker.transport import is_console_url

        def number(name: str, default: float | None) -> float:
            value = answer.get(name, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 86400:
                raise UnexpectedAnswer(f"unexpected answer from the identity provider (device {name} is not a "
                                       "number of seconds)")
            return float(value)

        device_code, user_code = answer.get("device_code"), answer.get("user_code")
        # verification_url: the name in drafts of RFC 8628, which Google still answers with.
        uri = answer.get("verification_uri") or answer.get("verification_url")
        complete = answer.get("verification_uri_complete")
        shown_code = one_line(user_code, 40) if isinstance(user_code, str) else ""
        if not isinstance(device_code, str) or not device_code or not shown_code:
            raise UnexpectedAnswer("unexpected answer from the identity provider (no device_code or user_code)")
        # Shown to the person as links: https (or this machine's http), plain printable ASCII.
        if not isinstance(uri, str) or not is_console_url(uri):
            raise UnexpectedAnswer("unexpected answer from the identity provider (verification_uri is not an "
                                   "https address)")
        if not isinstance(complete, str) or not is_console_url(complete):
            complete = None
        return cls(device_code, shown_code, uri, complete, number("expires_in", None),
                   number("interval", DEVICE_INTERVAL_SECONDS))


def poll_device_grant(grant: DeviceGrant, token_endpoint: str, client_id: str, rt: Runtime, timeout: float
                      ) -> dict[str, Any]:
    """Poll until the sign-in is approved (the token answer), refused or expired (``LoginError``)."""
    form = {"grant_type": DEVICE_GRANT, "device_code": grant.device_code, "client_id": client_id}
    deadline = rt.clock() + grant.expires_in
    interval = grant.interval
    while True:
        if rt.clock() + interval > deadline:
            raise LoginError(f"no sign-in was approved within {grant.expires_in:g} s; "
                             "run `rolebroker login --device` again")
        rt.sleep(interval)
        status, answer = token_request(token_endpoint, form, rt, timeout)
        if status == 200:
            return answer
        error = answer.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += SLOW_DOWN_SECONDS
            continue
        if error == "expired_token":
            raise LoginError("the code expired before the sign-in was approved; run `rolebroker login --device` again")
        if error == "access_denied":
            raise LoginError("the sign-in was refused at the identity provider")
        reason = error_line(str(answer.get("error_description") or error or f"HTTP {status}"), 160)
        raise LoginError(f"the identity provider did not issue tokens: {reason}")
