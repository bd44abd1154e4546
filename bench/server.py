"""Server-side benchmarks: in-process overhead, policy scale, package size
and local throughput. Cold start is in bench/scale.py."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def timed(fn: Callable[[], Any], runs: int, clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Milliseconds per call of ``fn`` by ``clock``: wall time, or ``time.thread_time`` for this thread's CPU."""
    samples = []
    for _ in range(runs):
        start = clock()
        fn()
        samples.append((clock() - start) * 1000)
    return samples


def in_process_overhead(runs: int = 400) -> dict[str, Any]:
    """POST /v1/credentials (STS answered by a Stubber) against GET /v1/health."""
    import boto3
    from botocore.stub import Stubber
    from chalice.test import Client

    import app as app_module
    from chalicelib.audit import AuditLog
    from devstack.issuer import DevIssuer

    issuer = DevIssuer(audience="bench").start()
    try:
        sts = boto3.client("sts", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
        env = {"ROLEBROKER_OIDC_ISSUER": issuer.url, "ROLEBROKER_OIDC_AUDIENCE": "bench",
               "ROLEBROKER_POLICY": str(ROOT / "devstack" / "access-policy.yaml"), "AWS_DEFAULT_REGION": "us-east-1"}
        app_module._services = app_module._build_services(env, client_factory=lambda name: sts,
                                                          audit=AuditLog(emit=lambda line: None))
        token = issuer.mint("alice@example.com", groups=["platform-admins"])
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        body = json.dumps({"role": "sandbox-admin"})
        answer = _assume_role_answer()
        with Stubber(sts) as stubber, Client(app_module.app) as client:
            def credentials() -> None:
                stubber.add_response("assume_role", answer)
                response = client.http.post("/v1/credentials", headers=headers, body=body)
                assert response.status_code == 200, response.body

            def health() -> None:
                assert client.http.get("/v1/health").status_code == 200

            timed(credentials, 30)
            timed(health, 30)
            creds = timed(credentials, runs)
            base = timed(health, runs)
            stub_only = timed(lambda: _stub_only(stubber, sts, answer), runs)
            # The same in this thread's CPU time: what the broker itself spends, whatever else
            # the shared machine runs meanwhile (wall-time p99 there measures the machine too).
            cpu_creds = timed(credentials, runs, time.thread_time)
            cpu_base = timed(health, runs, time.thread_time)
            cpu_stub = timed(lambda: _stub_only(stubber, sts, answer), runs, time.thread_time)
    finally:
        app_module._services = None
        issuer.stop()
    overhead = [c - statistics.median(base) - statistics.median(stub_only) for c in creds]
    cpu_overhead = [c - statistics.median(cpu_base) - statistics.median(cpu_stub) for c in cpu_creds]
    return {
        "overhead_cpu_p50_ms": statistics.median(cpu_overhead), "overhead_cpu_p99_ms": percentile(cpu_overhead, 99),
        "credentials_p50_ms": statistics.median(creds), "credentials_p99_ms": percentile(creds, 99),
        "health_p50_ms": statistics.median(base), "stubbed_sts_call_p50_ms": statistics.median(stub_only),
        "overhead_p50_ms": statistics.median(overhead), "overhead_p99_ms": percentile(overhead, 99),
        "runs": runs,
    }


def _stub_only(stubber: Any, sts: Any, answer: dict[str, Any]) -> None:
    stubber.add_response("assume_role", answer)
    sts.assume_role(RoleArn="arn:aws:iam::222222222222:role/CrossAccountAdminRole", RoleSessionName="alice",
                    SourceIdentity="alice", DurationSeconds=3600, ExternalId="rolebroker-sandbox",
                    Tags=[{"Key": "k", "Value": "v"}])


def _assume_role_answer() -> dict[str, Any]:
    from datetime import datetime, timedelta, timezone

    return {"Credentials": {"AccessKeyId": "FAKEACCESSKEYID00001", "SecretAccessKey": "s" * 40,
                            "SessionToken": "t" * 300,
                            "Expiration": datetime.now(timezone.utc) + timedelta(hours=1)},
            "AssumedRoleUser": {"AssumedRoleId": "AROAEXAMPLE:alice",
                                "Arn": "arn:aws:sts::222222222222:assumed-role/CrossAccountAdminRole/alice"},
            "SourceIdentity": "alice"}


def policy_scale(sizes: tuple[int, ...] = (10, 1000, 10000), runs: int = 300) -> dict[str, Any]:
    """Listing a typical caller's roles and one decision, as the policy grows."""
    from chalicelib.access.policy import decide, parse_policy
    from chalicelib.identity.tokens import Identity

    caller = Identity(subject="alice@example.com", groups=frozenset({"team-3", "developers"}),
                      claims={"email": "alice@example.com", "groups": ["team-3", "developers"]})
    figures: dict[str, Any] = {}
    for size in sizes:
        policy = parse_policy(_generated_policy(size), f"generated-{size}")
        role = policy.roles["role-3"]

        def evaluate(policy: Any = policy, role: Any = role) -> None:
            [decide(r, caller) for r in policy.candidate_roles(caller)]
            decide(role, caller)

        timed(evaluate, 50)
        figures[f"rules_{size}_p50_us"] = statistics.median(timed(evaluate, runs)) * 1000
    smallest, largest = sizes[0], sizes[-1]
    figures["ratio_largest_vs_smallest"] = figures[f"rules_{largest}_p50_us"] / figures[f"rules_{smallest}_p50_us"]
    return figures


def _generated_policy(rules: int) -> str:
    roles_count = max(10, rules // 10)
    lines = ["version: 1", "accounts:", '  a: {id: "111111111111", region: eu-west-1}', "roles:"]
    per_role = rules // roles_count
    for index in range(roles_count):
        lines += [f"  role-{index}:", "    account: a", f"    role_name: Role{index}", "    allow:"]
        for rule in range(per_role):
            if rule == 0:
                lines.append(f"      - groups: [team-{index}]")
            else:
                lines.append(f"      - claims: {{email: user{index}-{rule}@example.com}}")
    return "\n".join(lines) + "\n"


PACKAGE_DIR = ROOT / "build" / "bench-package"


def built_package() -> Path:
    """The deployment zip as ``make package`` ships it (bytecode added), built once per run."""
    package = PACKAGE_DIR / "deployment.zip"
    if not _BUILT:
        env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
        subprocess.run([str(Path(sys.executable).with_name("chalice")), "package", "--stage", "prod", str(PACKAGE_DIR)],
                       cwd=ROOT, check=True, env=env, capture_output=True)
        subprocess.run([sys.executable, "-m", "infra.bytecode", str(PACKAGE_DIR)], cwd=ROOT, check=True,
                       capture_output=True)
        _BUILT.append(package)
    return package


_BUILT: list[Path] = []


def package_size() -> dict[str, Any]:
    """The Lambda deployment package ``make package`` produces."""
    package = built_package()
    with zipfile.ZipFile(package) as archive:
        unpacked = sum(info.file_size for info in archive.infolist())
        compiled = sum(info.compress_size for info in archive.infolist() if info.filename.endswith(".pyc"))
    return {"zip_mb": package.stat().st_size / 1e6, "unzipped_mb": unpacked / 1e6, "bytecode_zip_mb": compiled / 1e6}


def unpacked(into: Path, *, bytecode: bool) -> Path:
    """The deployment package unpacked as Lambda's /var/task, with or without its bytecode."""
    with zipfile.ZipFile(built_package()) as archive:
        members = [name for name in archive.namelist() if bytecode or "__pycache__/" not in name]
        archive.extractall(into, members)
    return into


def local_throughput(seconds: float, workers: int = 4) -> dict[str, Any]:
    """A bounded load on chalice local + moto, only against 127.0.0.1."""
    from devstack.stack import LocalStack, free_port

    stack = LocalStack(broker_port=free_port(), issuer_port=free_port(), aws_port=free_port(),
                       slack_port=free_port(), quiet=True, log_dir=Path(tempfile.mkdtemp()))
    stack.start()
    try:
        token = stack.mint("alice@example.com", groups=["platform-admins"])
        body = json.dumps({"role": "sandbox-admin"}).encode()
        deadline = time.monotonic() + seconds

        def worker() -> tuple[list[float], int]:
            samples, errors = [], 0
            while time.monotonic() < deadline:
                request = urllib.request.Request(
                    f"{stack.broker_url}/v1/credentials", data=body, method="POST",
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
                start = time.perf_counter()
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        response.read()
                except (urllib.error.URLError, OSError):
                    errors += 1
                samples.append((time.perf_counter() - start) * 1000)
            return samples, errors

        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda _: worker(), range(workers)))
    finally:
        stack.stop()
    samples = [s for r in results for s in r[0]]
    return {"requests": len(samples), "rps": len(samples) / seconds, "p50_ms": statistics.median(samples),
            "p99_ms": percentile(samples, 99), "errors": sum(r[1] for r in results), "workers": workers,
            "seconds": seconds}
