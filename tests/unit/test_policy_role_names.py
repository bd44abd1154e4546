"""Role names become AWS profile names: none may be one the AWS config format reserves (issue 9, item 4)."""

from __future__ import annotations

import pytest

from chalicelib.access.policy import parse_policy
from chalicelib.exceptions import PolicyError

POLICY = """\
version: 1
accounts:
  sandbox:
    id: "222222222222"
    region: eu-west-1
roles:
  {name}:
    account: sandbox
    role_name: Admin
    allow:
      - groups: [admins]
"""


@pytest.mark.parametrize("name", ["default", "Default", "DEFAULT"])
def test_the_default_profile_name_is_refused(name: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(POLICY.format(name=name), "policy.yaml")
    assert str(caught.value) == (f"policy.yaml:7: roles.{name}: {name!r} would become the AWS default profile "
                                 "([profile default]) on every machine that runs `rolebroker configure`; "
                                 "choose another name")


@pytest.mark.parametrize("name", ['"sandbox admin"', '"sandbox]"', '"a\\"b"', "sso-session x", '"profile x"', '"x\\n"'])
def test_names_the_aws_config_format_would_split_or_quote_are_refused(name: str) -> None:
    with pytest.raises(PolicyError, match="role names are 1-64 characters"):
        parse_policy(POLICY.format(name=name), "policy.yaml")


@pytest.mark.parametrize("name", ["default-admin", "defaults", "preview", "plugins", "sso-session", "services"])
def test_names_that_only_look_special_are_fine(name: str) -> None:
    # botocore reads [profile preview] etc. as ordinary profiles; [preview] and
    # [plugins] are separate top-level sections rolebroker never writes.
    assert name in parse_policy(POLICY.format(name=name), "policy.yaml").roles
