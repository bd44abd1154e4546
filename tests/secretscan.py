"""The secret scan: everything rolebroker logs or answers with an error during
the test run is kept here and scanned at the end of the session. A hit fails
the run, however green the tests were.

What is collected: every log record (except ``werkzeug``, which is the test
doubles' own HTTP servers logging the requests we send *to* them), every
audit line, every error body the app produces, and the local stack's logs.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

PATTERNS = {
    "jwt": re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),
    "aws access key id": re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"),
    "aws secret access key": re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"),
    "session token": re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{100,}={0,2}"),
    "slack token": re.compile(r"xox[abposr]-[A-Za-z0-9-]{8,}"),
}


def _looks_random(candidate: str) -> bool:
    # A 40-character run of one case (a SHA-1 in hex, a word) is not a key.
    return (any(c.isupper() for c in candidate) and any(c.islower() for c in candidate)
            and any(c.isdigit() for c in candidate))


@dataclass(frozen=True)
class Hit:
    source: str
    kind: str
    excerpt: str


@dataclass
class SecretScanner:
    known: set[str] = field(default_factory=set)
    collected: list[tuple[str, str]] = field(default_factory=list)

    def add(self, source: str, text: str) -> None:
        self.collected.append((source, text))

    def scan_text(self, source: str, text: str) -> list[Hit]:
        hits = []
        for kind, pattern in PATTERNS.items():
            for match in pattern.finditer(text):
                value = match.group(0)
                if kind in {"aws secret access key", "session token"} and not _looks_random(value):
                    continue
                hits.append(Hit(source, kind, _redact(text, match.start(), match.end())))
        for secret in self.known:
            if secret and secret in text:
                start = text.index(secret)
                hits.append(Hit(source, "known secret", _redact(text, start, start + len(secret))))
        return hits

    def scan(self) -> list[Hit]:
        return [hit for source, text in self.collected for hit in self.scan_text(source, text)]


def _redact(text: str, start: int, end: int) -> str:
    return (text[max(0, start - 40):start] + "[REDACTED]" + text[end:end + 40]).replace("\n", " ")


class CollectingHandler(logging.Handler):
    def __init__(self, scanner: SecretScanner) -> None:
        super().__init__(logging.DEBUG)
        self.scanner = scanner

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("werkzeug"):
            return
        try:
            text = self.format(record)
        except Exception:  # a broken record must not break the run
            text = str(record.msg)
        self.scanner.add(f"log:{record.name}", text)


SCANNER = SecretScanner()
