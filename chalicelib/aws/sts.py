"""The one adapter to AWS STS. It returns plain data and speaks domain errors.

Each STS failure is translated into an error that tells the operator what to
fix: the trusting role's trust policy, its ExternalId, its MaxSessionDuration,
the region, or the broker's own credentials.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.exceptions import AwsRefused, BadRequest, DependencyDown, Throttled

LOG = logging.getLogger(__name__)

_THROTTLING = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}
_BROKER_CREDENTIALS = {"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId",
                       "UnrecognizedClientException", "SignatureDoesNotMatch"}
# The IAM path of the roles the broker's own policy allows without listing
# them (infra/generate.py writes that policy; infra/trusting.py creates them).
BROKER_ROLE_PATH = "/rolebroker/"
# AccessDenied names the policy type that refused when it is one of the
# caller's own (same account as the broker); a cross-account trust policy's
# refusal comes without a reason.
_OWN_POLICY_TYPES = ("service control policy", "identity-based policy", "permissions boundary", "session policy")
_ACTION = re.compile(r"perform: (sts:\w+)")


@dataclass(frozen=True)
class AssumedSession:
    """What AssumeRole returned: the credentials and who STS says the session is."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime
    assumed_role_arn: str
    source_identity: str | None

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return f"AssumedSession(assumed_role_arn={self.assumed_role_arn!r}, expiration={self.expiration!r})"


@dataclass(frozen=True)
class SessionPolicy:
    """A scope as STS takes it: an inline policy (``Policy``) and managed ones (``PolicyArns``)."""

    name: str
    policy: str | None = None
    policy_arns: tuple[str, ...] = ()

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.policy is not None:
            params["Policy"] = self.policy
        if self.policy_arns:
            params["PolicyArns"] = [{"arn": arn} for arn in self.policy_arns]
        return params


def _too_large(session_policy: SessionPolicy | None) -> str:
    # STS packs the session policies and tags together; its error says how
    # full the package was, never which part to cut, so we say.
    if session_policy is not None:
        return (f"scope {session_policy.name} and your session tags are too large together for STS "
                "(PackedPolicyTooLarge): name a narrower scope, or ask the policy's owners to move the scope's "
                "statements into a managed policy (policy_arns)")
    return ("your session tags are too large for STS (PackedPolicyTooLarge): your token carries too many or too "
            "long groups; ask your identity provider's admins to send fewer")


class StsGateway:
    """Calls ``sts:AssumeRole`` with a boto3 STS client it is given."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def assume(
        self,
        *,
        role_arn: str,
        session_name: str,
        source_identity: str,
        tags: list[dict[str, str]],
        external_id: str | None,
        duration_seconds: int,
        session_policy: SessionPolicy | None = None,
    ) -> AssumedSession:
        params: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": session_name,
            "SourceIdentity": source_identity,
            "DurationSeconds": duration_seconds,
            "Tags": tags,
        }
        if external_id is not None:
            params["ExternalId"] = external_id
        if session_policy is not None:
            params.update(session_policy.params())
        try:
            answer = self._client.assume_role(**params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "PackedPolicyTooLarge":
                raise BadRequest(_too_large(session_policy)) from exc
            raise _translate(exc, role_arn, external_id) from exc
        except BotoCoreError as exc:
            LOG.error("STS unreachable: %s", type(exc).__name__)
            raise DependencyDown("AWS STS is unreachable from the broker; try again shortly") from exc
        creds = answer["Credentials"]
        return AssumedSession(
            access_key_id=creds["AccessKeyId"],
            secret_access_key=creds["SecretAccessKey"],
            session_token=creds["SessionToken"],
            expiration=creds["Expiration"],
            assumed_role_arn=answer["AssumedRoleUser"]["Arn"],
            source_identity=answer.get("SourceIdentity"),
        )


def _translate(exc: ClientError, role_arn: str, external_id: str | None) -> Exception:
    code = exc.response.get("Error", {}).get("Code", "Unknown")
    message = exc.response.get("Error", {}).get("Message", "")
    LOG.warning("AssumeRole into %s failed: %s", role_arn, code)
    if code in _THROTTLING:
        return Throttled("AWS STS is throttling the broker; retry in a few seconds")
    if code in _BROKER_CREDENTIALS:
        return DependencyDown(
            f"the broker's own AWS credentials were rejected by STS ({code}); "
            "an operator must check the broker's execution role"
        )
    if code == "AccessDenied":
        return _access_denied(message, role_arn, external_id)
    if code == "RegionDisabledException":
        return AwsRefused(
            "STS is not activated in the broker's region for that account; "
            "activate the region under IAM account settings or deploy the broker elsewhere"
        )
    if code == "ValidationError" and "DurationSeconds" in message:
        return AwsRefused(
            f"the requested duration exceeds the MaxSessionDuration of {role_arn}; "
            "raise the role's maximum session duration or lower max_duration_seconds in the policy"
        )
    if code == "PackedPolicyTooLarge":
        return AwsRefused("the caller's session tags are too large for STS; reduce the groups sent in the token")
    return AwsRefused(f"AWS STS refused AssumeRole into {role_arn} ({code})")


def _access_denied(message: str, role_arn: str, external_id: str | None) -> AwsRefused:
    """Say which side refused: the broker's own policies, or the trusting role's trust policy."""
    found = _ACTION.search(message)
    action = found.group(1) if found else "sts:AssumeRole"
    own = next((kind for kind in _OWN_POLICY_TYPES if kind in message), None)
    if own == "service control policy":
        return AwsRefused(f"AWS refused {action} on {role_arn}: a service control policy of the broker's "
                          "organisation denies it; the organisation's administrators must allow it")
    if own is not None:
        path = role_arn.split(":role", 1)[-1]
        where = (f"{role_arn} is not under {BROKER_ROLE_PATH}" if not path.startswith(BROKER_ROLE_PATH)
                 else "the role's account is not in the organisation (or account list) it names")
        return AwsRefused(
            f"AWS refused {action} on {role_arn} because of the broker's own IAM policy ({own}): it allows "
            f"roles under arn:aws:iam::*:role{BROKER_ROLE_PATH} in the organisation, and other roles only "
            f"when listed, and {where}; create the role under that path, or regenerate the broker's "
            "policy (python -m infra.generate iam) and redeploy")
    if action == "sts:TagSession":
        return AwsRefused(
            f"AWS refused sts:TagSession into {role_arn}: that role's trust policy must allow the broker's "
            "execution role (aws:PrincipalArn) sts:TagSession for the rolebroker: tag keys, none transitive; "
            "regenerate it with python -m infra.generate trust")
    condition = " with the condition sts:ExternalId equal to the account's external_id" if external_id else ""
    return AwsRefused(
        f"AWS refused {action} into {role_arn}: that role's trust policy must allow the broker's "
        "execution role (aws:PrincipalArn) the actions sts:AssumeRole, sts:TagSession and "
        f"sts:SetSourceIdentity{condition}; or the role does not exist")
