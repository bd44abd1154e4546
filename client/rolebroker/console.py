"""``rolebroker console ROLE``: an AWS console sign-in link, opened in the browser or printed.

The broker builds the link (the partition's sign-in endpoint, the landing
page on its console) and refuses a destination off the console; the client
only checks that the link is https (or the local stack's http) and plain
printable ASCII before a browser or terminal sees it. The link is a
credential until it expires, so the expiry is said every time.
"""

from __future__ import annotations

from rolebroker.errors import UsageError
from rolebroker.text import local_time, one_line, parse_timestamp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from rolebroker.commands import Context


def add_arguments(cmd: Any) -> None:
    """The console subcommand's options (the parser itself is ``cli``'s)."""
    cmd.add_argument("role_arg", nargs="?", metavar="ROLE", help="the role's name, as `rolebroker roles` lists it")
    cmd.add_argument("--role", help="the same as ROLE")
    cmd.add_argument("--service", help="land on this service's page, e.g. s3, ec2, cloudwatch")
    cmd.add_argument("--region", help="in this region (default: the role's account's region)")
    cmd.add_argument("--destination", metavar="PATH",
                     help="land on this console path instead, e.g. '/s3/buckets/logs?region=eu-west-1'")
    cmd.add_argument("--print", dest="print_only", action="store_true",
                     help="print the link instead of opening a browser")
    cmd.add_argument("--open", action="store_true", help="open the link in a browser (the default)")


def console_role(ctx: Context) -> str:
    opts = ctx.opts
    if opts.role_arg and opts.role and opts.role_arg != opts.role:
        raise UsageError(f"console got two roles ({opts.role_arg} and --role {opts.role}); name one")
    role = opts.role_arg or opts.role
    if not role:
        raise UsageError("console needs a role: rolebroker console ROLE [--service s3] (see `rolebroker roles`)")
    if opts.print_only and opts.open:
        raise UsageError("console takes --print or --open, not both")
    return role


def _until(doc: dict[str, Any]) -> str:
    expires = doc.get("expires_at")
    try:
        return local_time(parse_timestamp(expires)) if isinstance(expires, str) else "it expires"
    except ValueError:
        return one_line(str(expires), 40)


def cmd_console(ctx: Context) -> int:
    role = console_role(ctx)
    opts = ctx.opts
    doc = ctx.client().console(role, service=opts.service, region=opts.region, destination=opts.destination)
    url = str(doc["url"])
    until = _until(doc)
    if opts.print_only:
        ctx.out(url + "\n")
        ctx.warn(f"this link signs you in as {role} until {until}; treat it like a password")
        return 0
    if _opened(ctx, url):
        ctx.warn(f"opened the AWS console as {role} in your browser (the link works until {until})")
        return 0
    ctx.out(url + "\n")
    ctx.warn(f"could not open a browser; open the link above yourself (it signs you in as {role} until {until}; "
             "treat it like a password)")
    return 0


def _opened(ctx: Context, url: str) -> bool:
    try:
        return bool(ctx.rt.open_browser(url))
    except Exception:  # webbrowser can fail in many ways on a machine without one; the link is printed instead
        return False
