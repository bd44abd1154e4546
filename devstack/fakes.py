"""Local stand-ins for Slack's Web API, Slack's response_url hooks and the
AWS sign-in federation endpoint, so ``make run`` exercises ChatOps and
console links without Slack or AWS. Every call is recorded (except the
federation request's query, which carries session keys) and can be read
back at ``GET /_recorded``.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from .loopback import LoopbackServer

SLACK_USERS = {
    "U0ALICE": "alice@example.com",
    "U0BOB": "bob@example.com",
    "U0CAROL": "carol@example.com",
}


@dataclass
class FakeWeb(LoopbackServer):
    host: str = "127.0.0.1"
    port: int = 0
    users: dict[str, str] = field(default_factory=lambda: dict(SLACK_USERS))
    team_id: str = "T0LOCAL"
    recorded: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ts: int = 0

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler(self)

    def start(self) -> FakeWeb:
        super().start()
        return self

    def record(self, path: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.recorded.append({"path": path, "at": time.time(), "body": body})

    def next_ts(self) -> str:
        with self._lock:
            self._ts += 1
            return f"{int(time.time())}.{self._ts:06d}"


def _handler(fake: FakeWeb) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            raw = self.rfile.read(min(int(self.headers.get("Content-Length") or 0), 1024 * 1024)).decode()
            if self.headers.get("Content-Type", "").startswith("application/json"):
                parsed: dict[str, Any] = json.loads(raw or "{}")
                return parsed
            return {k: v[0] for k, v in parse_qs(raw).items()}

        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            if parsed.path == "/federation":
                self._json(200, {"SigninToken": secrets.token_urlsafe(24)})
            elif parsed.path == "/_recorded":
                self._json(200, fake.recorded)
            else:
                self._json(404, {"ok": False, "error": "unknown_method"})

        def do_POST(self) -> None:
            path = urlparse(self.path).path
            body = self._body()
            fake.record(path, body)
            if path == "/api/users.info":
                email = fake.users.get(str(body.get("user")))
                profile = {"email": email} if email else {}
                self._json(200, {"ok": True, "user": {"id": body.get("user"), "team_id": fake.team_id,
                                                      "profile": profile}})
            elif path == "/api/chat.postMessage":
                self._json(200, {"ok": True, "channel": body.get("channel"), "ts": fake.next_ts()})
            elif path == "/api/chat.update":
                self._json(200, {"ok": True, "channel": body.get("channel"), "ts": body.get("ts")})
            elif path.startswith("/hooks/"):
                self._json(200, {"ok": True})
            else:
                self._json(404, {"ok": False, "error": "unknown_method"})

    return Handler
