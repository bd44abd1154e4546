from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import LocalStack, free_port
from tests.secretscan import SCANNER


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The same local stack `make run` starts, on free loopback ports."""
    logs: Path = tmp_path_factory.mktemp("stack-logs")
    local = LocalStack(broker_port=free_port(), issuer_port=free_port(), aws_port=free_port(),
                       slack_port=free_port(), quiet=True,
                       log_dir=logs)
    local.start()
    try:
        yield local
    finally:
        local.stop()
        for log in sorted(logs.glob("*.log")):  # the broker's own output joins the secret scan
            SCANNER.add(f"local stack {log.name}", log.read_text(errors="replace"))
