from __future__ import annotations

import json
from pathlib import Path

import pytest

from chalicelib.policycheck import main

POLICY = str(Path(__file__).resolve().parents[2] / "devstack" / "access-policy.yaml")


def test_valid_policy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([POLICY]) == 0
    assert "valid (2 accounts, 6 roles)" in capsys.readouterr().out


def test_invalid_policy_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text(Path(POLICY).read_text().replace("role_name: ReadOnlyRole", "role_nme: ReadOnlyRole", 1))
    assert main([str(bad)]) == 1
    assert f"{bad}:26: roles.sandbox-readonly: unknown key 'role_nme'" in capsys.readouterr().err


@pytest.mark.parametrize(("claims", "role", "expect", "code", "fragment"), [
    ({"email": "alice@example.com", "groups": ["platform-admins"]}, "sandbox-admin", "allow", 0, "ALLOW"),
    ({"email": "bob@example.com", "groups": ["developers"]}, "sandbox-admin", "deny", 0,
     "requires group platform-admins"),
    ({"email": "bob@example.com", "groups": ["developers"]}, "sandbox-admin", "allow", 3, "DENY"),
    ({"email": "alice@example.com", "groups": ["platform-admins"]}, "prod-admin", "deny", 0, "requires MFA"),
    ({"sub": "repo:acme/infra", "repository": "acme/infra", "ref": "refs/heads/main"}, "ci-deploy", "allow", 0,
     "ALLOW ci-deploy for repo:acme/infra"),
])
def test_explain(capsys: pytest.CaptureFixture[str], claims: dict[str, object], role: str, expect: str,
                 code: int, fragment: str) -> None:
    assert main([POLICY, "--role", role, "--claims", json.dumps(claims), "--expect", expect]) == code
    assert fragment in capsys.readouterr().out


def test_unknown_role_and_bad_claims_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([POLICY, "--role", "nope"]) == 2
    assert main([POLICY, "--role", "sandbox-admin", "--claims", "[1]"]) == 2
