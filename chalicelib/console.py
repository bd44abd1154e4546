"""AWS console sign-in links through the federation endpoint, deep-linked and partition-aware.

The ``getSigninToken`` call carries the session's keys in its query string,
so that URL is never logged; the resulting link is itself a credential for
15 minutes and only ever goes back to the person who asked.

Each partition has its own sign-in and console hosts, taken from the role's
ARN: a session of ``arn:aws-us-gov:...`` signs in at
``signin.amazonaws-us-gov.com`` and nowhere else. The link lands on a
console page the caller may choose (a service, a region, or a path), but
always on the partition's console host: the destination is built here from
validated parts and checked once more after it is built.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from chalicelib.access.policy import Role
from chalicelib.audit import CallContext
from chalicelib.broker import Broker
from chalicelib.exceptions import AwsRefused, BadRequest, DependencyDown
from chalicelib.identity.tokens import Identity

SIGNIN_TOKEN_LIFETIME = timedelta(minutes=15)

Fetch = Callable[[str, float], bytes]


@dataclass(frozen=True)
class Partition:
    """An AWS partition's sign-in and console hosts."""

    name: str
    signin_host: str
    console_host: str
    regional_console: bool  # <region>.console.aws.amazon.com lands in the region directly

    def console_host_for(self, region: str) -> str:
        return f"{region}.{self.console_host}" if self.regional_console else self.console_host


# The hosts of the AWS IAM User Guide's "custom identity broker" sign-in, per partition.
PARTITIONS = {
    "aws": Partition("aws", "signin.aws.amazon.com", "console.aws.amazon.com", regional_console=True),
    "aws-us-gov": Partition("aws-us-gov", "signin.amazonaws-us-gov.com", "console.amazonaws-us-gov.com",
                            regional_console=False),
    "aws-cn": Partition("aws-cn", "signin.amazonaws.cn", "console.amazonaws.cn", regional_console=False),
}


def partition_of(role: Role) -> Partition:
    name = role.role_arn.split(":")[1]
    partition = PARTITIONS.get(name)
    if partition is None:
        raise BadRequest(f"console links exist for the {', '.join(PARTITIONS)} partitions; role {role.name} is in "
                         f"{name}")
    return partition


def region_partition(region: str) -> str:
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-iso"):
        return "aws-iso"
    return "aws"


def console_destination(role: Role, region: str, *, service: str | None, destination: str | None) -> str:
    """Where the link lands: ``https://<console host><path>``, with the host fixed by the role's partition.

    ``service``, ``region`` and ``destination`` arrive validated
    (``chalicelib.validation``); this refuses combinations, and a result
    that is not on the console host whatever the parts were.
    """
    if service and destination:
        raise BadRequest("give a service or a destination, not both")
    partition = partition_of(role)
    if region_partition(region) != partition.name:
        raise BadRequest(f"{region} is not a region of partition {partition.name}, where role {role.name} is")
    host = partition.console_host_for(region)
    path = destination or f"/{service or 'console'}/home?region={region}"
    url = f"https://{host}{path}"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or parts.netloc != host:
        raise BadRequest("the destination must be a path on the AWS console")
    return url


def _fetch(url: str, timeout: float) -> bytes:
    if not url.startswith(("https://", "http://")):
        raise ValueError("federation URL must be http(s)")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - scheme checked
        body: bytes = response.read(64 * 1024)
        return body


class ConsoleLinks:
    """Sign-in links for console roles; ``federation_url`` replaces every partition's endpoint (local stack)."""

    def __init__(self, broker: Broker, *, issuer_url: str, clock: Callable[[], datetime],
                 federation_url: str | None = None, fetch: Fetch = _fetch) -> None:
        self._broker = broker
        self._issuer = issuer_url
        self._clock = clock
        self._federation = federation_url
        self._fetch = fetch

    def link(self, identity: Identity, role_name: str, *, context: CallContext, service: str | None = None,
             region: str | None = None, destination: str | None = None) -> dict[str, Any]:
        # The destination is settled before a session exists: a bad one costs no AssumeRole.
        role = self._broker.role(role_name, identity)
        landing = console_destination(role, region or role.account.region, service=service, destination=destination)
        federation = self._federation or f"https://{partition_of(role).signin_host}/federation"
        issued = self._broker.assume(identity, role_name, requested_seconds=None, context=context,
                                     action="console")
        session = json.dumps({"sessionId": issued.session.access_key_id,
                              "sessionKey": issued.session.secret_access_key,
                              "sessionToken": issued.session.session_token})
        query = urllib.parse.urlencode({"Action": "getSigninToken", "Session": session})
        try:
            answer = json.loads(self._fetch(f"{federation}?{query}", 5.0))
            token = answer["SigninToken"]
        except urllib.error.HTTPError as exc:
            raise AwsRefused(f"the AWS sign-in endpoint refused the session (HTTP {exc.code})") from None
        except OSError:
            raise DependencyDown("the AWS sign-in endpoint is unreachable; try again shortly") from None
        except (ValueError, KeyError, TypeError):
            raise AwsRefused("the AWS sign-in endpoint gave an unexpected answer") from None
        login = urllib.parse.urlencode({
            "Action": "login",
            "Issuer": self._issuer,
            "Destination": landing,
            "SigninToken": token,
        })
        expires = min(self._clock() + SIGNIN_TOKEN_LIFETIME, issued.session.expiration)
        return {"url": f"{federation}?{login}", "expires_at": expires.isoformat(), "role": issued.role.name}
