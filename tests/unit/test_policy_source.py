from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from chalicelib.access.source import Fetched, FileSource, PolicyCache, S3Source, SsmSource, source_for
from chalicelib.exceptions import DependencyDown

ROOT = Path(__file__).resolve().parents[2]
GOOD = (ROOT / "devstack" / "access-policy.yaml").read_text()


class FakeSource:
    """Each fetch answers the next item; a text's tag is its position, so "unchanged" is testable."""

    name = "fake"

    def __init__(self, texts: list[str | Exception]) -> None:
        self.texts = texts
        self.reads = 0
        self.tags: list[str | None] = []

    def fetch(self, tag: str | None) -> Fetched:
        self.tags.append(tag)
        item = self.texts[min(self.reads, len(self.texts) - 1)]
        self.reads += 1
        if isinstance(item, Exception):
            raise item
        new_tag = str(self.texts.index(item))
        return Fetched(None if new_tag == tag else item, new_tag)


def inline(job: Callable[[], None]) -> None:
    job()


def test_cache_reloads_after_ttl_and_keeps_last_good_copy() -> None:
    now = [0.0]
    source = FakeSource([GOOD, "version: 2", DependencyDown("down")])
    cache = PolicyCache(source, 60, clock=lambda: now[0], spawn=inline)
    first = cache.get()
    assert cache.get() is first and source.reads == 1
    now[0] = 61
    assert cache.get() is first and source.reads == 2  # invalid edit: keep serving
    now[0] = 122
    assert cache.get() is first and source.reads == 3  # source down: keep serving


def test_an_unchanged_source_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.access import source as module

    parses = []
    real = module.parse_policy
    monkeypatch.setattr(module, "parse_policy", lambda text, name: parses.append(name) or real(text, name))
    now = [0.0]
    source = FakeSource([GOOD])
    cache = PolicyCache(source, 60, clock=lambda: now[0], spawn=inline)
    first = cache.get()
    now[0] = 61
    assert cache.get() is first
    assert source.tags == [None, "0"] and parses == ["fake"]  # asked "changed since 0?", answer no


def test_a_reload_never_blocks_requests_and_only_one_runs() -> None:
    """The old policy serves while one reload fetches and validates the new one."""
    now = [0.0]
    changed = GOOD.replace("sandbox-admin:", "sandbox-administrator:")
    source = FakeSource([GOOD, changed])
    jobs: list[Callable[[], None]] = []
    cache = PolicyCache(source, 60, clock=lambda: now[0], spawn=jobs.append)
    old = cache.get()  # the first load has nothing to serve instead, so it loads in the caller
    assert jobs == []
    now[0] = 61
    assert cache.get() is old and cache.get() is old  # stale: served at once, not waited for
    assert len(jobs) == 1 and source.reads == 1  # one reload scheduled, nothing fetched yet
    jobs[0]()
    new = cache.get()
    assert new is not old and "sandbox-administrator" in new.roles


def test_background_reload_on_a_real_thread_publishes_only_a_valid_policy() -> None:
    now = [0.0]
    source = FakeSource([GOOD, "version: 2"])
    done = threading.Event()
    threads: list[threading.Thread] = []

    def spawn(job: Callable[[], None]) -> None:
        def run() -> None:
            job()
            done.set()
        threads.append(threading.Thread(target=run))
        threads[-1].start()

    cache = PolicyCache(source, 60, clock=lambda: now[0], spawn=spawn)
    old = cache.get()
    now[0] = 61
    assert cache.get() is old
    done.wait()
    threads[0].join()
    assert cache.get() is old  # the invalid edit never replaced it


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


def test_s3_reloads_only_when_the_etag_changes(moto_server) -> None:  # type: ignore[no-untyped-def]
    bucket = f"etag-policies-{uuid.uuid4().hex[:8]}"  # the server may be shared with other runs (make mutate)
    s3 = moto_server.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="p.yaml", Body=GOOD.encode())
    source = S3Source(bucket, "p.yaml", s3)
    first = source.fetch(None)
    assert first.text == GOOD and first.tag
    assert source.fetch(first.tag) == Fetched(None, first.tag)  # conditional GET: 304, nothing downloaded
    s3.put_object(Bucket=bucket, Key="p.yaml", Body=(GOOD + "\n").encode())
    second = source.fetch(first.tag)
    assert second.text == GOOD + "\n" and second.tag != first.tag


def test_ssm_reloads_only_when_the_version_changes(moto_server) -> None:  # type: ignore[no-untyped-def]
    name = f"/rolebroker/versioned-policy-{uuid.uuid4().hex[:8]}"  # the server may be shared (make mutate)
    ssm = moto_server.client("ssm")
    ssm.put_parameter(Name=name, Value=GOOD, Type="SecureString")
    source = SsmSource(name, ssm)
    first = source.fetch(None)
    assert (first.text, first.tag) == (GOOD, "1")
    assert source.fetch("1") == Fetched(None, "1")
    ssm.put_parameter(Name=name, Value=GOOD + "\n", Type="SecureString", Overwrite=True)
    assert source.fetch("1") == Fetched(GOOD + "\n", "2")


def test_a_file_is_read_again_only_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    source = FileSource(str(path))
    first = source.fetch(None)
    assert first.text == GOOD and source.fetch(first.tag).text is None
    path.write_text(GOOD + "\n# edited, and longer\n")
    assert source.fetch(first.tag).text == GOOD + "\n# edited, and longer\n"


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


def test_a_reload_that_cannot_start_leaves_the_current_policy_serving() -> None:
    now = [0.0]
    source = FakeSource([GOOD])

    def no_threads(job: Callable[[], None]) -> None:
        raise RuntimeError("can't start new thread")

    cache = PolicyCache(source, 60, clock=lambda: now[0], spawn=no_threads)
    first = cache.get()
    now[0] = 61
    assert cache.get() is first
    now[0] = 122
    assert cache.get() is first  # the lock was released: the next TTL tries again


def test_each_new_policy_a_reload_publishes_is_told_to_the_kill_switch_and_a_failing_listener_costs_nothing() -> None:
    now = [0.0]
    grown = GOOD.replace("auditors:", "# a new version\nauditors:")
    source = FakeSource([GOOD, GOOD, grown])
    cache = PolicyCache(source, 60, clock=lambda: now[0], spawn=inline)
    told: list[object] = []

    def listener(policy: object) -> None:
        told.append(policy)
        raise RuntimeError("the revocation store is down")

    cache.on_change = listener
    first = cache.get()
    assert told == []  # the first load is no change
    now[0] = 61
    assert cache.get() is first and told == []  # unchanged source: nothing new to tell
    now[0] = 122
    cache.get()
    newer = cache.get()
    assert newer is not first and told == [newer]  # told once, and it serves despite the listener's failure
