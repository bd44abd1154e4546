"""rolebroker: temporary AWS credentials from the rolebroker broker.

Python 3.9+ standard library only. Split by concern, each module readable
alone:

    _fast      the hot path: a credential-process cache hit, and the checks it shares
    cli        the command line and ``main``; commands: the subcommands
    jit        access requests, decisions, break-glass, reviews, extensions, evidence;
               inquiry: whoami, who-can, what-can
    completion shell completion scripts generated from the parser
    settings   environment, config file, side effects (``Settings``, ``Runtime``)
    tokens     where the bearer token comes from; login: the sign-in (browser or device code)
    serve      the loopback credential endpoint; console: console sign-in links
    transport  HTTP with a bearer token; broker: the broker's API
    cache      credentials on disk; files: trust checks, atomic writes, locks
    profiles   verifying and writing ``~/.aws/config``; text: terminal-safe output
    errors     what can go wrong, and keeping secrets out of it

The ``rolebroker`` command starts in ``_fast``, which imports only json, os,
stat, sys and time; so this file stays small, and the names below are
loaded on first use.
"""

# No `from __future__ import annotations`: it is a real import, paid on every cache hit.
__version__ = "0.2.0"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_EXPORTS = {
    "main": "cli", "build_parser": "cli", "parse_fast": "cli",
    "Options": "commands", "Context": "commands",
    "Runtime": "settings", "Settings": "settings",
    "CredentialCache": "cache", "CachedCredentialFetcher": "cache",
    "FileLock": "files", "LoginStore": "tokens", "pkce_pair": "login",
    "verify_profiles": "profiles", "managed_profiles": "profiles", "client_command": "profiles",
    "quote_command": "profiles", "parse_timestamp": "text", "path_problem": "_fast", "CACHE_FORMAT": "_fast",
    "RoleBrokerError": "errors", "UnsafePath": "errors", "UnsafeProfile": "errors",
    "CredentialsExpired": "errors",
}


def __getattr__(name: str) -> "Any":
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rolebroker' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"rolebroker.{module}"), name)
