"""Client-side benchmarks: what every `aws` command pays for the broker.

The cache hit is timed as the AWS tools start it: the installed command that
`configure` writes, and the copy-anywhere `build/rolebroker.pyz`. Each is
interleaved with a trivial Python script that prints fixed credentials (the
floor for any Python credential_process) and compared by median, as these
machines are shared and noisy: the script timed against itself shows how
noisy, and valgrind's instruction counts (when valgrind is installed) give
the same comparison without the noise. `BENCH_CLIENT_RUNS` sets the number of
rounds (default 31); `BENCH_CLIENT_PROCESSES` the size of the cold-cache
stampede (default 200).
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RUNS = int(os.environ.get("BENCH_CLIENT_RUNS", "31"))
PROCESSES = int(os.environ.get("BENCH_CLIENT_PROCESSES", "200"))
FLOOR = """import json, sys
sys.stdout.write(json.dumps({"Version": 1, "AccessKeyId": "FAKEKEYID", "SecretAccessKey": "x",
                             "SessionToken": "y", "Expiration": "2030-01-01T00:00:00+00:00"}) + "\\n")
"""


def _children_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU milliseconds of one run; CPU (user + system) as the kernel accounted it."""
    cpu_before = _children_cpu_ms()
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=120)
    wall = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {done.stderr.decode()[-300:]}")
    return wall, _children_cpu_ms() - cpu_before


def _time(argv: list[str], env: dict[str, str]) -> float:
    return _run(argv, env)[0]


def _interleaved(commands: dict[str, list[str]], env: dict[str, str], runs: int) -> dict[str, dict[str, float]]:
    """Median wall and CPU time of each command, run in turn with the order rotating, so that
    drift in the machine's load hits all alike."""
    wall: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for index in range(runs):
        for name in names[index % len(names):] + names[:index % len(names)]:
            elapsed, used = _run(commands[name], env)
            wall[name].append(elapsed)
            cpu[name].append(used)
    return {name: {"wall": statistics.median(wall[name]), "cpu": statistics.median(cpu[name])} for name in names}


def _instructions(argv: list[str], env: dict[str, str]) -> int | None:
    """Instructions one run executes, counted by valgrind: unlike time, the same on a busy machine."""
    if not shutil.which("valgrind"):
        return None
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
                          env={**env, "PYTHONHASHSEED": "0"}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=300)
    found = re.search(rb"Collected : (\d+)", done.stderr)
    return int(found.group(1)) if done.returncode == 0 and found else None


def _instruction_ratios(commands: dict[str, list[str]], env: dict[str, str]) -> dict[str, float | None]:
    counts = {name: _instructions(argv, env) for name, argv in commands.items()}
    floor = counts.pop("floor")
    return {f"{name}_instructions_ratio": (count / floor if count and floor else None)
            for name, count in counts.items()}


def measure() -> dict[str, Any]:
    from devstack.stack import LocalStack, free_port

    work = Path(tempfile.mkdtemp(prefix="rolebroker-bench-"))
    pyz = _build_pyz(work)
    stack = LocalStack(broker_port=free_port(), issuer_port=free_port(), aws_port=free_port(),
                       slack_port=free_port(), quiet=True, log_dir=work / "logs")
    stack.start()
    try:
        env = _environment(work, stack)
        cp = ["credential-process", "--url", stack.broker_url, "--role", "sandbox-admin"]
        installed = [str(BIN / "rolebroker"), *cp]
        copied = [sys.executable, str(pyz), *cp]
        _time(installed, env)  # fill the cache (the .pyz shares it)
        floor_script = work / "floor.py"
        floor_script.write_text(FLOOR)
        floor = [sys.executable, str(floor_script)]
        commands = {"floor": floor, "floor_again": floor, "installed": installed, "pyz": copied}
        for argv in commands.values():  # warm the page cache for all
            _time(argv, env)
        hits = _interleaved(commands, env, RUNS)
        instructions = _instruction_ratios({"floor": floor, "installed": installed, "pyz": copied}, env)
        miss = [_time([*installed, "--no-cache"], env) for _ in range(max(5, RUNS // 3))]
        aws = str(BIN / "aws")
        for profile in ("broker", "native"):  # warm both: the client's cache and the CLI's assume-role cache
            _time([aws, "sts", "get-caller-identity", "--profile", profile], env)
        via_broker, native = [], []
        for _ in range(max(10, RUNS // 3)):
            via_broker.append(_time([aws, "sts", "get-caller-identity", "--profile", "broker"], env))
            native.append(_time([aws, "sts", "get-caller-identity", "--profile", "native"], env))
        stampede = _stampede(stack, env, installed)
    finally:
        stack.stop()
    base = hits["floor"]
    return {
        "cache_hit_p50_ms": hits["installed"]["wall"], "floor_p50_ms": base["wall"],
        "cache_hit_ratio": hits["installed"]["wall"] / base["wall"],
        "cache_hit_cpu_ratio": hits["installed"]["cpu"] / base["cpu"],
        "pyz_hit_p50_ms": hits["pyz"]["wall"], "pyz_hit_ratio": hits["pyz"]["wall"] / base["wall"],
        "pyz_hit_cpu_ratio": hits["pyz"]["cpu"] / base["cpu"],
        "noise_ratio": hits["floor_again"]["wall"] / base["wall"],
        "cache_miss_p50_ms": statistics.median(miss),
        "aws_cli_broker_p50_ms": statistics.median(via_broker), "aws_cli_native_p50_ms": statistics.median(native),
        "aws_cli_ratio": statistics.median(via_broker) / statistics.median(native), "runs": RUNS, **instructions,
        **stampede,
    }


def _build_pyz(work: Path) -> Path:
    sys.path.insert(0, str(ROOT / "client"))
    import make_pyz

    return make_pyz.build(work / "rolebroker.pyz")


def _stampede(stack: Any, env: dict[str, str], argv: list[str]) -> dict[str, Any]:
    """PROCESSES credential-process runs started at once on a cold cache, as a terraform plan does."""
    who = f"stampede-{uuid.uuid4().hex[:8]}@example.com"
    env = {**env, "ROLEBROKER_TOKEN": stack.mint(who, groups=["platform-admins"], ttl=7200)}
    start = time.perf_counter()
    running = [subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE) for _ in range(PROCESSES)]
    results = [(*p.communicate(timeout=300), p.returncode) for p in running]
    seconds = time.perf_counter() - start
    requests = sum(1 for a in stack.audit_lines()
                   if a.get("who") == who and a.get("action") == "credentials" and a.get("outcome") == "allowed")
    return {
        "stampede_processes": PROCESSES, "stampede_seconds": seconds, "stampede_broker_requests": requests,
        "stampede_distinct_outputs": len({out for out, _, _ in results}),
        "stampede_failures": sum(1 for _, _, code in results if code != 0),
        "stampede_stderr_lines": sum(len(err.splitlines()) for _, err, _ in results),
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


def _shown(ratio: float | None) -> str:
    return f"{ratio:.3f}x" if ratio else "n/a (no valgrind)"


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    figures = results["client"] = measure()

    def goal(met: bool, text: str) -> str:
        return f"{'met' if met else 'MISSED'} ({text})"

    stampede_ok = (figures["stampede_broker_requests"] == 1 and figures["stampede_distinct_outputs"] == 1
                   and figures["stampede_failures"] == 0 and figures["stampede_stderr_lines"] == 0)
    return [
        ("rolebroker credential-process, cache hit (p50)", f"{figures['cache_hit_p50_ms']:.1f} ms",
         f"trivial Python script {figures['floor_p50_ms']:.1f} ms: ratio {figures['cache_hit_ratio']:.3f}x "
         f"(CPU time {figures['cache_hit_cpu_ratio']:.3f}x; the script against itself "
         f"{figures['noise_ratio']:.3f}x; instructions {_shown(figures['installed_instructions_ratio'])})",
         goal(figures["cache_hit_ratio"] <= 1.05, "<= 1.05x")),
        ("python3 rolebroker.pyz credential-process, cache hit (p50)", f"{figures['pyz_hit_p50_ms']:.1f} ms",
         f"same script: ratio {figures['pyz_hit_ratio']:.3f}x (CPU time {figures['pyz_hit_cpu_ratio']:.3f}x; "
         f"instructions {_shown(figures['pyz_instructions_ratio'])})",
         goal(figures["pyz_hit_ratio"] <= 1.15, "<= 1.15x")),
        ("aws sts get-caller-identity via broker profile (p50)", f"{figures['aws_cli_broker_p50_ms']:.0f} ms",
         f"role_arn + source_profile, CLI cache warm {figures['aws_cli_native_p50_ms']:.0f} ms: "
         f"ratio {figures['aws_cli_ratio']:.2f}x", goal(figures["aws_cli_ratio"] <= 1.15, "<= 1.15x")),
        ("credential-process cache miss, full round trip (p50)", f"{figures['cache_miss_p50_ms']:.1f} ms",
         "chalice local + moto on 127.0.0.1", "figure"),
        (f"{figures['stampede_processes']} concurrent credential-process, cold cache",
         f"{figures['stampede_broker_requests']} broker request(s)",
         f"{figures['stampede_distinct_outputs']} distinct output(s), {figures['stampede_failures']} failures, "
         f"{figures['stampede_stderr_lines']} stderr lines, {figures['stampede_seconds']:.1f} s",
         goal(stampede_ok, "1 request, 1 output, 0 failures, nothing on stderr")),
    ]

