"""Storage pools: the model, its one parse function, low-space levels, and the pool
operations of the storage pane (start/stop/refresh/autostart/create/delete)."""

from __future__ import annotations

import enum
import logging
import os
import shutil
import threading
import weakref
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import libvirt

from hyperconsole import names
from hyperconsole.errors import ValidationError
from hyperconsole.virt import errors as verrors
from hyperconsole.virt import xmlmodel
from hyperconsole.virt.calls import Target, calling, find, split
from hyperconsole.virt.errors import VirtError
from hyperconsole.virt.xmlmodel import xml

log = logging.getLogger(__name__)

WARN_PERCENT = 85.0
CRITICAL_PERCENT = 95.0
_POOL_STATES = {0: "inactive", 1: "building", 2: "running", 3: "degraded", 4: "inaccessible"}


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
class PoolInfo:
    """A pool as the storage pane and the create-VM form see it: its XML, its state flags and
    sizes from the API (virStoragePoolGetInfo is current; the XML may lag a refresh)."""

    name: str = xml("./name")
    uuid: str = xml("./uuid")
    kind: str = xml("./@type")
    path: str = xml("./target/path")
    active: bool = False
    autostart: bool = False
    persistent: bool = True
    state: str = "inactive"  # running, inactive, building, degraded, inaccessible
    capacity: int = 0
    allocation: int = 0
    available: int = 0
    used_percent: float | None = None
    level: SpaceLevel = SpaceLevel.UNKNOWN
    volume_count: int | None = None  # None when inactive


def read_pool(pool: libvirt.virStoragePool) -> PoolInfo:
    root = xmlmodel.parse(pool.XMLDesc(0), "pool")
    state, capacity, allocation, available = pool.info()
    active = bool(pool.isActive())
    percent, level = space_level(capacity, available, allocation) if active else (None, SpaceLevel.UNKNOWN)
    return xmlmodel.read(
        PoolInfo, root, active=active, autostart=bool(pool.autostart()), persistent=bool(pool.isPersistent()),
        state=_POOL_STATES.get(state, str(state)), capacity=capacity, allocation=allocation,
        available=available, used_percent=percent, level=level,
        volume_count=pool.numOfVolumes() if active else None)


def list_pools(target: Target) -> list[PoolInfo]:
    """Every pool with space level and volume count, sorted by name. Raises VirtError."""
    conn, manager = split(target)
    with calling(manager, "list storage pools"):
        return sorted((read_pool(p) for p in conn.listAllStoragePools(0)), key=lambda p: p.name)


def lookup(conn, manager, name: str, *, active: bool | None = None, what: str = "") -> libvirt.virStoragePool:
    """The pool by name; with active=True/False it must be running/stopped.
    Raises ValidationError, VirtError."""
    prefix = f"{what}: " if what else ""
    if not name:
        raise ValidationError(f"{prefix}no storage pool given")
    found = find(manager, f"look up pool {name}",
                 lambda: (pool := conn.storagePoolLookupByName(name), bool(pool.isActive())),
                 libvirt.VIR_ERR_NO_STORAGE_POOL)
    if found is None:
        raise ValidationError(f"{prefix}no storage pool named {name!r}")
    pool, is_active = found
    if active is True and not is_active:
        raise ValidationError(f"{prefix}storage pool {name!r} is not active", hint="start the pool first")
    if active is False and is_active:
        raise ValidationError(f"{prefix}storage pool {name!r} is running", hint="stop the pool first")
    return pool


def active_pool(conn, manager, name: str, what: str = "") -> libvirt.virStoragePool:
    return lookup(conn, manager, name, active=True, what=what)


def pool_info(target: Target, name: str) -> PoolInfo:
    conn, manager = split(target)
    pool = lookup(conn, manager, name)
    with calling(manager, f"read pool {name}"):
        return read_pool(pool)


def start_pool(target: Target, name: str) -> None:
    """Raises ValidationError (unknown or already running), VirtError."""
    conn, manager = split(target)
    pool = lookup(conn, manager, name, active=False)
    with calling(manager, f"start pool {name}"):
        pool.create(0)


def stop_pool(target: Target, name: str) -> None:
    """virStoragePoolDestroy: the pool's volumes stay on disk; running VMs keep their open disks.
    Raises ValidationError (unknown or not running), VirtError."""
    conn, manager = split(target)
    pool = lookup(conn, manager, name, active=True)
    with calling(manager, f"stop pool {name}"):
        pool.destroy()


def refresh_pool(target: Target, name: str) -> None:
    """Rescan the pool (files added behind libvirt's back). Raises ValidationError, VirtError."""
    conn, manager = split(target)
    pool = lookup(conn, manager, name, active=True)
    with calling(manager, f"refresh pool {name}"):
        pool.refresh(0)


def set_pool_autostart(target: Target, name: str, on: bool) -> None:
    conn, manager = split(target)
    pool = lookup(conn, manager, name)
    with calling(manager, f"set autostart of pool {name}"):
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
        caps = xmlmodel.parse(conn.getStoragePoolCapabilities(0), "storage pool capabilities")
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
            if verrors.is_connection_lost(exc):
                raise
            if verrors.is_no_support(exc):
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
    with calling(manager, "probe storage pool types"):
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
class _PoolXml:
    """The pool XML a NewPoolSpec becomes, in libvirt's element order."""

    kind: str = xml("./@type")
    name: str = xml("./name")
    device: str = xml("./source/device/@path")
    vg: str = xml("./source/name")
    source_format: str = xml("./source/format/@type")
    path: str = xml("./target/path")


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
    if spec.kind == "logical":
        vg = spec.vg or spec.name
        model = _PoolXml(spec.kind, spec.name, spec.device, vg, "lvm2", f"/dev/{vg}")
    elif spec.kind == "fs":
        model = _PoolXml(spec.kind, spec.name, spec.device, "", spec.fs_format or "auto", spec.path)
    elif spec.kind == "zfs":  # `vg` names the dataset; libvirt finds its volumes under /dev/zvol
        model = _PoolXml(spec.kind, spec.name, vg=spec.vg)
    else:
        model = _PoolXml(spec.kind, spec.name, path=spec.path)
    return xmlmodel.build(model, "pool")


def validate_pool_spec(target: Target, spec: NewPoolSpec) -> NewPoolSpec:
    """Name, kind (offered by this host), path/device. Reads only. Returns the spec normalised."""
    names.pool_name(spec.name)
    if spec.kind not in _CREATABLE:
        raise ValidationError(f"pool type must be one of {', '.join(_CREATABLE)}, not {spec.kind!r}")
    conn, manager = split(target)
    kinds = pool_kinds(target)
    if spec.kind not in kinds:
        raise ValidationError(f"this host cannot create {spec.kind} pools (it offers {', '.join(kinds)})")
    if spec.kind in ("dir", "fs"):
        spec = replace(spec, path=_pool_directory(spec.path))
    if spec.kind in ("fs", "logical"):
        dev = names.absolute_path(spec.device, "pool device") if spec.device else ""
        if not dev.startswith("/dev/"):
            raise ValidationError(f"{spec.kind} pool needs a block device under /dev, not {spec.device!r}")
        spec = replace(spec, device=dev)
    if spec.kind == "logical" and spec.vg:
        names.object_name(spec.vg, "volume group name")
    if find(manager, f"check pool name {spec.name}", lambda: conn.storagePoolLookupByName(spec.name),
            libvirt.VIR_ERR_NO_STORAGE_POOL) is not None:
        raise ValidationError(f"a storage pool named {spec.name!r} already exists")
    if spec.kind in ("dir", "fs"):
        with calling(manager, "list storage pools"):
            for other in conn.listAllStoragePools(0):
                other_path = xmlmodel.parse(other.XMLDesc(0), "pool").findtext("target/path") or ""
                if other_path and PurePosixPath(other_path) == PurePosixPath(spec.path):
                    raise ValidationError(f"{spec.path} is already the directory of pool {other.name()!r}")
    return spec


def _pool_directory(path: str) -> str:
    clean = names.absolute_path(path, "pool directory")
    if clean == "/":
        raise ValidationError("the root directory cannot be a storage pool")
    return clean


def create_pool(target: Target, spec: NewPoolSpec, *, build: bool = True, start: bool = True,
                autostart: bool = False) -> PoolCreateResult:
    """Define; optionally build (dir: mkdir; fs: mkfs only if the device has no file system —
    VIR_STORAGE_POOL_BUILD_NO_OVERWRITE; logical: pvcreate+vgcreate), start, autostart.
    If a step fails the definition is removed again and VirtError names the step. A directory
    that `build` created is removed too when it is still empty. Raises ValidationError, VirtError."""
    spec = validate_pool_spec(target, spec)
    conn, manager = split(target)
    xml_text = build_pool_xml(spec)
    existed = os.path.isdir(spec.path) if spec.kind == "dir" else True
    with calling(manager, f"define pool {spec.name}"):
        pool = conn.storagePoolDefineXML(xml_text, 0)
    built = False
    step = "build"
    try:
        with calling(manager, f"pool {spec.name} was not created"):
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
    pool = lookup(conn, manager, name)
    with calling(manager, f"read pool {name}"):
        info = read_pool(pool)
    if delete_directory and info.kind not in ("dir", "fs"):
        # For logical pools virStoragePoolDelete removes the volume group: far more than a directory.
        raise ValidationError(f"only a dir or fs pool's directory can be removed, not a {info.kind} pool's")
    note = ""
    removed = False
    with calling(manager, f"delete pool {name}"):
        if info.active:
            pool.destroy()
        if delete_directory:
            if info.volume_count:
                note = f"it holds {info.volume_count} volume{'s' if info.volume_count != 1 else ''}"
            else:
                try:
                    pool.delete(0)
                    removed = True
                except libvirt.libvirtError as exc:
                    if manager is not None:
                        manager.check_error(exc)
                    note = verrors.one_line(exc)
        if info.persistent:
            pool.undefine()
    return PoolDeleteResult(name, info.path, info.active, info.persistent, removed, note)
