"""The VM archive: a pax tar with GNU sparse 1.0 disks; holes are not read; GNU tar extracts it."""

from __future__ import annotations

import io
import json
import subprocess

import pytest

from hyperconsole.backup import archive
from tests.backup_local import DirRestorer, FileDisk, FileVm, allocated, sparse_image

MiB = 1024**2


@pytest.fixture
def vm(tmp_path):
    a = sparse_image(tmp_path / "a.img", 64 * MiB, {0: b"boot" * 1024, 10 * MiB: b"\x5a" * (3 * MiB + 7),
                                                   40 * MiB: b"tail"})
    b = sparse_image(tmp_path / "b.img", 8 * MiB, {})  # all hole
    c = sparse_image(tmp_path / "c.img", 5 * MiB, {5 * MiB - 4096: b"\x01" * 4096})  # data up to the end
    disks = [FileDisk("vda", a), FileDisk("vdb", b), FileDisk("sdc", c)]
    yield FileVm("web-1", disks, nvram=b"\x7fNVRAM" * 100), {"vda": a, "vdb": b, "sdc": c}
    for d in disks:
        d.close()


class CountingDisk:
    """Wraps a disk and records every read, to prove holes are never read."""

    def __init__(self, disk):
        self.disk, self.target, self.virtual_size, self.reads = disk, disk.target, disk.virtual_size, []

    def extents(self):
        return self.disk.extents()

    def read(self, offset, length):
        self.reads.append((offset, length))
        return self.disk.read(offset, length)


def test_round_trip_is_byte_identical_and_reads_only_data(vm, tmp_path):
    source, images = vm
    counted = [CountingDisk(d) for d in source.disks]
    source.disks = counted
    out = io.BytesIO()
    planned = archive.write_archive(source, out)
    read_bytes = sum(n for d in counted for _, n in d.reads)
    assert read_bytes == planned.data_bytes < 8 * MiB  # 64+8+5 MiB of disks, ~3 MiB allocated
    assert len(out.getvalue()) <= planned.stream_bytes
    target = tmp_path / "restored"
    name = archive.restore_archive(io.BytesIO(out.getvalue()), lambda xml, nvram, _sizes: DirRestorer(target, xml, nvram))
    assert name == "restored"
    for t, image in images.items():
        assert (target / f"{t}.raw").read_bytes() == image.read_bytes()
        assert allocated(target / f"{t}.raw") <= allocated(image) + MiB
    assert (target / "domain.xml").read_text() == source.xml


def test_gnu_tar_extracts_sparse_images(vm, tmp_path):
    source, images = vm
    out = io.BytesIO()
    archive.write_archive(source, out)
    dest = tmp_path / "tar-out"
    dest.mkdir()
    done = subprocess.run(["tar", "-xSf", "-", "-C", str(dest)], input=out.getvalue(), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (dest / "domain.xml").read_text() == source.xml
    assert (dest / "nvram.fd").read_bytes() == source.nvram
    for t, image in images.items():
        assert (dest / f"{t}.raw").read_bytes() == image.read_bytes()
        assert allocated(dest / f"{t}.raw") <= allocated(image) + MiB
    listing = subprocess.run(["tar", "-tvf", "-"], input=out.getvalue(), capture_output=True, timeout=60).stdout.decode()
    assert "vda.raw" in listing and "GNUSparseFile" not in listing


def test_a_truncated_stream_leaves_nothing_restored(vm, tmp_path):
    source, _ = vm
    out = io.BytesIO()
    archive.write_archive(source, out)
    target = tmp_path / "restored"
    with pytest.raises(archive.ArchiveError, match="ends early"):
        archive.restore_archive(io.BytesIO(out.getvalue()[: 2 * MiB]), lambda x, n, _s: DirRestorer(target, x, n))
    assert list(target.iterdir()) == []


@pytest.mark.parametrize("data, words", [
    (b"\0" * 1024, "domain.xml does not come first"),
    (b"x" * 1024, "no ustar header"),
])
def test_foreign_streams_are_refused(tmp_path, data, words):
    with pytest.raises(archive.ArchiveError, match=words):
        archive.restore_archive(io.BytesIO(data), lambda x, n, _s: DirRestorer(tmp_path, x, n))


def test_the_manifest_comes_first_and_old_archives_without_it_still_restore(vm, tmp_path):
    source, images = vm
    source.xml = ("<domain><name>web-1</name><devices><disk type='volume'><driver type='qcow2'/>"
                  "<source pool='fast' volume='a.qcow2'/><target dev='vda'/></disk></devices></domain>")
    out = io.BytesIO()
    planned = archive.write_archive(source, out)
    data = out.getvalue()
    manifest = json.loads(planned.manifest)
    assert manifest["hyperconsole"] and manifest["vm"] == "web-1"
    assert manifest["disks"][0] == {"target": "vda", "virtual_size": 64 * MiB, "format": "qcow2", "pool": "fast"}
    assert [d["target"] for d in manifest["disks"]] == ["vda", "vdb", "sdc"]
    seen = []
    archive.restore_archive(io.BytesIO(data), lambda x, n, sizes: seen.append(sizes) or DirRestorer(tmp_path / "new", x, n))
    assert seen == [{"vda": 64 * MiB, "vdb": 8 * MiB, "sdc": 5 * MiB}]
    # an archive written before manifests: domain.xml first, the sizes are then checked per disk
    head = archive._member(archive.MANIFEST_NAME, len(planned.manifest), 0)
    old = data[len(head) + len(planned.manifest) + archive._pad(len(planned.manifest)):]
    seen.clear()
    archive.restore_archive(io.BytesIO(old), lambda x, n, sizes: seen.append(sizes) or DirRestorer(tmp_path / "old", x, n))
    assert seen == [{}]
    for t, image in images.items():
        assert (tmp_path / "old" / f"{t}.raw").read_bytes() == image.read_bytes()


def test_read_ahead_keeps_order_stays_bounded_and_hands_over_errors():
    produced = []

    def endless():
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    ahead = archive.read_ahead(endless(), depth=3)
    assert [next(ahead) for _ in range(5)] == [0, 1, 2, 3, 4]
    ahead.close()  # leaving early stops the producer
    stopped = len(produced)
    assert stopped <= 5 + 3 + 2  # at most `depth` items (and the one being put) beyond what was taken

    def failing():
        yield b"a"
        raise archive.ArchiveError("disk vda: read 0 bytes at 0, expected 4096")

    with pytest.raises(archive.ArchiveError, match="read 0 bytes"):
        list(archive.read_ahead(failing()))
    assert len(produced) == stopped


def test_read_ahead_stream_gives_the_bytes_in_any_read_sizes():
    data = bytes(range(256)) * 5000
    stream = archive.ReadAheadStream(io.BytesIO(data), chunk=4096)
    got, sizes = bytearray(), [1, 511, 4096, 70000, 10**6]
    while chunk := stream.read(sizes[len(got) % len(sizes)]):  # short reads, as from a pipe
        got += chunk
    assert bytes(got) == data and stream.read(10) == b""
    stream.close()
