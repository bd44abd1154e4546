"""A development OIDC issuer on 127.0.0.1: discovery, JWKS, code + PKCE.

It signs RS256 tokens with a key it generates at start. It is a real HTTP
server speaking the parts of OIDC the broker and the client use, so the
local stack and the tests exercise the same code paths as a real IdP:

* ``/.well-known/openid-configuration`` and ``/jwks.json``;
* ``/authorize`` and ``/token`` (authorization code with PKCE S256, refresh
  tokens) for ``rolebroker login``; there is no login page: the user is
  taken from ``login_hint`` (default ``alice@example.com``);
* the device grant (RFC 8628) for ``rolebroker login --device``:
  ``POST /device/code`` hands out a user code, and ``/device`` is a dev-only
  approval page (or ``curl -d user_code=CODE -d user=bob@example.com
  <issuer>/device``) that signs the code in as any user, or refuses it;
* ``POST /dev/token``, which mints a token for any claims: what
  ``python -m devstack token`` calls. That is why this issuer must never
  listen anywhere but loopback.

``kind="people"`` mints what an IdP gives a person (``email``,
``email_verified``, ``groups``, ``amr``); ``kind="github"`` mints what
GitHub Actions gives a job: ``sub`` is ``repo:OWNER/REPO:ref:REF``, with
``repository``, ``ref``, ``repository_owner``, ``actor``, ``workflow`` and no
email, groups or ``amr``. The local stack runs one of each.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .loopback import LoopbackServer

DEFAULT_USERS: dict[str, dict[str, Any]] = {
    "alice@example.com": {"groups": ["platform-admins"]},
    "bob@example.com": {"groups": ["developers"]},
    "carol@example.com": {"groups": ["security"]},
}


@dataclass
class _Key:
    kid: str
    private: rsa.RSAPrivateKey

    def jwk(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**public, "kid": self.kid, "use": "sig", "alg": "RS256"}


def new_key() -> _Key:
    return _Key(kid=uuid.uuid4().hex[:16], private=rsa.generate_private_key(public_exponent=65537, key_size=2048))


@dataclass
class DevIssuer(LoopbackServer):
    """Start with ``start()``, stop with ``stop()``; ``url`` is the issuer."""

    host: str = "127.0.0.1"
    port: int = 0
    audience: str = "rolebroker-local"
    kind: str = "people"  # people | github
    keys: list[_Key] = field(default_factory=lambda: [new_key()])
    users: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(DEFAULT_USERS))
    jwks_requests: int = 0
    discovery_requests: int = 0
    jwks_available: bool = True
    device_interval: int = 5
    device_lifetime: int = 600
    clock: Callable[[], float] = time.time  # the device grant's timing; tokens use the real time
    _codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    _devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    _refresh: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    def start(self) -> DevIssuer:
        super().start()
        return self

    # -- keys and tokens

    def rotate(self, keep_old: bool = False) -> None:
        """Publish a new signing key (and drop the old one unless ``keep_old``)."""
        with self._lock:
            self.keys = [new_key()] + (self.keys if keep_old else [])

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk() for key in self.keys]}

    def mint(self, sub: str, *, groups: list[str] | None = None, claims: dict[str, Any] | None = None,
             ttl: int = 3600, audience: str | None = None, mfa: bool = False) -> str:
        """A signed token; for ``kind="github"`` an empty ``sub`` is made from ``repository`` and ``ref``."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.url,
            "aud": audience or self.audience,
            "sub": sub,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
        }
        if self.kind == "github":
            payload.update(_github_claims(sub, claims or {}))
        else:
            payload["amr"] = ["pwd", "mfa"] if mfa else ["pwd"]
            if "@" in sub:
                payload.update(email=sub, email_verified=True)
        if groups is not None:
            payload["groups"] = groups
        payload.update(claims or {})
        key = self.keys[0]
        return jwt.encode(payload, key.private, algorithm="RS256", headers={"kid": key.kid})

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "jwks_uri": f"{self.url}/jwks.json",
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_GRANT],
            "device_authorization_endpoint": f"{self.url}/device/code",
        }

    # -- authorization code + PKCE

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str]]:
        redirect = query.get("redirect_uri", "")
        parsed = urlparse(redirect)
        if parsed.scheme != "http" or parsed.hostname not in {"127.0.0.1", "localhost", "::1"}:
            return 400, {"error": "invalid_request", "error_description": "redirect_uri must be loopback"}
        if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
            return 400, {"error": "invalid_request", "error_description": "code flow with PKCE S256 only"}
        if not query.get("code_challenge") or query.get("client_id") != self.audience:
            return 400, {"error": "invalid_request", "error_description": "unknown client or no code_challenge"}
        user = query.get("login_hint") or "alice@example.com"
        code = secrets.token_urlsafe(24)
        self._codes[code] = {"user": user, "challenge": query["code_challenge"], "redirect_uri": redirect,
                             "expires": time.time() + 120}
        location = redirect + ("&" if "?" in redirect else "?") + urlencode(
            {"code": code, "state": query.get("state", "")})
        return 302, {"Location": location}

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("client_id") != self.audience:
            return 401, {"error": "invalid_client"}
        grant = form.get("grant_type")
        if grant == "authorization_code":
            entry = self._codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if (entry is None or entry["expires"] < time.time() or entry["challenge"] != challenge
                    or entry["redirect_uri"] != form.get("redirect_uri")):
                return 400, {"error": "invalid_grant"}
            user = entry["user"]
        elif grant == DEVICE_GRANT:
            status, answer = self._device_poll(form.get("device_code", ""))
            if status != 200:
                return status, answer
            user = answer["user"]
        elif grant == "refresh_token":
            entry = self._refresh.get(form.get("refresh_token", ""))
            if entry is None:
                return 400, {"error": "invalid_grant"}
            user = entry["user"]
        else:
            return 400, {"error": "unsupported_grant_type"}
        refresh = secrets.token_urlsafe(32)
        self._refresh[refresh] = {"user": user}
        groups = self.users.get(user, {}).get("groups", [])
        token = self.mint(user, groups=groups, ttl=3600)
        return 200, {"access_token": token, "id_token": token, "refresh_token": refresh,
                     "token_type": "Bearer", "expires_in": 3600}


    # -- the device authorization grant (RFC 8628)

    def device_authorize(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("client_id") != self.audience:
            return 401, {"error": "invalid_client"}
        device_code = secrets.token_urlsafe(32)
        user_code = _user_code()
        with self._lock:
            self._devices[device_code] = {"user_code": user_code, "expires": self.clock() + self.device_lifetime,
                                          "interval": self.device_interval, "last_poll": None, "user": None,
                                          "denied": False}
        return 200, {"device_code": device_code, "user_code": user_code,
                     "verification_uri": f"{self.url}/device",
                     "verification_uri_complete": f"{self.url}/device?{urlencode({'user_code': user_code})}",
                     "expires_in": self.device_lifetime, "interval": self.device_interval}

    def approve_device(self, user_code: str, user: str, *, approve: bool) -> bool:
        """Sign the pending code in as ``user`` (or refuse it); False when no such code is pending."""
        wanted = _normal_code(user_code)
        with self._lock:
            for entry in self._devices.values():
                pending = entry["user"] is None and not entry["denied"] and entry["expires"] > self.clock()
                if pending and _normal_code(entry["user_code"]) == wanted:
                    if approve:
                        entry["user"] = user
                    else:
                        entry["denied"] = True
                    return True
        return False

    def _device_poll(self, device_code: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            entry = self._devices.get(device_code)
            if entry is None:
                return 400, {"error": "invalid_grant"}
            now = self.clock()
            if entry["expires"] <= now:
                del self._devices[device_code]
                return 400, {"error": "expired_token"}
            if entry["denied"]:
                del self._devices[device_code]
                return 400, {"error": "access_denied"}
            if entry["user"] is not None:
                del self._devices[device_code]
                return 200, {"user": entry["user"]}
            too_soon = entry["last_poll"] is not None and now - entry["last_poll"] < entry["interval"]
            entry["last_poll"] = now
            if too_soon:
                entry["interval"] += 5
                return 400, {"error": "slow_down"}
            return 400, {"error": "authorization_pending"}

    def device_page(self, user_code: str, message: str = "") -> str:
        """The dev-only approval page: pick who signs in with the code."""
        buttons = "".join(
            f"<p><button name=user value='{html.escape(user, quote=True)}'>Sign in as {html.escape(user)} "
            f"({html.escape(', '.join(spec.get('groups', [])))})</button></p>"
            for user, spec in self.users.items())
        return ("<!doctype html><meta charset=utf-8><title>rolebroker dev issuer</title>"
                "<body style='font-family:sans-serif'><h1>Dev issuer: approve a sign-in</h1>"
                f"<p>{html.escape(message)}</p><form method=post action=/device>"
                f"<p><label>Code <input name=user_code value='{html.escape(user_code, quote=True)}'></label></p>"
                f"<input type=hidden name=action value=approve>{buttons}</form>"
                "<form method=post action=/device><input type=hidden name=action value=deny>"
                f"<input type=hidden name=user_code value='{html.escape(user_code, quote=True)}'>"
                "<p><button>Refuse this sign-in</button></p></form>"
                "<p>Development only: no password is asked.</p></body>")


DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_USER_CODE_LETTERS = "BCDFGHJKLMNPQRSTVWXZ"  # RFC 8628 6.1: no vowels, nothing that reads as a digit


def _user_code() -> str:
    letters = "".join(secrets.choice(_USER_CODE_LETTERS) for _ in range(8))
    return f"{letters[:4]}-{letters[4:]}"


def _normal_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _github_claims(sub: str, claims: dict[str, Any]) -> dict[str, Any]:
    """The claims GitHub Actions puts in a job's token, made consistent with ``sub``."""
    repository = str(claims.get("repository") or "acme/infra")
    ref = str(claims.get("ref") or "refs/heads/main")
    if sub.startswith("repo:") and ":ref:" in sub and not claims.get("repository"):
        repository, _, ref = sub[len("repo:"):].partition(":ref:")
    return {
        "sub": sub or f"repo:{repository}:ref:{ref}",
        "repository": repository,
        "repository_owner": repository.split("/", 1)[0],
        "ref": ref,
        "ref_type": "branch",
        "actor": "octocat",
        "workflow": "deploy",
        "event_name": "push",
        "run_id": str(int(time.time())),
        "runner_environment": "github-hosted",
        "job_workflow_ref": f"{repository}/.github/workflows/deploy.yml@{ref}",
    }


def _handler_for(issuer: DevIssuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # requests carry tokens in bodies; keep them off the console

        def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _page(self, status: int, page: str) -> None:
            data = page.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            if parsed.path == "/device":
                query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
                self._page(200, issuer.device_page(query.get("user_code", "")))
                return
            if parsed.path == "/.well-known/openid-configuration":
                issuer.discovery_requests += 1
                self._send(200, issuer.discovery())
            elif parsed.path == "/jwks.json":
                issuer.jwks_requests += 1
                if issuer.jwks_available:
                    self._send(200, issuer.jwks())
                else:
                    self._send(503, {"error": "unavailable"})
            elif parsed.path == "/authorize":
                query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
                status, answer = issuer.authorize(query)
                if status == 302:
                    self._send(302, {}, answer)
                else:
                    self._send(status, answer)
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = min(int(self.headers.get("Content-Length") or 0), 64 * 1024)
            raw = self.rfile.read(length).decode("utf-8", "replace")
            if self.path == "/token":
                form = {k: v[0] for k, v in parse_qs(raw).items()}
                self._send(*issuer.token(form))
            elif self.path == "/device/code":
                self._send(*issuer.device_authorize({k: v[0] for k, v in parse_qs(raw).items()}))
            elif self.path == "/device":
                self._device_decision({k: v[0] for k, v in parse_qs(raw).items()})
            elif self.path == "/dev/token":
                try:
                    spec = json.loads(raw or "{}")
                    token = issuer.mint(spec["sub"], groups=spec.get("groups"), claims=spec.get("claims"),
                                        ttl=int(spec.get("ttl", 3600)), mfa=bool(spec.get("mfa")))
                except (KeyError, TypeError, ValueError) as exc:
                    self._send(400, {"error": f"bad mint request: {exc}"})
                    return
                self._send(200, {"token": token})
            else:
                self._send(404, {"error": "not_found"})

        def _device_decision(self, form: dict[str, str]) -> None:
            code, user = form.get("user_code", ""), form.get("user", "alice@example.com")
            approve = form.get("action", "approve") != "deny"
            if not issuer.approve_device(code, user, approve=approve):
                self._page(404, issuer.device_page(code, "No sign-in is waiting for that code (or it expired)."))
                return
            done = f"Signed in as {user}." if approve else "Sign-in refused."
            self._page(200, f"<!doctype html><meta charset=utf-8><p>{html.escape(done)} "
                            "Return to your terminal.</p>")

    return Handler
