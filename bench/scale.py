"""Organisation-scale benchmarks: policy load, decisions and cold start at 5,000 roles.

* **Load**: ``parse_policy`` (YAML to validated ``AccessPolicy``) on the
  synthetic 500 x 10 organisation, against PyYAML's C loader
  (``CSafeLoader``) merely parsing the same text.
* **Decisions**: listing a caller's roles and deciding one, on the 500 x 10
  policy against a 10-role one.
* **Cold start**: a fresh Python process that imports the app and answers
  one API Gateway event for ``POST /v1/credentials`` (JWKS fetched from the
  dev issuer, STS on a moto server, both on 127.0.0.1), against a fresh
  process that makes one bare boto3 AssumeRole call to the same endpoint.
  Both are timed from spawn to exit, interleaved, so machine noise hits
  both alike; the CPU time the processes used is reported beside the wall
  clock, because on a shared machine it moves far less.
* **Artefact sizes**: what the generators write for 10, 1,000 and 5,000
  roles, against the quotas.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
AUDIENCE = "bench-cold-start"


def _best(fn: Any, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return min(samples)


def policy_load(accounts: int = 500, runs: int = 3) -> dict[str, Any]:
    import yaml

    from chalicelib.access.policy import parse_policy
    from infra.synthetic import synthetic_policy

    text = synthetic_policy(accounts, 10)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    parse = _best(lambda: yaml.load(text, Loader=loader), runs)  # noqa: S506 - the C SafeLoader
    load = _best(lambda: parse_policy(text, "synthetic"), runs)
    return {"roles": accounts * 10, "bytes": len(text), "load_s": load, "csafeloader_s": parse,
            "ratio": load / parse}


def decisions(runs: int = 2000) -> dict[str, Any]:
    from chalicelib.access.policy import decide, parse_policy
    from chalicelib.identity.tokens import Identity
    from infra.synthetic import synthetic_policy

    # The same caller with the same roles in both policies (a CI job of account
    # 0's repository), so only the policy's size differs between the figures.
    caller = Identity(subject="repo:acme/service-0000", groups=frozenset({"developers"}),
                      claims={"repository": "acme/service-0000", "ref": "refs/heads/main",
                              "groups": ["developers"]})
    evaluations = {}
    for accounts in (1, 500):
        policy = parse_policy(synthetic_policy(accounts, 10), "synthetic")
        role = policy.roles["acct0000-admin"]
        assert len(policy.candidate_roles(caller)) == 3

        def evaluate(policy: Any = policy, role: Any = role) -> None:
            [decide(r, caller) for r in policy.candidate_roles(caller)]
            decide(role, caller)

        for _ in range(200):
            evaluate()
        evaluations[accounts * 10] = evaluate
    samples: dict[int, list[float]] = {10: [], 5000: []}
    for _ in range(runs):  # interleaved, so a burst of load hits both alike
        for roles, evaluate in evaluations.items():
            start = time.perf_counter()
            evaluate()
            samples[roles].append((time.perf_counter() - start) * 1e6)
    figures: dict[str, Any] = {f"roles_{roles}_p50_us": statistics.median(values) for roles, values in samples.items()}
    figures["ratio"] = figures["roles_5000_p50_us"] / figures["roles_10_p50_us"]
    return figures


_HANDLER = """
import json, os, sys, uuid
sys.path.insert(0, {root!r})
from app import app
token = os.environ["BENCH_TOKEN"]
event = {{
    "resource": "/v1/credentials", "path": "/v1/credentials", "httpMethod": "POST",
    "headers": {{"Authorization": "Bearer " + token, "Content-Type": "application/json",
                "Host": "abc123.execute-api.eu-west-1.amazonaws.com"}},
    "multiValueHeaders": {{}}, "queryStringParameters": None, "multiValueQueryStringParameters": None,
    "pathParameters": None, "stageVariables": None, "isBase64Encoded": False,
    "requestContext": {{"resourcePath": "/v1/credentials", "httpMethod": "POST", "stage": "api",
                       "requestId": str(uuid.uuid4()), "identity": {{"sourceIp": "127.0.0.1"}}}},
    "body": json.dumps({{"role": {role!r}}}),
}}
class Context:
    aws_request_id = "bench"
    function_name = "rolebroker-bench"
    memory_limit_in_mb = 1024
    def get_remaining_time_in_millis(self):
        return 15000
answer = app(event, Context())
assert answer["statusCode"] == 200, answer
"""

_BARE = """
import boto3
boto3.client("sts").assume_role(RoleArn="arn:aws:iam::222222222222:role/rolebroker/CrossAccountAdminRole",
                                RoleSessionName="alice", DurationSeconds=3600)
"""


def cold_start(policy: Path, role: str = "sandbox-admin", runs: int = 7, root: Path = ROOT,
               read_only: bool = False) -> dict[str, Any]:
    """Handler answering its first request in a fresh process, against a bare AssumeRole in one.

    ``root`` is where the app is imported from: this checkout (bytecode compiled
    in place) or an unpacked deployment package. ``read_only`` runs both sides
    as Lambda does, where /var/task cannot be written: no bytecode is saved, so
    a module without shipped bytecode is compiled at every cold start.
    """
    from devstack.issuer import DevIssuer
    from devstack.stack import FAKE_AWS_CREDENTIALS, free_port, wait_for

    port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "devstack.aws", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, env={**os.environ, **FAKE_AWS_CREDENTIALS},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    issuer = DevIssuer(audience=AUDIENCE).start()
    try:
        aws = f"http://127.0.0.1:{port}"
        wait_for(f"{aws}/moto-api/", 30, moto)
        token = issuer.mint("alice@example.com", groups=["platform-admins"])
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ROLEBROKER_"))}
        env.update(FAKE_AWS_CREDENTIALS)
        env.update({"AWS_DEFAULT_REGION": "eu-west-1", "AWS_ENDPOINT_URL_STS": aws,
                    "ROLEBROKER_OIDC_ISSUER": issuer.url, "ROLEBROKER_OIDC_AUDIENCE": AUDIENCE,
                    "ROLEBROKER_POLICY": str(policy.resolve()), "BENCH_TOKEN": token})
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        if read_only:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        handler = _HANDLER.format(root=str(root), role=role)

        def run(code: str) -> tuple[float, float]:
            """Wall-clock and CPU milliseconds of one process, from spawn to exit."""
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=tempfile.gettempdir(), env=env, check=True,
                           stdout=subprocess.DEVNULL)
            wall = (time.perf_counter() - start) * 1000
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000
            return wall, cpu

        run(handler), run(_BARE)  # warm the OS file cache for both (and compile bytecode, unless read_only)
        handler_ms, bare_ms = [], []
        for _ in range(runs):
            handler_ms.append(run(handler))
            bare_ms.append(run(_BARE))
    finally:
        issuer.stop()
        moto.terminate()
        moto.wait(timeout=10)
    wall = (statistics.median(h[0] for h in handler_ms), statistics.median(b[0] for b in bare_ms))
    cpu = (statistics.median(h[1] for h in handler_ms), statistics.median(b[1] for b in bare_ms))
    return {"handler_p50_ms": wall[0], "bare_assume_role_p50_ms": wall[1], "ratio": wall[0] / wall[1],
            "handler_cpu_p50_ms": cpu[0], "bare_assume_role_cpu_p50_ms": cpu[1], "cpu_ratio": cpu[0] / cpu[1],
            "runs": runs, "policy": policy.name}


def artefact_sizes() -> dict[str, Any]:
    """Sizes of what the generators write for the synthetic organisations, quota by quota."""
    from chalicelib.access.policy import parse_policy
    from infra import quotas
    from infra.generate import (
        FUNCTIONS,
        Scope,
        Stage,
        broker_policy,
        load_config,
        source_principal_policy,
        stage_from_config,
    )
    from infra.generate import ROOT as PROJECT
    from infra.synthetic import synthetic_policy
    from infra.trusting import Broker, account_trust_policy, plan_stacksets

    stage = stage_from_config(load_config(PROJECT), "prod")
    stage = Stage(stage.name, {**stage.environment, "ROLEBROKER_POLICY": "s3://acme-config/policy.yaml"},
                  stage.policy_files)
    broker = Broker.from_arns(["arn:aws:iam::111111111111:role/rolebroker-prod-api_handler",
                               "arn:aws:iam::111111111111:role/rolebroker-prod-slack_worker"])
    sizes: dict[str, Any] = {}
    for accounts in (1, 100, 500):
        text = synthetic_policy(accounts, 10)
        policy = parse_policy(text, "synthetic")
        row: dict[str, Any] = {"policy_bytes": len(text)}
        for organization, label in ((None, "accounts"), ("o-abcdef1234", "org")):
            scope = Scope(organization=organization)
            row[f"broker_{label}"] = max(quotas.iam_policy_size(broker_policy(policy, stage, scope, f))
                                         for f in FUNCTIONS)
        row["source_principal_org"] = quotas.iam_policy_size(
            source_principal_policy(policy, Scope(organization="o-abcdef1234")))
        row["trust_policy_max"] = max(quotas.iam_policy_size(account_trust_policy(broker, a, quotas.TRUST_POLICY))
                                      for a in policy.accounts.values())
        parts = plan_stacksets(policy, broker)
        row["templates"] = [{k: part.sizes[k] for k in ("bytes", "needs_s3", "parameters", "resources",
                                                          "mappings", "widest_mapping")} for part in parts]
        sizes[str(accounts * 10)] = row
    return sizes


def main() -> int:
    """``python -m bench.scale``: these figures alone, as JSON."""
    results = {"policy_load": policy_load(), "decisions": decisions(),
               "cold_start_example": cold_start(ROOT / "infra" / "example-access-policy.yaml"),
               "artefact_sizes": artefact_sizes()}
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
