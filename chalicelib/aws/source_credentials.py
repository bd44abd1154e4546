"""Non-chained credentials for STS, so sessions may last longer than one hour.

A Lambda execution role that calls ``AssumeRole`` is role chaining, and STS
caps chained sessions at one hour. A session of up to 12 hours needs the call
signed by a principal that is not itself a role session: a dedicated IAM user
(the "source principal") whose only permission is to assume the roles the
access policy names. Its access key lives in one Secrets Manager secret, as
JSON ``{"AccessKeyId": ..., "SecretAccessKey": ...}``, rotated there.

The STS client we build reads that secret through botocore's own refreshable
credentials, so a rotated key is picked up without a cold start: the secret
is read on first use and again once ``ttl_seconds`` have passed. If Secrets
Manager is down at that moment, botocore keeps signing with the key it has
for five more minutes (its advisory window) before the call fails with
``DependencyDown``. The key never reaches a log, an exception message or a
repr; see docs/deploy.md for the trade-offs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3.session
import botocore.session
from botocore.config import Config
from botocore.credentials import CredentialProvider, CredentialResolver, DeferredRefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.exceptions import ConfigurationError, DependencyDown

LOG = logging.getLogger(__name__)
METHOD = "rolebroker-source-secret"
DEFAULT_TTL_SECONDS = 300
# botocore refreshes credentials with less than this left (its advisory
# refresh window); the expiry we report is set so a refresh falls due at TTL.
_BOTOCORE_ADVISORY_SECONDS = 15 * 60


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SecretKeyFetcher:
    """Reads the source principal's key from Secrets Manager, as botocore refresh metadata."""

    def __init__(self, secrets_client: Any, secret_id: str, ttl_seconds: int = DEFAULT_TTL_SECONDS,
                 now: Callable[[], datetime] = _utcnow) -> None:
        if ttl_seconds <= 0:
            raise ConfigurationError("the source credentials cache TTL must be positive")
        self._client = secrets_client
        self._secret_id = secret_id
        self._ttl = timedelta(seconds=ttl_seconds)
        self._now = now

    def __call__(self) -> dict[str, str | None]:
        try:
            answer = self._client.get_secret_value(SecretId=self._secret_id)
        except (ClientError, BotoCoreError) as exc:
            code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
            LOG.warning("reading source credentials secret %s failed: %s", self._secret_id,
                        code or type(exc).__name__)
            raise DependencyDown(
                f"the broker cannot read its source credentials ({self._secret_id}: "
                f"{code or 'unreachable'}); an operator must check the secret and the role's access to it"
            ) from exc
        access_key, secret_key = self._parse(answer.get("SecretString"))
        expiry = self._now() + self._ttl + timedelta(seconds=_BOTOCORE_ADVISORY_SECONDS)
        # The key id is an identifier CloudTrail shows anyway; its tail tells
        # an operator which key is in use after a rotation.
        LOG.info("loaded source credentials ...%s from %s", access_key[-4:], self._secret_id)
        # No session token: an IAM user's key is what makes the call unchained.
        return {"access_key": access_key, "secret_key": secret_key, "token": None,
                "expiry_time": expiry.isoformat()}

    def _parse(self, text: str | None) -> tuple[str, str]:
        problem = f"the source credentials secret {self._secret_id} must be JSON with AccessKeyId and SecretAccessKey"
        try:
            data = json.loads(text or "")
        except ValueError:
            # from None: the decoder's exception carries the whole secret text.
            raise ConfigurationError(problem) from None
        if not isinstance(data, dict):
            raise ConfigurationError(problem)
        access_key, secret_key = data.get("AccessKeyId"), data.get("SecretAccessKey")
        if not (isinstance(access_key, str) and access_key and isinstance(secret_key, str) and secret_key):
            raise ConfigurationError(problem)
        return access_key, secret_key


class _SecretProvider(CredentialProvider):
    METHOD = METHOD
    CANONICAL_NAME = "RolebrokerSourceSecret"

    def __init__(self, fetcher: SecretKeyFetcher, now: Callable[[], datetime]) -> None:
        super().__init__()
        self._fetcher = fetcher
        self._now = now

    def load(self) -> DeferredRefreshableCredentials:
        return DeferredRefreshableCredentials(refresh_using=self._fetcher, method=METHOD, time_fetcher=self._now)


def sts_client_from_secret(
    secrets_client: Any,
    secret_id: str,
    *,
    region: str,
    config: Config | None = None,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    now: Callable[[], datetime] = _utcnow,
) -> Any:
    """A boto3-compatible STS client signed with the source principal's key from ``secret_id``.

    Nothing is fetched until the first STS call; then the key is cached for
    ``ttl_seconds`` and re-read after, so rotation needs no redeploy.
    """
    fetcher = SecretKeyFetcher(secrets_client, secret_id, ttl_seconds, now)
    core = botocore.session.Session()
    core.register_component("credential_provider", CredentialResolver([_SecretProvider(fetcher, now)]))
    return boto3.session.Session(botocore_session=core).client("sts", region_name=region, config=config)
