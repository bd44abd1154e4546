"""One duration grammar for people, in the client and in Slack (issue 13 §5, §6.1).

The client is standard library only and cannot import the server's parser,
so each side has its own; this table holds them to the same answers.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rolebroker._fast import duration as client_duration

from chalicelib.chat.slack import parse_duration as slack_duration
from chalicelib.exceptions import BadRequest
from tests.client.fakes import FakeBroker, Result

ACCEPTED = [
    ("3600", 3600), ("900", 900), ("90m", 5400), ("1h", 3600), ("2h30m", 9000), ("1h30m", 5400),
    ("900s", 900), ("1h0m30s", 3630), ("45m", 2700), ("2H", 7200), ("1H30M", 5400), ("999999", 999999),
]
REFUSED = [
    "", " ", "1h ", " 1h", "1h\n", "1d", "h", "m", "s", "-1h", "+1h", "1.5h", "1h30", "30m1h", "1h1h", "1hh",
    "٣٠m", "２h", "1\u0663m", "0", "0h", "0h0m", "1234567", "1_000", "1e3", "90 m", "1hr", "1ｈ", "900\u017f",
    "1h\u200b", "\u0661h",
]


def server(text: str) -> int | None:
    try:
        return slack_duration(text)
    except BadRequest:
        return None


def client(text: str) -> int | None:
    try:
        return client_duration(text)
    except ValueError:
        return None


@pytest.mark.parametrize(("text", "seconds"), ACCEPTED)
def test_both_sides_read_a_duration_the_same(text: str, seconds: int) -> None:
    assert (client(text), server(text)) == (seconds, seconds)


@pytest.mark.parametrize("text", REFUSED)
def test_both_sides_refuse_the_same_text(text: str) -> None:
    assert (client(text), server(text)) == (None, None)


def test_the_refusal_says_what_a_duration_looks_like() -> None:
    with pytest.raises(BadRequest, match=r"cannot read duration '1d': use e\.g\. 90m, 1h, 2h30m or 3600"):
        slack_duration("1d")


def test_the_command_line_takes_units(cli: Callable[..., Result], broker: FakeBroker) -> None:
    result = cli("credential-process", "--role", "sandbox-admin", "--duration", "1h")
    assert result.code == 0, result.err
    assert broker.seen[-1].json() == {"role": "sandbox-admin", "duration_seconds": 3600}
    again = cli("credential-process", "--role", "sandbox-admin", "--duration", "60m")
    assert again.out == result.out  # the same cache entry: 60m is 1h
    assert broker.count("POST", "/v1/credentials") == 1


def test_a_bad_duration_on_the_command_line_is_one_clear_line(cli: Callable[..., Result],
                                                              broker: FakeBroker) -> None:
    result = cli("request", "--role", "prod-readonly", "--reason", "INC-1", "--duration", "1d")
    assert result.code == 2
    assert result.err == ("rolebroker: argument --duration: cannot read duration '1d': use e.g. 90m, 1h, 2h30m or "
                          "3600 (seconds) (see `rolebroker request --help`)\n")
    assert broker.seen == []
