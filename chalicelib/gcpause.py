"""The cyclic garbage collector, paused while long-lived objects are made.

A container's first request builds what every later request reuses:
botocore's service models and clients, the access policy (a 5,000-role
policy is some 200,000 objects). The collector would walk them again and
again while they are being made (about half a large policy's load time, and
some 10 ms of a cold start), and none of them is garbage yet. Reference
counting still frees everything that is dropped meanwhile.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector for the block; it is enabled again after only if it was before."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
