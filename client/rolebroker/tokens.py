"""Where the bearer token comes from, and ``rolebroker login``'s store of them.

Tokens come from ``ROLEBROKER_TOKEN``, ``--token-file``, the config file's
``token_command`` or the ``login`` store, in that order. The login store
keeps each issuer's tokens in a 0600 file, binds every broker URL to the
issuer whose sign-in was made for it (a token never goes to another broker),
and refreshes an expiring id_token with the refresh token under a lock, as
refresh tokens are often single-use.
"""

from __future__ import annotations

import json
import os
import sys

from rolebroker import _fast
from rolebroker._fast import DEFAULT_GETUID, TOKEN_REFRESH_MARGIN_SECONDS
from rolebroker.errors import LOGIN_HINT, ConfigError, TokenError, UnexpectedAnswer, remember_secret
from rolebroker.files import FileLock, atomic_write, checked, private_dir
from rolebroker.text import one_line
from rolebroker.transport import check_transport, http_request

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from rolebroker.settings import Runtime, Settings

TOKEN_COMMAND_TIMEOUT_SECONDS = 30.0


class TokenSource:
    """Where the bearer token comes from; ``advice`` says what to do when the broker rejects it,
    ``origin`` names the source for ``whoami``."""

    advice = LOGIN_HINT
    origin = "rolebroker login"

    def peek(self) -> str:
        """The token as stored, without network: enough to name the identity for the cache key."""
        raise NotImplementedError

    def fresh(self) -> str:
        """A token fit to send (refreshed if it is about to expire)."""
        return self.peek()

    def renews(self) -> bool:
        """Whether the token renews itself when it expires (a sign-in with a refresh token)."""
        return False


class StaticToken(TokenSource):
    def __init__(self, token: str, advice: str, origin: str) -> None:
        self._token = remember_secret(token)
        self.advice = advice
        self.origin = origin

    def peek(self) -> str:
        return self._token


class CommandToken(TokenSource):
    """The stdout of the configured ``token_command``, run once per invocation."""

    def __init__(self, command: str, config_path: str) -> None:
        self._command = command
        self._token: str | None = None
        self.advice = f"check token_command in {config_path}"
        self.origin = f"token_command in {config_path}"

    def peek(self) -> str:
        if self._token is None:
            self._token = remember_secret(run_token_command(self._command))
        return self._token


def run_token_command(command: str, timeout: float = TOKEN_COMMAND_TIMEOUT_SECONDS) -> str:
    import shlex
    import subprocess

    try:
        argv = shlex.split(command, posix=sys.platform != "win32")
    except ValueError as exc:
        raise ConfigError(f"token_command cannot be parsed: {exc}") from exc
    if not argv:
        raise ConfigError("token_command is empty")
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise ConfigError(f"token_command not found: {argv[0]}") from None
    except subprocess.TimeoutExpired:
        raise TokenError(f"token_command did not finish within {timeout:g} s") from None
    except OSError as exc:
        raise ConfigError(f"cannot run token_command {argv[0]}: {exc.strerror}") from exc
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = f": {one_line(lines[-1], 200)}" if lines else ""
        raise TokenError(f"token_command failed (exit {done.returncode}){detail}")
    token = done.stdout.decode("utf-8", "replace").strip()
    if not token:
        raise TokenError("token_command printed no token")
    return token


class LoginStore:
    """``rolebroker login``'s tokens: one entry per issuer in a 0600 JSON file, replaced atomically.

    ``brokers`` binds each broker URL to the issuer whose sign-in was made for
    it: a token is only ever sent to a broker it was obtained for.
    """

    def __init__(self, path: str, *, getuid: Callable[[], int] | None = DEFAULT_GETUID) -> None:
        self.path = path
        self._getuid = getuid

    def load(self) -> dict[str, Any]:
        checked(os.path.dirname(self.path), self._getuid)
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read()
        except OSError:
            raw = None
        return _fast.login_data(raw)

    def save(self, data: dict[str, Any]) -> None:
        try:
            private_dir(os.path.dirname(self.path), self._getuid)
            atomic_write(self.path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8"), 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def lock(self, rt: Runtime) -> FileLock:
        import contextlib

        # If the directory cannot be made, FileLock cannot open its file and
        # lets us proceed unlocked.
        with contextlib.suppress(OSError):
            private_dir(os.path.dirname(self.path), self._getuid)
        return FileLock(self.path + ".lock", timeout=rt.lock_timeout, clock=rt.clock, sleep=rt.sleep)

    issuer_for = staticmethod(_fast.issuer_for)


def bearer(entry: Mapping[str, Any]) -> str | None:
    token = _fast.bearer(entry)
    return remember_secret(token) if token else None


class LoginToken(TokenSource):
    """The token stored by ``rolebroker login``, refreshed silently with its refresh token."""

    def __init__(self, store: LoginStore, issuer: str, rt: Runtime, timeout: float) -> None:
        self._store = store
        self._issuer = issuer
        self._rt = rt
        self._timeout = timeout

    def _entry(self, data: Mapping[str, Any]) -> dict[str, Any]:
        entry = data["issuers"].get(self._issuer)
        if not isinstance(entry, dict) or bearer(entry) is None:
            raise TokenError(f"not signed in to {self._issuer}: {LOGIN_HINT}")
        return entry

    def peek(self) -> str:
        return bearer(self._entry(self._store.load())) or ""

    def renews(self) -> bool:
        refresh_token = self._entry(self._store.load()).get("refresh_token")
        return isinstance(refresh_token, str) and bool(refresh_token)

    def _expiring(self, entry: Mapping[str, Any]) -> bool:
        expiry = _fast.token_expiry(entry)
        return expiry is not None and expiry - self._rt.clock() < TOKEN_REFRESH_MARGIN_SECONDS

    def fresh(self) -> str:
        entry = self._entry(self._store.load())
        if not self._expiring(entry):
            return bearer(entry) or ""
        with self._store.lock(self._rt):
            # Another process may have refreshed while we waited, and refresh
            # tokens are often single-use: look again before spending ours.
            data = self._store.load()
            entry = self._entry(data)
            if self._expiring(entry):
                entry = refresh_tokens(entry, self._rt, self._timeout)
                data["issuers"][self._issuer] = entry
                self._store.save(data)
        return bearer(entry) or ""


def refresh_tokens(entry: Mapping[str, Any], rt: Runtime, timeout: float) -> dict[str, Any]:
    refresh_token = entry.get("refresh_token")
    endpoint = entry.get("token_endpoint")
    if not isinstance(refresh_token, str) or not isinstance(endpoint, str):
        raise TokenError(f"your sign-in has expired: {LOGIN_HINT}")
    remember_secret(refresh_token)
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": str(entry.get("client_id", ""))}
    status, answer = token_request(endpoint, form, rt, timeout)
    if status in (400, 401):
        reason = one_line(str(answer.get("error") or f"HTTP {status}"), 80)
        raise TokenError(f"your sign-in has expired ({reason}): {LOGIN_HINT}")
    if status != 200:
        raise UnexpectedAnswer(f"unexpected answer from the identity provider (HTTP {status}) while refreshing")
    return token_entry(answer, entry, rt.clock())


def token_entry(answer: Mapping[str, Any], previous: Mapping[str, Any], now: float) -> dict[str, Any]:
    entry = dict(previous)
    for name in ("id_token", "access_token", "refresh_token"):
        value = answer.get(name)
        if isinstance(value, str) and value:
            entry[name] = remember_secret(value)
    if isinstance(answer.get("access_token"), str) and not answer.get("id_token"):
        # A refresh answer without an id_token must not leave the old one to be sent.
        entry.pop("id_token", None)
    expires_in = answer.get("expires_in")
    if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool):
        entry["expires_at"] = now + float(expires_in)
    entry["obtained_at"] = now
    if bearer(entry) is None:
        raise UnexpectedAnswer("the identity provider answered without an id_token or access_token")
    return entry


def resolve_token_source(settings: Settings, rt: Runtime) -> TokenSource:
    """The first configured source: ROLEBROKER_TOKEN, --token-file, token_command, the login store."""
    if settings.token_env:
        return StaticToken(settings.token_env, f"set a fresh ROLEBROKER_TOKEN, or unset it and {LOGIN_HINT}",
                           "ROLEBROKER_TOKEN")
    if settings.token_file:
        path = settings.token_file
        try:
            with open(path, encoding="utf-8") as handle:
                token = handle.read().strip()
        except (OSError, UnicodeError) as exc:
            raise ConfigError(f"cannot read token file {path}: {getattr(exc, 'strerror', None) or exc}") from exc
        if not token:
            raise ConfigError(f"token file {path} is empty")
        return StaticToken(token, f"put a fresh token in {path}", f"token file {path}")
    if settings.token_command:
        return CommandToken(settings.token_command, settings.config_path)
    store = LoginStore(settings.tokens_path, getuid=rt.getuid)
    data = store.load()
    if not data["issuers"]:
        raise TokenError(f"not signed in: {LOGIN_HINT} (or set ROLEBROKER_TOKEN)")
    url = settings.require_url()
    issuer = LoginStore.issuer_for(data, url)
    if issuer is None:
        raise TokenError(f"not signed in for {url}: run `rolebroker login --url {url}` (or set ROLEBROKER_TOKEN)")
    return LoginToken(store, issuer, rt, settings.timeout)


def token_request(endpoint: str, form: Mapping[str, str], rt: Runtime, timeout: float
                  ) -> tuple[int, dict[str, Any]]:
    from urllib.parse import urlencode

    check_transport(endpoint, "token endpoint")
    answer = http_request("POST", endpoint, what="identity provider", timeout=timeout, body=urlencode(form).encode(),
                          headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                          urlopen=rt.urlopen)
    doc = answer.json_object()
    if doc is None:
        raise UnexpectedAnswer(f"unexpected answer from the identity provider ({answer.describe()})")
    return answer.status, doc

