"""Scopes: the session policy structure STS holds us to, checked at load time
without parliament; parliament's own findings for policycheck and CI."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.access.policy import parse_policy
from chalicelib.access.scopes import MAX_POLICY_CHARS, Scope, parliament_findings, session_policy_text
from chalicelib.exceptions import PolicyError

GOOD = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"],
                                                 "Resource": "arn:aws:s3:::reports/*"}]}


def statement(**changes: Any) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{**GOOD["Statement"][0], **changes}]}


def test_a_session_policy_is_minified_for_sts() -> None:
    assert session_policy_text(GOOD) == (None, json.dumps(GOOD, separators=(",", ":")))
    assert session_policy_text(json.dumps(GOOD, indent=4))[1] == json.dumps(GOOD, separators=(",", ":"))


@pytest.mark.parametrize(("document", "fragment"), [
    ("{not json", "is not valid JSON"),
    (["a list"], "must be a policy document"),
    ({**GOOD, "Version": "2008-10-17"}, 'must have Version "2012-10-17"'),
    ({"Statement": GOOD["Statement"]}, 'must have Version "2012-10-17"'),
    ({**GOOD, "Extra": 1}, "unknown key(s) 'Extra'"),
    ({"Version": "2012-10-17", "Statement": []}, "Statement list of 1 to 50"),
    (statement(Principal={"AWS": "*"}), "names a Principal; a session policy is an identity policy"),
    (statement(Effect="Maybe"), "must have Effect Allow or Deny"),
    (statement(NotAction=["s3:*"]), "exactly one of Action or NotAction"),
    (statement(Action=[]), "Action must be service:Action"),
    (statement(Action=["s3 GetObject"]), "Action must be service:Action"),
    (statement(Resource="not-an-arn"), "Resource must be an ARN or *"),
    (statement(Condition={"StringEquals": "x"}), "Condition must map operators to mappings"),
    (statement(Sid="x", Bogus=1), "unknown key(s) 'Bogus'"),
    (statement(Resource="arn:aws:s3:::" + "x" * 2100), "Resource must be an ARN or *"),
    (statement(Resource=["arn:aws:s3:::" + "x" * 300] * 8), f"STS accepts at most {MAX_POLICY_CHARS}"),
    (statement(Sid="caf\u00e9\u20ac"), "characters STS does not accept"),
])
def test_what_sts_would_refuse_is_refused_at_load(document: Any, fragment: str) -> None:
    problem, text = session_policy_text(document)
    assert text is None and problem is not None and fragment in problem, problem


POLICY = """\
version: 1
accounts:
  a: {id: "111111111111", region: us-east-1}
roles:
  r:
    account: a
    role_name: R
    allow: [{groups: [g]}]
    scopes:
      readonly:
        policy: {Version: "2012-10-17", Statement: [{Effect: Allow, Action: "s3:GetObject", Resource: "*"}]}
"""


@pytest.mark.parametrize(("old", "new", "line", "fragment"), [
    ("      readonly:\n", "      Read-Only:\n", 10, "scope names are 1-64 characters"),
    ('Version: "2012-10-17"', "Version: 2012-10-17", 11, "quoted: YAML would read the date as a date"),
    ("        policy: {", "        policy_arns: [arn:aws:iam::aws:role/X]\n        policy: {", 11,
     "is not a managed policy ARN"),
    ("        policy: {", "        policy_arns: [" + ", ".join(f"arn:aws:iam::aws:policy/P{i}" for i in range(11))
     + "]\n        policy: {", 11, "must be 1 to 10 managed policy ARNs"),
    ("        policy: {", "        policy_arns: [arn:aws:iam::aws:policy/P, arn:aws:iam::aws:policy/P]\n"
     "        policy: {", 11, "names a policy twice"),
    ("        policy: {Version", "        description: x\n        polcy: {Version", 12, "unknown key 'polcy'"),
    (POLICY[POLICY.index("    scopes:"):], "    scopes: {}\n", 9, "name 1 to 20 scopes"),
    ("Action: \"s3:GetObject\"", "Action: \"s3:GetObject\", Principal: \"*\"", 11, "names a Principal"),
])
def test_bad_scopes_stop_the_load_naming_the_place(old: str, new: str, line: int, fragment: str) -> None:
    assert old in POLICY
    with pytest.raises(PolicyError) as caught:
        parse_policy(POLICY.replace(old, new, 1), "p.yaml")
    assert fragment in str(caught.value)
    assert caught.value.line == line, str(caught.value)


def test_parliament_finds_typos_and_ignores_resource_star() -> None:
    good = Scope("readonly", json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}]}))
    assert parliament_findings(good) == []  # RESOURCE_STAR: a session policy grants nothing the role lacks
    typo = Scope("readonly", json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObjekt"], "Resource": "arn:aws:s3:::b/*"},
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*",
         "Condition": {"StringEquals": {"s3:prefixx": "a"}}}]}))
    found = " ".join(parliament_findings(typo))
    assert "UNKNOWN_ACTION" in found and "s3:GetObjekt" in found
    assert "UNKNOWN_CONDITION_FOR_ACTION" in found
    assert parliament_findings(Scope("managed", None, ("arn:aws:iam::aws:policy/ReadOnlyAccess",))) == []
