"""HTTP servers on 127.0.0.1 that no other local user can hold: ``serve``'s endpoint and ``login``'s redirect.

Every user of the machine can connect to a loopback port (listening ports
are in /proc/net/tcp), so these servers assume the first connections they
see may be someone else's, sending nothing or a byte now and then:

- Each connection has one deadline for its whole request head, counted from
  the moment it was accepted, not a timeout per read: a byte every few
  seconds does not keep a connection open past it.
- At most ``max_connections`` at once. When all are taken, the oldest one not
  yet *admitted* is hung up to make room, so connections that never finish a
  request cannot crowd out the one that will. A connection is admitted once
  its request has proved itself (``serve``: this run's token; ``login``: this
  sign-in's ``state``): by its handler, or, when room has to be made, by the
  server itself, which first reads (without taking them) the bytes each
  candidate has sent and admits any whose complete request head proves
  itself. So whether the program's request keeps its slot does not depend on
  its thread having run yet. Admitted connections are never dropped; a new
  one is turned away only when every slot holds an admitted connection.
- Stopping the server hangs up every connection still open, so neither
  ``login`` nor ``serve`` waits for a silent client when it ends.

The clock is injectable, so tests move time instead of sleeping.
"""

from __future__ import annotations

import contextlib
import io
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from email.message import Message
    from typing import Any

HOST = "127.0.0.1"
MAX_CONNECTIONS = 32
REQUEST_TIMEOUT_SECONDS = 5.0
# How much of a request head the server looks into to admit it: a real one (an
# SDK's, a browser's redirect) is well under 2 KiB; one longer is not admitted early.
HEAD_LIMIT = 16 * 1024


class RequestHead:
    """A complete request head, read as ``http.server`` reads it: what a proof looks at."""

    def __init__(self, command: str, path: str, headers: Message) -> None:
        self.command = command
        self.path = path
        self.headers = headers


def parse_head(data: bytes) -> RequestHead | None:
    """The request line and headers at the start of ``data``, or None while they are incomplete (or malformed)."""
    import http.client
    import re

    line, newline, rest = data.partition(b"\n")
    end = re.search(rb"(?:\A|\n)\r?\n", rest) if newline else None  # the empty line that ends the head
    words = line.decode("iso-8859-1").split()
    if end is None or len(words) != 3:
        return None
    try:
        headers = http.client.parse_headers(io.BytesIO(rest[:end.end()]))
    except http.client.HTTPException:
        return None
    return RequestHead(words[0], words[1], headers)


class _Connection:
    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.admitted = False
        self.head = b""  # what its thread has read so far, while not admitted (up to HEAD_LIMIT)


class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server on 127.0.0.1 with a deadline per request head and room for real requests."""

    daemon_threads = True
    # A server on 127.0.0.1 must not share its port with another program's socket.
    allow_reuse_address = False

    def __init__(self, handler: type[LoopbackHandler], *, port: int = 0, max_connections: int = MAX_CONNECTIONS,
                 request_timeout: float = REQUEST_TIMEOUT_SECONDS, clock: Callable[[], float] = time.monotonic,
                 proves: Callable[[RequestHead], bool] = lambda head: False) -> None:
        """``proves`` says whether a complete request head proves itself: the handler admits the same ones."""
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.clock = clock
        self.proves = proves
        self._guard = threading.Lock()
        self._open: dict[Any, _Connection] = {}  # in the order accepted: the first is the oldest
        super().__init__((HOST, port), handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._guard:
            if len(self._open) >= self.max_connections:
                waiting = next((conn for conn, state in self._open.items() if not self._proven(conn, state)), None)
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

    def _proven(self, request: Any, state: _Connection) -> bool:
        """Admitted, or admitted now: its complete head (what its thread read, then what waits unread) proves itself.

        Called with ``_guard`` held, which is also held while a thread takes
        bytes off a connection not yet admitted (``receive_into``), so every
        byte sent is either in ``state.head`` or still waiting: none is missed.
        """
        if not state.admitted and len(state.head) < HEAD_LIMIT:
            head = parse_head(state.head + _waiting(request, HEAD_LIMIT - len(state.head)))
            state.admitted = head is not None and self.proves(head)
        return state.admitted

    def receive_into(self, request: Any, buffer: Any) -> int:
        """Read from the connection into ``buffer``; until it is admitted, keep what was read where eviction sees it."""
        with self._guard:
            state = self._open.get(request)
            watched = state is not None and not state.admitted and len(state.head) < HEAD_LIMIT
        if not watched:
            return int(request.recv_into(buffer))
        # Wait (up to the socket's timeout) without taking anything, then take
        # what arrived under the guard, so that eviction never sees a byte in neither place.
        if not request.recv(len(buffer), socket.MSG_PEEK):
            return 0  # the client is done sending
        with self._guard:
            received = int(request.recv_into(buffer))  # returns at once: the bytes are there
            state = self._open.get(request)
            if state is not None and not state.admitted:
                state.head = (state.head + bytes(buffer[:received]))[:HEAD_LIMIT]
        return received

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


def _waiting(sock: socket.socket, size: int) -> bytes:
    """Up to ``size`` bytes the client sent that are not read yet, left in place; never waits."""
    import select

    try:
        if sys.platform == "win32":  # no poll(); select() takes any socket there, whatever its number
            ready = bool(select.select([sock], [], [], 0)[0])
        else:
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            ready = bool(poller.poll(0))
        # Readable, so this returns at once, whatever the socket's own timeout.
        return sock.recv(size, socket.MSG_PEEK) if ready else b""
    except (OSError, ValueError):  # hung up meanwhile, or already closed
        return b""


def _hang_up(request: Any) -> None:
    # shutdown, not close: the connection's own thread is blocked reading it
    # and closes it; shutdown makes that read return at once.
    with contextlib.suppress(OSError):  # already gone
        request.shutdown(socket.SHUT_RDWR)


class _HeadReader(io.RawIOBase):
    """The socket's bytes, each read bounded by what is left of the connection's one deadline."""

    def __init__(self, server: LoopbackServer, sock: socket.socket, deadline: float, clock: Callable[[], float]
                 ) -> None:
        super().__init__()
        self._server = server
        self._sock = sock
        self._deadline = deadline
        self._clock = clock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(self._left())
        received = self._server.receive_into(self._sock, buffer)
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
        self.rfile = io.BufferedReader(_HeadReader(self.server, self.connection, self.server.deadline(self.request),
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
