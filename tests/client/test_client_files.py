"""Which files the client trusts (rolebroker.files): a path others could replace, as configure checks
the program it writes into ~/.aws/config, and a file only root or the user may own."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
from rolebroker.errors import UnsafePath
from rolebroker.files import FileLock, atomic_write, checked, private_dir, replaceable_by_others

ROOT_ONLY = pytest.mark.skipif(os.getuid() != 0, reason="needs root to give files to another uid")
OTHER = 4242


def private(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def test_a_private_path_is_safe_and_no_uid_checks_nothing(tmp_path: Path) -> None:
    mine = private(tmp_path / "mine")
    (mine / "rolebroker.pyz").write_text("")
    assert replaceable_by_others(str(mine / "rolebroker.pyz"), os.getuid) is None
    mine.chmod(0o777)
    assert replaceable_by_others(str(mine / "rolebroker.pyz"), None) is None


def test_the_files_own_directory_and_the_file_must_be_writable_by_nobody_else(tmp_path: Path) -> None:
    mine = private(tmp_path / "mine")
    program = mine / "rolebroker.pyz"
    program.write_text("")
    program.chmod(0o666)
    assert replaceable_by_others(str(program), os.getuid) == f"{program} is writable by other users"
    program.chmod(0o600)
    mine.chmod(0o1777)  # sticky, as /tmp: anyone may create the name once the file is gone
    assert replaceable_by_others(str(program), os.getuid) == f"{mine} is writable by other users"


def test_higher_up_a_sticky_directory_is_fine_and_a_writable_one_is_not(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    mine = private(shared / "mine")
    (mine / "rolebroker.pyz").write_text("")
    assert replaceable_by_others(str(mine / "rolebroker.pyz"), os.getuid) is None
    shared.chmod(0o777)
    assert replaceable_by_others(str(mine / "rolebroker.pyz"), os.getuid) == f"{shared} is writable by other users"


def test_a_symlink_is_judged_where_it_points_too(tmp_path: Path) -> None:
    mine = private(tmp_path / "mine")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    theirs.chmod(0o777)
    (theirs / "rolebroker.pyz").write_text("")
    (mine / "linked.pyz").symlink_to(theirs / "rolebroker.pyz")
    assert replaceable_by_others(str(mine / "linked.pyz"), os.getuid) == f"{theirs} is writable by other users"


@ROOT_ONLY
def test_another_users_directory_is_named_with_its_uid(tmp_path: Path) -> None:
    theirs = private(tmp_path / "theirs")
    (theirs / "rolebroker.pyz").write_text("")
    os.chown(theirs, OTHER, OTHER)
    assert replaceable_by_others(str(theirs / "rolebroker.pyz"), os.getuid) == \
        f"{theirs} belongs to another user (uid {OTHER})"


@ROOT_ONLY
def test_a_users_own_files_under_roots_directories_are_theirs(tmp_path: Path) -> None:
    mine = private(tmp_path / "mine")
    (mine / "rolebroker.pyz").write_text("")
    os.chown(mine, OTHER, OTHER)
    os.chown(mine / "rolebroker.pyz", OTHER, OTHER)
    assert replaceable_by_others(str(mine / "rolebroker.pyz"), lambda: OTHER) is None


def test_root_owned_files_pass_only_where_allowed(tmp_path: Path) -> None:
    system = tmp_path / "config"
    system.write_text("")
    system.chmod(0o644)
    if os.getuid() == 0:  # tmp_path is root's here: as another user, it is someone else's file
        assert checked(str(system), lambda: OTHER, allow_root=True) is not None
        with pytest.raises(UnsafePath):
            checked(str(system), lambda: OTHER)
    assert checked(str(tmp_path / "missing"), os.getuid) is None


@ROOT_ONLY
def test_a_root_owned_directory_others_can_write_is_named_as_writable(tmp_path: Path) -> None:
    shared = tmp_path / "shared"  # root's, as tmp_path is here
    shared.mkdir()
    shared.chmod(0o777)
    mine = private(shared / "mine")
    (mine / "rolebroker.pyz").write_text("")
    os.chown(mine, OTHER, OTHER)
    os.chown(mine / "rolebroker.pyz", OTHER, OTHER)
    assert replaceable_by_others(str(mine / "rolebroker.pyz"), lambda: OTHER) == \
        f"{shared} is writable by other users"


def test_a_private_directory_is_made_0700_and_a_stricter_one_kept(tmp_path: Path) -> None:
    private_dir(str(tmp_path / "new"), None)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    private_dir(str(loose), os.getuid)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    strict = tmp_path / "strict"
    strict.mkdir()
    strict.chmod(0o500)
    private_dir(str(strict), os.getuid)
    assert stat.S_IMODE(strict.stat().st_mode) == 0o500


def test_without_uid_checks_an_existing_directory_is_left_as_it_is(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o755)
    private_dir(str(loose), None)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o755


def test_an_atomic_write_makes_its_temporary_file_beside_the_target(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-temp-dir"))  # another filesystem, say
    atomic_write(str(tmp_path / "entry.json"), b"{}")
    assert (tmp_path / "entry.json").read_bytes() == b"{}" and os.listdir(tmp_path) == ["entry.json"]


def test_an_atomic_writes_temporary_file_is_one_clear_recognises_and_is_removed_on_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def refuse(src: str, dst: str) -> None:
        seen.append(src)
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(str(tmp_path / "entry.json"), b"{}")
    [temporary] = seen
    name = os.path.basename(temporary)
    assert os.path.dirname(temporary) == str(tmp_path) and name.startswith(".rolebroker-") and name.endswith(".tmp")
    assert os.listdir(tmp_path) == []


def test_an_atomic_write_to_a_bare_file_name_writes_in_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    atomic_write("entry.json", b"{}")
    assert os.listdir(tmp_path) == ["entry.json"]


def test_a_lock_file_is_private_and_anything_but_a_regular_file_is_no_lock(tmp_path: Path) -> None:
    with FileLock(str(tmp_path / "entry.lock"), timeout=0, clock=lambda: 0.0, sleep=lambda _s: None) as lock:
        assert lock.acquired and stat.S_IMODE((tmp_path / "entry.lock").stat().st_mode) == 0o600
    assert not lock.acquired
    os.mkfifo(tmp_path / "fifo.lock")
    with FileLock(str(tmp_path / "fifo.lock"), timeout=0, clock=lambda: 0.0, sleep=lambda _s: None) as odd:
        assert not odd.acquired  # proceeds unlocked
