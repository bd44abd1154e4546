"""Console deep links: the partition's hosts, the destination, and no way out to another site."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from unittest.mock import Mock
from urllib.parse import parse_qs, urlsplit

import pytest

from chalicelib.access.policy import parse_policy
from chalicelib.audit import CallContext
from chalicelib.aws.sts import AssumedSession
from chalicelib.broker import Broker, Issued
from chalicelib.console import ConsoleLinks, console_destination
from chalicelib.exceptions import BadRequest
from chalicelib.identity.tokens import Identity
from chalicelib.validation import CONSOLE_FIELDS, validate_fields

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

POLICY = parse_policy("""\
version: 1
accounts:
  commercial: {id: "222222222222", region: eu-west-1}
  gov: {id: "333333333333", region: us-gov-west-1}
  china: {id: "444444444444", region: cn-north-1}
roles:
  admin:
    account: commercial
    role_name: Admin
    console: true
    allow: [{groups: [admins]}]
  gov-admin:
    account: gov
    role_arn: arn:aws-us-gov:iam::333333333333:role/Admin
    console: true
    allow: [{groups: [admins]}]
  cn-admin:
    account: china
    role_arn: arn:aws-cn:iam::444444444444:role/Admin
    console: true
    allow: [{groups: [admins]}]
""", "test")


def links(role: str, fetched: list[str]) -> ConsoleLinks:
    broker = Mock(spec=Broker)
    broker.role.return_value = POLICY.roles[role]
    session = AssumedSession(access_key_id="ASIAEXAMPLE", secret_access_key="secret", session_token="token",
                             expiration=NOW + timedelta(hours=1), assumed_role_arn="arn:x", source_identity="alice")
    broker.assume.return_value = Issued(role=POLICY.roles[role], session=session, session_name="alice",
                                        seconds=3600, warnings=[])

    def fetch(url: str, timeout: float) -> bytes:
        fetched.append(url)
        return json.dumps({"SigninToken": "signin-token"}).encode()

    return ConsoleLinks(broker, issuer_url="https://broker.example.com", clock=lambda: NOW, federation_url=None,
                        fetch=fetch)


ALICE = Identity(subject="alice@example.com", groups=frozenset({"admins"}), claims={})
CONTEXT = CallContext(request_id="r1")


@pytest.mark.parametrize(("role", "signin", "console"), [
    ("admin", "signin.aws.amazon.com", "eu-west-1.console.aws.amazon.com"),
    ("gov-admin", "signin.amazonaws-us-gov.com", "console.amazonaws-us-gov.com"),
    ("cn-admin", "signin.amazonaws.cn", "console.amazonaws.cn"),
])
def test_each_partition_signs_in_at_its_own_hosts(role: str, signin: str, console: str) -> None:
    fetched: list[str] = []
    link = links(role, fetched).link(ALICE, role, context=CONTEXT)
    assert urlsplit(fetched[0]).netloc == signin
    parts = urlsplit(link["url"])
    assert (parts.scheme, parts.netloc, parts.path) == ("https", signin, "/federation")
    query = parse_qs(parts.query)
    assert query["Action"] == ["login"] and query["SigninToken"] == ["signin-token"]
    region = POLICY.roles[role].account.region
    assert query["Destination"] == [f"https://{console}/console/home?region={region}"]
    assert link["expires_at"] == (NOW + timedelta(minutes=15)).isoformat()


def test_service_and_region_make_a_deep_link() -> None:
    link = links("admin", []).link(ALICE, "admin", context=CONTEXT, service="s3", region="us-west-2")
    destination = parse_qs(urlsplit(link["url"]).query)["Destination"][0]
    assert destination == "https://us-west-2.console.aws.amazon.com/s3/home?region=us-west-2"


def test_a_destination_path_stays_on_the_console() -> None:
    link = links("gov-admin", []).link(ALICE, "gov-admin", context=CONTEXT,
                                       destination="/cloudwatch/home?region=us-gov-west-1#logsV2:log-groups")
    destination = parse_qs(urlsplit(link["url"]).query)["Destination"][0]
    assert destination == "https://console.amazonaws-us-gov.com/cloudwatch/home?region=us-gov-west-1#logsV2:log-groups"


def test_a_region_of_another_partition_is_refused_before_any_session() -> None:
    console = links("cn-admin", [])
    with pytest.raises(BadRequest, match="us-east-1 is not a region of partition aws-cn"):
        console.link(ALICE, "cn-admin", context=CONTEXT, region="us-east-1")
    assert console._broker.assume.call_count == 0  # type: ignore[attr-defined]


def test_service_and_destination_together_are_refused() -> None:
    with pytest.raises(BadRequest, match="a service or a destination, not both"):
        console_destination(POLICY.roles["admin"], "eu-west-1", service="s3", destination="/ec2/home")


def test_the_configured_federation_url_wins_for_the_local_stack() -> None:
    fetched: list[str] = []
    console = links("gov-admin", fetched)
    console._federation = "http://127.0.0.1:8003/federation"
    link = console.link(ALICE, "gov-admin", context=CONTEXT)
    assert fetched[0].startswith("http://127.0.0.1:8003/federation?Action=getSigninToken")
    assert link["url"].startswith("http://127.0.0.1:8003/federation?Action=login")


@pytest.mark.parametrize("destination", [
    "https://evil.example.com/",         # a URL, not a path
    "//evil.example.com/",               # scheme-relative
    "evil.example.com/x",                # no leading slash: would extend the host
    "@evil.example.com/x",               # userinfo
    ".evil.example.com/",
    "/\\evil.example.com/",              # browsers read \ as /
    "/%5Cevil.example.com/",
    "/s3//evil.example.com",
    "/%2F%2Fevil.example.com",
    "/s3/home\r\nSet-Cookie: x=1",
    "/s3/home\x00",
    "/s3/home?region=eu-west-1 x",
    "/s3/h\u00f6me",
    "/s3/home\u202e",
    "/" + "a" * 1100,
    "",
    17,
])
def test_a_destination_that_could_leave_the_console_is_refused(destination: object) -> None:
    with pytest.raises(BadRequest, match="destination"):
        validate_fields({"role": "admin", "destination": destination}, CONSOLE_FIELDS)


@pytest.mark.parametrize(("field", "value"), [
    ("service", "S3"), ("service", "s3/../x"), ("service", "s3?x=1"), ("service", ""), ("service", "a" * 41),
    ("service", "-s3"), ("service", "s3.evil.com"), ("service", 3),
    ("region", "eu-west"), ("region", "EU-WEST-1"), ("region", "eu-west-1.evil.com"), ("region", "x" * 30),
    ("region", "eu-west-1/"), ("region", ["eu-west-1"]),
])
def test_service_and_region_must_match_their_patterns(field: str, value: object) -> None:
    with pytest.raises(BadRequest, match=repr(field)):
        validate_fields({"role": "admin", field: value}, CONSOLE_FIELDS)


def test_good_console_fields_pass() -> None:
    body = validate_fields({"role": "admin", "service": "dynamodbv2", "region": "us-gov-west-1",
                            "destination": "/s3/buckets/logs?prefix=app%2F2030&tab=objects"}, CONSOLE_FIELDS)
    assert body == {"role": "admin", "service": "dynamodbv2", "region": "us-gov-west-1",
                    "destination": "/s3/buckets/logs?prefix=app%2F2030&tab=objects"}


def test_every_destination_built_is_on_the_partitions_console_host() -> None:
    """Whatever validation lets through, the link's host is the console's own."""
    for destination in ["/", "/s3", "/a@b/c", "/x?y=https:/z", "/%40evil.com", "/;evil.com", "/:443@evil"]:
        body = validate_fields({"role": "admin", "destination": destination}, CONSOLE_FIELDS)
        url = console_destination(POLICY.roles["admin"], "eu-west-1", service=None, destination=body["destination"])
        assert urlsplit(url).netloc == "eu-west-1.console.aws.amazon.com", destination
