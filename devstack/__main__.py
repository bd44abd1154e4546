"""``python -m devstack run | token | slack``: the local stack's commands."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .stack import PORTS_FILE, LocalStack, forget_cached_credentials, mint_via_running_issuer, stack_port


def _claim(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--claim takes k=v, got {text!r}")
    if value in {"true", "false"}:
        return key, value == "true"
    return key, value


def _duration(text: str) -> int:
    from chalicelib.chat.slack import parse_duration
    from chalicelib.exceptions import BadRequest

    try:
        return parse_duration(text)
    except BadRequest as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start the local stack in the foreground (what `make run` does)")
    token = sub.add_parser("token", help="print a JWT signed by a running dev issuer")
    token.add_argument("--issuer", choices=["people", "ci"], default="people",
                       help="people (default; the broker's default issuer) or ci (GitHub-Actions-shaped)")
    token.add_argument("--sub", help="subject; for people required (an email becomes the email claim too), "
                                     "for ci made from --claim repository=... and ref=... when left out")
    token.add_argument("--groups", action="append", default=[],
                       help="group(s), comma-separated or repeated")
    token.add_argument("--claim", action="append", type=_claim, default=[], metavar="K=V",
                       help="extra claim, e.g. repository=acme/infra")
    token.add_argument("--ttl", type=_duration, default=3600, help="lifetime: 90m, 1h, 2h30m or seconds "
                                                                   "(default 1h)")
    token.add_argument("--mfa", action="store_true", help="put mfa in the token's amr claim")
    slack = sub.add_parser("slack", help="send a signed Slack command or button click to the local broker")
    slack.add_argument("text", nargs="?", help="the slash command, e.g. '/aws roles'")
    slack.add_argument("--user", default="U0ALICE", help="Slack user id (U0ALICE, U0BOB, U0CAROL)")
    slack.add_argument("--click", choices=["approve", "deny"], help="click a button instead")
    slack.add_argument("--request", help="the access request id the button is for")
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ,
         ports_file: Path = PORTS_FILE) -> int:
    args = _parser().parse_args(argv)
    if args.command == "token":
        if args.issuer == "people" and not args.sub:
            print("devstack: token --issuer people needs --sub", file=sys.stderr)
            return 2
        groups = [g.strip() for item in args.groups for g in item.split(",") if g.strip()]
        port = stack_port("ci_issuer" if args.issuer == "ci" else "issuer", environ, ports_file)
        spec = {"sub": args.sub or "", "groups": groups or None, "claims": dict(args.claim), "ttl": args.ttl,
                "mfa": args.mfa}
        try:
            print(mint_via_running_issuer(port, spec))
        except OSError as exc:
            print(f"devstack: no dev issuer on 127.0.0.1:{port} ({exc}); start it with `make run`",
                  file=sys.stderr)
            return 1
        return 0
    if args.command == "slack":
        from .slack_cli import run as slack_run

        ports = {name: stack_port(name, environ, ports_file) for name in ("broker", "slack")}
        try:
            return slack_run(args.text, args.user, args.click, args.request, ports)
        except OSError as exc:
            print(f"devstack: the local stack is not answering on 127.0.0.1:{ports['broker']} ({exc}); "
                  "start it with `make run`", file=sys.stderr)
            return 1
    return run(environ)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(environ: Mapping[str, str] = os.environ) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    stack = LocalStack.from_environ(environ)
    try:
        stack.start()
    except (RuntimeError, OSError) as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 1
    # This stack's STS knows nothing of the last one's credentials, though its URL is the same.
    forgotten = forget_cached_credentials(stack.broker_url, environ)
    print(stack.banner(forgotten), flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping the local stack ...", file=sys.stderr)
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
