"""Re-attack of the client fixes of review 13 (merge ``attack13``): findings as strict xfails.

Each test states what must hold and fails on the code as merged; the fix
turns it green (then drop the marker).
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
from rolebroker import serve as serve_module
from rolebroker.loopback import LoopbackServer

TOKEN = "run-token-" + "y" * 30


# --------------------------------------------------------------------------
# F: a flood of connections evicts the program's complete request before its
# thread has read it (admission waits on thread scheduling)


class _Delayed(LoopbackServer):
    """The first connection's thread runs only once ``go`` is set: what a busy machine (two cores, a flood of
    connections each starting a thread) does to a thread anyway."""

    go = threading.Event()
    first = threading.Event()
    accepted = 0
    changed = threading.Condition()

    def process_request(self, request: Any, client_address: Any) -> None:
        super().process_request(request, client_address)
        with _Delayed.changed:
            _Delayed.accepted += 1
            _Delayed.changed.notify_all()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        if not _Delayed.first.is_set():
            _Delayed.first.set()
            assert _Delayed.go.wait(30)
        super().process_request_thread(request, client_address)


def _fetch(role: str) -> dict[str, Any]:
    return {"credentials": {"AccessKeyId": "ASIAREATTACK", "SecretAccessKey": "secret", "SessionToken": "session"},
            "expires_at": 4102444800.0}


def _read_all(conn: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := conn.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


@pytest.mark.xfail(strict=True, reason="REATTACK F2: a local flood of connections evicts the program's complete, "
                   "correctly authorized request whose thread has not read it yet; admission depends on scheduling")
def test_a_flood_cannot_evict_a_complete_authorized_request_before_its_thread_runs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve_module, "MAX_CONNECTIONS", 2)
    monkeypatch.setattr(serve_module, "REQUEST_TIMEOUT_SECONDS", 600.0)
    monkeypatch.setattr(serve_module, "LoopbackServer", _Delayed)
    _Delayed.go.clear()
    _Delayed.first.clear()
    _Delayed.accepted = 0
    with serve_module.CredentialServer(_fetch, ["sandbox-admin"], token=TOKEN) as server:
        program = socket.create_connection(server.address, timeout=30)
        attackers: list[socket.socket] = []
        try:
            # The SDK's whole request, token included, is on the wire before anyone else connects.
            program.sendall(f"GET /role/sandbox-admin HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {TOKEN}\r\n\r\n"
                            .encode())
            assert _Delayed.first.wait(30)
            for _ in range(2):  # another local user: two silent connections (a real flood sends thousands)
                attackers.append(socket.create_connection(server.address, timeout=30))
            with _Delayed.changed:  # the server accepted both (it took their slots, or turned them away)
                assert _Delayed.changed.wait_for(lambda: _Delayed.accepted >= 3, timeout=30)
            _Delayed.go.set()
            answer = _read_all(program)
        finally:
            _Delayed.go.set()
            program.close()
            for conn in attackers:
                conn.close()
    assert answer.startswith(b"HTTP/1.0 200"), answer[:60]

