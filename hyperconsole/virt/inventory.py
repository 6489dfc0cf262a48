"""What the host has and who uses what: node facts, domain names, and the one walk over every
domain's definition that answers "which VMs use this network / bridge / volume".

Called on demand from thread workers (never on the poll path).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol

import libvirt

from hyperconsole.errors import ValidationError
from hyperconsole.virt import errors
from hyperconsole.virt import xmlmodel
from hyperconsole.virt.calls import Target, fail, split
from hyperconsole.virt.domains import DiskInfo, NicInfo, parse_disk, parse_nic
from hyperconsole.virt.models import NodeInfo


@dataclass(frozen=True)
class DomainDefinition:
    name: str
    running: bool
    disks: tuple[DiskInfo, ...]  # from the inactive XML, plus the live XML when running
    nics: tuple[NicInfo, ...]


@dataclass(frozen=True)
class Definitions:
    domains: tuple[DomainDefinition, ...]
    problems: tuple[str, ...] = ()  # "name: one line" for each domain read only partly or not at all
    unread: frozenset[str] = frozenset()  # domains not read at all: what they use is unknown


def domain_definitions(target: Target) -> Definitions:
    """Every domain's disks and NICs in one pass: the inactive XML (what it will use) and, when
    running, the live XML (hot-plugged devices). For "which VMs use X" questions, asked once per
    refresh rather than once per X. One domain whose XML cannot be read does not hide the others:
    it is named in `problems`. Raises VirtError (listing failed, connection lost)."""
    conn, manager = split(target)
    try:
        domains = conn.listAllDomains(0)
    except libvirt.libvirtError as exc:
        raise fail(manager, "list VMs", exc) from exc
    out, problems, unread = [], [], set()
    for dom in domains:
        name = "?"
        try:
            name = dom.name()
            running = bool(dom.isActive())
            texts = [dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)] + ([dom.XMLDesc(0)] if running else [])
        except libvirt.libvirtError as exc:
            if errors.is_no_domain(exc):  # undefined meanwhile: uses nothing any more
                continue
            if errors.is_connection_lost(exc):
                raise fail(manager, "read VM definitions", exc) from exc
            problems.append(f"{name}: {errors.one_line(exc)}")
            unread.add(name)
            continue
        notes: list[str] = []
        try:
            roots = [xmlmodel.parse(t, "domain", notes) for t in texts]
        except ValidationError as exc:
            problems.append(f"{name}: {exc.message}")
            unread.add(name)
            continue
        problems.extend(f"{name}: {note}" for note in dict.fromkeys(notes))
        out.append(DomainDefinition(
            name, running,
            tuple(parse_disk(d) for root in roots for d in root.findall("devices/disk")),
            tuple(parse_nic(n) for root in roots for n in root.findall("devices/interface"))))
    return Definitions(tuple(out), tuple(problems), frozenset(unread))


class _Volume(Protocol):
    pool: str
    name: str
    path: str


class _Network(Protocol):
    name: str
    bridge: str


@dataclass(frozen=True)
class Usage:
    """Which VMs use which network, bridge and volume, from ONE walk over every domain's
    definition (`domain_definitions`). Disks are matched by path (file/block disks) and by
    pool + volume name (type='volume' disks), with no per-disk libvirt lookup."""

    by_network: dict[str, tuple[str, ...]] = field(default_factory=dict)
    by_bridge: dict[str, tuple[str, ...]] = field(default_factory=dict)  # type='bridge' NICs and live taps
    by_path: dict[str, tuple[str, ...]] = field(default_factory=dict)
    by_ref: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    running: frozenset[str] = frozenset()  # names of VMs that are running (for in-use refusals)
    problems: tuple[str, ...] = ()  # domains that could not be read (fully): "name: one line"
    unread: frozenset[str] = frozenset()  # domains not read at all: they may use anything

    def refuse_unknown(self, what: str, but: str = "") -> None:
        """Raise ValidationError when a VM other than `but` could not be read: whether it uses
        `what` is unknown, and a destructive step must not guess "no"."""
        unknown = sorted(self.unread - {but})
        if unknown:
            raise ValidationError(f"cannot tell whether VM {', '.join(unknown)} uses {what}: its definition "
                                  "could not be read", hint="fix or remove that VM's definition first")

    def on_network(self, name: str) -> tuple[str, ...]:
        return self.by_network.get(name, ())

    def on_bridge(self, bridge: str, networks: "tuple[_Network, ...] | list[_Network]" = ()) -> tuple[str, ...]:
        """VMs on a host bridge: NICs of type bridge, plus VMs on libvirt networks whose bridge it is
        (a `forward mode='bridge'` network onto br0, or a virbrN)."""
        found = set(self.by_bridge.get(bridge, ()))
        for net in networks:
            if net.bridge == bridge:
                found.update(self.on_network(net.name))
        return tuple(sorted(found))

    def users_of(self, vol: _Volume) -> tuple[str, ...]:
        found = set(self.by_path.get(os.path.normpath(vol.path), ())) if vol.path else set()
        found |= set(self.by_ref.get((vol.pool, vol.name), ()))
        return tuple(sorted(found))

    def running_users_of(self, vol: _Volume) -> tuple[str, ...]:
        return tuple(n for n in self.users_of(vol) if n in self.running)


def usage(target: Target) -> Usage:
    """Who uses what, from one pass over every domain's definition. Raises VirtError."""
    by_network: dict[str, set[str]] = {}
    by_bridge: dict[str, set[str]] = {}
    by_path: dict[str, set[str]] = {}
    by_ref: dict[tuple[str, str], set[str]] = {}
    found = domain_definitions(target)
    for d in found.domains:
        for nic in d.nics:
            if nic.kind == "network" and nic.network:
                by_network.setdefault(nic.network, set()).add(d.name)
            # Live XML of a type='network' NIC also names the bridge it was plugged into.
            if nic.kind in ("bridge", "network") and nic.bridge:
                by_bridge.setdefault(nic.bridge, set()).add(d.name)
        for disk in d.disks:
            if disk.kind == "volume" and (disk.pool or disk.volume):
                by_ref.setdefault((disk.pool, disk.volume), set()).add(d.name)
            elif disk.path:
                by_path.setdefault(os.path.normpath(disk.path), set()).add(d.name)

    def frozen(m: dict) -> dict:
        return {k: tuple(sorted(v)) for k, v in m.items()}

    return Usage(frozen(by_network), frozen(by_bridge), frozen(by_path), frozen(by_ref),
                 frozenset(d.name for d in found.domains if d.running), found.problems, found.unread)


def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def node_info(target: Target) -> NodeInfo:
    """Host facts from virNodeGetInfo; memory in KiB. Raises VirtError."""
    conn, manager = split(target)
    try:
        model, memory_mib, cpus, mhz, *_ = conn.getInfo()
        hostname = conn.getHostname()
        hypervisor = conn.getType()
        version = _version(conn.getLibVersion())
        uri = conn.getURI()
    except libvirt.libvirtError as exc:
        raise fail(manager, "read host information", exc) from exc
    return NodeInfo(hostname=hostname, model=model, memory_kib=memory_mib * 1024, cpus=cpus,
                    mhz=mhz, hypervisor=hypervisor, libvirt_version=version, uri=uri)


def free_memory_kib(conn: libvirt.virConnect) -> int | None:
    """The host's free memory in KiB: the node's memory stats where the driver has them, else
    virNodeGetFreeMemory; None when the driver does not know (the test driver says 0 for a host
    file without NUMA cells). Raises libvirtError."""
    try:
        return int(conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS, 0)["free"])
    except libvirt.libvirtError as exc:
        if not errors.is_no_support(exc):
            raise
    return conn.getFreeMemory() // 1024 or None


def domain_names(target: Target) -> list[str]:
    """Names of every domain (running or defined), sorted. Raises VirtError."""
    conn, manager = split(target)
    try:
        return sorted(d.name() for d in conn.listAllDomains(0))
    except libvirt.libvirtError as exc:
        raise fail(manager, "list VMs", exc) from exc


def autostart_shut_off(target: Target) -> list[str]:
    """Names of VMs set to start with the host that are not running now, sorted. Raises VirtError."""
    conn, manager = split(target)
    flags = libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART | libvirt.VIR_CONNECT_LIST_DOMAINS_INACTIVE
    try:
        return sorted(d.name() for d in conn.listAllDomains(flags))
    except libvirt.libvirtError as exc:
        raise fail(manager, "list VMs", exc) from exc
