"""Background tasks, sealed by the API function so the worker runs only those.

Anyone allowed ``lambda:InvokeFunction`` on the ``slack_worker`` function
could otherwise hand it any event: approve a request as anybody, or send a
console link to a response URL of their choice. So every task, whatever
carries it (a Lambda invocation, a thread, a direct call in tests), travels
in an envelope::

    {"rolebroker_task": 1, "body": "<JSON: task, nonce, exp>", "sig": "<hex HMAC-SHA256>"}

The HMAC key (``ROLEBROKER_TASK_SIGNING_KEY``: a literal, or an SSM
SecureString that only the broker's two functions may read) signs the exact
body text, so nothing is re-serialised before the check. Several keys may
be configured during a rotation: the first signs, any of them verifies.

The worker checks shape, signature, expiry (15 minutes: longer than Lambda's
asynchronous retries, shorter than a Slack response URL lives), then records
the nonce in DynamoDB with a conditional put, so a task runs at most once,
whether an attacker replays it or Lambda delivers it twice. Whatever fails a
check is dropped with an audit line naming why; the line never holds the
key, the signature or the task's content.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from chalicelib.audit import AuditLog, CallContext
from chalicelib.exceptions import ConfigurationError, RolebrokerError, TaskRejected

Task = dict[str, Any]
Envelope = dict[str, Any]
TASK_TTL_SECONDS = 900
MIN_KEY_CHARS = 32
MAX_BODY_CHARS = 128 * 1024  # a Lambda event payload is at most 256 KB
ENVELOPE_VERSION = 1
_ENVELOPE_KEYS = {"rolebroker_task", "body", "sig"}
_DOMAIN = b"rolebroker-task-v1\n"  # this key signs nothing else, but the MAC says what it is for
MALFORMED = "unsigned or malformed task"


def signing_keys(value: str) -> tuple[bytes, ...]:
    """The configured keys, current first; whitespace or comma separated."""
    keys = tuple(part.encode() for part in re.split(r"[\s,]+", value) if part)
    if not keys:
        raise ConfigurationError("ROLEBROKER_TASK_SIGNING_KEY holds no key")
    if any(len(key) < MIN_KEY_CHARS for key in keys):
        raise ConfigurationError(f"every ROLEBROKER_TASK_SIGNING_KEY key must be at least {MIN_KEY_CHARS} "
                                 "characters; make one with `openssl rand -hex 32`")
    return keys


@dataclass(frozen=True)
class OpenedTask:
    task: Task
    nonce: str
    expires_at: int


class TaskSeal:
    def __init__(self, keys: Callable[[], tuple[bytes, ...]], *, clock: Callable[[], float] = time.time,
                 nonce: Callable[[], str] = lambda: secrets.token_hex(16), ttl_seconds: int = TASK_TTL_SECONDS) -> None:
        self._keys = keys
        self._clock = clock
        self._nonce = nonce
        self._ttl = ttl_seconds

    def sign(self, body: str, key: bytes | None = None) -> str:
        return hmac.new(key or self._keys()[0], _DOMAIN + body.encode(), hashlib.sha256).hexdigest()

    def _verifies(self, body: str, signature: str) -> bool:
        # compare_digest raises TypeError on non-ASCII str: compare bytes, so
        # any signature we did not make is simply "no".
        given = signature.encode("utf-8", "surrogatepass")
        return any(hmac.compare_digest(self.sign(body, key).encode(), given) for key in self._keys())

    def seal(self, task: Task) -> Envelope:
        body = json.dumps({"task": task, "nonce": self._nonce(), "exp": int(self._clock()) + self._ttl},
                          separators=(",", ":"), sort_keys=True)
        return {"rolebroker_task": ENVELOPE_VERSION, "body": body, "sig": self.sign(body)}

    def open(self, envelope: Any) -> OpenedTask:
        """The task inside ``envelope``; ``TaskRejected`` if it is not ours, intact and current."""
        body, signature = _parts(envelope)
        if not self._verifies(body, signature):
            raise TaskRejected("bad signature")
        content = _content(body)
        kind = str(content["task"].get("kind"))[:40]
        if content["exp"] <= self._clock():
            raise TaskRejected("expired", kind=kind, nonce=content["nonce"])
        return OpenedTask(task=content["task"], nonce=content["nonce"], expires_at=content["exp"])


def _parts(envelope: Any) -> tuple[str, str]:
    if not isinstance(envelope, Mapping) or set(envelope) != _ENVELOPE_KEYS:
        raise TaskRejected(MALFORMED)
    version, body, signature = envelope["rolebroker_task"], envelope["body"], envelope["sig"]
    if (type(version) is not int or version != ENVELOPE_VERSION or not isinstance(body, str)
            or not isinstance(signature, str) or len(body) > MAX_BODY_CHARS or not _is_utf8(body)):
        raise TaskRejected(MALFORMED)
    return body, signature


def _is_utf8(text: str) -> bool:
    """Whether ``text`` encodes (a JSON event can carry lone surrogates, which do not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _content(body: str) -> dict[str, Any]:
    # Signed by us, so well-formed unless a key leaked or our own code broke;
    # checked anyway, so neither becomes a crash in the worker.
    try:
        content = json.loads(body)
    except ValueError:
        raise TaskRejected(MALFORMED) from None
    if (not isinstance(content, dict) or not isinstance(content.get("task"), dict)
            or not isinstance(content.get("nonce"), str) or not content["nonce"]
            or type(content.get("exp")) is not int):
        raise TaskRejected(MALFORMED)
    return content


class NonceStore(Protocol):
    def claim_task(self, nonce: str, expires_at: int) -> bool: ...


class TaskWorker:
    """The receiving half: open the envelope, claim its nonce, run the task."""

    def __init__(self, seal: TaskSeal, nonces: NonceStore, run: Callable[[Task], None], audit: AuditLog) -> None:
        self._seal = seal
        self._nonces = nonces
        self._run = run
        self._audit = audit

    def handle(self, envelope: Any) -> None:
        try:
            opened = self._seal.open(envelope)
        except TaskRejected as exc:
            self._report("dropped", exc.reason, exc.kind, exc.nonce)
            return
        kind = str(opened.task.get("kind"))[:40]
        try:
            fresh = self._nonces.claim_task(opened.nonce, opened.expires_at)
        except RolebrokerError as exc:
            # Not run and not claimed: failing the invocation lets Lambda retry it.
            self._report("error", str(exc), kind, opened.nonce)
            raise
        if not fresh:
            self._report("dropped", "replayed", kind, opened.nonce)
            return
        self._run(opened.task)

    def _report(self, outcome: str, reason: str, kind: str | None, nonce: str | None) -> None:
        context = CallContext(request_id=f"task-{nonce}" if nonce else "task", channel="worker")
        self._audit.record(action="task", outcome=outcome, context=context, reason=reason, task_kind=kind,
                           nonce=nonce)


def epoch(clock: Callable[[], datetime]) -> Callable[[], float]:
    """A seconds clock from the broker's datetime clock (so tests move both together)."""
    return lambda: clock().astimezone(UTC).timestamp()
