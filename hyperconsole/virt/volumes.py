"""Storage volumes: the model, its one parse function, the lazy per-pool listing, and
create / resize / clone / delete.

Volumes are listed ONCE per pool (`listAllVolumes`, which returns handles with names and no
further round trip) and read lazily: `VolumeListing.page()` fetches one `XMLDesc` per visible
volume only, so a pool of thousands of volumes neither stalls the UI nor keeps the connection
busy long enough for keepalive to give up. "Which VMs use this volume" is `inventory.usage`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass

import libvirt

from hyperconsole import names
from hyperconsole.errors import ValidationError
from hyperconsole.virt import errors as verrors
from hyperconsole.virt import inventory, xmlmodel
from hyperconsole.virt.calls import Target, calling, fail, find, split
from hyperconsole.virt.domains import DiskInfo, parse_disk
from hyperconsole.virt.pools import active_pool
from hyperconsole.virt.xmlmodel import xml

VOLUME_FORMATS = ("qcow2", "raw")


@dataclass(frozen=True)
class VolumeInfo:
    pool: str = ""  # not in the volume's XML: the pool it was read from
    name: str = xml("./name")
    path: str = xml("./target/path")
    format: str = xml("./target/format/@type")
    capacity: int = xml("./capacity", 0, size=True)
    allocation: int = xml("./allocation", 0, size=True)


def parse_volume(pool_name: str, root: ET.Element) -> VolumeInfo:
    """One XMLDesc holds name, path, format, capacity and allocation: one round trip per volume."""
    return xmlmodel.read(VolumeInfo, root, pool=pool_name)


def read_volume(pool_name: str, vol: libvirt.virStorageVol) -> VolumeInfo:
    return parse_volume(pool_name, xmlmodel.parse(vol.XMLDesc(0), "volume"))


@dataclass(frozen=True)
class NewVolume:
    """What a new volume's XML says. allocation 0: sparse raw files and minimal qcow2, the space
    is taken as the guest writes."""

    name: str = xml("./name")
    capacity: int = xml("./capacity", 0, size=True)
    allocation: int | None = xml("./allocation", None, size=True)
    format: str = xml("./target/format/@type")


def build_volume_xml(name: str, capacity: int, fmt: str) -> str:
    return xmlmodel.build(NewVolume(name, capacity, 0, fmt), "volume")


class VolumeListing:
    """The volumes of one pool, listed once; details read per page.

    `names` is sorted and complete right away; `page(offset, limit)` reads one XMLDesc per
    volume on that page (cached), skipping volumes deleted since the listing. Not thread-safe:
    one worker at a time uses a listing (the pane's exclusive worker group)."""

    def __init__(self, manager, pool_name: str, vols: list[libvirt.virStorageVol]) -> None:
        self._manager = manager
        self.pool = pool_name
        self._vols = sorted(vols, key=lambda v: v.name())
        self.names: tuple[str, ...] = tuple(v.name() for v in self._vols)
        self._cache: dict[int, VolumeInfo | None] = {}

    def __len__(self) -> int:
        return len(self._vols)

    def page(self, offset: int, limit: int) -> list[VolumeInfo]:
        if offset < 0 or limit < 0:
            raise ValidationError("page offset and size must not be negative")
        out = []
        for index in range(offset, min(offset + limit, len(self._vols))):
            if index not in self._cache:
                self._cache[index] = self._read(self._vols[index])
            info = self._cache[index]
            if info is not None:
                out.append(info)
        return out

    def _read(self, vol: libvirt.virStorageVol) -> VolumeInfo | None:
        try:
            return read_volume(self.pool, vol)
        except libvirt.libvirtError as exc:
            if verrors.code(exc) == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return None  # deleted since the listing; the next listing drops it
            raise fail(self._manager, f"read volume {vol.name()}", exc) from exc


def open_volumes(target: Target, pool_name: str) -> VolumeListing:
    """List the pool's volumes once (one listAllVolumes). Raises ValidationError, VirtError."""
    conn, manager = split(target)
    pool = active_pool(conn, manager, pool_name)
    with calling(manager, f"list volumes of {pool_name}"):
        return VolumeListing(manager, pool_name, pool.listAllVolumes(0))


def list_volumes(target: Target, pool_name: str) -> list[VolumeInfo]:
    """Every volume of one pool, sorted by name. Raises ValidationError, VirtError."""
    listing = open_volumes(target, pool_name)
    return listing.page(0, len(listing))


def iter_volumes(target: Target, pool_name: str, batch: int = 500) -> Iterator[list[VolumeInfo]]:
    """Volumes of a pool in name order, `batch` at a time, from one listing; the consumer can
    stop early (or post each batch to the UI) without reading the rest."""
    if batch < 1:
        raise ValidationError("batch size must be at least 1")
    listing = open_volumes(target, pool_name)
    for offset in range(0, len(listing), batch):
        yield listing.page(offset, batch)


# --------------------------------------------------------------------------- operations


def existing(conn, manager, pool_name: str, name: str, what: str = "") -> tuple[libvirt.virStoragePool, libvirt.virStorageVol, VolumeInfo]:
    """(pool, volume, model) of an existing volume in an active pool. Raises ValidationError, VirtError."""
    pool = active_pool(conn, manager, pool_name, what)
    found = find(manager, f"look up volume {pool_name}/{name}",
                 lambda: (vol := pool.storageVolLookupByName(name), read_volume(pool_name, vol)),
                 libvirt.VIR_ERR_NO_STORAGE_VOL)
    if found is None:
        prefix = f"{what}: " if what else ""
        raise ValidationError(f"{prefix}pool {pool_name!r} has no volume {name!r}")
    return pool, found[0], found[1]


def room_for(pool, manager, pool_name: str, needed: int, what: str) -> None:
    """Refuse a full copy the pool cannot hold, instead of failing half-way with ENOSPC."""
    with calling(manager, f"read pool {pool_name}"):
        _state, capacity, _allocation, available = pool.info()
    # An underflowed "available" (see pools.space_level) is huge and never refuses: libvirt decides then.
    if capacity > 0 and available < needed:
        raise ValidationError(f"{what} needs {names.human_size(needed)}; pool {pool_name!r} has "
                              f"{names.human_size(available)} free")


def name_free(pool, manager, pool_name: str, name: str) -> None:
    if find(manager, f"check volume name {name}", lambda: pool.storageVolLookupByName(name),
            libvirt.VIR_ERR_NO_STORAGE_VOL) is not None:
        raise ValidationError(f"pool {pool_name!r} already has a volume named {name!r}")


def free_name(pool: libvirt.virStoragePool, wanted: str) -> str:
    """`wanted`, or `stem-N.ext` with the first N not taken in the pool."""
    taken = set(pool.listVolumes())
    if wanted not in taken:
        return wanted
    stem, dot, ext = wanted.rpartition(".")
    if not dot or "/" in ext or len(ext) > 6:
        stem, ext = wanted, ""
    n = 1
    while True:
        candidate = f"{stem}-{n}.{ext}" if ext else f"{stem}-{n}"
        if candidate not in taken:
            return candidate
        n += 1


def delete_quietly(vols: list[libvirt.virStorageVol]) -> list[str]:
    """Best-effort cleanup; returns one line per volume that could not be removed."""
    problems = []
    for vol in vols:
        try:
            vol.delete(0)
        except libvirt.libvirtError as exc:
            problems.append(f"{vol.name()}: {verrors.one_line(exc)}")
    return problems


def _check_format(fmt: str) -> None:
    if fmt not in VOLUME_FORMATS:
        raise ValidationError(f"volume format must be qcow2 or raw, not {fmt!r}")


def create_volume(target: Target, pool_name: str, name: str, size: str | int, fmt: str = "qcow2") -> VolumeInfo:
    """New empty volume. Raises ValidationError (name, size, format, pool, taken), VirtError."""
    names.volume_name(name)
    capacity = names.volume_size(size)
    _check_format(fmt)
    conn, manager = split(target)
    pool = active_pool(conn, manager, pool_name)
    name_free(pool, manager, pool_name, name)
    with calling(manager, f"create volume {pool_name}/{name}"):
        vol = pool.createXML(build_volume_xml(name, capacity, fmt), 0)
        return read_volume(pool_name, vol)


@dataclass(frozen=True)
class ResizeResult:
    pool: str
    name: str
    old_capacity: int
    new_capacity: int

    def summary(self) -> str:
        return (f"{self.pool}/{self.name} grown from {names.human_size(self.old_capacity)} "
                f"to {names.human_size(self.new_capacity)}")


def resize_volume(target: Target, pool_name: str, name: str, new_size: str | int) -> ResizeResult:
    """Grow a volume to `new_size` (absolute). Shrinking is refused (it destroys guest data),
    as is resizing a volume a running VM has open (QEMU holds the image lock; grow it through the
    VM instead). The partition/file system inside is the guest's business.
    Raises ValidationError, VirtError."""
    capacity = names.volume_size(new_size)
    conn, manager = split(target)
    _pool, vol, info = existing(conn, manager, pool_name, name)
    if capacity < info.capacity:
        raise ValidationError(f"refusing to shrink {pool_name}/{name} from {names.human_size(info.capacity)} to "
                              f"{names.human_size(capacity)}: only growing is supported (shrinking loses data)")
    if capacity == info.capacity:
        raise ValidationError(f"{pool_name}/{name} is already {names.human_size(capacity)}")
    _refuse_running_users(target, info)
    with calling(manager, f"resize {pool_name}/{name}"):
        vol.resize(capacity, 0)
    return ResizeResult(pool_name, name, info.capacity, capacity)


def _refuse_running_users(target: Target, info: VolumeInfo, why: str = "") -> None:
    """Refuse while a running VM has the volume open, or while a VM that could not be read might."""
    usage = inventory.usage(target)
    running = usage.running_users_of(info)
    if running:
        raise ValidationError(f"{info.pool}/{info.name} is in use by running VM {', '.join(running)}{why}",
                              hint="shut it down first")
    usage.refuse_unknown(f"{info.pool}/{info.name}")


def clone_volume(target: Target, pool_name: str, name: str, new_name: str) -> VolumeInfo:
    """Full copy in the same pool (createXMLFrom), same format and capacity. Refused while a
    running VM uses the source (the copy would be inconsistent). Raises ValidationError, VirtError."""
    names.volume_name(new_name)
    conn, manager = split(target)
    pool, vol, info = existing(conn, manager, pool_name, name)
    name_free(pool, manager, pool_name, new_name)
    _refuse_running_users(target, info, "; a copy would be inconsistent")
    room_for(pool, manager, pool_name, info.allocation, f"copying {name}")
    with calling(manager, f"clone {pool_name}/{name} to {new_name}"):
        new = pool.createXMLFrom(build_volume_xml(new_name, info.capacity, info.format or "raw"), vol, 0)
        return read_volume(pool_name, new)


@dataclass(frozen=True)
class VolumeDeleteResult:
    pool: str
    name: str
    users: tuple[str, ...]  # VMs that still reference it (only with force=True)

    def summary(self) -> str:
        text = f"deleted {self.pool}/{self.name}"
        return text + (f"; VMs now missing this disk: {', '.join(self.users)}" if self.users else "")


def delete_volume(target: Target, pool_name: str, name: str, force: bool = False) -> VolumeDeleteResult:
    """Delete a volume. Refused while any VM (running or not) uses it, unless force=True — which
    the UI passes only after the operator confirmed. Raises ValidationError, VirtError."""
    conn, manager = split(target)
    _pool, vol, info = existing(conn, manager, pool_name, name)
    usage = inventory.usage(target)
    users = usage.users_of(info)
    if users and not force:
        raise ValidationError(f"{pool_name}/{name} is used by VM {', '.join(users)}",
                              hint="delete with force after confirming")
    if not force:
        usage.refuse_unknown(f"{pool_name}/{name}")
    with calling(manager, f"delete {pool_name}/{name}"):
        vol.delete(0)
    return VolumeDeleteResult(pool_name, name, users)


# --------------------------------------------------------------------------- a domain's disks


@dataclass(frozen=True)
class DiskVolume:
    """A `<disk>` of a domain with the storage volume behind it (None if not a pool volume)."""

    element: ET.Element
    disk: DiskInfo
    vol: libvirt.virStorageVol | None
    pool: libvirt.virStoragePool | None
    reason: str = ""  # why vol is None


def disk_volumes(conn, root: ET.Element) -> list[DiskVolume]:
    """Each `<disk>` of the domain XML `root` with its pool volume, looked up by pool/volume name
    or by path."""
    out = []
    for el in root.findall("devices/disk"):
        disk = parse_disk(el)
        vol = pool = None
        reason = ""
        if not disk.source:
            reason = "has no source"
        elif disk.kind == "volume":
            try:
                pool = conn.storagePoolLookupByName(disk.pool)
                vol = pool.storageVolLookupByName(disk.volume)
            except libvirt.libvirtError as exc:
                vol, reason = None, verrors.one_line(exc)
        elif disk.kind in ("file", "block"):
            try:
                vol = conn.storageVolLookupByPath(disk.path)
                pool = vol.storagePoolLookupByVolume()
            except libvirt.libvirtError:
                vol, reason = None, f"{disk.path} is not a volume of any storage pool"
        else:
            reason = f"is a {disk.kind} disk, not a storage pool volume"
        out.append(DiskVolume(el, disk, vol, pool, reason))
    return out
