"""Redaction of the secrets the client remembered, however another program wrote them (rolebroker.errors).

test_attack13.py tries real secrets through every encoding; these pin the rules underneath: which
values are remembered, and each escaped form of each kind of character.
"""

from __future__ import annotations

import json
from urllib.parse import quote, quote_plus

from rolebroker.errors import redact, remember_secret


def test_values_of_eight_characters_or_more_are_remembered() -> None:
    eight = remember_secret("q7!Rk2#z")
    assert eight == "q7!Rk2#z"
    assert redact(f"token {eight} refused") == "token [redacted] refused"
    seven = remember_secret("p7!Rk2#")  # too short to tell from ordinary words: never remembered
    assert redact(f"token {seven} refused") == f"token {seven} refused"


def test_a_remembered_secret_goes_however_json_or_a_url_writes_its_slashes_and_quotes() -> None:
    # No shape matches these (not a JWT, not an AWS key): only the registry can find them.
    secret = remember_secret('opaque/ref-"tok"-\\v1')
    for written in (json.dumps(secret).replace("/", "\\/"), json.dumps(secret).replace("/", "\\u002f"),
                    quote(secret, safe=""), quote(secret, safe="").lower(), secret):
        assert "[redacted]" in redact(f"error: {written}"), written
        assert "opaque" not in redact(f"error: {written}"), written


def test_a_remembered_secret_with_spaces_goes_when_a_form_writes_them_as_plus() -> None:
    secret = remember_secret("opaque pass phrase 1")
    for written in (quote_plus(secret), quote(secret), secret):
        assert redact(f"password={written}&x=1") == "password=[redacted]&x=1", written


def test_a_remembered_secret_with_non_ascii_characters_goes_in_utf8_url_encoding_and_json_escapes() -> None:
    secret = remember_secret("geheimes-pässwort-1")
    for written in (quote(secret), quote(secret).lower(), json.dumps(secret), secret):
        shown = redact(f"error: {written}")
        assert shown in ("error: [redacted]", 'error: "[redacted]"'), (written, shown)


def test_a_secret_with_a_lone_surrogate_is_remembered_and_redacted() -> None:
    secret = remember_secret("opaque-\ud800-secret")  # a JSON token may decode to one
    assert redact(f"error: {secret}") == "error: [redacted]"


# Secrets the client never saw whole go by their shape.
KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # the AWS documentation's example secret access key


def test_shapes_of_bearer_tokens_jwts_and_aws_keys_are_redacted() -> None:
    assert redact("Authorization: Bearer abc.def-ghi, retry") == "Authorization: Bearer [redacted], retry"
    assert redact("authorization: bearer xyz") == "authorization: bearer [redacted]"
    assert redact("token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln here") == "token [redacted] here"
    assert redact("id AKIAIOSFODNN7EXAMPLE used") == "id [redacted] used"
    assert redact(f"key {KEY} used") == "key [redacted] used"
    assert redact(f"key={quote(KEY, safe='')}&x=1") == "key=[redacted]&x=1"


def test_long_runs_that_are_not_keys_are_kept() -> None:
    # A key mixes upper case, lower case and digits, judged on what escapes stand for: "%2F" is a '/',
    # not a digit 2.
    for text in ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn", "abcdefghij0123456789abcdefghij0123456789",
                 quote("/home/JohnSmith/" + "ProjectsArchive/" * 7 + "config", safe=""),
                 "role arn:aws:iam::123456789012:role/rolebroker/sandbox-admin refused"):
        assert redact(text) == text, text
