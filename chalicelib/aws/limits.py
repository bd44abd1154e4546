"""How long one AWS call of the broker may take: the botocore settings its clients use, and the worst case they allow.

``app.py`` builds every client's ``Config`` from these numbers, and the kill
switch sizes its per-account lease from :func:`worst_call_seconds`, so the
two cannot drift apart.
"""

from __future__ import annotations

ATTEMPTS = 3  # botocore's "standard" retry mode, first try included
CONNECT_TIMEOUT = 3
READ_TIMEOUT = 5

# botocore's standard mode waits rand(0, 1) * min(base * 2**i, 20) s before retry i + 1 (base 1 s when throttled,
# less otherwise), and an ``x-amz-retry-after`` header may raise a wait by up to 5 s more.
_MAX_BACKOFF = 20
_RETRY_AFTER_EXTRA = 5


def worst_call_seconds(attempts: int = ATTEMPTS, connect: float = CONNECT_TIMEOUT, read: float = READ_TIMEOUT) -> float:
    """The longest one call can take: every attempt timing out on connect and on read, the longest waits between.

    ``read_timeout`` bounds each socket read, not a whole answer; the answers these calls get are small enough
    to arrive in one read, so it is counted once per attempt.
    """
    waits = sum(min(1 << retry, _MAX_BACKOFF) + _RETRY_AFTER_EXTRA for retry in range(attempts - 1))
    return attempts * (connect + read) + waits
