"""The broker's HTTP API: one method per route, returning plain data, raising ``RoleBrokerError``."""

from __future__ import annotations

import json

from rolebroker._fast import CACHE_FORMAT, CREDENTIAL_KEYS, credentials_problem
from rolebroker.errors import (
    LOGIN_HINT,
    BrokerError,
    NotABroker,
    RoleBrokerError,
    TokenError,
    UnexpectedAnswer,
    remember_secret,
)
from rolebroker.profiles import valid_region
from rolebroker.text import one_line, parse_timestamp
from rolebroker.transport import HttpResponse, check_transport, http_request, is_console_url

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from rolebroker.tokens import TokenSource

# ``requests`` follows next_token; beyond this many pages it says more remain.
MAX_PAGES = 100


class BrokerClient:
    """The broker's HTTP API: methods return plain data and raise ``RoleBrokerError``."""

    def __init__(
        self,
        base_url: str,
        token: TokenSource | None,
        *,
        timeout: float,
        urlopen: Callable[[Any, float], Any] | None = None,
    ) -> None:
        check_transport(base_url, "broker")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._urlopen = urlopen

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None, *, role: str | None = None,
              auth: bool = True) -> HttpResponse:
        headers = {"Accept": "application/json"}
        if auth and self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.fresh()}"
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode("utf-8")
        answer = http_request(method, self.base_url + path, what="broker", timeout=self._timeout, headers=headers,
                              body=data, urlopen=self._urlopen, shown_url=self.base_url)
        if not 200 <= answer.status < 300:
            raise self._error(answer, role)
        return answer

    def _error(self, answer: HttpResponse, role: str | None) -> RoleBrokerError:
        doc = answer.json_object() or {}
        if answer.status in (403, 404) and not isinstance(doc.get("Message"), str):
            # Every refusal of the broker's own carries "Message". A 403 or 404
            # without it is API Gateway ({"message": "Missing Authentication
            # Token"}), `chalice local` or some other server saying there is no
            # such route: a wrong URL, not a denial. Its text is never shown:
            # chalice local's quotes the whole Authorization header.
            return NotABroker(self._not_a_broker(answer))
        message = doc.get("Message") or doc.get("message")
        if not isinstance(message, str) or not message.strip():
            return UnexpectedAnswer(f"unexpected answer from broker ({answer.describe()})")
        message = one_line(message)
        request_id = doc.get("RequestId") or answer.headers.get("x-request-id") or answer.headers.get(
            "x-amzn-requestid")
        rid = f"request id {one_line(str(request_id), 80)}" if request_id else ""
        suffix = f" ({rid})" if rid else ""
        status = answer.status
        if status == 401:
            advice = self._token.advice if self._token else LOGIN_HINT
            return TokenError(f"the broker rejected your token: {message}{suffix}; {advice}")
        if status == 403 and role and role not in message:
            return BrokerError(f"access denied for role {role}: {message}{suffix}")
        if status == 429:
            return BrokerError(f"{message}{suffix}; the broker is busy, try again in a moment")
        if status >= 500:
            return BrokerError(f"{message} (HTTP {status}{', ' + rid if rid else ''})")
        return BrokerError(f"{message}{suffix}")

    def _not_a_broker(self, answer: HttpResponse) -> str:
        hint = ""
        if self.base_url.endswith("/v1"):
            hint = f" (leave off the trailing /v1: {self.base_url[:-3]})"
        return (f"{self.base_url} does not answer like a rolebroker broker (HTTP {answer.status} without the broker's "
                f"error document); check --url or ROLEBROKER_URL{hint}: it is the address whose /v1/health "
                "answers {\"status\": \"ok\"}")

    def _json(self, method: str, path: str, body: Mapping[str, Any] | None = None, *, role: str | None = None,
              auth: bool = True) -> tuple[dict[str, Any], HttpResponse]:
        answer = self._call(method, path, body, role=role, auth=auth)
        doc = answer.json_object()
        if doc is None:
            raise UnexpectedAnswer(f"unexpected answer from broker ({answer.describe()})")
        return doc, answer

    def _list(self, path: str, field: str) -> list[dict[str, Any]]:
        return self._page(path, field)[0]

    def _page(self, path: str, field: str) -> tuple[list[dict[str, Any]], dict[str, Any], HttpResponse]:
        doc, answer = self._json("GET", path)
        items = doc.get(field)
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise UnexpectedAnswer(f"unexpected answer from broker ({answer.describe()} without {field!r})")
        return items, doc, answer

    def roles(self) -> list[dict[str, Any]]:
        return self._list("/v1/roles", "roles")

    def credentials(self, role: str, duration: int | None, scope: str | None = None,
                    warn: Callable[[str], None] | None = None) -> dict[str, Any]:
        """A cache entry: the credential_process document, its expiry as a number, the region.

        The broker's ``warnings`` (a session shorter than asked, and why) go
        to ``warn``: they are for the person, never part of the entry.
        """
        body: dict[str, Any] = {"role": role}
        if duration:
            body["duration_seconds"] = duration
        if scope:
            body["scope"] = scope
        doc, answer = self._json("POST", "/v1/credentials", body, role=role)
        entry = credentials_entry(doc, role, answer)
        warnings = doc.get("warnings")
        if warn is not None and isinstance(warnings, list):
            for text in warnings:
                if isinstance(text, str) and text.strip():
                    warn(f"the broker says: {one_line(text)}")
        return entry

    def config(self) -> str:
        answer = self._call("GET", "/v1/config")
        if answer.content_type != "text/plain":
            raise UnexpectedAnswer(f"unexpected answer from broker ({answer.describe()})")
        return answer.body.decode("utf-8", "replace")

    def console(self, role: str, **landing: str | None) -> dict[str, Any]:
        """A sign-in link; ``landing`` holds the optional ``service``, ``region`` and ``destination``."""
        body = {"role": role, **{name: value for name, value in landing.items() if value}}
        doc, answer = self._json("POST", "/v1/console", body, role=role)
        url = doc.get("url")
        if not isinstance(url, str) or not is_console_url(url):
            raise UnexpectedAnswer(f"unexpected answer from broker ({answer.describe()} without an https url)")
        return doc

    def create_request(self, role: str | list[str], duration: int | None, reason: str,
                       **extra: str | None) -> dict[str, Any]:
        """File a request for one role (``role``) or several (``roles``, one decision); ``extra``:
        ticket, scope, start_at, each sent only when given."""
        roles = [role] if isinstance(role, str) else role
        body: dict[str, Any] = {"role": roles[0]} if len(roles) == 1 else {"roles": roles}
        body["reason"] = reason
        if duration:
            body["duration_seconds"] = duration
        body.update({key: value for key, value in extra.items() if value})
        return self._json("POST", "/v1/requests", body, role=roles[0] if len(roles) == 1 else None)[0]

    def break_glass(self, role: str, reason: str, ticket: str, duration: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {"role": role, "reason": reason, "ticket": ticket}
        if duration:
            body["duration_seconds"] = duration
        return self._json("POST", "/v1/break-glass", body, role=role)[0]

    def extend(self, request_id: str, duration: int, reason: str) -> tuple[dict[str, Any], bool]:
        """(the answer, whether it was extended at once) for more time on a grant."""
        doc, answer = self._json("POST", f"{_request_path(request_id)}/extend",
                                 {"duration_seconds": duration, "reason": reason})
        return doc, answer.status == 200

    def requests(self, max_pages: int = MAX_PAGES, kind: str | None = None) -> tuple[list[dict[str, Any]], bool]:
        """Every request the caller may see, following ``next_token``; and whether more remain unread.

        A broker that sends no ``next_token`` (older ones) has answered in one page.
        """
        from urllib.parse import quote

        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        token: str | None = None
        for _ in range(max_pages):
            params = ([f"kind={quote(kind, safe='')}"] if kind else []) + (
                [f"next_token={quote(token, safe='')}"] if token else [])
            query = "?" + "&".join(params) if params else ""
            page, doc, answer = self._page(f"/v1/requests{query}", "requests")
            items += page
            token = doc.get("next_token")
            if token is None:
                return items, False
            if not isinstance(token, str) or not token:
                raise UnexpectedAnswer(f"unexpected answer from broker ({answer.describe()} with a malformed "
                                       "'next_token')")
            if token in seen:
                raise UnexpectedAnswer(f"unexpected answer from broker ({answer.describe()}: next_token "
                                       f"{one_line(token, 40)!r} came back twice)")
            seen.add(token)
        return items, True

    def decide(self, request_id: str, verdict: str, reason: str | None = None,
               roles: list[str] | None = None) -> dict[str, Any]:
        """``verdict`` is approve, deny, cancel, revoke or review (of a break-glass); deny, revoke and review
        take a reason, approve ``roles`` (to narrow a request for several roles)."""
        body: dict[str, Any] = {"reason": reason} if reason else {}
        if roles:
            body["roles"] = roles
        return self._json("POST", f"{_request_path(request_id)}/{verdict}", body)[0]

    def request(self, request_id: str) -> dict[str, Any]:
        """One request with its history."""
        return self._json("GET", _request_path(request_id))[0]

    def evidence(self, request_id: str) -> dict[str, Any]:
        """The request, its history, its grant's sessions and the CloudTrail queries for them."""
        return self._json("GET", f"{_request_path(request_id)}/evidence")[0]

    def access(self, role: str | None = None, identity: str | None = None,
               groups: str | None = None) -> dict[str, Any]:
        """``GET /v1/access``: what the caller can use (no arguments), who can use ``role``,
        or what ``identity`` (with ``groups``) can use."""
        from urllib.parse import urlencode

        params = {name: value for name, value in (("role", role), ("identity", identity), ("groups", groups))
                  if value is not None}
        query = f"?{urlencode(params)}" if params else ""
        return self._json("GET", f"/v1/access{query}", role=role)[0]

    def client_config(self) -> dict[str, Any]:
        return self._json("GET", "/v1/client-config", auth=False)[0]


def _request_path(request_id: str) -> str:
    from urllib.parse import quote

    return f"/v1/requests/{quote(request_id, safe='')}"


def credentials_entry(doc: Mapping[str, Any], role: str, answer: HttpResponse) -> dict[str, Any]:
    creds = doc.get("credentials")
    problem = credentials_problem(creds)
    if problem or not isinstance(creds, dict):
        raise UnexpectedAnswer(f"unexpected answer from broker ({answer.describe()}: {problem})")
    for name in ("AccessKeyId", "SecretAccessKey", "SessionToken"):
        remember_secret(creds[name])
    try:
        expires_at = parse_timestamp(creds["Expiration"])
    except ValueError:
        raise UnexpectedAnswer(
            f"unexpected answer from broker ({answer.describe()}: Expiration is not an ISO 8601 time)") from None
    profile = doc.get("profile")
    region = _region_from_profile(profile.get("config") if isinstance(profile, dict) else None)
    return {
        "format": CACHE_FORMAT,
        "role": role,
        "credentials": {name: creds[name] for name in CREDENTIAL_KEYS},
        "expires_at": expires_at,
        "region": region or (doc["region"] if isinstance(doc.get("region"), str) and valid_region(doc["region"])
                             else None),
    }


def _region_from_profile(text: object) -> str | None:
    if not isinstance(text, str):
        return None
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq and key.strip() == "region" and valid_region(value.strip()):
            return value.strip()
    return None

