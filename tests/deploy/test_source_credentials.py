"""Source-principal credentials from Secrets Manager: cached, rotated, never logged.

STS is moto's (it maps an access key to its IAM user, so ``GetCallerIdentity``
tells which key signed); Secrets Manager is a ``Stubber`` where the number
and order of reads matter.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber
from moto import mock_aws

from chalicelib.aws.source_credentials import sts_client_from_secret
from chalicelib.exceptions import ConfigurationError, DependencyDown

SECRET_ID = "rolebroker/prod/source-credentials"
REGION = "eu-west-1"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    # Ambient credentials that must NOT be the ones used.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "FAKEAMBIENTKEYID0000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "ambient-secret")
    with mock_aws():
        yield boto3.client("iam", region_name=REGION)


def user_key(iam: Any, name: str) -> dict[str, str]:
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}


def secret_answer(value: dict[str, str] | str) -> dict[str, Any]:
    text = value if isinstance(value, str) else json.dumps(value)
    return {"ARN": f"arn:aws:secretsmanager:{REGION}:123456789012:secret:{SECRET_ID}-AbCdEf",
            "Name": SECRET_ID, "SecretString": text, "VersionId": "0" * 32}


def caller(sts: Any) -> str:
    arn: str = sts.get_caller_identity()["Arn"]
    return arn.rsplit("/", 1)[1]


def test_sts_calls_are_signed_with_the_secrets_key(aws: Any) -> None:
    secrets = boto3.client("secretsmanager", region_name=REGION)
    secrets.create_secret(Name=SECRET_ID, SecretString=json.dumps(user_key(aws, "rolebroker-source")))
    config = Config(connect_timeout=3, read_timeout=5, retries={"mode": "standard", "max_attempts": 3})

    sts = sts_client_from_secret(secrets, SECRET_ID, region=REGION, config=config)

    assert caller(sts) == "rolebroker-source"
    assert sts.meta.region_name == REGION
    assert sts.meta.config.connect_timeout == 3 and sts.meta.config.read_timeout == 5


def test_secret_is_read_lazily_cached_for_the_ttl_and_rotation_is_picked_up(aws: Any) -> None:
    first, second = user_key(aws, "source-a"), user_key(aws, "source-b")
    secrets = boto3.client("secretsmanager", region_name=REGION)
    clock = Clock()
    with Stubber(secrets) as stub:
        sts = sts_client_from_secret(secrets, SECRET_ID, region=REGION, ttl_seconds=300, now=clock)
        stub.assert_no_pending_responses()  # building the client read nothing

        stub.add_response("get_secret_value", secret_answer(first), {"SecretId": SECRET_ID})
        assert caller(sts) == "source-a"
        clock.advance(299)
        assert caller(sts) == "source-a"  # still cached: no second read queued, none made
        stub.assert_no_pending_responses()

        stub.add_response("get_secret_value", secret_answer(second), {"SecretId": SECRET_ID})
        clock.advance(2)
        assert caller(sts) == "source-b"  # TTL passed: re-read, the rotated key signs
        stub.assert_no_pending_responses()


def test_secrets_manager_outage_keeps_the_current_key_for_five_minutes_then_fails(aws: Any) -> None:
    secrets = boto3.client("secretsmanager", region_name=REGION)
    clock = Clock()
    with Stubber(secrets) as stub:
        sts = sts_client_from_secret(secrets, SECRET_ID, region=REGION, ttl_seconds=300, now=clock)
        stub.add_response("get_secret_value", secret_answer(user_key(aws, "source-a")))
        assert caller(sts) == "source-a"

        stub.add_client_error("get_secret_value", "InternalServiceError", http_status_code=500)
        clock.advance(301)
        assert caller(sts) == "source-a"

        stub.add_client_error("get_secret_value", "InternalServiceError", http_status_code=500)
        clock.advance(300)
        with pytest.raises(DependencyDown, match="cannot read its source credentials"):
            sts.get_caller_identity()


def test_missing_secret_is_a_dependency_error_naming_the_secret(aws: Any) -> None:
    secrets = boto3.client("secretsmanager", region_name=REGION)
    with Stubber(secrets) as stub:
        stub.add_client_error("get_secret_value", "ResourceNotFoundException", http_status_code=400)
        sts = sts_client_from_secret(secrets, SECRET_ID, region=REGION)
        with pytest.raises(DependencyDown) as caught:
            sts.get_caller_identity()
    assert SECRET_ID in str(caught.value) and "ResourceNotFoundException" in str(caught.value)


@pytest.mark.parametrize("text", [
    '{"AccessKeyId": "FAKEKEYID", "SecretAccessKey": ""}',
    '{"AccessKeyId": "FAKEKEYID", "Secret": "hunter2-very-secret"}',
    "hunter2-very-secret",
    '["hunter2-very-secret"]',
])
def test_malformed_secret_is_a_configuration_error_that_never_shows_the_secret(
        aws: Any, text: str, caplog: pytest.LogCaptureFixture) -> None:
    secrets = boto3.client("secretsmanager", region_name=REGION)
    caplog.set_level(logging.DEBUG, logger="chalicelib")
    with Stubber(secrets) as stub:
        stub.add_response("get_secret_value", secret_answer(text))
        sts = sts_client_from_secret(secrets, SECRET_ID, region=REGION)
        with pytest.raises(ConfigurationError) as caught:
            sts.get_caller_identity()
    assert "must be JSON with AccessKeyId and SecretAccessKey" in str(caught.value)
    # The JSON decoder's own error holds the whole text: no traceback may show it.
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ or caught.value.__context__ is None
    assert "hunter2" not in str(caught.value) and "hunter2" not in caplog.text


def test_the_secret_key_never_reaches_the_log(aws: Any, caplog: pytest.LogCaptureFixture) -> None:
    key = user_key(aws, "rolebroker-source")
    secrets = boto3.client("secretsmanager", region_name=REGION)
    caplog.set_level(logging.DEBUG, logger="chalicelib")
    with Stubber(secrets) as stub:
        stub.add_response("get_secret_value", secret_answer(key))
        sts = sts_client_from_secret(secrets, SECRET_ID, region=REGION)
        assert caller(sts) == "rolebroker-source"
    assert key["SecretAccessKey"] not in caplog.text
    assert key["AccessKeyId"] not in caplog.text
    assert f"...{key['AccessKeyId'][-4:]}" in caplog.text  # enough to tell which key is live


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ConfigurationError):
        sts_client_from_secret(object(), SECRET_ID, region=REGION, ttl_seconds=0)
