"""rolebroker's Chalice wiring: routes, authentication, lazy getters, errors.

Authentication is an HTTP middleware rather than a Chalice authorizer: it
answers 401 for every bad token under ``chalice local``, the test client and
API Gateway alike (a built-in authorizer's denial shows up as 403 locally),
and API Gateway cannot cache its verdict across routes. It runs before any
view code; the verified ``Identity`` travels on the request's context. The
Slack routes are authenticated by Slack's request signature instead.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from chalice.app import Chalice, Request, Response

from chalicelib.audit import AuditLog, CallContext
from chalicelib.aws.secrets import RefreshingSecret
from chalicelib.exceptions import ConfigurationError, DependencyDown, RolebrokerError, Unauthenticated
from chalicelib.gcpause import gc_paused
from chalicelib.identity.tokens import Identity, TokenVerifier
from chalicelib.settings import Settings
from chalicelib.validation import (
    APPROVE_FIELDS,
    BREAK_GLASS_FIELDS,
    CONSOLE_FIELDS,
    CREDENTIALS_FIELDS,
    DECISION_FIELDS,
    EXTEND_FIELDS,
    REVOCATION_FIELDS,
    Field,
    access_query,
    checked_request_id,
    page_params,
    parse_json_object,
    request_body,
    validate,
)

if TYPE_CHECKING:
    from chalicelib.broker import Broker
    from chalicelib.chat.chatops import ChatOps
    from chalicelib.chat.directory import Directory
    from chalicelib.chat.dispatch import Dispatcher
    from chalicelib.chat.slack import SlackOrigin, SlackRequestVerifier, SlackWorkspaces
    from chalicelib.chat.tasks import TaskSeal, TaskWorker
    from chalicelib.console import ConsoleLinks
    from chalicelib.inquiries import AccessInquiries
    from chalicelib.jit.breakglass import BreakGlassDesk
    from chalicelib.jit.evidence import GrantEvidence
    from chalicelib.jit.extensions import Extensions
    from chalicelib.jit.requests import AccessRequests
    from chalicelib.jit.revocations import Revocations

app = Chalice(app_name="rolebroker")
app.log.setLevel(logging.INFO)

PUBLIC_PATHS = frozenset({"/v1/health", "/v1/client-config", "/slack/commands", "/slack/interactions"})
# Bodies are parsed by what they must be (JSON, or Slack's signed form), not
# by their Content-Type, so curl's default form type works and a wrong type
# gets the same clear 400 as any other bad body.
ANY_BODY_TYPE = ["*/*"]
_CONTEXT_KEY = "rolebroker"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(eq=False)
class Services:
    """The broker's collaborators, built once per container; compared by identity."""

    settings: Settings
    verifier: TokenVerifier
    broker: Broker
    audit: AuditLog
    make_console: Callable[[], ConsoleLinks]  # built on the first link (POST /v1/console)
    inquiries: Callable[[], AccessInquiries]  # built on the first question (GET /v1/access)
    client: Callable[[str], Any]
    clock: Callable[[], datetime] = utcnow
    access: AccessRequests | None = None
    glass: BreakGlassDesk | None = None
    extensions: Extensions | None = None
    evidence: GrantEvidence | None = None
    directory: Directory | None = None
    chatops: ChatOps | None = None
    dispatcher: Dispatcher | None = None
    slack_workspaces: SlackWorkspaces | None = None
    task_secret: RefreshingSecret | None = None
    task_seal: TaskSeal | None = None
    worker: TaskWorker | None = None
    kill_switch: Revocations | None = None
    _slack_secret: RefreshingSecret | None = None
    _slack_verifier: tuple[str, SlackRequestVerifier] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _console: ConsoleLinks | None = field(default=None, repr=False)

    @property
    def console(self) -> ConsoleLinks:
        if self._console is None:
            self._console = self.make_console()
        return self._console

    @console.setter
    def console(self, links: ConsoleLinks) -> None:
        self._console = links

    def requests(self) -> AccessRequests:
        if self.access is None:
            raise DependencyDown("just-in-time access is not configured on this broker (ROLEBROKER_TABLE)")
        return self.access

    def break_glass(self) -> BreakGlassDesk:
        if self.glass is None:
            raise DependencyDown("just-in-time access is not configured on this broker (ROLEBROKER_TABLE)")
        return self.glass

    def extending(self) -> Extensions:
        if self.extensions is None:
            raise DependencyDown("just-in-time access is not configured on this broker (ROLEBROKER_TABLE)")
        return self.extensions

    def revocations(self) -> Revocations:
        if self.kill_switch is None:
            raise DependencyDown("revocations need ROLEBROKER_TABLE, which this broker is not configured with")
        return self.kill_switch

    def grant_evidence(self) -> GrantEvidence:
        if self.evidence is None:
            raise DependencyDown("just-in-time access is not configured on this broker (ROLEBROKER_TABLE)")
        return self.evidence

    def slack(self) -> tuple[SlackRequestVerifier, ChatOps, Dispatcher]:
        """Slack's verifier (its secret re-read every few minutes, so a rotation needs no redeploy),
        worker and dispatcher."""
        if self.chatops is None or self.dispatcher is None or not self.settings.slack_signing_secret:
            raise DependencyDown("Slack is not configured on this broker "
                                 "(ROLEBROKER_SLACK_SIGNING_SECRET and ROLEBROKER_TABLE)")
        with self._lock:
            if self._slack_secret is None:
                self._slack_secret = RefreshingSecret(self.settings.slack_signing_secret, self.client)
            secret = self._slack_secret.get()
            if self._slack_verifier is None or self._slack_verifier[0] != secret:
                from chalicelib.chat.slack import SlackRequestVerifier

                self._slack_verifier = (secret, SlackRequestVerifier(secret))
            return self._slack_verifier[1], self.chatops, self.dispatcher


_services: Services | None = None
_services_lock = threading.Lock()


def services() -> Services:
    """Build the broker's collaborators once per Lambda container (or process)."""
    global _services
    if _services is None:
        with _services_lock:  # chalice local serves requests on threads
            if _services is None:
                with gc_paused():  # what is built here lives as long as the container
                    _services = _build_services(os.environ)
    return _services


def _build_services(
    environ: Any,
    client_factory: Callable[[str], Any] | None = None,
    audit: AuditLog | None = None,
    inline_tasks: bool = False,
    clock: Callable[[], datetime] = utcnow,
    client_with: Callable[[str, Mapping[str, str]], Any] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> Services:
    # botocore and the rest are imported here, not at module level, so a cold
    # start pays for them once, and only when a request needs them. Clients
    # come from botocore itself: boto3 adds nothing these calls use, and
    # importing it (with s3transfer) costs more than the rest of a cold start.
    import botocore.session
    from botocore.config import Config

    from chalicelib.access.source import PolicyCache, source_for
    from chalicelib.aws import limits
    from chalicelib.aws.sts import StsGateway
    from chalicelib.broker import Broker, NoGrants

    settings = Settings.from_environ(environ)
    # The kill switch's lease is sized from these numbers (chalicelib/aws/limits.py).
    config = Config(retries={"mode": "standard", "total_max_attempts": limits.ATTEMPTS},
                    connect_timeout=limits.CONNECT_TIMEOUT, read_timeout=limits.READ_TIMEOUT)

    session = botocore.session.get_session()

    def default_client(service: str) -> Any:
        return session.create_client(service, region_name=settings.region, config=config)

    client = client_factory or default_client
    policy = PolicyCache(source_for(settings.policy_source, client), settings.policy_ttl_seconds)
    audit = audit or AuditLog()
    if settings.event_bus:
        from chalicelib.aws.events import EventBridgePublisher

        # One short try: the audit line is the record, the event a copy.
        events = client_factory("events") if client_factory else session.create_client(
            "events", region_name=settings.region,
            config=Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=1, read_timeout=2))
        audit.publish_to(EventBridgePublisher(events, settings.event_bus))
    store = None
    if settings.table_name:
        from chalicelib.aws.store import AccessStore

        store = AccessStore(client("dynamodb"), settings.table_name)
    if settings.source_credentials_secret:
        from chalicelib.aws.source_credentials import sts_client_from_secret

        sts = sts_client_from_secret(client("secretsmanager"), settings.source_credentials_secret,
                                     region=settings.region, config=config)
    else:
        sts = client("sts")
    kill_switch = None
    if store is not None and settings.table_name:
        kill_switch = _kill_switch(settings, settings.table_name, client("dynamodb"), sts, policy, audit, clock,
                                   sleep, client_with or _credentials_client(session, settings, config), store)
        kill_switch_store = store
        kill_switch.seen = lambda key: kill_switch_store.recall_identity(key, clock()) is not None
    broker = Broker(policy=policy.get, sts=StsGateway(sts), audit=audit, grants=store,
                    session_limit_seconds=settings.session_limit_seconds, clock=clock,
                    revoked=kill_switch.refuse_if_revoked if kill_switch else None,
                    issued=kill_switch.session_issued if kill_switch else None)

    def make_console() -> ConsoleLinks:
        # Imported on first use, like the inquiries below.
        from chalicelib.console import ConsoleLinks

        return ConsoleLinks(broker, issuer_url=settings.public_url or "rolebroker", clock=clock,
                            federation_url=settings.federation_url)

    @functools.cache
    def inquiries() -> AccessInquiries:
        # Imported on first use: who-can and what-can are rare, a cold start is every container's.
        from chalicelib.inquiries import AccessInquiries

        return AccessInquiries(policy=policy.get, grants=store or NoGrants(), audit=audit, settings=settings,
                               clock=clock)

    # Issuers beyond the default are declared in the policy; the verifier looks
    # one up by its exact iss and keeps each issuer's keys across reloads.
    verifier = TokenVerifier(settings, policy_issuers=lambda iss: policy.get().issuer_for_url(iss))
    svc = Services(settings=settings, verifier=verifier, broker=broker, audit=audit,
                   make_console=make_console, inquiries=inquiries, client=client, clock=clock, kill_switch=kill_switch)
    if store is not None:
        _add_jit_and_slack(svc, store, policy.get, inline_tasks)
    return svc


def _credentials_client(session: Any, settings: Settings, config: Any) -> Callable[[str, Mapping[str, str]], Any]:
    """Clients signed with given credentials (a revoker session in a trusting account)."""
    def create(service: str, credentials: Mapping[str, str]) -> Any:
        return session.create_client(service, region_name=settings.region, config=config,
                                     aws_access_key_id=credentials["aws_access_key_id"],
                                     aws_secret_access_key=credentials["aws_secret_access_key"],
                                     aws_session_token=credentials["aws_session_token"])

    return create


def _kill_switch(settings: Settings, table: str, dynamodb: Any, sts: Any, policy: Any, audit: AuditLog,
                 clock: Callable[[], datetime], sleep: Callable[[float], None] | None,
                 client_with: Callable[[str, Mapping[str, str]], Any], grants: Any) -> Revocations:
    import time

    from chalicelib.aws.iam import Revoker
    from chalicelib.aws.revocation_store import RevocationStore
    from chalicelib.jit.revocations import Revocations

    revocations = Revocations(policy=policy.get, store=RevocationStore(dynamodb, table),
                              revoker=Revoker(sts, client_with), audit=audit, clock=clock,
                              default_identity_claim=settings.identity_claim, sleep=sleep or time.sleep,
                              session_cap_seconds=settings.session_limit_seconds, grant_sessions=grants.sessions)
    policy.on_change = revocations.policy_changed
    return revocations


def _add_jit_and_slack(svc: Services, store: Any, policy: Callable[[], Any], inline_tasks: bool) -> None:
    from chalicelib.chat.chatops import ChatOps
    from chalicelib.chat.directory import Directory
    from chalicelib.chat.dispatch import (
        DispatchingNotifier,
        InlineTransport,
        LambdaTransport,
        SealedDispatcher,
        ThreadTransport,
        Transport,
    )
    from chalicelib.chat.slack import SlackWorkspaces
    from chalicelib.chat.tasks import TaskSeal, TaskWorker, epoch, signing_keys
    from chalicelib.jit.breakglass import BreakGlassDesk
    from chalicelib.jit.cloudtrail import QueryTargets
    from chalicelib.jit.evidence import GrantEvidence
    from chalicelib.jit.extensions import Extensions
    from chalicelib.jit.requests import AccessRequests

    settings = svc.settings
    svc.slack_workspaces = SlackWorkspaces(settings.slack_team_ids)
    # Without a configured key, tasks never leave this process (settings
    # refuse a worker function without one): a key of its own will do.
    svc.task_secret = RefreshingSecret(settings.task_signing_key or secrets.token_hex(32), svc.client)
    secret = svc.task_secret
    svc.task_seal = TaskSeal(lambda: signing_keys(secret.get()), clock=epoch(svc.clock))

    def run_task(task: dict[str, Any]) -> None:
        assert svc.chatops is not None
        try:
            if task.get("kind") == "revocation" and svc.kill_switch is not None:
                svc.kill_switch.resume(str(task.get("revocation")),
                                       context=CallContext(request_id=str(task.get("request_id", "worker")),
                                                           channel="worker"))
            else:
                svc.chatops.run(task)
        finally:
            svc.audit.flush()

    svc.worker = TaskWorker(svc.task_seal, store, run_task, svc.audit)
    transport: Transport
    if inline_tasks:
        transport = InlineTransport(svc.worker.handle)
    elif settings.worker_function:
        transport = LambdaTransport(svc.client("lambda"), settings.worker_function)
    else:
        transport = ThreadTransport(svc.worker.handle)
    svc.dispatcher = SealedDispatcher(svc.task_seal, transport)
    if svc.kill_switch is not None:
        dispatcher = svc.dispatcher
        svc.kill_switch.handoff = lambda revocation: dispatcher.dispatch({"kind": "revocation",
                                                                          "revocation": revocation})
    desk: dict[str, Any] = {"policy": policy, "store": store, "audit": svc.audit, "clock": svc.clock,
                            "notifier": DispatchingNotifier(svc.dispatcher), "max_open": settings.max_open_requests,
                            "revoked": svc.kill_switch.refusal_of if svc.kill_switch else None}
    svc.access = AccessRequests(**desk)
    svc.glass = BreakGlassDesk(**desk)
    svc.extensions = Extensions(**desk)
    try:
        targets = QueryTargets(event_data_store=settings.cloudtrail_event_data_store,
                               athena_table=settings.athena_cloudtrail_table)
    except ValueError as exc:
        raise ConfigurationError(f"ROLEBROKER_CLOUDTRAIL_EVENT_DATA_STORE or "
                                 f"ROLEBROKER_ATHENA_CLOUDTRAIL_TABLE: {exc}") from None
    svc.evidence = GrantEvidence(policy=policy, store=store, audit=svc.audit, clock=svc.clock, targets=targets)
    svc.directory = Directory(store, clock=svc.clock, identity_claim=settings.identity_claim)
    svc.chatops = ChatOps(policy=policy, broker=svc.broker, access=svc.access, glass=svc.glass,
                          extensions=svc.extensions, console=svc.console, directory=svc.directory, store=store,
                          slack=_slack_api(svc), clock=svc.clock, revocations=svc.kill_switch)


def _slack_api(svc: Services) -> Any:
    settings = svc.settings
    if not settings.slack_bot_token:
        return None
    from slack_sdk import WebClient
    from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

    from chalicelib.aws.secrets import resolve_secret
    from chalicelib.chat.slack import SlackApi

    def web_client() -> WebClient:
        token = resolve_secret(settings.slack_bot_token, svc.client)
        web = WebClient(token=token, base_url=settings.slack_api_url, timeout=5)
        web.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=2))
        return web

    assert svc.slack_workspaces is not None
    return SlackApi(web_client, response_url_prefixes=settings.slack_response_url_prefixes,
                    workspaces=svc.slack_workspaces)


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
    app.log.error("unexpected %s (request id %s)", type(exc).__name__, rid, exc_info=exc)
    return error_response("InternalServerError",
                          f"unexpected error; report request id {rid} to the operators", 500, rid)


@app.middleware("http")
def authenticate(event: Request, get_response: Callable[[Request], Response]) -> Response:
    try:
        return _authenticated(event, get_response)
    finally:
        if _services is not None:
            _services.audit.flush()


def _authenticated(event: Request, get_response: Callable[[Request], Response]) -> Response:
    rid = request_id(event)
    if event.path not in PUBLIC_PATHS:
        try:
            svc = services()
        except Exception as exc:
            return _map_error(event, exc)
        try:
            identity = svc.verifier.verify(event.headers.get("authorization"))
        except Unauthenticated as exc:
            svc.audit.record(action="authenticate", outcome="denied", context=call_context(event),
                             reason=str(exc), path=event.path)
            return _map_error(event, exc)
        except Exception as exc:
            return _map_error(event, exc)
        event.context[_CONTEXT_KEY]["identity"] = identity
        _remember(svc, identity)
    response = get_response(event)
    response.headers.setdefault("X-Request-Id", rid)
    return response


def _remember(svc: Services, identity: Identity) -> None:
    if svc.directory is None:
        return
    try:
        svc.directory.remember(identity)
    except RolebrokerError as exc:  # Slack only loses freshness; the API call goes on
        app.log.warning("could not record the identity snapshot: %s", exc)


def current() -> Request:
    request = app.current_request
    assert request is not None
    return request


def caller() -> Identity:
    identity: Identity = current().context[_CONTEXT_KEY]["identity"]
    return identity


def api(path: str, methods: list[str] | None = None, **kwargs: Any) -> Callable[..., Any]:
    """``app.route`` whose view maps domain errors to the contract's error shape."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def mapped(*args: Any, **kw: Any) -> Any:
            try:
                return view(*args, **kw)
            except Exception as exc:
                return _map_error(current(), exc)

        if methods and "POST" in methods:
            kwargs.setdefault("content_types", ANY_BODY_TYPE)
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
# Routes: broker


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
    request = current()
    body = validate(raw_body(request), CREDENTIALS_FIELDS)
    return services().broker.credentials(
        caller(),
        body["role"],
        requested_seconds=body.get("duration_seconds"),
        broker_url=broker_url(request),
        context=call_context(request),
        scope=body.get("scope"),
    )


@api("/v1/config")
def aws_config() -> Response:
    text = services().broker.config(caller(), broker_url(current()))
    return Response(body=text, headers={"Content-Type": "text/plain; charset=utf-8"})


@api("/v1/console", methods=["POST"])
def console_link() -> dict[str, Any]:
    request = current()
    body = validate(raw_body(request), CONSOLE_FIELDS)
    link = services().console.link(caller(), body["role"], context=call_context(request),
                                   service=body.get("service"), region=body.get("region"),
                                   destination=body.get("destination"))
    return {"url": link["url"], "expires_at": link["expires_at"]}


@api("/v1/access")
def access() -> dict[str, Any]:
    """What the caller can use; admins and auditors may ask about a role or anyone."""
    request = current()
    params = request.query_params
    query = access_query({name: params.getlist(name) for name in params} if params is not None else None)
    return services().inquiries().answer(caller(), query, context=call_context(request))


# --------------------------------------------------------------------------
# Routes: just-in-time access


@api("/v1/requests", methods=["POST"])
def create_request() -> Response:
    request = current()
    body = request_body(parse_json_object(raw_body(request)))
    created = services().requests().create(caller(), body["roles"], duration_seconds=body.get("duration_seconds"),
                                           reason=body["reason"], context=call_context(request),
                                           ticket=body.get("ticket"), scope=body.get("scope"),
                                           start_at=body.get("start_at"))
    return Response(body=created.to_dict(services().clock()), status_code=201)


@api("/v1/break-glass", methods=["POST"])
def break_glass() -> Response:
    """Immediate access without an approver, for those a role's break_glass block names."""
    request = current()
    body = validate(raw_body(request), BREAK_GLASS_FIELDS)
    opened = services().break_glass().open(caller(), body["role"], reason=body["reason"], ticket=body["ticket"],
                                           duration_seconds=body.get("duration_seconds"),
                                           context=call_context(request))
    return Response(body=opened.to_dict(services().clock()), status_code=201)


@api("/v1/requests")
def list_requests() -> dict[str, Any]:
    from chalicelib.jit.requests import MAX_PAGE_LIMIT, PAGE_LIMIT

    query = current().query_params
    limit, next_token = page_params(query, PAGE_LIMIT, MAX_PAGE_LIMIT)
    svc = services()
    kind = query.get("kind") if query else None  # page() refuses an unknown one
    found, next_token = svc.requests().page(caller(), limit=limit, next_token=next_token, kind=kind)
    now = svc.clock()
    return {"requests": [r.to_dict(now) for r in found], "next_token": next_token}


@api("/v1/requests/{request_ref}")
def get_request(request_ref: str) -> dict[str, Any]:
    found, history = services().requests().get(caller(), checked_request_id(request_ref))
    return {**found.to_dict(services().clock()), "history": history}


def _decide(request_ref: str, fields: Mapping[str, Field],
            act: Callable[[AccessRequests, Identity, str, dict[str, Any], CallContext], Any]) -> dict[str, Any]:
    """The shared shape of approve, deny, cancel and revoke."""
    request = current()
    body = validate(raw_body(request), fields, empty_ok=True)
    svc = services()
    decided = act(svc.requests(), caller(), checked_request_id(request_ref), body, call_context(request))
    result: dict[str, Any] = decided.to_dict(svc.clock())
    return result


@api("/v1/requests/{request_ref}/evidence")
def request_evidence(request_ref: str) -> dict[str, Any]:
    """The request, its history, its grant's sessions and CloudTrail queries for them."""
    return services().grant_evidence().of(caller(), checked_request_id(request_ref), context=call_context(current()))


@api("/v1/requests/{request_ref}/approve", methods=["POST"])
def approve_request(request_ref: str) -> dict[str, Any]:
    return _decide(request_ref, APPROVE_FIELDS,
                   lambda jit, who, ref, body, ctx: jit.approve(who, ref, context=ctx, roles=body.get("roles")))


@api("/v1/requests/{request_ref}/deny", methods=["POST"])
def deny_request(request_ref: str) -> dict[str, Any]:
    return _decide(request_ref, DECISION_FIELDS,
                   lambda jit, who, ref, body, ctx: jit.deny(who, ref, note=body.get("reason"), context=ctx))


@api("/v1/requests/{request_ref}/cancel", methods=["POST"])
def cancel_request(request_ref: str) -> dict[str, Any]:
    return _decide(request_ref, {}, lambda jit, who, ref, body, ctx: jit.cancel(who, ref, context=ctx))


@api("/v1/requests/{request_ref}/revoke", methods=["POST"])
def revoke_request(request_ref: str) -> dict[str, Any]:
    """Revoke the grant, then end the sessions it issued: a deny in each of its roles
    (``Revocations.end_grant``); ``sessions`` says how far that got."""
    request = current()
    body = validate(raw_body(request), DECISION_FIELDS, empty_ok=True)
    svc, who, context = services(), caller(), call_context(request)
    revoked = svc.requests().revoke(who, checked_request_id(request_ref), note=body.get("reason"), context=context)
    sessions = svc.revocations().grant_sessions_ended(who, revoked, body.get("reason"), context=context)
    return {**revoked.to_dict(svc.clock()), "sessions": sessions}


@api("/v1/requests/{request_ref}/review", methods=["POST"])
def review_request(request_ref: str) -> dict[str, Any]:
    """Complete a break-glass's post-access review (an approver of its role, not its requester)."""
    request = current()
    body = validate(raw_body(request), DECISION_FIELDS, empty_ok=True)
    svc = services()
    reviewed = svc.break_glass().review(caller(), checked_request_id(request_ref), note=body.get("reason"),
                                        context=call_context(request))
    result: dict[str, Any] = reviewed.to_dict(svc.clock())
    return result


@api("/v1/requests/{request_ref}/extend", methods=["POST"])
def extend_request(request_ref: str) -> Response:
    """More time on one's grant: 200 with the request when within the automatic limit,
    201 with a new extension request when it goes to approvers."""
    request = current()
    body = validate(raw_body(request), EXTEND_FIELDS)
    svc = services()
    result, done = svc.extending().extend(caller(), checked_request_id(request_ref),
                                          seconds=body["duration_seconds"], reason=body["reason"],
                                          context=call_context(request))
    return Response(body=result.to_dict(svc.clock()), status_code=200 if done else 201)


# --------------------------------------------------------------------------
# Routes: the kill switch


# A revocation's answer says how far it got: every account written, some, or none.
REVOCATION_STATUS = {"complete": 201, "in_progress": 202, "partial": 207, "failed": 502}


@api("/v1/revocations", methods=["POST"])
def revoke_sessions() -> Response:
    request = current()
    body = validate(raw_body(request), REVOCATION_FIELDS)
    done = services().revocations().revoke(caller(), body["identity"], body["reason"],
                                           context=call_context(request))
    return _revocation_answer(done.to_dict(), REVOCATION_STATUS[done.status], request)


def _revocation_answer(revocation: dict[str, Any], status: int, request: Request) -> Response:
    if status in (201, 202):
        return Response(body=revocation, status_code=status)
    failed = [f"{account}: {outcome['detail']}" for account, outcome in revocation["accounts"].items()
              if outcome["status"] != "written"]
    if status == 207:
        return Response(body={**revocation, "Message": f"{len(failed)} account(s) not fully revoked"},
                        status_code=status)
    rid = request_id(request)
    return Response(body={"Code": "BadGatewayError", "RequestId": rid, "revocation": revocation,
                          "Message": f"revocation {revocation['id']} is recorded but no account was written; "
                                     f"{failed[0] if failed else ''}"},
                    status_code=status, headers={"X-Request-Id": rid})


@api("/v1/revocations")
def list_revocations() -> dict[str, Any]:
    from chalicelib.jit.revocations import MAX_PAGE_LIMIT, PAGE_LIMIT

    limit, next_token = page_params(current().query_params, PAGE_LIMIT, MAX_PAGE_LIMIT)
    found, next_token = services().revocations().page(caller(), limit=limit, next_token=next_token,
                                                      context=call_context(current()))
    return {"revocations": [r.to_dict() for r in found], "next_token": next_token}


@api("/v1/revocations/{revocation_ref}")
def get_revocation(revocation_ref: str) -> dict[str, Any]:
    from chalicelib.aws.revocation_store import checked_revocation_id

    found = services().revocations().get(caller(), checked_revocation_id(revocation_ref),
                                         context=call_context(current()))
    return found.to_dict()


@api("/v1/revocations/{revocation_ref}", methods=["DELETE"])
def lift_revocation(revocation_ref: str) -> dict[str, Any]:
    from chalicelib.aws.revocation_store import checked_revocation_id

    lifted = services().revocations().lift(caller(), checked_revocation_id(revocation_ref),
                                           context=call_context(current()))
    return lifted.to_dict()


# --------------------------------------------------------------------------
# Routes: Slack (signature-authenticated)


def _verified_slack_form(request: Request) -> tuple[dict[str, str], Any, Any]:
    from chalicelib.chat.slack import parse_form

    svc = services()
    verifier, chatops, dispatcher = svc.slack()
    body = raw_body(request)
    try:
        verifier.verify(body, request.headers)
    except Unauthenticated as exc:
        svc.audit.record(action="slack", outcome="denied", context=call_context(request, "slack"),
                         reason=str(exc), path=request.path)
        raise
    return parse_form(body), chatops, dispatcher


def _refused(request: Request, origin: SlackOrigin) -> bool:
    """Whether a signed Slack request comes from outside the served workspaces (audited if so)."""
    svc = services()
    assert svc.slack_workspaces is not None
    refusal = svc.slack_workspaces.refusal(origin)
    if refusal:
        svc.audit.record(action="slack", outcome="denied", context=call_context(request, "slack"),
                         reason=refusal, path=request.path)
    return refusal is not None


@api("/slack/commands", methods=["POST"])
def slack_commands() -> Any:
    from chalicelib.chat import messages
    from chalicelib.chat.slack import command_origin

    request = current()
    form, chatops, dispatcher = _verified_slack_form(request)
    if form.get("ssl_check") == "1":
        return Response(body="", status_code=200)
    if _refused(request, command_origin(form)):
        return messages.not_served()
    message, background = chatops.acknowledge(form)
    if background:
        dispatcher.dispatch({"kind": "command", "form": form, "request_id": request_id(request)})
    return message


@api("/slack/interactions", methods=["POST"])
def slack_interactions() -> Response:
    from chalicelib.chat.slack import interaction_origin, parse_interaction

    request = current()
    form, _, dispatcher = _verified_slack_form(request)
    payload = parse_interaction(form)
    if _refused(request, interaction_origin(payload)):
        return Response(body="", status_code=200)
    dispatcher.dispatch({"kind": "interaction", "payload": payload, "request_id": request_id(request)})
    return Response(body="", status_code=200)


# What the stack's five-minute EventBridge rule sends the worker (infra/resources.json). It is
# not sealed, on purpose: the sweep takes no input and only marks expired what the clock
# already says has expired, so whoever can invoke the worker gains nothing by sending it.
SWEEP_EVENT = {"rolebroker_sweep": "expire"}


@app.lambda_function(name="slack_worker")
def slack_worker(event: Any, context: Any) -> None:
    """The asynchronous half of the Slack routes: runs only tasks the API function sealed
    (chalicelib/chat/tasks.py); raising lets Lambda retry one the worker could not record.
    Also, every five minutes, the sweep that expires timed-out requests (``SWEEP_EVENT``)."""
    svc = services()
    worker = svc.worker
    if worker is None or svc.access is None:
        app.log.error("slack_worker invoked, but this broker has no ROLEBROKER_TABLE; event dropped")
        return
    try:
        if event == SWEEP_EVENT:
            svc.access.expire_due(context=CallContext(request_id=f"sweep-{uuid.uuid4()}", channel="worker"))
        else:
            worker.handle(event)
    finally:
        svc.audit.flush()  # a dropped task's audit line reaches EventBridge too
