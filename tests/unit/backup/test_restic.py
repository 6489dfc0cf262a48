"""The restic wrapper against the real restic on a local repository."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import threading
import time

import pytest

from hyperconsole.backup import archive, restic
from tests.backup_local import DirRestorer, FileDisk, FileVm, sparse_image

MiB = 1024**2


def _feed(data: bytes):
    return lambda pipe: pipe.write(data)


def test_backup_snapshots_dump_and_progress(repo, tmp_path):
    image = sparse_image(tmp_path / "d.img", 32 * MiB, {MiB: os.urandom(6 * MiB)})
    disk = FileDisk("vda", image)
    progress = []
    summary = repo.backup_stdin("web-1.tar", ["hc-job=nightly", "hc-vm=web-1"],
                                lambda pipe: archive.write_archive(FileVm("web-1", [disk]), pipe),
                                on_progress=progress.append)
    assert summary.data_added > 6 * MiB * 0.9 and summary.total_bytes < 7 * MiB
    assert progress and progress[-1].bytes_done > 0
    snaps = repo.snapshots(["hc-vm=web-1"])
    assert [s.short_id for s in snaps] == [summary.snapshot_id[:8]]
    assert snaps[0].tag("hc-job") == "nightly" and snaps[0].paths == ("/web-1.tar",)
    assert repo.snapshots(["hc-vm=other"]) == []
    target = tmp_path / "out"
    names = []
    repo.dump(snaps[0].id, "/web-1.tar",
              lambda stream: names.append(archive.restore_archive(stream, lambda x, n, _s: DirRestorer(target, x, n))))
    assert names == ["restored"] and (target / "vda.raw").read_bytes() == image.read_bytes()
    second = repo.backup_stdin("web-1.tar", ["hc-vm=web-1"],
                               lambda pipe: archive.write_archive(FileVm("web-1", [disk]), pipe))
    assert second.data_added < 64 * 1024  # unchanged disk: deduplicated
    stats = repo.stats()
    assert stats.snapshots == 2 and stats.ratio > 1.5
    assert "no errors" in repo.check("100%")
    disk.close()


def test_wrong_password_missing_repo_unknown_snapshot(repo, tmp_path):
    bad = tmp_path / "bad.pw"
    bad.write_text("nope\n")
    with pytest.raises(restic.WrongPassword, match="wrong password"):
        restic.Repository(repo.location, str(bad), cache_dir=repo.cache_dir).snapshots()
    (tmp_path / "empty").mkdir()
    for location in (str(tmp_path / "none"), str(tmp_path / "empty")):
        with pytest.raises(restic.NoRepository, match="no restic repository at"):
            restic.Repository(location, repo.password_file, cache_dir=repo.cache_dir).snapshots()
    with pytest.raises(restic.ResticError, match="password file .* does not exist"):
        restic.Repository(repo.location, str(tmp_path / "missing.pw")).snapshots()
    with pytest.raises(restic.UnknownSnapshot, match="no snapshot deadbeef"):
        repo.snapshot("deadbeef")
    with pytest.raises(restic.UnknownSnapshot, match="not a snapshot id"):
        repo.snapshot("--help")
    with pytest.raises(restic.UnknownSnapshot):
        repo.dump("deadbeef", "/x.tar", lambda s: s.read())
    with pytest.raises(restic.ResticError, match="already exists"):
        repo.init()


def test_forget_preview_per_rule_on_dated_snapshots(repo):
    for day in range(1, 11):
        repo.backup_stdin("vm.tar", ["hc-job=j", "hc-vm=vm"], _feed(b"x" * 100 + bytes([day])),
                          when=f"2024-03-{day:02d} 03:00:00")
    repo.backup_stdin("other.tar", ["hc-job=k"], _feed(b"y"), when="2024-03-01 03:00:00")
    groups = repo.forget(["--keep-daily=3", "--keep-last=1"], ["hc-job=j"], dry_run=True)
    assert len(groups) == 1
    group = groups[0]
    assert [s.time[:10] for s, _ in group.keep] == ["2024-03-10", "2024-03-09", "2024-03-08"]
    assert "daily snapshot" in group.keep[1][1] and "last snapshot" in group.keep[0][1]
    assert len(group.remove) == 7
    assert len(repo.snapshots()) == 11  # dry run: nothing went
    repo.forget(["--keep-daily=3"], ["hc-job=j"], dry_run=False, prune=True)
    assert len(repo.snapshots(["hc-job=j"])) == 3 and len(repo.snapshots(["hc-job=k"])) == 1


def test_stale_lock_is_cleared_and_a_live_lock_is_reported(repo):
    # A restic killed mid-backup leaves its lock; its process is gone, so restic calls it stale.
    proc = subprocess.Popen(repo.argv("backup", "--stdin", "--stdin-filename", "x.tar"), env=repo.env(),
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.stdin.write(b"z" * 1024)
    proc.stdin.flush()
    locks = os.path.join(repo.location, "locks")
    deadline = time.monotonic() + 30
    while not os.listdir(locks) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.listdir(locks)
    # While it lives, an exclusive command is refused, and the lock is not removed.
    with pytest.raises(restic.RepositoryLocked, match="locked by another restic process"):
        repo.forget(["--keep-last=1"], [], dry_run=False)
    assert os.listdir(locks)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.listdir(locks)
    repo.forget(["--keep-last=1"], [], dry_run=False)  # the stale lock is cleared, then it runs
    assert not os.listdir(locks)


def test_cancel_stops_restic_and_leaves_no_snapshot(repo):
    cancel = threading.Event()

    def slow(pipe):
        for _ in range(200):
            pipe.write(os.urandom(64 * 1024))
            time.sleep(0.02)
            cancel.set()

    with pytest.raises(restic.Cancelled):
        repo.backup_stdin("vm.tar", [], slow, cancel=cancel)
    assert repo.snapshots() == []
    assert not os.listdir(os.path.join(repo.location, "locks"))
