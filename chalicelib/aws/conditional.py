"""One conditional DynamoDB write, whose failed condition is an answer, not an error."""

from __future__ import annotations

from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError


def conditional_write(write: Callable[[], object], translate: Callable[[Exception], Exception]) -> bool:
    """Run ``write``: True if DynamoDB wrote it, False if its condition failed.

    Any other failure is raised as ``translate`` words it for the caller's store.
    """
    try:
        write()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise translate(exc) from exc
    except BotoCoreError as exc:
        raise translate(exc) from exc
    return True
