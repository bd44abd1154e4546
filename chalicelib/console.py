"""AWS console sign-in links through the federation endpoint.

The ``getSigninToken`` call carries the session's keys in its query string,
so that URL is never logged; the resulting link is itself a credential for
15 minutes and only ever goes back to the person who asked.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from chalicelib.audit import CallContext
from chalicelib.broker import Broker
from chalicelib.exceptions import AwsRefused, DependencyDown
from chalicelib.identity.tokens import Identity

SIGNIN_TOKEN_LIFETIME = timedelta(minutes=15)
DEFAULT_FEDERATION_URL = "https://signin.aws.amazon.com/federation"

Fetch = Callable[[str, float], bytes]


def _fetch(url: str, timeout: float) -> bytes:
    if not url.startswith(("https://", "http://")):
        raise ValueError("federation URL must be http(s)")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - scheme checked
        body: bytes = response.read(64 * 1024)
        return body


class ConsoleLinks:
    def __init__(self, broker: Broker, *, issuer_url: str, clock: Callable[[], datetime],
                 federation_url: str = DEFAULT_FEDERATION_URL, fetch: Fetch = _fetch) -> None:
        self._broker = broker
        self._issuer = issuer_url
        self._clock = clock
        self._federation = federation_url
        self._fetch = fetch

    def link(self, identity: Identity, role_name: str, *, context: CallContext) -> dict[str, Any]:
        issued = self._broker.assume(identity, role_name, requested_seconds=None, context=context,
                                     action="console")
        session = json.dumps({"sessionId": issued.session.access_key_id,
                              "sessionKey": issued.session.secret_access_key,
                              "sessionToken": issued.session.session_token})
        query = urllib.parse.urlencode({"Action": "getSigninToken", "Session": session})
        try:
            answer = json.loads(self._fetch(f"{self._federation}?{query}", 5.0))
            token = answer["SigninToken"]
        except urllib.error.HTTPError as exc:
            raise AwsRefused(f"the AWS sign-in endpoint refused the session (HTTP {exc.code})") from None
        except OSError:
            raise DependencyDown("the AWS sign-in endpoint is unreachable; try again shortly") from None
        except (ValueError, KeyError, TypeError):
            raise AwsRefused("the AWS sign-in endpoint gave an unexpected answer") from None
        region = issued.role.account.region
        login = urllib.parse.urlencode({
            "Action": "login",
            "Issuer": self._issuer,
            "Destination": f"https://{region}.console.aws.amazon.com/console/home?region={region}",
            "SigninToken": token,
        })
        expires = min(self._clock() + SIGNIN_TOKEN_LIFETIME, issued.session.expiration)
        return {"url": f"{self._federation}?{login}", "expires_at": expires.isoformat(), "role": issued.role.name}
