"""Start and stop the local stack: moto server, two dev issuers, chalice local.

The people issuer is the broker's default issuer (``ROLEBROKER_OIDC_ISSUER``);
the CI issuer, shaped like GitHub Actions, is declared in the example
policy's ``issuers:``, which is rendered with the CI issuer's real address
into the log directory. Everything binds 127.0.0.1. ``LocalStack`` is used by ``make run`` (in the
foreground, until Ctrl-C) and by the end-to-end tests (as a fixture), so
the tests run exactly what a developer runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .fakes import FakeWeb
from .issuer import DEFAULT_USERS, DevIssuer

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
AUDIENCE = "rolebroker-local"
LOCAL_TABLE = "rolebroker-local"
# Development-only values: the local stack signs its own fake Slack requests.
DEV_SLACK_SIGNING_SECRET = "devstack-slack-signing-secret-not-a-secret"
DEV_SLACK_BOT_TOKEN = "fake-slack-bot-token-devstack"
DEV_TASK_SIGNING_KEY = "devstack-task-signing-key-not-a-secret-0000"
DEV_SLACK_TEAM_ID = "T0LOCAL"  # the workspace `python -m devstack slack` speaks for
FAKE_AWS_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


# Where a running stack publishes its ports, so `python -m devstack token` and
# `devstack slack` in another terminal find it without exported variables.
PORTS_FILE = ROOT / ".devstack" / "ports.json"
PORT_VARIABLES = {
    "broker": ("ROLEBROKER_PORT", 8000),
    "issuer": ("ROLEBROKER_ISSUER_PORT", 8001),
    "aws": ("ROLEBROKER_AWS_PORT", 8002),
    "slack": ("ROLEBROKER_SLACK_PORT", 8003),
    "ci_issuer": ("ROLEBROKER_CI_ISSUER_PORT", 8004),
}


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, but then the file is not ours either
    return True


def published_ports(path: Path = PORTS_FILE) -> dict[str, int]:
    """The ports a running stack published; empty when none runs (no file, or its process is gone)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or not _alive(doc.get("pid")):
        return {}
    return {name: port for name, port in doc.items()
            if name in PORT_VARIABLES and isinstance(port, int) and 0 < port < 65536}


def stack_port(name: str, environ: Any = os.environ, path: Path = PORTS_FILE) -> int:
    """A port of the local stack: its variable if set, else what the running stack published, else the default."""
    variable, default = PORT_VARIABLES[name]
    if environ.get(variable):
        return int(environ[variable])
    return published_ports(path).get(name, default)


def forget_cached_credentials(broker_url: str, environ: Any = os.environ) -> int:
    """Delete the client's cached credentials for ``broker_url`` (this user's cache, as the client finds it).

    A new local stack answers at the same URL as the last one, but its STS
    emulation never issued the last one's credentials: served from the
    cache, they would fail (or, worse, seem to work) against this one.
    """
    try:
        from rolebroker._fast import DEFAULT_GETUID, ClientPaths
        from rolebroker.cache import CredentialCache
        from rolebroker.errors import RoleBrokerError
    except ImportError:  # the client is not installed here: nothing of it to forget
        return 0
    try:
        return CredentialCache(ClientPaths(environ).cache_dir, getuid=DEFAULT_GETUID).forget_broker(broker_url)
    except RoleBrokerError as exc:  # e.g. a cache directory others can write: its one line says the fix
        raise RuntimeError(str(exc)) from None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((LOOPBACK, port)) == 0


def wait_for(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback only
                return
        except urllib.error.HTTPError:
            return  # it answers, that is all we wait for
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


@contextlib.contextmanager
def aws_emulation() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A moto server on a free port of 127.0.0.1 (its URL and process), stopped on the way out."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.aws", "--host", LOOPBACK, "--port", str(port)], cwd=ROOT,
        env={**os.environ, **FAKE_AWS_CREDENTIALS}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://{LOOPBACK}:{port}"
    try:
        wait_for(f"{url}/moto-api/", 30, process)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass
class LocalStack:
    broker_port: int = 8000
    issuer_port: int = 8001
    aws_port: int = 8002
    slack_port: int = 8003
    ci_issuer_port: int = 0  # 0: any free port (`make run` uses 8004)
    policy: str = "devstack/access-policy.yaml"
    quiet: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    log_dir: Path = ROOT / ".devstack"
    issuer: DevIssuer | None = None
    ci_issuer: DevIssuer | None = None
    policy_path: Path | None = None  # what the broker reads: the example, or a copy
    fakes: FakeWeb | None = None
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _logs: list[Any] = field(default_factory=list)

    @classmethod
    def from_environ(cls, environ: Any = os.environ) -> LocalStack:
        """The ports ``make run`` uses: the variables, else the defaults (never a published file)."""
        port = {name: int(environ.get(variable) or default) for name, (variable, default) in PORT_VARIABLES.items()}
        return cls(broker_port=port["broker"], issuer_port=port["issuer"], aws_port=port["aws"],
                   slack_port=port["slack"], ci_issuer_port=port["ci_issuer"])

    @property
    def broker_url(self) -> str:
        return f"http://{LOOPBACK}:{self.broker_port}"

    @property
    def fakes_url(self) -> str:
        return f"http://{LOOPBACK}:{self.slack_port}"

    @property
    def aws_url(self) -> str:
        return f"http://{LOOPBACK}:{self.aws_port}"

    def aws_env(self) -> dict[str, str]:
        """Environment that points boto3 and the aws CLI at the emulation."""
        return {
            **FAKE_AWS_CREDENTIALS,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_STS": self.aws_url,
            "AWS_ENDPOINT_URL_DYNAMODB": self.aws_url,
            "AWS_ENDPOINT_URL_IAM": self.aws_url,
            "AWS_ENDPOINT_URL_SSM": self.aws_url,
            "AWS_ENDPOINT_URL_S3": self.aws_url,
        }

    def start(self) -> LocalStack:
        busy = [p for p in (self.broker_port, self.issuer_port, self.aws_port, self.slack_port,
                            self.ci_issuer_port) if p and port_in_use(p)]
        if busy:
            raise RuntimeError(
                f"port(s) {busy} on {LOOPBACK} are already in use; stop what holds them or set ROLEBROKER_PORT / "
                "ROLEBROKER_ISSUER_PORT / ROLEBROKER_AWS_PORT / ROLEBROKER_SLACK_PORT / ROLEBROKER_CI_ISSUER_PORT"
            )
        try:
            self._start_aws()
            self.issuer = DevIssuer(port=self.issuer_port, audience=AUDIENCE).start()
            self.ci_issuer = DevIssuer(port=self.ci_issuer_port, audience=CI_AUDIENCE, kind="github").start()
            self.fakes = FakeWeb(port=self.slack_port).start()
            self._seed()
            self._start_broker()
            self._publish_ports()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def ports_file(self) -> Path:
        return self.log_dir / "ports.json"

    def ports(self) -> dict[str, int]:
        assert self.issuer is not None and self.ci_issuer is not None
        # The issuers may have been given port 0 (any free port): their URLs say which they got.
        return {"broker": self.broker_port, "issuer": int(self.issuer.url.rsplit(":", 1)[1]), "aws": self.aws_port,
                "slack": self.slack_port, "ci_issuer": int(self.ci_issuer.url.rsplit(":", 1)[1])}

    def _publish_ports(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.ports_file.write_text(json.dumps({"pid": os.getpid(), **self.ports()}, indent=1) + "\n")

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        output = log if self.quiet else None
        process = subprocess.Popen(
            argv, cwd=ROOT, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=output,
            stderr=output if self.quiet else subprocess.STDOUT,
            start_new_session=True,
        )
        self._processes.append(process)
        return process

    def _start_aws(self) -> None:
        env = {**os.environ, **FAKE_AWS_CREDENTIALS}
        process = self._spawn(
            "moto", [sys.executable, "-m", "devstack.aws", "--host", LOOPBACK, "--port", str(self.aws_port)], env)
        wait_for(f"{self.aws_url}/moto-api/", 30, process)

    def _seed(self) -> None:
        import boto3

        from chalicelib.aws.store import AccessStore, create_table

        session = boto3.session.Session(
            aws_access_key_id=FAKE_AWS_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_AWS_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=FAKE_AWS_CREDENTIALS["AWS_SESSION_TOKEN"],
            region_name="us-east-1",
        )
        dynamodb = session.client("dynamodb", endpoint_url=self.aws_url)
        create_table(dynamodb, LOCAL_TABLE)
        # As if each dev user had signed in once: Slack then knows their groups.
        store = AccessStore(dynamodb, LOCAL_TABLE)
        now = datetime.now(timezone.utc)
        for email, user in DEFAULT_USERS.items():
            store.remember_identity(email, frozenset(user["groups"]), now, timedelta(days=7),
                                    claims={"email": email, "groups": list(user["groups"])})
        self._seed_trusting_accounts(session)

    def _seed_trusting_accounts(self, session: Any) -> None:
        """Each trusting account's revocations boundary, revoker role and roles, as the StackSet makes them."""
        from chalicelib.access.policy import parse_policy
        from devstack.trusting import BROKER_ACCOUNT, seed_trusting_accounts

        assert self.ci_issuer is not None
        policy = parse_policy(render_policy((ROOT / self.policy).read_text(), self.ci_issuer.url))

        def client_with(service: str, creds: dict[str, str]) -> Any:
            return session.client(service, endpoint_url=self.aws_url, **creds)

        seed_trusting_accounts(policy, session.client("sts", endpoint_url=self.aws_url), client_with,
                               [f"arn:aws:iam::{BROKER_ACCOUNT}:role/rolebroker-local"])

    def _policy_file(self) -> Path:
        """The example policy, or a copy naming the CI issuer's real address.

        On the default ports the broker reads the example itself, so edits to
        it take effect at the next policy reload, as in a deployment.
        """
        assert self.ci_issuer is not None
        example = ROOT / self.policy
        text = example.read_text()
        rendered = render_policy(text, self.ci_issuer.url)
        if rendered == text:
            return Path(self.policy)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        copy = self.log_dir / "access-policy.yaml"
        copy.write_text(rendered)
        return copy

    def _start_broker(self) -> None:
        assert self.issuer is not None
        chalice = str(Path(sys.executable).with_name("chalice"))
        self.policy_path = self._policy_file()
        env = {
            **os.environ,
            **self.aws_env(),
            "ROLEBROKER_OIDC_ISSUER": self.issuer.url,
            "ROLEBROKER_POLICY": str(self.policy_path),
            "ROLEBROKER_PUBLIC_URL": self.broker_url,
            "ROLEBROKER_SLACK_SIGNING_SECRET": DEV_SLACK_SIGNING_SECRET,
            "ROLEBROKER_SLACK_BOT_TOKEN": DEV_SLACK_BOT_TOKEN,
            "ROLEBROKER_SLACK_TEAM_ID": DEV_SLACK_TEAM_ID,
            "ROLEBROKER_TASK_SIGNING_KEY": DEV_TASK_SIGNING_KEY,
            "ROLEBROKER_SLACK_API_URL": f"{self.fakes_url}/api/",
            "ROLEBROKER_SLACK_RESPONSE_URL_PREFIX": f"{self.fakes_url}/hooks/",
            "ROLEBROKER_FEDERATION_URL": f"{self.fakes_url}/federation",
            **self.extra_env,
        }
        process = self._spawn(
            "broker",
            [chalice, "local", "--stage", "local", "--host", LOOPBACK, "--port", str(self.broker_port),
             "--no-autoreload"],
            env,
        )
        wait_for(f"{self.broker_url}/v1/health", 60, process)

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(self.ports_file.read_text()).get("pid") == os.getpid():
                self.ports_file.unlink()
        for process in reversed(self._processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._processes.clear()
        for issuer in (self.issuer, self.ci_issuer):
            if issuer is not None:
                issuer.stop()
        self.issuer = self.ci_issuer = None
        if self.fakes is not None:
            self.fakes.stop()
            self.fakes = None
        for log in self._logs:
            log.close()
        self._logs.clear()

    def audit_lines(self) -> list[dict[str, Any]]:
        """The broker's audit records so far (quiet mode logs its stdout to a file)."""
        path = self.log_dir / "broker.log"
        records = []
        for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
            if '"audit": "rolebroker"' in line:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
        return records

    def mint(self, sub: str, *, issuer: str = "people", **kwargs: Any) -> str:
        """A token from the people issuer, or (``issuer="ci"``) from the CI issuer."""
        dev = self.ci_issuer if issuer == "ci" else self.issuer
        assert dev is not None
        return dev.mint(sub, **kwargs)

    def banner(self, forgotten: int = 0) -> str:
        assert self.issuer is not None and self.ci_issuer is not None
        url = self.broker_url
        lines = [
            "",
            "rolebroker local stack is up (Ctrl-C stops everything):",
            f"  broker (chalice local)   {url}",
            f"  dev issuer for people    {self.issuer.url}   the default issuer (rules without `issuer:`)",
            f"  dev issuer for CI jobs   {self.ci_issuer.url}   issuer `ci` in the policy, GitHub-Actions-shaped",
            f"  AWS emulation (moto)     {self.aws_url}   STS, DynamoDB, IAM (each trusting account's roles, "
            "revoker and revocations boundary)",
            f"  fake Slack + sign-in     {self.fakes_url}   (what the broker sent: {self.fakes_url}/_recorded)",
            f"  access policy            {self.policy_path}",
            f"  ports                    {_shown(self.ports_file)}   (`python -m devstack token|slack` read it)",
        ]
        if forgotten:
            lines.append(f"  forgot {forgotten} cached credential(s) from an earlier stack at {url}")
        lines += [
            "",
            "Next, in another terminal:",
            "  . .venv/bin/activate",
            f"  export ROLEBROKER_URL={url}",
            "  T=$(python -m devstack token --sub alice@example.com --groups platform-admins)",
            "  curl -s -H \"Authorization: Bearer $T\" $ROLEBROKER_URL/v1/roles",
            "  curl -s -H \"Authorization: Bearer $T\" -H 'Content-Type: application/json' \\",
            "       -d '{\"role\": \"sandbox-admin\"}' $ROLEBROKER_URL/v1/credentials",
            "  CI=$(python -m devstack token --issuer ci --claim repository=acme/infra --claim ref=refs/heads/main)",
            "  curl -s -H \"Authorization: Bearer $CI\" $ROLEBROKER_URL/v1/roles        # ci-deploy only",
            "  ROLEBROKER_TOKEN=$T rolebroker configure --all",
            f"  ROLEBROKER_TOKEN=$T AWS_ENDPOINT_URL_STS={self.aws_url} aws sts get-caller-identity "
            "--profile sandbox-admin",
            "  python -m devstack slack '/aws roles' --user U0ALICE",
            "  python -m devstack slack '/aws request prod-breakglass 1h INC-42 db down' --user U0BOB",
            "  python -m devstack slack --click approve --request <ID> --user U0CAROL",
            f"  rolebroker --url {self.broker_url} login --device   # then approve the code at "
            f"{self.issuer.url}/device as alice, bob or carol",
            "  S=$(python -m devstack token --sub sam@example.com --groups security --mfa)   # an admin",
            "  ROLEBROKER_TOKEN=$S rolebroker revoke-sessions bob@example.com --reason 'laptop stolen'",
            "",
        ]
        return "\n".join(lines)


def _shown(path: Path) -> str:
    """``path`` relative to the checkout when it is inside it (as people type it there)."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# The example policy names the dev CI issuer by its default address; a stack
# (or a test) running it elsewhere renders the policy with the real one.
CI_ISSUER_PLACEHOLDER = "http://127.0.0.1:8004"
CI_AUDIENCE = "rolebroker-ci"


def render_policy(text: str, ci_issuer_url: str, ci_audience: str = CI_AUDIENCE) -> str:
    """The example policy with its ``ci`` issuer at ``ci_issuer_url`` and ``ci_audience``."""
    return text.replace(CI_ISSUER_PLACEHOLDER, ci_issuer_url).replace(
        f"audiences: [{CI_AUDIENCE}]", f"audiences: [{ci_audience}]")


def mint_via_running_issuer(port: int, spec: dict[str, Any]) -> str:
    request = urllib.request.Request(
        f"http://{LOOPBACK}:{port}/dev/token", data=json.dumps(spec).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback only
        token: str = json.load(response)["token"]
        return token
