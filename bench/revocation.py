"""The kill switch at organisation scale: from revoke to every deny document written, 50 accounts.

A moto server on 127.0.0.1 stands in for AWS (one request at a time, as the
local stack runs it: see devstack/aws.py), each account seeded as the
StackSet would (devstack/trusting.py). The figure is the wall time of
``Revocations.revoke`` for one person who can reach every account: the
record, the refusal, and in each account AssumeRole on the revoker, GetRole,
the lease, the document, CreatePolicyVersion. The baseline is the same
revocation with one worker (accounts one after another), in the same run.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS = 50


def policy_text(accounts: int) -> str:
    lines = ["version: 1", "accounts:"]
    lines += [f'  a{n:03d}: {{id: "{700000000000 + n:012d}", region: us-east-1}}' for n in range(accounts)]
    lines.append("roles:")
    for n in range(accounts):
        lines += [f"  ro-{n:03d}:", f"    account: a{n:03d}", "    role_name: /rolebroker/ReadOnly",
                  "    allow: [{groups: [developers]}]"]
    lines.append("admins: [{groups: [security]}]")
    return "\n".join(lines) + "\n"


def revoke_across_accounts(accounts: int = ACCOUNTS, runs: int = 3) -> dict[str, Any]:
    import boto3

    from chalicelib.access.policy import parse_policy
    from chalicelib.audit import AuditLog, CallContext
    from chalicelib.aws.iam import Revoker
    from chalicelib.aws.revocation_store import RevocationStore
    from chalicelib.aws.store import create_table
    from chalicelib.identity.tokens import Identity
    from chalicelib.jit.revocations import WORKERS, Revocations
    from devstack.stack import FAKE_AWS_CREDENTIALS, free_port, wait_for
    from devstack.trusting import BROKER_ACCOUNT, seed_trusting_accounts

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    moto = subprocess.Popen([sys.executable, "-m", "devstack.aws", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"{url}/moto-api/", 30, moto)
        session = boto3.session.Session(region_name="us-east-1",
                                        aws_access_key_id=FAKE_AWS_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                        aws_secret_access_key=FAKE_AWS_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

        def client_with(service: str, creds: Any) -> Any:
            return session.client(service, endpoint_url=url, **creds)

        policy = parse_policy(policy_text(accounts))
        sts, dynamodb = session.client("sts", endpoint_url=url), session.client("dynamodb", endpoint_url=url)
        started = time.perf_counter()
        seed_trusting_accounts(policy, sts, client_with, [f"arn:aws:iam::{BROKER_ACCOUNT}:role/rolebroker-bench"])
        seeded_s = time.perf_counter() - started
        table = f"bench-{uuid.uuid4().hex[:8]}"
        create_table(dynamodb, table)
        admin = Identity(subject="sam@example.com", groups=frozenset({"security"}), claims={"amr": ["mfa"]})

        def one(workers: int, person: str) -> float:
            revocations = Revocations(policy=lambda: policy, store=RevocationStore(dynamodb, table),
                                      revoker=Revoker(sts, client_with), audit=AuditLog(emit=lambda _: None),
                                      clock=lambda: datetime.now(UTC), workers=workers,
                                      # The figure is the time to write every account, so no hand-off to the
                                      # worker at the API's 10 s deadline (one worker takes longer than that).
                                      deadline_seconds=600)
            start = time.perf_counter()
            done = revocations.revoke(admin, person, "bench", context=CallContext(request_id="bench"))
            elapsed = time.perf_counter() - start
            assert done.status == "complete" and len(done.accounts) == accounts, done.to_dict()
            return elapsed

        parallel, sequential = [], []
        for run in range(runs):  # interleaved, so a noisy moment hits both
            parallel.append(one(WORKERS, f"p{run}@example.com"))
            sequential.append(one(1, f"s{run}@example.com"))
        return {"accounts": accounts, "workers": WORKERS, "parallel_s": parallel, "sequential_s": sequential,
                "parallel_median_s": statistics.median(parallel),
                "sequential_median_s": statistics.median(sequential), "seed_s": seeded_s}
    finally:
        moto.terminate()
        moto.wait(timeout=10)
