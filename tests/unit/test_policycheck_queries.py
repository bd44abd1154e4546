"""python -m chalicelib.policycheck who-can / what-can / diff: output and exit codes for CI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.policycheck import main

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "devstack" / "access-policy.yaml"


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_who_can_reads_the_policy_from_the_flag_or_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["who-can", "prod-breakglass", "--policy", str(POLICY)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("prod-breakglass: arn:aws:iam::333333333333:role/BreakGlassRole (account production)")
    assert "rule 1: group developers or platform-admins" in out and "approvers: group security" in out
    assert main(["who-can", "prod-breakglass"], environ={"ROLEBROKER_POLICY": str(POLICY)}) == 0
    assert capsys.readouterr().out == out


def test_who_can_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["who-can", "ci-deploy", "--policy", str(POLICY), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["rules"] == [{"claims": {"repository": ["acme/infra"], "ref": ["refs/heads/main"]},
                                "issuer": "ci", "requires_mfa": False, "requires_approval": False}]


def test_what_can(capsys: pytest.CaptureFixture[str]) -> None:
    claims = {"email": "alice@example.com", "email_verified": True, "groups": ["platform-admins"], "amr": ["mfa"]}
    assert main(["what-can", "--claims", json.dumps(claims), "--policy", str(POLICY), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["identity"] == "alice@example.com"
    assert {r["role"]: r["access"] for r in answer["roles"]} == {
        "sandbox-admin": "allowed", "sandbox-readonly": "allowed", "prod-readonly": "allowed",
        "prod-admin": "allowed", "prod-breakglass": "approval_required"}
    assert main(["what-can", "--claims", json.dumps(claims), "--policy", str(POLICY)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("alice@example.com: 5 role(s)")
    assert "prod-breakglass" in text and "approval_required" in text


def test_diff_exit_codes_for_ci(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = POLICY.read_text()
    same = write(tmp_path, "same.yaml", text.replace("      - groups: [platform-admins, sre]\n",
                                                     "      - groups: [sre]\n      - groups: [platform-admins]\n"))
    wider = write(tmp_path, "wider.yaml",
                  text.replace("groups: [platform-admins, sre]", "groups: [platform-admins, sre, ops]"))
    assert main(["diff", str(POLICY), same]) == 0
    assert "no access change" in capsys.readouterr().out
    assert main(["diff", str(POLICY), wider]) == 4
    out = capsys.readouterr().out
    assert "role prod-readonly (changed)\n  + now granted to group ops\n" in out
    assert main(["diff", str(POLICY), wider, "--json"]) == 4
    answer = json.loads(capsys.readouterr().out)
    assert answer["changes_access"] is True
    assert answer["roles"][0]["gains"] == [{"groups": ["ops"], "requires_mfa": False, "requires_approval": False}]


@pytest.mark.parametrize(("argv", "code", "fragment"), [
    (["who-can", "nope", "--policy", str(POLICY)], 2, "unknown role 'nope'"),
    (["who-can", "sandbox-admin"], 2, "--policy PATH or set ROLEBROKER_POLICY"),
    (["what-can", "--claims", "[1]", "--policy", str(POLICY)], 2, "--claims must be a JSON object"),
    (["what-can", "--claims", "{}", "--policy", str(POLICY)], 2, "no 'email' claim"),
    (["diff", str(POLICY), "/nonexistent/policy.yaml"], 2, "cannot read /nonexistent/policy.yaml"),
])
def test_usage_errors_are_one_line_and_exit_2(argv: list[str], code: int, fragment: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv, environ={}) == code
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1


def test_missing_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["diff", str(POLICY)])
    assert caught.value.code == 2
    assert "the following arguments are required: new" in capsys.readouterr().err


def test_ssm_or_s3_policy_sources_are_explained(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["who-can", "x"], environ={"ROLEBROKER_POLICY": "ssm:/rolebroker/prod/access-policy"}) == 2
    assert "fetch it to a file first" in capsys.readouterr().err


def test_an_invalid_policy_exits_1_naming_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, "bad.yaml", POLICY.read_text().replace("role_name: ReadOnlyRole", "role_nme: x", 1))
    line = Path(bad).read_text().splitlines().index("    role_nme: x") + 1
    assert main(["diff", str(POLICY), bad]) == 1
    assert f"{bad}:{line}: roles.sandbox-readonly: unknown key 'role_nme'" in capsys.readouterr().err
    assert main(["who-can", "sandbox-admin", "--policy", bad]) == 1


def test_the_documented_form_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    claims = json.dumps({"email": "bob@example.com", "email_verified": True, "groups": ["developers"]})
    assert main([str(POLICY), "--role", "sandbox-admin", "--claims", claims, "--expect", "deny"]) == 0
    assert "DENY sandbox-admin for bob@example.com" in capsys.readouterr().out


def test_runs_as_a_module() -> None:
    done = subprocess.run([sys.executable, "-m", "chalicelib.policycheck", "diff", str(POLICY), str(POLICY)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "no access change" in done.stdout
