"""The credential cache, its lock and the refresh window, as plain units."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.client.fakes import FakeClock, rolebroker

NOW = 1_800_000_000.0
URL = "https://broker.example.com/api"
ALICE = ("https://issuer.example.com", "alice")


def entry(expires_at: float, key_id: str = "ASIAFIRST") -> dict[str, Any]:
    return {
        "format": rolebroker.CACHE_FORMAT,
        "role": "sandbox-admin",
        "region": "eu-west-1",
        "expires_at": expires_at,
        "credentials": {"Version": 1, "AccessKeyId": key_id, "SecretAccessKey": "s" * 40,
                        "SessionToken": "t" * 80, "Expiration": "2027-01-15T08:00:00+00:00"},
    }


class CountingFetcher(rolebroker.CachedCredentialFetcher):
    """The remote call replaced by a list of canned entries."""

    def __init__(self, answers: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.answers = answers
        self.calls = 0

    def _get_credentials(self) -> dict[str, Any]:
        self.calls += 1
        return self.answers.pop(0)


@pytest.fixture
def cache(tmp_path: Path) -> rolebroker.CredentialCache:
    return rolebroker.CredentialCache(str(tmp_path / "cache" / "rolebroker"), getuid=os.getuid)


KEY = rolebroker.CredentialCache.key(URL, ALICE, "sandbox-admin", None)


def fetcher(cache: rolebroker.CredentialCache | None, answers: list[dict[str, Any]],
            now: float = NOW) -> CountingFetcher:
    return CountingFetcher(answers, cache=cache, cache_key=KEY, clock=lambda: now, sleep=lambda _s: None)


def test_cache_key_covers_url_identity_role_and_duration() -> None:
    key, name = rolebroker.CredentialCache.key, rolebroker.CredentialCache.name
    base = key(URL, ALICE, "sandbox-admin", None)
    assert len(name(base)) == 16
    assert set(name(base)) <= set("0123456789abcdef")
    assert key(URL + "/", ALICE, "sandbox-admin", None) == base
    variants = [
        key("https://other.example.com/api", ALICE, "sandbox-admin", None),
        key(URL, ("https://issuer.example.com", "bob"), "sandbox-admin", None),
        key(URL, ("https://other-issuer.example.com", "alice"), "sandbox-admin", None),
        key(URL, ALICE, "prod-admin", None),
        key(URL, ALICE, "sandbox-admin", 900),
    ]
    assert len({base, *variants}) == 6
    assert len({name(k) for k in (base, *variants)}) == 6


def test_entry_under_a_shared_name_is_not_served_for_another_key(
        cache: rolebroker.CredentialCache, monkeypatch: pytest.MonkeyPatch) -> None:
    other = rolebroker.CredentialCache.key(URL, ("https://issuer.example.com", "bob"), "sandbox-admin", None)
    monkeypatch.setattr(rolebroker.CredentialCache, "name", staticmethod(lambda key: "0" * 16))
    assert cache.put(KEY, entry(NOW + 3600))
    assert cache.get(KEY) is not None
    assert cache.get(other) is None


def test_round_trip_with_private_modes(cache: rolebroker.CredentialCache) -> None:
    assert cache.get(KEY) is None
    assert cache.put(KEY, entry(NOW + 3600))
    assert cache.get(KEY) == entry(NOW + 3600)
    assert stat.S_IMODE(os.stat(cache.path(KEY)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(cache.directory).st_mode) == 0o700
    assert os.listdir(cache.directory) == [cache.name(KEY) + ".json"]  # no temp file left behind


def test_loose_cache_directory_is_tightened(cache: rolebroker.CredentialCache) -> None:
    os.makedirs(cache.directory)
    os.chmod(cache.directory, 0o755)  # noqa: S103 - the loose mode under test
    cache.put(KEY, entry(NOW + 3600))
    assert stat.S_IMODE(os.stat(cache.directory).st_mode) == 0o700


@pytest.mark.parametrize(("minutes_left", "served"), [(16, True), (15, False), (14, False)])
def test_served_only_while_more_than_15_minutes_remain(cache: rolebroker.CredentialCache, minutes_left: int,
                                                       served: bool) -> None:
    cache.put(KEY, entry(NOW + minutes_left * 60, "ASIACACHED"))
    fetch = fetcher(cache, [entry(NOW + 3600, "ASIAFRESH")])
    got = fetch.fetch()
    assert got["credentials"]["AccessKeyId"] == ("ASIACACHED" if served else "ASIAFRESH")
    assert fetch.calls == (0 if served else 1)
    if not served:
        assert cache.get(KEY) == entry(NOW + 3600, "ASIAFRESH")


def test_second_fetch_is_served_from_cache(cache: rolebroker.CredentialCache) -> None:
    fetch = fetcher(cache, [entry(NOW + 3600, "ASIAONE"), entry(NOW + 3600, "ASIATWO")])
    assert fetch.fetch()["credentials"]["AccessKeyId"] == "ASIAONE"
    assert fetch.fetch()["credentials"]["AccessKeyId"] == "ASIAONE"
    assert fetch.calls == 1


@pytest.mark.parametrize("content", [
    b"{not json",
    b"",
    b"[1, 2]",
    json.dumps({**entry(NOW + 3600), "format": 99}).encode(),
    json.dumps({**entry(NOW + 3600), "expires_at": "soon"}).encode(),
    json.dumps({**entry(NOW + 3600), "credentials": {"Version": 1, "AccessKeyId": "A"}}).encode(),
    json.dumps({**entry(NOW + 3600), "credentials": {**entry(0)["credentials"], "Version": 2}}).encode(),
])
def test_damaged_entry_is_ignored_and_replaced(cache: rolebroker.CredentialCache, content: bytes) -> None:
    os.makedirs(cache.directory, mode=0o700)
    Path(cache.path(KEY)).write_bytes(content)
    os.chmod(cache.path(KEY), 0o600)
    assert cache.get(KEY) is None
    fetch = fetcher(cache, [entry(NOW + 3600, "ASIAFRESH")])
    assert fetch.fetch()["credentials"]["AccessKeyId"] == "ASIAFRESH"
    assert cache.get(KEY) == entry(NOW + 3600, "ASIAFRESH")


def test_file_readable_by_others_is_ignored(cache: rolebroker.CredentialCache) -> None:
    cache.put(KEY, entry(NOW + 3600))
    os.chmod(cache.path(KEY), 0o644)
    assert cache.get(KEY) is None


def test_symlink_is_not_followed(cache: rolebroker.CredentialCache, tmp_path: Path) -> None:
    elsewhere = rolebroker.CredentialCache(str(tmp_path / "elsewhere"), getuid=os.getuid)
    elsewhere.put(KEY, entry(NOW + 3600))
    os.makedirs(cache.directory, mode=0o700)
    os.symlink(elsewhere.path(KEY), cache.path(KEY))
    assert cache.get(KEY) is None


def test_without_uid_checks_any_regular_file_is_read(tmp_path: Path) -> None:
    cache = rolebroker.CredentialCache(str(tmp_path / "c"), getuid=None)  # as on Windows
    cache.put(KEY, entry(NOW + 3600))
    os.chmod(cache.path(KEY), 0o644)
    assert cache.get(KEY) == entry(NOW + 3600)


def test_unwritable_cache_still_hands_out_credentials(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    cache = rolebroker.CredentialCache(str(blocker / "rolebroker"), getuid=os.getuid)
    fetch = fetcher(cache, [entry(NOW + 3600, "ASIAFRESH")])
    assert fetch.fetch()["credentials"]["AccessKeyId"] == "ASIAFRESH"
    assert cache.put(KEY, entry(NOW + 3600)) is False


def test_no_cache_neither_reads_nor_writes(cache: rolebroker.CredentialCache) -> None:
    cache.put(KEY, entry(NOW + 3600, "ASIACACHED"))
    fetch = CountingFetcher([entry(NOW + 3600, "ASIAFRESH")], cache=None, cache_key=KEY, clock=lambda: NOW)
    assert fetch.fetch()["credentials"]["AccessKeyId"] == "ASIAFRESH"
    assert cache.get(KEY) == entry(NOW + 3600, "ASIACACHED")


def test_expired_credentials_from_the_broker_are_refused_and_not_cached(cache: rolebroker.CredentialCache) -> None:
    fetch = fetcher(cache, [entry(NOW - 5)])
    with pytest.raises(rolebroker.CredentialsExpired, match="expired at"):
        fetch.fetch()
    assert cache.get(KEY) is None


def test_short_lived_credentials_are_handed_out_but_not_cached(cache: rolebroker.CredentialCache) -> None:
    fetch = fetcher(cache, [entry(NOW + 600, "ASIASHORT"), entry(NOW + 600, "ASIASHORT2")])
    assert fetch.fetch()["credentials"]["AccessKeyId"] == "ASIASHORT"
    assert cache.get(KEY) is None
    assert fetch.fetch()["credentials"]["AccessKeyId"] == "ASIASHORT2"


def test_cache_is_checked_again_once_the_lock_is_held(tmp_path: Path) -> None:
    class RacedCache(rolebroker.CredentialCache):
        """Another process fills the entry while we wait for the lock."""

        @contextmanager
        def lock(self, key: str, **kwargs: Any) -> Iterator[None]:  # type: ignore[override,unused-ignore]
            self.put(key, entry(NOW + 3600, "ASIAOTHERPROCESS"))
            yield

    cache = RacedCache(str(tmp_path / "c"), getuid=os.getuid)
    fetch = fetcher(cache, [entry(NOW + 3600, "ASIAFRESH")])
    assert fetch.fetch()["credentials"]["AccessKeyId"] == "ASIAOTHERPROCESS"
    assert fetch.calls == 0


def test_clear_deletes_only_our_files(cache: rolebroker.CredentialCache) -> None:
    cache.put(KEY, entry(NOW + 3600))
    other_key = rolebroker.CredentialCache.key(URL, ALICE, "prod-admin", None)
    cache.put(other_key, entry(NOW + 3600))
    directory = Path(cache.directory)
    (directory / (cache.name(KEY) + ".lock")).write_text("")
    (directory / ".rolebroker-abc123.tmp").write_text("")
    # Near misses of our names: 16 characters but not lower-case hex, or only one end of a temporary name.
    foreign = ["notes.txt", "abc.json", ("A" * 64) + ".json", "config", "X" * 16 + ".json",
               "0123456789abcdeX.lock", "notes.tmp", ".rolebroker-notes"]
    for name in foreign:
        (directory / name).write_text("keep me")
    assert cache.clear() == 2
    assert sorted(os.listdir(directory)) == sorted(foreign)
    assert cache.clear() == 0


def test_taking_a_lock_makes_the_cache_directory_private(cache: rolebroker.CredentialCache) -> None:
    directory = Path(cache.directory)
    directory.mkdir(parents=True)
    directory.chmod(0o755)
    with cache.lock(KEY, timeout=1, clock=lambda: NOW, sleep=lambda _s: None) as held:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert held.acquired and held.path == os.path.join(cache.directory, cache.name(KEY) + ".lock")


def test_a_held_cache_lock_is_waited_for_with_the_given_clock_and_sleep(cache: rolebroker.CredentialCache) -> None:
    clock = FakeClock()
    with cache.lock(KEY, timeout=5, clock=clock, sleep=clock.sleep) as first:
        assert first.acquired
        with cache.lock(KEY, timeout=1, clock=clock, sleep=clock.sleep) as second:
            assert not second.acquired  # gave up after the timeout: proceeds unlocked
    assert clock() >= 1


def test_entries_for_lists_one_identity_at_one_broker(cache: rolebroker.CredentialCache) -> None:
    cache.put(KEY, entry(NOW + 3600))
    cache.put(rolebroker.CredentialCache.key(URL + "/", ALICE, "prod-admin", 900, "read-only"),
              {**entry(NOW + 900), "role": "prod-admin"})
    cache.put(rolebroker.CredentialCache.key(URL, ("https://issuer.example.com", "bob"), "x", None), entry(NOW + 1))
    cache.put(rolebroker.CredentialCache.key("https://other.example.com", ALICE, "y", None), entry(NOW + 2))
    directory = Path(cache.directory)
    (directory / "notes.json").write_text(json.dumps({**entry(NOW), "key": KEY}))  # not one of our names
    (directory / "notes.json").chmod(0o600)
    (directory / (cache.name("x") + ".json")).write_text("not json")
    found = sorted(cache.entries_for(URL + "/", ALICE), key=lambda e: str(e["role"]))
    assert found == [{"role": "prod-admin", "duration": 900, "scope": "read-only", "expires_at": NOW + 900},
                     {"role": "sandbox-admin", "duration": None, "scope": None, "expires_at": NOW + 3600}]


def test_forget_broker_deletes_only_that_brokers_entries(cache: rolebroker.CredentialCache) -> None:
    cache.put(KEY, entry(NOW + 3600))
    cache.put(rolebroker.CredentialCache.key(URL, ALICE, "prod-admin", None), entry(NOW + 3600))
    other = rolebroker.CredentialCache.key("https://other.example.com", ALICE, "y", None)
    cache.put(other, entry(NOW + 3600))
    assert cache.forget_broker(URL + "/") == 2
    assert os.listdir(cache.directory) == [cache.name(other) + ".json"]
    assert rolebroker.CredentialCache(cache.directory + "-missing", getuid=os.getuid).forget_broker(URL) == 0


def test_entries_others_can_read_or_that_are_not_entries_are_not_listed(cache: rolebroker.CredentialCache) -> None:
    cache.put(KEY, entry(NOW + 3600))
    os.chmod(cache.path(KEY), 0o644)
    odd = rolebroker.CredentialCache.key(URL, ALICE, "prod-admin", None)
    cache.put(odd, {**entry(NOW + 3600), "format": -1})  # a key, but no entry of this client's format
    assert cache.entries_for(URL, ALICE) == []


def test_a_broker_url_ending_in_x_is_still_its_own(cache: rolebroker.CredentialCache) -> None:
    url = "https://rolebroker.example.com/X"
    cache.put(rolebroker.CredentialCache.key(url, ALICE, "sandbox-admin", None), entry(NOW + 3600))
    assert [e["role"] for e in cache.entries_for(url + "/", ALICE)] == ["sandbox-admin"]
    assert cache.forget_broker(url + "/") == 1


def test_an_entry_another_process_removed_first_is_not_counted(cache: rolebroker.CredentialCache,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cache.put(KEY, entry(NOW + 3600))
    cache.put(rolebroker.CredentialCache.key(URL, ALICE, "prod-admin", None), entry(NOW + 3600))
    unlink = os.unlink
    calls: list[str] = []

    def raced(path: str) -> None:
        calls.append(path)
        unlink(path)
        if len(calls) == 1:
            raise FileNotFoundError(path)  # as if another process had removed it just before us

    monkeypatch.setattr(os, "unlink", raced)
    assert cache.forget_broker(URL) == 1 and len(calls) == 2


def test_listing_refuses_a_cache_directory_others_can_write(cache: rolebroker.CredentialCache) -> None:
    cache.put(KEY, entry(NOW + 3600))
    os.chmod(cache.directory, 0o757)  # noqa: S103 - the unsafe directory under test
    with pytest.raises(rolebroker.UnsafePath):
        cache.entries_for(URL, ALICE)


def test_a_cache_directory_removed_while_clearing_counts_nothing(cache: rolebroker.CredentialCache,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cache.put(KEY, entry(NOW + 3600))

    def gone(path: str) -> list[str]:
        raise FileNotFoundError(path)  # removed between the check and the listing

    monkeypatch.setattr(os, "listdir", gone)
    assert cache.clear() == 0
    assert cache.entries_for(URL, ALICE) == []


def test_a_hit_does_not_wait_for_a_lock_someone_holds(cache: rolebroker.CredentialCache) -> None:
    cache.put(KEY, entry(NOW + 3600, "ASIACACHED"))
    clock = FakeClock(NOW)
    with cache.lock(KEY, timeout=5, clock=clock, sleep=clock.sleep):
        fetch = CountingFetcher([], cache=cache, cache_key=KEY, clock=clock, sleep=clock.sleep, lock_timeout=5)
        assert fetch.fetch()["credentials"]["AccessKeyId"] == "ASIACACHED"
    assert clock.sleeps == [] and fetch.calls == 0


def test_a_miss_waits_for_a_held_lock_with_the_fetchers_sleep_then_fetches(cache: rolebroker.CredentialCache) -> None:
    clock = FakeClock(NOW)
    with cache.lock(KEY, timeout=5, clock=clock, sleep=clock.sleep):
        fetch = CountingFetcher([entry(NOW + 3600, "ASIAFRESH")], cache=cache, cache_key=KEY, clock=clock,
                                sleep=clock.sleep, lock_timeout=1)
        assert fetch.fetch()["credentials"]["AccessKeyId"] == "ASIAFRESH"
    assert clock.sleeps and clock() >= NOW + 1 and fetch.calls == 1


def test_fresh_credentials_with_exactly_a_minute_left_are_served(cache: rolebroker.CredentialCache) -> None:
    assert fetcher(cache, [entry(NOW + 60, "ASIASHORT")]).fetch()["credentials"]["AccessKeyId"] == "ASIASHORT"
    with pytest.raises(rolebroker.CredentialsExpired, match="that expire in 59 s, at"):
        fetcher(cache, [entry(NOW + 59)]).fetch()
    with pytest.raises(rolebroker.CredentialsExpired, match="that expire in 1 s, at"):
        fetcher(cache, [entry(NOW + 1)]).fetch()
    with pytest.raises(rolebroker.CredentialsExpired, match="that expired at"):
        fetcher(cache, [entry(NOW)]).fetch()


def test_the_broker_fetcher_passes_its_request_and_warn_to_the_client() -> None:
    def warn(text: str) -> None:
        raise AssertionError(text)

    class Client:
        def credentials(self, role: str, duration: int | None, scope: str | None, *,
                        warn: Any = None) -> dict[str, Any]:
            seen.append((role, duration, scope, warn))
            return entry(NOW + 3600)

    from rolebroker.cache import BrokerCredentialFetcher

    seen: list[tuple[Any, ...]] = []
    fetch = BrokerCredentialFetcher(Client, "sandbox-admin", 900, "read-only", warn=warn, cache=None,
                                    cache_key=KEY, clock=lambda: NOW)
    assert fetch.fetch() == entry(NOW + 3600)
    assert seen == [("sandbox-admin", 900, "read-only", warn)]


def test_clear_without_a_cache_directory(tmp_path: Path) -> None:
    assert rolebroker.CredentialCache(str(tmp_path / "missing"), getuid=os.getuid).clear() == 0


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    path = str(tmp_path / "entry.lock")
    clock = FakeClock()
    with rolebroker.FileLock(path, timeout=5, clock=clock, sleep=clock.sleep) as first:
        assert first.acquired
        with rolebroker.FileLock(path, timeout=0, clock=clock, sleep=clock.sleep) as second:
            assert not second.acquired
    with rolebroker.FileLock(path, timeout=0, clock=clock, sleep=clock.sleep) as third:
        assert third.acquired


def test_lock_wait_is_bounded_then_the_caller_proceeds(tmp_path: Path) -> None:
    path = str(tmp_path / "entry.lock")
    holder = FakeClock()
    waiter = FakeClock()
    with (rolebroker.FileLock(path, timeout=5, clock=holder, sleep=holder.sleep),
          rolebroker.FileLock(path, timeout=30, clock=waiter, sleep=waiter.sleep) as blocked):
        assert not blocked.acquired
    assert waiter.now >= 30
    assert max(waiter.sleeps) <= 0.1  # polls, so a released lock is noticed quickly
    assert len(waiter.sleeps) < 400


def test_lock_in_an_unusable_directory_lets_the_caller_proceed(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    clock = FakeClock()
    with rolebroker.FileLock(str(blocker / "x.lock"), timeout=30, clock=clock, sleep=clock.sleep) as lock:
        assert not lock.acquired
    assert clock.sleeps == []


# --------------------------------------------------------------------------
# Issue 9: entries with the wrong shape are never served.


@pytest.mark.parametrize("damage", [
    {"expires_at": str(NOW + 3600)},  # a number in a string
    {"expires_at": True},
    {"role": None},
    {"region": 7},
    {"extra": "planted"},
    {"credentials": {**entry(0)["credentials"], "SessionToken": ""}},
    {"credentials": {**entry(0)["credentials"], "SessionToken": 7}},
    {"credentials": {k: v for k, v in entry(0)["credentials"].items() if k != "SessionToken"}},
    {"credentials": {**entry(0)["credentials"], "Extra": "x"}},
])
def test_entry_with_a_wrong_shape_is_not_served(cache: rolebroker.CredentialCache, damage: dict[str, Any]) -> None:
    os.makedirs(cache.directory, mode=0o700)
    Path(cache.path(KEY)).write_text(json.dumps({**entry(NOW + 3600), **damage, "key": KEY}))
    os.chmod(cache.path(KEY), 0o600)
    assert cache.get(KEY) is None


def test_a_well_formed_entry_is_served(cache: rolebroker.CredentialCache) -> None:
    # The counterpart of the test above: the same file without the damage is served.
    os.makedirs(cache.directory, mode=0o700)
    Path(cache.path(KEY)).write_text(json.dumps({**entry(NOW + 3600), "key": KEY}))
    os.chmod(cache.path(KEY), 0o600)
    assert cache.get(KEY) == entry(NOW + 3600)


# --------------------------------------------------------------------------
# Issue 9, item 7: directories someone else controls are refused; lock files
# are never followed through a symlink.

OTHER_UID = os.getuid() + 1


def test_cache_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    directory = str(tmp_path / "cache")
    rolebroker.CredentialCache(directory, getuid=os.getuid).put(KEY, entry(NOW + 3600, "ASIAPLANTED"))
    # Seen by a process of another uid, the directory and its files are someone else's.
    theirs = rolebroker.CredentialCache(directory, getuid=lambda: OTHER_UID)
    for use in (lambda: theirs.get(KEY), lambda: theirs.put(KEY, entry(NOW + 3600)), theirs.clear,
                lambda: fetcher(theirs, [entry(NOW + 3600, "ASIAFRESH")]).fetch()):
        with pytest.raises(rolebroker.UnsafePath) as caught:
            use()
        assert str(caught.value) == (
            f"{directory} belongs to another user (uid {os.getuid()}), so rolebroker will not use it; "
            f"move it away (mv {directory} {directory}.untrusted) and try again")


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702, 0o1777])
def test_cache_directory_writable_by_others_is_refused(cache: rolebroker.CredentialCache, mode: int) -> None:
    cache.put(KEY, entry(NOW + 3600))
    os.chmod(cache.directory, mode)
    with pytest.raises(rolebroker.UnsafePath) as caught:
        cache.get(KEY)
    assert str(caught.value) == (f"{cache.directory} is writable by other users, so rolebroker will not use it; "
                                 f"run `chmod 700 {cache.directory}` and try again")
    with pytest.raises(rolebroker.UnsafePath):
        cache.put(KEY, entry(NOW + 3600))
    assert stat.S_IMODE(os.stat(cache.directory).st_mode) == mode  # refused, not silently changed


@pytest.mark.skipif(os.getuid() != 0, reason="making a file of another owner needs root")
def test_file_of_another_owner_in_our_directory_is_ignored_and_replaced(cache: rolebroker.CredentialCache) -> None:
    cache.put(KEY, entry(NOW + 3600, "ASIAPLANTED"))
    os.chown(cache.path(KEY), 4242, -1)
    assert cache.get(KEY) is None
    fetch = fetcher(cache, [entry(NOW + 3600, "ASIAFRESH")])
    assert fetch.fetch()["credentials"]["AccessKeyId"] == "ASIAFRESH"
    assert os.stat(cache.path(KEY)).st_uid == os.getuid()


@pytest.mark.parametrize(("uid", "mode", "allow_root", "problem"), [
    (1000, 0o40700, False, None),
    (1000, 0o40755, False, None),  # readable is tightened where we own it, not refused
    (0, 0o40755, True, None),  # a system-wide config directory
    (0, 0o40755, False, "belongs to another user (uid 0)"),
    (1001, 0o40700, True, "belongs to another user (uid 1001)"),
    (1000, 0o40720, False, "writable by other users"),
    (1000, 0o40702, False, "writable by other users"),
    (0, 0o40777, True, "writable by other users"),
])
def test_path_problem_is_a_pure_decision(uid: int, mode: int, allow_root: bool, problem: str | None) -> None:
    found = rolebroker.path_problem("/p", st_uid=uid, st_mode=mode, uid=1000, allow_root=allow_root)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_lock_file_symlink_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "elsewhere" / "victim"
    victim.parent.mkdir()
    link = tmp_path / "entry.lock"
    link.symlink_to(victim)
    clock = FakeClock()
    with rolebroker.FileLock(str(link), timeout=30, clock=clock, sleep=clock.sleep) as lock:
        assert not lock.acquired
    assert not victim.exists()
    assert clock.sleeps == []  # no 30 s stall either
