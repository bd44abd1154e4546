"""The README's commands are ones a newcomer can paste safely (issue 13 §6.5, §6.6)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "client" / "README.md", ROOT / "docs" / "deploy.md"]


def shell_blocks(path: Path) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", path.read_text(), flags=re.DOTALL)


def test_no_example_writes_credentials_to_a_shared_directory() -> None:
    for path in DOCS:
        for block in shell_blocks(path):
            assert not re.search(r">\s*/tmp/", block), (path.name, block)


def test_the_local_stack_is_always_127_0_0_1() -> None:
    """The broker names itself 127.0.0.1 in its profiles, and sign-ins are bound to one URL."""
    for path in DOCS:
        for block in shell_blocks(path):
            assert not re.search(r"\blocalhost:\d", block), (path.name, block)
