"""ATTACK9 (security review of issues 9 and 10): non-ASCII signatures crash the checks.

Both signature checks end in ``hmac.compare_digest`` on ``str``, which
raises ``TypeError`` for non-ASCII text instead of answering "no".

**Slack routes.** ``POST /slack/commands`` (public, no token) with a
non-ASCII ``X-Slack-Signature`` is a 500 with a traceback in the log and no
"slack denied" audit line: anyone on the internet can produce 500s at will
(the API's 5XX alarm fires at 5 in 5 minutes), against "never a bare 500".

**Worker.**
``TaskSeal.open`` compares signatures with ``hmac.compare_digest`` on
``str``; given a non-ASCII ``sig`` that raises ``TypeError`` instead of a
``TaskRejected``. Whoever may ``lambda:InvokeFunction`` the worker can
therefore make it crash with a traceback (Lambda then retries the event
twice and the worker's error alarm fires) and leave no "task dropped" audit
line, so forgery attempts of this shape never reach the audit trail or the
SIEM.

Marked ``xfail(strict=True)``: it fails today (the finding); the fix must
remove the marker. Run with ``--runxfail`` to see the failure.
"""

from __future__ import annotations

import json

import pytest

import app as app_module
from tests.flow.conftest import Jit


@pytest.mark.xfail(strict=True, reason="ATTACK9 F8: a non-ASCII signature crashes the worker unaudited")
def test_attack9_a_non_ascii_signature_is_dropped_with_an_audit_line(jit: Jit) -> None:
    forged = {"rolebroker_task": 1, "body": json.dumps({"task": {"kind": "request_created"}}), "sig": "é" * 64}
    app_module.slack_worker(forged, None)  # must not raise: a raise makes Lambda retry and alarms fire
    tasks = [a for a in map(json.loads, jit.audit_lines) if a["action"] == "task"]
    assert [(a["outcome"], a["reason"]) for a in tasks] == [("dropped", "bad signature")]


@pytest.mark.xfail(strict=True, reason="ATTACK9 F8: a non-ASCII Slack signature header is a 500")
def test_attack9_a_non_ascii_slack_signature_is_a_401(jit: Jit) -> None:
    import time

    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": str(int(time.time())),
               "X-Slack-Signature": "v0=" + "\u00e9" * 64}
    answer = jit.client.http.post("/slack/commands", headers=headers, body=b"team_id=T0001&text=roles&user_id=U0BOB")
    assert answer.status_code == 401, answer.body
