"""The NBD client, NbdDisk (the backup read side) and VolumeWriter (the restore write side)
against a real qemu-nbd on local images; no libvirt needed."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from contextlib import ExitStack
from pathlib import Path

import pytest

from hyperconsole.backup import nbd
from hyperconsole.backup.nbd import NbdClient, NbdError
from hyperconsole.backup.restore import VolumeWriter
from hyperconsole.backup.source import Extent, NbdDisk, backup_xml, serve

MiB = 1024**2

if not shutil.which("qemu-nbd") or not shutil.which("qemu-io"):
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail("qemu-utils (qemu-nbd, qemu-io) not installed (CI=true)", pytrace=False)
    pytest.skip("qemu-utils (qemu-nbd, qemu-io) not installed", allow_module_level=True)


def _image(tmp_path: Path, fmt: str = "qcow2", size: str = "64M", writes=()) -> Path:
    path = tmp_path / f"disk.{fmt}"
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), size], check=True, timeout=30)
    cmds = [a for off, length, byte in writes for a in ("-c", f"write -P {byte} {off} {length}")]
    if cmds:
        subprocess.run(["qemu-io", "-f", fmt, *cmds, str(path)], check=True, capture_output=True, timeout=30)
    return path


@pytest.fixture
def stack():
    with ExitStack() as s:
        yield s


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_extents_and_reads_only_touch_data(tmp_path, stack, fmt):
    path = _image(tmp_path, fmt, writes=[(1 * MiB, 2 * MiB, 0xAB), (40 * MiB, 64 * 1024, 0x11)])
    client = serve(stack, tmp_path, "vda", str(path), fmt, read_only=True)
    assert client.read_only and client.size == 64 * MiB
    disk = NbdDisk("vda", client)
    ext = disk.extents()
    assert ext[0].offset == 0 and sum(e.length for e in ext) == 64 * MiB
    assert all(a.offset + a.length == b.offset and a.data != b.data for a, b in zip(ext, ext[1:]))
    # qemu-img allocates a raw image's first 4 KiB (it probes alignment with it): data, read as zeros
    data = [e for e in ext if e.data and (e.offset, e.length) != (0, 4096)]
    assert [(e.offset, e.length) for e in data] == [(1 * MiB, 2 * MiB), (40 * MiB, 64 * 1024)]
    assert disk.read(1 * MiB, 2 * MiB) == b"\xab" * 2 * MiB
    assert disk.read(40 * MiB - 4, 8) == b"\0" * 4 + b"\x11" * 4
    assert disk.bytes_read == 2 * MiB + 8


def test_requests_outside_the_export_are_refused(tmp_path, stack):
    client = serve(stack, tmp_path, "vda", str(_image(tmp_path)), "qcow2", read_only=True)
    with pytest.raises(NbdError, match="outside the export"):
        client.read(64 * MiB - 10, 20)
    with pytest.raises(NbdError, match="outside the export"):
        client.read(0, nbd.MAX_REQUEST + 1)
    with pytest.raises(NbdError):  # the export is read-only: the server answers EPERM
        client.write(0, b"x" * 512)


def test_unknown_export_and_missing_socket_are_one_line(tmp_path, stack):
    serve(stack, tmp_path, "vda", str(_image(tmp_path)), "qcow2", read_only=True)
    with pytest.raises(NbdError, match="'vdb'"):
        NbdClient(str(tmp_path / "vda.sock"), "vdb", timeout=5)
    with pytest.raises(NbdError, match="No such file"):
        NbdClient(str(tmp_path / "nothing.sock"), "vda", timeout=5)


def test_a_server_that_stops_answering_times_out(tmp_path):
    """A listener that accepts and then says nothing: the handshake ends in NbdError, not a hang."""
    import socket
    path = tmp_path / "mute.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)
    try:
        with pytest.raises(NbdError, match="timed out"):
            NbdClient(str(path), "vda", timeout=0.5)
    finally:
        srv.close()


def test_a_bad_server_is_refused(tmp_path):
    import socket
    import threading
    path = tmp_path / "bad.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)

    def talk():
        c, _ = srv.accept()
        c.sendall(b"NBDMAGIC" + struct.pack(">QH", 0x420281861253, 0))  # oldstyle
        c.close()

    t = threading.Thread(target=talk)
    t.start()
    try:
        with pytest.raises(NbdError, match="not a fixed-newstyle NBD server"):
            NbdClient(str(path), "vda", timeout=5)
    finally:
        t.join(5)
        srv.close()


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_volume_writer_restores_sparse_and_identical(tmp_path, stack, fmt):
    src = _image(tmp_path, "qcow2", writes=[(1 * MiB, 2 * MiB, 0xAB), (40 * MiB, 64 * 1024, 0x11)])
    disk = NbdDisk("vda", serve(stack, tmp_path, "vda", str(src), "qcow2", read_only=True))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dst = out_dir / f"new.{fmt}"
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(dst), str(disk.virtual_size)], check=True,
                   timeout=30)
    writer = VolumeWriter("vda", str(dst), fmt, out_dir)
    for e in disk.extents():
        if e.data:
            writer.write(e.offset, disk.read(e.offset, e.length))
    writer.close()
    assert writer.bytes_written == 2 * MiB + 64 * 1024
    r = subprocess.run(["qemu-img", "compare", str(src), str(dst)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert dst.stat().st_blocks * 512 < 4 * MiB  # holes were not written


def test_backup_xml_is_pull_mode_over_a_unix_socket(tmp_path):
    import xml.etree.ElementTree as ET
    root = ET.fromstring(backup_xml(tmp_path / "nbd.sock", [("vda", tmp_path / "vda.scratch")], ["sda"]))
    assert root.get("mode") == "pull"
    assert root.find("server").attrib == {"transport": "unix", "socket": str(tmp_path / "nbd.sock")}
    vda, sda = root.findall("disks/disk")
    assert vda.attrib == {"name": "vda", "backup": "yes", "type": "file", "exportname": "vda"}
    assert vda.find("scratch").get("file") == str(tmp_path / "vda.scratch")
    assert sda.attrib == {"name": "sda", "backup": "no"}
    assert Extent(0, 1, False).data is False
