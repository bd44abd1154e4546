"""policycheck explains break-glass, stages and scopes, runs parliament on
scopes, and its diff reports who may newly break glass or approve in a stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chalicelib.policycheck import ACCESS_CHANGED, INVALID, OK, main

POLICY = """\
version: 1
accounts:
  prod: {id: "333333333333", region: us-east-1}
roles:
  prod-admin:
    account: prod
    role_name: Admin
    allow: [{groups: [developers]}]
    approval:
      stages:
        - {name: team-lead, approvers: {groups: [leads]}}
        - {name: security, approvers: {groups: [security]}, required: 2}
      ticket: {pattern: "^(INC|CHG)-[0-9]+$"}
    break_glass: {allow: [{groups: [oncall]}], max_duration_seconds: 1800}
    scopes:
      readonly:
        policy: {Version: "2012-10-17", Statement: [{Effect: Allow, Action: ["ec2:Describe*"], Resource: "*"}]}
      logs: {policy_arns: [arn:aws:iam::aws:policy/CloudWatchLogsReadOnlyAccess]}
    notify: {channels: [C0SRE], watchers: [{groups: [sre-leads]}]}
"""
CLAIMS = {"sub": "00uBOB", "email": "bob@example.com", "email_verified": True}


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def explain(policy: Path, capsys: pytest.CaptureFixture[str], *groups: str) -> list[str]:
    code = main([str(policy), "--role", "prod-admin", "--claims", json.dumps({**CLAIMS, "groups": list(groups)})])
    assert code == OK
    return capsys.readouterr().out.splitlines()[1:]


def test_explain_says_how_the_role_is_granted(policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = explain(policy, capsys, "developers", "oncall")
    assert lines == [
        "DENY prod-admin for bob@example.com: role prod-admin requires an approved access request "
        "(rolebroker request --role prod-admin --reason ...)",
        "  stage 1 of 2 (team-lead): 1 distinct approver(s) with group leads",
        "  then stage 2 of 2 (security): 2 distinct approver(s) with group security",
        "  grants up to 14400 s; approvers are never the requester nor each other",
        "  ticket: required, matching ^(INC|CHG)-[0-9]+$",
        "  break-glass: this caller may break glass (immediate access without an approver, up to 1800 s, with a "
        "reason and a ticket matching ^(INC|CHG)-[0-9]+$; approvers and the security channel are told at once; "
        "no second break-glass until an approver reviews it)",
        "  scope readonly: the role intersected with inline policy of 1 statement(s)",
        "  scope logs: the role intersected with arn:aws:iam::aws:policy/CloudWatchLogsReadOnlyAccess",
    ]


def test_explain_says_when_break_glass_is_not_for_this_caller(policy: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert "  break-glass: not for this caller (it needs group oncall, and an allow rule of the role)" in explain(
        policy, capsys, "developers")
    assert "  break-glass: not for this caller (it needs group oncall, and an allow rule of the role)" in explain(
        policy, capsys, "oncall")  # on call, but not allowed the role at all


def test_parliament_finding_fault_with_a_scope_fails_the_check(policy: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    policy.write_text(POLICY.replace('"ec2:Describe*"', '"ec2:DescribeInstancez"'))
    assert main([str(policy)]) == INVALID
    err = capsys.readouterr().err
    assert "roles.prod-admin.scopes.readonly: UNKNOWN_ACTION" in err and "ec2:DescribeInstancez" in err


def test_who_can_shows_stages_break_glass_scopes_and_watchers(policy: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["who-can", "prod-admin", "--policy", str(policy)]) == OK
    out = capsys.readouterr().out
    assert "then stage 2 of 2 (security): 2 distinct approver(s) with group security" in out
    assert "break-glass: group oncall (and an allow rule), up to 1800 s" in out
    assert "scope logs: the role intersected with arn:aws:iam::aws:policy/CloudWatchLogsReadOnlyAccess" in out
    assert "notified (cannot decide): channels C0SRE; watchers group sre-leads" in out
    assert main(["who-can", "prod-admin", "--policy", str(policy), "--json"]) == OK
    answer = json.loads(capsys.readouterr().out)
    assert [s["required"] for s in answer["approval"]["stages"]] == [1, 2]
    assert answer["break_glass"]["allow"] == [{"groups": ["oncall"]}]
    assert answer["scopes"]["readonly"]["policy"]["Statement"][0]["Action"] == ["ec2:Describe*"]


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("break_glass: {allow: [{groups: [oncall]}]", "break_glass: {allow: [{groups: [oncall]}, {groups: [sre]}]",
     "+ may now break glass: group sre"),
    ("{name: security, approvers: {groups: [security]}, required: 2}",
     "{name: security, approvers: {groups: [security]}, required: 1}", "~ approval_stages:"),
    ('Action: ["ec2:Describe*"]', 'Action: ["ec2:*"]', "~ scopes:"),
    ("watchers: [{groups: [sre-leads]}]", "watchers: [{groups: [everyone]}]", "~ watchers:"),
    ('ticket: {pattern: "^(INC|CHG)-[0-9]+$"}', 'ticket: {pattern: ".+"}', "~ ticket:"),
])
def test_diff_reports_changes_to_how_access_is_granted(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       old: str, new: str, expected: str) -> None:
    before, after = tmp_path / "old.yaml", tmp_path / "new.yaml"
    before.write_text(POLICY)
    assert old in POLICY
    after.write_text(POLICY.replace(old, new))
    assert main(["diff", str(before), str(after)]) == ACCESS_CHANGED
    out = capsys.readouterr().out
    assert expected in out and "access changes found" in out


def test_notify_channels_alone_change_no_access(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before, after = tmp_path / "old.yaml", tmp_path / "new.yaml"
    before.write_text(POLICY)
    after.write_text(POLICY.replace("channels: [C0SRE]", "channels: [C0OPS]"))
    assert main(["diff", str(before), str(after)]) == OK
    assert "~ notify_channels:" in capsys.readouterr().out
