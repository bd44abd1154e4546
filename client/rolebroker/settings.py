"""What ``main`` resolves once and passes down: settings (environment and config file) and side effects."""

from __future__ import annotations

import os
import stat
import sys
import time

from rolebroker._fast import DEFAULT_GETUID, ClientPaths, path_problem
from rolebroker.errors import ConfigError, UnsafePath
from rolebroker.text import one_line

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import IO, Any

DEFAULT_TIMEOUT_SECONDS = 20.0
LOGIN_TIMEOUT_SECONDS = 300.0
LOCK_TIMEOUT_SECONDS = 30.0
CONFIG_KEYS = frozenset({"url", "token_command", "issuer", "client_id", "scopes"})


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
        raise ConfigError(f"{path} is not a valid INI file: {one_line(str(exc))}") from exc
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
    ``ROLEBROKER_TOKEN`` nothing imports configparser.
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
        paths = ClientPaths(environ)
        self._config_explicit = paths.config_explicit
        self.config_path = paths.config_path
        self.tokens_path = paths.tokens_path
        self.cache_dir = paths.cache_dir
        self.aws_config_path = paths.aws_config_path
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
        getuid: Callable[[], int] | None = DEFAULT_GETUID,
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

