"""Server-side patterns take ASCII only and no trailing newline (review: found by reading)."""

from __future__ import annotations

import pytest

from chalicelib.chat.slack import parse_duration
from chalicelib.exceptions import BadRequest
from chalicelib.validation import role_name


@pytest.mark.parametrize("value", ["sandbox-admin\n", "sandbox-admin\r\n", "ｓandbox-admin", "sandbox‐admin"])
def test_role_names_in_requests_refuse_newlines_and_non_ascii(value: str) -> None:
    with pytest.raises(BadRequest):
        role_name("role", value)
    assert role_name("role", "sandbox-admin") == "sandbox-admin"


@pytest.mark.parametrize("text", ["２h", "1\u0663m", "٣٠m"])
def test_slack_durations_take_ascii_digits_only(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_duration(text)
    assert parse_duration("1h30m") == 5400
