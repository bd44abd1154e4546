"""Work that must not hold up Slack's 3-second acknowledgement.

Chalice has no background work within a request: a Lambda is frozen as soon
as it answers. So, like Bolt's "lazy listeners", the deployed broker invokes
its own worker function asynchronously (``InvocationType=Event``) with the
task, and answers Slack at once. Locally (``chalice local``), a thread does
the same job; tests run tasks inline to assert on the outcome.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

LOG = logging.getLogger(__name__)
Task = dict[str, Any]


class Dispatcher(Protocol):
    def dispatch(self, task: Task) -> None: ...


class InlineDispatcher:
    def __init__(self, handler: Callable[[Task], None]) -> None:
        self.handler = handler

    def dispatch(self, task: Task) -> None:
        self.handler(task)


class ThreadDispatcher:
    def __init__(self, handler: Callable[[Task], None]) -> None:
        self.handler = handler

    def dispatch(self, task: Task) -> None:
        threading.Thread(target=self._run, args=(task,), name=f"task-{task.get('kind')}", daemon=True).start()

    def _run(self, task: Task) -> None:
        try:
            self.handler(task)
        except Exception:
            LOG.exception("background task %s failed", task.get("kind"))


class LambdaDispatcher:
    def __init__(self, lambda_client: Any, function_name: str) -> None:
        self._client = lambda_client
        self._function = function_name

    def dispatch(self, task: Task) -> None:
        self._client.invoke(FunctionName=self._function, InvocationType="Event",
                            Payload=json.dumps(task).encode())


class DispatchingNotifier:
    """``access.Notifier`` that hands notifications to the worker."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    def request_created(self, request_id: str) -> None:
        self._dispatcher.dispatch({"kind": "request_created", "request_id": request_id})

    def request_decided(self, request_id: str) -> None:
        self._dispatcher.dispatch({"kind": "request_decided", "request_id": request_id})
