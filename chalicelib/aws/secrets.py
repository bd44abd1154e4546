"""Settings that may name a secret in SSM Parameter Store (``ssm:/name``)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from chalicelib.exceptions import DependencyDown

LOG = logging.getLogger(__name__)
SECRET_TTL_SECONDS = 300


def resolve_secret(value: str | None, client_factory: Callable[[str], Any]) -> str | None:
    """The secret itself: ``value`` as is, or the SecureString it names."""
    if not value or not value.startswith("ssm:"):
        return value
    name = value[len("ssm:"):]
    try:
        answer = client_factory("ssm").get_parameter(Name=name, WithDecryption=True)
    except Exception as exc:  # botocore raises many families; all mean "not now"
        raise DependencyDown(f"the secret parameter {name} cannot be read; an operator must check it") from exc
    secret: str = answer["Parameter"]["Value"]
    return secret


class RefreshingSecret:
    """A secret setting, re-read every few minutes so a rotation in SSM needs no redeploy.

    A failed re-read keeps the value we have (an SSM hiccup must not stop
    the broker); only a secret never read yet is a ``DependencyDown``.
    """

    def __init__(self, setting: str, client_factory: Callable[[str], Any], *,
                 ttl_seconds: float = SECRET_TTL_SECONDS, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._setting = setting
        self._client_factory = client_factory
        self._ttl = ttl_seconds
        self._monotonic = monotonic
        self._value: str | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()

    def get(self) -> str:
        with self._lock:
            now = self._monotonic()
            if self._value is None or now - self._read_at >= self._ttl:
                try:
                    self._value = resolve_secret(self._setting, self._client_factory) or ""
                except DependencyDown:
                    if self._value is None:
                        raise
                    LOG.warning("could not re-read a secret setting; keeping the value read before")
                self._read_at = now
            return self._value
