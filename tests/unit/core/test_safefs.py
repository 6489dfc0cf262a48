"""safefs: the file operations every write of the console goes through, on real files and links."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hyperconsole import safefs
from hyperconsole.errors import HyperconsoleError
from hyperconsole.safefs import SymlinkError, Transaction


@pytest.fixture
def victim(tmp_path) -> Path:
    path = tmp_path / "outside" / "victim"
    path.parent.mkdir()
    path.write_text("precious\n")
    return path


@pytest.fixture
def work(tmp_path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.parametrize("flags", [os.O_RDWR | os.O_CREAT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, os.O_RDONLY])
def test_open_refuses_a_link_to_a_file(work, victim, flags):
    (work / "f").symlink_to(victim)
    with pytest.raises(SymlinkError, match=f"{work / 'f'} is a symbolic link; refusing to write through it"):
        safefs.open_file(work / "f", flags)
    assert victim.read_text() == "precious\n"


def test_open_does_not_create_where_a_dangling_link_points(work, tmp_path):
    (work / "f").symlink_to(tmp_path / "created-by-root")
    with pytest.raises(SymlinkError):
        safefs.open_file(work / "f", os.O_WRONLY | os.O_CREAT)
    assert not (tmp_path / "created-by-root").exists()


def test_open_refuses_a_linked_directory(work, victim):
    (work / "d").symlink_to(victim.parent)
    with pytest.raises(SymlinkError, match=f"{work / 'd'} is a symbolic link"):
        safefs.open_file(work / "d" / "victim", os.O_WRONLY | os.O_TRUNC)
    assert victim.read_text() == "precious\n"


def test_a_hard_linked_file_is_read_but_never_written(work, victim):
    os.link(victim, work / "f")
    assert safefs.read_bytes(work / "f") == b"precious\n"
    with pytest.raises(HyperconsoleError, match="has other hard links"):
        safefs.open_file(work / "f", os.O_WRONLY | os.O_APPEND)
    assert victim.read_text() == "precious\n"


def test_a_fifo_is_refused_without_blocking(work):
    os.mkfifo(work / "f")
    with pytest.raises(HyperconsoleError, match="not a regular file"):
        safefs.read_bytes(work / "f")


def test_ensure_dir_refuses_links_and_files_and_tightens_private_dirs(work, victim):
    os.chmod(victim.parent, 0o755)
    (work / "link").symlink_to(victim.parent)
    with pytest.raises(SymlinkError):
        safefs.ensure_private_dir(work / "link")
    assert mode(victim.parent) == 0o755
    (work / "file").write_text("")
    with pytest.raises(HyperconsoleError, match="not a directory"):
        safefs.ensure_dir(work / "file")
    (work / "loose").mkdir(mode=0o755)
    os.chmod(work / "loose", 0o755)
    safefs.ensure_private_dir(work / "loose")
    assert mode(work / "loose") == 0o700
    safefs.ensure_private_dir(work / "new" / "deeper")
    assert mode(work / "new" / "deeper") == 0o700


def test_private_files_are_created_and_tightened_to_0600(work):
    old = os.umask(0)
    try:
        os.close(safefs.open_private(work / "new.log", os.O_WRONLY | os.O_CREAT))
        (work / "old.log").write_text("x")
        os.chmod(work / "old.log", 0o644)
        os.close(safefs.open_private(work / "old.log", os.O_WRONLY | os.O_APPEND))
    finally:
        os.umask(old)
    assert mode(work / "new.log") == 0o600 and mode(work / "old.log") == 0o600


def test_atomic_write_refuses_a_link_and_leaves_no_temp(work, victim):
    (work / "configuration.nix").symlink_to(victim)
    with pytest.raises(SymlinkError):
        safefs.atomic_write(work / "configuration.nix", b"new")
    assert victim.read_text() == "precious\n"
    assert (work / "configuration.nix").is_symlink()
    assert sorted(p.name for p in work.iterdir()) == ["configuration.nix"]


def test_a_transaction_is_all_or_nothing(work, victim):
    (work / "a").write_text("old a\n")
    (work / "z").symlink_to(victim)
    with pytest.raises(SymlinkError):
        with Transaction(work) as txn:
            txn.write("a", b"new a\n")
            txn.write_dir("h", {"copy": b"x"})
            txn.write("z", b"new z\n")  # refused: a link sits at the target
            txn.commit()
    assert sorted(p.name for p in work.iterdir()) == ["a", "z"]
    assert (work / "a").read_text() == "old a\n"
    assert victim.read_text() == "precious\n"


def test_a_transaction_left_without_commit_removes_its_temps(work):
    with Transaction(work) as txn:
        temp = txn.write("a", b"new")
        assert temp.parent == work and temp.read_bytes() == b"new"
    assert list(work.iterdir()) == []


def test_a_committed_transaction_renames_removes_and_keeps_modes(work):
    (work / "gone").write_text("x")
    with Transaction(work) as txn:
        txn.write("a", b"A", mode=0o644)
        txn.write_dir("h", {"f": b"F"})
        txn.remove("gone")
        txn.commit()
    assert (work / "a").read_bytes() == b"A" and mode(work / "a") == 0o644
    assert mode(work / "h") == 0o700 and mode(work / "h" / "f") == 0o600
    assert not (work / "gone").exists()


def test_remove_temps_removes_links_not_what_they_point_to(work, victim):
    (work / ".stale.1234.tmp").write_text("x")
    (work / ".staged.5678.tmp").mkdir()
    (work / ".staged.5678.tmp" / "f").write_text("x")
    (work / ".planted.tmp").symlink_to(victim.parent)
    (work / "keep").write_text("x")
    safefs.remove_temps(work)
    assert sorted(p.name for p in work.iterdir()) == ["keep"]
    assert victim.read_text() == "precious\n"
