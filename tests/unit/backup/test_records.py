"""Where backup run records live: one shared place written by root (the timer units) and read by
operators' consoles, a private per-user dir only where the shared one does not exist, the demo's own."""

from __future__ import annotations

import os
import stat

import pytest

from hyperconsole import paths
from hyperconsole.backup import runner
from hyperconsole.errors import HyperconsoleError


def _result(job: str = "nightly", ok: bool = True) -> runner.RunResult:
    vm = runner.VmResult("web-1", ok, "0123456789abcdef" if ok else "", 100, 10, 1.0,
                         error="" if ok else "boom")
    return runner.RunResult(job, 1000.0, 1010.0, (vm,))


def test_root_writes_the_shared_dir_group_readable_and_atomically():
    assert os.geteuid() == 0 and runner.state_dir() == runner.SHARED_DIR
    records = runner.Records()
    assert records.shared
    records.add_run(_result())
    info = (runner.SHARED_DIR / runner.RECORDS).stat()
    assert stat.S_IMODE(info.st_mode) == 0o640
    assert stat.S_IMODE(runner.SHARED_DIR.stat().st_mode) & 0o777 == 0o750
    assert not [p for p in runner.SHARED_DIR.iterdir() if p.name.endswith(".tmp")]
    # another reader (an operator's console, the doctor) sees the very same record
    assert runner.Records(runner.SHARED_DIR).last_run("nightly")["ok"] is True
    assert runner.Records().snapshot("01234567")["added"] == 10


def test_a_user_reads_the_shared_dir_where_it_exists_else_keeps_a_private_one(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert runner.state_dir() == paths.state_dir() / "backups"  # no shared dir: a private one
    private = runner.Records()
    private.add_run(_result())
    assert not private.shared and stat.S_IMODE(private.dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((private.dir / runner.RECORDS).stat().st_mode) == 0o600
    runner.SHARED_DIR.mkdir(mode=0o750)
    assert runner.state_dir() == runner.SHARED_DIR and runner.Records().last_run("nightly") is None


def test_unreadable_records_are_one_line_not_an_empty_history(tmp_path, monkeypatch):
    records = runner.Records(tmp_path / "r")
    records.add_run(_result())

    def denied(_path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(runner.safefs, "read_bytes", denied)
    with pytest.raises(HyperconsoleError, match="cannot read the backup run records"):
        records.last_run("nightly")


def test_the_demo_keeps_its_own_records():
    from hyperconsole.demo import backup as demo_backup

    assert demo_backup.records().dir == paths.demo_dir() / "backup" / "records"
    assert demo_backup.parts()["records"].dir != runner.state_dir()
