"""The principal: what "the same person" means everywhere in rolebroker.

A person (or a workload, e.g. a CI job) is one principal: the name of the
issuer that vouched for them plus the canonical value of *that issuer's*
identity claim. There is no fallback to another claim: a token without the
configured claim has no principal and is refused.

Canonical means: surrounding whitespace removed, and for ``email`` ASCII
lower case (mailbox names are case-insensitive in practice, and IdPs hand
out ``Erin@Example.com`` and ``erin@example.com`` for the same mailbox).
Every other claim is compared exactly.

Emails must be plain ASCII. Unicode case folding is not ASCII case
insensitivity: it maps characters that are not those of the address onto
ASCII ones (KELVIN SIGN to ``k``, LONG S to ``s``, ``ß`` to ``ss``, the
``ﬁ`` ligature to ``fi``), which would make two verified mailboxes one
person; and a non-ASCII address can *look* like another to the approver
who reads it (a Cyrillic ``а`` in ``kаte@``). No canonical form is right
for every mail system, so rolebroker takes none: an email with any
non-ASCII character is treated as absent (a 401 naming the claim when it
is the identity claim). Organisations with such addresses identify people
by another claim (``ROLEBROKER_IDENTITY_CLAIM``).

The principal's string ``key`` is what DynamoDB stores and what every
comparison uses (self-approval, grants, Slack snapshots, revocation):

* default issuer: the canonical value itself (``erin@example.com``), so data
  written before issuers existed stays valid;
* any other issuer: ``<issuer name>|<value>``
  (``ci|repo:acme/infra:ref:refs/heads/main``).

Issuer names cannot contain ``|``, so the prefix is unambiguous. A default
value that itself contains ``|`` is written ``default|<value>``; without
that, a person whose claim read ``ci|repo:acme/infra`` would share a key
with the CI job of that name.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_ISSUER = "default"
SEPARATOR = "|"


@dataclass(frozen=True)
class Principal:
    """One person or workload: an issuer name and a canonical claim value."""

    issuer: str
    value: str

    @property
    def key(self) -> str:
        if self.issuer == DEFAULT_ISSUER and SEPARATOR not in self.value:
            return self.value
        return f"{self.issuer}{SEPARATOR}{self.value}"

    @classmethod
    def from_key(cls, key: str) -> Principal:
        issuer, separator, value = key.partition(SEPARATOR)
        if not separator:
            return cls(DEFAULT_ISSUER, key)
        return cls(issuer, value)

    def __str__(self) -> str:
        return self.key


def canonical_value(claim: str, value: str) -> str:
    """The form of an identity claim's value that principals compare.

    Raises ``ValueError`` for an email that is not plain ASCII (see the
    module docstring); ``email_problem`` says so without raising.
    """
    if claim == "email":
        problem = email_problem(value)  # before strip(), which would drop Unicode spaces
        if problem:
            raise ValueError(problem)
        return value.strip().lower()  # ASCII only, so exactly ASCII case-insensitivity
    return value.strip()


def email_problem(value: str) -> str | None:
    """Why ``value`` cannot be an email rolebroker compares, or None."""
    if not value.isascii():
        return ("is not plain ASCII; rolebroker compares only ASCII email addresses, so that no two mailboxes "
                "are taken for one or look alike")
    return None
