"""Re-attack of the kill switch fixes (merge ``attack11``): findings as strict xfails."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from chalicelib.jit import denies
from devstack.issuer import DevIssuer
from tests.conftest import Moto
from tests.flow.test_revocations import POLICY, PRODUCTION, KillSwitch, build


@pytest.fixture
def kill(issuer: DevIssuer, moto_server: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KillSwitch]:
    switch = build(issuer, moto_server, tmp_path, monkeypatch, POLICY)
    with switch.client:
        yield switch


@pytest.mark.xfail(strict=True, reason="REATTACK F1: renewing the lease before boundary.write is no fence: a write "
                   "that stalls inside IAM past the lease lands after the next writer's and drops its entry")
def test_a_write_stalled_inside_iam_never_erases_the_next_writers_entry(
        kill: KillSwitch, monkeypatch: pytest.MonkeyPatch) -> None:
    switch = kill.services.kill_switch
    real_account = switch._revoker.account
    stalled: list[str] = []
    carol: list[Any] = []

    def slow_iam(account_id: str, name: str) -> Any:
        boundary = real_account(account_id, name)
        real_write = boundary.write

        def write(document: Any) -> str:
            if account_id == kill[PRODUCTION] and not stalled:
                # IAM answers late (the client's retries and timeouts of _make_room and
                # CreatePolicyVersion add up past 60 s): meanwhile the lease runs out and the
                # next revocation of this account takes it and writes its own document.
                stalled.append(account_id)
                kill.clock.now += timedelta(seconds=61)
                carol.append(kill.revoke("carol@example.com"))
            return real_write(document)

        monkeypatch.setattr(boundary, "write", write)
        return boundary

    monkeypatch.setattr(switch._revoker, "account", slow_iam)
    bob = kill.revoke("bob@example.com")
    assert stalled and len(carol) == 1
    # Both revocations report production as written, each from its own document version.
    for answer in (bob, carol[0]):
        assert answer.json_body["accounts"][kill[PRODUCTION]]["status"] == "written", answer.json_body
    identities = {entry.source_identity for entry in denies.entries_in(kill.boundary(kill[PRODUCTION]))}
    # Both revocations recorded production as written; IAM must deny both people.
    assert {"bob@example.com", "carol@example.com"} <= identities, identities
