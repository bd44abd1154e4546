"""The command line: parsing, dispatch, and the one place that reads argv and the environment.

``main(argv, environ, runtime)`` runs one command and returns its exit
status; everything below it receives settings and side effects as
parameters. Failures become one line on stderr, never a traceback: the AWS
SDKs show a credential_process's stderr to the user verbatim.
"""

from __future__ import annotations

import os
import sys

from rolebroker import __version__
from rolebroker._fast import parse_credential_process, positive_number, seconds
from rolebroker.commands import COMMANDS, Context, Options
from rolebroker.errors import RoleBrokerError, UsageError, redact
from rolebroker.settings import DEFAULT_TIMEOUT_SECONDS, Runtime, Settings
from rolebroker.text import duration_seconds, one_line

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

    def scope_option(cmd: Any) -> None:
        cmd.add_argument("--scope", metavar="NAME", help="one of the role's scopes: the session can do only what "
                         "both the role and the scope allow (under a grant for a scope, that scope applies anyway)")

    def human_duration(text: str) -> int:
        try:
            return duration_seconds(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a duration: use e.g. 1h, 30m, 1h30m or 3600") \
                from None

    cmd = command("credential-process", "print credentials for an AWS credential_process (JSON on stdout)")
    role_option(cmd)
    scope_option(cmd)
    cmd.add_argument("--no-cache", action="store_true", help="neither read nor write the credential cache")
    command("roles", "list the roles you may use or request")
    cmd = command("configure", "write [profile ROLE] sections into ~/.aws/config (or AWS_CONFIG_FILE)")
    cmd.add_argument("--role", dest="roles", action="append", metavar="NAME", help="only this role (repeatable)")
    cmd.add_argument("--all", action="store_true", help="every role the broker offers (the default)")
    cmd.add_argument("--force", action="store_true", help="also replace same-named sections written by hand")
    cmd = command("env", "print shell `export` lines with credentials for a role")
    role_option(cmd)
    scope_option(cmd)
    cmd = command("exec", "run a command with a role's credentials: exec --role NAME -- CMD [ARGS...]")
    role_option(cmd)
    scope_option(cmd)
    cmd = command("console", "print an AWS console sign-in link for a role")
    role_option(cmd, with_duration=False)
    cmd.add_argument("--open", action="store_true", help="also open it in the browser")
    cmd = command("request", "ask for time-bound access to a role that needs approval (or to several roles "
                  "that share an approval, with one decision)")
    cmd.add_argument("--role", dest="roles", action="append", required=True, metavar="NAME",
                     help="the role's name; repeat it for several roles (e.g. the same role in ten accounts)")
    cmd.add_argument("--duration", type=human_duration, help="how long, e.g. 2h, 30m or 7200 (default: the role's)")
    cmd.add_argument("--reason", required=True, help="why you need it (approvers see this)")
    cmd.add_argument("--ticket", help="the incident or change id, e.g. INC-1234 (some roles require one)")
    scope_option(cmd)
    cmd.add_argument("--start", metavar="ISO-TIME", help="start later, e.g. 2030-03-01T09:00:00+01:00: the "
                     "duration counts from then (or from the approval, if later)")
    cmd = command("requests", "list your access requests and those you may approve, review or watch")
    cmd.add_argument("--kind", choices=["access", "break_glass", "extension"],
                     help="only these (break_glass: break-glasses waiting for a review first)")
    cmd = command("approve", "approve an access request (it may need several approvers, stage by stage)")
    cmd.add_argument("request_id", metavar="ID")
    cmd.add_argument("--role", dest="grant", action="append", metavar="NAME",
                     help="grant only this role of a request for several (repeatable); without it, all of them")
    cmd = command("deny", "deny an access request")
    cmd.add_argument("request_id", metavar="ID")
    cmd.add_argument("--reason", help="tell the requester why")
    cmd = command("break-glass", "emergency access now, without an approver: with a reason and a ticket; "
                  "security is told at once and an approver reviews it afterwards")
    cmd.add_argument("role", metavar="ROLE", help="the role's name")
    cmd.add_argument("--reason", required=True, help="what is on fire (approvers and security see this)")
    cmd.add_argument("--ticket", required=True, help="the incident id, e.g. INC-1234")
    cmd.add_argument("--duration", type=human_duration, help="how long, e.g. 30m (default and most: the role's "
                     "break-glass limit)")
    cmd = command("review", "review someone's break-glass access (an approver of its role)")
    cmd.add_argument("request_id", metavar="ID")
    cmd.add_argument("--reason", help="what you checked")
    cmd = command("extend", "more time on your approved access: at once within the role's limit, else approvers "
                  "are asked")
    cmd.add_argument("request_id", metavar="ID")
    cmd.add_argument("--duration", type=human_duration, required=True, help="how much more, e.g. 1h or 30m")
    cmd.add_argument("--reason", required=True, help="why (approvers may see this)")
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
