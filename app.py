"""rolebroker's Chalice wiring: routes, authentication, lazy getters, errors.

Authentication is an HTTP middleware rather than a Chalice authorizer: it
answers 401 for every bad token under ``chalice local``, the test client and
API Gateway alike (a built-in authorizer's denial shows up as 403 locally),
and API Gateway cannot cache its verdict across routes. It runs before any
view code; the verified ``Identity`` travels on the request's context.
"""

from __future__ import annotations

import functools
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalice.app import Chalice, Request, Response

from chalicelib.audit import AuditLog, CallContext
from chalicelib.broker import Broker
from chalicelib.exceptions import ConfigurationError, DependencyDown, RolebrokerError, Unauthenticated
from chalicelib.identity import Identity, TokenVerifier
from chalicelib.settings import Settings
from chalicelib.validation import Field, validate

app = Chalice(app_name="rolebroker")
app.log.setLevel(logging.INFO)

PUBLIC_PATHS = frozenset({"/v1/health", "/v1/client-config", "/slack/commands", "/slack/interactions"})
JSON_BODY_TYPES = ["application/json", "text/plain", "application/x-www-form-urlencoded"]
_CONTEXT_KEY = "rolebroker"


@dataclass
class Services:
    settings: Settings
    verifier: TokenVerifier
    broker: Broker
    audit: AuditLog


_services: Services | None = None


def services() -> Services:
    """Build the broker's collaborators once per Lambda container."""
    global _services
    if _services is None:
        _services = _build_services(os.environ)
    return _services


def _build_services(
    environ: Any,
    client_factory: Callable[[str], Any] | None = None,
    audit: AuditLog | None = None,
) -> Services:
    # boto3 is imported here, not at module level, so a cold start that only
    # serves /v1/health or rejects a token does not pay for it.
    import boto3
    from botocore.config import Config

    from chalicelib.policy_source import PolicyCache, source_for
    from chalicelib.sts import StsGateway

    settings = Settings.from_environ(environ)
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=5)

    def default_client(service: str) -> Any:
        return boto3.client(service, region_name=settings.region, config=config)  # type: ignore[call-overload]

    client = client_factory or default_client

    policy = PolicyCache(source_for(settings.policy_source, client), settings.policy_ttl_seconds)
    audit = audit or AuditLog()
    grants = None
    if settings.table_name:
        from chalicelib.store import GrantTable

        grants = GrantTable(client("dynamodb"), settings.table_name)
    broker = Broker(policy=policy.get, sts=StsGateway(client("sts")), audit=audit, grants=grants,
                    session_limit_seconds=settings.session_limit_seconds)
    return Services(settings=settings, verifier=TokenVerifier(settings), broker=broker, audit=audit)


# --------------------------------------------------------------------------
# Errors and authentication


def error_response(code: str, message: str, status: int, request_id: str,
                   headers: dict[str, str] | None = None) -> Response:
    return Response(
        body={"Code": code, "Message": message, "RequestId": request_id},
        status_code=status,
        headers={"X-Request-Id": request_id, **(headers or {})},
    )


def request_id(request: Request) -> str:
    ctx = request.context.setdefault(_CONTEXT_KEY, {})
    if "request_id" not in ctx:
        ctx["request_id"] = request.context.get("requestId") or str(uuid.uuid4())
    return str(ctx["request_id"])


def call_context(request: Request, channel: str = "api") -> CallContext:
    return CallContext(
        request_id=request_id(request),
        source_ip=(request.context.get("identity") or {}).get("sourceIp"),
        user_agent=request.headers.get("user-agent"),
        channel=channel,
    )


def _map_error(request: Request, exc: Exception) -> Response:
    rid = request_id(request)
    if isinstance(exc, RolebrokerError):
        headers = {"WWW-Authenticate": 'Bearer realm="rolebroker"'} if exc.status == 401 else None
        return error_response(exc.code, str(exc), exc.status, rid, headers)
    if isinstance(exc, ConfigurationError):
        app.log.error("configuration error: %s", exc)
        return error_response("ServiceUnavailableError",
                              "the broker is misconfigured; an operator must check its settings", 503, rid)
    app.log.exception("unexpected error (request id %s)", rid)
    return error_response("InternalServerError",
                          f"unexpected error; report request id {rid} to the operators", 500, rid)


@app.middleware("http")
def authenticate(event: Request, get_response: Callable[[Request], Response]) -> Response:
    rid = request_id(event)
    if event.path not in PUBLIC_PATHS:
        try:
            svc = services()
            event.context[_CONTEXT_KEY]["identity"] = svc.verifier.verify(event.headers.get("authorization"))
        except (Unauthenticated, DependencyDown) as exc:
            if isinstance(exc, Unauthenticated):
                svc.audit.record(action="authenticate", outcome="denied", context=call_context(event),
                                 reason=str(exc), path=event.path)
            return _map_error(event, exc)
        except Exception as exc:
            return _map_error(event, exc)
    response = get_response(event)
    response.headers.setdefault("X-Request-Id", rid)
    return response


def caller() -> Identity:
    request = app.current_request
    assert request is not None
    identity: Identity = request.context[_CONTEXT_KEY]["identity"]
    return identity


def api(path: str, methods: list[str] | None = None, **kwargs: Any) -> Callable[..., Any]:
    """``app.route`` whose view maps domain errors to the contract's error shape."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def mapped(*args: Any, **kw: Any) -> Any:
            try:
                return view(*args, **kw)
            except Exception as exc:
                assert app.current_request is not None
                return _map_error(app.current_request, exc)

        if methods and "POST" in methods:
            kwargs.setdefault("content_types", JSON_BODY_TYPES)
        registered: Callable[..., Any] = app.route(path, methods=methods or ["GET"], **kwargs)(mapped)
        return registered

    return decorate


def raw_body(request: Request) -> bytes:
    raw = request.raw_body
    return raw.encode("utf-8") if isinstance(raw, str) else raw


def broker_url(request: Request) -> str:
    configured = services().settings.public_url
    if configured:
        return configured
    host = request.headers.get("host", "127.0.0.1:8000")
    proto = request.headers.get("x-forwarded-proto", "http")
    stage = request.context.get("stage")
    suffix = f"/{stage}" if stage and host.endswith(".amazonaws.com") else ""
    return f"{proto}://{host}{suffix}"


# --------------------------------------------------------------------------
# Routes


@api("/v1/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@api("/v1/client-config")
def client_config() -> dict[str, str]:
    settings = services().settings
    return {"issuer": settings.issuer, "client_id": settings.client_id or settings.audiences[0],
            "scopes": "openid email profile offline_access"}


@api("/v1/roles")
def list_roles() -> dict[str, Any]:
    return {"roles": services().broker.roles(caller())}


@api("/v1/credentials", methods=["POST"])
def issue_credentials() -> dict[str, Any]:
    request = app.current_request
    assert request is not None
    body = validate(raw_body(request), {"role": Field("role"), "duration_seconds": Field("duration", False)})
    return services().broker.credentials(
        caller(),
        body["role"],
        requested_seconds=body.get("duration_seconds"),
        broker_url=broker_url(request),
        context=call_context(request),
    )


@api("/v1/config")
def aws_config() -> Response:
    request = app.current_request
    assert request is not None
    text = services().broker.config(caller(), broker_url(request))
    return Response(body=text, headers={"Content-Type": "text/plain; charset=utf-8"})
