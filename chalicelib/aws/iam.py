"""The one adapter to IAM: the revocations boundary of each trusting account, through its revoker role.

The broker never holds IAM permissions of its own in a trusting account. For
each account it assumes ``/rolebroker-system/rolebroker-revoker`` (a short
session, no ``SourceIdentity``, no tags: the revoker's trust policy refuses
both, so a people's session can never become a revoker session), and with
that session it may only version the account's revocations boundary and
read the broker-managed roles (``infra/trusting.py`` writes that policy).
Every AWS error becomes a domain error that says what to fix in which
account; throttling and outages are :class:`Throttled` / :class:`DependencyDown`,
which the caller retries.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.exceptions import AwsRefused, DependencyDown, RevokerUnavailable, Throttled
from chalicelib.jit.denies import BOUNDARY_POLICY_NAME, SYSTEM_PATH, boundary_arn, revoker_arn

LOG = logging.getLogger(__name__)

REVOKER_SESSION_SECONDS = 900  # STS's minimum: a write takes seconds
IAM_MAX_VERSIONS = 5  # a managed policy's versions, IAM's quota
MAX_KEPT_VERSIONS = 4  # of IAM's five: one stays free for CloudFormation's own update of the policy
WRITE_ROUNDS = 2  # the second when another writer took the free version between making room and creating
# The most IAM calls one write makes: per round, ListPolicyVersions, a DeletePolicyVersion for each version over
# what is kept (IAM holds at most five), CreatePolicyVersion. The kill switch sizes its lease from it.
MAX_CALLS_PER_WRITE = WRITE_ROUNDS * (1 + (IAM_MAX_VERSIONS - (MAX_KEPT_VERSIONS - 1)) + 1)
_THROTTLING = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}
_TRANSIENT = {"ServiceFailure", "ServiceUnavailable", "InternalFailure", "ConcurrentModification"}
ClientFor = Callable[[str, Mapping[str, str]], Any]  # (service, credentials) -> botocore client


@dataclass(frozen=True)
class RoleFacts:
    """What a revocation needs to know about one role: how long its sessions live, and its boundary."""

    arn: str
    max_session_seconds: int
    boundary_arn: str | None


class Revoker:
    """Opens a revoker session in a trusting account."""

    def __init__(self, sts: Any, client_for: ClientFor, partition: str = "aws") -> None:
        self._sts = sts
        self._client_for = client_for
        self._partition = partition

    def account(self, account_id: str, session_name: str) -> AccountBoundary:
        role = revoker_arn(account_id, self._partition)
        try:
            answer = self._sts.assume_role(RoleArn=role, RoleSessionName=session_name,
                                           DurationSeconds=REVOKER_SESSION_SECONDS)
        except ClientError as exc:
            code = _code(exc)
            if code == "AccessDenied":
                raise RevokerUnavailable(
                    f"account {account_id}: the broker may not assume {role}; deploy the trusting-account "
                    "StackSet there (python -m infra.generate trust), whose revoker role trusts the broker's "
                    "roles") from exc
            raise _translate(exc, account_id, "AssumeRole on its revoker role") from exc
        except BotoCoreError as exc:
            raise _unreachable(exc, "STS") from exc
        creds = answer["Credentials"]
        client = self._client_for("iam", {"aws_access_key_id": creds["AccessKeyId"],
                                          "aws_secret_access_key": creds["SecretAccessKey"],
                                          "aws_session_token": creds["SessionToken"]})
        return AccountBoundary(client, account_id, boundary_arn(account_id, self._partition))


class AccountBoundary:
    """One account's revocations boundary, seen through a revoker session."""

    def __init__(self, client: Any, account_id: str, policy_arn: str) -> None:
        self._client = client
        self.account_id = account_id
        self.policy_arn = policy_arn

    def write(self, document: Mapping[str, Any]) -> str:
        """Make ``document`` the boundary's default version; returns the new version id."""
        text = json.dumps(document, separators=(",", ":"))
        for attempt in range(WRITE_ROUNDS):
            self._make_room()
            try:
                answer = self._client.create_policy_version(PolicyArn=self.policy_arn, PolicyDocument=text,
                                                            SetAsDefault=True)
            except ClientError as exc:
                if _code(exc) == "LimitExceeded" and attempt < WRITE_ROUNDS - 1:
                    continue  # another writer took the free version meanwhile
                raise self._error(exc, "CreatePolicyVersion") from exc
            except BotoCoreError as exc:
                raise _unreachable(exc, "IAM") from exc
            version: str = answer["PolicyVersion"]["VersionId"]
            return version
        raise Throttled(f"account {self.account_id}: the revocations boundary has no free version; retry")

    def read(self) -> dict[str, Any]:
        """The boundary's default version, as IAM holds it."""
        try:
            policy = self._client.get_policy(PolicyArn=self.policy_arn)["Policy"]
            version = self._client.get_policy_version(PolicyArn=self.policy_arn,
                                                      VersionId=policy["DefaultVersionId"])["PolicyVersion"]
        except ClientError as exc:
            raise self._error(exc, "GetPolicyVersion") from exc
        except BotoCoreError as exc:
            raise _unreachable(exc, "IAM") from exc
        document = version["Document"]
        return json.loads(document) if isinstance(document, str) else dict(document)

    def role(self, role_arn: str) -> RoleFacts | None:
        """The role's longest session and boundary; None if it does not exist."""
        name = role_arn.rsplit("/", 1)[-1]
        try:
            role = self._client.get_role(RoleName=name)["Role"]
        except ClientError as exc:
            if _code(exc) == "NoSuchEntity":
                return None
            raise self._error(exc, f"GetRole on {name}") from exc
        except BotoCoreError as exc:
            raise _unreachable(exc, "IAM") from exc
        boundary = (role.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
        return RoleFacts(arn=role["Arn"], max_session_seconds=int(role.get("MaxSessionDuration", 3600)),
                         boundary_arn=boundary)

    def _make_room(self) -> None:
        try:
            versions = self._client.list_policy_versions(PolicyArn=self.policy_arn)["Versions"]
        except ClientError as exc:
            raise self._error(exc, "ListPolicyVersions") from exc
        except BotoCoreError as exc:
            raise _unreachable(exc, "IAM") from exc
        old = sorted((v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"])
        for version in old[:max(0, len(versions) - (MAX_KEPT_VERSIONS - 1))]:
            try:
                self._client.delete_policy_version(PolicyArn=self.policy_arn, VersionId=version["VersionId"])
            except ClientError as exc:
                if _code(exc) != "NoSuchEntity":  # another writer deleted it first
                    raise self._error(exc, "DeletePolicyVersion") from exc
            except BotoCoreError as exc:
                raise _unreachable(exc, "IAM") from exc

    def _error(self, exc: ClientError, call: str) -> Exception:
        code = _code(exc)
        if code == "NoSuchEntity":
            return RevokerUnavailable(
                f"account {self.account_id} has no {SYSTEM_PATH}{BOUNDARY_POLICY_NAME} policy; deploy the "
                "trusting-account StackSet there (python -m infra.generate trust)")
        if code in {"AccessDenied", "AccessDeniedException"}:
            return RevokerUnavailable(
                f"account {self.account_id}: the revoker role may not call {call}; redeploy the trusting-account "
                "StackSet there so the revoker role has its generated policy")
        return _translate(exc, self.account_id, call)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def _translate(exc: ClientError, account_id: str, call: str) -> Exception:
    code = _code(exc)
    LOG.warning("IAM revocation call %s in %s failed: %s", call, account_id, code)
    if code in _THROTTLING:
        return Throttled(f"account {account_id}: AWS is throttling {call}; retry in a moment")
    if code in _TRANSIENT or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
        return DependencyDown(f"account {account_id}: AWS failed {call} ({code}); retry in a moment")
    return AwsRefused(f"account {account_id}: AWS refused {call} ({code})")


def _unreachable(exc: BotoCoreError, service: str) -> DependencyDown:
    LOG.warning("%s unreachable for a revocation: %s", service, type(exc).__name__)
    return DependencyDown(f"AWS {service} is unreachable from the broker; try again shortly")
