"""Where the access policy comes from, and how long we trust a copy.

``ROLEBROKER_POLICY`` names a file path, ``ssm:/param/name`` or
``s3://bucket/key``. ``PolicyCache`` reloads after a TTL; if a reload fails
(the parameter was deleted, S3 is down, someone saved an invalid policy), it
keeps serving the last good policy and logs the problem, because locking
everybody out on a bad edit is worse than a stale minute. With no good copy
at all, callers get a 503 that names the problem.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from chalicelib.access.policy import AccessPolicy, parse_policy
from chalicelib.exceptions import DependencyDown, PolicyError

LOG = logging.getLogger(__name__)
MAX_POLICY_BYTES = 4 * 1024 * 1024


class PolicySource(Protocol):
    name: str

    def read(self) -> str: ...


class FileSource:
    def __init__(self, path: str) -> None:
        self.name = path
        self._path = Path(path)

    def read(self) -> str:
        try:
            return self._path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DependencyDown(f"access policy file {self.name} cannot be read") from exc


class SsmSource:
    def __init__(self, parameter: str, client: Any) -> None:
        self.name = f"ssm:{parameter}"
        self._parameter = parameter
        self._client = client

    def read(self) -> str:
        try:
            answer = self._client.get_parameter(Name=self._parameter, WithDecryption=True)
        except Exception as exc:  # botocore raises many families; all mean "not now"
            raise DependencyDown(f"access policy {self.name} cannot be read") from exc
        value: str = answer["Parameter"]["Value"]
        return value


class S3Source:
    def __init__(self, bucket: str, key: str, client: Any) -> None:
        self.name = f"s3://{bucket}/{key}"
        self._bucket = bucket
        self._key = key
        self._client = client

    def read(self) -> str:
        try:
            answer = self._client.get_object(Bucket=self._bucket, Key=self._key)
            body: bytes = answer["Body"].read(MAX_POLICY_BYTES + 1)
        except Exception as exc:  # botocore raises many families; all mean "not now"
            raise DependencyDown(f"access policy {self.name} cannot be read") from exc
        if len(body) > MAX_POLICY_BYTES:
            raise DependencyDown(f"access policy {self.name} is larger than 4 MiB")
        return body.decode("utf-8")


def source_for(location: str, client_factory: Callable[[str], Any]) -> PolicySource:
    """Pick the source for ``ROLEBROKER_POLICY``; AWS clients come from the factory."""
    if location.startswith("ssm:"):
        return SsmSource(location[len("ssm:"):], client_factory("ssm"))
    if location.startswith("s3://"):
        bucket, _, key = location[len("s3://"):].partition("/")
        if not bucket or not key:
            raise PolicyError("ROLEBROKER_POLICY s3 location must be s3://bucket/key")
        return S3Source(bucket, key, client_factory("s3"))
    return FileSource(location)


class PolicyCache:
    """Holds the current policy and reloads it after ``ttl_seconds``."""

    def __init__(self, source: PolicySource, ttl_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._policy: AccessPolicy | None = None
        self._loaded_at = 0.0

    def get(self) -> AccessPolicy:
        with self._lock:
            now = self._clock()
            if self._policy is None or now - self._loaded_at >= self._ttl:
                self._reload(now)
            assert self._policy is not None
            return self._policy

    def _reload(self, now: float) -> None:
        try:
            self._policy = parse_policy(self._source.read(), self._source.name)
        except (DependencyDown, PolicyError) as exc:
            if self._policy is None:
                LOG.error("access policy unavailable: %s", exc)
                raise DependencyDown(
                    f"the access policy ({self._source.name}) is unavailable or invalid; "
                    "an operator must fix it"
                ) from exc
            LOG.error("access policy reload failed, keeping the last good copy: %s", exc)
        self._loaded_at = now
