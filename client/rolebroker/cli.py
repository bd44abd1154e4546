"""The command line: parsing, dispatch, and the one place that reads argv and the environment.

``main(argv, environ, runtime)`` runs one command and returns its exit
status; everything below it receives settings and side effects as
parameters. Failures become one line on stderr, never a traceback: the AWS
SDKs show a credential_process's stderr to the user verbatim.
"""

from __future__ import annotations

import os
import sys

from rolebroker import __version__, console
from rolebroker._fast import DURATION_HELP, duration, parse_credential_process, positive_number, seconds
from rolebroker.commands import COMMANDS, Context, Options
from rolebroker.errors import RoleBrokerError, UsageError, redact
from rolebroker.settings import DEFAULT_TIMEOUT_SECONDS, Runtime, Settings
from rolebroker.text import one_line

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import IO, Any, NoReturn


class _Exit(Exception):
    """argparse finished on its own (``--help``, ``--version``)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def parse_fast(args: Sequence[str]) -> Options | None:
    """A plain ``credential-process`` command line parsed without argparse (see ``_fast``); None for anything else."""
    values = parse_credential_process(args)
    if values is None:
        return None
    opts = Options()
    for name, value in values.items():
        setattr(opts, name, value)
    opts.command = "credential-process"
    return opts


def port(text: str) -> int:
    """A TCP port number (argparse names it in its message: "invalid port value")."""
    value = seconds(text)
    if not 1 <= value <= 65535:
        raise ValueError(text)
    return value


def _duration(text: str) -> int:
    import argparse

    try:
        return duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"cannot read duration {text[:20]!r}: {DURATION_HELP}") from None


def _timeout(text: str) -> float:
    import argparse

    try:
        return positive_number(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a positive number of seconds, e.g. 20") from None


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
    common.add_argument("--timeout", type=_timeout, metavar="SECONDS", help=f"seconds to wait for the broker "
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
            duration_option(cmd)

    def duration_option(cmd: Any, text: str = "session length", required: bool = False) -> None:
        cmd.add_argument("--duration", type=_duration, metavar="DURATION", required=required,
                         help=f"{text}: 90m, 1h, 2h30m or seconds (3600)")

    def role_arg(cmd: Any) -> None:
        """ROLE, or --role ROLE as before."""
        cmd.add_argument("role_arg", nargs="?", metavar="ROLE", help="the role's name, as `rolebroker roles` "
                         "lists it")
        cmd.add_argument("--role", help="the same, as an option")

    def output_option(cmd: Any) -> None:
        cmd.add_argument("--output", choices=("text", "json"), metavar="text|json",
                         help="text for people (the default) or one JSON document")

    def request_id(cmd: Any) -> None:
        cmd.add_argument("request_id", metavar="ID", help="the request's id, as `rolebroker requests` lists it")

    def scope_option(cmd: Any) -> None:
        cmd.add_argument("--scope", metavar="NAME", help="one of the role's scopes: the session can do only what "
                         "both the role and the scope allow (under a grant for a scope, that scope applies anyway)")

    cmd = command("credential-process", "print credentials for an AWS credential_process (JSON on stdout)")
    role_option(cmd)
    scope_option(cmd)
    cmd.add_argument("--no-cache", action="store_true", help="neither read nor write the credential cache")
    output_option(command("roles", "list the roles you may use or request"))
    output_option(command("whoami", "who the broker takes you for, your sign-in and your cached credentials"))
    cmd = command("configure", "write [profile ROLE] sections into ~/.aws/config (or AWS_CONFIG_FILE)")
    cmd.add_argument("--role", dest="roles", action="append", metavar="NAME", help="only this role (repeatable)")
    cmd.add_argument("--all", action="store_true", help="every role the broker offers (the default)")
    cmd.add_argument("--force", action="store_true", help="also replace same-named sections written by hand")
    cmd = command("env", "print shell `export` lines with credentials for a role")
    role_arg(cmd)
    duration_option(cmd)
    scope_option(cmd)
    cmd = command("exec", "run a command with a role's credentials: exec ROLE -- CMD [ARGS...]")
    role_arg(cmd)
    duration_option(cmd)
    scope_option(cmd)
    console.add_arguments(command("console", "open an AWS console sign-in link for a role (or --print it): "
                                             "console ROLE [--service s3] [--region R] [--destination PATH]"))
    cmd = command("serve", "serve a role's credentials on 127.0.0.1 to long-running programs, as ECS does: "
                           "serve --role NAME [-- CMD ...]")
    cmd.add_argument("--role", dest="roles", action="append", required=True, metavar="NAME",
                     help="serve this role at /role/NAME (repeatable; the variables point at the first)")
    duration_option(cmd)
    cmd.add_argument("--port", type=port, help="listen on this port of 127.0.0.1 (default: a free one)")
    cmd = command("request", "ask for time-bound access to a role that needs approval (or to several roles "
                  "that share an approval, with one decision): request ROLE [ROLE ...] --reason TEXT")
    cmd.add_argument("role_args", nargs="*", metavar="ROLE", help="the role's name, as `rolebroker roles` lists "
                     "it; several for one decision (e.g. the same role in ten accounts)")
    cmd.add_argument("--role", dest="roles", action="append", metavar="NAME", help="the same, as an option "
                     "(repeatable)")
    cmd.add_argument("--reason", required=True, help="why you need it (approvers see this)")
    duration_option(cmd, "how long the grant lasts (default: the longest the role's policy grants)")
    cmd.add_argument("--ticket", help="the incident or change id, e.g. INC-1234 (some roles require one)")
    scope_option(cmd)
    cmd.add_argument("--start", metavar="ISO-TIME", help="start later, e.g. 2030-03-01T09:00:00+01:00: the "
                     "duration counts from then (or from the approval, if later)")
    cmd = command("requests", "list your access requests and those you may approve, review or watch")
    cmd.add_argument("--kind", choices=["access", "break_glass", "extension"],
                     help="only these (break_glass: break-glasses waiting for a review first)")
    output_option(cmd)
    cmd = command("show", "one access request: who asked, who decided, when, the note, the history")
    request_id(cmd)
    output_option(cmd)
    cmd = command("approve", "approve an access request (it may need several approvers, stage by stage)")
    request_id(cmd)
    cmd.add_argument("--role", dest="grant", action="append", metavar="NAME",
                     help="grant only this role of a request for several (repeatable); without it, all of them")
    cmd = command("deny", "deny an access request")
    request_id(cmd)
    cmd.add_argument("--reason", help="tell the requester why")
    request_id(command("cancel", "withdraw your own pending access request"))
    cmd = command("revoke", "end an approved grant early (its requester, or an admin)")
    request_id(cmd)
    cmd.add_argument("--reason", help="say why (the requester and the audit log see it)")
    cmd = command("break-glass", "emergency access now, without an approver: with a reason and a ticket; "
                  "security is told at once and an approver reviews it afterwards: break-glass ROLE --reason TEXT "
                  "--ticket ID")
    role_arg(cmd)
    cmd.add_argument("--reason", required=True, help="what is on fire (approvers and security see this)")
    cmd.add_argument("--ticket", required=True, help="the incident id, e.g. INC-1234")
    duration_option(cmd, "how long (default and most: the role's break-glass limit)")
    cmd = command("review", "review someone's break-glass access (an approver of its role)")
    request_id(cmd)
    cmd.add_argument("--reason", help="what you checked")
    cmd = command("extend", "more time on your approved access: at once within the role's limit, else approvers "
                  "are asked")
    request_id(cmd)
    duration_option(cmd, "how much more", required=True)
    cmd.add_argument("--reason", required=True, help="why (approvers may see this)")
    cmd = command("evidence", "a request's sessions and ready-to-run CloudTrail queries for what they did")
    request_id(cmd)
    output_option(cmd)
    cmd = command("who-can", "who can use a role, rule by rule (the policy's admins and auditors)")
    cmd.add_argument("role_arg", metavar="ROLE", help="the role's name")
    output_option(cmd)
    cmd = command("what-can", "what you (or, for admins and auditors, someone else) can use, and how")
    cmd.add_argument("identity", nargs="?", metavar="IDENTITY", help="whom to ask about (default: you)")
    cmd.add_argument("--groups", metavar="G1,G2", help="with these groups (admins and auditors)")
    output_option(cmd)
    cmd = command("login", "sign in with your identity provider (opens a browser; --device: with a code, from "
                           "another device)")
    cmd.add_argument("--issuer", help="OIDC issuer (else the config file, else the broker's client-config)")
    cmd.add_argument("--client-id", help="OIDC client id (likewise)")
    how = cmd.add_mutually_exclusive_group()
    how.add_argument("--no-browser", action="store_true",
                     help="only print the sign-in address (open it in a browser on this machine)")
    how.add_argument("--device", action="store_true",
                     help="no browser here: show a code to enter at the identity provider on any device (RFC 8628)")
    cmd = command("logout", "forget the stored sign-in and cached credentials")
    cmd.add_argument("--all", action="store_true", help="sign out of every identity provider")
    cmd = command("cache", "manage the credential cache")
    actions = cmd.add_subparsers(dest="cache_action", metavar="ACTION", required=True)
    actions.add_parser("clear", help="delete every cached credential")
    cmd = command("completion", "print a shell completion script: completion bash|zsh|fish")
    cmd.add_argument("shell", nargs="?", choices=("bash", "zsh", "fish"), metavar="bash|zsh|fish")
    cmd.add_argument("--list-roles", action="store_true", help=argparse.SUPPRESS)  # what the scripts call
    return parser


def _merge_role(opts: Options) -> None:
    """ROLE and --role are the same; given both, they must agree."""
    positional = opts.role_arg
    if positional and opts.role and positional != opts.role:
        raise UsageError(f"{opts.command} got two roles, {positional!r} and --role {opts.role!r}; give one")
    opts.role = opts.role or positional


def parse_arguments(args: Sequence[str], stdout: IO[str], stderr: IO[str]) -> Options:
    fast = parse_fast(args)
    if fast is not None:
        return fast
    head, tail = list(args), None
    if "--" in args:
        split = args.index("--")
        head, tail = list(args[:split]), list(args[split + 1:])
    opts = Options()
    parser = build_parser(stdout, stderr)
    _, extra = parser.parse_known_args(head, namespace=opts)
    if opts.command == "exec" and tail is None:
        # Without `--`, the command's first word may have been taken for ROLE.
        words = [opts.role_arg, *extra] if opts.role and opts.role_arg else extra
        role = opts.role or opts.role_arg or "ROLE"
        shown = one_line(" ".join(words), 200) if words else "CMD ..."
        raise UsageError(f"exec runs the command given after `--`: rolebroker exec {role} -- {shown}")
    _merge_role(opts)
    if extra:
        raise UsageError(f"{opts.command} does not take {one_line(' '.join(extra), 80)} "
                         f"(see `rolebroker {opts.command} --help`)")
    if opts.command == "exec":
        if not tail:
            raise UsageError("exec needs a command after `--`, e.g. rolebroker exec ROLE -- aws s3 ls")
        opts.argv = tail
    elif opts.command == "serve":
        opts.argv = tail  # None: print the variables and serve until Ctrl-C
    elif tail:
        raise UsageError(f"unexpected arguments after `--` (see `rolebroker {opts.command} --help`)")
    return opts


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None,
         runtime: Runtime | None = None) -> int:
    """Run one command; the exit status. With ``_fast.main``, the only reader of argv and the environment."""
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
        rt.stderr.write(f"rolebroker: {one_line(redact(message), 500)}\n")
        rt.stderr.flush()
    except (OSError, ValueError):
        pass
    return code
