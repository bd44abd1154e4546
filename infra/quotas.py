"""The AWS quotas rolebroker's generated artefacts can hit, and how they are counted.

Every generator in ``infra/`` measures what it writes against these and
refuses, naming the quota, the size and the remedy, rather than leave AWS to
refuse it half-way through a deploy. The numbers are AWS's documented ones:

* IAM and STS quotas (IAM User Guide, "IAM and AWS STS quotas"): a role's
  inline policies together 10,240 characters, a user's 2,048, a managed
  policy 6,144, a role trust policy 2,048 (4,096 after a quota increase).
  "IAM does not count white space when calculating the size of a policy":
  :func:`iam_policy_size` counts every character of the compact JSON but
  whitespace, inside strings too, exactly as the sentence reads.
* CloudFormation quotas ("Understand CloudFormation quotas"): a template
  body passed in the request 51,200 bytes (larger ones must be uploaded to
  S3 and passed by URL), one in S3 1 MB (cfn-lint's 1,000,000 bytes, the
  conservative reading), 200 parameters, 500 resources, 200 outputs, 200
  mappings of at most 200 attributes each; cfn-lint (E7010) also holds a
  mapping to 200 keys, and so do we.
* Lambda: the environment variables of a function together 4 KB.
* SSM Parameter Store: a parameter's value 4 KB (standard tier) or 8 KB
  (advanced tier).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_WHITESPACE = re.compile(r"\s")


class QuotaExceeded(Exception):
    """An artefact is larger than an AWS quota allows; the message names quota, size and remedy."""


@dataclass(frozen=True)
class Quota:
    name: str
    limit: int
    unit: str
    remedy: str

    def check(self, size: int, what: str) -> int:
        """Return ``size`` if it fits, else raise :class:`QuotaExceeded`."""
        if size > self.limit:
            raise QuotaExceeded(
                f"{what} is {size:,} {self.unit}, over the {self.name} quota of {self.limit:,}: {self.remedy}"
            )
        return size

    def headroom(self, size: int) -> str:
        return f"{size:,} of {self.limit:,} {self.unit} ({100 * size / self.limit:.0f}%)"


IAM_CHARS = "characters (whitespace not counted)"

ROLE_INLINE_POLICIES = Quota(
    "IAM role inline policies (all of a role's inline policies together)", 10_240, IAM_CHARS,
    "put the trusting roles under the broker's IAM path and pass --organization-id, so the broker's "
    "policy does not list accounts or roles one by one")
MANAGED_POLICY = Quota(
    "IAM managed policy size", 6_144, IAM_CHARS,
    "put the trusting roles under the broker's IAM path and pass --organization-id, so the policy does "
    "not list accounts or roles one by one")
USER_INLINE_POLICIES = Quota(
    "IAM user inline policies (all of a user's inline policies together)", 2_048, IAM_CHARS,
    "attach the document as a managed policy instead (aws iam create-policy + attach-user-policy: 6,144)")
TRUST_POLICY = Quota(
    "IAM role trust policy length", 2_048, IAM_CHARS,
    "shorten the account's external_id, or request the quota increase to 4,096 (Service Quotas, "
    "IAM, 'Role trust policy length') and pass --trust-policy-quota 4096")
TRUST_POLICY_RAISED = Quota(
    "IAM role trust policy length (after the quota increase)", 4_096, IAM_CHARS,
    "shorten the account's external_id: 4,096 is the largest trust policy IAM allows")

TEMPLATE_BODY_INLINE = Quota(
    "CloudFormation template body in a request", 51_200, "bytes",
    "upload the template to S3 and pass --template-url")
TEMPLATE_BODY_S3 = Quota(
    "CloudFormation template body in an S3 object", 1_000_000, "bytes",
    "split the organisation's roles over more templates (fewer distinct role names per template)")
TEMPLATE_PARAMETERS = Quota(
    "CloudFormation parameters per template", 200, "parameters",
    "split the roles over more templates")
TEMPLATE_RESOURCES = Quota(
    "CloudFormation resources per template", 500, "resources",
    "split the roles over more templates")
TEMPLATE_OUTPUTS = Quota(
    "CloudFormation outputs per template", 200, "outputs", "drop outputs or split the template")
TEMPLATE_MAPPINGS = Quota(
    "CloudFormation mappings per template", 200, "mappings", "split the template")
MAPPING_KEYS = Quota(
    "CloudFormation keys per mapping", 200, "keys",
    "split the organisation's accounts over two StackSets (two access policies, or OUs deployed separately)")
MAPPING_ATTRIBUTES = Quota(
    "CloudFormation attributes per mapping key", 200, "attributes",
    "split the roles over more templates")

LAMBDA_ENVIRONMENT = Quota(
    "Lambda environment variables (all of a function's together)", 4_096, "bytes",
    "move long values into SSM Parameter Store and name them as ssm:/parameter")

SSM_STANDARD = Quota(
    "SSM Parameter Store standard-tier value", 4_096, "bytes",
    "store it as an advanced-tier parameter (--tier Advanced, 8 KB), or use ROLEBROKER_POLICY=s3://bucket/key")
SSM_ADVANCED = Quota(
    "SSM Parameter Store advanced-tier value", 8_192, "bytes",
    "use s3://: store the policy in S3 and set ROLEBROKER_POLICY=s3://bucket/key")

_SSM_TIERS = {"standard": SSM_STANDARD, "advanced": SSM_ADVANCED}


def iam_policy_size(document: Any) -> int:
    """The size IAM counts for a policy document: its characters, less whitespace."""
    compact = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return len(_WHITESPACE.sub("", compact))


def template_size(body: str) -> int:
    return len(body.encode("utf-8"))


def lambda_environment_size(variables: Mapping[str, str]) -> int:
    """Bytes of the environment as Lambda stores it: the compact JSON of the variables.

    Lambda's documentation says only that the set must not exceed 4 KB; the JSON
    form counts every key and value plus a few bytes of punctuation each, so it
    never under-counts.
    """
    return len(json.dumps(dict(variables), separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def ssm_tier_quota(tier: str) -> Quota:
    try:
        return _SSM_TIERS[tier]
    except KeyError:
        raise QuotaExceeded(f"unknown SSM tier {tier!r} (standard or advanced)") from None


def check_template(template: Mapping[str, Any], body: str, what: str) -> dict[str, int]:
    """Every CloudFormation quota a generated template can hit; returns the measured sizes.

    A body above 51,200 bytes is not an error (it is deployed from S3); the
    caller reads ``needs_s3`` from the result.
    """
    size = TEMPLATE_BODY_S3.check(template_size(body), what)
    measured = {
        "bytes": size,
        "needs_s3": int(size > TEMPLATE_BODY_INLINE.limit),
        "parameters": TEMPLATE_PARAMETERS.check(len(template.get("Parameters", {})), f"{what}: Parameters"),
        "resources": TEMPLATE_RESOURCES.check(len(template.get("Resources", {})), f"{what}: Resources"),
        "outputs": TEMPLATE_OUTPUTS.check(len(template.get("Outputs", {})), f"{what}: Outputs"),
        "mappings": TEMPLATE_MAPPINGS.check(len(template.get("Mappings", {})), f"{what}: Mappings"),
    }
    widest = 0
    for name, mapping in template.get("Mappings", {}).items():
        MAPPING_KEYS.check(len(mapping), f"{what}: Mappings.{name}")
        for key, attributes in mapping.items():
            widest = max(widest, MAPPING_ATTRIBUTES.check(len(attributes), f"{what}: Mappings.{name}.{key}"))
    measured["widest_mapping"] = widest
    return measured
