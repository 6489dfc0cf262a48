"""VM lifecycle: start, shut down, reboot, force off, pause, resume, autostart, managed save,
details and consoles, and delete.

Contract: see calls.py. Domains are named by UUID (with or without dashes) or by name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import libvirt

from hyperconsole.virt import errors as verrors
from hyperconsole.virt import inventory, snapshots, xmlmodel
from hyperconsole.virt.calls import Target, calling
from hyperconsole.virt.domains import DomainDetails, GraphicsInfo, domain, read_domain
from hyperconsole.virt.errors import VirtError
from hyperconsole.virt.volumes import disk_volumes, read_volume

log = logging.getLogger(__name__)


def _simple(target: Target, ident: str, verb: str, call) -> None:
    _conn, manager, dom = domain(target, ident)
    with calling(manager, f"{verb} {dom.name()}"):
        call(dom)


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



def get_details(target: Target, ident: str) -> DomainDetails:
    """On-demand details: live XML (inactive when shut off) + snapshot tree. Raises VirtError."""
    _conn, manager, dom = domain(target, ident)
    with calling(manager, f"read {dom.name()}"):
        xml = dom.XMLDesc(0)
    try:
        snaps = snapshots.of_domain(manager, dom)
    except VirtError as exc:
        cause = exc.__cause__
        if cause is None or not verrors.is_no_support(cause):
            raise
        snaps = ()
    details = read_domain(xmlmodel.parse(xml, "domain"), snaps)
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
    conn, manager, dom = domain(target, ident)
    name = dom.name()
    with calling(manager, f"read {name}"):
        persistent = dom.isPersistent()
        root = xmlmodel.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), "domain")
        doomed: list[tuple[str, libvirt.virStorageVol]] = []
        kept: list[str] = []
        if remove_storage:
            usage = inventory.usage(target)
            unknown = ", ".join(sorted(usage.unread - {name}))
            for d in disk_volumes(conn, root):
                label = d.disk.target or "?"
                if unknown and d.vol is not None:
                    kept.append(f"{label}: VM {unknown} could not be read, so its disks are unknown")
                elif d.disk.shared:
                    kept.append(f"{label}: shared or read-only")
                elif d.vol is None or d.pool is None:
                    if d.disk.source:
                        kept.append(f"{label}: {d.reason}")
                elif set(usage.users_of(read_volume(d.pool.name(), d.vol))) - {name}:
                    kept.append(f"{label}: used by another VM")
                else:
                    doomed.append((f"{d.pool.name()}/{d.vol.name()}", d.vol))
        active = bool(dom.isActive())
    with calling(manager, f"delete {name}"):
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


