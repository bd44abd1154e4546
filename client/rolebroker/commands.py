"""The subcommands: each takes a ``Context`` (options, settings, side effects) and returns the exit status.

stdout carries only what a command produces (one JSON document for
``credential-process``); everything for the person goes to stderr. Every
string that came from the broker is made safe for the terminal before it is
shown.
"""

from __future__ import annotations

import json
import os
import sys

from rolebroker import completion, inquiry, jit
from rolebroker._fast import identity_of, jwt_claims
from rolebroker.broker import BrokerClient
from rolebroker.cache import BrokerCredentialFetcher, CredentialCache
from rolebroker.console import cmd_console
from rolebroker.errors import CommandNotRunnable, RoleBrokerError, UsageError, redact
from rolebroker.login import device_login, login
from rolebroker.profiles import (
    apply_profiles,
    client_command,
    managed_profiles,
    read_text,
    render_profile,
    verify_profiles,
    write_aws_config,
)
from rolebroker.text import local_time, one_line, parse_timestamp, table
from rolebroker.tokens import LoginStore, bearer, resolve_token_source

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from rolebroker.settings import Runtime, Settings
    from rolebroker.tokens import TokenSource


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
    ticket: str | None = None
    scope: str | None = None
    start: str | None = None
    kind: str | None = None
    grant: list[str] | None = None
    argv: list[str] | None = None
    cache_action: str | None = None
    issuer: str | None = None
    client_id: str | None = None
    no_browser: bool = False
    role_arg: str | None = None
    role_args: list[str] | None = None
    service: str | None = None
    region: str | None = None
    destination: str | None = None
    print_only: bool = False
    port: int | None = None
    device: bool = False
    output: str | None = None
    identity: str | None = None
    groups: str | None = None
    shell: str | None = None
    list_roles: bool = False

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

    @property
    def json_output(self) -> bool:
        return self.opts.output == "json"

    def out_json(self, doc: object) -> None:
        """One JSON document on stdout: ASCII only, so nothing in it can act on a terminal."""
        self.out(json.dumps(doc, indent=2) + "\n")

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
            raise UsageError(f"{self.opts.command} needs a role: rolebroker {self.opts.command} ROLE "
                             "(`rolebroker roles` lists them)")
        return self.opts.role


def credentials_for(ctx: Context, role: str, duration: int | None, *, use_cache: bool = True) -> dict[str, Any]:
    """A cache entry for ``role`` (and ``--scope``): from the cache when fresh, else from the broker."""
    url = ctx.settings.require_url()
    source = ctx.token_source()
    rt = ctx.rt
    scope = ctx.opts.scope
    cache = CredentialCache(ctx.settings.cache_dir, getuid=rt.getuid) if use_cache else None
    key = CredentialCache.key(url, identity_of(source.peek()), role, duration, scope)
    # The broker's warnings (a shorter session than asked, ...) go to stderr,
    # never into credential_process's stdout; a cache hit has none to repeat.
    fetcher = BrokerCredentialFetcher(ctx.client, role, duration, scope, cache=cache, cache_key=key, clock=rt.clock,
                                      sleep=rt.sleep, lock_timeout=rt.lock_timeout, warn=ctx.warn)
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
            return f"granted until {local_time(parse_timestamp(access.split(':', 1)[1]))}"
        except ValueError:
            pass
    return one_line(access, 80)


def cmd_roles(ctx: Context) -> int:
    roles = ctx.client().roles()
    if ctx.json_output:
        ctx.out_json({"roles": roles})
        return 0
    if not roles:
        ctx.warn("the broker offers you no roles")
        return 0
    rows = [[one_line(str(role.get(key, "-")), 80) for key in ("name", "account_id", "region")]
            + [_access_text(role.get("access"))] for role in roles]
    ctx.out(table(["ROLE", "ACCOUNT", "REGION", "ACCESS"], rows))
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


def cmd_serve(ctx: Context) -> int:
    from rolebroker.serve import cmd_serve as serve  # http.server only for the command that needs it

    return serve(ctx)


def runnable_path() -> str:
    """What ``python <path>`` runs as this client: the ``.pyz`` this code came from, else the package directory."""
    package = os.path.dirname(os.path.abspath(__file__))
    archive = os.path.dirname(package)
    return archive if os.path.isfile(archive) else package


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
    command = client_command(ctx.rt.which or shutil.which, ctx.rt.executable, runnable_path())
    windows = sys.platform == "win32"
    rendered = [(spec.name, render_profile(spec, command, url, windows=windows)) for spec in specs]
    path = os.path.realpath(ctx.settings.aws_config_path)
    original = read_text(path)
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


def cmd_login(ctx: Context) -> int:
    url = ctx.settings.url
    if not url:
        raise UsageError("login needs the broker URL the sign-in is for: pass --url or set ROLEBROKER_URL")
    if ctx.opts.device:
        issuer, entry = device_login(ctx.settings, ctx.rt, issuer=ctx.opts.issuer, client_id=ctx.opts.client_id)
    else:
        issuer, entry = login(ctx.settings, ctx.rt, issuer=ctx.opts.issuer, client_id=ctx.opts.client_id,
                              no_browser=ctx.opts.no_browser)
    store = LoginStore(ctx.settings.tokens_path, getuid=ctx.rt.getuid)
    with store.lock(ctx.rt):
        data = store.load()
        data["issuers"][issuer] = entry
        data["brokers"][url] = issuer
        store.save(data)
    claims = jwt_claims(bearer(entry) or "") or {}
    who = claims.get("email") or claims.get("preferred_username") or claims.get("sub") or "you"
    ctx.out(f"signed in as {one_line(str(who), 80)} at {one_line(issuer, 200)}\n")
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
        ctx.out(f"signed out of {one_line(', '.join(signed_out), 300)}; removed {removed} cached credential(s)\n")
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
    "serve": cmd_serve,
    "whoami": inquiry.cmd_whoami,
    "who-can": inquiry.cmd_who_can,
    "what-can": inquiry.cmd_what_can,
    "request": jit.cmd_request,
    "requests": jit.cmd_requests,
    "show": jit.cmd_show,
    "approve": jit.cmd_approve,
    "deny": jit.cmd_deny,
    "cancel": jit.cmd_cancel,
    "revoke": jit.cmd_revoke,
    "break-glass": jit.cmd_break_glass,
    "review": jit.cmd_review,
    "extend": jit.cmd_extend,
    "evidence": jit.cmd_evidence,
    "login": cmd_login,
    "logout": cmd_logout,
    "cache": cmd_cache,
    "completion": completion.cmd_completion,
}

