"""Who is calling: OIDC tokens, issuers and the one principal per person.

Importing this package defers ``cryptography.x509``. PyJWT imports it at
module level only to refuse an X.509 certificate used as an HMAC secret
(``HMACAlgorithm.prepare_key``); the broker pins asymmetric algorithms and
never builds an HMAC key, yet the import cost a fifth of every cold start
(about 20 ms: the RFC 4514 name parser compiles its regular expressions).
The module is registered with the standard library's ``LazyLoader`` (the
recipe in importlib's documentation): it runs, whole and unchanged, the first
time anything reads one of its attributes. Nothing is deferred when it is
already imported. ``tests/unit/test_cold_start.py`` holds both halves.

One caveat, on Pythons before 3.11.9 and 3.12.3: their ``LazyLoader`` marks
the module loaded before its code has run (CPython gh-114763), so a second
thread reading it during that first load would find names missing (an
``AttributeError``: it fails closed, never open). Nothing in the broker reads
it: PyJWT only does in the HMAC key check, which the verifier never reaches
(``HS*`` tokens are refused before any key is prepared), and a test keeps
``x509`` out of the broker's own code so a first user of it is a decision
made with this in view. A strict xfail in ``test_cold_start.py`` shows the
race on such Pythons.
"""

from __future__ import annotations

import importlib.util
import sys


def defer_import(name: str) -> None:
    """Register module ``name`` to load on first attribute access, unless it is imported already."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    # ``from parent import child`` finds the attribute and never touches the
    # module (an import statement that found it only in sys.modules would
    # read its __spec__, which loads it).
    setattr(sys.modules[parent], child, module)
    spec.loader.exec_module(module)


defer_import("cryptography.x509")
