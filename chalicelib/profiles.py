"""``~/.aws/config`` sections that point the AWS tools at the client."""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from chalicelib.access.policy import Role


def profile_section(role: Role, broker_url: str) -> str:
    """The ``[profile NAME]`` section for ``role``.

    The command names the client by its installed name; ``rolebroker
    configure`` checks this exact shape and rewrites the program path before
    writing, so a broker cannot plant another command in anyone's config.
    """
    command = " ".join(
        ["rolebroker", "credential-process", "--url", shlex.quote(broker_url), "--role", role.name]
    )
    return f"[profile {role.name}]\ncredential_process = {command}\nregion = {role.account.region}\n"


def config_fragment(roles: Iterable[Role], broker_url: str) -> str:
    return "\n".join(profile_section(role, broker_url) for role in roles)
