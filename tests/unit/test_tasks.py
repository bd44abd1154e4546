"""Sealing background tasks: HMAC over the exact body, expiry, key rotation,
and the signing key re-read from SSM so it can be rotated without a deploy."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.audit import AuditLog
from chalicelib.aws.secrets import RefreshingSecret
from chalicelib.chat.tasks import MAX_BODY_CHARS, MIN_KEY_CHARS, TASK_TTL_SECONDS, TaskSeal, TaskWorker, signing_keys
from chalicelib.exceptions import ConfigurationError, DependencyDown, TaskRejected

OLD = "old-task-signing-key-" + "o" * 32
NEW = "new-task-signing-key-" + "n" * 32
NOW = 1_800_000_000.0


def seal_with(*keys: str, now: float = NOW) -> TaskSeal:
    return TaskSeal(lambda: tuple(k.encode() for k in keys), clock=lambda: now, nonce=lambda: "f" * 32)


def test_a_sealed_task_opens_with_its_nonce_and_expiry() -> None:
    envelope = seal_with(OLD).seal({"kind": "request_created", "request_id": "0123456789ab"})
    assert set(envelope) == {"rolebroker_task", "body", "sig"} and envelope["rolebroker_task"] == 1
    assert len(envelope["sig"]) == 64 and OLD not in json.dumps(envelope)
    opened = seal_with(OLD).open(envelope)
    assert opened.task == {"kind": "request_created", "request_id": "0123456789ab"}
    assert (opened.nonce, opened.expires_at) == ("f" * 32, int(NOW) + TASK_TTL_SECONDS)


def test_rotation_accepts_the_previous_key_and_signs_with_the_first() -> None:
    during = seal_with(NEW, OLD)
    during.open(seal_with(OLD).seal({"kind": "x"}))
    seal_with(NEW).open(during.seal({"kind": "x"}))
    with pytest.raises(TaskRejected) as caught:
        seal_with(NEW).open(seal_with(OLD).seal({"kind": "x"}))
    assert caught.value.reason == "bad signature"


@pytest.mark.parametrize(("change", "reason"), [
    (lambda e: {**e, "sig": e["sig"][:-1] + ("0" if e["sig"][-1] != "0" else "1")}, "bad signature"),
    (lambda e: {**e, "body": e["body"].replace("0123456789ab", "ffffffffffff")}, "bad signature"),
    (lambda e: {**e, "body": e["body"] + " "}, "bad signature"),
    (lambda e: {**e, "sig": e["sig"].upper()}, "bad signature"),
    (lambda e: {**e, "rolebroker_task": True}, "unsigned or malformed task"),
    (lambda e: {k: v for k, v in e.items() if k != "sig"}, "unsigned or malformed task"),
    (lambda e: {**e, "sig": int(e["sig"], 16)}, "unsigned or malformed task"),
    (lambda e: {**e, "sig": None}, "unsigned or malformed task"),
    (lambda e: {**e, "body": {"task": {}}}, "unsigned or malformed task"),
    (lambda e: {**e, "extra": 1}, "unsigned or malformed task"),
    (lambda e: e["body"], "unsigned or malformed task"),
    (lambda e: None, "unsigned or malformed task"),
])
def test_tampered_or_unsigned_envelopes_are_rejected(change: Any, reason: str) -> None:
    envelope = seal_with(OLD).seal({"kind": "request_decided", "request_id": "0123456789ab"})
    with pytest.raises(TaskRejected) as caught:
        seal_with(OLD).open(change(envelope))
    assert caught.value.reason == reason


@pytest.mark.parametrize(("change", "reason"), [
    (lambda e: {**e, "sig": "\u00e9" * 64}, "bad signature"),
    (lambda e: {**e, "sig": e["sig"][:-1] + "\u0660"}, "bad signature"),
    (lambda e: {**e, "sig": "\udc80" * 64}, "bad signature"),
    (lambda e: {**e, "body": e["body"] + "\ud800"}, "unsigned or malformed task"),
], ids=["non-ASCII", "non-ASCII last digit", "lone surrogates", "body not UTF-8"])
def test_signatures_and_bodies_no_str_comparison_can_raise_on(change: Any, reason: str) -> None:
    envelope = seal_with(OLD).seal({"kind": "request_decided", "request_id": "0123456789ab"})
    with pytest.raises(TaskRejected) as caught:
        seal_with(OLD).open(change(envelope))
    assert caught.value.reason == reason


def test_the_body_is_compact_json_with_sorted_keys() -> None:
    # The signed body is the wire format: compact (an event is at most 256 KB) and
    # canonical, so the same task, nonce and expiry always make the same bytes.
    envelope = seal_with(OLD).seal({"request_id": "0123456789ab", "kind": "request_created"})
    exp, nonce = int(NOW) + TASK_TTL_SECONDS, "f" * 32
    assert envelope["body"] == (f'{{"exp":{exp},"nonce":"{nonce}",'
                                '"task":{"kind":"request_created","request_id":"0123456789ab"}}')


def test_a_body_of_exactly_the_limit_opens_and_one_more_character_is_malformed() -> None:
    sealer = seal_with(OLD)
    head = f'{{"exp":{int(NOW) + 60},"nonce":"n","task":{{"kind":"x","pad":"'
    body = head + "p" * (MAX_BODY_CHARS - len(head) - 3) + '"}}'
    assert len(body) == MAX_BODY_CHARS
    assert sealer.open({"rolebroker_task": 1, "body": body, "sig": sealer.sign(body)}).task["kind"] == "x"
    longer = body[:-3] + 'p"}}'
    with pytest.raises(TaskRejected) as caught:
        sealer.open({"rolebroker_task": 1, "body": longer, "sig": sealer.sign(longer)})
    assert caught.value.reason == "unsigned or malformed task"


def test_a_signed_body_that_is_not_a_task_is_rejected() -> None:
    sealer = seal_with(OLD)
    for body in ("[]", '{"task": [], "nonce": "n", "exp": 1}', '{"task": {}, "nonce": 5, "exp": 1}',
                 '{"task": {}, "nonce": "n", "exp": "soon"}', "not json"):
        with pytest.raises(TaskRejected) as caught:
            sealer.open({"rolebroker_task": 1, "body": body, "sig": sealer.sign(body)})
        assert caught.value.reason == "unsigned or malformed task"


def test_expiry_is_checked_against_the_clock() -> None:
    envelope = seal_with(OLD).seal({"kind": "x"})
    seal_with(OLD, now=NOW + TASK_TTL_SECONDS - 1).open(envelope)
    with pytest.raises(TaskRejected) as caught:
        seal_with(OLD, now=NOW + TASK_TTL_SECONDS).open(envelope)
    assert caught.value.reason == "expired" and caught.value.kind == "x" and caught.value.nonce == "f" * 32


def test_an_expired_tasks_kind_is_cut_to_40_characters() -> None:
    envelope = seal_with(OLD).seal({"kind": "k" * 50})
    with pytest.raises(TaskRejected) as caught:
        seal_with(OLD, now=NOW + TASK_TTL_SECONDS).open(envelope)
    assert caught.value.kind == "k" * 40


@pytest.mark.parametrize("value", ["", " , ", "short", f"{NEW},short"])
def test_weak_or_missing_keys_are_refused(value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        signing_keys(value)
    assert "ROLEBROKER_TASK_SIGNING_KEY" in str(caught.value) and "short" not in str(caught.value)


def test_a_key_of_exactly_the_minimum_length_is_accepted() -> None:
    assert signing_keys("k" * MIN_KEY_CHARS) == (b"k" * MIN_KEY_CHARS,)
    with pytest.raises(ConfigurationError):
        signing_keys("k" * (MIN_KEY_CHARS - 1))


def test_signing_keys_split_on_commas_and_whitespace() -> None:
    assert signing_keys(f" {NEW},\n{OLD} ") == (NEW.encode(), OLD.encode())


class FakeSsm:
    def __init__(self, value: str) -> None:
        self.value = value
        self.calls: list[dict[str, Any]] = []
        self.down = False

    def get_parameter(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.down:
            raise OSError("unreachable")
        return {"Parameter": {"Value": self.value}}


def test_an_ssm_secret_is_re_read_after_its_lifetime() -> None:
    ssm = FakeSsm(OLD)
    now = [100.0]
    secret = RefreshingSecret("ssm:/rolebroker/prod/task-signing-key", lambda service: ssm, ttl_seconds=300,
                              monotonic=lambda: now[0])
    assert secret.get() == OLD and secret.get() == OLD
    assert ssm.calls == [{"Name": "/rolebroker/prod/task-signing-key", "WithDecryption": True}]
    ssm.value = f"{NEW},{OLD}"
    now[0] += 299
    assert secret.get() == OLD
    now[0] += 2
    assert secret.get() == f"{NEW},{OLD}" and len(ssm.calls) == 2


def test_a_failed_re_read_keeps_the_last_value_and_a_first_failure_is_a_503() -> None:
    ssm = FakeSsm(OLD)
    now = [0.0]
    secret = RefreshingSecret("ssm:/k", lambda service: ssm, ttl_seconds=300, monotonic=lambda: now[0])
    assert secret.get() == OLD
    ssm.down = True
    now[0] += 301
    assert secret.get() == OLD
    fresh = RefreshingSecret("ssm:/k", lambda service: ssm, ttl_seconds=300, monotonic=lambda: now[0])
    with pytest.raises(DependencyDown):
        fresh.get()


def test_a_literal_secret_is_used_as_is() -> None:
    def no_ssm(service: str) -> Any:
        raise AssertionError("a literal needs no SSM call")

    assert RefreshingSecret(NEW, no_ssm).get() == NEW


class Nonces:
    def __init__(self, fresh: bool = True, error: Exception | None = None) -> None:
        self.fresh = fresh
        self.error = error
        self.claimed: list[tuple[str, int]] = []

    def claim_task(self, nonce: str, expires_at: int) -> bool:
        if self.error is not None:
            raise self.error
        self.claimed.append((nonce, expires_at))
        return self.fresh


def _worker(nonces: Nonces, now: float = NOW) -> tuple[TaskWorker, list[dict[str, Any]], list[str]]:
    lines: list[str] = []
    ran: list[dict[str, Any]] = []
    worker = TaskWorker(seal_with(OLD, now=now), nonces, ran.append, AuditLog(emit=lines.append))
    return worker, ran, lines


def _audited(lines: list[str]) -> list[tuple[Any, ...]]:
    return [(e["outcome"], e["reason"], e["request_id"], e["channel"], e.get("task_kind"), e.get("nonce"))
            for e in map(json.loads, lines)]


def test_the_worker_runs_a_fresh_task_once_claimed() -> None:
    nonces = Nonces()
    worker, ran, lines = _worker(nonces)
    worker.handle(seal_with(OLD).seal({"kind": "request_created"}))
    assert ran == [{"kind": "request_created"}] and lines == []
    assert nonces.claimed == [("f" * 32, int(NOW) + TASK_TTL_SECONDS)]


def test_a_replayed_task_is_audited_with_its_kind_and_nonce() -> None:
    worker, ran, lines = _worker(Nonces(fresh=False))
    worker.handle(seal_with(OLD).seal({"kind": "k" * 50}))
    assert ran == []
    assert _audited(lines) == [("dropped", "replayed", "task-" + "f" * 32, "worker", "k" * 40, "f" * 32)]


def test_an_expired_task_is_audited_with_its_kind_and_nonce() -> None:
    worker, ran, lines = _worker(Nonces(), now=NOW + TASK_TTL_SECONDS)
    worker.handle(seal_with(OLD).seal({"kind": "interaction"}))
    assert ran == []
    assert _audited(lines) == [("dropped", "expired", "task-" + "f" * 32, "worker", "interaction", "f" * 32)]


def test_an_unsigned_task_is_audited_without_kind_or_nonce() -> None:
    worker, ran, lines = _worker(Nonces())
    worker.handle({"kind": "interaction"})
    assert ran == []
    assert _audited(lines) == [("dropped", "unsigned or malformed task", "task", "worker", None, None)]


def test_a_store_outage_is_audited_as_an_error_and_raised() -> None:
    outage = DependencyDown("the request store is unreachable; try again shortly")
    worker, ran, lines = _worker(Nonces(error=outage))
    with pytest.raises(DependencyDown):
        worker.handle(seal_with(OLD).seal({"kind": "k" * 50}))
    assert ran == []
    assert _audited(lines) == [("error", str(outage), "task-" + "f" * 32, "worker", "k" * 40, "f" * 32)]
