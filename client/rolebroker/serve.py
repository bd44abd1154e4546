"""``rolebroker serve``: a loopback credential endpoint in the shape of ECS's, for long-running programs.

Every AWS SDK and the aws CLI read credentials from the URL in
``AWS_CONTAINER_CREDENTIALS_FULL_URI`` when it is set (and no earlier
provider answers): over plain http only at a loopback address, sending
``AWS_CONTAINER_AUTHORIZATION_TOKEN`` (or the contents of
``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``, which wins) verbatim as the
``Authorization`` header, and reading ``AccessKeyId``, ``SecretAccessKey``,
``Token`` and ``Expiration`` from the JSON answer. They ask again when
15 minutes or less are left, so a program that runs for days (Terraform,
an IDE, a notebook) never holds expired credentials, as long as each
answer has more than that: exactly what the credential cache hands out
(``credentials_for``, shared with ``credential-process``).

The server binds 127.0.0.1 only, answers ``GET /role/NAME`` for the roles
it was started for, and only to a caller that sends this run's random
token (compared in constant time): other local users and web pages cannot
read it. Nothing it logs or answers carries the token or a credential.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rolebroker.errors import CommandNotRunnable, ConfigError, RoleBrokerError, UsageError, redact
from rolebroker.text import local_time, one_line

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    from rolebroker.commands import Context

HOST = "127.0.0.1"
ROLE_PATH = "/role/"
MAX_PATH_CHARS = 512
MAX_CONNECTIONS = 32
REQUEST_TIMEOUT_SECONDS = 10.0

FULL_URI_VARIABLE = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
AUTH_TOKEN_VARIABLE = "AWS_CONTAINER_AUTHORIZATION_TOKEN"  # noqa: S105 - a variable name
# Providers the SDKs consult before the container endpoint, or that would
# redirect it: left set, they would win over the credentials served here.
SHADOWING_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                       "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CREDENTIAL_EXPIRATION",
                       "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_SESSION_NAME",
                       "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
CLIENT_VARIABLES = ("ROLEBROKER_TOKEN", "ROLEBROKER_URL", "ROLEBROKER_CONFIG")


def ecs_document(entry: Mapping[str, Any]) -> dict[str, str]:
    """A cache entry in the container endpoint's shape (Expiration in RFC 3339 UTC, as ECS writes it)."""
    creds = entry["credentials"]
    return {
        "AccessKeyId": creds["AccessKeyId"],
        "SecretAccessKey": creds["SecretAccessKey"],
        "Token": creds["SessionToken"],
        "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(entry["expires_at"]))),
    }


class CredentialServer:
    """The endpoint: ``start()``, ``uri(role)``, ``stop()``; ``fetch(role)`` returns a fresh cache entry."""

    def __init__(self, fetch: Callable[[str], Mapping[str, Any]], roles: Sequence[str], *, token: str,
                 port: int = 0, log: Callable[[str], None] = lambda line: None) -> None:
        self.token = token
        self.roles = list(roles)
        self._fetch = fetch
        self._log = log
        self._lock = threading.Lock()  # one broker request at a time; the others then find it cached
        self._served: dict[str, str] = {}
        try:
            self._server = _Server((HOST, port), _handler(self))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {HOST}:{port} ({exc.strerror or exc}); choose another --port, "
                              "or leave it out for a free one") from None
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="rolebroker-serve", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.socket.getsockname()[:2]
        return str(host), int(port)

    def uri(self, role: str) -> str:
        return f"http://{HOST}:{self.address[1]}{ROLE_PATH}{role}"

    def start(self) -> CredentialServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> CredentialServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def authorized(self, header: str | None) -> bool:
        import hmac

        return header is not None and hmac.compare_digest(header.encode("utf-8", "replace"),
                                                          self.token.encode("utf-8"))

    def answer(self, method: str, path: str, header: str | None, has_body: bool) -> tuple[int, dict[str, str]]:
        """The status and JSON document for one request."""
        if header is None:
            return 401, _error("Unauthorized", f"send the {AUTH_TOKEN_VARIABLE} that `rolebroker serve` printed as the "
                                               "Authorization header")
        if not self.authorized(header):
            return 403, _error("Forbidden", f"wrong authorization token; use the {AUTH_TOKEN_VARIABLE} of this run")
        if method != "GET":
            return 405, _error("MethodNotAllowed", "only GET /role/NAME")
        if has_body:
            return 413, _error("PayloadTooLarge", "a credentials request has no body")
        role = path[len(ROLE_PATH):] if path.startswith(ROLE_PATH) else None
        if role not in self.roles:
            served = ", ".join(ROLE_PATH + name for name in self.roles)
            return 404, _error("NotFound", f"this endpoint serves {served}")
        try:
            with self._lock:
                entry = self._fetch(role)
        except RoleBrokerError as exc:
            message = one_line(redact(str(exc)), 300)
            self._log(f"cannot refresh credentials for {role}: {message}")
            return 502, _error("RoleBrokerError", message)
        except Exception as exc:  # a request thread must answer, never die with a traceback
            message = one_line(redact(f"unexpected error ({type(exc).__name__}: {exc})"), 300)
            self._log(f"cannot refresh credentials for {role}: {message}")
            return 502, _error("RoleBrokerError", message)
        document = ecs_document(entry)
        if self._served.get(role) != document["AccessKeyId"]:
            self._served[role] = document["AccessKeyId"]
            self._log(f"serving new credentials for {role}, valid until {local_time(float(entry['expires_at']))}")
        return 200, document


def _error(code: str, message: str) -> dict[str, str]:
    return {"Code": code, "Message": message}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A server on 127.0.0.1 must not share its port with another program's socket.
    allow_reuse_address = False

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Bounded: a local program opening connections by the thousand gets them closed, not a thread each.
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that hung up mid-answer; nothing to report, and no traceback on the terminal


def _handler(owner: CredentialServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_SECONDS
        server_version = "rolebroker"
        sys_version = ""

        def _serve(self) -> None:
            if len(self.path) > MAX_PATH_CHARS:
                self._send(414, _error("URITooLong", "the path is too long"))
                return
            has_body = bool(self.headers.get("Transfer-Encoding")) or self.headers.get("Content-Length") not in (
                None, "0")
            status, document = owner.answer(self.command, self.path, self.headers.get("Authorization"), has_body)
            self._send(status, document)

        def _send(self, status: int, document: Mapping[str, str]) -> None:
            body = json.dumps(document).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:  # other methods get http.server's own 501
            self._serve()

        def log_message(self, format: str, *args: Any) -> None:
            return  # the request line is harmless, but the terminal belongs to the user and their command

    return Handler


# --------------------------------------------------------------------------
# The command


def cmd_serve(ctx: Context) -> int:
    import secrets

    from rolebroker.commands import Context, credentials_for

    roles = list(dict.fromkeys(ctx.opts.roles or []))
    if not roles:
        raise UsageError("serve needs --role NAME (repeatable)")
    if ctx.opts.argv == []:
        raise UsageError("serve needs a command after `--`, e.g. rolebroker serve --role NAME -- terraform apply")
    opts, settings, rt = ctx.opts, ctx.settings, ctx.rt

    def fetch(role: str) -> Mapping[str, Any]:
        # A new context each time, as each credential-process run has: a
        # token_command runs again, a sign-in is refreshed when due.
        return credentials_for(Context(opts, settings, rt), role, opts.duration)

    # Fetched once before anything is printed: a role you cannot use, or a
    # missing sign-in, is one line now rather than a failure inside the command later.
    first = {role: fetch(role) for role in roles}
    region = next((entry.get("region") for entry in first.values() if entry.get("region")), None)
    server = CredentialServer(fetch, roles, token=secrets.token_urlsafe(32), port=opts.port or 0,
                              log=ctx.warn)
    _warn_if_shadowed(ctx)
    with server:
        variables = [(FULL_URI_VARIABLE, server.uri(roles[0])), (AUTH_TOKEN_VARIABLE, server.token)]
        if region:
            variables += [("AWS_REGION", region), ("AWS_DEFAULT_REGION", region)]
        variables += _no_proxy(settings.environ)
        if opts.argv:
            return run_command(opts.argv, child_environment(settings.environ, variables))
        return _serve_until_interrupted(ctx, server, variables)


def child_environment(environ: Mapping[str, str], variables: Sequence[tuple[str, str]]) -> dict[str, str]:
    hidden = {*SHADOWING_VARIABLES, *CLIENT_VARIABLES}
    env = {name: value for name, value in environ.items() if name not in hidden}
    env.update(variables)
    return env


def _no_proxy(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """With a proxy configured, the SDKs would send the credentials request to it unless told otherwise."""
    if not any(environ.get(name) for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy")):
        return []
    current = environ.get("NO_PROXY") or environ.get("no_proxy") or ""
    value = ",".join(part for part in (current, HOST) if part)
    return [("NO_PROXY", value), ("no_proxy", value)]


def run_command(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Run the command to its end (the server stays up meanwhile); its exit status, like a shell's."""
    import subprocess

    try:
        process = subprocess.Popen(list(argv), env=dict(env))
    except FileNotFoundError:
        raise CommandNotRunnable(f"command not found: {argv[0]}", 127) from None
    except OSError as exc:
        raise CommandNotRunnable(f"cannot run {argv[0]}: {exc.strerror or exc}", 126) from None
    while True:
        try:
            code = process.wait()
            break
        except KeyboardInterrupt:
            continue  # Ctrl-C reached the command too; its exit decides ours
    return 128 - code if code < 0 else code


def _serve_until_interrupted(ctx: Context, server: CredentialServer, variables: Sequence[tuple[str, str]]) -> int:
    import shlex

    ctx.out(f"unset {' '.join(SHADOWING_VARIABLES)}\n")
    ctx.out("".join(f"export {name}={shlex.quote(value)}\n" for name, value in variables))
    ctx.rt.stdout.flush()
    roles = server.roles
    also = "".join(f"; {role} at {server.uri(role)}" for role in roles[1:])
    ctx.warn(f"serving {roles[0]} at {server.uri(roles[0])}{also}; run the lines above in the shell that needs "
             "the credentials; Ctrl-C stops")
    ctx.rt.stderr.flush()
    try:
        while True:
            time.sleep(3600)  # the server runs on its own thread; this one waits for Ctrl-C
    except KeyboardInterrupt:
        ctx.warn("stopped")
    return 0


def _warn_if_shadowed(ctx: Context) -> None:
    """The SDKs use a default profile's own credentials before a container endpoint: say so now."""
    import configparser
    import os

    environ = ctx.settings.environ
    home = environ.get("HOME") or os.path.expanduser("~")
    credentials = environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(home, ".aws", "credentials")
    places = [(credentials, ("default",), "AWS_SHARED_CREDENTIALS_FILE"),
              (ctx.settings.aws_config_path, ("default", "profile default"), "AWS_CONFIG_FILE")]
    keys = {"aws_access_key_id", "credential_process", "role_arn", "sso_session", "sso_start_url",
            "web_identity_token_file"}
    for path, sections, variable in places:
        parser = configparser.RawConfigParser()
        try:
            parser.read(os.path.expanduser(path), encoding="utf-8")
        except (configparser.Error, UnicodeError):
            continue
        for section in sections:
            if parser.has_section(section) and keys & set(parser.options(section)):
                ctx.warn(f"[{section}] in {path} has credentials of its own, which the AWS SDKs use before this "
                         f"endpoint: move them to a named profile, or point {variable} elsewhere for the program")
                return
