from __future__ import annotations

import json
from pathlib import Path

import pytest

from chalicelib.policycheck import main

POLICY = str(Path(__file__).resolve().parents[2] / "devstack" / "access-policy.yaml")


def test_valid_policy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([POLICY]) == 0
    assert "valid (2 accounts, 6 roles; issuers: default, ci)" in capsys.readouterr().out


def test_invalid_policy_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text(Path(POLICY).read_text().replace("role_name: ReadOnlyRole", "role_nme: ReadOnlyRole", 1))
    assert main([str(bad)]) == 1
    assert f"{bad}:37: roles.sandbox-readonly: unknown key 'role_nme'" in capsys.readouterr().err


def test_a_ticket_pattern_that_backtracks_is_an_invalid_policy(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "p.yaml"
    text = Path(POLICY).read_text()
    assert '"^(INC|CHG)-[0-9]+$"' in text
    bad.write_text(text.replace('"^(INC|CHG)-[0-9]+$"', '"^([A-Z]+-?)+[0-9]+$"', 1))
    assert main([str(bad)]) == 1
    assert f"{bad}:67: roles.prod-breakglass.approval.ticket.pattern: repeats something that itself repeats" in (
        capsys.readouterr().err)


@pytest.mark.parametrize(("claims", "role", "expect", "code", "fragment"), [
    ({"email": "alice@example.com", "groups": ["platform-admins"]}, "sandbox-admin", "allow", 0, "ALLOW"),
    ({"email": "bob@example.com", "groups": ["developers"]}, "sandbox-admin", "deny", 0,
     "requires group platform-admins"),
    ({"email": "bob@example.com", "groups": ["developers"]}, "sandbox-admin", "allow", 3, "DENY"),
    ({"email": "alice@example.com", "groups": ["platform-admins"]}, "prod-admin", "deny", 0, "requires MFA"),
    ({"email": "ci@example.com", "repository": "acme/infra", "ref": "refs/heads/main"}, "ci-deploy", "deny", 0,
     "requires issuer ci"),
    ({"email": "Dana@Example.com"}, "sandbox-readonly", "allow", 0, "ALLOW sandbox-readonly for Dana@Example.com"),
    ({"email": "dana@example.com", "email_verified": False}, "sandbox-readonly", "deny", 2, ""),
])
def test_explain(capsys: pytest.CaptureFixture[str], claims: dict[str, object], role: str, expect: str,
                 code: int, fragment: str) -> None:
    claims = {"sub": "00uSOMEONE", "email_verified": True, **claims}
    assert main([POLICY, "--role", role, "--claims", json.dumps(claims), "--expect", expect]) == code
    assert fragment in capsys.readouterr().out


def test_explain_for_another_issuer(capsys: pytest.CaptureFixture[str]) -> None:
    claims = {"sub": "repo:acme/infra:ref:refs/heads/main", "repository": "acme/infra", "ref": "refs/heads/main"}
    assert main([POLICY, "--issuer", "ci", "--role", "ci-deploy", "--claims", json.dumps(claims),
                 "--expect", "allow"]) == 0
    assert "ALLOW ci-deploy for repo:acme/infra:ref:refs/heads/main" in capsys.readouterr().out
    assert main([POLICY, "--issuer", "gitlab", "--role", "ci-deploy", "--claims", json.dumps(claims)]) == 2
    assert "unknown issuer 'gitlab'" in capsys.readouterr().err


def test_unknown_role_and_bad_claims_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([POLICY, "--role", "nope"]) == 2
    assert main([POLICY, "--role", "sandbox-admin", "--claims", "[1]"]) == 2
