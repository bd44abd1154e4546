"""``rolebroker console``: deep links, the link's expiry, opening or printing it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rolebroker import console as console_module

from tests.client.fakes import FakeBroker, Reply, Result

LINK = "https://signin.aws.amazon.com/federation?Action=login&SigninToken=abc"
EXPIRES = "2030-01-01T12:15:00+00:00"


@pytest.fixture
def link(broker: FakeBroker, monkeypatch: pytest.MonkeyPatch) -> FakeBroker:
    broker.route("POST", "/v1/console", Reply(200, {"url": LINK, "expires_at": EXPIRES}))
    monkeypatch.setattr(console_module, "local_time", lambda epoch: f"<{int(epoch)}>")
    return broker


def test_positional_role_service_region_and_print(cli: Callable[..., Result], link: FakeBroker) -> None:
    opened: list[str] = []
    result = cli("console", "sandbox-admin", "--service", "s3", "--region", "eu-central-1", "--print",
                 open_browser=opened.append)
    assert (result.code, result.out, opened) == (0, LINK + "\n", [])
    assert link.seen[0].json() == {"role": "sandbox-admin", "service": "s3", "region": "eu-central-1"}
    assert result.err == ("rolebroker: this link signs you in as sandbox-admin until <1893500100>; "
                          "treat it like a password\n")


def test_destination_and_the_role_option_still_work(cli: Callable[..., Result], link: FakeBroker) -> None:
    result = cli("console", "--role", "sandbox-admin", "--destination", "/s3/buckets/logs?tab=objects", "--print")
    assert result.code == 0, result.err
    assert link.seen[0].json() == {"role": "sandbox-admin", "destination": "/s3/buckets/logs?tab=objects"}


def test_by_default_the_link_opens_in_the_browser_and_is_not_printed(
        cli: Callable[..., Result], link: FakeBroker) -> None:
    opened: list[str] = []

    def open_browser(url: str) -> bool:
        opened.append(url)
        return True

    result = cli("console", "sandbox-admin", open_browser=open_browser)
    assert (result.code, result.out, opened) == (0, "", [LINK])
    assert result.err == ("rolebroker: opened the AWS console as sandbox-admin in your browser "
                          "(the link works until <1893500100>)\n")


def test_without_a_browser_the_link_is_printed_and_that_is_said(cli: Callable[..., Result], link: FakeBroker) -> None:
    result = cli("console", "sandbox-admin", open_browser=lambda url: False)
    assert (result.code, result.out) == (0, LINK + "\n")
    assert "could not open a browser; open the link above yourself" in result.err
    assert "<1893500100>" in result.err


@pytest.mark.parametrize("argv", [
    ("console",),
    ("console", "sandbox-admin", "--role", "prod-admin"),
    ("console", "sandbox-admin", "--print", "--open"),
])
def test_role_mistakes_are_one_line_usage_errors(cli: Callable[..., Result], link: FakeBroker,
                                                 argv: tuple[str, ...]) -> None:
    result = cli(*argv, open_browser=lambda url: True)
    assert result.code == 2 and len(result.err_lines) == 1 and result.out == ""
    assert link.seen == []


def test_the_brokers_refusal_of_a_destination_is_one_line(cli: Callable[..., Result], broker: FakeBroker) -> None:
    broker.route("POST", "/v1/console", Reply(400, {"Code": "BadRequestError", "Message":
                                                    "'destination' must be a path on the AWS console"}))
    result = cli("console", "sandbox-admin", "--destination", "//evil.example.com", "--print")
    assert (result.code, result.out) == (1, "")
    assert result.err == "rolebroker: 'destination' must be a path on the AWS console\n"
