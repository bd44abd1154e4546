"""A small threaded HTTP server on loopback, shared by the dev issuer and the fakes."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# How often the serving thread looks for stop(): the default half second is
# what every test that starts its own issuer would wait in its teardown.
POLL_SECONDS = 0.02


class LoopbackServer:
    """``start()`` serves ``handler`` in a daemon thread; ``stop()`` shuts it down."""

    host: str
    port: int
    _server: ThreadingHTTPServer | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        assert self._server is not None, f"{type(self).__name__} not started"
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> LoopbackServer:
        if self.host not in LOOPBACK_HOSTS:
            raise ValueError(f"{type(self).__name__} only listens on loopback")
        self._server = ThreadingHTTPServer((self.host, self.port), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(POLL_SECONDS,), name=type(self).__name__,
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
