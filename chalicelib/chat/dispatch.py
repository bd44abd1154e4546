"""Work that must not hold up Slack's 3-second acknowledgement.

Chalice has no background work within a request: a Lambda is frozen as soon
as it answers. So, like Bolt's "lazy listeners", the deployed broker invokes
its own worker function asynchronously (``InvocationType=Event``) with the
task, and answers Slack at once. Locally (``chalice local``), a thread does
the same job; tests run tasks inline to assert on the outcome.

Whatever the transport, a task is sealed before it leaves and opened by the
same ``TaskWorker`` on arrival (see ``tasks.py``), so the local stack and the
tests take the path the deployed worker takes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from chalicelib.chat.tasks import Envelope, Task, TaskSeal

LOG = logging.getLogger(__name__)


class Dispatcher(Protocol):
    def dispatch(self, task: Task) -> None: ...


class Transport(Protocol):
    def send(self, envelope: Envelope) -> None: ...


class SealedDispatcher:
    def __init__(self, seal: TaskSeal, transport: Transport) -> None:
        self._seal = seal
        self._transport = transport

    def dispatch(self, task: Task) -> None:
        self._transport.send(self._seal.seal(task))


class InlineTransport:
    def __init__(self, receive: Callable[[Envelope], None]) -> None:
        self._receive = receive

    def send(self, envelope: Envelope) -> None:
        self._receive(envelope)


class ThreadTransport:
    def __init__(self, receive: Callable[[Envelope], None]) -> None:
        self._receive = receive

    def send(self, envelope: Envelope) -> None:
        threading.Thread(target=self._run, args=(envelope,), name="rolebroker-task", daemon=True).start()

    def _run(self, envelope: Envelope) -> None:
        try:
            self._receive(envelope)
        except Exception:
            LOG.exception("background task failed")


class LambdaTransport:
    def __init__(self, lambda_client: Any, function_name: str) -> None:
        self._client = lambda_client
        self._function = function_name

    def send(self, envelope: Envelope) -> None:
        self._client.invoke(FunctionName=self._function, InvocationType="Event",
                            Payload=json.dumps(envelope).encode())


class DispatchingNotifier:
    """``jit.desk.Notifier`` that hands notifications to the worker.

    The request or decision is already stored when this runs, so a failed
    hand-off is logged, not raised: the caller's answer stays true, and the
    request still shows in approvers' ``/aws requests`` and ``GET /v1/requests``.
    """

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    def request_created(self, request_id: str) -> None:
        self._send({"kind": "request_created", "request_id": request_id})

    def request_decided(self, request_id: str) -> None:
        self._send({"kind": "request_decided", "request_id": request_id})

    def request_changed(self, request_id: str) -> None:
        self._send({"kind": "request_changed", "request_id": request_id})

    def break_glass_opened(self, request_id: str) -> None:
        self._send({"kind": "break_glass_opened", "request_id": request_id})

    def _send(self, task: Task) -> None:
        try:
            self._dispatcher.dispatch(task)
        except Exception:
            LOG.exception("could not hand the %s notification to the worker", task["kind"])
