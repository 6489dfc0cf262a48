"""hyperconsole.virt.pools, volumes and upload on libvirt's test driver, one node XML per test.

What the test driver cannot do, and where it is covered instead:
- virStorageVolResize and virStorageVolUpload are not implemented: here we check every refusal
  that happens before them, and that a failed upload deletes the volume it created; growing,
  uploading with progress and cancelling run on the real daemon in
  tests/integration/test_storage_real.py (checked there with qemu-img).
- the test driver creates no files: formats/sizes on disk are checked on the real daemon.
- virConnectGetStoragePoolCapabilities is not implemented: the findStoragePoolSources
  fallback is what decides 'fs'/'logical' here.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET

import libvirt
import pytest

from hyperconsole.errors import ValidationError
from hyperconsole.virt import inventory, pools, upload, volumes
from hyperconsole import names
from hyperconsole.virt.errors import VirtError
from hyperconsole.virt.pools import SpaceLevel
from tests.fixtures import GIB, MIB, build_host_xml, domain_xml, pool_xml, volume_xml

IMG = "/var/lib/libvirt/images"


def vol(name: str, fmt: str = "qcow2", capacity: int = 10 * GIB, path: str = IMG) -> str:
    return volume_xml(name, capacity=capacity, fmt=fmt, path=f"{path}/{name}")


def host(domains=(), volumes=None, extra_pools=()) -> str:
    if volumes is None:
        volumes = [vol("web.qcow2"), vol("db.qcow2"), vol("spare.qcow2"), vol("data.raw", fmt="raw")]
    return build_host_xml(domains=list(domains),
                          pools=[pool_xml("default", IMG, volumes=volumes), *extra_pools])


def volume_names(mgr, pool: str = "default") -> list[str]:
    return sorted(mgr.conn.storagePoolLookupByName(pool).listVolumes())




# --------------------------------------------------------------------------- names and sizes


@pytest.mark.parametrize("name, message", [
    ("", "empty"),
    (".", "may not be '.'"),
    ("..", "may not be '..'"),
    ("a/b", "'/'"),
    ("tab\there", "control characters"),
    ("nl\n", "control characters"),
    ("del\x7f", "control characters"),
    (" lead", "whitespace"),
    ("x" * 256, "256 bytes long; at most 255"),
    ("é" * 128, "256 bytes long; at most 255"),  # 128 characters, 256 bytes
])
def test_volume_name_refusals(name, message):
    with pytest.raises(ValidationError, match=message):
        names.volume_name(name)


@pytest.mark.parametrize("name", ["disk.qcow2", "x" * 255, "é" * 127, "with space.img", "quote'<&>\".iso", "-dash"])
def test_volume_name_accepted(name):
    assert names.volume_name(name) == name


@pytest.mark.parametrize("text, expected", [
    ("10G", 10 * GIB), ("10g", 10 * GIB), ("512M", 512 * MIB), ("512MiB", 512 * MIB), ("1.5G", 3 * GIB // 2),
    ("2T", 2 * 1024 * GIB), ("1 GiB", GIB), ("4096K", 4 * MIB), ("1048576", MIB), (MIB * 3, 3 * MIB),
    ("10Gi", 10 * GIB), ("1GB", 1000**3), ("5MB", 5 * 1000**2), ("123B", 123),
])
def test_parse_size(text, expected):
    assert names.size(text) == expected


@pytest.mark.parametrize("text, message", [
    ("", "not understood"), ("ten", "not understood"), ("10X", "not understood"), ("-5G", "not understood"),
    ("10i", "not understood"), ("0", "more than zero"), ("0G", "more than zero"), (0, "more than zero"),
    (-1, "more than zero"), ("1.5", "whole"), (True, "not a size"),
])
def test_parse_size_refusals(text, message):
    with pytest.raises(ValidationError, match=message):
        names.size(text)


@pytest.mark.parametrize("text, message", [("512K", "below the minimum of 1 MiB"), ("65T", "above the maximum of 64 TiB")])
def test_size_range(text, message):
    with pytest.raises(ValidationError, match=message):
        names.volume_size(text)


@pytest.mark.parametrize("path, message", [
    ("", "empty"), ("relative/dir", "absolute"), ("/srv/../etc", "'..'"), ("/srv/a\nb", "control"), ("/", "root directory"),
])
def test_pool_path_refusals(open_host, path, message):
    mgr = open_host(host())
    with pytest.raises(ValidationError, match=message):
        pools.validate_pool_spec(mgr, pools.NewPoolSpec("p", "dir", path))


def test_pool_path_normalised(open_host):
    mgr = open_host(host())
    assert pools.validate_pool_spec(mgr, pools.NewPoolSpec("p", "dir", "/srv//pools/./vm/")).path == "/srv/pools/vm"


# --------------------------------------------------------------------------- pools


@pytest.mark.parametrize("capacity, available, allocation, percent, level", [
    (100, 50, 0, 50.0, SpaceLevel.OK),
    (100, 16, 0, 84.0, SpaceLevel.OK),
    (100, 15, 0, 85.0, SpaceLevel.WARN),
    (100, 6, 0, 94.0, SpaceLevel.WARN),
    (100, 5, 0, 95.0, SpaceLevel.CRITICAL),
    (100, 0, 0, 100.0, SpaceLevel.CRITICAL),
    (0, 0, 0, None, SpaceLevel.UNKNOWN),
    (100, 2**64 - 5, 120, 100.0, SpaceLevel.CRITICAL),  # underflowed "available": allocation decides
    (100, 2**64 - 5, 30, 30.0, SpaceLevel.OK),
])
def test_space_level(capacity, available, allocation, percent, level):
    assert pools.space_level(capacity, available, allocation) == (percent, level)


def test_pool_info(open_host):
    mgr = open_host(host(extra_pools=[pool_xml("iso", "/srv/iso", volumes=[vol("d.iso", fmt="raw", path="/srv/iso")])]))
    mgr.conn.storagePoolLookupByName("iso").destroy()
    details = {p.name: p for p in pools.list_pools(mgr)}
    assert list(details) == ["default", "iso"]
    d = details["default"]
    assert (d.kind, d.path, d.active, d.state, d.persistent, d.volume_count) == (
        "dir", IMG, True, "running", True, 4)
    assert d.level is SpaceLevel.OK and 0 < d.used_percent < 85
    iso = details["iso"]
    assert (iso.state, iso.volume_count, iso.level, iso.used_percent) == ("inactive", None, SpaceLevel.UNKNOWN, None)


def test_pool_start_stop_refresh_autostart(open_host):
    mgr = open_host(host())
    pools.stop_pool(mgr, "default")
    assert pools.pool_info(mgr, "default").state == "inactive"
    with pytest.raises(ValidationError, match="'default' is not active"):
        pools.stop_pool(mgr, "default")
    with pytest.raises(ValidationError, match="not active"):
        pools.refresh_pool(mgr, "default")
    pools.start_pool(mgr, "default")
    with pytest.raises(ValidationError, match="'default' is running"):
        pools.start_pool(mgr, "default")
    pools.refresh_pool(mgr, "default")
    pools.set_pool_autostart(mgr, "default", True)
    assert pools.pool_info(mgr, "default").autostart
    pools.set_pool_autostart(mgr, "default", False)
    assert not pools.pool_info(mgr, "default").autostart
    with pytest.raises(ValidationError, match="no storage pool named 'ghost'"):
        pools.start_pool(mgr, "ghost")


def test_pool_kinds_probe_and_cache(open_host, monkeypatch):
    """The test driver has no pool capabilities call; findStoragePoolSources says 'logical'
    exists and 'fs' does not. The probe runs once per connection."""
    mgr = open_host(host())
    calls = []
    real = libvirt.virConnect.findStoragePoolSources
    monkeypatch.setattr(libvirt.virConnect, "findStoragePoolSources",
                        lambda self, kind, spec, flags=0: calls.append(kind) or real(self, kind, spec, flags))
    assert pools.pool_kinds(mgr) == ("dir", "logical")
    assert pools.pool_kinds(mgr) == ("dir", "logical")
    assert calls == ["fs", "logical"]


def test_pool_kinds_hide_backends_whose_tools_are_missing(open_host, monkeypatch):
    """On a local connection a backend libvirt was built with is hidden when its host tools are
    missing (the real daemon case is in the integration test)."""
    mgr = open_host(host())
    monkeypatch.setattr(pools, "_local", lambda conn: True)
    monkeypatch.setattr(pools, "_tools_missing", lambda kind: kind == "logical")
    assert pools.pool_kinds(mgr) == ("dir",)
    with pytest.raises(ValidationError, match=r"cannot create logical pools \(it offers dir\)"):
        pools.create_pool(mgr, pools.NewPoolSpec("vg", "logical", device="/dev/sdb"))


def test_pool_kinds_from_capabilities_xml(open_host, monkeypatch):
    mgr = open_host(host())
    caps = ("<storagepoolCapabilities><pool type='dir' supported='yes'/><pool type='fs' supported='yes'/>"
            "<pool type='logical' supported='no'/></storagepoolCapabilities>")
    monkeypatch.setattr(libvirt.virConnect, "getStoragePoolCapabilities", lambda self, flags=0: caps, raising=False)
    assert pools.pool_kinds(mgr) == ("dir", "fs")


def test_create_dir_pool(open_host):
    mgr = open_host(host())
    result = pools.create_dir_pool(mgr, "fast", "/srv/fast/", autostart=True)
    assert (result.path, result.built, result.started, result.autostart) == ("/srv/fast", True, True, True)
    assert "defined, built, started, autostart on" in result.summary()
    d = pools.pool_info(mgr, "fast")
    assert (d.kind, d.path, d.active, d.autostart, d.persistent) == ("dir", "/srv/fast", True, True, True)


def test_create_dir_pool_without_build_or_start(open_host):
    mgr = open_host(host())
    result = pools.create_dir_pool(mgr, "later", "/srv/later", build=False, start=False)
    assert (result.built, result.started) == (False, False)
    assert not pools.pool_info(mgr, "later").active


@pytest.mark.parametrize("spec, message", [
    (pools.NewPoolSpec("", "dir", "/srv/x"), "pool name is empty"),
    (pools.NewPoolSpec("a/b", "dir", "/srv/x"), "'/'"),
    (pools.NewPoolSpec("x", "iscsi", "/srv/x"), "pool type must be one of"),
    (pools.NewPoolSpec("x", "fs", "/srv/x", device="/dev/sdz"), "cannot create fs pools"),
    (pools.NewPoolSpec("x", "dir", "srv/x"), "absolute"),
    (pools.NewPoolSpec("x", "dir", "/srv/../x"), "'..'"),
    (pools.NewPoolSpec("default", "dir", "/srv/x"), "'default' already exists"),
    (pools.NewPoolSpec("dup", "dir", IMG + "/"), "already the directory of pool 'default'"),
    (pools.NewPoolSpec("vg", "logical", device="sdb"), "absolute"),
    (pools.NewPoolSpec("vg", "logical", device="/srv/disk"), "block device under /dev"),
])
def test_create_pool_refusals_change_nothing(open_host, spec, message):
    mgr = open_host(host())
    with pytest.raises(ValidationError, match=message):
        pools.create_pool(mgr, spec)
    assert [p.name() for p in mgr.conn.listAllStoragePools(0)] == ["default"]


def test_create_logical_pool_where_offered(open_host, golden):
    mgr = open_host(host())
    spec = pools.NewPoolSpec("vmvg", "logical", device="/dev/sdb")
    xml = pools.build_pool_xml(spec)
    root = ET.fromstring(xml)
    assert (root.get("type"), root.findtext("source/name"), root.find("source/device").get("path"),
            root.findtext("target/path")) == ("logical", "vmvg", "/dev/sdb", "/dev/vmvg")
    result = pools.create_pool(mgr, spec, build=False)
    assert (result.kind, result.started) == ("logical", True)


def test_failed_start_removes_pool_definition(open_host, monkeypatch, fake_error):
    mgr = open_host(host())

    def refuse(self, flags=0):
        raise fake_error(libvirt.VIR_ERR_INTERNAL_ERROR, "cannot open directory")

    monkeypatch.setattr(libvirt.virStoragePool, "create", refuse)
    with pytest.raises(VirtError, match=r"^pool new was not created: cannot open directory \(at start; the pool definition was removed\)$"):
        pools.create_dir_pool(mgr, "new", "/srv/new")
    assert [p.name() for p in mgr.conn.listAllStoragePools(0)] == ["default"]


def test_delete_pool_keeps_directory_with_volumes(open_host, monkeypatch):
    mgr = open_host(host())
    deleted = []
    monkeypatch.setattr(libvirt.virStoragePool, "delete", lambda self, flags=0: deleted.append(self.name()))
    result = pools.delete_pool(mgr, "default", delete_directory=True)
    assert (result.stopped, result.undefined, result.directory_removed) == (True, True, False)
    assert result.directory_note == "it holds 4 volumes"
    assert deleted == []  # libvirt's rmdir was not even attempted
    assert f"kept {IMG} (it holds 4 volumes)" in result.summary()
    assert mgr.conn.listAllStoragePools(0) == []


def test_delete_empty_pool_removes_directory(open_host):
    mgr = open_host(host(volumes=[]))
    result = pools.delete_pool(mgr, "default", delete_directory=True)
    assert (result.stopped, result.directory_removed, result.directory_note) == (True, True, "")
    assert f"removed empty directory {IMG}" in result.summary()


def test_delete_pool_without_directory(open_host, monkeypatch):
    mgr = open_host(host(volumes=[]))
    monkeypatch.setattr(libvirt.virStoragePool, "delete", lambda self, flags=0: pytest.fail("must not rmdir"))
    result = pools.delete_pool(mgr, "default")
    assert (result.directory_removed, result.directory_note) == (False, "")


def test_delete_logical_pool_directory_refused(open_host):
    mgr = open_host(host(extra_pools=[pool_xml("vg", "/dev/vg", pool_type="logical")]))
    with pytest.raises(ValidationError, match="not a logical pool's"):
        pools.delete_pool(mgr, "vg", delete_directory=True)
    assert pools.pool_info(mgr, "vg").active  # nothing was stopped


# --------------------------------------------------------------------------- listing


def test_listing_is_lazy_for_5000_volumes(open_host, monkeypatch):
    """One listAllVolumes; XMLDesc only for the page asked for (and cached)."""
    vols = [volume_xml(f"v{i:05d}.qcow2", path=f"{IMG}/v{i:05d}.qcow2") for i in range(5000)]
    mgr = open_host(host(volumes=vols))
    reads = []
    real = libvirt.virStorageVol.XMLDesc
    monkeypatch.setattr(libvirt.virStorageVol, "XMLDesc", lambda self, flags=0: reads.append(self.name()) or real(self, flags))
    listing = volumes.open_volumes(mgr, "default")
    assert len(listing) == 5000 and reads == []
    page = listing.page(100, 50)
    assert [v.name for v in page] == [f"v{i:05d}.qcow2" for i in range(100, 150)]
    assert len(reads) == 50
    listing.page(120, 10)
    assert len(reads) == 50  # cached
    assert listing.page(4990, 50)[-1].name == "v04999.qcow2"
    assert listing.page(6000, 10) == []


def test_iter_volumes_batches(open_host):
    vols = [volume_xml(f"v{i:04d}", path=f"{IMG}/v{i:04d}") for i in range(1203)]
    mgr = open_host(host(volumes=vols))
    batches = list(volumes.iter_volumes(mgr, "default", batch=500))
    assert [len(b) for b in batches] == [500, 500, 203]
    assert [v.name for b in batches for v in b] == [f"v{i:04d}" for i in range(1203)]
    with pytest.raises(ValidationError, match="at least 1"):
        next(volumes.iter_volumes(mgr, "default", batch=0))


def test_volume_info_fields(open_host):
    mgr = open_host(host(volumes=[volume_xml("a.raw", capacity=2 * GIB, allocation=GIB, fmt="raw", path=f"{IMG}/a.raw")]))
    [info] = volumes.open_volumes(mgr, "default").page(0, 10)
    assert info == volumes.VolumeInfo("default", "a.raw", f"{IMG}/a.raw", "raw", 2 * GIB, GIB)


def test_volume_vanished_after_listing_is_skipped(open_host):
    mgr = open_host(host())
    listing = volumes.open_volumes(mgr, "default")
    mgr.conn.storagePoolLookupByName("default").storageVolLookupByName("db.qcow2").delete(0)
    assert [v.name for v in listing.page(0, 10)] == ["data.raw", "spare.qcow2", "web.qcow2"]


def test_listing_inactive_pool_refused(open_host):
    mgr = open_host(host())
    mgr.conn.storagePoolLookupByName("default").destroy()
    with pytest.raises(ValidationError, match="not active"):
        volumes.open_volumes(mgr, "default")


def test_volume_usage_one_pass(open_host, monkeypatch):
    mgr = open_host(host(domains=[
        domain_xml("web", disks=[f"{IMG}/web.qcow2", {"device": "cdrom", "path": f"{IMG}/data.raw"}]),
        domain_xml("db", state="shutoff", disks=[{"pool": "default", "volume": "db.qcow2"}, f"{IMG}//web.qcow2"]),
    ]))
    reads = []
    real = libvirt.virDomain.XMLDesc
    monkeypatch.setattr(libvirt.virDomain, "XMLDesc", lambda self, flags=0: reads.append(self.name()) or real(self, flags))
    usage = inventory.usage(mgr)
    assert sorted(reads) == ["db", "web", "web"]  # web is running: inactive + live XML
    by_name = {v.name: v for v in volumes.open_volumes(mgr, "default").page(0, 10)}
    assert usage.users_of(by_name["web.qcow2"]) == ("db", "web")
    assert usage.running_users_of(by_name["web.qcow2"]) == ("web",)
    assert usage.users_of(by_name["db.qcow2"]) == ("db",)
    assert usage.users_of(by_name["data.raw"]) == ("web",)
    assert usage.users_of(by_name["spare.qcow2"]) == ()


# --------------------------------------------------------------------------- volume operations


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_create_volume(open_host, fmt):
    mgr = open_host(host())
    info = volumes.create_volume(mgr, "default", f"new.{fmt}", "2G", fmt)
    assert (info.name, info.format, info.capacity) == (f"new.{fmt}", fmt, 2 * GIB)
    assert f"new.{fmt}" in volume_names(mgr)


@pytest.mark.parametrize("args, message", [
    (("default", "bad/name", "1G"), "'/'"),
    (("default", "ok", "lots"), "not understood"),
    (("default", "ok", "100K"), "minimum"),
    (("default", "ok", "1G", "vmdk"), "qcow2 or raw"),
    (("default", "web.qcow2", "1G"), "already has a volume named 'web.qcow2'"),
    (("ghost", "ok", "1G"), "no storage pool named 'ghost'"),
])
def test_create_volume_refusals_change_nothing(open_host, args, message):
    mgr = open_host(host())
    before = volume_names(mgr)
    with pytest.raises(ValidationError, match=message):
        volumes.create_volume(mgr, *args)
    assert volume_names(mgr) == before


def test_build_volume_xml_is_sparse_and_escaped():
    root = ET.fromstring(volumes.build_volume_xml("a<&>'\".img", 5 * GIB, "raw"))
    assert (root.findtext("name"), root.findtext("capacity"), root.findtext("allocation"),
            root.find("target/format").get("type")) == ("a<&>'\".img", str(5 * GIB), "0", "raw")


def test_resize_refusals(open_host):
    mgr = open_host(host(domains=[domain_xml("web", disks=[f"{IMG}/web.qcow2"])]))
    with pytest.raises(ValidationError, match=r"refusing to shrink default/db.qcow2 from 10.0 GiB to 5.0 GiB: only growing"):
        volumes.resize_volume(mgr, "default", "db.qcow2", "5G")
    with pytest.raises(ValidationError, match="already 10.0 GiB"):
        volumes.resize_volume(mgr, "default", "db.qcow2", "10G")
    with pytest.raises(ValidationError, match="in use by running VM web"):
        volumes.resize_volume(mgr, "default", "web.qcow2", "20G")
    with pytest.raises(ValidationError, match="has no volume 'nope'"):
        volumes.resize_volume(mgr, "default", "nope", "20G")
    with pytest.raises(ValidationError, match="not understood"):
        volumes.resize_volume(mgr, "default", "db.qcow2", "big")


def test_resize_grow_calls_libvirt_with_absolute_size(open_host, monkeypatch):
    """The test driver lacks virStorageVolResize (grown for real in the integration test);
    here: the call made is resize(new capacity, flags 0), never SHRINK or DELTA."""
    mgr = open_host(host())
    calls = []
    monkeypatch.setattr(libvirt.virStorageVol, "resize", lambda self, cap, flags=0: calls.append((self.name(), cap, flags)) or 0)
    result = volumes.resize_volume(mgr, "default", "db.qcow2", "15G")
    assert calls == [("db.qcow2", 15 * GIB, 0)]
    assert result.summary() == "default/db.qcow2 grown from 10.0 GiB to 15.0 GiB"


def test_resize_unsupported_is_one_line(open_host):
    mgr = open_host(host())
    with pytest.raises(VirtError, match=r"^resize default/db.qcow2: this function is not supported"):
        volumes.resize_volume(mgr, "default", "db.qcow2", "15G")


def test_clone_volume(open_host):
    mgr = open_host(host(domains=[domain_xml("db", state="shutoff", disks=[f"{IMG}/db.qcow2"])]))
    info = volumes.clone_volume(mgr, "default", "db.qcow2", "db-copy.qcow2")
    assert (info.name, info.format, info.capacity) == ("db-copy.qcow2", "qcow2", 10 * GIB)
    assert "db-copy.qcow2" in volume_names(mgr)


@pytest.mark.parametrize("source, new, message", [
    ("db.qcow2", "web.qcow2", "already has a volume named 'web.qcow2'"),
    ("db.qcow2", "..", "may not be '..'"),
    ("nope", "x", "has no volume 'nope'"),
    ("web.qcow2", "web2", "in use by running VM web; a copy would be inconsistent"),
])
def test_clone_refusals_change_nothing(open_host, source, new, message):
    mgr = open_host(host(domains=[domain_xml("web", disks=[f"{IMG}/web.qcow2"])]))
    before = volume_names(mgr)
    with pytest.raises(ValidationError, match=message):
        volumes.clone_volume(mgr, "default", source, new)
    assert volume_names(mgr) == before


def test_clone_refused_when_pool_lacks_room(open_host):
    """The test driver's pools hold 100 GiB; a 60 GiB-allocated volume cannot be copied again."""
    mgr = open_host(host(volumes=[volume_xml("big.raw", capacity=80 * GIB, allocation=60 * GIB, fmt="raw",
                                             path=f"{IMG}/big.raw")]))
    with pytest.raises(ValidationError, match=r"copying big.raw needs 60.0 GiB; pool 'default' has 40.0 GiB free"):
        volumes.clone_volume(mgr, "default", "big.raw", "big2.raw")
    assert volume_names(mgr) == ["big.raw"]


def test_delete_volume_in_use_needs_force(open_host):
    mgr = open_host(host(domains=[domain_xml("db", state="shutoff", disks=[{"pool": "default", "volume": "db.qcow2"}])]))
    with pytest.raises(ValidationError, match="default/db.qcow2 is used by VM db") as info:
        volumes.delete_volume(mgr, "default", "db.qcow2")
    assert info.value.hint == "delete with force after confirming"
    assert "db.qcow2" in volume_names(mgr)
    result = volumes.delete_volume(mgr, "default", "db.qcow2", force=True)
    assert result.users == ("db",)
    assert "VMs now missing this disk: db" in result.summary()
    assert "db.qcow2" not in volume_names(mgr)


def test_delete_unused_volume(open_host):
    mgr = open_host(host())
    assert volumes.delete_volume(mgr, "default", "spare.qcow2") == volumes.VolumeDeleteResult("default", "spare.qcow2", ())
    assert "spare.qcow2" not in volume_names(mgr)


# --------------------------------------------------------------------------- upload


@pytest.fixture
def iso(tmp_path):
    path = tmp_path / "small.iso"
    path.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    return path


def test_upload_unsupported_removes_the_new_volume(open_host, iso):
    """The test driver creates the volume, then refuses virStorageVolUpload: nothing is left."""
    mgr = open_host(host())
    before = volume_names(mgr)
    with pytest.raises(VirtError, match=r"^upload .*small.iso to default/small.iso: this function is not supported"):
        upload.upload_volume(mgr, "default", str(iso))
    assert volume_names(mgr) == before


class FakeStream:
    """Accepts at most `per_call` bytes per send (virStreamSend may write less than asked)."""

    def __init__(self, per_call: int, fail_after: int | None = None, error=None):
        self.error = error
        self.data = bytearray()
        self.per_call = per_call
        self.fail_after = fail_after
        self.finished = self.aborted = False

    def send(self, data: bytes) -> int:
        if self.fail_after is not None and len(self.data) >= self.fail_after:
            raise self.error
        take = data[: self.per_call]
        self.data += take
        return len(take)

    def finish(self):
        self.finished = True

    def abort(self):
        self.aborted = True


def _fake_upload(monkeypatch, mgr, stream: FakeStream):
    monkeypatch.setattr(libvirt.virConnect, "newStream", lambda self, flags=0: stream)
    monkeypatch.setattr(libvirt.virStorageVol, "upload", lambda self, st, offset, length, flags=0: 0)


def test_upload_streams_all_bytes_with_progress(open_host, iso, monkeypatch):
    """Chunking, partial sends and progress, with the stream faked (real bytes: integration)."""
    mgr = open_host(host())
    stream = FakeStream(per_call=100_000)
    _fake_upload(monkeypatch, mgr, stream)
    progress = []
    result = upload.upload_volume(mgr, "default", str(iso), "boot.iso", on_progress=lambda d, t: progress.append((d, t)),
                                   chunk=300_000)
    total = iso.stat().st_size
    assert bytes(stream.data) == iso.read_bytes()
    assert stream.finished and not stream.aborted
    assert progress == [(300_000, total), (600_000, total), (900_000, total), (total, total)]
    assert (result.bytes_sent, result.volume.name, result.volume.format, result.volume.capacity) == (total, "boot.iso", "raw", total)
    assert "boot.iso" in volume_names(mgr)


def test_upload_cancel_deletes_volume(open_host, iso, monkeypatch):
    mgr = open_host(host())
    stream = FakeStream(per_call=10**9)
    _fake_upload(monkeypatch, mgr, stream)
    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done >= 2 * 262_144:
            cancel.set()

    with pytest.raises(upload.UploadCancelled, match=r"cancelled; default/small.iso removed"):
        upload.upload_volume(mgr, "default", str(iso), on_progress=progress, cancel=cancel, chunk=262_144)
    assert seen == [262_144, 524_288]
    assert stream.aborted and not stream.finished
    assert "small.iso" not in volume_names(mgr)


def test_upload_stream_failure_deletes_volume(open_host, iso, monkeypatch, fake_error):
    mgr = open_host(host())
    stream = FakeStream(per_call=10**9, fail_after=262_144,
                        error=fake_error(libvirt.VIR_ERR_INTERNAL_ERROR, "stream broke"))
    _fake_upload(monkeypatch, mgr, stream)
    with pytest.raises(VirtError, match=r"small.iso: stream broke$"):
        upload.upload_volume(mgr, "default", str(iso), chunk=262_144)
    assert stream.aborted
    assert "small.iso" not in volume_names(mgr)


def test_upload_detects_qcow2(open_host, tmp_path, monkeypatch):
    image = tmp_path / "img.qcow2"
    image.write_bytes(b"QFI\xfb" + bytes(2 * MIB))
    mgr = open_host(host())
    _fake_upload(monkeypatch, mgr, FakeStream(per_call=10**9))
    result = upload.upload_volume(mgr, "default", str(image))
    assert result.volume.format == "qcow2"


def test_upload_refusals_change_nothing(open_host, tmp_path, iso):
    mgr = open_host(host())
    empty = tmp_path / "empty.iso"
    empty.write_bytes(b"")
    before = volume_names(mgr)
    cases = [
        ((str(tmp_path / "missing.iso"),), {}, "does not exist"),
        ((str(tmp_path),), {}, "not a regular file"),
        ((str(empty),), {}, "is empty"),
        ((str(iso),), {"name": "web.qcow2"}, "already has a volume named 'web.qcow2'"),
        ((str(iso),), {"name": "a/b"}, "'/'"),
        ((str(iso),), {"chunk": 0}, "chunk size"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(ValidationError, match=message):
            upload.upload_volume(mgr, "default", *args, **kwargs)
    with pytest.raises(ValidationError, match="no storage pool named 'ghost'"):
        upload.upload_volume(mgr, "ghost", str(iso))
    assert volume_names(mgr) == before


def test_upload_refused_when_pool_lacks_room(open_host, iso, monkeypatch):
    mgr = open_host(host())
    real_info = libvirt.virStoragePool.info
    monkeypatch.setattr(libvirt.virStoragePool, "info",
                        lambda self: [*real_info(self)[:3], 1000])  # 1000 bytes free
    with pytest.raises(ValidationError, match=r"uploading small.iso needs 1.0 MiB; pool 'default' has 1000 Bytes free"):
        upload.upload_volume(mgr, "default", str(iso))
    assert "small.iso" not in volume_names(mgr)


def test_upload_of_a_file_that_shrinks_deletes_volume(open_host, iso, monkeypatch):
    """The file was truncated by someone else mid-upload: one line, nothing half-written left."""
    mgr = open_host(host())
    _fake_upload(monkeypatch, mgr, FakeStream(per_call=10**9))

    def shrink(done, total):
        with open(iso, "r+b") as f:
            f.truncate(done)

    with pytest.raises(VirtError, match=r"small.iso shrank while uploading$"):
        upload.upload_volume(mgr, "default", str(iso), on_progress=shrink, chunk=262_144)
    assert "small.iso" not in volume_names(mgr)
