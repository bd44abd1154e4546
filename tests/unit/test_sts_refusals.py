"""502 hints point at the right place (finding 5).

STS's AccessDenied text says which side refused: the broker's own policies
("because no identity-based policy allows ...", an explicit deny in a
service control policy ...) or the trusting role, whose trust policy STS
does not describe across accounts. The messages below are the shapes AWS
returns; Stubber checks the exact AssumeRole parameters too.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib.aws.sts import StsGateway
from chalicelib.exceptions import AwsRefused

CALLER = "arn:aws:sts::111111111111:assumed-role/rolebroker-prod-api_handler/rolebroker-prod"
IN_PATH = "arn:aws:iam::222222222222:role/rolebroker/ReadOnly"
OUTSIDE = "arn:aws:iam::222222222222:role/ReadOnly"
TAGS = [{"Key": "rolebroker:identity", "Value": "alice@example.com"}]


def refusal(role_arn: str, message: str, external_id: str | None = "rolebroker-sandbox") -> str:
    sts = boto3.client("sts", region_name="eu-west-1", aws_access_key_id="AKIDEXAMPLE",
                       aws_secret_access_key="fake-secret-for-tests")
    expected = {"RoleArn": role_arn, "RoleSessionName": "alice@example.com", "SourceIdentity": "alice@example.com",
                "DurationSeconds": 3600, "Tags": TAGS}
    if external_id:
        expected["ExternalId"] = external_id
    with Stubber(sts) as stubber:
        stubber.add_client_error("assume_role", service_error_code="AccessDenied", service_message=message,
                                 http_status_code=403, expected_params=expected)
        with pytest.raises(AwsRefused) as caught:
            StsGateway(sts).assume(role_arn=role_arn, session_name="alice@example.com",
                                   source_identity="alice@example.com", tags=TAGS, external_id=external_id,
                                   duration_seconds=3600)
        stubber.assert_no_pending_responses()
    return str(caught.value)


def test_the_brokers_own_policy_refusing_points_at_the_broker_path() -> None:
    message = refusal(OUTSIDE, f"User: {CALLER} is not authorized to perform: sts:AssumeRole on resource: "
                               f"{OUTSIDE} because no identity-based policy allows the sts:AssumeRole action")
    assert "broker's own IAM policy" in message
    assert "arn:aws:iam::*:role/rolebroker/" in message
    assert "is not under /rolebroker/" in message
    assert "python -m infra.generate iam" in message
    assert "trust policy" not in message


def test_a_role_in_the_path_refused_by_the_brokers_policy_is_outside_the_organisation() -> None:
    message = refusal(IN_PATH, f"User: {CALLER} is not authorized to perform: sts:AssumeRole on resource: "
                               f"{IN_PATH} because no identity-based policy allows the sts:AssumeRole action")
    assert "broker's own IAM policy" in message and "organisation" in message
    assert "is not under /rolebroker/" not in message


def test_a_service_control_policy_is_named() -> None:
    message = refusal(IN_PATH, f"User: {CALLER} is not authorized to perform: sts:AssumeRole on resource: "
                               f"{IN_PATH} with an explicit deny in a service control policy")
    assert "service control policy" in message and "trust policy" not in message


def test_the_trust_policy_refusing_points_at_the_trusting_role() -> None:
    message = refusal(IN_PATH, f"User: {CALLER} is not authorized to perform: sts:AssumeRole on resource: {IN_PATH}")
    assert "trust policy" in message and "sts:ExternalId" in message
    assert "aws:PrincipalArn" in message
    assert "broker's own IAM policy" not in message


def test_a_refused_session_tag_names_the_action_and_the_allowed_keys() -> None:
    message = refusal(IN_PATH, f"User: {CALLER} is not authorized to perform: sts:TagSession on resource: {IN_PATH}",
                      external_id=None)
    assert "sts:TagSession" in message and "rolebroker:" in message and "trust policy" in message


