"""Backup jobs end to end on a real libvirtd + QEMU (TCG) and the real restic: a running VM backed
up through the runner (libvirt pull backup → tar stream → restic), restored as a new VM and
compared with `qemu-img compare`, its restore test booted and cleaned up; a shut-off VM; a run
killed half-way, then a clean run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from hyperconsole.backup import jobs as J
from hyperconsole.backup import runner

libvirt = pytest.importorskip("libvirt")
pytestmark = pytest.mark.integration

MiB = 1024**2
PATTERN = [(1 * MiB, 2 * MiB, 0xAB), (9 * MiB, 64 * 1024, 0x5C), (15 * MiB, 512 * 1024, 0x01)]


def _boot_sector() -> bytes:
    """Writes 'hc-alive' to COM1 about once a second (the restore test's sign of life)."""
    code = bytes.fromhex("31c08ed8baf803be1b7cac84c07403eeebf8b91200fbf4e2fcebec") + b"hc-alive\r\n\0"
    return code.ljust(510, b"\0") + b"\x55\xaa"


def _disk_path(conn, name: str) -> str:
    from hyperconsole.virt.domains import parse_domain_xml
    return parse_domain_xml(conn.lookupByName(name).XMLDesc(0)).disks[0].path


def _prepare_disk(path: str, tmp_path: Path) -> None:
    """A bootable sector plus known bytes, written before the VM starts."""
    raw = tmp_path / "boot.raw"
    raw.write_bytes(_boot_sector())
    cmds = ["-c", f"write -P 0 512 {MiB - 512}"]
    for off, length, byte in PATTERN:
        cmds += ["-c", f"write -P {byte} {off} {length}"]
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -s {raw} 0 512", *cmds, path],
                   check=True, capture_output=True, timeout=60)


def _compare(a: str, b: str) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-img", "compare", "-U", a, b], capture_output=True, text=True, timeout=60)


def _no_job(conn, name: str) -> bool:
    try:
        conn.lookupByName(name).backupGetXMLDesc(0)
    except libvirt.libvirtError:
        return True
    return False


@pytest.fixture
def scratch():
    base = Path(tempfile.mkdtemp(prefix="hcit-scratch-", dir="/var/tmp"))
    base.chmod(0o755)
    yield base / "scratch"
    subprocess.run(["rm", "-rf", str(base)], timeout=30)


@pytest.fixture
def conn(libvirtd):
    c = libvirtd.connect()
    yield c
    c.close()


@pytest.fixture
def job(tmp_path):
    from tests.backup_local import restic_env_ok
    from tests.conftest import in_ci

    if not restic_env_ok():
        if in_ci():
            pytest.fail("restic is not installed, and CI must run the backup tests")
        pytest.skip("restic is not installed")
    pw = tmp_path / "restic.pw"
    pw.write_text("integration\n")
    pw.chmod(0o600)
    j = J.Job(name="it", repository=str(tmp_path / "repo"), password_file=str(pw), vms=("hcit-*",),
              retention=J.Retention(last=5), quiesce=True)
    runner.repository(j).init()
    return j


def test_running_vm_backed_up_restored_byte_identical_and_restore_tested(tiny_vm, conn, job, scratch, tmp_path):
    name = tiny_vm()
    original = _disk_path(conn, name)
    _prepare_disk(original, tmp_path)
    conn.lookupByName(name).create()
    records = runner.Records(tmp_path / "state")
    result = runner.run_job(conn, job, only_vm=name, records=records, scratch=scratch)
    assert result.ok, result.summary()
    [vm] = result.vms
    assert vm.size < 6 * MiB  # the allocated extents, not the 16 MiB disk
    assert _no_job(conn, name) and conn.lookupByName(name).isActive()
    assert list(scratch.iterdir()) == []
    [snap] = runner.repository(job).snapshots()
    assert snap.tag("hc-vm") == name and snap.tag("hc-state") == "running" and snap.tag("hc-quiesced") == "no"
    again = runner.run_job(conn, job, only_vm=name, records=records, scratch=scratch)
    assert again.vms[0].added < 64 * 1024  # an unchanged VM adds next to nothing
    new = f"{name}-r"
    try:
        assert runner.restore_snapshot(conn, job, snap, as_name=new) == new
        assert _compare(original, _disk_path(conn, new)).returncode == 0
        with pytest.raises(Exception, match="already"):
            runner.restore_snapshot(conn, job, snap, as_name=new)
    finally:
        runner.delete_vm(conn, new)
    conn.lookupByName(name).destroy()
    [tested] = runner.restore_test(conn, job, only_vm=name, records=records, timeout=120)
    assert tested.ok, tested.error
    assert 0 < tested.boot_seconds <= tested.seconds
    assert runner.TEST_PREFIX + name not in [d.name() for d in conn.listAllDomains()]
    assert records.tests("it")[name]["ok"] is True


def test_shut_off_vm_and_in_place_restore(tiny_vm, conn, job, scratch, tmp_path):
    name = tiny_vm()
    original = _disk_path(conn, name)
    _prepare_disk(original, tmp_path)
    result = runner.run_job(conn, job, only_vm=name, records=runner.Records(tmp_path / "state"), scratch=scratch)
    assert result.ok, result.summary()
    [snap] = runner.repository(job).snapshots()
    assert snap.tag("hc-state") == "shutoff"
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P 0x77 {MiB} {MiB}", original], check=True,
                   capture_output=True, timeout=60)
    saved = tmp_path / "expected.qcow2"
    runner.restore_snapshot(conn, job, snap, in_place=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(saved), "16M"], check=True, timeout=30)
    _prepare_disk(str(saved), tmp_path)
    assert _compare(str(saved), _disk_path(conn, name)).returncode == 0


KILLED = textwrap.dedent("""
    import sys, libvirt
    from pathlib import Path
    from hyperconsole.backup import jobs as J, runner, restic
    uri, repo, pw, name, state, scratch = sys.argv[1:]
    slow = restic.Repository.backup_stdin
    def backup_stdin(self, filename, tags, write, **kw):
        def dribble(pipe):
            import time
            class Slow:
                def write(self, data):
                    for i in range(0, len(data), 65536):
                        pipe.write(data[i:i + 65536]); time.sleep(0.05)
            write(Slow())
        return slow(self, filename, tags, dribble, **kw)
    restic.Repository.backup_stdin = backup_stdin
    job = J.Job(name="it", repository=repo, password_file=pw, vms=(name,), retention=J.Retention(last=5))
    conn = libvirt.open(uri)
    print("started", flush=True)
    runner.run_job(conn, job, records=runner.Records(Path(state)), scratch=Path(scratch))
""")


def test_a_run_killed_half_way_leaves_nothing_and_the_next_succeeds(tiny_vm, conn, job, scratch, tmp_path, libvirtd):
    name = tiny_vm()
    _prepare_disk(_disk_path(conn, name), tmp_path)
    conn.lookupByName(name).create()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", KILLED, libvirtd.uri, job.repository, job.password_file, name,
                             str(tmp_path / "state"), str(scratch)], env=env, stdout=subprocess.PIPE,
                            start_new_session=True)
    assert proc.stdout.readline().strip() == b"started"
    deadline = time.monotonic() + 60
    while not (scratch.is_dir() and any(scratch.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # the libvirt job runs and restic reads the stream
    assert not _no_job(conn, name)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert runner.repository(job).snapshots() == []
    result = runner.run_job(conn, job, only_vm=name, records=runner.Records(tmp_path / "state"), scratch=scratch)
    assert result.ok, result.summary()
    assert _no_job(conn, name) and conn.lookupByName(name).isActive()
    assert list(scratch.iterdir()) == []
    assert len(runner.repository(job).snapshots()) == 1
    assert not os.listdir(Path(job.repository) / "locks")
