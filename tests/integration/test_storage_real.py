"""Integration (tier 3): pools and volumes through OUR code (hyperconsole.virt.pools, volumes, upload) on a real
libvirtd: a dir pool `hcit-store` in a directory under /var/tmp (pytest's tmp dirs are not
reachable by libvirt-qemu), volumes created/resized/cloned/deleted by libvirt and checked on
disk with `qemu-img info --output=json`, an upload checked by reading the file back.
Everything is named hcit-* so the session fixture removes leftovers even after a crash.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

libvirt = pytest.importorskip("libvirt")

from hyperconsole.errors import ValidationError  # noqa: E402
from hyperconsole.virt import inventory, pools, upload, volumes  # noqa: E402
from hyperconsole.virt.errors import VirtError  # noqa: E402
from hyperconsole.virt.pools import SpaceLevel  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MIB = 1024 * 1024
POOL = "hcit-store"


@pytest.fixture
def store(libvirtd):
    """A temp base dir under /var/tmp; the pool directory `<base>/pool` is for the test to create.
    Teardown removes the pool (volumes, definition) and the base dir, whatever happened."""
    base = Path(tempfile.mkdtemp(prefix="hcit-", dir="/var/tmp"))
    base.chmod(0o755)
    yield base / "pool"
    conn = libvirtd.connect()
    try:
        try:
            pool = conn.storagePoolLookupByName(POOL)
        except libvirt.libvirtError:
            pool = None
        if pool is not None:
            # Each step on its own: a volume libvirt cannot delete (lost+found of an fs pool)
            # must not keep the pool defined.
            for step in ("volumes", "destroy", "undefine"):
                try:
                    if step == "volumes" and pool.isActive():
                        pool.refresh(0)
                        for vol in pool.listAllVolumes(0):
                            try:
                                vol.delete(0)
                            except libvirt.libvirtError:
                                pass
                    elif step == "destroy" and pool.isActive():
                        pool.destroy()
                    elif step == "undefine" and pool.isPersistent():
                        pool.undefine()
                except libvirt.libvirtError as exc:
                    print(f"\nstore teardown ({step}): {exc}")
    finally:
        conn.close()
        shutil.rmtree(base, ignore_errors=True)


def qemu_img(path: str) -> dict:
    out = subprocess.run(["qemu-img", "info", "--output=json", "-U", path], check=True,
                         capture_output=True, text=True, timeout=30)
    return json.loads(out.stdout)


def test_dir_pool_and_volume_lifecycle(manager, store):
    result = pools.create_dir_pool(manager, POOL, str(store), autostart=True)
    assert (result.built, result.started, result.autostart) == (True, True, True)
    assert store.is_dir()
    kinds = pools.pool_kinds(manager)  # from virConnectGetStoragePoolCapabilities here
    assert kinds[0] == "dir" and set(kinds) <= {"dir", "fs", "logical"}
    print(f"\npool types offered on this host: {kinds}")

    details = pools.pool_info(manager, POOL)
    assert (details.kind, details.path, details.state, details.volume_count) == ("dir", str(store), "running", 0)
    assert details.capacity > 0 and details.level in (SpaceLevel.OK, SpaceLevel.WARN, SpaceLevel.CRITICAL)
    expected = 100 * (details.capacity - details.available) / details.capacity
    assert details.used_percent == pytest.approx(expected)

    # create: qcow2 and raw, checked with qemu-img
    q = volumes.create_volume(manager, POOL, "hcit-a.qcow2", "64M", "qcow2")
    r = volumes.create_volume(manager, POOL, "hcit-b.raw", "32M", "raw")
    info = qemu_img(q.path)
    assert (info["format"], info["virtual-size"]) == ("qcow2", 64 * MIB)
    info = qemu_img(r.path)
    assert (info["format"], info["virtual-size"]) == ("raw", 32 * MIB)
    assert os.stat(r.path).st_blocks * 512 < 32 * MIB  # sparse: allocation 0 was honoured

    # resize: grow only
    grown = volumes.resize_volume(manager, POOL, "hcit-a.qcow2", "128M")
    assert (grown.old_capacity, grown.new_capacity) == (64 * MIB, 128 * MIB)
    assert qemu_img(q.path)["virtual-size"] == 128 * MIB
    volumes.resize_volume(manager, POOL, "hcit-b.raw", "48M")
    assert qemu_img(r.path)["virtual-size"] == 48 * MIB
    with pytest.raises(ValidationError, match="refusing to shrink"):
        volumes.resize_volume(manager, POOL, "hcit-a.qcow2", "64M")
    assert qemu_img(q.path)["virtual-size"] == 128 * MIB

    # clone: same format and size, a separate file
    c = volumes.clone_volume(manager, POOL, "hcit-a.qcow2", "hcit-c.qcow2")
    info = qemu_img(c.path)
    assert (info["format"], info["virtual-size"]) == ("qcow2", 128 * MIB)
    assert c.path != q.path and Path(c.path).parent == store

    # listing (once, lazily) and delete
    listing = volumes.open_volumes(manager, POOL)
    assert listing.names == ("hcit-a.qcow2", "hcit-b.raw", "hcit-c.qcow2")
    assert [v.format for v in listing.page(0, 10)] == ["qcow2", "raw", "qcow2"]
    for name in ("hcit-a.qcow2", "hcit-b.raw", "hcit-c.qcow2"):
        volumes.delete_volume(manager, POOL, name)
    assert not any(store.iterdir())

    # stop / start / refresh
    pools.stop_pool(manager, POOL)
    assert pools.pool_info(manager, POOL).state == "inactive"
    pools.start_pool(manager, POOL)
    pools.refresh_pool(manager, POOL)

    deleted = pools.delete_pool(manager, POOL, delete_directory=True)
    assert (deleted.stopped, deleted.undefined, deleted.directory_removed) == (True, True, True)
    assert not store.exists()
    assert POOL not in [p.name() for p in manager.conn.listAllStoragePools(0)]


def test_delete_pool_keeps_non_empty_directory(manager, store):
    pools.create_dir_pool(manager, POOL, str(store))
    volumes.create_volume(manager, POOL, "hcit-keep.raw", "1M", "raw")
    deleted = pools.delete_pool(manager, POOL, delete_directory=True)
    assert (deleted.directory_removed, deleted.directory_note) == (False, "it holds 1 volume")
    assert (store / "hcit-keep.raw").exists()
    assert POOL not in [p.name() for p in manager.conn.listAllStoragePools(0)]


def test_volume_used_by_vm(manager, hcit_pool, tiny_vm):
    """tiny_vm's disk is a file in hcit-pool: delete is refused without force, and resize/clone
    are refused while it runs."""
    pool_name, _path = hcit_pool
    name = tiny_vm(start=True)
    vol_name = f"{name}.qcow2"
    pools.refresh_pool(manager, pool_name)
    usage = inventory.usage(manager)
    [vol] = [v for v in volumes.open_volumes(manager, pool_name).page(0, 1000) if v.name == vol_name]
    assert usage.users_of(vol) == (name,)
    assert usage.running_users_of(vol) == (name,)
    with pytest.raises(ValidationError, match=f"is used by VM {name}"):
        volumes.delete_volume(manager, pool_name, vol_name)
    with pytest.raises(ValidationError, match="in use by running VM"):
        volumes.resize_volume(manager, pool_name, vol_name, "32M")
    with pytest.raises(ValidationError, match="a copy would be inconsistent"):
        volumes.clone_volume(manager, pool_name, vol_name, "hcit-copy.qcow2")
    assert os.path.exists(vol.path)


@pytest.fixture
def upload_file():
    """A 5 MiB + 123 byte file of non-repeating bytes (so a misplaced chunk would show)."""
    fd, path = tempfile.mkstemp(prefix="hcit-upload-", suffix=".iso", dir="/var/tmp")
    data = b"".join(i.to_bytes(4, "little") for i in range((5 * MIB + 123) // 4)) + b"end"
    os.write(fd, data)
    os.close(fd)
    yield Path(path), data
    os.unlink(path)


def test_upload_with_progress_and_readback(manager, store, upload_file):
    path, data = upload_file
    pools.create_dir_pool(manager, POOL, str(store))
    progress: list[tuple[int, int]] = []
    t0 = time.monotonic()
    result = upload.upload_volume(manager, POOL, str(path), "hcit-up.iso",
                                   on_progress=lambda d, t: progress.append((d, t)), chunk=MIB)
    elapsed = time.monotonic() - t0
    assert result.bytes_sent == len(data)
    assert [d for d, _t in progress] == [MIB, 2 * MIB, 3 * MIB, 4 * MIB, 5 * MIB, len(data)]
    assert {t for _d, t in progress} == {len(data)}
    assert (store / "hcit-up.iso").read_bytes() == data
    assert qemu_img(str(store / "hcit-up.iso"))["format"] == "raw"
    print(f"\nupload of {len(data)} bytes: {elapsed:.2f} s")


def test_upload_cancel_removes_volume(manager, store, upload_file):
    path, _data = upload_file
    pools.create_dir_pool(manager, POOL, str(store))
    cancel = threading.Event()

    def progress(done, total):
        if done >= 2 * MIB:
            cancel.set()

    with pytest.raises(upload.UploadCancelled):
        upload.upload_volume(manager, POOL, str(path), "hcit-cancel.iso", on_progress=progress,
                              cancel=cancel, chunk=MIB)
    pools.refresh_pool(manager, POOL)
    assert volumes.open_volumes(manager, POOL).names == ()
    assert not (store / "hcit-cancel.iso").exists()


def test_upload_qcow2_image(manager, store):
    """A real qcow2 image keeps its format and virtual size after upload."""
    pools.create_dir_pool(manager, POOL, str(store))
    src = Path(tempfile.mkdtemp(prefix="hcit-", dir="/var/tmp")) / "img.qcow2"
    try:
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(src), "20M"], check=True, timeout=30)
        result = upload.upload_volume(manager, POOL, str(src))
        # The result describes the uploaded image, not the empty container created before it.
        assert (result.volume.name, result.volume.format, result.volume.capacity) == ("img.qcow2", "qcow2", 20 * MIB)
        info = qemu_img(str(store / "img.qcow2"))
        assert (info["format"], info["virtual-size"]) == ("qcow2", 20 * MIB)
        assert (store / "img.qcow2").read_bytes() == src.read_bytes()
    finally:
        shutil.rmtree(src.parent, ignore_errors=True)


@pytest.fixture
def loop_device():
    """A 64 MiB loop device over a sparse file under /var/tmp; detached and removed afterwards
    (after unmounting it, should a failed test leave it mounted)."""
    base = Path(tempfile.mkdtemp(prefix="hcit-", dir="/var/tmp"))
    base.chmod(0o755)
    image = base / "disk.img"
    with open(image, "wb") as f:
        f.truncate(64 * MIB)
    dev = subprocess.run(["losetup", "-f", "--show", str(image)], check=True, capture_output=True,
                         text=True, timeout=30).stdout.strip()
    yield dev, base
    subprocess.run(["umount", dev], capture_output=True, timeout=30)
    subprocess.run(["losetup", "-d", dev], capture_output=True, timeout=30)
    shutil.rmtree(base, ignore_errors=True)


def test_fs_pool_on_a_block_device(manager, store, loop_device):
    """This libvirtd offers 'fs' pools: build makes a file system on the (empty) device
    (NO_OVERWRITE: never on one that has a file system), start mounts it on the pool directory."""
    if "fs" not in pools.pool_kinds(manager):
        pytest.fail("this libvirtd has no fs pool backend; the probe should have said so earlier")
    dev, _base = loop_device
    store.mkdir()
    store.chmod(0o755)
    spec = pools.NewPoolSpec(POOL, "fs", str(store), device=dev, fs_format="ext4")
    result = pools.create_pool(manager, spec)
    assert (result.kind, result.built, result.started) == ("fs", True, True)
    mounts = Path("/proc/mounts").read_text()
    assert f" {store} ext4 " in mounts, mounts
    vol = volumes.create_volume(manager, POOL, "hcit-on-fs.qcow2", "8M")
    assert qemu_img(vol.path)["virtual-size"] == 8 * MIB
    volumes.delete_volume(manager, POOL, "hcit-on-fs.qcow2")
    # mkfs.ext4 made lost+found, which libvirt lists as a volume: the directory is kept, and
    # the result says why rather than pretending it was removed.
    deleted = pools.delete_pool(manager, POOL, delete_directory=True)
    assert (deleted.stopped, deleted.undefined, deleted.directory_removed) == (True, True, False)
    assert deleted.directory_note == "it holds 1 volume"
    assert (store / "lost+found").exists() is False  # unmounted: the mount point is empty again
    assert f" {store} " not in Path("/proc/mounts").read_text()
    assert POOL not in [p.name() for p in manager.conn.listAllStoragePools(0)]
    print(f"\nfs pool delete: {deleted.summary()}")


def test_pool_kinds_hide_backends_without_tools(manager):
    """This libvirtd is built with the logical backend, but the host has no LVM tools: the
    storage pane must not offer what would fail at build."""
    kinds = pools.pool_kinds(manager)
    has_lvm = bool(shutil.which("vgcreate", path="/usr/sbin:/sbin"))
    assert ("logical" in kinds) == has_lvm
    if not has_lvm:
        with pytest.raises(ValidationError, match="cannot create logical pools"):
            pools.validate_pool_spec(manager, pools.NewPoolSpec(POOL, "logical", device="/dev/loop7"))


def test_failed_pool_build_leaves_nothing(manager, store, loop_device):
    """build uses NO_OVERWRITE: a device that already has a file system is never formatted.
    The refusal is one line, and the definition (and the directory build made) is removed."""
    dev, _base = loop_device
    subprocess.run(["mkfs.ext4", "-q", dev], check=True, capture_output=True, timeout=60)
    with pytest.raises(VirtError) as info:
        pools.create_pool(manager, pools.NewPoolSpec(POOL, "fs", str(store), device=dev, fs_format="xfs"))
    print(f"\nfs build on a formatted device: {info.value}")
    assert str(info.value).startswith(f"pool {POOL} was not created: ")
    assert str(info.value).endswith("(at build; the pool definition was removed)")
    assert "\n" not in str(info.value)
    assert POOL not in [p.name() for p in manager.conn.listAllStoragePools(0)]
    # the existing file system is untouched
    out = subprocess.run(["blkid", "-o", "value", "-s", "TYPE", dev], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "ext4"
