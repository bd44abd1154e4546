"""Session tags that tie a session to its JIT grant (and, later, its ticket)."""

from __future__ import annotations

from chalicelib.jit.grants import ActiveGrant
from chalicelib.stamping import GRANT_TAG, TICKET_TAG, grant_tags


def test_no_grant_no_tags() -> None:
    assert grant_tags(None) == []


def test_a_grant_is_named_by_its_request_id() -> None:
    grant = ActiveGrant(request_id="0123456789ab", role="r", until=None)  # type: ignore[arg-type]
    assert grant_tags(grant) == [{"Key": "rolebroker:grant", "Value": "0123456789ab"}]
    assert GRANT_TAG == "rolebroker:grant"


def test_a_ticket_rides_along_within_sts_limits() -> None:
    grant = ActiveGrant(request_id="0123456789ab", role="r", until=None,  # type: ignore[arg-type]
                        ticket="INC-42 <db down>\n" + "x" * 300)
    tags = grant_tags(grant)
    assert tags[0] == {"Key": GRANT_TAG, "Value": "0123456789ab"}
    assert tags[1]["Key"] == TICKET_TAG == "rolebroker:ticket"
    assert tags[1]["Value"].startswith("INC-42 _db down__") and len(tags[1]["Value"]) == 256
