"""`hyperconsole backup …` as an operator meets it: the demo job end to end (real restic), job
changes in a scratch NixOS dir, and every bad input as one line with nothing changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def hc(*args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    done = subprocess.run([sys.executable, "-m", "hyperconsole", *args], capture_output=True, text=True,
                          timeout=300, env=env, stdin=subprocess.DEVNULL)
    if check is not None:
        assert done.returncode == check, done.stderr
    return done


def one_line(done: subprocess.CompletedProcess, words: str) -> None:
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], done.stderr


def test_demo_job_run_snapshots_prune_restore_and_restore_test(restic_bin):
    listed = json.loads(hc("--demo", "backup", "job", "list", "--json").stdout)
    assert [j["name"] for j in listed] == ["demo-nightly"]
    snaps = json.loads(hc("--demo", "backup", "snapshots", "--json").stdout)
    assert len(snaps) == 9 and {s["vm"] for s in snaps} == {"web-01", "web-02", "db-primary"}
    out = hc("--demo", "backup", "run", "demo-nightly", "--vm", "web-01").stdout
    assert out.startswith("web-01: snapshot ")
    assert len(json.loads(hc("--demo", "backup", "snapshots", "--vm", "web-01", "--json").stdout)) == 4
    preview = hc("--demo", "backup", "prune", "demo-nightly", "--dry-run").stdout
    assert "daily snapshot" in preview and "/web-01.tar: keep 4, remove 0" in preview
    assert "no errors" in hc("--demo", "backup", "check", "demo-nightly", "--subset", "100%").stdout
    first = snaps[0]["short_id"]
    assert "restored as copy-1" in hc("--demo", "backup", "restore", first, "--as", "copy-1").stdout
    tested = hc("--demo", "backup", "test-restore", "demo-nightly", "--vm", "web-02").stdout
    assert "web-02: restore test passed" in tested
    one_line(hc("--demo", "backup", "restore", first, "--as", "web-01", check=None), "a VM named 'web-01' already exists")
    one_line(hc("--demo", "backup", "restore", "deadbeef", "--as", "x", check=None), "no snapshot 'deadbeef'")
    one_line(hc("--demo", "backup", "restore", first, "--in-place", "--yes", check=None), "is running")
    one_line(hc("--demo", "backup", "run", "demo-nightly", "--vm", "nope", check=None), "no VM named 'nope'")
    one_line(hc("--demo", "backup", "run", "nope", check=None), "no backup job named 'nope'")
    assert len(json.loads(hc("--demo", "backup", "snapshots", "--json").stdout)) == 10  # nothing changed


def test_job_add_edit_remove_in_a_scratch_nixos_dir(tmp_path, restic_bin):
    nixos = tmp_path / "nixos"
    nixos.mkdir()
    common = ["--nixos-dir", str(nixos)]
    pw = tmp_path / "keys" / "restic.pw"
    repo = tmp_path / "repo"
    hc("backup", "job", "add", "nightly", *common, "--repo", str(repo), "--password-file", str(pw),
       "--create-password", "--init", "--vm", "web-*", "--keep-daily", "7", "--schedule", "Sun 03:00",
       "--no-rebuild", "--yes")
    assert oct(pw.stat().st_mode & 0o777) == "0o600" and (repo / "config").exists()
    fragment = (nixos / "hyperconsole" / "backups.nix").read_text()
    assert "hyperconsole backup run nightly" in fragment and pw.read_text().strip() not in fragment
    hc("backup", "job", "edit", "nightly", *common, "--keep-weekly", "4", "--no-quiesce", "--no-rebuild", "--yes")
    job = json.loads(hc("backup", "job", "list", *common, "--json").stdout)[0]
    assert job["retention"]["daily"] == 7 and job["retention"]["weekly"] == 4 and job["quiesce"] is False
    before = (nixos / "hyperconsole" / "backups.nix").read_text()
    for args, words in [
        (["job", "add", "nightly", "--repo", str(repo), "--password-file", str(pw)], "already exists"),
        (["job", "edit", "other", "--keep-daily", "1"], "no backup job named 'other'"),
        (["job", "remove", "other"], "no backup job named 'other'"),
        (["job", "add", "x", "--repo", str(repo), "--password-file", str(pw), "--create-password"], "already exists"),
        (["job", "add", "y", "--repo", str(repo), "--password-file", str(pw), "--keep-daily", "0"], "keeps nothing"),
        (["init", "nightly"], "already exists"),
    ]:
        one_line(hc("backup", *args, *common, "--no-rebuild", "--yes", check=None)
                 if args[0] == "job" and args[1] != "list" else hc("backup", *args, *common, check=None), words)
    assert (nixos / "hyperconsole" / "backups.nix").read_text() == before
    bad_pw = tmp_path / "bad.pw"
    bad_pw.write_text("wrong\n")
    hc("backup", "job", "edit", "nightly", *common, "--password-file", str(bad_pw), "--no-rebuild", "--yes")
    one_line(hc("backup", "snapshots", *common, check=None), "wrong password")
    one_line(hc("backup", "prune", "nightly", *common, check=None), "wrong password")
    hc("backup", "job", "edit", "nightly", *common, "--repo", str(tmp_path / "none"), "--no-rebuild", "--yes")
    one_line(hc("backup", "check", "nightly", *common, check=None), "no restic repository")
    hc("backup", "job", "remove", "nightly", *common, "--no-rebuild", "--yes")
    assert not (nixos / "hyperconsole" / "backups.nix").exists()


@pytest.mark.parametrize("args", [
    ["job", "add", "Bad", "--repo", "/r", "--password-file", "/p"],
    ["job", "add", "ok", "--repo", "rel", "--password-file", "/p"],
    ["job", "add", "ok", "--repo", "/r", "--password-file", "/p", "--schedule", "every day"],
    ["check", "j", "--subset", "150%"],
    ["restore", "abc", "--as", "a/b"],
])
def test_argument_errors_name_the_argument(args, tmp_path):
    done = hc("backup", *args, "--nixos-dir", str(tmp_path), check=2)
    assert "error: argument" in done.stderr.strip().splitlines()[-1]
