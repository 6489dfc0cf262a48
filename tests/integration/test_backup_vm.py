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
from hyperconsole.backup.restore import RestoreError, VmRestorer, boot_check
from hyperconsole.backup.source import BackupSourceError, open_vm
from hyperconsole.errors import ValidationError

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
    from hyperconsole.backup.source import BackupSourceError, open_vm
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
    # and again, cleaned by the next open_vm instead of an explicit call — even one given another
    # scratch directory (a runner gives each VM a fresh one, and removes a killed run's)
    _kill_reader(name, scratch)
    for where in (scratch, scratch.parent / "next"):
        with open_vm(conn, name, quiesce=False, scratch_dir=where) as vm:
            assert len(list(where.iterdir())) == 1
            assert _read_all(vm.disks[0])[0] == _expected()
        assert _no_job(conn, name) and list(where.iterdir()) == []
        _kill_reader(name, scratch)
    with open_vm(conn, name, quiesce=False, scratch_dir=scratch.parent / "next"):
        pass
    assert _no_job(conn, name)
    source.cleanup(conn, scratch)
    assert list(scratch.iterdir()) == []
    if not running:
        dom.create()  # no qemu-nbd left holding the image


def test_scratch_directory_qemu_cannot_reach_is_refused(tiny_vm, conn, scratch):
    name = tiny_vm()
    conn.lookupByName(name).create()
    hidden = scratch.parent / "private"
    hidden.mkdir(mode=0o700)
    with pytest.raises(BackupSourceError, match="cannot reach the scratch directory .* is not searchable"):
        with open_vm(conn, name, quiesce=False, scratch_dir=hidden / "scratch"):
            pass
    assert _no_job(conn, name) and list((hidden / "scratch").iterdir()) == []


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


# --------------------------------------------------------------------------- restore


def _capture(vm) -> dict[str, tuple[int, list[tuple[int, bytes]]]]:
    """target -> (virtual size, [(offset, data)] of the data extents): a hand-built archive."""
    out = {}
    for disk in vm.disks:
        chunks = [(e.offset, disk.read(e.offset, e.length)) for e in disk.extents() if e.data]
        out[disk.target] = (disk.virtual_size, chunks)
    return out


def _restore(conn, xml, nvram, captured, **kw) -> str:
    with VmRestorer(conn, xml, nvram, **kw) as r:
        for target, (size, chunks) in captured.items():
            w = r.disk(target, size)
            for off, data in chunks:
                w.write(off, data)
            w.close()
            assert w.bytes_written == sum(len(d) for _, d in chunks)
        return r.finish()


def _vol_names(conn, pool: str) -> set[str]:
    p = conn.storagePoolLookupByName(pool)
    p.refresh(0)
    return set(p.listVolumes())


def _delete_vm(conn, name: str) -> None:
    from hyperconsole.virt.lifecycle import delete
    delete(conn, name, remove_storage=True)


def test_restore_running_backup_as_new_vm_is_byte_identical(tiny_vm, conn, scratch, hcit_pool):
    name = tiny_vm()
    original = _disk_path(conn, name)
    _write_pattern(original)
    dom = conn.lookupByName(name)
    dom.create()
    with open_vm(conn, name, quiesce=False, scratch_dir=scratch) as vm:
        xml, nvram, captured = vm.xml, vm.nvram, _capture(vm)
    new = f"{name}-r"
    try:
        assert _restore(conn, xml, nvram, captured, as_name=new, pool=None, in_place=False,
                        strip_nics=True) == new
        restored = conn.lookupByName(new)
        assert restored.UUIDString() != dom.UUIDString() and not restored.isActive()
        path = _disk_path(conn, new)
        assert path.startswith(str(hcit_pool[1])) and path != original
        r = subprocess.run(["qemu-img", "compare", "-U", original, path], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        info = subprocess.run(["qemu-img", "info", "--output=json", path], capture_output=True, text=True,
                              timeout=60)
        import json
        meta = json.loads(info.stdout)
        assert meta["format"] == "qcow2" and meta["virtual-size"] == 16 * MiB
        assert meta["actual-size"] < 4 * MiB  # holes were not written
    finally:
        _delete_vm(conn, new)


def test_restore_in_place_replaces_disks_only_after_writing(tiny_vm, conn, scratch, hcit_pool):
    name = tiny_vm()
    _write_pattern(_disk_path(conn, name))
    dom = conn.lookupByName(name)
    uuid = dom.UUIDString()
    with open_vm(conn, name, quiesce=False, scratch_dir=scratch) as vm:
        xml, captured = vm.xml, _capture(vm)
    old = _disk_path(conn, name)
    _write_pattern(old, [(1 * MiB, 64 * 1024, 0x77), (5 * MiB, 1 * MiB, 0x42)])  # damage after the backup
    dom.create()
    with pytest.raises(ValidationError, match="is running"):
        VmRestorer(conn, xml, None, as_name=None, pool=None, in_place=True)
    dom.destroy()
    # a restore that fails half-way leaves the original alone, and no new volume behind
    before = _vol_names(conn, hcit_pool[0])
    with pytest.raises(RuntimeError):
        with VmRestorer(conn, xml, None, as_name=None, pool=None, in_place=True) as r:
            r.disk("vda", 16 * MiB).write(0, b"x" * 4096)
            raise RuntimeError("archive ended early")
    assert _vol_names(conn, hcit_pool[0]) == before and _disk_path(conn, name) == old
    assert _restore(conn, xml, None, captured, as_name=None, pool=None, in_place=True) == name
    dom = conn.lookupByName(name)
    assert dom.UUIDString() == uuid
    assert _disk_path(conn, name) != old and not os.path.exists(old)
    with open_vm(conn, name, quiesce=False, scratch_dir=scratch) as vm:
        assert _read_all(vm.disks[0])[0] == _expected()
    _delete_vm(conn, name)


def test_restore_refuses_up_front(tiny_vm, conn, hcit_pool):
    name = tiny_vm()
    other = tiny_vm()
    xml = conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
    before = _vol_names(conn, hcit_pool[0])
    with pytest.raises(ValidationError, match="already exists"):
        VmRestorer(conn, xml, None, as_name=other, pool=None, in_place=False)
    with pytest.raises(ValidationError, match="no storage pool named 'hcit-nope'"):
        VmRestorer(conn, xml, None, as_name=f"{name}-x", pool="hcit-nope", in_place=False)
    with pytest.raises(ValidationError, match="needs .* free"):
        VmRestorer(conn, xml, None, as_name=f"{name}-x", pool=None, in_place=False, sizes={"vda": 1 << 50})
    with VmRestorer(conn, xml, None, as_name=f"{name}-x", pool=None, in_place=False) as r:
        with pytest.raises(ValidationError, match="needs .* free"):
            r.disk("vda", 1 << 50)
    assert _vol_names(conn, hcit_pool[0]) == before
    with pytest.raises(libvirt.libvirtError):
        conn.lookupByName(f"{name}-x")


# --------------------------------------------------------------------------- boot check


def _boot_sector() -> bytes:
    """A 16-bit boot sector that writes 'hc-alive' to COM1 about once a second, forever."""
    code = bytes.fromhex(
        "31c0"      # xor ax, ax
        "8ed8"      # mov ds, ax
        "baf803"    # mov dx, 0x3f8
        "be1b7c"    # outer: mov si, 0x7c1b (msg)
        "ac"        # inner: lodsb
        "84c0"      # test al, al
        "7403"      # jz delay
        "ee"        # out dx, al
        "ebf8"      # jmp inner
        "b91200"    # delay: mov cx, 18 (timer ticks)
        "fb"        # sti
        "f4"        # hlt
        "e2fc"      # loop sti
        "ebec"      # jmp outer
    ) + b"hc-alive\r\n\0"
    return code.ljust(510, b"\0") + b"\x55\xaa"


def test_boot_check_sees_serial_output(tiny_vm, conn, tmp_path):
    name = tiny_vm()
    raw = tmp_path / "boot.raw"
    raw.write_bytes(_boot_sector().ljust(16 * MiB, b"\0"))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), _disk_path(conn, name)],
                   check=True, capture_output=True, timeout=60)
    seconds = boot_check(conn, name, timeout=60)
    assert 0 < seconds < 60
    assert conn.lookupByName(name).isActive()


def test_boot_check_times_out_on_a_silent_vm(tiny_vm, conn):
    name = tiny_vm()  # nothing bootable: SeaBIOS prints nothing on the serial port
    with pytest.raises(RestoreError, match="no sign of life on its serial console within 3 s"):
        boot_check(conn, name, timeout=3)


def test_paused_vm_is_read_as_running_and_not_quiesced(tiny_vm, conn, scratch):
    name = tiny_vm()
    _write_pattern(_disk_path(conn, name))
    dom = conn.lookupByName(name)
    dom.create()
    dom.suspend()
    with open_vm(conn, name, quiesce=True, scratch_dir=scratch) as vm:
        assert vm.state == "paused" and not vm.quiesced and "paused" in " ".join(vm.notes)
        assert _read_all(vm.disks[0])[0] == _expected()
    assert _no_job(conn, name) and dom.info()[0] == libvirt.VIR_DOMAIN_PAUSED


def test_nvram_backed_up_and_restored_into_a_new_store(tiny_vm, conn, scratch, hcit_pool):
    """A UEFI-style VM (pflash loader + NVRAM file; never started here, so no firmware needed):
    the NVRAM bytes are in the backup, and a restore as a new VM gets its own store with them."""
    import xml.etree.ElementTree as ET
    name = tiny_vm()
    base = hcit_pool[1].parent
    (base / "code.fd").write_bytes(b"\0" * 65536)
    nv = base / f"{name}_VARS.fd"
    nv.write_bytes(b"saved-variables" * 100)
    root = ET.fromstring(conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    os_el = root.find("os")
    ET.SubElement(os_el, "loader", readonly="yes", type="pflash").text = str(base / "code.fd")
    ET.SubElement(os_el, "nvram").text = str(nv)
    ET.SubElement(ET.SubElement(root, "features"), "acpi")
    conn.defineXML(ET.tostring(root, encoding="unicode"))
    with open_vm(conn, name, quiesce=False, scratch_dir=scratch) as vm:
        assert vm.nvram == nv.read_bytes()
        xml, captured = vm.xml, _capture(vm)
    new = f"{name}-r"
    try:
        _restore(conn, xml, vm.nvram, captured, as_name=new, pool=None, in_place=False)
        path = ET.fromstring(conn.lookupByName(new).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).findtext("os/nvram")
        assert path == str(base / f"{new}_VARS.fd")
        assert Path(path).read_bytes() == nv.read_bytes()
    finally:
        _delete_vm(conn, new)
    assert not (base / f"{new}_VARS.fd").exists()
