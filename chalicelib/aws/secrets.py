"""Settings that may name a secret in SSM Parameter Store (``ssm:/name``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.exceptions import DependencyDown


def resolve_secret(value: str | None, client_factory: Callable[[str], Any]) -> str | None:
    """The secret itself: ``value`` as is, or the SecureString it names."""
    if not value or not value.startswith("ssm:"):
        return value
    name = value[len("ssm:"):]
    try:
        answer = client_factory("ssm").get_parameter(Name=name, WithDecryption=True)
    except Exception as exc:  # botocore raises many families; all mean "not now"
        raise DependencyDown(f"the secret parameter {name} cannot be read; an operator must check it") from exc
    secret: str = answer["Parameter"]["Value"]
    return secret
