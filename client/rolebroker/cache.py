"""Credentials on disk, after botocore's ``JSONFileCache`` and its ``CachedCredentialFetcher``.

One JSON file per (broker URL, identity, role, duration) in
``$XDG_CACHE_HOME/rolebroker`` (0700), named by a checksum of that key; the
key itself is kept in the entry and compared on every read, so a shared name
can never hand one key's credentials to another. The identity is the token's
``iss`` and ``sub``, read from the unverified JWT payload: the broker does the
verifying, the client only needs to keep two users' credentials apart. Files
are written with ``mkstemp`` + ``fsync`` + ``os.replace`` so a reader sees the
old or the new file, never half of one; a file that is not ours, is readable
by others, or does not parse is ignored and replaced. A directory another
user owns or can write to is refused.

Refresh window. An entry is served only while more than 15 minutes remain.
botocore treats credentials with 15 minutes or less left as due for refresh
and would run us again before every request if we handed those out. Fresh
credentials with less than that (``--duration 900``) are printed but not
cached; with under a minute left they are an error (usually a wrong clock).

Lock. Reading needs no lock (the replace is atomic). On a miss, an exclusive
lock on ``<key>.lock`` is held around "check the cache again, fetch, write",
so many processes started at once (terraform providers, parallel jobs) make
one broker request and all print the same credentials. The wait is bounded:
a stuck holder must not hang every SDK call behind it, so after
``LOCK_TIMEOUT_SECONDS`` we fetch anyway.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

from rolebroker import _fast
from rolebroker._fast import REFRESH_WINDOW_SECONDS
from rolebroker.errors import CredentialsExpired, remember_secret
from rolebroker.files import FileLock, atomic_write, checked, private_dir
from rolebroker.settings import LOCK_TIMEOUT_SECONDS
from rolebroker.text import local_time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from typing import Any

    from rolebroker.broker import BrokerClient

MIN_VALIDITY_SECONDS = 60


def _is_cache_file(name: str) -> bool:
    stem, dot, ext = name.partition(".")
    if dot and ext in ("json", "lock") and len(stem) == 16:
        return all(ch in "0123456789abcdef" for ch in stem)
    return name.startswith(".rolebroker-") and name.endswith(".tmp")


class CredentialCache:
    """One JSON file per key, atomic 0600 writes, in a directory only this user controls."""

    def __init__(self, directory: str, *, getuid: Callable[[], int] | None) -> None:
        self.directory = directory
        self._getuid = getuid

    key = staticmethod(_fast.cache_key)
    name = staticmethod(_fast.cache_name)

    def path(self, key: str) -> str:
        return os.path.join(self.directory, self.name(key) + ".json")

    def get(self, key: str) -> dict[str, Any] | None:
        if checked(self.directory, self._getuid) is None:
            return None
        entry = _fast.read_entry(self.path(key), key, self._getuid)
        if entry is not None:
            for name in ("AccessKeyId", "SecretAccessKey", "SessionToken"):
                remember_secret(entry["credentials"][name])
        return entry

    def put(self, key: str, entry: Mapping[str, Any]) -> bool:
        """Store an entry; False (and no error) when the directory is not writable."""
        try:
            private_dir(self.directory, self._getuid)
            atomic_write(self.path(key), json.dumps({**entry, "key": key}).encode("utf-8"), 0o600)
        except OSError:
            return False
        return True

    def lock(self, key: str, *, timeout: float, clock: Callable[[], float], sleep: Callable[[float], None]) -> FileLock:
        with contextlib.suppress(OSError):  # then FileLock lets us proceed unlocked
            private_dir(self.directory, self._getuid)
        return FileLock(os.path.join(self.directory, self.name(key) + ".lock"), timeout=timeout, clock=clock,
                        sleep=sleep)

    def _entries(self) -> Iterator[tuple[str, list[Any], dict[str, Any]]]:
        """Every well-formed entry of ours: its file name, its key's parts, the entry."""
        if checked(self.directory, self._getuid) is None:
            return
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return
        for name in names:
            if not (name.endswith(".json") and _is_cache_file(name)):
                continue
            raw = _fast.read_private(os.path.join(self.directory, name), self._getuid)
            try:
                entry = json.loads(raw) if raw is not None else None
                parts = json.loads(entry["key"]) if isinstance(entry, dict) and _fast.valid_entry(entry) else None
            except (ValueError, UnicodeError, TypeError):
                continue
            # Six parts, or seven with a --scope (``_fast.cache_key``).
            if isinstance(entry, dict) and isinstance(parts, list) and len(parts) in (6, 7):
                yield name, parts, entry

    def entries_for(self, url: str, identity: tuple[str, str]) -> list[dict[str, Any]]:
        """The entries cached for ``identity`` at broker ``url``, each with its ``duration`` (None: the default)
        and ``scope`` (None: the whole role).

        Read for ``whoami``; each file's own key says whose it is.
        """
        return [{"role": entry["role"], "duration": parts[5] or None, "scope": parts[6] if len(parts) > 6 else None,
                 "expires_at": entry["expires_at"]}
                for _, parts, entry in self._entries() if parts[1:4] == [url.rstrip("/"), *identity]]

    def forget_broker(self, url: str) -> int:
        """Delete every entry cached from broker ``url``; the number removed.

        For the local stack: a new one answers at the same URL, but its STS
        emulation has never heard of the last one's credentials.
        """
        removed = 0
        for name, parts, _ in list(self._entries()):
            if parts[1] == url.rstrip("/"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.directory, name))
                    removed += 1
        return removed

    def clear(self) -> int:
        """Delete our files (and only ours); the number of cached credentials removed."""
        if checked(self.directory, self._getuid) is None:
            return 0
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return 0
        removed = 0
        for name in names:
            if not _is_cache_file(name):
                continue
            try:
                os.unlink(os.path.join(self.directory, name))
            except FileNotFoundError:
                continue
            removed += name.endswith(".json")
        return removed


class CachedCredentialFetcher:
    """Serve credentials from the cache while fresh; otherwise fetch, check and cache them.

    As in botocore, this base owns the cache lookup, the lock and the refresh
    window; a subclass only makes the remote call in ``_get_credentials``.
    """

    def __init__(
        self,
        *,
        cache: CredentialCache | None,
        cache_key: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        lock_timeout: float = LOCK_TIMEOUT_SECONDS,
        refresh_window: float = REFRESH_WINDOW_SECONDS,
    ) -> None:
        self._cache = cache
        self._key = cache_key
        self._clock = clock
        self._sleep = sleep
        self._lock_timeout = lock_timeout
        self._refresh_window = refresh_window

    def _get_credentials(self) -> dict[str, Any]:
        raise NotImplementedError

    def fetch(self) -> dict[str, Any]:
        entry = self._load_from_cache()
        if entry is not None:
            return entry
        if self._cache is None:
            return self._fetch_fresh()
        with self._cache.lock(self._key, timeout=self._lock_timeout, clock=self._clock, sleep=self._sleep):
            # Whoever held the lock before us has most likely just written
            # fresh credentials; serving them is the point of the lock.
            entry = self._load_from_cache()
            if entry is not None:
                return entry
            entry = self._fetch_fresh()
            if self._is_fresh(entry):
                self._cache.put(self._key, entry)
        return entry

    def _load_from_cache(self) -> dict[str, Any] | None:
        if self._cache is None:
            return None
        entry = self._cache.get(self._key)
        return entry if entry is not None and self._is_fresh(entry) else None

    def _is_fresh(self, entry: Mapping[str, Any]) -> bool:
        # botocore refreshes credentials with 15 minutes or less left: serving
        # those would make it run us again before every single request.
        return _fast.fresh(entry, self._clock(), self._refresh_window)

    def _fetch_fresh(self) -> dict[str, Any]:
        entry = self._get_credentials()
        left = float(entry["expires_at"]) - self._clock()
        if left < MIN_VALIDITY_SECONDS:
            when = local_time(float(entry["expires_at"]))
            state = "expired at" if left <= 0 else f"expire in {int(left)} s, at"
            raise CredentialsExpired(
                f"the broker returned credentials for {entry['role']} that {state} {when}; "
                "check this computer's clock")
        return entry


class BrokerCredentialFetcher(CachedCredentialFetcher):
    """Fetches from the broker's ``POST /v1/credentials``; the client is built only on a miss."""

    def __init__(self, client_factory: Callable[[], BrokerClient], role: str, duration: int | None,
                 scope: str | None = None, *, warn: Callable[[str], None] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client_factory = client_factory
        self._role = role
        self._duration = duration
        self._scope = scope
        self._warn = warn

    def _get_credentials(self) -> dict[str, Any]:
        return self._client_factory().credentials(self._role, self._duration, self._scope, warn=self._warn)

