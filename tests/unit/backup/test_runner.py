"""Runs of a job over the libvirt test driver's VMs with local disk files and the real restic:
selection, tags, records, retention, refusals that change nothing, a run killed half-way."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import libvirt
import pytest

from hyperconsole.backup import jobs as J
from hyperconsole.backup import runner
from hyperconsole.errors import HyperconsoleError, ValidationError
from tests.backup_local import LocalRestorer, local_opener, sparse_image
from tests.fixtures import build_host_xml, domain_xml, test_uri

MiB = 1024**2


@pytest.fixture
def host(tmp_path, repo):
    xml = build_host_xml(domains=[domain_xml(n, state="shutoff") for n in ("web-1", "web-2", "db")])
    uri = test_uri(tmp_path, xml)
    conn = libvirt.open(uri)
    images = {n: [("vda", sparse_image(tmp_path / f"{n}.img", 16 * MiB, {MiB: os.urandom(2 * MiB)}))]
              for n in ("web-1", "web-2", "db")}
    job = J.validate(J.Job(name="nightly", repository=repo.location, password_file=repo.password_file,
                           vms=("web-*",), retention=J.Retention(last=2)))
    records = runner.Records(tmp_path / "state")
    yield conn, job, images, records, uri, tmp_path / "scratch"
    conn.close()


def test_run_backs_up_selected_vms_with_tags_and_records(host, repo):
    conn, job, images, records, _, scratch = host
    seen = []
    result = runner.run_job(conn, job, open_vm=local_opener(images), records=records, scratch=scratch,
                            on_progress=lambda vm, done, total: seen.append((vm, done, total)))
    assert result.ok, result.summary()
    assert [v.vm for v in result.vms] == ["web-1", "web-2"]
    snaps = repo.snapshots(["hc-job=nightly"])
    assert sorted(s.tag("hc-vm") for s in snaps) == ["web-1", "web-2"]
    uuid = conn.lookupByName("web-1").UUIDString()
    assert {"hc-uuid=" + uuid, "hc-quiesced=no", "hc-state=shutoff"} <= set(snaps[0].tags + snaps[1].tags)
    assert seen and all(done <= total for _, done, total in seen)
    state_file = records.dir / runner.RECORDS
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600 and stat.S_IMODE(records.dir.stat().st_mode) == 0o700
    assert records.last_run("nightly")["ok"] is True
    rows = runner.snapshot_rows(job, records=records)
    assert all(r.size and r.added for r in rows)
    assert list(scratch.iterdir()) == []
    again = runner.run_job(conn, job, open_vm=local_opener(images), records=records, scratch=scratch)
    assert all(v.added < 64 * 1024 for v in again.vms)  # unchanged disks add next to nothing
    runner.run_job(conn, job, open_vm=local_opener(images), records=records, scratch=scratch)
    assert len(repo.snapshots(["hc-job=nightly"])) == 4  # keep-last 2 per VM


def test_the_sources_notes_are_recorded_with_the_snapshot(host):
    """Why a VM was not quiesced (the source's notes) lands in the run record and the snapshot row."""
    from contextlib import contextmanager

    conn, job, images, records, _, scratch = host
    plain = local_opener(images)

    @contextmanager
    def noted(*args, **kwargs):
        with plain(*args, **kwargs) as src:
            src.notes.append("not quiesced: no guest agent channel")
            yield src

    result = runner.run_job(conn, job, only_vm="web-1", open_vm=noted, records=records, scratch=scratch)
    assert result.vms[0].notes == ("not quiesced: no guest agent channel",)
    assert records.last_run("nightly")["vms"][0]["notes"] == ["not quiesced: no guest agent channel"]
    [row] = runner.snapshot_rows(job, records=records)
    assert row.notes == ("not quiesced: no guest agent channel",)


def test_only_vm_and_refusals_change_nothing(host, repo, tmp_path):
    conn, job, images, records, _, scratch = host
    with pytest.raises(ValidationError, match="not in backup job"):
        runner.run_job(conn, job, only_vm="db", open_vm=local_opener(images), records=records, scratch=scratch)
    with pytest.raises(ValidationError, match="no VM named 'nope'"):
        runner.run_job(conn, job, only_vm="nope", open_vm=local_opener(images), records=records, scratch=scratch)
    bad = tmp_path / "bad.pw"
    bad.write_text("nope\n")
    wrong = J.Job(**{**J.msgspec.structs.asdict(job), "password_file": str(bad)})
    with pytest.raises(HyperconsoleError, match="wrong password"):
        runner.run_job(conn, wrong, open_vm=local_opener(images), records=records, scratch=scratch)
    missing = J.Job(**{**J.msgspec.structs.asdict(job), "repository": str(tmp_path / "no-repo")})
    with pytest.raises(HyperconsoleError, match="no restic repository"):
        runner.run_job(conn, missing, open_vm=local_opener(images), records=records, scratch=scratch)
    assert repo.snapshots() == [] and records.last_run("nightly") is None
    result = runner.run_job(conn, job, only_vm="web-2", open_vm=local_opener(images), records=records, scratch=scratch)
    assert [v.vm for v in result.vms] == ["web-2"] and result.ok


def test_restore_as_new_and_in_place(host, repo, tmp_path):
    conn, job, images, records, _, scratch = host
    runner.run_job(conn, job, open_vm=local_opener(images), records=records, scratch=scratch)
    jobs = [job]
    LocalRestorer.base = tmp_path / "restored"
    snap = [s for s in repo.snapshots() if s.tag("hc-vm") == "web-1"][0]
    found_job, found = runner.find_snapshot(jobs, snap.short_id)
    assert found.id == snap.id
    name = runner.restore_snapshot(conn, found_job, found, as_name="web-1-copy", restorer=LocalRestorer)
    assert name == "web-1-copy"
    assert (tmp_path / "restored" / "web-1-copy" / "vda.raw").read_bytes() == images["web-1"][0][1].read_bytes()
    with pytest.raises(ValidationError, match="no snapshot"):
        runner.find_snapshot(jobs, "deadbeef")
    with pytest.raises(ValidationError, match="either as a new VM"):
        runner.restore_snapshot(conn, job, snap, restorer=LocalRestorer)


def test_prune_preview_then_prune(host, repo):
    conn, job, images, records, _, scratch = host
    for day in (1, 2, 3, 4):
        runner.run_job(conn, job, open_vm=local_opener(images), records=records, scratch=scratch, when=f"2024-05-0{day} 02:00:00",
                       forget=False)
    preview = runner.prune_preview(job)
    assert sorted(len(g.remove) for g in preview) == [2, 2]
    assert len(repo.snapshots()) == 8
    runner.prune(job)
    assert len(repo.snapshots()) == 4
    assert runner.stats(job).snapshots == 4
    assert "no errors" in runner.check(job, "100%")


KILLED_RUN = textwrap.dedent("""
    import sys, libvirt
    from pathlib import Path
    from hyperconsole.backup import jobs as J, runner
    from tests.backup_local import local_opener
    uri, repo, pw, image, state, scratch = sys.argv[1:]
    job = J.Job(name="nightly", repository=repo, password_file=pw, vms=("web-1",), retention=J.Retention(last=5))
    conn = libvirt.open(uri)
    print("started", flush=True)
    runner.run_job(conn, job, open_vm=local_opener({"web-1": [("vda", Path(image))]}, delay=0.2),
                   records=runner.Records(Path(state)), scratch=Path(scratch))
""")


def test_a_run_killed_half_way_leaves_nothing_and_the_next_run_succeeds(host, repo, tmp_path):
    conn, job, images, records, uri, scratch = host
    big = sparse_image(tmp_path / "big.img", 256 * MiB, {0: os.urandom(40 * MiB)})
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, uri, repo.location, repo.password_file, str(big),
                             str(records.dir), str(scratch)], env=env, stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout.readline().strip() == b"started"
    deadline = time.monotonic() + 60
    while not list(scratch.glob("run-*/nbd.sock")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # restic is reading the stream now
    assert list(scratch.glob("run-*/nbd.sock"))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert repo.snapshots() == []  # nothing half-made was kept
    images["web-1"] = [("vda", big)]
    result = runner.run_job(conn, job, only_vm="web-1", open_vm=local_opener(images), records=records, scratch=scratch)
    assert result.ok, result.summary()
    assert list(scratch.iterdir()) == []  # the killed run's directory went with the next open
    assert len(repo.snapshots()) == 1
    assert not os.listdir(os.path.join(repo.location, "locks"))
