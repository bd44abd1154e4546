"""infra/canary.py: how long a revocation takes to bite, on an injected clock (no sleeping)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from infra.canary import main


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def ec2_answering(*answers: str) -> Any:
    client = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    stubber = Stubber(client)
    for answer in answers:
        if answer == "ok":
            stubber.add_response("describe_regions", {"Regions": []}, {})
        else:
            stubber.add_client_error("describe_regions", answer, "denied by the revocations boundary")
    stubber.activate()
    return client, stubber


def test_the_canary_reports_when_the_deny_bites(capsys: pytest.CaptureFixture[str]) -> None:
    client, stubber = ec2_answering("ok", "ok", "Throttling", "UnauthorizedOperation")
    clock = Clock()
    code = main(["--interval", "2"], client_factory=lambda service: client, clock=clock, sleep=clock.sleep)
    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        "    0.0 s  still allowed", "    2.0 s  still allowed",
        "    4.0 s  error Throttling (not a denial; still polling)",
        "    6.0 s  denied (UnauthorizedOperation): the revocation bites"]
    stubber.assert_no_pending_responses()


def test_the_canary_fails_when_the_deny_never_bites(capsys: pytest.CaptureFixture[str]) -> None:
    client, _ = ec2_answering(*["ok"] * 4)
    clock = Clock()
    code = main(["--interval", "5", "--timeout", "15"], client_factory=lambda service: client, clock=clock,
                sleep=clock.sleep)
    assert code == 1
    assert "the revocation did not bite" in capsys.readouterr().err


def test_the_canary_refuses_a_call_it_cannot_make(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--call", "ec2"], client_factory=lambda service: None) == 2
    client, _ = ec2_answering()
    assert main(["--call", "ec2:LaunchRockets"], client_factory=lambda service: client) == 2
    assert "ec2 has no operation LaunchRockets" in capsys.readouterr().err
