"""How long a revocation takes to bite in AWS: poll with a canary session until it is denied.

IAM is eventually consistent: a new version of the revocations boundary is
enforced everywhere only after a while (usually seconds). An operator
measures it, and checks the kill switch end to end, with a canary:

1. a dedicated canary identity the policy grants one read-only role gets
   credentials (``rolebroker env --role R`` with the canary's token), kept in
   the environment this command runs in;
2. ``python -m infra.canary --call ec2:DescribeRegions`` starts polling that
   call with those credentials (``sts:GetCallerIdentity`` is useless here:
   AWS answers it even when every action is explicitly denied);
3. an admin runs ``rolebroker revoke-sessions <canary> --reason canary``;
4. the command prints, for each attempt, how long after its start the call
   still worked, and exits 0 at the first AccessDenied with the time it
   took (1 if the call never stopped working within ``--timeout``: the deny
   did not bite, investigate; 2 on a usage or setup error).

Then lift the canary's revocation (``rolebroker revocations --lift ID``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess"}


def poll(call: Callable[[], Any], *, timeout: float, interval: float, clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep, out: TextIO | None = None) -> float | None:
    """Seconds until ``call`` is denied, or None if it still works after ``timeout``."""
    from botocore.exceptions import ClientError

    out = out or sys.stdout

    start = clock()
    while True:
        elapsed = clock() - start
        try:
            call()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in DENIED:
                out.write(f"{elapsed:7.1f} s  denied ({code}): the revocation bites\n")
                return elapsed
            out.write(f"{elapsed:7.1f} s  error {code} (not a denial; still polling)\n")
        else:
            out.write(f"{elapsed:7.1f} s  still allowed\n")
        if elapsed >= timeout:
            return None
        sleep(interval)


def main(argv: Sequence[str] | None = None, client_factory: Callable[[str], Any] | None = None,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.canary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--call", default="ec2:DescribeRegions",
                        help="service:Operation the canary's role may call (default ec2:DescribeRegions)")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds (600)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between attempts (1)")
    args = parser.parse_args(argv)
    service, _, operation = args.call.partition(":")
    if not service or not operation:
        print("error: --call must be service:Operation, e.g. ec2:DescribeRegions", file=sys.stderr)
        return 2
    if client_factory is None:
        import boto3

        client = boto3.client(service)  # the canary's credentials, from the environment
    else:
        client = client_factory(service)
    method = "".join("_" + ch.lower() if ch.isupper() else ch for ch in operation).lstrip("_")
    if not hasattr(client, method):
        print(f"error: {service} has no operation {operation}", file=sys.stderr)
        return 2
    took = poll(getattr(client, method), timeout=args.timeout, interval=args.interval, clock=clock, sleep=sleep)
    if took is None:
        print(f"the call still works after {args.timeout:.0f} s: the revocation did not bite; check the role's "
              "permissions boundary and the revocation's account outcome", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
