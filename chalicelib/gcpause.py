"""The cyclic garbage collector, paused while long-lived objects are made.

A container's first request builds what every later request reuses:
botocore's service models and clients, the access policy (a 5,000-role
policy is some 200,000 objects). The collector would walk them again and
again while they are being made (about half a large policy's load time, and
some 10 ms of a cold start), and none of them is garbage yet. Reference
counting still frees everything that is dropped meanwhile.

The collector's switch is process-wide and pauses may overlap on different
threads (a policy reload's thread beside a request building services), so
pauses are counted under a lock: the first one in switches the collector off,
the last one out restores what the first one found.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_pauses = 0  # pauses in progress, on any thread
_was_enabled = False  # what the first of them found


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector for the block; when the last overlapping pause ends, it is enabled
    again only if it was before the first began."""
    global _pauses, _was_enabled
    with _lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                gc.enable()
