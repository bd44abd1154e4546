"""rolebroker: temporary AWS credentials from the rolebroker broker.

One file, Python 3.9+ standard library only: copy it anywhere and run
``python3 rolebroker.py ...``, or ``pip install ./client`` for a ``rolebroker``
command. ``main()`` is the only place that reads argv or the environment or
writes to stdout; everything below it receives settings and side effects
(clock, sleep, HTTP opener, browser, exec, uid) as parameters.

The hot path is ``credential-process``: the AWS CLI and every SDK run it
whenever they need credentials for a profile, so it must be quick, print
exactly one JSON document on stdout and, when it fails, exactly one line on
stderr that says what to do. It never prompts and never opens a browser.

Cache. Credentials live in ``$XDG_CACHE_HOME/rolebroker`` (0700), one JSON
file per (broker URL, identity, role, duration), like botocore's
``JSONFileCache``, named by a checksum of that key; the key itself is kept in
the entry and compared on every read, so a shared name can never hand one
key's credentials to another. The identity is the token's
``iss`` and ``sub``, read from the unverified JWT payload: the broker does
the verifying, the client only needs to keep two users' credentials apart.
Files are written with ``mkstemp`` + ``fsync`` + ``os.replace`` so a reader
sees the old or the new file, never half of one; a file that is not ours,
is readable by others, or does not parse is ignored and replaced.

Refresh window. An entry is served only while more than 15 minutes remain.
botocore treats credentials with 15 minutes or less left as due for refresh
and would run us again before every request if we handed those out. Fresh
credentials with less than that (``--duration 900``) are printed but not
cached; with under a minute left they are an error (usually a wrong clock).

Lock. Reading needs no lock (the replace is atomic). On a miss, an exclusive
lock on ``<key>.lock`` is held around "check the cache again, fetch, write",
so twenty processes started at once (terraform providers, parallel jobs)
make one broker request and all print the same credentials. The wait is
bounded: a stuck holder must not hang every SDK call behind it, so after
``LOCK_TIMEOUT_SECONDS`` we fetch anyway.

Imports are lazy. Python starts in ~20 ms, and urllib.request (with http,
ssl, email) costs more than that again to import; argparse, hashlib and
binascii cost milliseconds or fractions of one. A cache hit therefore
imports only json, os, sys and time at module level, parses the
``credential-process`` command line by hand, decodes the JWT payload in
Python, names cache files with a 64-bit FNV-1a checksum computed in Python
rather than hashlib (which loads OpenSSL), and keeps the expiry as a number so datetime is not needed: measured by
``make bench``, the installed command answers a hit about 2 ms (8 %) slower
than a Python script that prints fixed credentials, mostly loading this
module's bytecode. (An editable install, ``pip install -e``, adds an import
hook that costs more than that.)
Everything else is imported inside the function that needs it. (Run as
``python rolebroker.py``, Python compiles the whole file on every start,
~20 ms, as it caches bytecode only for imported modules; ``configure``
therefore prefers the installed command.)

Tokens come from ``ROLEBROKER_TOKEN``, ``--token-file``, the config file's
``token_command`` or the ``login`` store, in that order. The login store
keeps each issuer's tokens in a 0600 file and refreshes an expiring
id_token with the refresh token, under a lock, as refresh tokens are often
single-use.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from types import TracebackType
    from typing import IO, Any, NoReturn

__version__ = "0.1.0"

USER_AGENT = f"rolebroker-client/{__version__}"
REFRESH_WINDOW_SECONDS = 15 * 60
MIN_VALIDITY_SECONDS = 60
LOCK_TIMEOUT_SECONDS = 30.0
DEFAULT_TIMEOUT_SECONDS = 20.0
TOKEN_COMMAND_TIMEOUT_SECONDS = 30.0
TOKEN_REFRESH_MARGIN_SECONDS = 60
LOGIN_TIMEOUT_SECONDS = 300.0
MAX_ANSWER_BYTES = 4 * 1024 * 1024
MAX_PAGES = 100
CACHE_FORMAT = 1
DEFAULT_SCOPES = "openid email profile offline_access"
MANAGED_MARKER = "# managed by rolebroker"
CREDENTIAL_KEYS = ("Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")
LOGIN_HINT = "run `rolebroker login`"
CONFIG_KEYS = frozenset({"url", "token_command", "issuer", "client_id", "scopes"})


# --------------------------------------------------------------------------
# Errors


class RoleBrokerError(Exception):
    """A failure the user can act on; its text is the one line they see."""

    exit_code = 1


class UsageError(RoleBrokerError):
    """The command line is wrong."""

    exit_code = 2


class ConfigError(RoleBrokerError):
    """The client's own settings (URL, config file, token file) are missing or wrong."""


class TokenError(RoleBrokerError):
    """There is no usable token: the user has to sign in (again)."""


class Unreachable(RoleBrokerError):
    """The broker or identity provider could not be reached or did not answer in time."""


class BrokerError(RoleBrokerError):
    """The broker answered with its error document; the text carries its Message and RequestId."""


class UnexpectedAnswer(RoleBrokerError):
    """An answer that is not the documented JSON: an HTML page, an empty body, a wrong shape."""


class CredentialsExpired(RoleBrokerError):
    """The broker handed out credentials that are already expired or about to."""


class UnsafeProfile(RoleBrokerError):
    """The broker's profile text is not exactly what rolebroker writes, so nothing was written."""


class LoginError(RoleBrokerError):
    """The interactive sign-in did not complete."""


class UnsafePath(RoleBrokerError):
    """A directory or file rolebroker would trust can be changed by another user."""


class CommandNotRunnable(RoleBrokerError):
    """`exec` could not start the command; exits like a shell would (127 not found, 126 otherwise)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Exit(Exception):
    """argparse finished on its own (``--help``, ``--version``)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


# Every token and key we handle is remembered so the top-level guard can
# scrub it from any message, whatever raised it: the last line of defence
# for "never print a secret on stderr".
_SECRETS: set[str] = set()


def _remember_secret(value: str) -> str:
    if len(value) >= 8:
        _SECRETS.add(value)
    return value


def redact(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    return text


# --------------------------------------------------------------------------
# Small helpers


# Terminal escape sequences (ECMA-48): CSI, OSC (titles, hyperlinks) and the
# other strings a terminal acts on, with 7-bit (ESC x) or 8-bit (C1) introducers.
_ESCAPE_SEQUENCE = (
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x9d\x90\x98\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)


def _one_line(text: str, limit: int = 300) -> str:
    """Text from elsewhere (a server, a command) made safe for one terminal line.

    Escape sequences go whole, so none can move the cursor, retitle the window
    or hide a link; line breaks become spaces; other control and format
    characters (C0, C1, bidi overrides, zero-width) are dropped.
    """
    import re

    text = re.sub(_ESCAPE_SEQUENCE, "", text)
    kept = "".join(" " if ch.isspace() else ch for ch in text if ch.isprintable() or ch.isspace())
    flat = " ".join(kept.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


_B64URL_VALUES = {ch: value for value, ch in
                  enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}


def _b64url_decode(part: str) -> bytes:
    """base64url without padding, in Python: for a JWT payload this is several
    times quicker than loading the binascii extension on a cache hit."""
    part = part.rstrip("=")
    if len(part) % 4 == 1:
        raise ValueError("truncated base64url")
    decoded = bytearray()
    for start in range(0, len(part), 4):
        chunk = part[start : start + 4]
        value = 0
        try:
            for ch in chunk:
                value = value << 6 | _B64URL_VALUES[ch]
        except KeyError:
            raise ValueError("not base64url") from None
        value <<= 6 * (4 - len(chunk))
        decoded += value.to_bytes(3, "big")[: len(chunk) * 6 // 8]
    return bytes(decoded)


def _b64url_encode(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, unverified (the broker verifies); None if it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(_b64url_decode(parts[1]))
    except (ValueError, UnicodeError):
        return None
    return claims if isinstance(claims, dict) else None


def identity_of(token: str) -> tuple[str, str]:
    """Who a token speaks for, as (issuer, subject): part of the cache key."""
    claims = jwt_claims(token) or {}
    issuer, subject = claims.get("iss"), claims.get("sub")
    if isinstance(issuer, str) and isinstance(subject, str) and subject:
        return issuer, subject
    import hashlib  # only for tokens that are not JWTs, so never on a JWT cache hit

    return "opaque", hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_timestamp(value: str) -> float:
    """Seconds since the epoch for an ISO 8601 time (``Z`` and any fraction accepted on 3.9)."""
    import re
    from datetime import datetime, timezone

    if not re.match(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9:.]+([Zz]|[+-][0-9]{2}:?[0-9]{2})?\Z", value):
        raise ValueError(f"not an ISO 8601 time: {value!r}")
    text = value
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    text = re.sub(r"([+-][0-9]{2})([0-9]{2})\Z", r"\1:\2", text)
    # Before 3.11, fromisoformat only takes 3 or 6 fractional digits.
    text = re.sub(r"\.([0-9]+)", lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _local_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(epoch))


def _human_duration(seconds: object) -> str:
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        return "-"
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours and minutes:
        return f"{hours}h{minutes:02d}m"
    return f"{hours}h" if hours else f"{minutes}m"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines) + "\n"


def _current_uid() -> Callable[[], int] | None:
    if sys.platform == "win32":
        return None
    return os.getuid


_DEFAULT_GETUID = _current_uid()


def path_problem(path: str, *, st_uid: int, st_mode: int, uid: int, allow_root: bool = False) -> str | None:
    """Why ``path`` cannot be trusted by ``uid``, as the one line to show; None when it can.

    Another user's directory (or one they may write to) could hold planted
    credentials, a token_command of theirs, or symlinks that make us write
    elsewhere. Root-owned is fine only where a system-wide file makes sense.
    """
    if st_uid != uid and not (allow_root and st_uid == 0):
        quoted = _shell_quote(path)
        return (f"{path} belongs to another user (uid {st_uid}), so rolebroker will not use it; "
                f"move it away (mv {quoted} {quoted}.untrusted) and try again")
    if st_mode & 0o022:
        mode = "700" if stat.S_ISDIR(st_mode) else "600"
        return (f"{path} is writable by other users, so rolebroker will not use it; "
                f"run `chmod {mode} {_shell_quote(path)}` and try again")
    return None


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _checked(path: str, getuid: Callable[[], int] | None, *, allow_root: bool = False) -> os.stat_result | None:
    """``os.stat(path)``, or None when it cannot be read; raises ``UnsafePath`` when others control it."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if getuid is not None:
        problem = path_problem(path, st_uid=info.st_uid, st_mode=info.st_mode, uid=getuid(), allow_root=allow_root)
        if problem:
            raise UnsafePath(problem)
    return info


def _private_dir(path: str, getuid: Callable[[], int] | None) -> None:
    """Create (or tighten) a directory only we can enter; refuse one another user controls."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = _checked(path, getuid)
    if info is not None and getuid is not None and info.st_mode & 0o077:
        os.chmod(path, 0o700)


def _atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` so readers see the old file or the new one, never a mix."""
    import contextlib
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".rolebroker-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if sys.platform != "win32":
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------
# Settings


def read_config_file(path: str, *, required: bool, getuid: Callable[[], int] | None = None) -> dict[str, str]:
    """The ``[default]`` section of the client's INI config file.

    Its ``token_command`` runs a program, so the file and its directory must
    be the user's (or root's, for a system-wide file) and writable by nobody else.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            if getuid is not None:
                _check_config_file(path, os.fstat(handle.fileno()), getuid())
            text = handle.read()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} (from ROLEBROKER_CONFIG) does not exist") from None
        return {}
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=path)
    except configparser.Error as exc:
        raise ConfigError(f"{path} is not a valid INI file: {_one_line(str(exc))}") from exc
    if not parser.has_section("default"):
        return {}
    values = {key: value.strip() for key, value in parser.items("default")}
    unknown = sorted(set(values) - CONFIG_KEYS)
    if unknown:
        known = ", ".join(sorted(CONFIG_KEYS))
        raise ConfigError(f"{path}: unknown setting {unknown[0]!r} in [default] (known: {known})")
    return {key: value for key, value in values.items() if value}


def _check_config_file(path: str, info: os.stat_result, uid: int) -> None:
    """Refuse a config file that another user could have written, or could replace."""
    directory = os.path.dirname(path) or "."
    try:
        parent = os.stat(directory)
    except OSError:
        parent = None
    if parent is not None:
        # In a sticky directory such as /tmp, others cannot replace our file,
        # so only the file's own owner and mode matter.
        mode = parent.st_mode & ~0o022 if parent.st_mode & stat.S_ISVTX else parent.st_mode
        problem = path_problem(directory, st_uid=parent.st_uid, st_mode=mode, uid=uid, allow_root=True)
        if problem:
            raise UnsafePath(problem)
    problem = path_problem(path, st_uid=info.st_uid, st_mode=info.st_mode, uid=uid, allow_root=True)
    if problem:
        raise UnsafePath(problem)


class Settings:
    """Paths and values from the environment and the config file, resolved once by ``main``.

    The config file is read only when a value needs it: with ``--url`` and
    ``ROLEBROKER_TOKEN`` a cache hit never imports configparser.
    """

    def __init__(
        self,
        environ: Mapping[str, str],
        *,
        url: str | None = None,
        token_file: str | None = None,
        timeout: float | None = None,
        getuid: Callable[[], int] | None = None,
    ) -> None:
        self.environ = environ
        self.getuid = getuid
        home = environ.get("HOME") or environ.get("USERPROFILE") or os.path.expanduser("~")
        config_home = environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        cache_home = environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
        self._config_explicit = bool(environ.get("ROLEBROKER_CONFIG"))
        self.config_path = environ.get("ROLEBROKER_CONFIG") or os.path.join(config_home, "rolebroker", "config")
        self.tokens_path = os.path.join(config_home, "rolebroker", "tokens.json")
        self.cache_dir = os.path.join(cache_home, "rolebroker")
        aws_config = environ.get("AWS_CONFIG_FILE")
        if aws_config and aws_config.startswith("~"):
            aws_config = home + aws_config[1:]
        self.aws_config_path = aws_config or os.path.join(home, ".aws", "config")
        self.token_env = environ.get("ROLEBROKER_TOKEN", "").strip() or None
        self.token_file = token_file
        self.timeout = timeout if timeout is not None else DEFAULT_TIMEOUT_SECONDS
        self._url_option = url or environ.get("ROLEBROKER_URL") or None
        self._file: dict[str, str] | None = None

    @property
    def file(self) -> dict[str, str]:
        if self._file is None:
            self._file = read_config_file(self.config_path, required=self._config_explicit, getuid=self.getuid)
        return self._file

    @property
    def url(self) -> str | None:
        url = self._url_option or self.file.get("url")
        return url.rstrip("/") if url else None

    def require_url(self) -> str:
        url = self.url
        if not url:
            raise ConfigError(
                "no broker URL: pass --url, set ROLEBROKER_URL or add `url = ...` under [default] in "
                f"{self.config_path}")
        return url

    @property
    def token_command(self) -> str | None:
        return self.file.get("token_command")

    @property
    def issuer(self) -> str | None:
        return self.file.get("issuer")

    @property
    def client_id(self) -> str | None:
        return self.file.get("client_id")


class Runtime:
    """The side effects commands use; tests replace any of them."""

    def __init__(
        self,
        *,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        urlopen: Callable[[Any, float], Any] | None = None,
        open_browser: Callable[[str], bool] | None = None,
        execute: Callable[[list[str], dict[str, str]], int] | None = None,
        which: Callable[[str], str | None] | None = None,
        getuid: Callable[[], int] | None = _DEFAULT_GETUID,
        executable: str | None = None,
        login_timeout: float = LOGIN_TIMEOUT_SECONDS,
        lock_timeout: float = LOCK_TIMEOUT_SECONDS,
    ) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.clock = clock
        self.sleep = sleep
        self.urlopen = urlopen
        self.open_browser = open_browser or _open_browser
        self.execute = execute or _execute
        self.which = which
        self.getuid = getuid
        self.executable = executable or sys.executable
        self.login_timeout = login_timeout
        self.lock_timeout = lock_timeout


def _open_browser(url: str) -> bool:
    import webbrowser

    return webbrowser.open(url)


def _execute(argv: list[str], env: dict[str, str]) -> int:
    """Run ``argv`` with ``env``: replace this process on POSIX, wait for it on Windows."""
    if sys.platform == "win32":
        import subprocess

        return subprocess.call(argv, env=env)
    sys.stdout.flush()
    sys.stderr.flush()
    # exec keeps the command's own exit status and signals, and leaves no
    # parent around that would have to forward Ctrl-C.
    os.execvpe(argv[0], argv, env)  # noqa: S606 - the user's own command, as they typed it
    return 0  # pragma: no cover - execvpe does not return


# --------------------------------------------------------------------------
# Tokens


class TokenSource:
    """Where the bearer token comes from; ``advice`` says what to do when the broker rejects it."""

    advice = LOGIN_HINT

    def peek(self) -> str:
        """The token as stored, without network: enough to name the identity for the cache key."""
        raise NotImplementedError

    def fresh(self) -> str:
        """A token fit to send (refreshed if it is about to expire)."""
        return self.peek()


class StaticToken(TokenSource):
    def __init__(self, token: str, advice: str) -> None:
        self._token = _remember_secret(token)
        self.advice = advice

    def peek(self) -> str:
        return self._token


class CommandToken(TokenSource):
    """The stdout of the configured ``token_command``, run once per invocation."""

    def __init__(self, command: str, config_path: str) -> None:
        self._command = command
        self._token: str | None = None
        self.advice = f"check token_command in {config_path}"

    def peek(self) -> str:
        if self._token is None:
            self._token = _remember_secret(run_token_command(self._command))
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
        detail = f": {_one_line(lines[-1], 200)}" if lines else ""
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

    def __init__(self, path: str, *, getuid: Callable[[], int] | None = _DEFAULT_GETUID) -> None:
        self.path = path
        self._getuid = getuid

    def load(self) -> dict[str, Any]:
        _checked(os.path.dirname(self.path), self._getuid)
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            # Missing or damaged means signed out; the next login rewrites it.
            data = None
        if not isinstance(data, dict) or data.get("version") != 1:
            data = {"version": 1}
        for table in ("issuers", "brokers"):
            if not isinstance(data.get(table), dict):
                data[table] = {}
        return data

    def save(self, data: dict[str, Any]) -> None:
        try:
            _private_dir(os.path.dirname(self.path), self._getuid)
            _atomic_write(self.path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8"), 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def lock(self, rt: Runtime) -> FileLock:
        import contextlib

        # If the directory cannot be made, FileLock cannot open its file and
        # lets us proceed unlocked.
        with contextlib.suppress(OSError):
            _private_dir(os.path.dirname(self.path), self._getuid)
        return FileLock(self.path + ".lock", timeout=rt.lock_timeout, clock=rt.clock, sleep=rt.sleep)

    @staticmethod
    def issuer_for(data: Mapping[str, Any], url: str | None) -> str | None:
        """The issuer signed in for broker ``url``; None when no sign-in was made for it."""
        issuer = data["brokers"].get(url) if url else None
        return issuer if isinstance(issuer, str) and issuer in data["issuers"] else None


def _bearer(entry: Mapping[str, Any]) -> str | None:
    # The broker verifies the id_token (its audience is our client_id).
    for name in ("id_token", "access_token"):
        value = entry.get(name)
        if isinstance(value, str) and value:
            return _remember_secret(value)
    return None


def _token_expiry(entry: Mapping[str, Any]) -> float | None:
    token = _bearer(entry) or ""
    exp = (jwt_claims(token) or {}).get("exp", entry.get("expires_at"))
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


class LoginToken(TokenSource):
    """The token stored by ``rolebroker login``, refreshed silently with its refresh token."""

    def __init__(self, store: LoginStore, issuer: str, rt: Runtime, timeout: float) -> None:
        self._store = store
        self._issuer = issuer
        self._rt = rt
        self._timeout = timeout

    def _entry(self, data: Mapping[str, Any]) -> dict[str, Any]:
        entry = data["issuers"].get(self._issuer)
        if not isinstance(entry, dict) or _bearer(entry) is None:
            raise TokenError(f"not signed in to {self._issuer}: {LOGIN_HINT}")
        return entry

    def peek(self) -> str:
        return _bearer(self._entry(self._store.load())) or ""

    def _expiring(self, entry: Mapping[str, Any]) -> bool:
        expiry = _token_expiry(entry)
        return expiry is not None and expiry - self._rt.clock() < TOKEN_REFRESH_MARGIN_SECONDS

    def fresh(self) -> str:
        entry = self._entry(self._store.load())
        if not self._expiring(entry):
            return _bearer(entry) or ""
        with self._store.lock(self._rt):
            # Another process may have refreshed while we waited, and refresh
            # tokens are often single-use: look again before spending ours.
            data = self._store.load()
            entry = self._entry(data)
            if self._expiring(entry):
                entry = refresh_tokens(entry, self._rt, self._timeout)
                data["issuers"][self._issuer] = entry
                self._store.save(data)
        return _bearer(entry) or ""


def refresh_tokens(entry: Mapping[str, Any], rt: Runtime, timeout: float) -> dict[str, Any]:
    refresh_token = entry.get("refresh_token")
    endpoint = entry.get("token_endpoint")
    if not isinstance(refresh_token, str) or not isinstance(endpoint, str):
        raise TokenError(f"your sign-in has expired: {LOGIN_HINT}")
    _remember_secret(refresh_token)
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": str(entry.get("client_id", ""))}
    status, answer = token_request(endpoint, form, rt, timeout)
    if status in (400, 401):
        reason = _one_line(str(answer.get("error") or f"HTTP {status}"), 80)
        raise TokenError(f"your sign-in has expired ({reason}): {LOGIN_HINT}")
    if status != 200:
        raise UnexpectedAnswer(f"unexpected answer from the identity provider (HTTP {status}) while refreshing")
    return _token_entry(answer, entry, rt.clock())


def _token_entry(answer: Mapping[str, Any], previous: Mapping[str, Any], now: float) -> dict[str, Any]:
    entry = dict(previous)
    for name in ("id_token", "access_token", "refresh_token"):
        value = answer.get(name)
        if isinstance(value, str) and value:
            entry[name] = _remember_secret(value)
    if isinstance(answer.get("access_token"), str) and not answer.get("id_token"):
        # A refresh answer without an id_token must not leave the old one to be sent.
        entry.pop("id_token", None)
    expires_in = answer.get("expires_in")
    if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool):
        entry["expires_at"] = now + float(expires_in)
    entry["obtained_at"] = now
    if _bearer(entry) is None:
        raise UnexpectedAnswer("the identity provider answered without an id_token or access_token")
    return entry


def resolve_token_source(settings: Settings, rt: Runtime) -> TokenSource:
    """The first configured source: ROLEBROKER_TOKEN, --token-file, token_command, the login store."""
    if settings.token_env:
        return StaticToken(settings.token_env, f"set a fresh ROLEBROKER_TOKEN, or unset it and {LOGIN_HINT}")
    if settings.token_file:
        path = settings.token_file
        try:
            with open(path, encoding="utf-8") as handle:
                token = handle.read().strip()
        except (OSError, UnicodeError) as exc:
            raise ConfigError(f"cannot read token file {path}: {getattr(exc, 'strerror', None) or exc}") from exc
        if not token:
            raise ConfigError(f"token file {path} is empty")
        return StaticToken(token, f"put a fresh token in {path}")
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


# --------------------------------------------------------------------------
# HTTP


class HttpResponse:
    """Status, lower-cased headers and body of one answer (error statuses included)."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = {key.lower(): value for key, value in headers.items()}
        self.body = body

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json_object(self) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.body)
        except (ValueError, UnicodeError):
            return None
        return doc if isinstance(doc, dict) else None

    def describe(self) -> str:
        if not self.body.strip():
            return f"HTTP {self.status}, empty body"
        return f"HTTP {self.status}, {self.content_type or 'no content type'}"


def _is_loopback(host: str) -> bool:
    """This machine: exactly ``localhost``, or an address in 127.0.0.0/8 or ::1 (never a name that starts so)."""
    if host == "localhost":
        return True
    import ipaddress

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback and getattr(address, "ipv4_mapped", None) is None


def _is_console_url(url: str) -> bool:
    """A sign-in link is a credential: https, or http only on this machine (the local stack).

    It is printed as it is, so it must be plain ASCII with nothing a terminal acts on.
    """
    from urllib.parse import urlsplit

    if not url.isascii() or not url.isprintable() or any(ch.isspace() for ch in url):
        return False
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname or ""))


def check_transport(url: str, what: str) -> None:
    """Refuse URLs a bearer token must not travel to: not http(s), or plain http off this machine."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        raise ConfigError(f"{what} URL {url!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host or any(ch.isspace() for ch in url):
        raise ConfigError(f"{what} URL {url!r} is not an http(s) URL")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigError(f"refusing to send a token to {url} over plain http; use https")


def _default_urlopen(request: Any, timeout: float) -> Any:
    import urllib.request
    from urllib.parse import urlsplit

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        # urllib would resend the Authorization header to wherever a redirect
        # points; the broker never redirects, so a 3xx is an unexpected answer.
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    handlers: list[Any] = [NoRedirect()]
    if _is_loopback(urlsplit(request.full_url).hostname or ""):
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers).open(request, timeout=timeout)


def _reason(exc: BaseException) -> str:
    import socket

    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    verify = getattr(exc, "verify_message", None)
    if verify:
        return f"TLS certificate problem: {verify}"
    return _one_line(getattr(exc, "strerror", None) or str(exc) or type(exc).__name__, 120)


def http_request(
    method: str,
    url: str,
    *,
    what: str,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    urlopen: Callable[[Any, float], Any] | None = None,
    shown_url: str | None = None,
) -> HttpResponse:
    """One request; any HTTP status comes back as a response, transport failures raise ``Unreachable``."""
    import http.client
    import socket
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method=method)  # noqa: S310 - check_transport vetted it
    request.add_header("User-Agent", USER_AGENT)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    shown = shown_url or url
    too_slow = f"the {what} at {shown} did not answer within {timeout:g} s (try again, or raise --timeout)"
    try:
        with (urlopen or _default_urlopen)(request, timeout) as answer:
            return HttpResponse(answer.status, dict(answer.headers.items()), answer.read(MAX_ANSWER_BYTES))
    except urllib.error.HTTPError as exc:
        try:
            data = exc.read(MAX_ANSWER_BYTES)
        except (OSError, http.client.HTTPException):
            data = b""
        return HttpResponse(exc.code, dict(exc.headers.items()) if exc.headers else {}, data)
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (socket.timeout, TimeoutError)):
            raise Unreachable(too_slow) from None
        reason = exc.reason if isinstance(exc.reason, BaseException) else OSError(str(exc.reason))
        raise Unreachable(f"cannot reach the {what} at {shown} ({_reason(reason)})") from None
    except (socket.timeout, TimeoutError):
        raise Unreachable(too_slow) from None
    except (http.client.HTTPException, OSError) as exc:
        raise Unreachable(f"the {what} at {shown} broke off the connection ({_reason(exc)})") from None


class BrokerClient:
    """The broker's HTTP API: methods return plain data and raise ``RoleBrokerError``."""

    def __init__(
        self,
        base_url: str,
        token: TokenSource | None,
        *,
        timeout: float,
        urlopen: Callable[[Any, float], Any] | None = None,
    ) -> None:
        check_transport(base_url, "broker")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._urlopen = urlopen

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None, *, role: str | None = None,
              auth: bool = True) -> HttpResponse:
        headers = {"Accept": "application/json"}
        if auth and self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.fresh()}"
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode("utf-8")
        answer = http_request(method, self.base_url + path, what="broker", timeout=self._timeout, headers=headers,
                              body=data, urlopen=self._urlopen, shown_url=self.base_url)
        if not 200 <= answer.status < 300:
            raise self._error(answer, role)
        return answer

    def _error(self, answer: HttpResponse, role: str | None) -> RoleBrokerError:
        doc = answer.json_object() or {}
        message = doc.get("Message") or doc.get("message")
        if not isinstance(message, str) or not message.strip():
            return UnexpectedAnswer(f"unexpected answer from broker ({answer.describe()})")
        message = _one_line(message)
        request_id = doc.get("RequestId") or answer.headers.get("x-request-id") or answer.headers.get(
            "x-amzn-requestid")
        rid = f"request id {_one_line(str(request_id), 80)}" if request_id else ""
        suffix = f" ({rid})" if rid else ""
        status = answer.status
        if status == 401:
            advice = self._token.advice if self._token else LOGIN_HINT
            return TokenError(f"the broker rejected your token: {message}{suffix}; {advice}")
        if status == 403 and role and role not in message:
            return BrokerError(f"access denied for role {role}: {message}{suffix}")
        if status == 429:
            return BrokerError(f"{message}{suffix}; the broker is busy, try again in a moment")
        if status >= 500:
            return BrokerError(f"{message} (HTTP {status}{', ' + rid if rid else ''})")
        return BrokerError(f"{message}{suffix}")

    def _json(self, method: str, path: str, body: Mapping[str, Any] | None = None, *, role: str | None = None,
              auth: bool = True) -> tuple[dict[str, Any], HttpResponse]:
        answer = self._call(method, path, body, role=role, auth=auth)
        doc = answer.json_object()
        if doc is None:
            raise UnexpectedAnswer(f"unexpected answer from broker ({answer.describe()})")
        return doc, answer

    def _list(self, path: str, field: str) -> list[dict[str, Any]]:
        return self._page(path, field)[0]

    def _page(self, path: str, field: str) -> tuple[list[dict[str, Any]], dict[str, Any], HttpResponse]:
        doc, answer = self._json("GET", path)
        items = doc.get(field)
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise UnexpectedAnswer(f"unexpected answer from broker ({answer.describe()} without {field!r})")
        return items, doc, answer

    def roles(self) -> list[dict[str, Any]]:
        return self._list("/v1/roles", "roles")

    def credentials(self, role: str, duration: int | None) -> dict[str, Any]:
        """A cache entry: the credential_process document, its expiry as a number, the region."""
        body: dict[str, Any] = {"role": role}
        if duration:
            body["duration_seconds"] = duration
        doc, answer = self._json("POST", "/v1/credentials", body, role=role)
        return credentials_entry(doc, role, answer)

    def config(self) -> str:
        answer = self._call("GET", "/v1/config")
        if answer.content_type != "text/plain":
            raise UnexpectedAnswer(f"unexpected answer from broker ({answer.describe()})")
        return answer.body.decode("utf-8", "replace")

    def console(self, role: str) -> dict[str, Any]:
        doc, answer = self._json("POST", "/v1/console", {"role": role}, role=role)
        url = doc.get("url")
        if not isinstance(url, str) or not _is_console_url(url):
            raise UnexpectedAnswer(f"unexpected answer from broker ({answer.describe()} without an https url)")
        return doc

    def create_request(self, role: str, duration: int | None, reason: str) -> dict[str, Any]:
        body: dict[str, Any] = {"role": role, "reason": reason}
        if duration:
            body["duration_seconds"] = duration
        return self._json("POST", "/v1/requests", body, role=role)[0]

    def requests(self, max_pages: int = MAX_PAGES) -> tuple[list[dict[str, Any]], bool]:
        """Every request the caller may see, following ``next_token``; and whether more remain unread.

        A broker that sends no ``next_token`` (older ones) has answered in one page.
        """
        from urllib.parse import quote

        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        token: str | None = None
        for _ in range(max_pages):
            query = f"?next_token={quote(token, safe='')}" if token else ""
            page, doc, answer = self._page(f"/v1/requests{query}", "requests")
            items += page
            token = doc.get("next_token")
            if token is None:
                return items, False
            if not isinstance(token, str) or not token:
                raise UnexpectedAnswer(f"unexpected answer from broker ({answer.describe()} with a malformed "
                                       "'next_token')")
            if token in seen:
                raise UnexpectedAnswer(f"unexpected answer from broker ({answer.describe()}: next_token "
                                       f"{_one_line(token, 40)!r} came back twice)")
            seen.add(token)
        return items, True

    def decide(self, request_id: str, verdict: str, reason: str | None = None) -> dict[str, Any]:
        from urllib.parse import quote

        body = {"reason": reason} if reason else {}
        return self._json("POST", f"/v1/requests/{quote(request_id, safe='')}/{verdict}", body)[0]

    def client_config(self) -> dict[str, Any]:
        return self._json("GET", "/v1/client-config", auth=False)[0]


def credentials_entry(doc: Mapping[str, Any], role: str, answer: HttpResponse) -> dict[str, Any]:
    creds = doc.get("credentials")
    problem = _credentials_problem(creds)
    if problem or not isinstance(creds, dict):
        raise UnexpectedAnswer(f"unexpected answer from broker ({answer.describe()}: {problem})")
    for name in ("AccessKeyId", "SecretAccessKey", "SessionToken"):
        _remember_secret(creds[name])
    try:
        expires_at = parse_timestamp(creds["Expiration"])
    except ValueError:
        raise UnexpectedAnswer(
            f"unexpected answer from broker ({answer.describe()}: Expiration is not an ISO 8601 time)") from None
    profile = doc.get("profile")
    region = _region_from_profile(profile.get("config") if isinstance(profile, dict) else None)
    return {
        "format": CACHE_FORMAT,
        "role": role,
        "credentials": {name: creds[name] for name in CREDENTIAL_KEYS},
        "expires_at": expires_at,
        "region": region or (doc.get("region") if isinstance(doc.get("region"), str) else None),
    }


def _credentials_problem(creds: object) -> str:
    if not isinstance(creds, dict):
        return "no credentials"
    if creds.get("Version") != 1:
        return "credentials Version is not 1"
    for name in CREDENTIAL_KEYS[1:]:
        if not isinstance(creds.get(name), str) or not creds[name]:
            return f"credentials without {name}"
    return ""


def _region_from_profile(text: object) -> str | None:
    if not isinstance(text, str):
        return None
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq and key.strip() == "region" and _valid_region(value.strip()):
            return value.strip()
    return None


# --------------------------------------------------------------------------
# Cache and lock


def _is_cache_file(name: str) -> bool:
    stem, dot, ext = name.partition(".")
    if dot and ext in ("json", "lock") and len(stem) == 16:
        return all(ch in "0123456789abcdef" for ch in stem)
    return name.startswith(".rolebroker-") and name.endswith(".tmp")


_ENTRY_KEYS = frozenset({"format", "role", "region", "expires_at", "credentials", "key"})


def _valid_entry(entry: object) -> bool:
    if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT or set(entry) != _ENTRY_KEYS:
        return False
    expires_at = entry.get("expires_at")
    if not isinstance(expires_at, (int, float)) or isinstance(expires_at, bool):
        return False
    if not isinstance(entry.get("role"), str) or not isinstance(entry.get("region"), (str, type(None))):
        return False
    creds = entry.get("credentials")
    return not _credentials_problem(creds) and isinstance(creds, dict) and set(creds) == set(CREDENTIAL_KEYS)


class CredentialCache:
    """Credentials on disk, after botocore's ``JSONFileCache``: one JSON file per key, atomic 0600 writes."""

    def __init__(self, directory: str, *, getuid: Callable[[], int] | None) -> None:
        self.directory = directory
        self._getuid = getuid

    @staticmethod
    def key(url: str, identity: tuple[str, str], role: str, duration: int | None) -> str:
        """The whole key; it is stored in the entry and checked on every read."""
        return json.dumps([CACHE_FORMAT, url.rstrip("/"), identity[0], identity[1], role, duration or 0],
                          separators=(",", ":"))

    @staticmethod
    def name(key: str) -> str:
        # 64-bit FNV-1a, in Python: no import at all on the hit path (hashlib
        # would load OpenSSL, which costs more than the rest of a cache hit).
        # Two keys sharing a name cannot mix up credentials, because get()
        # compares the full key stored in the entry; they only evict each other.
        digest = 0xCBF29CE484222325
        for byte in key.encode("utf-8"):
            digest = ((digest ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
        return f"{digest:016x}"

    def path(self, key: str) -> str:
        return os.path.join(self.directory, self.name(key) + ".json")

    def get(self, key: str) -> dict[str, Any] | None:
        if _checked(self.directory, self._getuid) is None:
            return None
        try:
            fd = os.open(self.path(key), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        with os.fdopen(fd, "rb") as handle:
            if not self._trusted(os.fstat(handle.fileno())):
                return None
            raw = handle.read(MAX_ANSWER_BYTES)
        try:
            entry = json.loads(raw)
        except (ValueError, UnicodeError):
            return None
        if not _valid_entry(entry) or entry.pop("key", None) != key:
            return None
        for name in ("AccessKeyId", "SecretAccessKey", "SessionToken"):
            _remember_secret(entry["credentials"][name])
        return dict(entry)

    def _trusted(self, info: os.stat_result) -> bool:
        if not stat.S_ISREG(info.st_mode):
            return False
        if self._getuid is None:
            return True
        # A file another user owns could have been planted; one others can
        # read has leaked. Either way: do not serve it, fetch and replace it.
        return info.st_uid == self._getuid() and not info.st_mode & 0o077

    def put(self, key: str, entry: Mapping[str, Any]) -> bool:
        """Store an entry; False (and no error) when the directory is not writable."""
        try:
            _private_dir(self.directory, self._getuid)
            _atomic_write(self.path(key), json.dumps({**entry, "key": key}).encode("utf-8"), 0o600)
        except OSError:
            return False
        return True

    def lock(self, key: str, *, timeout: float, clock: Callable[[], float], sleep: Callable[[float], None]) -> FileLock:
        import contextlib

        with contextlib.suppress(OSError):  # then FileLock lets us proceed unlocked
            _private_dir(self.directory, self._getuid)
        return FileLock(os.path.join(self.directory, self.name(key) + ".lock"), timeout=timeout, clock=clock,
                        sleep=sleep)

    def clear(self) -> int:
        """Delete our files (and only ours); the number of cached credentials removed."""
        if _checked(self.directory, self._getuid) is None:
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


def _try_lock(fd: int) -> bool:
    """True when locked, False when someone else holds it; OSError when locking is unsupported."""
    import errno

    if sys.platform == "win32":
        import msvcrt

        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


class FileLock:
    """An exclusive lock on a side file (flock on POSIX, msvcrt.locking on Windows).

    Waiting is bounded and failure is soft: when the file cannot be opened,
    locking is unsupported or ``timeout`` passes, the caller proceeds
    unlocked (``acquired`` is False) and at worst fetches twice.
    """

    def __init__(self, path: str, *, timeout: float, clock: Callable[[], float],
                 sleep: Callable[[float], None]) -> None:
        self.path = path
        self.acquired = False
        self._timeout = timeout
        self._clock = clock
        self._sleep = sleep
        self._fd: int | None = None

    def __enter__(self) -> FileLock:
        # O_NOFOLLOW: a symlink planted here must not make us create files
        # elsewhere (or lock someone else's file and stall).
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            self._fd = os.open(self.path, flags, 0o600)
        except OSError:
            return self
        if not stat.S_ISREG(os.fstat(self._fd).st_mode):
            os.close(self._fd)
            self._fd = None
            return self
        deadline = self._clock() + self._timeout
        delay = 0.01
        try:
            while not _try_lock(self._fd):
                if self._clock() >= deadline:
                    return self
                self._sleep(delay)
                delay = min(delay * 2, 0.1)
        except OSError:
            return self
        self.acquired = True
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._fd is None:
            return
        try:
            if self.acquired:
                _unlock(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None
            self.acquired = False


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
        return float(entry["expires_at"]) - self._clock() > self._refresh_window

    def _fetch_fresh(self) -> dict[str, Any]:
        entry = self._get_credentials()
        left = float(entry["expires_at"]) - self._clock()
        if left < MIN_VALIDITY_SECONDS:
            when = _local_time(float(entry["expires_at"]))
            state = "expired at" if left <= 0 else f"expire in {int(left)} s, at"
            raise CredentialsExpired(
                f"the broker returned credentials for {entry['role']} that {state} {when}; "
                "check this computer's clock")
        return entry


class BrokerCredentialFetcher(CachedCredentialFetcher):
    """Fetches from the broker's ``POST /v1/credentials``; the client is built only on a miss."""

    def __init__(self, client_factory: Callable[[], BrokerClient], role: str, duration: int | None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client_factory = client_factory
        self._role = role
        self._duration = duration

    def _get_credentials(self) -> dict[str, Any]:
        return self._client_factory().credentials(self._role, self._duration)


# --------------------------------------------------------------------------
# ~/.aws/config: verifying the broker's profiles, editing the file by line

_PROFILE_KEYS = ("credential_process", "region", "output")
_OUTPUT_FORMATS = frozenset({"json", "text", "table", "yaml", "yaml-stream"})
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def _valid_region(region: str) -> bool:
    return 0 < len(region) <= 32 and region[0].isalpha() and all(
        ch in "abcdefghijklmnopqrstuvwxyz0123456789-" for ch in region)


def _valid_profile_name(name: str) -> bool:
    return 0 < len(name) <= 128 and name[0].isalnum() and set(name) <= _NAME_CHARS


class ProfileSpec:
    """A profile from the broker after verification: exactly what will be written."""

    def __init__(self, name: str, region: str | None = None, output: str | None = None,
                 duration: int | None = None) -> None:
        self.name = name
        self.region = region
        self.output = output
        self.duration = duration


def _refuse(problem: str) -> UnsafeProfile:
    return UnsafeProfile(f"refusing to write profiles: {problem}; nothing was written")


def parse_fragment(text: str) -> list[tuple[str, dict[str, str]]]:
    """Sections of the broker's config text; anything but sections and ``key = value`` is refused."""
    sections: list[tuple[str, dict[str, str]]] = []
    current: dict[str, str] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = {}
            sections.append((" ".join(line[1:-1].split()), current))
            continue
        key, eq, value = line.partition("=")
        key = key.strip()
        if current is None or not eq or not key:
            raise _refuse(f"line {number} of the broker's config is not a profile setting: {_one_line(raw, 80)!r}")
        if key in current:
            raise _refuse(f"the broker's config sets {key} twice in one section")
        current[key] = value.strip()
    return sections


def _verify_command(name: str, command: str | None, broker_url: str) -> int | None:
    """The duration in the broker's credential_process, after checking it is exactly ours."""
    import shlex

    if command is None:
        raise _refuse(f"[profile {name}] has no credential_process")
    shown = _one_line(command, 80)
    try:
        argv = shlex.split(command)
    except ValueError:
        raise _refuse(f"[profile {name}] has an unparsable credential_process {shown!r}") from None
    if argv[:2] != ["rolebroker", "credential-process"] or len(argv) % 2:
        raise _refuse(f"[profile {name}] runs {shown!r}, not `rolebroker credential-process`")
    options: dict[str, str] = {}
    for option, value in zip(argv[2::2], argv[3::2]):
        if option not in ("--url", "--role", "--duration") or option in options:
            raise _refuse(f"[profile {name}] passes {_one_line(option, 40)!r} to rolebroker credential-process")
        options[option] = value
    if options.get("--url", "").rstrip("/") != broker_url.rstrip("/"):
        url = _one_line(options.get("--url", "(none)"), 80)
        raise _refuse(f"[profile {name}] points at {url}, not at this broker ({broker_url})")
    if options.get("--role") != name:
        raise _refuse(f"[profile {name}] asks for role {_one_line(options.get('--role', '(none)'), 40)!r}")
    duration = options.get("--duration")
    if duration is None:
        return None
    if not (duration.isascii() and duration.isdigit() and len(duration) <= 6):
        raise _refuse(f"[profile {name}] has a strange --duration {_one_line(duration, 20)!r}")
    return int(duration)


def verify_profiles(text: str, broker_url: str) -> list[ProfileSpec]:
    """Check every section is a profile rolebroker itself would write for ``broker_url``."""
    specs: list[ProfileSpec] = []
    for header, values in parse_fragment(text):
        kind, _, name = header.partition(" ")
        if kind != "profile" or not _valid_profile_name(name):
            raise _refuse(f"section [{_one_line(header, 60)}] is not a [profile NAME] section")
        if any(spec.name == name for spec in specs):
            raise _refuse(f"[profile {name}] appears twice")
        extra = sorted(set(values) - set(_PROFILE_KEYS))
        if extra:
            raise _refuse(f"[profile {name}] sets {_one_line(extra[0], 40)}, which rolebroker never writes")
        duration = _verify_command(name, values.get("credential_process"), broker_url)
        region, output = values.get("region"), values.get("output")
        if region is not None and not _valid_region(region):
            raise _refuse(f"[profile {name}] has a strange region {_one_line(region, 40)!r}")
        if output is not None and output not in _OUTPUT_FORMATS:
            raise _refuse(f"[profile {name}] has a strange output {_one_line(output, 40)!r}")
        specs.append(ProfileSpec(name, region, output, duration))
    return specs


def client_command(which: Callable[[str], str | None], executable: str, script: str) -> list[str]:
    """How the AWS tools should start this client: the installed command, else this file."""
    installed = which("rolebroker")
    if installed:
        return [os.path.abspath(installed)]
    return [executable, os.path.abspath(script)]


def quote_command(argv: Sequence[str], *, windows: bool) -> str:
    """One command line that botocore's ``compat_shell_split`` turns back into ``argv``."""
    if any(ch in arg for arg in argv for ch in "\r\n\0"):
        raise ConfigError("cannot write a credential_process with a line break in a path")
    if windows:
        import subprocess

        return subprocess.list2cmdline(list(argv))
    import shlex

    return " ".join(shlex.quote(arg) for arg in argv)


def render_profile(spec: ProfileSpec, command: Sequence[str], broker_url: str, *, windows: bool) -> list[str]:
    argv = [*command, "credential-process", "--url", broker_url, "--role", spec.name]
    if spec.duration:
        argv += ["--duration", str(spec.duration)]
    lines = [
        f"{MANAGED_MARKER} (url={broker_url})",
        f"[profile {spec.name}]",
        f"credential_process = {quote_command(argv, windows=windows)}",
    ]
    if spec.region:
        lines.append(f"region = {spec.region}")
    if spec.output:
        lines.append(f"output = {spec.output}")
    return lines


def section_headers(lines: Sequence[str]) -> list[tuple[int, str]]:
    """(line index, header) of every section, found exactly as configparser finds them for botocore.

    That is: a stripped line ``[...]`` (the header runs to the last ``]``),
    unless it is indented deeper than an option above it, which makes it a
    continuation of that option's value; comment lines change nothing.
    """
    import configparser

    found: list[tuple[int, str]] = []
    in_section = option_open = False
    indent_level = 0
    for index, line in enumerate(lines):
        value = line.strip()
        if not value or value.startswith(("#", ";")):
            continue
        indent = len(line) - len(line.lstrip())
        if in_section and option_open and indent > indent_level:
            continue
        indent_level = indent
        header = configparser.RawConfigParser.SECTCRE.match(value)
        if header:
            found.append((index, header.group("header")))
            in_section, option_open = True, False
            continue
        option = configparser.RawConfigParser.OPTCRE.match(value)
        if in_section and option and option.group("option").rstrip():
            option_open = True
    return found


def profile_of(header: str) -> str | None:
    """The profile a section header defines for botocore (``build_profile_map``), or None."""
    if header == "default":
        return "default"
    if not header.startswith("profile"):
        return None
    import shlex

    try:
        parts = shlex.split(header)
    except ValueError:
        return None
    return parts[1] if len(parts) == 2 else None


def _is_marker(line: str) -> bool:
    return line.strip().startswith(MANAGED_MARKER)


def _profile_sections(lines: Sequence[str], name: str) -> list[tuple[int, int, bool]]:
    """(start, end, managed) of each section botocore reads as profile ``name``: marker, header and
    settings, not trailing comments. When there are several, botocore uses the last."""
    headers = section_headers(lines)
    sections = []
    for number, (index, header) in enumerate(headers):
        if profile_of(header) != name:
            continue
        following = headers[number + 1][0] if number + 1 < len(headers) else len(lines)
        end = index + 1
        for later in range(index + 1, following):
            text = lines[later].strip()
            if text and text[0] not in "#;":
                end = later + 1
        managed = index > 0 and _is_marker(lines[index - 1])
        sections.append(((index - 1 if managed else index), end, managed))
    return sections


def managed_profiles(text: str) -> list[str]:
    lines = text.splitlines()
    names = []
    for index, header in section_headers(lines):
        name = profile_of(header)
        if name is not None and index > 0 and _is_marker(lines[index - 1]):
            names.append(name)
    return names


# botocore reads both [default] and [profile default] as the profile every
# command uses when none is named: rolebroker never takes it over unasked.
DEFAULT_PROFILE = "default"


def apply_profiles(original: str, profiles: Sequence[tuple[str, list[str]]], *, force: bool
                   ) -> tuple[str, list[tuple[str, str]]]:
    """Put each rendered profile into the file text; every other line stays byte for byte."""
    lines = original.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    outcome: list[tuple[str, str]] = []
    for name, rendered in profiles:
        block = [line + newline for line in rendered]
        if name == DEFAULT_PROFILE and not force:
            outcome.append((name, "default"))
            continue
        found = _profile_sections(lines, name)
        if not found:
            if lines and not lines[-1].endswith(("\n", "\r")):
                lines[-1] += newline
            if lines and lines[-1].strip():
                lines.append(newline)
            lines.extend(block)
            outcome.append((name, "added"))
            continue
        start, end, managed = found[-1]
        if not managed and not force:
            outcome.append((name, "kept"))
            continue
        if lines[start:end] == block:
            outcome.append((name, "unchanged"))
            continue
        lines[start:end] = block
        outcome.append((name, "updated" if managed else "replaced"))
    return "".join(lines), outcome


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


def write_aws_config(path: str, text: str) -> None:
    """Replace the AWS config atomically, keeping its mode; create ``~/.aws`` 0700 when missing."""
    directory = os.path.dirname(path)
    try:
        if directory and not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700)
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = 0o600
        _atomic_write(path, text.encode("utf-8", "surrogateescape"), mode)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc


# --------------------------------------------------------------------------
# Login: authorization code + PKCE on a loopback redirect


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


def discover(issuer: str, rt: Runtime, timeout: float) -> dict[str, str]:
    """The issuer's authorization and token endpoints from its OpenID configuration."""
    check_transport(issuer, "issuer")
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    answer = http_request("GET", url, what="identity provider", timeout=timeout, urlopen=rt.urlopen,
                          headers={"Accept": "application/json"})
    doc = answer.json_object() if answer.status == 200 else None
    endpoints = {name: (doc or {}).get(name) for name in ("authorization_endpoint", "token_endpoint")}
    if doc is None or not all(isinstance(value, str) for value in endpoints.values()):
        raise UnexpectedAnswer(f"unexpected answer from the identity provider at {url} ({answer.describe()})")
    if str(doc.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        raise LoginError(f"the identity provider at {issuer} names itself {_one_line(str(doc.get('issuer')), 80)}")
    for value in endpoints.values():
        check_transport(str(value), "identity provider")
    return {name: str(value) for name, value in endpoints.items()}


def pkce_pair() -> tuple[str, str]:
    """A PKCE code verifier and its S256 challenge."""
    import hashlib
    import secrets

    verifier = secrets.token_urlsafe(64)
    return verifier, _b64url_encode(hashlib.sha256(verifier.encode("ascii")).digest())


_CALLBACK_PAGE = (
    "<!doctype html><meta charset=utf-8><title>rolebroker</title>"
    "<p style='font-family:sans-serif'>{text} You can close this window.</p>"
)


def wait_for_redirect(authorize_url: Callable[[str], str], state: str, rt: Runtime, *, no_browser: bool
                      ) -> tuple[dict[str, str], str]:
    """Serve the loopback redirect, send the user to the IdP, return (callback query, redirect_uri)."""
    import contextlib
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from urllib.parse import parse_qs, urlsplit

    answer: dict[str, str] = {}
    done = threading.Event()
    lock = threading.Lock()

    class Callback(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            with lock:
                if parts.path != "/callback" or done.is_set():
                    self.send_error(404)
                    return
                query = {key: values[0] for key, values in parse_qs(parts.query).items()}
                if query.get("state") != state:
                    # Anything on this machine can call us; only the answer to our
                    # own authorization request counts, so keep waiting for it.
                    rt.stderr.write("rolebroker: ignored a sign-in answer with the wrong state (not from this "
                                    "login); still waiting\n")
                    rt.stderr.flush()
                    self._page(400, "This answer is not from the sign-in rolebroker is waiting for.")
                    return
                answer.update(query)
                done.set()
            ok = "code" in answer
            self._page(200 if ok else 400, "Signed in to rolebroker." if ok else "Sign-in failed; see the terminal.")

        def _page(self, status: int, text: str) -> None:
            page = _CALLBACK_PAGE.format(text=text).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: Any) -> None:
            return  # keep the terminal for the user

    server = HTTPServer(("127.0.0.1", 0), Callback)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="rolebroker-login",
                              daemon=True)
    thread.start()
    try:
        redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/callback"
        url = authorize_url(redirect_uri)
        rt.stderr.write(f"Sign in at this address (waiting up to {rt.login_timeout:g} s):\n  {url}\n")
        rt.stderr.flush()
        if not no_browser:
            # No browser is fine: the address is printed above.
            with contextlib.suppress(Exception):
                rt.open_browser(url)
        if not done.wait(rt.login_timeout):
            raise LoginError(f"no sign-in arrived within {rt.login_timeout:g} s; run `rolebroker login` again")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    return answer, redirect_uri


def login(ctx: Context) -> tuple[str, dict[str, Any]]:
    """Sign in interactively; the issuer and its new token entry."""
    import secrets
    from urllib.parse import urlencode

    issuer, client_id, scopes = _login_provider(ctx)
    rt, timeout = ctx.rt, ctx.settings.timeout
    endpoints = discover(issuer, rt, timeout)
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)

    def authorize_url(redirect_uri: str) -> str:
        query = urlencode({
            "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": scopes,
            "state": state, "nonce": nonce, "code_challenge": challenge, "code_challenge_method": "S256",
        })
        base = endpoints["authorization_endpoint"]
        return f"{base}{'&' if '?' in base else '?'}{query}"

    answer, redirect_uri = wait_for_redirect(authorize_url, state, rt, no_browser=ctx.opts.no_browser)
    if "error" in answer:
        detail = _one_line(answer.get("error_description") or answer["error"], 160)
        raise LoginError(f"the identity provider refused the sign-in: {detail}")
    if not answer.get("code"):
        raise LoginError("the sign-in answer carried no authorization code; run `rolebroker login` again")
    form = {"grant_type": "authorization_code", "code": answer["code"], "redirect_uri": redirect_uri,
            "client_id": client_id, "code_verifier": verifier}
    status, tokens = token_request(endpoints["token_endpoint"], form, rt, timeout)
    if status != 200:
        reason = _one_line(str(tokens.get("error_description") or tokens.get("error") or f"HTTP {status}"), 160)
        raise LoginError(f"the identity provider did not issue tokens: {reason}")
    entry = _token_entry(tokens, {"client_id": client_id, "token_endpoint": endpoints["token_endpoint"]}, rt.clock())
    claims = jwt_claims(str(entry.get("id_token", ""))) or {}
    if "nonce" in claims and claims["nonce"] != nonce:
        raise LoginError("the id_token carries the wrong nonce; run `rolebroker login` again")
    return issuer, entry


def _login_provider(ctx: Context) -> tuple[str, str, str]:
    """Issuer, client_id and scopes: from the options, the config file, else the broker's /v1/client-config."""
    settings, opts = ctx.settings, ctx.opts
    issuer = opts.issuer or settings.issuer
    client_id = opts.client_id or settings.client_id
    scopes = settings.file.get("scopes") or DEFAULT_SCOPES
    if not (issuer and client_id):
        if not settings.url:
            raise ConfigError(
                "no identity provider: pass --url (the broker tells us) or --issuer and --client-id, "
                f"or set them under [default] in {settings.config_path}")
        doc = BrokerClient(settings.require_url(), None, timeout=settings.timeout,
                           urlopen=ctx.rt.urlopen).client_config()
        issuer = issuer or doc.get("issuer")
        client_id = client_id or doc.get("client_id")
        scopes = settings.file.get("scopes") or str(doc.get("scopes") or DEFAULT_SCOPES)
    if not isinstance(issuer, str) or not isinstance(client_id, str) or not issuer or not client_id:
        raise UnexpectedAnswer("unexpected answer from broker (client-config without issuer or client_id)")
    return issuer, client_id, scopes


# --------------------------------------------------------------------------
# Commands


class Options:
    """The parsed command line, filled by the fast parser or by argparse."""

    command: str = ""
    url: str | None = None
    token_file: str | None = None
    timeout: float | None = None
    role: str | None = None
    roles: list[str] | None = None
    duration: int | None = None
    no_cache: bool = False
    all: bool = False
    force: bool = False
    open: bool = False
    reason: str | None = None
    request_id: str | None = None
    argv: list[str] | None = None
    cache_action: str | None = None
    issuer: str | None = None
    client_id: str | None = None
    no_browser: bool = False

    def values(self) -> dict[str, Any]:
        names = [name for name in dir(Options) if not name.startswith("_") and name != "values"]
        return {name: getattr(self, name) for name in names}


class Context:
    """What a command works with: options, settings, side effects."""

    def __init__(self, opts: Options, settings: Settings, rt: Runtime) -> None:
        self.opts = opts
        self.settings = settings
        self.rt = rt
        self._token: TokenSource | None = None

    def out(self, text: str) -> None:
        self.rt.stdout.write(text)

    def warn(self, text: str) -> None:
        self.rt.stderr.write(f"rolebroker: {redact(text)}\n")

    def token_source(self) -> TokenSource:
        if self._token is None:
            self._token = resolve_token_source(self.settings, self.rt)
        return self._token

    def client(self) -> BrokerClient:
        return BrokerClient(self.settings.require_url(), self.token_source(), timeout=self.settings.timeout,
                            urlopen=self.rt.urlopen)

    def role(self) -> str:
        if not self.opts.role:
            raise UsageError(f"{self.opts.command} needs --role NAME")
        return self.opts.role


def credentials_for(ctx: Context, role: str, duration: int | None, *, use_cache: bool = True) -> dict[str, Any]:
    """A cache entry for ``role``: from the cache when fresh, else from the broker."""
    url = ctx.settings.require_url()
    source = ctx.token_source()
    rt = ctx.rt
    cache = CredentialCache(ctx.settings.cache_dir, getuid=rt.getuid) if use_cache else None
    key = CredentialCache.key(url, identity_of(source.peek()), role, duration)
    fetcher = BrokerCredentialFetcher(ctx.client, role, duration, cache=cache, cache_key=key, clock=rt.clock,
                                      sleep=rt.sleep, lock_timeout=rt.lock_timeout)
    return fetcher.fetch()


def cmd_credential_process(ctx: Context) -> int:
    entry = credentials_for(ctx, ctx.role(), ctx.opts.duration, use_cache=not ctx.opts.no_cache)
    ctx.out(json.dumps(entry["credentials"]) + "\n")
    return 0


def _access_text(access: object) -> str:
    if not isinstance(access, str):
        return "-"
    if access == "approval_required":
        return "approval required"
    if access == "mfa_required":
        return "MFA required"
    if access.startswith("granted_until:"):
        try:
            return f"granted until {_local_time(parse_timestamp(access.split(':', 1)[1]))}"
        except ValueError:
            pass
    return _one_line(access, 80)


def cmd_roles(ctx: Context) -> int:
    roles = ctx.client().roles()
    if not roles:
        ctx.warn("the broker offers you no roles")
        return 0
    rows = [[_one_line(str(role.get(key, "-")), 80) for key in ("name", "account_id", "region")]
            + [_access_text(role.get("access"))] for role in roles]
    ctx.out(_table(["ROLE", "ACCOUNT", "REGION", "ACCESS"], rows))
    return 0


def aws_environment(entry: Mapping[str, Any]) -> list[tuple[str, str]]:
    creds = entry["credentials"]
    pairs = [
        ("AWS_ACCESS_KEY_ID", creds["AccessKeyId"]),
        ("AWS_SECRET_ACCESS_KEY", creds["SecretAccessKey"]),
        ("AWS_SESSION_TOKEN", creds["SessionToken"]),
        ("AWS_CREDENTIAL_EXPIRATION", creds["Expiration"]),
    ]
    if entry.get("region"):
        pairs += [("AWS_REGION", entry["region"]), ("AWS_DEFAULT_REGION", entry["region"])]
    return pairs


# A profile or legacy token in the environment would win over, or mix with, ours.
_CONFLICTING_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SECURITY_TOKEN")
# What the client itself reads: the command it runs gets credentials, never the bearer token.
_CLIENT_VARIABLES = ("ROLEBROKER_TOKEN", "ROLEBROKER_URL", "ROLEBROKER_CONFIG")


def cmd_env(ctx: Context) -> int:
    import shlex

    entry = credentials_for(ctx, ctx.role(), ctx.opts.duration)
    lines = [f"unset {' '.join(_CONFLICTING_VARIABLES)}"]
    lines += [f"export {name}={shlex.quote(str(value))}" for name, value in aws_environment(entry)]
    ctx.out("\n".join(lines) + "\n")
    return 0


def cmd_exec(ctx: Context) -> int:
    argv = ctx.opts.argv or []
    entry = credentials_for(ctx, ctx.role(), ctx.opts.duration)
    hidden = {*_CONFLICTING_VARIABLES, *_CLIENT_VARIABLES}
    env = {name: value for name, value in ctx.settings.environ.items() if name not in hidden}
    env.update(aws_environment(entry))
    try:
        return ctx.rt.execute(argv, env)
    except FileNotFoundError:
        raise CommandNotRunnable(f"command not found: {argv[0]}", 127) from None
    except OSError as exc:
        raise CommandNotRunnable(f"cannot run {argv[0]}: {exc.strerror or exc}", 126) from None


def cmd_console(ctx: Context) -> int:
    doc = ctx.client().console(ctx.role())
    url = str(doc["url"])
    ctx.out(url + "\n")
    if ctx.opts.open and not ctx.rt.open_browser(url):
        ctx.warn("could not open a browser; open the address above yourself")
    return 0


def cmd_configure(ctx: Context) -> int:
    import shutil

    url = ctx.settings.require_url()
    specs = verify_profiles(ctx.client().config(), url)
    offered = [spec.name for spec in specs]
    if ctx.opts.roles and not ctx.opts.all:
        missing = [name for name in ctx.opts.roles if name not in offered]
        if missing:
            raise RoleBrokerError(f"the broker offers you no role {missing[0]!r}; see `rolebroker roles`")
        specs = [spec for spec in specs if spec.name in ctx.opts.roles]
    if not specs:
        ctx.warn("the broker offers you no roles; nothing to configure")
        return 0
    command = client_command(ctx.rt.which or shutil.which, ctx.rt.executable, __file__)
    windows = sys.platform == "win32"
    rendered = [(spec.name, render_profile(spec, command, url, windows=windows)) for spec in specs]
    path = os.path.realpath(ctx.settings.aws_config_path)
    original = _read_text(path)
    text, outcome = apply_profiles(original, rendered, force=ctx.opts.force)
    if text != original:
        write_aws_config(path, text)
    for name, status in outcome:
        if status == "kept":
            ctx.warn(f"[profile {name}] in {path} is not managed by rolebroker; left it alone (--force replaces it)")
        elif status == "default":
            ctx.warn(f"[profile {name}] would become the default profile in {path}; left it alone (--force writes it)")
        else:
            ctx.out(f"profile {name}: {status}\n")
    if not ctx.opts.roles:
        for name in managed_profiles(text):
            if name not in offered:
                ctx.warn(f"[profile {name}] in {path} is managed by rolebroker but no longer offered to you")
    used = [name for name, status in outcome if status not in ("kept", "default")]
    if used:
        ctx.out(f"try: aws sts get-caller-identity --profile {used[0]}\n")
    return 0


def cmd_request(ctx: Context) -> int:
    if not ctx.opts.reason or not ctx.opts.reason.strip():
        raise UsageError("request needs --reason TEXT: approvers see it")
    doc = ctx.client().create_request(ctx.role(), ctx.opts.duration, ctx.opts.reason)
    shown = [_one_line(str(doc.get(key, default)), 80) for key, default in
             (("id", "?"), ("role", ctx.role()), ("status", "?"))]
    ctx.out("request {} for {}: {}\n".format(*shown))
    return 0


def cmd_requests(ctx: Context) -> int:
    items, more = ctx.client().requests()
    if more:
        ctx.warn(f"showing the first {len(items)} requests; the broker has more")
    if not items:
        ctx.warn("no access requests")
        return 0
    rows = []
    for item in items:
        created = item.get("created_at")
        try:
            created_text = _local_time(parse_timestamp(created)) if isinstance(created, str) else "-"
        except ValueError:
            created_text = _one_line(str(created), 40)
        rows.append([_one_line(str(item.get(key, "-")), 60) for key in ("id", "status", "role", "requester")]
                    + [_human_duration(item.get("duration_seconds")), created_text,
                       _one_line(str(item.get("reason", "")), 80)])
    ctx.out(_table(["ID", "STATUS", "ROLE", "REQUESTER", "DURATION", "CREATED", "REASON"], rows))
    return 0


def _cmd_decide(ctx: Context, verdict: str) -> int:
    request_id = ctx.opts.request_id or ""
    doc = ctx.client().decide(request_id, verdict, ctx.opts.reason if verdict == "deny" else None)
    who = _one_line(str(doc.get("requester", "?")), 80)
    role = _one_line(str(doc.get("role", "?")), 80)
    ctx.out(f"request {request_id} ({role} for {who}): {_one_line(str(doc.get('status', verdict)), 40)}\n")
    return 0


def cmd_approve(ctx: Context) -> int:
    return _cmd_decide(ctx, "approve")


def cmd_deny(ctx: Context) -> int:
    return _cmd_decide(ctx, "deny")


def cmd_login(ctx: Context) -> int:
    url = ctx.settings.url
    if not url:
        raise UsageError("login needs the broker URL the sign-in is for: pass --url or set ROLEBROKER_URL")
    issuer, entry = login(ctx)
    store = LoginStore(ctx.settings.tokens_path, getuid=ctx.rt.getuid)
    with store.lock(ctx.rt):
        data = store.load()
        data["issuers"][issuer] = entry
        data["brokers"][url] = issuer
        store.save(data)
    claims = jwt_claims(_bearer(entry) or "") or {}
    who = claims.get("email") or claims.get("preferred_username") or claims.get("sub") or "you"
    ctx.out(f"signed in as {_one_line(str(who), 80)} at {issuer}\n")
    return 0


def cmd_logout(ctx: Context) -> int:
    store = LoginStore(ctx.settings.tokens_path, getuid=ctx.rt.getuid)
    signed_out: list[str] = []
    if os.path.exists(store.path):
        with store.lock(ctx.rt):
            data = store.load()
            issuer = LoginStore.issuer_for(data, ctx.settings.url)
            if ctx.opts.all:
                signed_out = list(data["issuers"])
            elif issuer is not None and issuer in data["issuers"]:
                signed_out = [issuer]
            for name in signed_out:
                del data["issuers"][name]
            data["brokers"] = {url: name for url, name in data["brokers"].items() if name not in signed_out}
            store.save(data)
    # Credentials fetched in the session go with it.
    removed = CredentialCache(ctx.settings.cache_dir, getuid=ctx.rt.getuid).clear()
    if signed_out:
        ctx.out(f"signed out of {', '.join(signed_out)}; removed {removed} cached credential(s)\n")
    else:
        ctx.out(f"not signed in; removed {removed} cached credential(s)\n")
    return 0


def cmd_cache(ctx: Context) -> int:
    removed = CredentialCache(ctx.settings.cache_dir, getuid=ctx.rt.getuid).clear()
    ctx.out(f"removed {removed} cached credential(s) from {ctx.settings.cache_dir}\n")
    return 0


COMMANDS: dict[str, Callable[[Context], int]] = {
    "credential-process": cmd_credential_process,
    "roles": cmd_roles,
    "configure": cmd_configure,
    "env": cmd_env,
    "exec": cmd_exec,
    "console": cmd_console,
    "request": cmd_request,
    "requests": cmd_requests,
    "approve": cmd_approve,
    "deny": cmd_deny,
    "login": cmd_login,
    "logout": cmd_logout,
    "cache": cmd_cache,
}


# --------------------------------------------------------------------------
# Command line

_FAST_OPTIONS = {"--url": "url", "--role": "role", "--duration": "duration", "--token-file": "token_file",
                 "--timeout": "timeout"}


def parse_fast(args: Sequence[str]) -> Options | None:
    """Parse a plain ``credential-process`` command line without argparse; None for anything else.

    The SDKs run this on every credential lookup, and argparse is the single
    biggest import left on a cache hit. Anything unusual (help, abbreviations,
    bad values) goes to argparse, which then gives the proper message.
    """
    opts = Options()
    seen_command = False
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "credential-process" and not seen_command:
            seen_command = True
            continue
        if arg == "--no-cache" and seen_command:
            opts.no_cache = True
            continue
        name, eq, value = arg.partition("=")
        dest = _FAST_OPTIONS.get(name)
        if dest is None or (dest in ("role", "duration") and not seen_command):
            return None
        if not eq:
            if index >= len(args) or args[index].startswith("-"):
                return None
            value = args[index]
            index += 1
        try:
            setattr(opts, dest, seconds(value) if dest == "duration" else positive_number(value) if dest == "timeout"
                    else value)
        except ValueError:
            return None
    if not seen_command or not opts.role:
        return None
    opts.command = "credential-process"
    return opts


def seconds(text: str) -> int:
    """A whole number of seconds in ASCII digits (``int`` alone takes ``٩٠٠``, `` 900`` and ``9_00``)."""
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise ValueError(text)
    return int(text)


def positive_number(text: str) -> float:
    """A positive decimal number in ASCII (``float`` alone takes ``inf``, ``nan``, ``1e9`` and ``١``)."""
    whole, _, fraction = text.partition(".")
    if not (text.isascii() and (whole + fraction).isdigit() and (whole + fraction).strip("0")):
        raise ValueError(text)
    return float(text)


def build_parser(stdout: IO[str], stderr: IO[str]) -> Any:
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise UsageError(f"{message} (see `{self.prog} --help`)")

        def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
            if message:
                stderr.write(message)
            raise _Exit(status)

        def print_help(self, file: Any = None) -> None:
            super().print_help(file or stdout)

        def print_usage(self, file: Any = None) -> None:
            super().print_usage(file or stderr)

    common = Parser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--url", help="broker URL (else ROLEBROKER_URL, else `url` in the config file)")
    common.add_argument("--token-file", help="read the bearer token from this file")
    common.add_argument("--timeout", type=positive_number, help=f"seconds to wait for the broker "
                        f"(default {DEFAULT_TIMEOUT_SECONDS:g})")
    parser = Parser(prog="rolebroker", parents=[common],
                    description="Temporary AWS credentials from the rolebroker broker.")
    parser.add_argument("--version", action="version", version=f"rolebroker {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, text: str) -> Any:
        return sub.add_parser(name, parents=[common], help=text, description=text)

    def role_option(cmd: Any, with_duration: bool = True) -> None:
        cmd.add_argument("--role", required=True, help="the role's name, as `rolebroker roles` lists it")
        if with_duration:
            cmd.add_argument("--duration", type=seconds, help="session length in seconds")

    cmd = command("credential-process", "print credentials for an AWS credential_process (JSON on stdout)")
    role_option(cmd)
    cmd.add_argument("--no-cache", action="store_true", help="neither read nor write the credential cache")
    command("roles", "list the roles you may use or request")
    cmd = command("configure", "write [profile ROLE] sections into ~/.aws/config (or AWS_CONFIG_FILE)")
    cmd.add_argument("--role", dest="roles", action="append", metavar="NAME", help="only this role (repeatable)")
    cmd.add_argument("--all", action="store_true", help="every role the broker offers (the default)")
    cmd.add_argument("--force", action="store_true", help="also replace same-named sections written by hand")
    role_option(command("env", "print shell `export` lines with credentials for a role"))
    cmd = command("exec", "run a command with a role's credentials: exec --role NAME -- CMD [ARGS...]")
    role_option(cmd)
    cmd = command("console", "print an AWS console sign-in link for a role")
    role_option(cmd, with_duration=False)
    cmd.add_argument("--open", action="store_true", help="also open it in the browser")
    cmd = command("request", "ask for time-bound access to a role that needs approval")
    role_option(cmd)
    cmd.add_argument("--reason", required=True, help="why you need it (approvers see this)")
    command("requests", "list your access requests and those you may approve")
    cmd = command("approve", "approve an access request")
    cmd.add_argument("request_id", metavar="ID")
    cmd = command("deny", "deny an access request")
    cmd.add_argument("request_id", metavar="ID")
    cmd.add_argument("--reason", help="tell the requester why")
    cmd = command("login", "sign in with your identity provider (opens a browser)")
    cmd.add_argument("--issuer", help="OIDC issuer (else the config file, else the broker's client-config)")
    cmd.add_argument("--client-id", help="OIDC client id (likewise)")
    cmd.add_argument("--no-browser", action="store_true", help="only print the sign-in address")
    cmd = command("logout", "forget the stored sign-in and cached credentials")
    cmd.add_argument("--all", action="store_true", help="sign out of every identity provider")
    cmd = command("cache", "manage the credential cache")
    actions = cmd.add_subparsers(dest="cache_action", metavar="ACTION", required=True)
    actions.add_parser("clear", help="delete every cached credential")
    return parser


def parse_arguments(args: Sequence[str], stdout: IO[str], stderr: IO[str]) -> Options:
    fast = parse_fast(args)
    if fast is not None:
        return fast
    head, tail = list(args), None
    if "--" in args:
        split = args.index("--")
        head, tail = list(args[:split]), list(args[split + 1:])
    opts = Options()
    build_parser(stdout, stderr).parse_args(head, namespace=opts)
    if opts.command == "exec":
        if not tail:
            raise UsageError("exec needs a command after `--`, e.g. rolebroker exec --role NAME -- aws s3 ls")
        opts.argv = tail
    elif tail:
        raise UsageError(f"unexpected arguments after `--` (see `rolebroker {opts.command} --help`)")
    return opts


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None,
         runtime: Runtime | None = None) -> int:
    """Run one command; the exit status. The only reader of argv and the environment."""
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if environ is None else environ
    rt = runtime or Runtime()
    try:
        try:
            opts = parse_arguments(args, rt.stdout, rt.stderr)
        except _Exit as done:
            return done.status
        settings = Settings(env, url=opts.url, token_file=opts.token_file, timeout=opts.timeout, getuid=rt.getuid)
        return COMMANDS[opts.command](Context(opts, settings, rt))
    except RoleBrokerError as exc:
        return _fail(rt, str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return _fail(rt, "interrupted", 130)
    except BrokenPipeError:
        return 1
    except Exception as exc:
        # Never a traceback: the SDKs show our stderr to the user verbatim.
        return _fail(rt, f"unexpected error ({type(exc).__name__}: {exc}); please report it", 1)


def _fail(rt: Runtime, message: str, code: int) -> int:
    try:
        rt.stderr.write(f"rolebroker: {_one_line(redact(message), 500)}\n")
        rt.stderr.flush()
    except (OSError, ValueError):
        pass
    return code


if __name__ == "__main__":
    sys.exit(main())
