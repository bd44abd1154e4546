"""Files only this user controls: trust checks, private directories, atomic writes, side-file locks."""

from __future__ import annotations

import os
import stat
import sys

from rolebroker._fast import path_problem
from rolebroker.errors import UnsafePath

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType


def checked(path: str, getuid: Callable[[], int] | None, *, allow_root: bool = False) -> os.stat_result | None:
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


def replaceable_by_others(path: str, getuid: Callable[[], int] | None) -> str | None:
    """What lets another user put a file of theirs at ``path`` (None when nothing does).

    ``path`` and every directory above it, as written and as resolved, must be
    ours or root's and writable by nobody else: ``path_problem``, the check
    for the config and cache files. For the file's own directory a sticky bit
    such as /tmp's does not help: anyone may create the name once the file is
    gone (a tmp cleaner deletes it), and a program named in ``~/.aws/config``
    runs on every AWS call for months. Higher up it does, as for the config
    file: a directory of ours inside /tmp cannot be renamed or replaced by
    another user (a checkout or virtualenv under /tmp, as CI makes them).
    """
    if getuid is None:
        return None
    uid = getuid()
    places: list[str] = []
    strict: set[str] = set()  # the file and the directory holding it
    for start in (os.path.abspath(path), os.path.realpath(path)):
        chain = [start]
        while os.path.dirname(chain[-1]) != chain[-1]:
            chain.append(os.path.dirname(chain[-1]))
        strict.update(chain[:2])
        places += [place for place in reversed(chain) if place not in places]
    for place in places:
        try:
            info = os.stat(place)
        except OSError:
            continue
        mode = info.st_mode
        if place not in strict and stat.S_ISDIR(mode) and mode & stat.S_ISVTX:
            mode &= ~0o022  # others cannot replace what is ours in a sticky directory
        if path_problem(place, st_uid=info.st_uid, st_mode=mode, uid=uid, allow_root=True):
            if info.st_uid not in (uid, 0):
                return f"{place} belongs to another user (uid {info.st_uid})"
            return f"{place} is writable by other users"
    return None


def private_dir(path: str, getuid: Callable[[], int] | None) -> None:
    """Create (or tighten) a directory only we can enter; refuse one another user controls."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = checked(path, getuid)
    if info is not None and getuid is not None and info.st_mode & 0o077:
        os.chmod(path, 0o700)


def atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
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


