"""The broker's settings, read once from the environment at the edge.

``Settings.from_environ`` is the only place that reads ``os.environ``-like
mappings; everything below receives a ``Settings``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from chalicelib.exceptions import ConfigurationError
from chalicelib.identity.issuers import Issuer
from chalicelib.identity.principal import DEFAULT_ISSUER

# Asymmetric algorithms only: HS* would let anyone holding the public key
# (everybody) mint tokens, and "none" would need no key at all.
ASYMMETRIC_ALGORITHMS = (
    "RS256", "RS384", "RS512",
    "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512",
    "EdDSA",
)
MAX_LEEWAY_SECONDS = 60
MAX_TOKEN_AGE_RANGE = (60, 7 * 24 * 3600)
JWKS_MAX_STALE_RANGE = (0, 30 * 24 * 3600)
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
MAX_OPEN_REQUESTS = 100  # open-request slots are numbered 00-99
# A workspace (T…) or an Enterprise Grid organisation (E…), as Slack writes them.
SLACK_TEAM_ID_RE = re.compile(r"[TE][A-Z0-9]{2,20}")


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _flag(value: str) -> bool:
    return value.strip().lower() in _TRUE


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in _TRUE | _FALSE:
        raise ConfigurationError(f"{name} must be true or false, got {raw[:20]!r}")
    return raw in _TRUE


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    # int() would also take non-ASCII digits such as "１２".
    if not raw.isascii():
        raise ConfigurationError(f"{name} must be an integer, got {raw[:20]!r}")
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw[:20]!r}") from None


def _in_range(environ: Mapping[str, str], name: str, bounds: tuple[int, int], default: int | None) -> int | None:
    if not environ.get(name, "").strip():
        return default
    value = _int(environ, name, 0)
    if not bounds[0] <= value <= bounds[1]:
        raise ConfigurationError(f"{name} must be between {bounds[0]} and {bounds[1]} seconds, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    """The broker's configuration, read once from its environment (the README lists every variable)."""

    issuer: str
    audiences: tuple[str, ...]
    policy_source: str
    jwks_url: str | None = None
    identity_claim: str = "email"
    groups_claim: str = "groups"
    algorithms: tuple[str, ...] = ASYMMETRIC_ALGORITHMS
    leeway_seconds: int = 30
    accept_cognito_access_tokens: bool = False
    client_id: str | None = None
    table_name: str | None = None
    slack_signing_secret: str | None = field(default=None, repr=False)
    public_url: str | None = None
    policy_ttl_seconds: int = 60
    jwks_timeout_seconds: float = 3.0
    region: str = "us-east-1"
    stage: str = "local"
    session_limit_seconds: int = 3600
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_api_url: str = "https://slack.com/api/"
    slack_response_url_prefixes: tuple[str, ...] = ("https://hooks.slack.com/",)
    worker_function: str | None = None
    slack_team_ids: tuple[str, ...] = ()
    task_signing_key: str | None = field(default=None, repr=False)
    max_open_requests: int = 5
    federation_url: str | None = None  # None: each role's partition's own sign-in endpoint
    source_credentials_secret: str | None = None
    cloudtrail_event_data_store: str | None = None
    athena_cloudtrail_table: str = "cloudtrail_logs"
    event_bus: str | None = None
    require_email_verified: bool = True
    max_token_age_seconds: int | None = None
    jwks_max_stale_seconds: int = 24 * 3600

    @property
    def default_issuer(self) -> Issuer:
        """The issuer the ``ROLEBROKER_OIDC_*`` variables define; rules without ``issuer`` name it."""
        return Issuer(
            name=DEFAULT_ISSUER,
            url=self.issuer,
            audiences=self.audiences,
            identity_claim=self.identity_claim,
            groups_claim=self.groups_claim,
            require_email_verified=self.require_email_verified,
            max_token_age_seconds=self.max_token_age_seconds,
            jwks_url=self.jwks_url,
            accept_cognito_access_tokens=self.accept_cognito_access_tokens,
        )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        issuer = environ.get("ROLEBROKER_OIDC_ISSUER", "").strip()
        audiences = _split(environ.get("ROLEBROKER_OIDC_AUDIENCE", ""))
        policy = environ.get("ROLEBROKER_POLICY", "").strip()
        missing = [
            name
            for name, value in (
                ("ROLEBROKER_OIDC_ISSUER", issuer),
                ("ROLEBROKER_OIDC_AUDIENCE", audiences),
                ("ROLEBROKER_POLICY", policy),
            )
            if not value
        ]
        if missing:
            raise ConfigurationError(f"missing required setting(s): {', '.join(missing)}")
        algorithms = _split(environ.get("ROLEBROKER_JWT_ALGORITHMS", "")) or ASYMMETRIC_ALGORITHMS
        weak = [alg for alg in algorithms if alg not in ASYMMETRIC_ALGORITHMS]
        if weak:
            raise ConfigurationError(
                f"ROLEBROKER_JWT_ALGORITHMS may only name asymmetric algorithms, not {weak}"
            )
        leeway = _int(environ, "ROLEBROKER_JWT_LEEWAY", 30)
        if not 0 <= leeway <= MAX_LEEWAY_SECONDS:
            raise ConfigurationError(
                f"ROLEBROKER_JWT_LEEWAY must be between 0 and {MAX_LEEWAY_SECONDS} seconds"
            )
        stage = environ.get("ROLEBROKER_STAGE", "").strip() or "local"
        slack_signing_secret = environ.get("ROLEBROKER_SLACK_SIGNING_SECRET", "").strip() or None
        worker_function = environ.get("ROLEBROKER_WORKER_FUNCTION", "").strip() or None
        return cls(
            issuer=issuer,
            audiences=audiences,
            policy_source=policy,
            jwks_url=environ.get("ROLEBROKER_JWKS_URL", "").strip() or None,
            identity_claim=environ.get("ROLEBROKER_IDENTITY_CLAIM", "").strip() or "email",
            groups_claim=environ.get("ROLEBROKER_GROUPS_CLAIM", "").strip() or "groups",
            algorithms=algorithms,
            leeway_seconds=leeway,
            accept_cognito_access_tokens=_flag(
                environ.get("ROLEBROKER_ACCEPT_COGNITO_ACCESS_TOKENS", "")
            ),
            client_id=environ.get("ROLEBROKER_OIDC_CLIENT_ID", "").strip() or audiences[0],
            table_name=environ.get("ROLEBROKER_TABLE", "").strip() or None,
            slack_signing_secret=slack_signing_secret,
            slack_team_ids=_slack_team_ids(environ, required=slack_signing_secret is not None),
            public_url=_public_url(environ, stage),
            policy_ttl_seconds=_int(environ, "ROLEBROKER_POLICY_TTL", 60),
            region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            stage=stage,
            session_limit_seconds=_session_limit(environ),
            slack_bot_token=environ.get("ROLEBROKER_SLACK_BOT_TOKEN", "").strip() or None,
            slack_api_url=environ.get("ROLEBROKER_SLACK_API_URL", "").strip() or "https://slack.com/api/",
            slack_response_url_prefixes=_split(environ.get("ROLEBROKER_SLACK_RESPONSE_URL_PREFIX", ""))
            or ("https://hooks.slack.com/",),
            worker_function=worker_function,
            task_signing_key=_task_signing_key(environ, required=worker_function is not None),
            max_open_requests=_max_open_requests(environ),
            federation_url=environ.get("ROLEBROKER_FEDERATION_URL", "").strip() or None,
            source_credentials_secret=environ.get("ROLEBROKER_SOURCE_CREDENTIALS_SECRET", "").strip() or None,
            cloudtrail_event_data_store=environ.get("ROLEBROKER_CLOUDTRAIL_EVENT_DATA_STORE", "").strip() or None,
            athena_cloudtrail_table=environ.get("ROLEBROKER_ATHENA_CLOUDTRAIL_TABLE", "").strip() or "cloudtrail_logs",
            event_bus=environ.get("ROLEBROKER_EVENT_BUS", "").strip() or None,
            require_email_verified=_bool(environ, "ROLEBROKER_REQUIRE_EMAIL_VERIFIED", True),
            max_token_age_seconds=_in_range(environ, "ROLEBROKER_MAX_TOKEN_AGE_SECONDS", MAX_TOKEN_AGE_RANGE, None),
            jwks_max_stale_seconds=_in_range(environ, "ROLEBROKER_JWKS_MAX_STALE_SECONDS", JWKS_MAX_STALE_RANGE,
                                             24 * 3600) or 0,
        )


def _public_url(environ: Mapping[str, str], stage: str) -> str | None:
    # Outside the local stack the broker URL written into people's profiles
    # must not come from the request's Host header, which the caller chooses.
    url = environ.get("ROLEBROKER_PUBLIC_URL", "").strip().rstrip("/")
    if not url:
        if stage != "local":
            raise ConfigurationError(
                f"ROLEBROKER_PUBLIC_URL is required for stage {stage!r}: the broker URL written into profiles "
                "must not come from the request's Host header")
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(f"ROLEBROKER_PUBLIC_URL must be an http(s) URL such as "
                                 f"https://broker.example.com, got {url[:60]!r}")
    return url


def _session_limit(environ: Mapping[str, str]) -> int:
    # 3600 is STS's cap for role chaining (a Lambda role assuming a role).
    # Only a deployment whose broker calls AssumeRole with non-chained
    # credentials (see docs/deploy.md) may raise it, up to 12 hours.
    limit = _int(environ, "ROLEBROKER_MAX_SESSION_SECONDS", 3600)
    if not 900 <= limit <= 43200:
        raise ConfigurationError("ROLEBROKER_MAX_SESSION_SECONDS must be between 900 and 43200")
    if limit > 3600 and not environ.get("ROLEBROKER_SOURCE_CREDENTIALS_SECRET", "").strip():
        raise ConfigurationError(
            "ROLEBROKER_MAX_SESSION_SECONDS above 3600 needs ROLEBROKER_SOURCE_CREDENTIALS_SECRET: "
            "the Lambda role's own AssumeRole is role chaining, which STS caps at one hour"
        )
    return limit


def _slack_team_ids(environ: Mapping[str, str], *, required: bool) -> tuple[str, ...]:
    # The signing secret proves a request came from our Slack app, not from
    # which workspace: an app can be installed in several, and Slack Connect
    # brings other companies' people into shared channels.
    ids = _split(environ.get("ROLEBROKER_SLACK_TEAM_ID", ""))
    bad = [value for value in ids if not SLACK_TEAM_ID_RE.fullmatch(value)]
    if bad:
        raise ConfigurationError(f"ROLEBROKER_SLACK_TEAM_ID takes Slack workspace (T…) or organisation (E…) ids, "
                                 f"comma-separated; {bad[0][:40]!r} is not one")
    if required and not ids:
        raise ConfigurationError("ROLEBROKER_SLACK_SIGNING_SECRET needs ROLEBROKER_SLACK_TEAM_ID: the Slack "
                                 "workspace id(s) (T…) or Enterprise Grid organisation id (E…) the broker serves")
    return ids


def _task_signing_key(environ: Mapping[str, str], *, required: bool) -> str | None:
    # Tasks sent to a worker function leave the process: without a key the
    # worker could not tell ours from anyone's. In-process dispatch (threads,
    # tests) works without one: the broker then makes a key per process.
    value = environ.get("ROLEBROKER_TASK_SIGNING_KEY", "").strip() or None
    if value is None and required:
        raise ConfigurationError("ROLEBROKER_WORKER_FUNCTION needs ROLEBROKER_TASK_SIGNING_KEY (an ssm:/name "
                                 "SecureString both functions may read): the worker runs only tasks signed with it")
    if value is not None and not value.startswith("ssm:"):
        from chalicelib.chat.tasks import signing_keys

        signing_keys(value)
    return value


def _max_open_requests(environ: Mapping[str, str]) -> int:
    cap = _int(environ, "ROLEBROKER_MAX_OPEN_REQUESTS", 5)
    if not 1 <= cap <= MAX_OPEN_REQUESTS:
        raise ConfigurationError(f"ROLEBROKER_MAX_OPEN_REQUESTS must be between 1 and {MAX_OPEN_REQUESTS}")
    return cap
