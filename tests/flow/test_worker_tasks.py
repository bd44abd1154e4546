"""The slack_worker Lambda runs only tasks the API function sealed, each at
most once: a forged, tampered, expired or replayed event is dropped with an
audit line. The tests hand events to the real Lambda handler (``app.slack_worker``)."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

import app as app_module
from chalicelib.chat.dispatch import LambdaTransport, SealedDispatcher
from chalicelib.chat.tasks import TaskSeal
from tests.conftest import fake_client
from tests.flow.conftest import EVENTS, TASK_KEY, Jit


def click_task(jit: Jit, request_id: str, user: str = "U0CAROL") -> dict[str, Any]:
    payload = json.loads((EVENTS / "slack_interaction_approve.json").read_text().replace("REQUEST_ID", request_id))
    payload["user"]["id"] = user
    payload["response_url"] = jit.slack.url_for("/hooks/actions/1")
    return {"kind": "interaction", "payload": payload, "request_id": "forged"}


def sealed(jit: Jit, task: dict[str, Any]) -> dict[str, Any]:
    envelope: dict[str, Any] = jit.services.task_seal.seal(task)
    return envelope


def status(jit: Jit, request_id: str) -> str:
    result: str = jit.call("GET", f"/v1/requests/{request_id}", jit.bob()).json_body["status"]
    return result


def dropped(jit: Jit) -> list[dict[str, Any]]:
    return [a for a in map(json.loads, jit.audit_lines) if a["action"] == "task"]


@pytest.fixture
def pending(jit: Jit) -> str:
    jit.call("GET", "/v1/roles", jit.carol())  # Slack knows carol is in security
    request_id: str = jit.request()["id"]
    return request_id


@pytest.mark.parametrize(("event", "reason"), [
    ("plain task", "unsigned or malformed task"),
    ({"rolebroker_task": 1}, "unsigned or malformed task"),
    ({"rolebroker_task": 2, "body": "{}", "sig": "00"}, "unsigned or malformed task"),
    ([], "unsigned or malformed task"),
    ("a string", "unsigned or malformed task"),
    ({"rolebroker_task": 1, "body": "{}", "sig": ""}, "bad signature"),
])
def test_a_forged_event_approves_nothing(jit: Jit, pending: str, event: Any, reason: str) -> None:
    forged = click_task(jit, pending) if event == "plain task" else event
    app_module.slack_worker(forged, None)
    assert status(jit, pending) == "pending"
    [line] = dropped(jit)
    assert (line["outcome"], line["reason"], line["channel"]) == ("dropped", reason, "worker")
    assert "task_kind" not in line and "nonce" not in line


def test_a_sealed_task_runs_once_and_a_replay_is_dropped(jit: Jit, pending: str) -> None:
    envelope = sealed(jit, click_task(jit, pending))
    app_module.slack_worker(copy.deepcopy(envelope), None)
    assert status(jit, pending) == "approved"
    app_module.slack_worker(envelope, None)
    [line] = dropped(jit)
    assert (line["outcome"], line["reason"], line["task_kind"]) == ("dropped", "replayed", "interaction")
    assert len(jit.sent("/api/chat.update")) == 1


def test_a_tampered_task_is_dropped(jit: Jit, pending: str) -> None:
    envelope = sealed(jit, click_task(jit, pending, user="U0BOB"))
    envelope["body"] = envelope["body"].replace("U0BOB", "U0CAROL")
    app_module.slack_worker(envelope, None)
    assert status(jit, pending) == "pending"
    assert [(d["reason"], d.get("task_kind")) for d in dropped(jit)] == [("bad signature", None)]


def test_an_expired_task_is_dropped(jit: Jit, pending: str) -> None:
    envelope = sealed(jit, click_task(jit, pending))
    jit.clock.now += timedelta(minutes=16)
    app_module.slack_worker(envelope, None)
    jit.clock.now -= timedelta(minutes=16)
    assert status(jit, pending) == "pending"
    assert [(d["reason"], d["task_kind"]) for d in dropped(jit)] == [("expired", "interaction")]


def test_a_task_sealed_with_another_key_is_dropped(jit: Jit, pending: str) -> None:
    other = TaskSeal(lambda: (b"another-key-" + b"k" * 32,), clock=lambda: jit.clock().timestamp())
    app_module.slack_worker(other.seal(click_task(jit, pending)), None)
    assert status(jit, pending) == "pending"
    assert [d["reason"] for d in dropped(jit)] == ["bad signature"]


@pytest.mark.parametrize("sig", ["\u00e9" * 64, "\ud800" * 64], ids=["non-ASCII", "lone surrogate"])
def test_a_non_ascii_signature_is_dropped_with_an_audit_line(jit: Jit, sig: str) -> None:
    # Review ATTACK9 F8: hmac.compare_digest raised TypeError on such a str, so
    # the worker crashed (Lambda retried, alarms fired) and audited nothing.
    forged = {"rolebroker_task": 1, "body": json.dumps({"task": {"kind": "request_created"}}), "sig": sig}
    app_module.slack_worker(forged, None)  # must not raise: a raise makes Lambda retry and alarms fire
    assert [(d["outcome"], d["reason"]) for d in dropped(jit)] == [("dropped", "bad signature")]


def test_a_body_that_cannot_be_utf8_is_dropped_as_malformed(jit: Jit) -> None:
    forged = {"rolebroker_task": 1, "body": '{"task": {"kind": "\ud800"}}', "sig": "0" * 64}
    app_module.slack_worker(forged, None)
    assert [(d["outcome"], d["reason"]) for d in dropped(jit)] == [("dropped", "unsigned or malformed task")]


def test_audit_lines_for_dropped_tasks_carry_no_secret(jit: Jit, pending: str) -> None:
    envelope = sealed(jit, click_task(jit, pending))
    app_module.slack_worker(copy.deepcopy(envelope), None)
    app_module.slack_worker(envelope, None)
    tampered = {**envelope, "sig": "0" * 64}
    app_module.slack_worker(tampered, None)
    text = "\n".join(jit.audit_lines)
    assert TASK_KEY not in text and envelope["sig"] not in text and "hooks/actions" not in text


def test_every_dispatcher_seals_and_the_worker_records_each_nonce(jit: Jit) -> None:
    jit.request()  # the inline dispatcher carries "request_created" through seal, nonce and worker
    items = jit.services.access._store._client.scan(TableName=jit.services.settings.table_name)["Items"]
    nonces = [i for i in items if i["pk"]["S"].startswith("TASK#")]
    assert len(nonces) == 1 and int(nonces[0]["expires_at_epoch"]["N"]) > jit.clock().timestamp()
    assert len(jit.sent("/api/chat.postMessage")) == 1


def test_the_lambda_dispatcher_sends_a_sealed_task_the_worker_accepts(jit: Jit, pending: str) -> None:
    client = fake_client("lambda")
    dispatcher = SealedDispatcher(jit.services.task_seal, LambdaTransport(client, "rolebroker-prod-slack_worker"))
    with Stubber(client) as stubber:
        stubber.add_response("invoke", {"StatusCode": 202}, {
            "FunctionName": "rolebroker-prod-slack_worker", "InvocationType": "Event", "Payload": ANY})
        sent: list[bytes] = []
        original = client.invoke

        def capture(**kwargs: Any) -> Any:
            sent.append(kwargs["Payload"])
            return original(**kwargs)

        client.invoke = capture
        dispatcher.dispatch(click_task(jit, pending))
        stubber.assert_no_pending_responses()
    event = json.loads(sent[0])
    assert set(event) == {"rolebroker_task", "body", "sig"}
    app_module.slack_worker(event, None)
    assert status(jit, pending) == "approved"


def test_a_store_outage_fails_the_invocation_so_lambda_retries(jit: Jit, pending: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.exceptions import DependencyDown

    envelope = sealed(jit, click_task(jit, pending))

    def down(nonce: str, expires_at: Any) -> bool:
        raise DependencyDown("the request store is unreachable; try again shortly")

    with monkeypatch.context() as patched:
        patched.setattr(jit.services.access._store, "claim_task", down)
        with pytest.raises(DependencyDown):
            app_module.slack_worker(copy.deepcopy(envelope), None)
    assert [d["outcome"] for d in dropped(jit)] == ["error"]
    assert status(jit, pending) == "pending"
    app_module.slack_worker(envelope, None)  # Lambda's retry runs it
    assert status(jit, pending) == "approved"
