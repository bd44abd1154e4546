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

from rolebroker._fast import identity_of, jwt_claims
from rolebroker.broker import BrokerClient
from rolebroker.cache import BrokerCredentialFetcher, CredentialCache
from rolebroker.errors import CommandNotRunnable, RoleBrokerError, UsageError, redact
from rolebroker.login import login
from rolebroker.profiles import (
    apply_profiles,
    client_command,
    managed_profiles,
    read_text,
    render_profile,
    verify_profiles,
    write_aws_config,
)
from rolebroker.text import human_duration, local_time, one_line, parse_timestamp, table
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
    """A cache entry for ``role`` (and ``--scope``): from the cache when fresh, else from the broker."""
    url = ctx.settings.require_url()
    source = ctx.token_source()
    rt = ctx.rt
    scope = ctx.opts.scope
    cache = CredentialCache(ctx.settings.cache_dir, getuid=rt.getuid) if use_cache else None
    key = CredentialCache.key(url, identity_of(source.peek()), role, duration, scope)
    fetcher = BrokerCredentialFetcher(ctx.client, role, duration, scope, cache=cache, cache_key=key, clock=rt.clock,
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
            return f"granted until {local_time(parse_timestamp(access.split(':', 1)[1]))}"
        except ValueError:
            pass
    return one_line(access, 80)


def cmd_roles(ctx: Context) -> int:
    roles = ctx.client().roles()
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


def cmd_console(ctx: Context) -> int:
    doc = ctx.client().console(ctx.role())
    url = str(doc["url"])
    ctx.out(url + "\n")
    if ctx.opts.open and not ctx.rt.open_browser(url):
        ctx.warn("could not open a browser; open the address above yourself")
    return 0


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


def cmd_request(ctx: Context) -> int:
    if not ctx.opts.reason or not ctx.opts.reason.strip():
        raise UsageError("request needs --reason TEXT: approvers see it")
    roles = ctx.opts.roles or ([ctx.role()] if ctx.opts.role else [])
    if not roles:
        raise UsageError("request needs --role NAME (repeat it for several roles with one approval)")
    doc = ctx.client().create_request(roles if len(roles) > 1 else roles[0], ctx.opts.duration, ctx.opts.reason,
                                      ticket=ctx.opts.ticket, scope=ctx.opts.scope, start_at=ctx.opts.start)
    shown = [one_line(str(doc.get("id", "?")), 80), _roles_text(doc, roles), one_line(str(doc.get("status", "?")), 40)]
    ctx.out("request {} for {}: {}\n".format(*shown) + _progress_text(doc))
    return 0


def _roles_text(doc: Mapping[str, Any], asked: list[str] | None = None) -> str:
    roles = doc.get("roles")
    if isinstance(roles, list) and roles:
        names = [str(r) for r in roles]
    elif "role" in doc:
        names = [str(doc["role"])]
    else:
        names = asked or ["?"]
    return one_line(", ".join(names), 200)


def _progress_text(doc: Mapping[str, Any]) -> str:
    """How far a pending request has come, on a line of its own (nothing when it is not pending)."""
    progress = doc.get("progress")
    if not isinstance(progress, dict):
        return ""
    try:
        return "  waiting for {} of {} approvals in stage {} of {} ({})\n".format(
            int(progress["approvals"]), int(progress["required"]), int(progress["stage"]),
            int(progress["stages"]), one_line(str(progress["stage_name"]), 40))
    except (KeyError, TypeError, ValueError):
        return ""


def cmd_break_glass(ctx: Context) -> int:
    if not ctx.opts.reason or not ctx.opts.reason.strip():
        raise UsageError("break-glass needs --reason TEXT: approvers and security see it")
    if not ctx.opts.ticket:
        raise UsageError("break-glass needs --ticket ID: the incident or change it is for")
    role = ctx.role()
    doc = ctx.client().break_glass(role, ctx.opts.reason, ctx.opts.ticket, ctx.opts.duration)
    until = _time_text(doc.get("grant_until"))
    ctx.out(f"break-glass {one_line(str(doc.get('id', '?')), 40)} for {one_line(role, 80)}: "
            f"{one_line(str(doc.get('status', '?')), 40)} until {until}\n")
    ctx.warn("security and the role's approvers have been told; an approver will review this access. "
             f"Credentials: rolebroker credential-process --role {one_line(role, 80)}")
    return 0


def cmd_review(ctx: Context) -> int:
    request_id = ctx.opts.request_id or ""
    doc = ctx.client().decide(request_id, "review", ctx.opts.reason)
    value = doc.get("review")
    review = value if isinstance(value, dict) else {}
    ctx.out(f"break-glass {one_line(request_id, 40)} ({one_line(str(doc.get('role', '?')), 80)} for "
            f"{one_line(str(doc.get('requester', '?')), 80)}): review {one_line(str(review.get('status', '?')), 20)}\n")
    return 0


def cmd_extend(ctx: Context) -> int:
    if not ctx.opts.reason or not ctx.opts.reason.strip():
        raise UsageError("extend needs --reason TEXT")
    if not ctx.opts.duration:
        raise UsageError("extend needs --duration (e.g. 1h, 30m or 3600)")
    request_id = ctx.opts.request_id or ""
    doc, done = ctx.client().extend(request_id, ctx.opts.duration, ctx.opts.reason)
    if done:
        ctx.out(f"request {one_line(request_id, 40)} ({_roles_text(doc)}): extended until "
                f"{_time_text(doc.get('grant_until'))}\n")
    else:
        ctx.out(f"extension request {one_line(str(doc.get('id', '?')), 40)} for {_roles_text(doc)}: "
                f"{one_line(str(doc.get('status', '?')), 40)} (beyond what the role extends without an approver: "
                "approvers were asked)\n" + _progress_text(doc))
    return 0


def _time_text(value: object) -> str:
    if isinstance(value, str):
        try:
            return local_time(parse_timestamp(value))
        except ValueError:
            return one_line(value, 40)
    return "-"


def cmd_requests(ctx: Context) -> int:
    items, more = ctx.client().requests(kind=ctx.opts.kind)
    if more:
        ctx.warn(f"showing the first {len(items)} requests; the broker has more")
    if not items:
        ctx.warn("no access requests")
        return 0
    rows = []
    for item in items:
        created = item.get("created_at")
        try:
            created_text = local_time(parse_timestamp(created)) if isinstance(created, str) else "-"
        except ValueError:
            created_text = one_line(str(created), 40)
        rows.append([one_line(str(item.get("id", "-")), 60), _status_text(item), _roles_text(item),
                     one_line(str(item.get("requester", "-")), 60), human_duration(item.get("duration_seconds")),
                     created_text, one_line(str(item.get("reason", "")), 80)])
    ctx.out(table(["ID", "STATUS", "ROLE", "REQUESTER", "DURATION", "CREATED", "REASON"], rows))
    return 0


def _status_text(item: Mapping[str, Any]) -> str:
    """The status, with what kind of request it is and how far an approval has come."""
    status = one_line(str(item.get("status", "-")), 40)
    kind = item.get("kind")
    if kind == "break_glass":
        value = item.get("review")
        review = value if isinstance(value, dict) else {}
        return f"{status} (break-glass, review {one_line(str(review.get('status', '?')), 20)})"
    if kind == "extension":
        status += " (extension)"
    progress = item.get("progress")
    if isinstance(progress, dict):
        try:
            status += f" {int(progress['approvals'])}/{int(progress['required'])}"
            if int(progress["stages"]) > 1:
                status += f" stage {int(progress['stage'])}/{int(progress['stages'])}"
        except (KeyError, TypeError, ValueError):
            pass
    return status


def _cmd_decide(ctx: Context, verdict: str) -> int:
    request_id = ctx.opts.request_id or ""
    doc = ctx.client().decide(request_id, verdict, ctx.opts.reason if verdict == "deny" else None,
                              roles=ctx.opts.grant if verdict == "approve" else None)
    who = one_line(str(doc.get("requester", "?")), 80)
    role = _roles_text(doc)
    ctx.out(f"request {request_id} ({role} for {who}): {one_line(str(doc.get('status', verdict)), 40)}\n"
            + _progress_text(doc))
    return 0


def cmd_approve(ctx: Context) -> int:
    return _cmd_decide(ctx, "approve")


def cmd_deny(ctx: Context) -> int:
    return _cmd_decide(ctx, "deny")


def cmd_login(ctx: Context) -> int:
    url = ctx.settings.url
    if not url:
        raise UsageError("login needs the broker URL the sign-in is for: pass --url or set ROLEBROKER_URL")
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
    "request": cmd_request,
    "requests": cmd_requests,
    "break-glass": cmd_break_glass,
    "review": cmd_review,
    "extend": cmd_extend,
    "approve": cmd_approve,
    "deny": cmd_deny,
    "login": cmd_login,
    "logout": cmd_logout,
    "cache": cmd_cache,
}

