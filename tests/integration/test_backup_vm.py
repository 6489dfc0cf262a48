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
