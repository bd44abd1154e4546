"""The scanner that guards the whole run must itself find planted secrets."""

from __future__ import annotations

import logging

import pytest

from devstack.issuer import DevIssuer
from tests.secretscan import SCANNER, CollectingHandler, SecretScanner

# Key-shaped on purpose, built here so that no literal in the repository
# looks like a real credential.
PLANTED_KEY_ID = "ASIA" + "FAKE" * 4
PLANTED_SECRET_KEY = "Fake0/" * 6 + "Fake"
PLANTED_SESSION_TOKEN = "Fake0/" * 20
PLANTED_SLACK_TOKEN = "xox" + "b-" + "0000000000-fakefakefake"


@pytest.mark.parametrize(("kind", "planted"), [
    ("jwt", None),
    ("aws access key id", PLANTED_KEY_ID),
    ("aws secret access key", PLANTED_SECRET_KEY),
    ("session token", PLANTED_SESSION_TOKEN),
    ("slack token", PLANTED_SLACK_TOKEN),
])
def test_planted_secrets_are_found(kind: str, planted: str | None) -> None:
    if planted is None:
        dev = DevIssuer().start()
        planted = dev.mint("alice@example.com")
        dev.stop()
    hits = SecretScanner().scan_text("test", f"something went wrong with {planted} here")
    assert kind in {hit.kind for hit in hits}
    assert all(planted not in hit.excerpt for hit in hits)


def test_known_secrets_are_found_by_value() -> None:
    scanner = SecretScanner(known={"my-signing-secret"})
    assert scanner.scan_text("x", "secret is my-signing-secret")[0].kind == "known secret"


@pytest.mark.parametrize("innocent", [
    "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2",  # a SHA-1 in hex
    "arn:aws:sts::222222222222:assumed-role/CrossAccountAdminRole/alice@example.com",
    '{"request_id": "987604e2-dcd2-4c44-9f24-ff21fcbd689d", "who": "alice@example.com"}',
])
def test_ordinary_text_is_not_a_hit(innocent: str) -> None:
    assert SecretScanner().scan_text("x", innocent) == []


def test_the_session_collector_sees_a_secret_logged_by_rolebroker_code() -> None:
    before = len(SCANNER.collected)
    logging.getLogger("chalicelib.test-plant").warning("planted %s", PLANTED_KEY_ID)
    planted = SCANNER.collected[before:]
    try:
        assert any(PLANTED_KEY_ID in text for _, text in planted)
        assert any(h.kind == "aws access key id" for source, text in planted for h in SCANNER.scan_text(source, text))
    finally:
        del SCANNER.collected[before:]  # planted on purpose: not a finding of this run
    assert isinstance(logging.getLogger().handlers[-1], CollectingHandler) or any(
        isinstance(h, CollectingHandler) for h in logging.getLogger().handlers)
