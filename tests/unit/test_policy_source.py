from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest

from chalicelib.access.source import FileSource, PolicyCache, S3Source, SsmSource, source_for
from chalicelib.exceptions import DependencyDown

ROOT = Path(__file__).resolve().parents[2]
GOOD = (ROOT / "devstack" / "access-policy.yaml").read_text()


class FakeSource:
    name = "fake"

    def __init__(self, texts: list[str | Exception]) -> None:
        self.texts = texts
        self.reads = 0

    def read(self) -> str:
        item = self.texts[min(self.reads, len(self.texts) - 1)]
        self.reads += 1
        if isinstance(item, Exception):
            raise item
        return item


def test_cache_reloads_after_ttl_and_keeps_last_good_copy() -> None:
    now = [0.0]
    source = FakeSource([GOOD, "version: 2", DependencyDown("down")])
    cache = PolicyCache(source, 60, clock=lambda: now[0])
    first = cache.get()
    assert cache.get() is first and source.reads == 1
    now[0] = 61
    assert cache.get() is first and source.reads == 2  # invalid edit: keep serving
    now[0] = 122
    assert cache.get() is first and source.reads == 3  # source down: keep serving


def test_no_good_copy_is_503() -> None:
    with pytest.raises(DependencyDown) as caught:
        PolicyCache(FakeSource(["version: 2"]), 60).get()
    assert "unavailable or invalid" in str(caught.value)


def test_source_for_picks_by_prefix(tmp_path: Path) -> None:
    made: list[str] = []

    def factory(service: str) -> object:
        made.append(service)
        return object()

    assert isinstance(source_for("ssm:/rolebroker/policy", factory), SsmSource)
    assert isinstance(source_for("s3://bucket/policy.yaml", factory), S3Source)
    assert isinstance(source_for(str(tmp_path / "p.yaml"), factory), FileSource)
    assert made == ["ssm", "s3"]


def test_ssm_and_s3_sources_read_through_their_clients(moto_server) -> None:  # type: ignore[no-untyped-def]
    unique = uuid.uuid4().hex[:8]  # the server may be shared with other runs (make mutate)
    ssm = moto_server.client("ssm")
    ssm.put_parameter(Name=f"/rolebroker/policy-{unique}", Value=GOOD, Type="SecureString")
    assert SsmSource(f"/rolebroker/policy-{unique}", ssm).read() == GOOD
    s3 = moto_server.client("s3")
    s3.create_bucket(Bucket=f"policies-{unique}")
    s3.put_object(Bucket=f"policies-{unique}", Key="p.yaml", Body=io.BytesIO(GOOD.encode()))
    assert S3Source(f"policies-{unique}", "p.yaml", s3).read() == GOOD
    with pytest.raises(DependencyDown):
        SsmSource("/missing", ssm).read()
