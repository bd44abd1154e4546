"""Client-side benchmarks: what every `aws` command pays for the broker."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
RUNS = int(os.environ.get("BENCH_CLIENT_RUNS", "15"))
FLOOR = """import json, sys
sys.stdout.write(json.dumps({"Version": 1, "AccessKeyId": "FAKEKEYID", "SecretAccessKey": "x",
                             "SessionToken": "y", "Expiration": "2030-01-01T00:00:00+00:00"}) + "\\n")
"""


def _time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {done.stderr.decode()[-300:]}")
    return elapsed


def _interleaved(a: tuple[list[str], dict[str, str]], b: tuple[list[str], dict[str, str]],
                 runs: int) -> tuple[list[float], list[float]]:
    first, second = [], []
    for _ in range(runs):  # interleaved, so drift in machine load hits both alike
        first.append(_time(*a))
        second.append(_time(*b))
    return first, second


def measure() -> dict[str, Any]:
    from devstack.stack import LocalStack, free_port

    work = Path(tempfile.mkdtemp(prefix="rolebroker-bench-"))
    stack = LocalStack(broker_port=free_port(), issuer_port=free_port(), aws_port=free_port(),
                       slack_port=free_port(), quiet=True, log_dir=work / "logs")
    stack.start()
    try:
        env = _environment(work, stack)
        rolebroker = str(BIN / "rolebroker")
        hit = [rolebroker, "credential-process", "--url", stack.broker_url, "--role", "sandbox-admin"]
        _time(hit, env)  # fill the cache
        floor_script = work / "floor.py"
        floor_script.write_text(FLOOR)
        client, floor = _interleaved((hit, env), ([sys.executable, str(floor_script)], env), RUNS)
        miss = [_time([*hit, "--no-cache"], env) for _ in range(RUNS)]
        aws = str(BIN / "aws")
        for profile in ("broker", "native"):  # warm both: the client's cache and the CLI's assume-role cache
            _time([aws, "sts", "get-caller-identity", "--profile", profile], env)
        via_broker, native = _interleaved(
            ([aws, "sts", "get-caller-identity", "--profile", "broker"], env),
            ([aws, "sts", "get-caller-identity", "--profile", "native"], env), max(10, RUNS // 2 + 3))
    finally:
        stack.stop()
    return {
        "cache_hit_p50_ms": statistics.median(client), "floor_p50_ms": statistics.median(floor),
        "cache_hit_ratio": statistics.median(client) / statistics.median(floor),
        "cache_miss_p50_ms": statistics.median(miss),
        "aws_cli_broker_p50_ms": statistics.median(via_broker), "aws_cli_native_p50_ms": statistics.median(native),
        "aws_cli_ratio": statistics.median(via_broker) / statistics.median(native), "runs": RUNS,
    }


def _environment(work: Path, stack: Any) -> dict[str, str]:
    home = work / "home"
    (home / ".aws").mkdir(parents=True)
    rolebroker = BIN / "rolebroker"
    (home / ".aws" / "config").write_text(
        "[profile broker]\n"
        f"credential_process = {rolebroker} credential-process --url {stack.broker_url} --role sandbox-admin\n"
        "region = us-east-1\n\n"
        "[profile native]\nrole_arn = arn:aws:iam::222222222222:role/CrossAccountAdminRole\n"
        "source_profile = base\nregion = us-east-1\n\n[profile base]\nregion = us-east-1\n")
    (home / ".aws" / "credentials").write_text(
        "[base]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    # The client as `make` installs it: a regular pip install, bytecode compiled.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "ROLEBROKER_")) and k != "PYTHONDONTWRITEBYTECODE"}
    env.update({
        "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "XDG_CONFIG_HOME": str(home / ".config"),
        "AWS_CONFIG_FILE": str(home / ".aws" / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / ".aws" / "credentials"),
        "AWS_ENDPOINT_URL_STS": stack.aws_url,
        "ROLEBROKER_TOKEN": stack.mint("alice@example.com", groups=["platform-admins"], ttl=7200),
    })
    return env


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    figures = results["client"] = measure()

    def goal(met: bool, text: str) -> str:
        return f"{'met' if met else 'MISSED'} ({text})"

    return [
        ("rolebroker credential-process, cache hit (p50)", f"{figures['cache_hit_p50_ms']:.1f} ms",
         f"trivial Python script {figures['floor_p50_ms']:.1f} ms: ratio {figures['cache_hit_ratio']:.2f}x",
         goal(figures["cache_hit_ratio"] <= 1.10, "<= 1.10x")),
        ("aws sts get-caller-identity via broker profile (p50)", f"{figures['aws_cli_broker_p50_ms']:.0f} ms",
         f"role_arn + source_profile, CLI cache warm {figures['aws_cli_native_p50_ms']:.0f} ms: "
         f"ratio {figures['aws_cli_ratio']:.2f}x", goal(figures["aws_cli_ratio"] <= 1.15, "<= 1.15x")),
        ("credential-process cache miss, full round trip (p50)", f"{figures['cache_miss_p50_ms']:.1f} ms",
         "chalice local + moto on 127.0.0.1", "figure"),
    ]
