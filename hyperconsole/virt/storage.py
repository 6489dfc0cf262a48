"""Storage pools and volumes: details, low-space levels, lazy volume listing, who uses what,
and the operations of the storage pane (create/resize/clone/delete/upload).

Contract, as in ops.py: bad input raises `ValidationError` before any mutating libvirt call;
a libvirt failure raises `VirtError` (one line) after `manager.check_error`; results are frozen
dataclasses, never libvirt objects. Called from thread workers, never the poll path.

Volumes are listed ONCE per pool (`listAllVolumes`, which returns handles with names and no
further round trip) and read lazily: `VolumeListing.page()` fetches one `XMLDesc` per visible
volume only, so a pool of thousands of volumes neither stalls the UI nor keeps the connection
busy long enough for keepalive to give up.
"""

from __future__ import annotations

import enum
import logging
import os
import re
import shutil
import threading
import unicodedata
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import libvirt

from hyperconsole.errors import ValidationError
from hyperconsole.virt import errors as verrors
from hyperconsole.virt.errors import VirtError
from hyperconsole.virt.inventory import Target, domain_definitions, find, split
from hyperconsole.virt.models import PoolInfo, VolumeInfo
from hyperconsole.virt.ops import _calling, validate_name

log = logging.getLogger(__name__)

WARN_PERCENT = 85.0
CRITICAL_PERCENT = 95.0
VOLUME_FORMATS = ("qcow2", "raw")
MAX_VOLUME_BYTES = 64 * 1024**4  # 64 TiB: beyond this a typo is likelier than a real disk
MIN_VOLUME_BYTES = 1024**2  # 1 MiB: qcow2 metadata alone is ~200 KiB
UPLOAD_CHUNK = 4 * 1024**2
_POOL_STATES = {0: "inactive", 1: "building", 2: "running", 3: "degraded", 4: "inaccessible"}


# --------------------------------------------------------------------------- names and sizes


def validate_volume_name(name: str) -> str:
    """Volume names become file names in dir pools: refuse empty, '.', '..', '/', control
    characters, leading/trailing whitespace, and more than 255 bytes of UTF-8 (NAME_MAX)."""
    if not isinstance(name, str) or not name:
        raise ValidationError("volume name is empty")
    if name in (".", ".."):
        raise ValidationError(f"volume name may not be {name!r}")
    if "/" in name:
        raise ValidationError("volume name may not contain '/'")
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in name):
        raise ValidationError("volume name may not contain control characters or line breaks")
    if name != name.strip():
        raise ValidationError("volume name may not start or end with whitespace")
    size = len(name.encode("utf-8"))
    if size > 255:
        raise ValidationError(f"volume name is {size} bytes long; at most 255")
    return name


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_size(text: str | int) -> int:
    """'10G', '512M', '1.5 GiB', '2T', '1048576' → bytes. K/M/G/T (with or without 'iB') are
    binary, as in qemu-img; 'KB', 'MB', 'GB', 'TB' are decimal. A bare number is bytes.
    Raises ValidationError for anything else, zero or negative."""
    if isinstance(text, bool):
        raise ValidationError(f"size {text!r} is not a size")
    if isinstance(text, int):
        value = text
    else:
        m = _SIZE_RE.match(str(text))
        if not m:
            raise ValidationError(f"size {text!r} is not understood; use e.g. 10G, 512M or 1.5T")
        number, unit, suffix = m.group(1), m.group(2).lower(), m.group(3).lower()
        if suffix and not unit and suffix != "b":
            raise ValidationError(f"size {text!r} is not understood; use e.g. 10G, 512M or 1.5T")
        base = 1000 if suffix == "b" and unit else 1024
        scaled = float(number) * base ** _UNITS[unit]
        value = int(scaled)
        if value != scaled and unit == "":
            raise ValidationError(f"size {text!r}: a byte count must be whole")
    if value <= 0:
        raise ValidationError(f"size must be more than zero, not {text!r}")
    return value


def validate_size(text: str | int) -> int:
    """parse_size + the range a new volume may have (1 MiB … 64 TiB)."""
    value = parse_size(text)
    if value < MIN_VOLUME_BYTES:
        raise ValidationError(f"size {text!r} is below the minimum of 1 MiB")
    if value > MAX_VOLUME_BYTES:
        raise ValidationError(f"size {text!r} is above the maximum of 64 TiB")
    return value


def human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}".replace(".0 ", " ")
        n /= 1024  # type: ignore[assignment]
    return str(n)


def validate_pool_path(path: str) -> str:
    """Absolute, no '..' component, no control characters; normalised (no trailing '/')."""
    if not isinstance(path, str) or not path:
        raise ValidationError("pool directory is empty")
    if not path.startswith("/"):
        raise ValidationError(f"pool directory {path!r} must be an absolute path")
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in path):
        raise ValidationError("pool directory may not contain control characters")
    parts = PurePosixPath(path).parts
    if ".." in parts:
        raise ValidationError(f"pool directory {path!r} may not contain '..'")
    clean = str(PurePosixPath(path))
    if clean == "/":
        raise ValidationError("the root directory cannot be a storage pool")
    return clean


# --------------------------------------------------------------------------- pools


class SpaceLevel(enum.Enum):
    OK = "ok"
    WARN = "warn"
    CRITICAL = "critical"
    UNKNOWN = "unknown"  # inactive pool or no capacity reported


def space_level(capacity: int, available: int, allocation: int = 0) -> tuple[float | None, SpaceLevel]:
    """(percent used, level). Used = capacity − available, so files outside the pool that fill
    the same file system count too; warn ≥ 85 %, critical ≥ 95 %. An `available` above the
    capacity (an unsigned underflow some drivers report, e.g. the test driver when volumes
    over-commit) is not trusted: allocation is used instead, capped at 100 %."""
    if capacity <= 0:
        return None, SpaceLevel.UNKNOWN
    used = capacity - available if 0 <= available <= capacity else allocation
    percent = min(100.0, max(0.0, 100.0 * used / capacity))
    if percent >= CRITICAL_PERCENT:
        return percent, SpaceLevel.CRITICAL
    if percent >= WARN_PERCENT:
        return percent, SpaceLevel.WARN
    return percent, SpaceLevel.OK


@dataclass(frozen=True)
class PoolDetails:
    info: PoolInfo
    persistent: bool
    state: str  # running, inactive, building, degraded, inaccessible
    used_percent: float | None
    level: SpaceLevel
    volume_count: int | None  # None when inactive

    @property
    def name(self) -> str:
        return self.info.name


def _pool_details(pool: libvirt.virStoragePool) -> PoolDetails:
    root = ET.fromstring(pool.XMLDesc(0))
    state, capacity, allocation, available = pool.info()
    active = bool(pool.isActive())
    info = PoolInfo(name=pool.name(), uuid=pool.UUIDString(), active=active, autostart=bool(pool.autostart()),
                    kind=root.get("type", ""), path=root.findtext("target/path") or "",
                    capacity=capacity, allocation=allocation, available=available)
    percent, level = space_level(capacity, available, allocation) if active else (None, SpaceLevel.UNKNOWN)
    count = pool.numOfVolumes() if active else None
    return PoolDetails(info, bool(pool.isPersistent()), _POOL_STATES.get(state, str(state)), percent, level, count)


def list_pool_details(target: Target) -> list[PoolDetails]:
    """Every pool with space level and volume count, sorted by name. Raises VirtError."""
    conn, manager = split(target)
    with _calling(manager, "list storage pools"):
        return sorted((_pool_details(p) for p in conn.listAllStoragePools(0)), key=lambda p: p.name)


def _pool(conn, manager, name: str, *, active: bool | None = None) -> libvirt.virStoragePool:
    if not name:
        raise ValidationError("no storage pool given")
    found = find(manager, f"look up pool {name}",
                 lambda: (pool := conn.storagePoolLookupByName(name), bool(pool.isActive())),
                 libvirt.VIR_ERR_NO_STORAGE_POOL)
    if found is None:
        raise ValidationError(f"no storage pool named {name!r}")
    pool, is_active = found
    if active is True and not is_active:
        raise ValidationError(f"storage pool {name!r} is not active", hint="start the pool first")
    if active is False and is_active:
        raise ValidationError(f"storage pool {name!r} is running", hint="stop the pool first")
    return pool


def pool_details(target: Target, name: str) -> PoolDetails:
    conn, manager = split(target)
    pool = _pool(conn, manager, name)
    with _calling(manager, f"read pool {name}"):
        return _pool_details(pool)


def start_pool(target: Target, name: str) -> None:
    """Raises ValidationError (unknown or already running), VirtError."""
    conn, manager = split(target)
    pool = _pool(conn, manager, name, active=False)
    with _calling(manager, f"start pool {name}"):
        pool.create(0)


def stop_pool(target: Target, name: str) -> None:
    """virStoragePoolDestroy: the pool's volumes stay on disk; running VMs keep their open disks.
    Raises ValidationError (unknown or not running), VirtError."""
    conn, manager = split(target)
    pool = _pool(conn, manager, name, active=True)
    with _calling(manager, f"stop pool {name}"):
        pool.destroy()


def refresh_pool(target: Target, name: str) -> None:
    """Rescan the pool (files added behind libvirt's back). Raises ValidationError, VirtError."""
    conn, manager = split(target)
    pool = _pool(conn, manager, name, active=True)
    with _calling(manager, f"refresh pool {name}"):
        pool.refresh(0)


def set_pool_autostart(target: Target, name: str, on: bool) -> None:
    conn, manager = split(target)
    pool = _pool(conn, manager, name)
    with _calling(manager, f"set autostart of pool {name}"):
        if not pool.isPersistent():
            raise ValidationError(f"storage pool {name!r} is transient; only defined pools can autostart")
        pool.setAutostart(1 if on else 0)


# -- capability probe ----------------------------------------------------------------------

_CREATABLE = ("dir", "fs", "logical")
_kinds_cache: "weakref.WeakKeyDictionary[object, tuple[str, ...]]" = weakref.WeakKeyDictionary()
_kinds_lock = threading.Lock()


def _probe_pool_kinds(conn) -> tuple[str, ...]:
    """virConnectGetStoragePoolCapabilities (libvirt ≥ 5.2) names the backends the daemon was built
    with; without it, findStoragePoolSources answers VIR_ERR_NO_SUPPORT for a missing backend
    (and something else — no sources found, bad argument — for one that exists)."""
    try:
        caps = ET.fromstring(conn.getStoragePoolCapabilities(0))
        supported = {p.get("type") for p in caps.findall("pool") if p.get("supported") == "yes"}
        return tuple(k for k in _CREATABLE if k in supported or k == "dir")
    except libvirt.libvirtError as exc:
        if not verrors.is_no_support(exc):
            raise
    kinds = ["dir"]
    for kind in ("fs", "logical"):
        try:
            conn.findStoragePoolSources(kind, None, 0)
            kinds.append(kind)
        except libvirt.libvirtError as exc:
            if verrors.is_no_support(exc) or verrors.is_connection_lost(exc):
                if verrors.is_connection_lost(exc):
                    raise
                continue
            kinds.append(kind)  # the backend exists; it merely found nothing to offer
    return tuple(kinds)


# The tools a backend runs on the host. libvirt's capabilities name the backends it was BUILT
# with, not whether their tools are installed (a Debian libvirtd reports 'logical' on a host
# without LVM, then fails at build with "cannot execute /sbin/pvcreate").
_TOOLS = {"fs": ("mount", "mkfs"), "logical": ("pvcreate", "vgcreate")}
_TOOL_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin",
                              "/run/current-system/sw/bin"])


def _tools_missing(kind: str) -> bool:
    return any(shutil.which(tool, path=_TOOL_PATH) is None for tool in _TOOLS.get(kind, ()))


def _local(conn) -> bool:
    uri = conn.getURI()
    return not uri.startswith("test:") and not urlsplit(uri).hostname


def pool_kinds(target: Target) -> tuple[str, ...]:
    """Pool types this host can create from the storage pane ('dir' always; 'fs', 'logical'
    only where the daemon has the backend and, on a local connection, the host has its tools).
    Probed once per connection, then cached."""
    conn, manager = split(target)
    with _kinds_lock:
        try:
            cached = _kinds_cache.get(conn)
        except TypeError:
            cached = None
    if cached is not None:
        return cached
    with _calling(manager, "probe storage pool types"):
        kinds = _probe_pool_kinds(conn)
        if _local(conn):
            kinds = tuple(k for k in kinds if not _tools_missing(k))
    with _kinds_lock:
        try:
            _kinds_cache[conn] = kinds
        except TypeError:  # not weak-referenceable: just do not cache
            pass
    return kinds


# -- create / delete -----------------------------------------------------------------------


@dataclass(frozen=True)
class NewPoolSpec:
    """dir: `path` is the directory. fs: `device` (a block device, /dev/…) mounted on `path`
    (`fs_format`, default auto). logical: `device` is the physical volume, `vg` the volume
    group name (default: the pool name), `path` is ignored (libvirt uses /dev/<vg>)."""

    name: str
    kind: str = "dir"
    path: str = ""
    device: str = ""
    fs_format: str = "auto"
    vg: str = ""


@dataclass(frozen=True)
class PoolCreateResult:
    name: str
    kind: str
    path: str
    built: bool
    started: bool
    autostart: bool

    def summary(self) -> str:
        done = ["defined"] + (["built"] if self.built else []) + (["started"] if self.started else [])
        if self.autostart:
            done.append("autostart on")
        return f"pool {self.name} ({self.kind}, {self.path}): " + ", ".join(done)


def build_pool_xml(spec: NewPoolSpec) -> str:
    pool = ET.Element("pool", type=spec.kind)
    ET.SubElement(pool, "name").text = spec.name
    if spec.kind == "fs":
        src = ET.SubElement(pool, "source")
        ET.SubElement(src, "device", path=spec.device)
        ET.SubElement(src, "format", type=spec.fs_format or "auto")
    elif spec.kind == "logical":
        src = ET.SubElement(pool, "source")
        ET.SubElement(src, "device", path=spec.device)
        ET.SubElement(src, "name").text = spec.vg or spec.name
        ET.SubElement(src, "format", type="lvm2")
    target = ET.SubElement(pool, "target")
    path = f"/dev/{spec.vg or spec.name}" if spec.kind == "logical" else spec.path
    ET.SubElement(target, "path").text = path
    ET.indent(pool, space="  ")
    return ET.tostring(pool, encoding="unicode") + "\n"


def validate_pool_spec(target: Target, spec: NewPoolSpec) -> NewPoolSpec:
    """Name, kind (offered by this host), path/device. Reads only. Returns the spec normalised."""
    validate_name(spec.name, "pool name")
    if spec.kind not in _CREATABLE:
        raise ValidationError(f"pool type must be one of {', '.join(_CREATABLE)}, not {spec.kind!r}")
    conn, manager = split(target)
    kinds = pool_kinds(target)
    if spec.kind not in kinds:
        raise ValidationError(f"this host cannot create {spec.kind} pools (it offers {', '.join(kinds)})")
    if spec.kind in ("dir", "fs"):
        spec = _replace(spec, path=validate_pool_path(spec.path))
    if spec.kind in ("fs", "logical"):
        dev = validate_pool_path(spec.device) if spec.device else ""
        if not dev.startswith("/dev/"):
            raise ValidationError(f"{spec.kind} pool needs a block device under /dev, not {spec.device!r}")
        spec = _replace(spec, device=dev)
    if spec.kind == "logical" and spec.vg:
        validate_name(spec.vg, "volume group name")
    try:
        conn.storagePoolLookupByName(spec.name)
    except libvirt.libvirtError as exc:
        if verrors.code(exc) != libvirt.VIR_ERR_NO_STORAGE_POOL:
            if manager is not None:
                manager.check_error(exc)
            raise VirtError.wrap(f"check pool name {spec.name}", exc) from exc
    else:
        raise ValidationError(f"a storage pool named {spec.name!r} already exists")
    if spec.kind in ("dir", "fs"):
        with _calling(manager, "list storage pools"):
            for other in conn.listAllStoragePools(0):
                other_path = ET.fromstring(other.XMLDesc(0)).findtext("target/path") or ""
                if other_path and PurePosixPath(other_path) == PurePosixPath(spec.path):
                    raise ValidationError(f"{spec.path} is already the directory of pool {other.name()!r}")
    return spec


def _replace(spec, **changes):
    from dataclasses import replace
    return replace(spec, **changes)


def create_pool(target: Target, spec: NewPoolSpec, *, build: bool = True, start: bool = True,
                autostart: bool = False) -> PoolCreateResult:
    """Define; optionally build (dir: mkdir; fs: mkfs only if the device has no file system —
    VIR_STORAGE_POOL_BUILD_NO_OVERWRITE; logical: pvcreate+vgcreate), start, autostart.
    If a step fails the definition is removed again and VirtError names the step. A directory
    that `build` created is removed too when it is still empty. Raises ValidationError, VirtError."""
    spec = validate_pool_spec(target, spec)
    conn, manager = split(target)
    xml = build_pool_xml(spec)
    existed = os.path.isdir(spec.path) if spec.kind == "dir" else True
    with _calling(manager, f"define pool {spec.name}"):
        pool = conn.storagePoolDefineXML(xml, 0)
    built = False
    step = "build"
    try:
        with _calling(manager, f"pool {spec.name} was not created"):
            if build:
                flags = libvirt.VIR_STORAGE_POOL_BUILD_NO_OVERWRITE if spec.kind in ("fs", "logical") else 0
                pool.build(flags)
                built = True
            step = "start"
            if start:
                pool.create(0)
            step = "autostart"
            if autostart:
                pool.setAutostart(1)
    except VirtError as exc:
        try:
            if pool.isActive():
                pool.destroy()
            if built and not existed:
                pool.delete(0)  # rmdir of the directory we just made (empty: nothing lost)
            pool.undefine()
        except libvirt.libvirtError as cleanup:
            log.error("could not remove half-created pool %s: %s", spec.name, verrors.one_line(cleanup))
        raise VirtError(f"{exc} (at {step}; the pool definition was removed)") from exc
    return PoolCreateResult(spec.name, spec.kind, spec.path, built, start, autostart)


def create_dir_pool(target: Target, name: str, path: str, *, build: bool = True, start: bool = True,
                    autostart: bool = False) -> PoolCreateResult:
    return create_pool(target, NewPoolSpec(name, "dir", path), build=build, start=start, autostart=autostart)


@dataclass(frozen=True)
class PoolDeleteResult:
    name: str
    path: str
    stopped: bool
    undefined: bool
    directory_removed: bool
    directory_note: str  # why the directory was kept, or "" when removed / not asked

    def summary(self) -> str:
        parts = [f"deleted pool {self.name}"]
        if self.stopped:
            parts.append("stopped it")
        if self.directory_removed:
            parts.append(f"removed empty directory {self.path}")
        else:
            parts.append(f"kept {self.path}" + (f" ({self.directory_note})" if self.directory_note else ""))
        return "; ".join(parts)


def delete_pool(target: Target, name: str, *, delete_directory: bool = False) -> PoolDeleteResult:
    """Stop (destroy) and undefine. The pool's volumes are NOT deleted. With delete_directory
    (dir and fs pools only) the target directory is removed by libvirt only when it is empty
    (libvirt rmdir); otherwise it is kept and the result says why. Raises ValidationError, VirtError."""
    conn, manager = split(target)
    pool = _pool(conn, manager, name)
    with _calling(manager, f"read pool {name}"):
        root = ET.fromstring(pool.XMLDesc(0))
        kind = root.get("type", "")
        path = root.findtext("target/path") or ""
        active = bool(pool.isActive())
        persistent = bool(pool.isPersistent())
        count = pool.numOfVolumes() if active else None
    if delete_directory and kind not in ("dir", "fs"):
        # For logical pools virStoragePoolDelete removes the volume group: far more than a directory.
        raise ValidationError(f"only a dir or fs pool's directory can be removed, not a {kind} pool's")
    note = ""
    removed = False
    with _calling(manager, f"delete pool {name}"):
        if active:
            pool.destroy()
        if delete_directory:
            if count:
                note = f"it holds {count} volume{'s' if count != 1 else ''}"
            else:
                try:
                    pool.delete(0)
                    removed = True
                except libvirt.libvirtError as exc:
                    if manager is not None:
                        manager.check_error(exc)
                    note = verrors.one_line(exc)
        if persistent:
            pool.undefine()
    return PoolDeleteResult(name, path, active, persistent, removed, note)


# --------------------------------------------------------------------------- volumes: reading


def _volume_from_xml(pool_name: str, xml: str) -> VolumeInfo:
    """One XMLDesc holds name, path, format, capacity and allocation: one round trip per volume."""
    root = ET.fromstring(xml)
    fmt = root.find("target/format")

    def size(tag: str) -> int:
        el = root.find(tag)
        if el is None or not (el.text or "").strip():
            return 0
        unit = (el.get("unit") or "bytes").lower()
        factor = {"b": 1, "bytes": 1, "k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2,
                  "g": 1024**3, "gib": 1024**3, "t": 1024**4, "tib": 1024**4}.get(unit, 1)
        return int(el.text.strip()) * factor  # type: ignore[union-attr]

    return VolumeInfo(pool=pool_name, name=root.findtext("name") or "", path=root.findtext("target/path") or "",
                      format=fmt.get("type", "") if fmt is not None else "",
                      capacity=size("capacity"), allocation=size("allocation"))


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
            return _volume_from_xml(self.pool, vol.XMLDesc(0))
        except libvirt.libvirtError as exc:
            if verrors.code(exc) == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return None  # deleted since the listing; the next listing drops it
            if self._manager is not None:
                self._manager.check_error(exc)
            raise VirtError.wrap(f"read volume {vol.name()}", exc) from exc


def open_volumes(target: Target, pool_name: str) -> VolumeListing:
    """List the pool's volumes once (one listAllVolumes). Raises ValidationError, VirtError."""
    conn, manager = split(target)
    pool = _pool(conn, manager, pool_name, active=True)
    with _calling(manager, f"list volumes of {pool_name}"):
        return VolumeListing(manager, pool_name, pool.listAllVolumes(0))


def iter_volumes(target: Target, pool_name: str, batch: int = 500) -> Iterator[list[VolumeInfo]]:
    """Volumes of a pool in name order, `batch` at a time, from one listing; the consumer can
    stop early (or post each batch to the UI) without reading the rest."""
    if batch < 1:
        raise ValidationError("batch size must be at least 1")
    listing = open_volumes(target, pool_name)
    for offset in range(0, len(listing), batch):
        yield listing.page(offset, batch)


@dataclass(frozen=True)
class VolumeUsage:
    """Which VMs use which volume, from ONE pass over every domain's XML (inactive, plus live
    when running, so hot-plugged disks count). Disks are matched by path (file/block disks) and
    by pool+volume name (type='volume' disks) with no per-disk libvirt lookup."""

    by_path: dict[str, tuple[str, ...]] = field(default_factory=dict)
    by_ref: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    running: frozenset[str] = frozenset()  # names of VMs that are running (for in-use refusals)

    def users_of(self, vol: VolumeInfo) -> tuple[str, ...]:
        names = set(self.by_path.get(vol.path, ())) | set(self.by_ref.get((vol.pool, vol.name), ()))
        return tuple(sorted(names))

    def running_users_of(self, vol: VolumeInfo) -> tuple[str, ...]:
        return tuple(n for n in self.users_of(vol) if n in self.running)


def volume_usage(target: Target) -> VolumeUsage:
    """Which VMs use which volume, from one pass over every domain's definition. Raises VirtError."""
    by_path: dict[str, set[str]] = {}
    by_ref: dict[tuple[str, str], set[str]] = {}
    definitions = domain_definitions(target)
    for definition in definitions:
        name = definition.name
        for root in definition.roots:
            for disk in root.findall("devices/disk"):
                src = disk.find("source")
                if src is None:
                    continue
                if disk.get("type") == "volume":
                    by_ref.setdefault((src.get("pool", ""), src.get("volume", "")), set()).add(name)
                    continue
                path = src.get("file") or src.get("dev")
                if path:
                    by_path.setdefault(os.path.normpath(path), set()).add(name)
                    by_path.setdefault(path, set()).add(name)
    return VolumeUsage({k: tuple(sorted(v)) for k, v in by_path.items()},
                       {k: tuple(sorted(v)) for k, v in by_ref.items()},
                       frozenset(d.name for d in definitions if d.running))


# --------------------------------------------------------------------------- volumes: operations


def _volume(conn, manager, pool_name: str, name: str):
    pool = _pool(conn, manager, pool_name, active=True)
    found = find(manager, f"look up volume {pool_name}/{name}",
                 lambda: (vol := pool.storageVolLookupByName(name), _volume_from_xml(pool_name, vol.XMLDesc(0))),
                 libvirt.VIR_ERR_NO_STORAGE_VOL)
    if found is None:
        raise ValidationError(f"pool {pool_name!r} has no volume {name!r}")
    return pool, found[0], found[1]


def _room_for(pool, manager, pool_name: str, needed: int, what: str) -> None:
    """Refuse a full copy the pool cannot hold, instead of failing half-way with ENOSPC."""
    with _calling(manager, f"read pool {pool_name}"):
        _state, capacity, _allocation, available = pool.info()
    # An underflowed "available" (see space_level) is huge and never refuses: libvirt decides then.
    if capacity > 0 and available < needed:
        raise ValidationError(f"{what} needs {human_size(needed)}; pool {pool_name!r} has "
                              f"{human_size(available)} free")


def _volume_name_free(pool, manager, pool_name: str, name: str) -> None:
    if find(manager, f"check volume name {name}", lambda: pool.storageVolLookupByName(name),
            libvirt.VIR_ERR_NO_STORAGE_VOL) is not None:
        raise ValidationError(f"pool {pool_name!r} already has a volume named {name!r}")


def build_volume_xml(name: str, capacity: int, fmt: str) -> str:
    """allocation 0: sparse raw files and minimal qcow2, the space is taken as the guest writes."""
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", unit="bytes").text = str(capacity)
    ET.SubElement(vol, "allocation", unit="bytes").text = "0"
    ET.SubElement(ET.SubElement(vol, "target"), "format", type=fmt)
    ET.indent(vol, space="  ")
    return ET.tostring(vol, encoding="unicode") + "\n"


def _check_format(fmt: str) -> None:
    if fmt not in VOLUME_FORMATS:
        raise ValidationError(f"volume format must be qcow2 or raw, not {fmt!r}")


def create_volume(target: Target, pool_name: str, name: str, size: str | int, fmt: str = "qcow2") -> VolumeInfo:
    """New empty volume. Raises ValidationError (name, size, format, pool, taken), VirtError."""
    validate_volume_name(name)
    capacity = validate_size(size)
    _check_format(fmt)
    conn, manager = split(target)
    pool = _pool(conn, manager, pool_name, active=True)
    _volume_name_free(pool, manager, pool_name, name)
    with _calling(manager, f"create volume {pool_name}/{name}"):
        vol = pool.createXML(build_volume_xml(name, capacity, fmt), 0)
        return _volume_from_xml(pool_name, vol.XMLDesc(0))


@dataclass(frozen=True)
class ResizeResult:
    pool: str
    name: str
    old_capacity: int
    new_capacity: int

    def summary(self) -> str:
        return (f"{self.pool}/{self.name} grown from {human_size(self.old_capacity)} "
                f"to {human_size(self.new_capacity)}")


def resize_volume(target: Target, pool_name: str, name: str, new_size: str | int) -> ResizeResult:
    """Grow a volume to `new_size` (absolute). Shrinking is refused (it destroys guest data),
    as is resizing a volume a running VM has open (QEMU holds the image lock; grow it through the
    VM instead). The partition/file system inside is the guest's business.
    Raises ValidationError, VirtError."""
    capacity = validate_size(new_size)
    conn, manager = split(target)
    _pool_obj, vol, info = _volume(conn, manager, pool_name, name)
    if capacity < info.capacity:
        raise ValidationError(f"refusing to shrink {pool_name}/{name} from {human_size(info.capacity)} to "
                              f"{human_size(capacity)}: only growing is supported (shrinking loses data)")
    if capacity == info.capacity:
        raise ValidationError(f"{pool_name}/{name} is already {human_size(capacity)}")
    running = volume_usage(target).running_users_of(info)
    if running:
        raise ValidationError(f"{pool_name}/{name} is in use by running VM {', '.join(running)}",
                              hint="shut it down first")
    with _calling(manager, f"resize {pool_name}/{name}"):
        vol.resize(capacity, 0)
    return ResizeResult(pool_name, name, info.capacity, capacity)


def clone_volume(target: Target, pool_name: str, name: str, new_name: str) -> VolumeInfo:
    """Full copy in the same pool (createXMLFrom), same format and capacity. Refused while a
    running VM uses the source (the copy would be inconsistent). Raises ValidationError, VirtError."""
    validate_volume_name(new_name)
    conn, manager = split(target)
    pool, vol, info = _volume(conn, manager, pool_name, name)
    _volume_name_free(pool, manager, pool_name, new_name)
    running = volume_usage(target).running_users_of(info)
    if running:
        raise ValidationError(f"{pool_name}/{name} is in use by running VM {', '.join(running)}; "
                              "a copy would be inconsistent", hint="shut it down first")
    _room_for(pool, manager, pool_name, info.allocation, f"copying {name}")
    with _calling(manager, f"clone {pool_name}/{name} to {new_name}"):
        new = pool.createXMLFrom(build_volume_xml(new_name, info.capacity, info.format or "raw"), vol, 0)
        return _volume_from_xml(pool_name, new.XMLDesc(0))


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
    _pool_obj, vol, info = _volume(conn, manager, pool_name, name)
    users = volume_usage(target).users_of(info)
    if users and not force:
        raise ValidationError(f"{pool_name}/{name} is used by VM {', '.join(users)}",
                              hint="delete with force after confirming")
    with _calling(manager, f"delete {pool_name}/{name}"):
        vol.delete(0)
    return VolumeDeleteResult(pool_name, name, users)


# --------------------------------------------------------------------------- upload


class UploadCancelled(ValidationError):
    """The operator cancelled; the half-written volume was deleted."""


@dataclass(frozen=True)
class UploadResult:
    volume: VolumeInfo
    bytes_sent: int

    def summary(self) -> str:
        return f"uploaded {human_size(self.bytes_sent)} into {self.volume.pool}/{self.volume.name}"


def detect_format(path: str) -> str:
    """qcow2 by its magic (QFI\\xfb), raw for anything else (ISOs, raw disk images)."""
    with open(path, "rb") as f:
        return "qcow2" if f.read(4) == b"QFI\xfb" else "raw"


def upload_volume(target: Target, pool_name: str, local_path: str, name: str | None = None, *,
                  on_progress: Callable[[int, int], None] | None = None,
                  cancel: threading.Event | None = None, chunk: int = UPLOAD_CHUNK) -> UploadResult:
    """Copy a local file (ISO or disk image) into a new volume: create it with the file's size
    (format detected: qcow2 by magic, else raw), then stream it with virStreamSend in `chunk`
    bytes, calling on_progress(done, total) after each chunk. `cancel.set()` stops between chunks.
    On cancel or any failure the stream is aborted and the new volume deleted.
    Raises ValidationError (bad file/name/pool, taken), UploadCancelled, VirtError."""
    if chunk < 1:
        raise ValidationError("chunk size must be at least 1 byte")
    path = os.path.abspath(local_path)
    if not os.path.exists(path):
        raise ValidationError(f"{local_path} does not exist")
    if not os.path.isfile(path):
        raise ValidationError(f"{local_path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise ValidationError(f"{local_path} is not readable")
    total = os.path.getsize(path)
    if total == 0:
        raise ValidationError(f"{local_path} is empty")
    name = validate_volume_name(name if name is not None else os.path.basename(path))
    try:
        fmt = detect_format(path)
    except OSError as exc:
        raise ValidationError(f"cannot read {local_path}: {exc.strerror or exc}") from exc
    conn, manager = split(target)
    pool = _pool(conn, manager, pool_name, active=True)
    _volume_name_free(pool, manager, pool_name, name)
    _room_for(pool, manager, pool_name, total, f"uploading {os.path.basename(path)}")
    with _calling(manager, f"create volume {pool_name}/{name}"):
        vol = pool.createXML(build_volume_xml(name, total, fmt), 0)
    stream = None
    done = 0
    try:
        with _calling(manager, f"upload {local_path} to {pool_name}/{name}"):
            stream = conn.newStream(0)
            vol.upload(stream, 0, total, 0)
            with open(path, "rb") as f:
                while done < total:
                    if cancel is not None and cancel.is_set():
                        raise UploadCancelled(f"upload of {os.path.basename(path)} cancelled")
                    data = f.read(min(chunk, total - done))
                    if not data:
                        raise VirtError(f"{local_path} shrank while uploading")
                    view = memoryview(data)
                    while view:
                        # virStreamSend may take less than it was given: send the rest again.
                        sent = stream.send(data if len(view) == len(data) else view.tobytes())
                        if sent <= 0:
                            raise VirtError(f"upload to {pool_name}/{name}: stream refused data")
                        view = view[sent:]
                    done += len(data)
                    if on_progress is not None:
                        on_progress(done, total)
            stream.finish()
            stream = None
    except BaseException as exc:
        if stream is not None:
            try:
                stream.abort()
            except libvirt.libvirtError:
                pass
        try:
            vol.delete(0)
            removed = True
        except libvirt.libvirtError as cleanup:
            removed = False
            log.error("could not remove half-written volume %s/%s: %s", pool_name, name, verrors.one_line(cleanup))
        what = f"{pool_name}/{name} removed" if removed else f"could not remove {pool_name}/{name}"
        if isinstance(exc, UploadCancelled):
            raise UploadCancelled(f"{exc.message}; {what}") from None
        if isinstance(exc, OSError):
            raise VirtError(f"reading {local_path} failed: {exc.strerror or exc}; {what}") from exc
        raise
    # libvirt refreshes the pool after an upload in a thread of its own; refresh now so the
    # result shows the uploaded image (a qcow2's virtual size), not the empty container. The
    # data is in place whatever happens here, so a failure only costs an exact result.
    try:
        pool.refresh(0)
        vol = pool.storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if manager is not None:
            manager.check_error(exc)
        log.info("refresh after upload to %s failed: %s", pool_name, verrors.one_line(exc))
    with _calling(manager, f"read {pool_name}/{name}"):
        return UploadResult(_volume_from_xml(pool_name, vol.XMLDesc(0)), done)
