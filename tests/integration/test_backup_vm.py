"""Backups, the VM side, on a real libvirtd + QEMU (TCG): libvirt's pull-mode backup of a running
VM read over NBD, qemu-nbd for a shut-off one, restore into new volumes, the boot check, and what
a killed or interrupted backup leaves behind (nothing)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hyperconsole.backup import source
from hyperconsole.backup.source import BackupSourceError, open_vm

libvirt = pytest.importorskip("libvirt")
pytestmark = pytest.mark.integration

MiB = 1024**2
# (offset, length, byte) written with qemu-io before the VM starts; the rest of the 16 MiB
# disk is never written, so it must come back as holes.
PATTERN = [(1 * MiB, 2 * MiB, 0xAB), (9 * MiB, 64 * 1024, 0x5C), (15 * MiB, 512 * 1024, 0x01)]


def _disk_path(conn, name: str) -> str:
    from hyperconsole.virt.domains import parse_domain_xml
    return parse_domain_xml(conn.lookupByName(name).XMLDesc(0)).disks[0].path


def _write_pattern(path: str, pattern=PATTERN) -> None:
    cmds = []
    for off, length, byte in pattern:
        cmds += ["-c", f"write -P {byte} {off} {length}"]
    subprocess.run(["qemu-io", "-f", "qcow2", *cmds, path], check=True, capture_output=True, timeout=60)


def _read_all(disk) -> tuple[bytes, int]:
    """The disk's bytes as read through its extents (holes filled with zeros) and the byte
    count of its data extents."""
    buf = bytearray(disk.virtual_size)
    allocated = 0
    for ext in disk.extents():
        if ext.data:
            allocated += ext.length
            for off in range(ext.offset, ext.offset + ext.length, 4 * MiB):
                n = min(4 * MiB, ext.offset + ext.length - off)
                buf[off:off + n] = disk.read(off, n)
    return bytes(buf), allocated


def _expected(size: int = 16 * MiB, pattern=PATTERN) -> bytes:
    buf = bytearray(size)
    for off, length, byte in pattern:
        buf[off:off + length] = bytes([byte]) * length
    return bytes(buf)


def _no_job(conn, name: str) -> bool:
    try:
        conn.lookupByName(name).backupGetXMLDesc(0)
    except libvirt.libvirtError:
        return True
    return False


@pytest.fixture
def scratch(tmp_path_factory):
    # QEMU (libvirt-qemu) must reach the scratch directory: not under pytest's 0700 tmp.
    import tempfile
    base = Path(tempfile.mkdtemp(prefix="hcit-scratch-", dir="/var/tmp"))
    base.chmod(0o755)
    yield base / "scratch"
    subprocess.run(["rm", "-rf", str(base)], timeout=30)


@pytest.fixture
def conn(libvirtd):
    c = libvirtd.connect()
    yield c
    c.close()


def test_running_vm_read_through_pull_backup(tiny_vm, conn, scratch):
    name = tiny_vm()
    _write_pattern(_disk_path(conn, name))
    conn.lookupByName(name).create()
    with open_vm(conn, name, quiesce=True, scratch_dir=scratch) as vm:
        assert vm.state == "running" and vm.name == name
        assert not vm.quiesced and "no guest agent" in " ".join(vm.notes)
        assert "<domain" in vm.xml and vm.nvram is None
        [disk] = vm.disks
        assert disk.target == "vda" and disk.virtual_size == 16 * MiB
        assert not _no_job(conn, name)
        data, allocated = _read_all(disk)
    assert data == _expected()
    # Holes are not read: only the written extents (rounded to qcow2 clusters) were fetched.
    assert allocated == disk.bytes_read
    assert allocated < 4 * MiB
    assert _no_job(conn, name)
    assert list(scratch.iterdir()) == []
    dom = conn.lookupByName(name)
    assert dom.isActive()
    # the VM never ran on an overlay: its disk is still the original image
    assert _disk_path(conn, name).endswith(f"{name}.qcow2")


def test_point_in_time_while_the_guest_writes(tiny_vm, conn, scratch):
    """Data written to the disk after the job started is not in the backup (copy-before-write
    into the scratch file), but is on the VM's disk."""
    import libvirt_qemu
    name = tiny_vm()
    _write_pattern(_disk_path(conn, name))
    # An IDE disk: HMP qemu-io reaches its block backend by the device id (virtio-blk's id is
    # the PCI proxy, which has none); a write through it goes through the backup's filter.
    import xml.etree.ElementTree as ET
    root = ET.fromstring(conn.lookupByName(name).XMLDesc(0))
    disk = root.find("devices/disk")
    disk.remove(disk.find("address"))
    disk.find("target").attrib.update(dev="hda", bus="ide")
    dom = conn.defineXML(ET.tostring(root, encoding="unicode"))
    dom.create()
    hmp = libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP
    with open_vm(conn, name, quiesce=False, scratch_dir=scratch) as vm:
        assert vm.disks[0].target == "hda"
        out = libvirt_qemu.qemuMonitorCommand(dom, 'qemu-io -d ide0-0-0 "write -P 0xee 1M 64k"', hmp)
        assert "rror" not in out, out  # qemu-io's own report goes to QEMU's stdout
        data, _ = _read_all(vm.disks[0])
    assert data == _expected()
    with open_vm(conn, name, quiesce=False, scratch_dir=scratch) as vm:
        assert vm.disks[0].read(1 * MiB, 64 * 1024) == b"\xee" * 64 * 1024


def test_shut_off_vm_read_with_qemu_nbd(tiny_vm, conn, scratch):
    name = tiny_vm()
    _write_pattern(_disk_path(conn, name))
    with open_vm(conn, name, quiesce=True, scratch_dir=scratch) as vm:
        assert vm.state == "shutoff" and not vm.quiesced
        [disk] = vm.disks
        data, allocated = _read_all(disk)
        run = next(scratch.iterdir())
        pids = [int(p) for p in (run / "pids").read_text().split()]
        assert all(Path(f"/proc/{p}").exists() for p in pids)
    assert data == _expected() and disk.bytes_read == allocated < 4 * MiB
    assert list(scratch.iterdir()) == []
    time.sleep(0.2)
    assert not any(Path(f"/proc/{p}").exists() and b"qemu-nbd" in Path(f"/proc/{p}/cmdline").read_bytes()
                   for p in pids)
    conn.lookupByName(name).create()  # no lock left on the image


def test_vm_shut_down_mid_backup(tiny_vm, conn, scratch):
    name = tiny_vm()
    _write_pattern(_disk_path(conn, name))
    dom = conn.lookupByName(name)
    dom.create()
    with pytest.raises(Exception) as err:
        with open_vm(conn, name, quiesce=False, scratch_dir=scratch) as vm:
            vm.disks[0].read(1 * MiB, 64 * 1024)
            dom.destroy()
            vm.disks[0].read(2 * MiB, 64 * 1024)
    assert "NBD" in str(err.value) or "closed" in str(err.value)
    assert _no_job(conn, name) and list(scratch.iterdir()) == []
    dom.create()
    with open_vm(conn, name, quiesce=False, scratch_dir=scratch) as vm:
        assert _read_all(vm.disks[0])[0] == _expected()


_READER = textwrap.dedent("""
    import sys, time, libvirt
    from hyperconsole.backup.source import open_vm
    conn = libvirt.open("qemu:///system")
    with open_vm(conn, sys.argv[1], quiesce=False, scratch_dir=sys.argv[2]) as vm:
        vm.disks[0].read(1024 * 1024, 65536)
        print("reading", flush=True)
        time.sleep(600)
""")


def _kill_reader(name: str, scratch: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(source.__file__).parents[2]))
    proc = subprocess.Popen([sys.executable, "-c", _READER, name, str(scratch)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        line = proc.stdout.readline()
        assert line == b"reading\n", proc.stderr.read().decode()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.mark.parametrize("running", [True, False], ids=["running", "shutoff"])
def test_reader_killed_mid_backup_then_cleaned(tiny_vm, conn, scratch, running):
    name = tiny_vm()
    _write_pattern(_disk_path(conn, name))
    dom = conn.lookupByName(name)
    if running:
        dom.create()
    _kill_reader(name, scratch)
    [run] = list(scratch.iterdir())  # the killed run's directory is still there
    cleaned = source.cleanup(conn, scratch)
    assert any("removed" in line for line in cleaned)
    assert _no_job(conn, name) and list(scratch.iterdir()) == []
    assert dom.isActive() == running
    if running:  # still on its own disk, not an overlay
        assert _disk_path(conn, name).endswith(f"{name}.qcow2")
    # and again, cleaned by the next open_vm instead of an explicit call
    _kill_reader(name, scratch)
    with open_vm(conn, name, quiesce=False, scratch_dir=scratch) as vm:
        assert len(list(scratch.iterdir())) == 1
        assert _read_all(vm.disks[0])[0] == _expected()
    assert _no_job(conn, name) and list(scratch.iterdir()) == []
    if not running:
        dom.create()  # no qemu-nbd left holding the image


def test_libvirtd_restarted_mid_backup(tiny_vm, libvirtd, scratch):
    name = tiny_vm()
    c = libvirtd.connect()
    _write_pattern(_disk_path(c, name))
    c.lookupByName(name).create()
    try:
        with open_vm(c, name, quiesce=False, scratch_dir=scratch) as vm:
            vm.disks[0].read(1 * MiB, 65536)
            libvirtd.kill()
            libvirtd.start()
    except Exception:
        pass
    c2 = libvirtd.connect()
    try:
        source.cleanup(c2, scratch)
        assert _no_job(c2, name) and list(scratch.iterdir()) == []
        assert c2.lookupByName(name).isActive()
        with open_vm(c2, name, quiesce=False, scratch_dir=scratch) as vm:
            assert _read_all(vm.disks[0])[0] == _expected()
        assert _no_job(c2, name)
    finally:
        c2.close()
