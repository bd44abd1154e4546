"""HTTP servers on 127.0.0.1 that no other local user can hold: ``serve``'s endpoint and ``login``'s redirect.

Every user of the machine can connect to a loopback port (listening ports
are in /proc/net/tcp), so these servers assume the first connections they
see may be someone else's, sending nothing or a byte now and then:

- Each connection has one deadline for its whole request head, counted from
  the moment it was accepted, not a timeout per read: a byte every few
  seconds does not keep a connection open past it.
- At most ``max_connections`` at once. When all are taken, the oldest one not
  yet *admitted* is hung up to make room, so connections that never finish a
  request cannot crowd out the one that will. A handler admits a connection
  once its request has proved itself (``serve``: this run's token; ``login``:
  this sign-in's ``state``). Admitted connections are never dropped; a new
  one is turned away only when every slot holds an admitted connection.
- Stopping the server hangs up every connection still open, so neither
  ``login`` nor ``serve`` waits for a silent client when it ends.

The clock is injectable, so tests move time instead of sleeping.
"""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

HOST = "127.0.0.1"
MAX_CONNECTIONS = 32
REQUEST_TIMEOUT_SECONDS = 5.0


class _Connection:
    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.admitted = False


class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server on 127.0.0.1 with a deadline per request head and room for real requests."""

    daemon_threads = True
    # A server on 127.0.0.1 must not share its port with another program's socket.
    allow_reuse_address = False

    def __init__(self, handler: type[LoopbackHandler], *, port: int = 0, max_connections: int = MAX_CONNECTIONS,
                 request_timeout: float = REQUEST_TIMEOUT_SECONDS, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.clock = clock
        self._guard = threading.Lock()
        self._open: dict[Any, _Connection] = {}  # in the order accepted: the first is the oldest
        super().__init__((HOST, port), handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._guard:
            if len(self._open) >= self.max_connections:
                waiting = next((conn for conn, state in self._open.items() if not state.admitted), None)
                if waiting is None:  # every slot is a real request being answered
                    self.shutdown_request(request)
                    return
                del self._open[waiting]
                _hang_up(waiting)
            self._open[request] = _Connection(self.clock() + self.request_timeout)
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._guard:
                self._open.pop(request, None)
            self.shutdown_request(request)

    def deadline(self, request: Any) -> float:
        """When this connection's request head must be complete (already past once it was hung up)."""
        with self._guard:
            state = self._open.get(request)
        return state.deadline if state is not None else float("-inf")

    def admit(self, request: Any) -> None:
        """This connection's request proved itself: it keeps its slot until it is answered."""
        with self._guard:
            if request in self._open:
                self._open[request].admitted = True

    def still_open(self, request: Any) -> bool:
        with self._guard:
            return request in self._open

    def server_close(self) -> None:
        super().server_close()
        with self._guard:
            waiting, self._open = list(self._open), {}
        for request in waiting:
            _hang_up(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that hung up mid-answer; nothing to report, and no traceback on the terminal


def _hang_up(request: Any) -> None:
    # shutdown, not close: the connection's own thread is blocked reading it
    # and closes it; shutdown makes that read return at once.
    with contextlib.suppress(OSError):  # already gone
        request.shutdown(socket.SHUT_RDWR)


class _HeadReader(io.RawIOBase):
    """The socket's bytes, each read bounded by what is left of the connection's one deadline."""

    def __init__(self, sock: socket.socket, deadline: float, clock: Callable[[], float]) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline
        self._clock = clock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(self._left())
        received = self._sock.recv_into(buffer)
        self._left()  # what arrives after the deadline does not count, however the read was scheduled
        return received

    def _left(self) -> float:
        left = self._deadline - self._clock()
        if left <= 0:
            # http.server ends the connection quietly on a timeout
            raise socket.timeout("the request took too long")
        return left


class LoopbackHandler(BaseHTTPRequestHandler):
    """A handler whose request head is read against its connection's deadline; quiet on the terminal."""

    server: LoopbackServer
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket's own reader, replaced by one that keeps the deadline
        self.rfile = io.BufferedReader(_HeadReader(self.connection, self.server.deadline(self.request),
                                                   self.server.clock))

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        self.connection.settimeout(self.server.request_timeout)  # for the answer: small, but never forever
        # A connection hung up to make room can still finish reading a head
        # that was already buffered: it gets no answer.
        if not self.server.still_open(self.request):
            self.close_connection = True
            return False
        return True

    def admit(self) -> None:
        self.server.admit(self.request)

    def log_message(self, format: str, *args: Any) -> None:
        return  # the terminal belongs to the user (and to the command they run)
