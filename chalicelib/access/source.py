"""Where the access policy comes from, and how long we trust a copy.

``ROLEBROKER_POLICY`` names a file path, ``ssm:/param/name`` or
``s3://bucket/key``. Each source answers "has it changed since the copy I
hold?" cheaply: S3 with a conditional GET on the ETag (a 304 downloads
nothing), SSM by the parameter's version, a file by its modification time
and size. Only a changed policy is parsed and validated again, which at
organisation scale (5,000 roles, ~1.5 MB) is the expensive part.

``PolicyCache`` asks after a TTL. A reload never blocks a request: the
first request to notice the TTL has passed starts one reload in the
background and, like every other request meanwhile, is answered from the
copy it has; the new policy replaces it only once it is validated. If a
reload fails (the parameter was deleted, S3 is down, someone saved an
invalid policy), the last good policy keeps serving and the problem is
logged, because locking everybody out on a bad edit is worse than a stale
minute. Only the very first load, with nothing to serve instead, is waited
for; with no good copy at all, callers get a 503 that names the problem.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from chalicelib.access.policy import AccessPolicy, parse_policy
from chalicelib.exceptions import DependencyDown, PolicyError

LOG = logging.getLogger(__name__)
MAX_POLICY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Fetched:
    """A source's answer: the text, or ``None`` when it has not changed since ``tag``."""

    text: str | None
    tag: str


class PolicySource(Protocol):
    name: str

    def fetch(self, tag: str | None) -> Fetched:
        """The policy text, unless it is unchanged since ``tag`` (a previous answer's)."""
        ...


class FileSource:
    def __init__(self, path: str) -> None:
        self.name = path
        self._path = Path(path)

    def fetch(self, tag: str | None) -> Fetched:
        try:
            stat = os.stat(self._path)
            current = f"{stat.st_mtime_ns}:{stat.st_size}"
            if current == tag:
                return Fetched(None, current)
            return Fetched(self._path.read_text(encoding="utf-8"), current)
        except OSError as exc:
            raise DependencyDown(f"access policy file {self.name} cannot be read") from exc

    def read(self) -> str:
        return self.fetch(None).text or ""


class SsmSource:
    """A parameter's value comes with its version: an unchanged version is not parsed again.

    SSM has no conditional read, so the value is fetched each time; at most
    8 KB (the advanced tier), which is cheap. Larger policies belong in S3.
    """

    def __init__(self, parameter: str, client: Any) -> None:
        self.name = f"ssm:{parameter}"
        self._parameter = parameter
        self._client = client

    def fetch(self, tag: str | None) -> Fetched:
        try:
            answer = self._client.get_parameter(Name=self._parameter, WithDecryption=True)
        except Exception as exc:  # botocore raises many families; all mean "not now"
            raise DependencyDown(f"access policy {self.name} cannot be read") from exc
        version = str(answer["Parameter"].get("Version", ""))
        if version and version == tag:
            return Fetched(None, version)
        value: str = answer["Parameter"]["Value"]
        return Fetched(value, version)

    def read(self) -> str:
        return self.fetch(None).text or ""


class S3Source:
    """A conditional GET: S3 answers 304 Not Modified while the ETag is the one we hold."""

    def __init__(self, bucket: str, key: str, client: Any) -> None:
        self.name = f"s3://{bucket}/{key}"
        self._bucket = bucket
        self._key = key
        self._client = client

    def fetch(self, tag: str | None) -> Fetched:
        params = {"Bucket": self._bucket, "Key": self._key}
        if tag:
            params["IfNoneMatch"] = tag
        try:
            answer = self._client.get_object(**params)
            body: bytes = answer["Body"].read(MAX_POLICY_BYTES + 1)
        except Exception as exc:  # botocore raises many families; all mean "not now"
            if tag and _not_modified(exc):
                return Fetched(None, tag)
            raise DependencyDown(f"access policy {self.name} cannot be read") from exc
        if len(body) > MAX_POLICY_BYTES:
            raise DependencyDown(f"access policy {self.name} is larger than 4 MiB")
        return Fetched(body.decode("utf-8"), str(answer.get("ETag", "")))

    def read(self) -> str:
        return self.fetch(None).text or ""


def _not_modified(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status == 304 or response.get("Error", {}).get("Code") in {"304", "NotModified"}


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


def in_background(job: Callable[[], None]) -> None:
    # A daemon thread: in Lambda it is frozen with the container between
    # invocations and simply carries on at the next one.
    threading.Thread(target=job, name="policy-reload", daemon=True).start()


class PolicyCache:
    """Holds the current policy; after ``ttl_seconds`` one background reload asks the source for a newer one."""

    def __init__(self, source: PolicySource, ttl_seconds: float,
                 clock: Callable[[], float] = time.monotonic,
                 spawn: Callable[[Callable[[], None]], None] = in_background) -> None:
        self._source = source
        self._ttl = ttl_seconds
        self._clock = clock
        self._spawn = spawn
        self._first_load = threading.Lock()
        self._reloading = threading.Lock()  # held while the one reload in flight runs
        self._policy: AccessPolicy | None = None
        self._tag: str | None = None
        self._checked_at = 0.0

    def get(self) -> AccessPolicy:
        policy = self._policy
        if policy is None:
            return self._load_first()
        if self._clock() - self._checked_at >= self._ttl and self._reloading.acquire(blocking=False):
            self._checked_at = self._clock()
            try:
                self._spawn(self._reload_in_background)
            except Exception:  # no thread to be had: try again after the next TTL
                self._reloading.release()
                LOG.exception("could not start the access policy reload; serving the current copy")
        return policy

    def _load_first(self) -> AccessPolicy:
        with self._first_load:  # everyone waits: there is nothing to serve yet
            if self._policy is None:
                self._reload()
            assert self._policy is not None
            return self._policy

    def _reload_in_background(self) -> None:
        try:
            self._reload()
        except DependencyDown:
            pass  # logged; the last good copy keeps serving
        finally:
            self._reloading.release()

    def _reload(self) -> None:
        try:
            fetched = self._source.fetch(self._tag)
            if fetched.text is not None:
                policy = parse_policy(fetched.text, self._source.name)
                # Published only once validated: requests see the old or the new, never half.
                self._policy, self._tag = policy, fetched.tag
        except (DependencyDown, PolicyError) as exc:
            if self._policy is None:
                LOG.error("access policy unavailable: %s", exc)
                raise DependencyDown(
                    f"the access policy ({self._source.name}) is unavailable or invalid; "
                    "an operator must fix it"
                ) from exc
            LOG.error("access policy reload failed, keeping the last good copy: %s", exc)
        finally:
            self._checked_at = self._clock()
