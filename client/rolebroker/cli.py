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
