"""VM operations: lifecycle, snapshots, resources, clone, delete, create, consoles.

Every function takes a `ConnectionManager` (or a bare virConnect, for scripts and tests) and a
domain UUID or name. Contract:

- bad input raises `ValidationError` before any mutating libvirt call (checks that need host
  facts — host CPUs/memory, names in use, pools — read them first, then refuse);
- a libvirt failure raises `VirtError` with one line, after `manager.check_error(exc)` so a dead
  connection starts the reconnect loop;
- nothing returns libvirt objects; results are frozen dataclasses.

Edits follow virt-manager: read the INACTIVE XML → change the model → defineXML; live changes
are tried afterwards and reported as applied live or "at next boot".
"""

from __future__ import annotations

import difflib
import logging
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import libvirt

from hyperconsole.errors import ValidationError
from hyperconsole.virt import domxml
from hyperconsole.virt import errors as verrors
from hyperconsole.virt.connection import ConnectionManager
from hyperconsole.virt.domxml import NewDomainSpec, VolumeRef
from hyperconsole.virt.errors import VirtError
from hyperconsole.virt.inventory import Target, split
from hyperconsole.virt.models import DomainDetails, DomainState, GraphicsInfo, SnapshotInfo

log = logging.getLogger(__name__)

MIN_MEMORY_MIB = 64
MIN_DISK_GIB = 1
MAX_DISK_GIB = 64 * 1024  # 64 TiB: beyond this a typo is likelier than a real disk
MAX_NAME = 64
XML_INACTIVE_SECURE = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE

# Live-change failures that mean "the hypervisor cannot do this now", i.e. "at next boot".
_LIVE_REFUSALS = {
    libvirt.VIR_ERR_NO_SUPPORT,
    libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,
    libvirt.VIR_ERR_INVALID_ARG,
    libvirt.VIR_ERR_OPERATION_INVALID,
    libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
    libvirt.VIR_ERR_CONFIG_UNSUPPORTED,
    libvirt.VIR_ERR_OPERATION_FAILED,
    libvirt.VIR_ERR_INTERNAL_ERROR,
}
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")


# --------------------------------------------------------------------------- plumbing


@contextmanager
def _calling(manager: ConnectionManager | None, action: str) -> Iterator[None]:
    """Turn a libvirtError into VirtError(one line), telling the manager first."""
    try:
        yield
    except libvirt.libvirtError as exc:
        if manager is not None:
            manager.check_error(exc)
        raise VirtError.wrap(action, exc) from exc


def _lookup(conn: libvirt.virConnect, manager: ConnectionManager | None, ident: str) -> libvirt.virDomain:
    """Domain by UUID (with or without dashes) or by name."""
    if not ident:
        raise ValidationError("no VM given")
    try:
        if _UUID_RE.match(ident):
            try:
                return conn.lookupByUUIDString(ident)
            except libvirt.libvirtError as exc:
                if not verrors.is_no_domain(exc):
                    raise
        return conn.lookupByName(ident)
    except libvirt.libvirtError as exc:
        if manager is not None:
            manager.check_error(exc)
        if verrors.is_no_domain(exc):
            raise VirtError(f"no VM {ident!r}: it was deleted or renamed") from exc
        raise VirtError.wrap(f"look up VM {ident}", exc) from exc


def _domain(target: Target, ident: str) -> tuple[libvirt.virConnect, ConnectionManager | None, libvirt.virDomain]:
    conn, manager = split(target)
    return conn, manager, _lookup(conn, manager, ident)


def _state(dom: libvirt.virDomain) -> DomainState:
    return DomainState.of(dom.state()[0])


def _simple(target: Target, ident: str, verb: str, call) -> None:
    _conn, manager, dom = _domain(target, ident)
    with _calling(manager, f"{verb} {dom.name()}"):
        call(dom)


# --------------------------------------------------------------------------- lifecycle


def start(target: Target, ident: str) -> None:
    """Boot the VM (restores a managed-save image if one exists). Raises VirtError."""
    _simple(target, ident, "start", lambda d: d.create())


def shutdown(target: Target, ident: str) -> None:
    """ACPI power-button request; the guest decides. Raises VirtError."""
    _simple(target, ident, "shut down", lambda d: d.shutdown())


def reboot(target: Target, ident: str) -> None:
    """Guest reboot request. Raises VirtError."""
    _simple(target, ident, "reboot", lambda d: d.reboot(0))


def force_off(target: Target, ident: str) -> None:
    """Pull the plug (virDomainDestroy). Callers confirm first. Raises VirtError."""
    _simple(target, ident, "force off", lambda d: d.destroy())


def pause(target: Target, ident: str) -> None:
    _simple(target, ident, "pause", lambda d: d.suspend())


def resume(target: Target, ident: str) -> None:
    _simple(target, ident, "resume", lambda d: d.resume())


def set_autostart(target: Target, ident: str, on: bool) -> None:
    _simple(target, ident, "set autostart of", lambda d: d.setAutostart(1 if on else 0))


def managed_save(target: Target, ident: str) -> None:
    """Save the running VM's memory to disk and stop it; `start` restores it."""
    _simple(target, ident, "save", lambda d: d.managedSave(0))


def managed_save_remove(target: Target, ident: str) -> None:
    """Discard the saved state; the next start is a cold boot."""
    _simple(target, ident, "discard saved state of", lambda d: d.managedSaveRemove(0))


# --------------------------------------------------------------------------- names


def validate_name(name: str, what: str = "VM name") -> str:
    """Names are shown and passed exactly as typed. libvirt accepts almost anything, so do we:
    unicode, spaces inside, quotes, brackets, `$`, `<`, `&` are allowed (XML escaping is
    ElementTree's job, display is the UI's). Refused: empty, over 64 characters, `/` (libvirt
    turns names into file names), control characters incl. newlines and tabs, and leading or
    trailing whitespace (invisible in lists and in `virsh` arguments)."""
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{what} is empty")
    if len(name) > MAX_NAME:
        raise ValidationError(f"{what} is {len(name)} characters long; at most {MAX_NAME}")
    if "/" in name:
        raise ValidationError(f"{what} may not contain '/'")
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in name):
        raise ValidationError(f"{what} may not contain control characters or line breaks")
    if name != name.strip():
        raise ValidationError(f"{what} may not start or end with whitespace")
    return name


def _name_free(conn: libvirt.virConnect, manager: ConnectionManager | None, name: str) -> None:
    try:
        conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if verrors.is_no_domain(exc):
            return
        if manager is not None:
            manager.check_error(exc)
        raise VirtError.wrap(f"check name {name}", exc) from exc
    raise ValidationError(f"a VM named {name!r} already exists")


# --------------------------------------------------------------------------- snapshots


def _snapshot_info(snap: libvirt.virDomainSnapshot) -> SnapshotInfo:
    root = ET.fromstring(snap.getXMLDesc(0))
    try:
        current = bool(snap.isCurrent(0))
    except libvirt.libvirtError:
        current = False
    return SnapshotInfo(
        name=snap.getName(),
        parent=root.findtext("parent/name"),
        description=root.findtext("description") or "",
        state=root.findtext("state") or "",
        creation_time=int(root.findtext("creationTime") or 0),
        current=current,
    )


def snapshot_tree(items: list[SnapshotInfo]) -> tuple[SnapshotInfo, ...]:
    """Depth-first order: each snapshot followed by its children (oldest first), with depth."""
    by_parent: dict[str | None, list[SnapshotInfo]] = {}
    names = {s.name for s in items}
    for s in items:
        parent = s.parent if s.parent in names else None
        by_parent.setdefault(parent, []).append(s)
    for children in by_parent.values():
        children.sort(key=lambda s: (s.creation_time, s.name))
    out: list[SnapshotInfo] = []
    stack = [(s, 0) for s in reversed(by_parent.get(None, []))]
    while stack:
        snap, depth = stack.pop()
        out.append(replace(snap, depth=depth))
        stack.extend((c, depth + 1) for c in reversed(by_parent.get(snap.name, [])))
    return tuple(out)


def _list_snapshots(manager: ConnectionManager | None, dom: libvirt.virDomain) -> tuple[SnapshotInfo, ...]:
    with _calling(manager, f"list snapshots of {dom.name()}"):
        return snapshot_tree([_snapshot_info(s) for s in dom.listAllSnapshots(0)])


def list_snapshots(target: Target, ident: str) -> tuple[SnapshotInfo, ...]:
    """Snapshots in tree order (parents before children) with depth. Raises VirtError."""
    _conn, manager, dom = _domain(target, ident)
    return _list_snapshots(manager, dom)


def _snapshot(manager, dom, name: str) -> libvirt.virDomainSnapshot:
    try:
        return dom.snapshotLookupByName(name, 0)
    except libvirt.libvirtError as exc:
        if manager is not None:
            manager.check_error(exc)
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
            raise ValidationError(f"{dom.name()} has no snapshot named {name!r}") from exc
        raise VirtError.wrap(f"look up snapshot {name}", exc) from exc


def create_snapshot(target: Target, ident: str, name: str, description: str = "") -> SnapshotInfo:
    """Snapshot with libvirt's defaults for the domain's state (QEMU: internal qcow2 snapshot,
    with memory when running). Raises ValidationError (bad or taken name), VirtError."""
    validate_name(name, "snapshot name")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in description):
        raise ValidationError("snapshot description may not contain control characters")
    _conn, manager, dom = _domain(target, ident)
    with _calling(manager, f"list snapshots of {dom.name()}"):
        taken = set(dom.snapshotListNames(0))
    if name in taken:
        raise ValidationError(f"{dom.name()} already has a snapshot named {name!r}")
    with _calling(manager, f"snapshot {dom.name()}"):
        snap = dom.snapshotCreateXML(domxml.snapshot_xml(name, description), 0)
        return _snapshot_info(snap)


def revert_snapshot(target: Target, ident: str, name: str) -> None:
    """Return the VM to the snapshot (its disk, and memory/run state if it has them)."""
    _conn, manager, dom = _domain(target, ident)
    snap = _snapshot(manager, dom, name)
    with _calling(manager, f"revert {dom.name()} to {name}"):
        dom.revertToSnapshot(snap, 0)


def delete_snapshot(target: Target, ident: str, name: str, with_children: bool = False) -> None:
    """Delete one snapshot; its children are re-parented to its parent (libvirt's default).
    with_children=True deletes the whole subtree instead."""
    _conn, manager, dom = _domain(target, ident)
    snap = _snapshot(manager, dom, name)
    flags = libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN if with_children else 0
    with _calling(manager, f"delete snapshot {name} of {dom.name()}"):
        snap.delete(flags)


# --------------------------------------------------------------------------- details


def get_details(target: Target, ident: str) -> DomainDetails:
    """On-demand details: live XML (inactive when shut off) + snapshot tree. Raises VirtError."""
    _conn, manager, dom = _domain(target, ident)
    with _calling(manager, f"read {dom.name()}"):
        xml = dom.XMLDesc(0)
    try:
        snaps = _list_snapshots(manager, dom)
    except VirtError as exc:
        cause = exc.__cause__
        if cause is None or not verrors.is_no_support(cause):
            raise
        snaps = ()
    details = domxml.parse_domain_xml(xml, snaps)
    return _with_addresses(manager, dom, details)


def _with_addresses(manager, dom: libvirt.virDomain, details: DomainDetails) -> DomainDetails:
    """Fill NicInfo.addresses from the DHCP leases of libvirt networks (no guest agent needed).
    Bridged NICs have no lease here and stay empty; a VM that is off has none at all."""
    try:
        if not dom.isActive() or not details.nics:
            return details
        found = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, 0) or {}
    except libvirt.libvirtError as exc:
        if manager is not None:
            manager.check_error(exc)
        log.debug("no addresses for %s: %s", details.name, verrors.one_line(exc))
        return details
    by_mac: dict[str, list[str]] = {}
    for entry in found.values():
        mac = (entry.get("hwaddr") or "").lower()
        by_mac.setdefault(mac, []).extend(a["addr"] for a in entry.get("addrs") or [] if a.get("addr"))
    nics = tuple(replace(n, addresses=tuple(by_mac.get(n.mac.lower(), ()))) if n.mac.lower() in by_mac else n
                 for n in details.nics)
    return replace(details, nics=nics)


def graphics_info(details: DomainDetails) -> list[GraphicsInfo]:
    """VNC/SPICE displays of the VM; `g.tunnel_hint(ssh_target(uri))` says how to reach one."""
    return [g for g in details.graphics if g.kind in ("vnc", "spice")]


def ssh_target(uri: str) -> str:
    """The `user@host` to put in an `ssh -L` hint for a libvirt URI ('<host>' when local)."""
    parts = urlsplit(uri)
    if not parts.hostname:
        return "<host>"
    return f"{parts.username}@{parts.hostname}" if parts.username else parts.hostname


def console_command(uri: str, name: str) -> list[str]:
    """argv for the serial console. `--domain` keeps a name starting with '-' from being an option;
    argv (no shell) keeps spaces, quotes and `$` literal."""
    return ["virsh", "-c", uri, "console", "--domain", name]


# --------------------------------------------------------------------------- resources


@dataclass(frozen=True)
class ResourceChange:
    what: str  # "vcpus" | "memory"
    old: int
    new: int
    live: bool  # applied to the running VM now (it is in the config as well)
    reason: str = ""  # why it waits for the next boot

    @property
    def label(self) -> str:
        unit = " MiB" if self.what == "memory" else ""
        when = "now" if self.live else "at next boot"
        text = f"{self.what} {self.old}{unit} → {self.new}{unit} {when}"
        return f"{text} ({self.reason})" if self.reason and not self.live else text


@dataclass(frozen=True)
class EditResult:
    changes: tuple[ResourceChange, ...]
    xml_diff: str  # unified diff of the inactive XML, for the log

    @property
    def applied_live(self) -> tuple[ResourceChange, ...]:
        return tuple(c for c in self.changes if c.live)

    @property
    def at_next_boot(self) -> tuple[ResourceChange, ...]:
        return tuple(c for c in self.changes if not c.live)

    def summary(self) -> str:
        return "; ".join(c.label for c in self.changes) or "nothing changed"


def _host_limits(conn, manager, domain_type: str | None = None) -> tuple[int, int]:
    """(max vCPUs, memory MiB) of the host: logical CPUs, capped by the hypervisor's own limit."""
    with _calling(manager, "read host limits"):
        info = conn.getInfo()
    cpus, memory_mib = int(info[2]), int(info[1])
    try:
        hv_max = conn.getMaxVcpus(domain_type)
        if hv_max > 0:
            cpus = min(cpus, hv_max)
    except libvirt.libvirtError as exc:
        if manager is not None:
            manager.check_error(exc)
    return cpus, memory_mib


def _check_sizes(vcpus: int, memory_mib: int, max_vcpus: int | None = None, host_mib: int | None = None) -> None:
    if not isinstance(vcpus, int) or isinstance(vcpus, bool) or vcpus < 1:
        raise ValidationError(f"vCPUs must be a whole number from 1, not {vcpus!r}")
    if not isinstance(memory_mib, int) or isinstance(memory_mib, bool) or memory_mib < MIN_MEMORY_MIB:
        raise ValidationError(f"memory must be at least {MIN_MEMORY_MIB} MiB, not {memory_mib!r}")
    if max_vcpus is not None and vcpus > max_vcpus:
        raise ValidationError(f"{vcpus} vCPUs is more than this host has ({max_vcpus})")
    if host_mib is not None and memory_mib > host_mib:
        raise ValidationError(f"{memory_mib} MiB is more memory than this host has ({host_mib} MiB)")


def edit_resources(target: Target, ident: str, vcpus: int, memory_mib: int) -> EditResult:
    """Change vCPUs and memory: inactive XML → change → defineXML, then try the same live.

    Live vCPU changes need vCPUs ≤ the running maximum and hypervisor hotplug support; live
    memory is a balloon change up to the running maximum. Whatever cannot apply live is reported
    "at next boot" (the definition already holds it). Raising the vCPU maximum is always next boot.
    Raises ValidationError (range, transient VM), VirtError.
    """
    _check_sizes(vcpus, memory_mib)
    conn, manager, dom = _domain(target, ident)
    name = dom.name()
    with _calling(manager, f"read {name}"):
        persistent = dom.isPersistent()
        xml_before = dom.XMLDesc(XML_INACTIVE_SECURE)
        running = _state(dom) in (DomainState.RUNNING, DomainState.PAUSED, DomainState.BLOCKED)
    if not persistent:
        raise ValidationError(f"{name} is transient (not defined); it has no configuration to edit")
    dtype = ET.fromstring(xml_before).get("type")
    max_vcpus, host_mib = _host_limits(conn, manager, dtype)
    _check_sizes(vcpus, memory_mib, max_vcpus, host_mib)

    old = domxml.vcpu_limits(xml_before)
    old_mem = domxml.memory_mib_of(xml_before)
    xml_after, raised = domxml.set_vcpus(xml_before, vcpus)
    xml_after = domxml.set_memory(xml_after, memory_mib)
    if old.current == vcpus and old_mem == memory_mib:
        return EditResult((), "")
    with _calling(manager, f"save new sizes of {name}"):
        conn.defineXML(xml_after)
    diff = "".join(difflib.unified_diff(xml_before.splitlines(True), xml_after.splitlines(True),
                                        "before", "after"))
    log.info("redefined %s:\n%s", name, diff)

    changes: list[ResourceChange] = []
    if old.current != vcpus:
        live, reason = False, "VM is not running" if not running else ""
        if raised:
            reason = f"maximum vCPUs raised from {old.maximum}"
        elif running:
            live, reason = _try_live(manager, name, lambda: dom.setVcpusFlags(vcpus, libvirt.VIR_DOMAIN_AFFECT_LIVE))
        changes.append(ResourceChange("vcpus", old.current, vcpus, live, reason))
    if old_mem != memory_mib:
        live, reason = False, "VM is not running" if not running else ""
        if running:
            with _calling(manager, f"read {name}"):
                live_max_mib = dom.maxMemory() // 1024
            if memory_mib > live_max_mib:
                reason = f"above the running maximum of {live_max_mib} MiB"
            else:
                live, reason = _try_live(manager, name, lambda: dom.setMemoryFlags(
                    memory_mib * 1024, libvirt.VIR_DOMAIN_AFFECT_LIVE))
        changes.append(ResourceChange("memory", old_mem, memory_mib, live, reason))
    return EditResult(tuple(changes), diff)


def _try_live(manager, name: str, call) -> tuple[bool, str]:
    try:
        call()
    except libvirt.libvirtError as exc:
        if manager is not None:
            manager.check_error(exc)
        if verrors.is_connection_lost(exc) or verrors.code(exc) not in _LIVE_REFUSALS:
            raise VirtError(f"saved the new size of {name}, but the live change failed: "
                            f"{verrors.one_line(exc)}") from exc
        return False, verrors.one_line(exc)
    return True, ""


# --------------------------------------------------------------------------- storage helpers


@dataclass(frozen=True)
class _DiskVol:
    target: str
    element: ET.Element
    vol: libvirt.virStorageVol | None
    pool: libvirt.virStoragePool | None
    shared: bool  # cdrom, floppy, readonly or shareable: never copied or deleted
    reason: str = ""  # why vol is None


def _disk_volumes(conn, root: ET.Element) -> list[_DiskVol]:
    """Each <disk> of a domain with the storage volume behind it (None if not a pool volume)."""
    out = []
    for el in root.findall("devices/disk"):
        target = (el.find("target").get("dev", "?") if el.find("target") is not None else "?")
        shared = (el.get("device", "disk") in ("cdrom", "floppy") or el.find("readonly") is not None
                  or el.find("shareable") is not None)
        src = el.find("source")
        vol = pool = None
        reason = ""
        kind = el.get("type", "file")
        if src is None:
            reason = "has no source"
        elif kind == "volume":
            try:
                pool = conn.storagePoolLookupByName(src.get("pool", ""))
                vol = pool.storageVolLookupByName(src.get("volume", ""))
            except libvirt.libvirtError as exc:
                vol, reason = None, verrors.one_line(exc)
        elif kind in ("file", "block"):
            path = src.get("file") or src.get("dev") or ""
            try:
                vol = conn.storageVolLookupByPath(path)
                pool = vol.storagePoolLookupByVolume()
            except libvirt.libvirtError:
                vol, reason = None, f"{path} is not a volume of any storage pool"
        else:
            reason = f"is a {kind} disk, not a storage pool volume"
        out.append(_DiskVol(target, el, vol, pool, shared, reason))
    return out


def _volume_keys_in_use(conn, exclude_uuid: str) -> set[str]:
    """Volume keys (paths) referenced by every domain other than `exclude_uuid`."""
    keys: set[str] = set()
    for dom in conn.listAllDomains(0):
        try:
            if dom.UUIDString() == exclude_uuid:
                continue
            root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        except libvirt.libvirtError as exc:
            if verrors.is_no_domain(exc):  # undefined meanwhile: uses nothing any more
                continue
            raise
        for d in _disk_volumes(conn, root):
            if d.vol is not None:
                keys.add(d.vol.key())
    return keys


def _vol_format(vol: libvirt.virStorageVol) -> str:
    el = ET.fromstring(vol.XMLDesc(0)).find("target/format")
    return el.get("type", "raw") if el is not None else "raw"


def _free_volume_name(pool: libvirt.virStoragePool, wanted: str) -> str:
    existing = set(pool.listVolumes())
    if wanted not in existing:
        return wanted
    stem, dot, ext = wanted.rpartition(".")
    if not dot or "/" in ext or len(ext) > 6:
        stem, ext = wanted, ""
    n = 1
    while True:
        candidate = f"{stem}-{n}.{ext}" if ext else f"{stem}-{n}"
        if candidate not in existing:
            return candidate
        n += 1


def _delete_volumes(vols: list[libvirt.virStorageVol]) -> list[str]:
    """Best-effort cleanup; returns one line per volume that could not be removed."""
    problems = []
    for vol in vols:
        try:
            vol.delete(0)
        except libvirt.libvirtError as exc:
            problems.append(f"{vol.name()}: {verrors.one_line(exc)}")
    return problems


# --------------------------------------------------------------------------- clone


@dataclass(frozen=True)
class CloneResult:
    uuid: str
    name: str
    volumes: tuple[str, ...]  # "pool/volume" of each copied disk

    def summary(self) -> str:
        return f"created {self.name} (copied {', '.join(self.volumes) or 'no disks'})"


def _clone_volume_name(old_vol: str, old_name: str, new_name: str, target: str) -> str:
    if old_name and old_name in old_vol:
        return old_vol.replace(old_name, new_name, 1)
    ext = old_vol.rpartition(".")[2] if "." in old_vol else ""
    return f"{new_name}-{target}.{ext}" if ext else f"{new_name}-{target}"


def clone(target: Target, ident: str, new_name: str) -> CloneResult:
    """Copy a shut-off VM: new UUID, new MACs (libvirt generates them), each writable disk volume
    copied with createXMLFrom into its own pool; cdroms and read-only/shareable disks are shared.
    A writable disk that is not a pool volume refuses the clone. The NVRAM path is dropped, so a
    UEFI clone starts from a fresh variable store. Nothing is left behind on failure.
    Raises ValidationError, VirtError."""
    validate_name(new_name)
    conn, manager, dom = _domain(target, ident)
    name = dom.name()
    with _calling(manager, f"read {name}"):
        if _state(dom) != DomainState.SHUTOFF:
            raise ValidationError(f"{name} must be shut off to clone it", hint="shut it down first")
        xml = dom.XMLDesc(XML_INACTIVE_SECURE)
        _name_free(conn, manager, new_name)
        root = ET.fromstring(xml)
        disks = _disk_volumes(conn, root)
    plan = []
    for d in disks:
        if d.shared or d.element.find("source") is None:
            continue
        if d.vol is None:
            raise ValidationError(f"cannot copy disk {d.target}: it {d.reason}",
                                  hint="only storage pool volumes are copied")
        plan.append(d)

    created: list[libvirt.virStorageVol] = []
    names: list[str] = []
    try:
        with _calling(manager, f"copy disks of {name}"):
            for d in plan:
                assert d.vol is not None and d.pool is not None
                _kind, capacity, _alloc = d.vol.info()
                vol_name = _free_volume_name(d.pool, _clone_volume_name(d.vol.name(), name, new_name, d.target))
                new_vol = d.pool.createXMLFrom(domxml.volume_xml(vol_name, capacity, _vol_format(d.vol)), d.vol, 0)
                created.append(new_vol)
                names.append(f"{d.pool.name()}/{new_vol.name()}")
                src = d.element.find("source")
                assert src is not None
                if d.element.get("type") == "volume":
                    src.set("volume", new_vol.name())
                elif "dev" in src.attrib:
                    src.set("dev", new_vol.path())
                else:
                    src.set("file", new_vol.path())
        root.find("name").text = new_name  # type: ignore[union-attr]
        for tag in ("uuid",):
            el = root.find(tag)
            if el is not None:
                root.remove(el)
        for nic in root.findall("devices/interface"):
            for tag in ("mac", "target"):
                el = nic.find(tag)
                if el is not None:
                    nic.remove(el)
        os_el = root.find("os")
        nvram = os_el.find("nvram") if os_el is not None else None
        if os_el is not None and nvram is not None:
            os_el.remove(nvram)
        with _calling(manager, f"define clone {new_name}"):
            new_dom = conn.defineXML(domxml.to_string(root))
            return CloneResult(new_dom.UUIDString(), new_dom.name(), tuple(names))
    except BaseException:
        problems = _delete_volumes(created)
        if problems:
            log.error("clone of %s: could not remove copied volumes: %s", name, "; ".join(problems))
        raise


# --------------------------------------------------------------------------- delete


@dataclass(frozen=True)
class DeleteResult:
    name: str
    destroyed: bool  # it was running and was forced off
    undefined: bool
    removed_volumes: tuple[str, ...] = ()  # "pool/volume"
    kept: tuple[str, ...] = ()  # "vdb: reason" for disks left alone
    problems: tuple[str, ...] = ()  # volumes that should have gone but could not be removed

    def summary(self) -> str:
        parts = [f"deleted {self.name}"]
        if self.removed_volumes:
            parts.append("removed " + ", ".join(self.removed_volumes))
        if self.kept:
            parts.append("kept " + ", ".join(self.kept))
        if self.problems:
            parts.append("could not remove " + ", ".join(self.problems))
        return "; ".join(parts)


_UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE,
    getattr(libvirt, "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA", 0),
    libvirt.VIR_DOMAIN_UNDEFINE_NVRAM,
)


def _undefine(dom: libvirt.virDomain) -> None:
    """undefineFlags with everything libvirt can clean up; drop flags the driver refuses
    (test driver: NVRAM, checkpoints; old drivers: all), NVRAM first, then checkpoints."""
    wanted = [f for f in _UNDEFINE_FLAGS if f]
    last: libvirt.libvirtError | None = None
    for drop in range(len(wanted) + 1):
        flags = 0
        for f in wanted[: len(wanted) - drop]:
            flags |= f
        try:
            dom.undefineFlags(flags)
            return
        except libvirt.libvirtError as exc:
            if not (verrors.is_no_support(exc) or verrors.code(exc) == libvirt.VIR_ERR_INVALID_ARG):
                raise
            last = exc
    dom.undefine()
    if last is not None:
        log.debug("undefine fell back to plain undefine: %s", verrors.one_line(last))


def delete(target: Target, ident: str, remove_storage: bool = False) -> DeleteResult:
    """Delete a VM: force it off if running (the caller has confirmed), undefine it with its
    snapshot metadata, managed-save image and NVRAM, and with remove_storage also delete its
    writable disk volumes — never cdroms, read-only/shareable disks, disks that are not pool
    volumes, or volumes another VM uses. Volume failures are reported, not raised (the VM is
    already gone). Raises VirtError."""
    conn, manager, dom = _domain(target, ident)
    name = dom.name()
    uuid = dom.UUIDString()
    with _calling(manager, f"read {name}"):
        persistent = dom.isPersistent()
        root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        doomed: list[tuple[str, libvirt.virStorageVol]] = []
        kept: list[str] = []
        if remove_storage:
            in_use = _volume_keys_in_use(conn, uuid)
            for d in _disk_volumes(conn, root):
                label = d.target
                if d.shared:
                    kept.append(f"{label}: shared or read-only")
                elif d.vol is None:
                    if d.element.find("source") is not None:
                        kept.append(f"{label}: {d.reason}")
                elif d.vol.key() in in_use:
                    kept.append(f"{label}: used by another VM")
                else:
                    doomed.append((f"{d.pool.name() if d.pool else '?'}/{d.vol.name()}", d.vol))
        active = bool(dom.isActive())
    with _calling(manager, f"delete {name}"):
        if active:
            dom.destroy()
        if persistent:
            _undefine(dom)
    removed, problems = [], []
    for label, vol in doomed:
        try:
            vol.delete(0)
            removed.append(label)
        except libvirt.libvirtError as exc:
            if manager is not None:
                manager.check_error(exc)
            problems.append(f"{label} ({verrors.one_line(exc)})")
    return DeleteResult(name, active, persistent, tuple(removed), tuple(kept), tuple(problems))


# --------------------------------------------------------------------------- create


@dataclass(frozen=True)
class CreateResult:
    uuid: str
    name: str
    created_volume: str = ""  # "pool/volume" when a new disk was made
    started: bool = False
    xml: str = ""

    def summary(self) -> str:
        made = f" with new disk {self.created_volume}" if self.created_volume else ""
        return f"defined {self.name}{made}" + (" and started it" if self.started else "")


def _pick_domain_type(conn, manager) -> str:
    """kvm, else qemu, else whatever the capabilities offer (test driver: 'test')."""
    with _calling(manager, "read capabilities"):
        caps = ET.fromstring(conn.getCapabilities())
    types = [d.get("type", "") for d in caps.findall("guest/arch/domain")]
    for preferred in ("kvm", "qemu", "test"):
        if preferred in types:
            return preferred
    if types:
        return types[0]
    raise ValidationError("this host offers no virtual machine type")


def _active_pool(conn, manager, name: str, what: str) -> libvirt.virStoragePool:
    try:
        pool = conn.storagePoolLookupByName(name)
        active = pool.isActive()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
            raise ValidationError(f"{what}: no storage pool named {name!r}") from exc
        if manager is not None:
            manager.check_error(exc)
        raise VirtError.wrap(f"look up pool {name}", exc) from exc
    if not active:
        raise ValidationError(f"{what}: storage pool {name!r} is not active", hint="start the pool first")
    return pool


def _existing_volume(conn, manager, ref: VolumeRef, what: str) -> libvirt.virStorageVol:
    pool = _active_pool(conn, manager, ref.pool, what)
    try:
        return pool.storageVolLookupByName(ref.volume)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            raise ValidationError(f"{what}: pool {ref.pool!r} has no volume {ref.volume!r}") from exc
        if manager is not None:
            manager.check_error(exc)
        raise VirtError.wrap(f"look up volume {ref}", exc) from exc


def _validate_bridge_name(name: str) -> None:
    if not name or len(name) > 15 or any(c in name for c in "/ \t\n:") or not name.isprintable():
        raise ValidationError(f"{name!r} is not a valid bridge name (1-15 characters, no '/', ':' or spaces)")


def validate_spec(target: Target, spec: NewDomainSpec) -> NewDomainSpec:
    """Check a create request against the host; return it completed (domain type, disk volume
    name, disk format). Reads only. Raises ValidationError, VirtError."""
    validate_name(spec.name)
    _check_sizes(spec.vcpus, spec.memory_mib)
    if spec.firmware not in domxml.FIRMWARES:
        raise ValidationError(f"firmware must be bios or uefi, not {spec.firmware!r}")
    if spec.graphics not in domxml.GRAPHICS_KINDS:
        raise ValidationError(f"graphics must be one of {', '.join(domxml.GRAPHICS_KINDS)}")
    if spec.network is not None and spec.network_kind not in domxml.NETWORK_KINDS:
        raise ValidationError(f"network kind must be network or bridge, not {spec.network_kind!r}")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in spec.description):
        raise ValidationError("description may not contain control characters")
    if spec.new_disk_gib is not None:
        if spec.disk is None or not spec.disk.pool:
            raise ValidationError("a new disk needs a storage pool")
        if not isinstance(spec.new_disk_gib, int) or not MIN_DISK_GIB <= spec.new_disk_gib <= MAX_DISK_GIB:
            raise ValidationError(f"disk size must be {MIN_DISK_GIB}..{MAX_DISK_GIB} GiB, not {spec.new_disk_gib!r}")
        if spec.disk.volume:
            validate_name(spec.disk.volume, "volume name")
    if spec.network_kind == "bridge" and spec.network is not None:
        _validate_bridge_name(spec.network)

    conn, manager = split(target)
    dtype = spec.domain_type or _pick_domain_type(conn, manager)
    max_vcpus, host_mib = _host_limits(conn, manager, dtype)
    _check_sizes(spec.vcpus, spec.memory_mib, max_vcpus, host_mib)
    _name_free(conn, manager, spec.name)
    spec = replace(spec, domain_type=dtype)

    if spec.disk is not None:
        if spec.new_disk_gib is not None:
            pool = _active_pool(conn, manager, spec.disk.pool, "disk")
            vol_name = spec.disk.volume or f"{spec.name}.qcow2"
            with _calling(manager, f"list volumes of {spec.disk.pool}"):
                taken = vol_name in pool.listVolumes()
            if taken:
                raise ValidationError(f"pool {spec.disk.pool!r} already has a volume {vol_name!r}",
                                      hint="pick another name or attach the existing volume")
            spec = replace(spec, disk=VolumeRef(spec.disk.pool, vol_name), disk_format="qcow2")
        else:
            vol = _existing_volume(conn, manager, spec.disk, "disk")
            with _calling(manager, f"check volume {spec.disk}"):
                if vol.key() in _volume_keys_in_use(conn, ""):
                    raise ValidationError(f"volume {spec.disk} is already a disk of another VM")
                spec = replace(spec, disk_format=_vol_format(vol))
    if spec.iso is not None:
        _existing_volume(conn, manager, spec.iso, "boot ISO")
    if spec.network is not None:
        if spec.network_kind == "network":
            try:
                conn.networkLookupByName(spec.network)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                    raise ValidationError(f"no libvirt network named {spec.network!r}") from exc
                if manager is not None:
                    manager.check_error(exc)
                raise VirtError.wrap(f"look up network {spec.network}", exc) from exc
        else:
            try:
                conn.interfaceLookupByName(spec.network)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_INTERFACE:
                    raise ValidationError(f"no host bridge named {spec.network!r}") from exc
                if manager is not None:
                    manager.check_error(exc)
                # no interface driver (e.g. no netcf/udev backend): cannot check, trust the name
                log.debug("bridge %s not checked: %s", spec.network, verrors.one_line(exc))
    return spec


def create_domain(target: Target, spec: NewDomainSpec, start_now: bool = False) -> CreateResult:
    """Validate, create the new qcow2 disk (if asked), define the VM, optionally start it.
    If defining fails the new volume is deleted again: no half-created VM. A failed start leaves
    the defined VM and is reported in the raised VirtError. Raises ValidationError, VirtError."""
    spec = validate_spec(target, spec)
    conn, manager = split(target)
    xml = domxml.build_domain_xml(spec)
    new_vol = None
    created = ""
    try:
        if spec.new_disk_gib is not None and spec.disk is not None:
            pool = _active_pool(conn, manager, spec.disk.pool, "disk")
            with _calling(manager, f"create disk {spec.disk}"):
                new_vol = pool.createXML(domxml.volume_xml(spec.disk.volume, spec.new_disk_gib * 1024**3), 0)
            created = str(spec.disk)
        with _calling(manager, f"define {spec.name}"):
            dom = conn.defineXML(xml)
            uuid = dom.UUIDString()
    except BaseException:
        if new_vol is not None:
            problems = _delete_volumes([new_vol])
            if problems:
                log.error("could not remove new volume after failed create: %s", problems[0])
        raise
    started = False
    if start_now:
        with _calling(manager, f"created {spec.name} but could not start it"):
            dom.create()
        started = True
    return CreateResult(uuid, spec.name, created, started, xml)
