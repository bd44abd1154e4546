"""Fakes for the client's tests: a broker and an OIDC issuer that are real HTTP servers.

Both are ``http.server`` servers on 127.0.0.1 with an ephemeral port, served
from a thread and shut down by their fixture, so the client's real urllib
code, timeouts and error handling are what gets tested.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlencode, urlsplit

import rolebroker as rolebroker  # conftest.py put client/ on sys.path; re-exported for the tests

PACKAGE_DIR = Path(rolebroker.__file__).resolve().parent

# The package directory runs as a program (`python client/rolebroker ...`), as
# the copy-anywhere single file did; `make client` builds that file now.
CLIENT_SCRIPT = PACKAGE_DIR
ISSUER = "https://issuer.example.com"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def make_jwt(claims: dict[str, Any]) -> str:
    """An unsigned JWT: the client never verifies signatures, the broker does."""
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}.{b64url(b'not-a-real-signature')}"


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="seconds")


ALICE = make_jwt({"iss": ISSUER, "sub": "alice", "email": "alice@example.com", "exp": 4102444800})
BOB = make_jwt({"iss": ISSUER, "sub": "bob", "email": "bob@example.com", "exp": 4102444800})


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FakeServer:
    """A threaded HTTP server that hands each request to ``handle`` and records it."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with owner._lock:
                    owner.seen.append(request)
                reply = owner.handle(request)
                payload = reply.encoded()
                self.send_response(reply.status)
                if reply.content_type:
                    self.send_header("Content-Type", reply.content_type)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def log_message(self, format: str, *args: Any) -> None:
                return

        class Server(ThreadingHTTPServer):
            # Handler threads are joined on close, so nothing a test started
            # can write into the next test's captured output.
            daemon_threads = False
            block_on_close = True
            request_queue_size = 64

            def handle_error(self, request: Any, client_address: Any) -> None:
                return  # a client that timed out and hung up is expected here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def handle(self, request: Seen) -> Reply:
        raise NotImplementedError

    def count(self, method: str, path_suffix: str) -> int:
        with self._lock:
            return sum(1 for s in self.seen if s.method == method and s.path.endswith(path_suffix))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


class FakeBroker(FakeServer):
    """The broker's HTTP API, with canned answers tests can replace per route."""

    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[tuple[str, str], Callable[[Seen], Reply]] = {}
        self.ttl = 3600.0
        self.delay = 0.0
        self.issued = 0
        self.region = "eu-west-1"
        self.client_config = {"issuer": ISSUER, "client_id": "rolebroker-cli", "scopes": "openid email"}

    def route(self, method: str, path: str, reply: Reply | Callable[[Seen], Reply]) -> None:
        self.routes[(method, path)] = reply if callable(reply) else (lambda _request: reply)

    def stall(self, method: str, path: str) -> None:
        """Answer only when the test ends: for timeouts."""

        def stalled(_request: Seen) -> Reply:
            self.release.wait(30)
            return Reply(200, {})

        self.route(method, path, stalled)

    def handle(self, request: Seen) -> Reply:
        path = urlsplit(request.path).path
        if "/v1/" in path:  # a stage prefix such as /api, as API Gateway has
            path = path[path.index("/v1/"):]
        custom = self.routes.get((request.method, path))
        if custom is not None:
            return custom(request)
        if (request.method, path) == ("POST", "/v1/credentials"):
            return self.credentials(request)
        if (request.method, path) == ("GET", "/v1/client-config"):
            return Reply(200, self.client_config)
        if (request.method, path) == ("GET", "/v1/config"):
            return Reply(200, self.config_text(), "text/plain; charset=utf-8")
        if (request.method, path) == ("GET", "/v1/roles"):
            return Reply(200, {"roles": self.roles()})
        return Reply(404, {"Code": "NotFoundError", "Message": f"no route {path}", "RequestId": "r-404"})

    def credentials(self, request: Seen) -> Reply:
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.issued += 1
            n = self.issued
        role = request.json()["role"]
        creds = {
            "Version": 1,
            "AccessKeyId": f"FAKEKEY{n:013d}",
            "SecretAccessKey": f"secret-{n}-" + "s" * 30,
            "SessionToken": f"session-{n}-" + "t" * 60,
            "Expiration": iso(time.time() + self.ttl),
        }
        section = f"[profile {role}]\ncredential_process = x\nregion = {self.region}\n"
        return Reply(200, {
            "role": role, "role_arn": f"arn:aws:iam::222222222222:role/{role}",
            "assumed_role_arn": f"arn:aws:sts::222222222222:assumed-role/{role}/alice",
            "source_identity": "alice", "duration_seconds": 3600, "warnings": [], "credentials": creds,
            "profile": {"name": role, "config": section},
        })

    def roles(self) -> list[dict[str, Any]]:
        base = {"account_id": "222222222222", "max_duration_seconds": 3600, "console": True}
        return [
            {**base, "name": "sandbox-admin", "role_arn": "arn:aws:iam::222222222222:role/Admin",
             "region": "eu-west-1", "access": "allowed"},
            {**base, "name": "prod-readonly", "account_id": "333333333333",
             "role_arn": "arn:aws:iam::333333333333:role/ReadOnly", "region": "us-east-1",
             "access": "approval_required"},
            {**base, "name": "prod-admin", "role_arn": "arn:aws:iam::333333333333:role/Admin",
             "region": "us-east-1", "access": "granted_until:2030-01-02T03:04:05+00:00"},
        ]

    def config_text(self, names: tuple[str, ...] = ("sandbox-admin", "prod-admin")) -> str:
        return "\n".join(
            f"[profile {name}]\ncredential_process = rolebroker credential-process --url {self.url} --role {name}\n"
            f"region = {self.region}\n"
            for name in names
        )


DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class FakeIssuer(FakeServer):
    """An OIDC issuer: discovery, authorization code + PKCE (S256), refresh and the device grant (RFC 8628).

    The device grant's polls are answered from ``device_polls`` in order
    (an OAuth error code, or ``"ok"`` for tokens); ``device_start`` is the
    device authorization answer, which tests may change.
    """

    def __init__(self) -> None:
        super().__init__()
        self.client_id = "rolebroker-cli"
        self.id_token_ttl = 3600
        self.deny = False
        self.codes: dict[str, dict[str, str]] = {}
        self.refresh_tokens: set[str] = set()
        self.issued_id_tokens: list[str] = []
        self.grants: list[str] = []
        self.device = True
        self.device_start: dict[str, Any] = {
            "device_code": "device-code-" + secrets.token_urlsafe(16), "user_code": "WDJB-MJHT",
            "verification_uri": f"{self.url}/device",
            "verification_uri_complete": f"{self.url}/device?user_code=WDJB-MJHT",
            "expires_in": 600, "interval": 5}
        self.device_polls: list[str] = ["ok"]
        self.device_requests: list[dict[str, str]] = []

    def handle(self, request: Seen) -> Reply:
        parts = urlsplit(request.path)
        if parts.path == "/.well-known/openid-configuration":
            doc = {"issuer": self.url, "authorization_endpoint": f"{self.url}/authorize",
                   "token_endpoint": f"{self.url}/token", "jwks_uri": f"{self.url}/jwks"}
            if self.device:
                doc["device_authorization_endpoint"] = f"{self.url}/device/code"
            return Reply(200, doc)
        if parts.path == "/authorize":
            return self.authorize({k: v[0] for k, v in parse_qs(parts.query).items()})
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if parts.path == "/device/code" and request.method == "POST":
            self.device_requests.append(form)
            if form.get("client_id") != self.client_id:
                return Reply(401, {"error": "invalid_client"})
            return Reply(200, self.device_start)
        if parts.path == "/token" and request.method == "POST":
            self.grants.append(form.get("grant_type", ""))
            if form.get("grant_type") == DEVICE_GRANT:
                return self.device_poll(form)
            return self.token(form)
        return Reply(404, {"error": "not_found"})

    def device_poll(self, form: dict[str, str]) -> Reply:
        if form.get("client_id") != self.client_id or form.get("device_code") != self.device_start["device_code"]:
            return Reply(400, {"error": "invalid_grant"})
        outcome = self.device_polls.pop(0) if len(self.device_polls) > 1 else self.device_polls[0]
        if outcome == "ok":
            return Reply(200, self.issue(None))
        return Reply(400, {"error": outcome})

    def authorize(self, query: dict[str, str]) -> Reply:
        redirect = query.get("redirect_uri", "")
        ok = (query.get("client_id") == self.client_id and query.get("response_type") == "code"
              and query.get("code_challenge_method") == "S256" and redirect.startswith("http://127.0.0.1:"))
        if not ok:
            return Reply(400, {"error": "invalid_request"})
        if self.deny:
            answer = {"error": "access_denied", "error_description": "user said no", "state": query["state"]}
        else:
            code = secrets.token_urlsafe(16)
            self.codes[code] = query
            answer = {"code": code, "state": query["state"]}
        return Reply(302, b"", "", {"Location": f"{redirect}?{urlencode(answer)}"})

    def token(self, form: dict[str, str]) -> Reply:
        if form.get("client_id") != self.client_id:
            return Reply(401, {"error": "invalid_client"})
        if form.get("grant_type") == "authorization_code":
            asked = self.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            if (asked is None or asked["redirect_uri"] != form.get("redirect_uri")
                    or b64url(hashlib.sha256(verifier.encode()).digest()) != asked["code_challenge"]):
                return Reply(400, {"error": "invalid_grant"})
            return Reply(200, self.issue(asked.get("nonce")))
        if form.get("grant_type") == "refresh_token":
            token = form.get("refresh_token", "")
            if token not in self.refresh_tokens:
                return Reply(400, {"error": "invalid_grant", "error_description": "refresh token revoked"})
            self.refresh_tokens.discard(token)  # rotation: single use
            return Reply(200, self.issue(None))
        return Reply(400, {"error": "unsupported_grant_type"})

    def issue(self, nonce: str | None) -> dict[str, Any]:
        claims = {"iss": self.url, "sub": "alice", "email": "alice@example.com", "aud": self.client_id,
                  "exp": int(time.time()) + self.id_token_ttl}
        if nonce:
            claims["nonce"] = nonce
        id_token = make_jwt({**claims, "jti": secrets.token_hex(8)})
        refresh = "refresh-" + secrets.token_urlsafe(16)
        self.refresh_tokens.add(refresh)
        self.issued_id_tokens.append(id_token)
        return {"access_token": "access-" + secrets.token_urlsafe(16), "id_token": id_token,
                "refresh_token": refresh, "expires_in": self.id_token_ttl, "token_type": "Bearer"}


class FakeClock:
    """A clock and a sleep for ``Runtime``: sleeping moves the clock, nothing waits."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


def cache_files(env: dict[str, str]) -> list[str]:
    directory = Path(env["XDG_CACHE_HOME"]) / "rolebroker"
    return sorted(p.name for p in directory.glob("*.json")) if directory.exists() else []


def imported_modules(stderr: bytes) -> set[str]:
    """The modules a `python -X importtime` run imported, from its stderr."""
    names = set()
    for line in stderr.decode().splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names
