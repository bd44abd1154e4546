"""The hot path: serve a ``credential-process`` cache hit, or hand over to the full client.

The AWS CLI and every SDK run ``credential-process`` whenever they need
credentials for a profile, so a cache hit must cost little more than starting
Python. This module therefore imports only json, os, stat, sys and time, and
holds the few pieces a hit needs, which the rest of the package shares rather
than repeats: the command-line subset, the cache key and file name, the
checks a cache entry and its directory must pass, and reading the identity
out of a token. Anything that is not a plain hit (a miss, a token to refresh,
a problem to report) goes to ``rolebroker.cli.main`` with the same arguments,
which decides again from scratch and says what is wrong: this module never
prints an error of its own.

Costs measured with ``python -X importtime``: urllib.request (with http, ssl,
email) costs more than Python's own start, argparse and hashlib milliseconds,
so a hit parses its command line by hand, decodes the JWT payload in Python
(quicker than loading binascii), and names cache files with a 64-bit
checksum computed in Python rather than hashlib (which loads OpenSSL).
"""

# No `from __future__ import annotations` here: it is a real import too (of
# __future__), paid on every hit. Annotations that Python 3.9 cannot evaluate
# are written as strings instead.
import json
import os
import stat
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

CACHE_FORMAT = 1
CREDENTIAL_KEYS = ("Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")
ENTRY_KEYS = frozenset({"format", "role", "region", "expires_at", "credentials", "key"})
# botocore refreshes credentials with 15 minutes or less left: serving those
# would make it run us again before every single request.
REFRESH_WINDOW_SECONDS = 15 * 60
TOKEN_REFRESH_MARGIN_SECONDS = 60
MAX_FILE_BYTES = 4 * 1024 * 1024


def current_uid() -> "Callable[[], int] | None":
    """Who owns our files: ``os.getuid``, except on Windows, which has no uids (nor these checks)."""
    if sys.platform == "win32":
        return None
    return os.getuid


DEFAULT_GETUID = current_uid()


# --------------------------------------------------------------------------
# The command line: the credential-process subset


_OPTIONS = {"--url": "url", "--role": "role", "--duration": "duration", "--token-file": "token_file",
            "--timeout": "timeout", "--scope": "scope"}


def seconds(text: str) -> int:
    """A whole number in ASCII digits, at most 9 (``int`` alone takes ``٩٠٠``, `` 900`` and ``9_00``)."""
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise ValueError(text)
    return int(text)


_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}
DURATION_HELP = "use e.g. 90m, 1h, 2h30m or 3600 (seconds)"


def duration(text: str) -> int:
    """A duration as people type it: ``3600`` (seconds), ``90m``, ``1h``, ``2h30m``, ``900s``.

    Units come in the order h, m, s, each at most once, with 1-6 ASCII digits
    before it (``int`` alone takes ``٩٠٠``, `` 900`` and ``9_00``); nothing
    else, not even a space. The server's Slack parser (chalicelib/chat/slack.py)
    takes exactly the same text, which tests/client/test_client_durations.py
    holds it to. Written without ``re``: this runs on the hot path.
    """
    if not text.isascii():
        raise ValueError(text)
    if text.isdigit() and len(text) <= 6:
        total = int(text)
    else:
        total, digits, units = 0, "", "hms"
        for ch in text.lower():
            if ch.isdigit():
                digits += ch
                continue
            if not 1 <= len(digits) <= 6 or ch not in units:
                raise ValueError(text)
            units = units[units.index(ch) + 1:]
            total += int(digits) * _UNIT_SECONDS[ch]
            digits = ""
        if digits or not text:
            raise ValueError(text)
    if total <= 0:
        raise ValueError(text)
    return total


def positive_number(text: str) -> float:
    """A positive decimal number in ASCII (``float`` alone takes ``inf``, ``nan``, ``1e9`` and ``١``)."""
    whole, _, fraction = text.partition(".")
    if not (text.isascii() and (whole + fraction).isdigit() and (whole + fraction).strip("0")):
        raise ValueError(text)
    return float(text)


def parse_credential_process(args: "Sequence[str]") -> "dict[str, Any] | None":
    """The options of a plain ``credential-process`` command line, without argparse; None for anything else.

    argparse is the biggest import a hit would otherwise pay. Anything unusual
    (help, abbreviations, bad values) is left to argparse, which then gives
    the proper message.
    """
    opts: dict[str, Any] = {}
    seen_command = False
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "credential-process" and not seen_command:
            seen_command = True
            continue
        if arg == "--no-cache" and seen_command:
            opts["no_cache"] = True
            continue
        name, eq, value = arg.partition("=")
        dest = _OPTIONS.get(name)
        if dest is None or (dest in ("role", "duration", "scope") and not seen_command):
            return None
        if not eq:
            if index >= len(args) or args[index].startswith("-"):
                return None
            value = args[index]
            index += 1
        try:
            opts[dest] = duration(value) if dest == "duration" else positive_number(value) if dest == "timeout" \
                else value
        except ValueError:
            return None
    if not seen_command or not opts.get("role"):
        return None
    return opts


# --------------------------------------------------------------------------
# Where things are


class ClientPaths:
    """The client's files, from the environment (XDG base directories, AWS_CONFIG_FILE)."""

    def __init__(self, environ: "Mapping[str, str]") -> None:
        home = environ.get("HOME") or environ.get("USERPROFILE") or os.path.expanduser("~")
        config_home = environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        cache_home = environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
        self.config_explicit = bool(environ.get("ROLEBROKER_CONFIG"))
        self.config_path = environ.get("ROLEBROKER_CONFIG") or os.path.join(config_home, "rolebroker", "config")
        self.tokens_path = os.path.join(config_home, "rolebroker", "tokens.json")
        self.cache_dir = os.path.join(cache_home, "rolebroker")
        aws_config = environ.get("AWS_CONFIG_FILE")
        if aws_config and aws_config.startswith("~"):
            aws_config = home + aws_config[1:]
        self.aws_config_path = aws_config or os.path.join(home, ".aws", "config")


# --------------------------------------------------------------------------
# Trust: files and directories only this user controls


def path_problem(path: str, *, st_uid: int, st_mode: int, uid: int, allow_root: bool = False) -> "str | None":
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
    import shlex  # only when there is a problem to describe

    return shlex.quote(text)


def directory_problem(path: str, getuid: "Callable[[], int] | None") -> "str | None":
    """``path_problem`` for an existing directory; None when it is missing or uid checks are off."""
    if getuid is None:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return path_problem(path, st_uid=info.st_uid, st_mode=info.st_mode, uid=getuid())


def private_file(info: "os.stat_result", getuid: "Callable[[], int] | None") -> bool:
    """A regular file that is ours and that nobody else can read: the only kind that may hold credentials.

    A file another user owns could have been planted; one others can read has leaked.
    """
    if not stat.S_ISREG(info.st_mode):
        return False
    return getuid is None or (info.st_uid == getuid() and not info.st_mode & 0o077)


def read_private(path: str, getuid: "Callable[[], int] | None") -> "bytes | None":
    """The bytes of ``path`` if it is a private file of ours (never through a symlink); else None."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        if not private_file(os.fstat(fd), getuid):
            return None
        # os.read, not a file object: on the hit path the io layer costs more than the read.
        chunks = []
        size = 0
        while size < MAX_FILE_BYTES:
            chunk = os.read(fd, MAX_FILE_BYTES - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


# --------------------------------------------------------------------------
# Tokens: who a token speaks for, unverified (the broker verifies)


_B64URL_VALUES = {ch: value for value, ch in
                  enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}


def b64url_decode(part: str) -> bytes:
    """base64url without padding, in Python: for a JWT payload this is quicker
    than loading the binascii extension on a cache hit."""
    part = part.rstrip("=")
    if len(part) % 4 == 1:
        raise ValueError("truncated base64url")
    number = 0
    try:
        for ch in part:
            number = number << 6 | _B64URL_VALUES[ch]
    except KeyError:
        raise ValueError("not base64url") from None
    bits = 6 * len(part)
    return (number >> bits % 8).to_bytes(bits // 8, "big")


def jwt_claims(token: str) -> "dict[str, Any] | None":
    """The payload of a JWT, unverified (the broker verifies); None if it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, UnicodeError):
        return None
    return claims if isinstance(claims, dict) else None


def identity_of(token: str) -> "tuple[str, str]":
    """Who a token speaks for, as (issuer, subject): part of the cache key."""
    claims = jwt_claims(token) or {}
    issuer, subject = claims.get("iss"), claims.get("sub")
    if isinstance(issuer, str) and isinstance(subject, str) and subject:
        return issuer, subject
    import hashlib  # only for tokens that are not JWTs, so never on a JWT cache hit

    return "opaque", hashlib.sha256(token.encode("utf-8")).hexdigest()


def login_data(raw: "bytes | None") -> "dict[str, Any]":
    """The login store's document; missing or damaged means signed out (the next login rewrites it)."""
    try:
        data = json.loads(raw) if raw is not None else None
    except (ValueError, UnicodeError):
        data = None
    if not isinstance(data, dict) or data.get("version") != 1:
        data = {"version": 1}
    for table in ("issuers", "brokers"):
        if not isinstance(data.get(table), dict):
            data[table] = {}
    return data


def issuer_for(data: "Mapping[str, Any]", url: "str | None") -> "str | None":
    """The issuer signed in for broker ``url``; None when no sign-in was made for it."""
    issuer = data["brokers"].get(url) if url else None
    return issuer if isinstance(issuer, str) and issuer in data["issuers"] else None


def bearer(entry: "Mapping[str, Any]") -> "str | None":
    """The token a sign-in sends: the broker verifies the id_token (its audience is our client_id)."""
    for name in ("id_token", "access_token"):
        value = entry.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def token_expiry(entry: "Mapping[str, Any]") -> "float | None":
    exp = (jwt_claims(bearer(entry) or "") or {}).get("exp", entry.get("expires_at"))
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


# --------------------------------------------------------------------------
# The cache: names, entries, freshness


def cache_key(url: str, identity: "tuple[str, str]", role: str, duration: "int | None",
              scope: "str | None" = None) -> str:
    """The whole key; it is stored in the entry and checked on every read.

    A scope is part of it, so a scoped session is never served for the whole
    role, nor the other way round (keys without a scope are as they were).
    """
    parts = [CACHE_FORMAT, url.rstrip("/"), identity[0], identity[1], role, duration or 0]
    return json.dumps([*parts, scope] if scope else parts, separators=(",", ":"))


# The largest prime below 2**64: the key's bytes, read as one number, modulo it.
_NAME_MODULUS = 2**64 - 59


def cache_name(key: str) -> str:
    """A 64-bit checksum of the key: one arithmetic operation, no import (hashlib loads OpenSSL).

    Two keys sharing a name cannot mix up credentials, because a read compares
    the full key stored in the entry; they only evict each other.
    """
    return f"{int.from_bytes(key.encode('utf-8'), 'big') % _NAME_MODULUS:016x}"


def credentials_problem(creds: object) -> str:
    """What is wrong with a credential_process document ("" when nothing)."""
    if not isinstance(creds, dict):
        return "no credentials"
    if creds.get("Version") != 1:
        return "credentials Version is not 1"
    for name in CREDENTIAL_KEYS[1:]:
        if not isinstance(creds.get(name), str) or not creds[name]:
            return f"credentials without {name}"
        # `env` prints them and `exec` passes them on: nothing a terminal acts on.
        if not (creds[name].isascii() and creds[name].isprintable()):
            return f"credentials {name} is not printable ASCII"
    return ""


def valid_entry(entry: object) -> bool:
    """A cache file's document has exactly the shape rolebroker writes."""
    if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT or set(entry) != ENTRY_KEYS:
        return False
    expires_at = entry.get("expires_at")
    if not isinstance(expires_at, (int, float)) or isinstance(expires_at, bool):
        return False
    if not isinstance(entry.get("role"), str) or not isinstance(entry.get("region"), (str, type(None))):
        return False
    creds = entry.get("credentials")
    return not credentials_problem(creds) and isinstance(creds, dict) and set(creds) == set(CREDENTIAL_KEYS)


def read_entry(path: str, key: str, getuid: "Callable[[], int] | None") -> "dict[str, Any] | None":
    """The entry stored for ``key`` at ``path``, if the file is private, well formed and really for that key."""
    raw = read_private(path, getuid)
    if raw is None:
        return None
    try:
        entry = json.loads(raw)
    except (ValueError, UnicodeError):
        return None
    if not valid_entry(entry) or entry.pop("key") != key:
        return None
    return dict(entry)


def fresh(entry: "Mapping[str, Any]", now: float, window: float = REFRESH_WINDOW_SECONDS) -> bool:
    return float(entry["expires_at"]) - now > window


# --------------------------------------------------------------------------
# The hit itself


def _hit_token(opts: "Mapping[str, Any]", environ: "Mapping[str, str]", paths: "ClientPaths", url: str,
               getuid: "Callable[[], int] | None", now: float) -> "str | None":
    """The token the full client would send, when it can be known without network or a program; else None."""
    token = environ.get("ROLEBROKER_TOKEN", "").strip()
    if token:
        return token
    if opts.get("token_file"):
        try:
            with open(opts["token_file"], encoding="utf-8") as handle:
                return handle.read().strip() or None
        except (OSError, UnicodeError):
            return None
    if paths.config_explicit or os.path.exists(paths.config_path):
        # A token_command there comes before the login store (and runs a program).
        try:
            from rolebroker.settings import read_config_file

            if read_config_file(paths.config_path, required=paths.config_explicit, getuid=getuid).get(
                    "token_command"):
                return None
        except Exception:
            return None  # the full client reports it
    if directory_problem(os.path.dirname(paths.tokens_path), getuid):
        return None
    data = login_data(read_private(paths.tokens_path, getuid))
    issuer = issuer_for(data, url)
    entry = data["issuers"].get(issuer) if issuer else None
    if not isinstance(entry, dict):
        return None
    expiry = token_expiry(entry)
    if expiry is not None and expiry - now < TOKEN_REFRESH_MARGIN_SECONDS:
        return None  # due for a refresh: the full client does that, under its lock
    return bearer(entry)


def cached_document(args: "Sequence[str]", environ: "Mapping[str, str]", *,
                    getuid: "Callable[[], int] | None" = DEFAULT_GETUID,
                    clock: "Callable[[], float]" = time.time) -> "str | None":
    """What ``credential-process`` prints for a plain cache hit; None when the full client must decide."""
    opts = parse_credential_process(args)
    if opts is None or opts.get("no_cache"):
        return None
    paths = ClientPaths(environ)
    url = (opts.get("url") or environ.get("ROLEBROKER_URL") or "").rstrip("/")
    if not url:
        return None  # then the URL comes from the config file: the full client reads it
    now = clock()
    token = _hit_token(opts, environ, paths, url, getuid, now)
    if not token or directory_problem(paths.cache_dir, getuid):
        return None
    key = cache_key(url, identity_of(token), opts["role"], opts.get("duration"), opts.get("scope"))
    entry = read_entry(os.path.join(paths.cache_dir, cache_name(key) + ".json"), key, getuid)
    if entry is None or not fresh(entry, now):
        return None
    return json.dumps(entry["credentials"]) + "\n"


def main(argv: "Sequence[str] | None" = None) -> int:
    """The ``rolebroker`` command: a cache hit answered here, everything else by the full client."""
    args = list(sys.argv[1:] if argv is None else argv)
    document = cached_document(args, os.environ)
    if document is None:
        from rolebroker.cli import main as full

        return full(args)
    try:
        sys.stdout.write(document)
        sys.stdout.flush()
    except (OSError, ValueError):
        return 1  # the reader went away; nothing to say to anyone
    return 0
