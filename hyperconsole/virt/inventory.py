"""Networks, pools, volumes and node facts for the create-VM form and the details panes.

Called on demand from thread workers (never on the poll path). Every function takes a
`ConnectionManager` or a bare virConnect and returns frozen dataclasses.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from dataclasses import dataclass
from typing import Callable, TypeVar

import libvirt

from hyperconsole.errors import ValidationError
from hyperconsole.virt.connection import ConnectionManager
from hyperconsole.virt import errors
from hyperconsole.virt.errors import VirtError
from hyperconsole.virt.models import NetworkInfo, NodeInfo, PoolInfo, VolumeInfo

Target = ConnectionManager | libvirt.virConnect


def split(target: Target) -> tuple[libvirt.virConnect, ConnectionManager | None]:
    """(virConnect, manager or None) for either kind of argument."""
    if isinstance(target, ConnectionManager):
        return target.conn, target
    return target, None


T = TypeVar("T")


def fail(manager: ConnectionManager | None, action: str, exc: libvirt.libvirtError) -> VirtError:
    """Report a libvirt error to the manager (reconnect on a dead link) and make it one line."""
    if manager is not None:
        manager.check_error(exc)
    return VirtError.wrap(action, exc)


def find(manager: ConnectionManager | None, action: str, lookup: Callable[[], T], missing: int) -> T | None:
    """`lookup()`, or None when libvirt answers that the object does not exist (error code
    `missing`); any other libvirt error is reported to the manager and raised as one line."""
    try:
        return lookup()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == missing:
            return None
        raise fail(manager, action, exc) from exc


@dataclass(frozen=True)
class DomainDefinition:
    name: str
    running: bool
    roots: tuple[ET.Element, ...]  # the inactive XML, plus the live XML when running


def domain_definitions(target: Target) -> list[DomainDefinition]:
    """Every domain's definition in one pass: the inactive XML (what it will use) and, when
    running, the live XML (hot-plugged devices). For "which VMs use X" questions, asked once per
    refresh rather than once per X. Raises VirtError."""
    conn, manager = split(target)
    try:
        domains = conn.listAllDomains(0)
    except libvirt.libvirtError as exc:
        raise fail(manager, "list VMs", exc) from exc
    out = []
    for dom in domains:
        try:
            name = dom.name()
            running = bool(dom.isActive())
            xmls = [dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)] + ([dom.XMLDesc(0)] if running else [])
        except libvirt.libvirtError as exc:
            if errors.is_no_domain(exc):  # undefined meanwhile: uses nothing any more
                continue
            raise fail(manager, "read VM definitions", exc) from exc
        out.append(DomainDefinition(name, running, tuple(ET.fromstring(x) for x in xmls)))
    return out


def _xml(text: str) -> ET.Element:
    return ET.fromstring(text)


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


def domain_names(target: Target) -> list[str]:
    """Names of every domain (running or defined), sorted. Raises VirtError."""
    conn, manager = split(target)
    try:
        return sorted(d.name() for d in conn.listAllDomains(0))
    except libvirt.libvirtError as exc:
        raise fail(manager, "list VMs", exc) from exc


def _network(net: libvirt.virNetwork) -> NetworkInfo:
    root = _xml(net.XMLDesc(0))
    fwd = root.find("forward")
    mode = fwd.get("mode", "nat") if fwd is not None else "isolated"
    bridge_el = root.find("bridge")
    ranges: list[str] = []
    for ip in root.findall("ip"):
        dhcp_ranges = ip.findall("dhcp/range")
        if dhcp_ranges:
            ranges.extend(f"{r.get('start')}-{r.get('end')}" for r in dhcp_ranges)
        elif ip.get("address"):
            suffix = ip.get("prefix") or ip.get("netmask") or ""
            ranges.append(f"{ip.get('address')}/{suffix}" if suffix else ip.get("address", ""))
    return NetworkInfo(
        name=net.name(), uuid=net.UUIDString(), active=bool(net.isActive()),
        autostart=bool(net.autostart()), persistent=bool(net.isPersistent()),
        forward_mode=mode, bridge=bridge_el.get("name", "") if bridge_el is not None else "",
        ip_ranges=tuple(ranges),
    )


def list_networks(target: Target) -> list[NetworkInfo]:
    """Every libvirt network, sorted by name. Raises VirtError."""
    conn, manager = split(target)
    try:
        return sorted((_network(n) for n in conn.listAllNetworks(0)), key=lambda n: n.name)
    except libvirt.libvirtError as exc:
        raise fail(manager, "list networks", exc) from exc


def _pool(pool: libvirt.virStoragePool) -> PoolInfo:
    root = _xml(pool.XMLDesc(0))
    _state, capacity, allocation, available = pool.info()
    return PoolInfo(
        name=pool.name(), uuid=pool.UUIDString(), active=bool(pool.isActive()),
        autostart=bool(pool.autostart()), kind=root.get("type", ""),
        path=root.findtext("target/path") or "", capacity=capacity, allocation=allocation,
        available=available,
    )


def list_pools(target: Target) -> list[PoolInfo]:
    """Every storage pool, sorted by name. Raises VirtError."""
    conn, manager = split(target)
    try:
        return sorted((_pool(p) for p in conn.listAllStoragePools(0)), key=lambda p: p.name)
    except libvirt.libvirtError as exc:
        raise fail(manager, "list storage pools", exc) from exc


def volume_info(pool_name: str, vol: libvirt.virStorageVol) -> VolumeInfo:
    root = _xml(vol.XMLDesc(0))
    fmt_el = root.find("target/format")
    _kind, capacity, allocation = vol.info()
    return VolumeInfo(pool=pool_name, name=vol.name(), path=vol.path(),
                      format=fmt_el.get("type", "") if fmt_el is not None else "",
                      capacity=capacity, allocation=allocation)


def list_volumes(target: Target, pool_name: str) -> list[VolumeInfo]:
    """Volumes of one pool, sorted by name (one listing, on demand).

    Raises ValidationError if the pool does not exist or is not active, VirtError otherwise.
    """
    conn, manager = split(target)
    try:
        pool = conn.storagePoolLookupByName(pool_name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
            raise ValidationError(f"no storage pool named {pool_name!r}") from exc
        raise fail(manager, f"look up pool {pool_name}", exc) from exc
    try:
        if not pool.isActive():
            raise ValidationError(f"storage pool {pool_name!r} is not active", hint="start the pool first")
        return sorted((volume_info(pool_name, v) for v in pool.listAllVolumes(0)), key=lambda v: v.name)
    except libvirt.libvirtError as exc:
        raise fail(manager, f"list volumes of {pool_name}", exc) from exc
