"""ATTACK9 (security review of issues 9 and 10): what a stranger's CI token learns.

A CI issuer such as GitHub Actions (``https://token.actions.githubusercontent.com``)
signs tokens for every repository on GitHub, with any audience the workflow
asks for. Declaring it under ``issuers:`` therefore makes every GitHub user
in the world a *verified caller*. Such a caller can match no rule but the
CI rules that pin their repository, yet the broker answers them like a
colleague: a known role is a 403 that names the groups (and the admins'
and auditors' groups) its default-issuer rules require, an unknown one a
404. That is the organisation's role catalogue, its group names and which
roles need approval or MFA, to anyone on the internet.

Marked ``xfail(strict=True)``: it fails today (the finding); the fix must
remove the marker. Run with ``--runxfail`` to see the failure.
"""

from __future__ import annotations

import pytest

from tests.conftest import Harness


def stranger(api: Harness) -> str:
    # A workflow in someone else's repository, asking for our CI audience.
    return api.ci.mint("", claims={"repository": "stranger/fork", "ref": "refs/heads/main"})


@pytest.mark.xfail(strict=True, reason="ATTACK9 F5: rule descriptions and role existence leak to any CI token")
def test_attack9_a_strangers_ci_token_learns_no_role_or_group_names(api: Harness) -> None:
    token = stranger(api)
    known = api.post("/v1/credentials", {"role": "prod-breakglass"}, token=token)
    unknown = api.post("/v1/credentials", {"role": "no-such-role"}, token=token)
    oversight = api.get("/v1/access?role=prod-breakglass", token=token)
    said = " ".join(str(r.json_body.get("Message", "")) for r in (known, unknown, oversight))
    for secret_of_the_organisation in ("platform-admins", "developers", "security", "audit"):
        assert secret_of_the_organisation not in said, said
    assert known.status_code == unknown.status_code, "an existing role must look like a missing one"
