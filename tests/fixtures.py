"""Deterministic builders for libvirt *test driver* node XML (testing tier 1).

Every unit test gets its own host file (``test:///abs/path.xml``), never the shared
``test:///default`` whose state leaks between tests (DESIGN.md, "Testing tiers")::

    from tests.fixtures import build_host_xml, domain_xml, test_uri

    def test_something(tmp_path):
        xml = build_host_xml(domains=[domain_xml("web-01", state="paused")])
        conn = libvirt.open(test_uri(tmp_path, xml))

All XML is built with ElementTree, so names may contain quotes, ``<``, ``&``, ``${`` or
unicode. Builders return XML *strings* (each one a standalone document that
``defineXML``/``networkDefineXML``/``storagePoolDefineXML`` also accept, the ``test:``
namespace elements aside); ``build_host_xml`` accepts those strings or ``ET.Element``s.

Output is deterministic: UUIDs and MACs default to values derived from the name.

What the test driver reads from a node file (libvirt src/test/test_driver.c):
``<cpu>`` nodes/sockets/cores/threads/active/mhz/model, ``<memory>`` (KiB), ``<domain>``
(+ ``test:runstate``, ``test:transient``, ``test:hasmanagedsave``, ``test:domainsnapshot``),
``<network>`` (all come up active), ``<interface>`` (host interfaces, all active),
``<pool>`` with nested ``<volume>``s (all active), ``<device>`` (node devices),
``<auth>``. Not read: autostart flags (set them with ``setAutostart`` after opening),
DHCP leases, NUMA cells.
"""

from __future__ import annotations

import hashlib
import uuid as _uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
ET.register_namespace("test", TEST_NS)

#: virDomainState numbers, as ``<test:runstate>`` wants them.
RUNSTATES = {
    "nostate": 0,
    "running": 1,
    "blocked": 2,
    "paused": 3,
    "shutdown": 4,
    "shutoff": 5,
    "crashed": 6,
    "pmsuspended": 7,
}

MIB = 1024 * 1024
GIB = 1024 * MIB

XmlLike = str | ET.Element


def _t(tag: str) -> str:
    return f"{{{TEST_NS}}}{tag}"


def _sub(parent: ET.Element, tag: str, text: Any = None, **attrs: Any) -> ET.Element:
    el = ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = str(text)
    return el


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x00".join(parts).encode()).digest()


def stable_uuid(*parts: str) -> str:
    """A UUID derived from ``parts`` (same input, same UUID)."""
    return str(_uuid.UUID(bytes=_digest("uuid", *parts)[:16]))


def stable_mac(*parts: str) -> str:
    """A locally administered QEMU-style MAC (52:54:00:xx:xx:xx) derived from ``parts``."""
    d = _digest("mac", *parts)
    return "52:54:00:" + ":".join(f"{b:02x}" for b in d[:3])


def _to_str(el: ET.Element) -> str:
    return ET.tostring(el, encoding="unicode")


def _to_el(x: XmlLike) -> ET.Element:
    return x if isinstance(x, ET.Element) else ET.fromstring(x)


# --------------------------------------------------------------------------- domains


def _disk_el(devices: ET.Element, spec: str | Mapping[str, Any], index: int) -> None:
    """``spec``: a path (qcow2 virtio disk) or a dict with keys
    path, device ('disk'|'cdrom'), format ('qcow2'|'raw'), bus, target, readonly,
    pool + volume (a ``type='volume'`` disk instead of a file path)."""
    if isinstance(spec, str):
        spec = {"path": spec}
    device = spec.get("device", "disk")
    cdrom = device == "cdrom"
    bus = spec.get("bus", "sata" if cdrom else "virtio")
    prefix = {"virtio": "vd", "sata": "sd", "scsi": "sd", "ide": "hd"}.get(bus, "vd")
    target = spec.get("target", prefix + "abcdefghijklmnopqrstuvwxyz"[index])
    kind = "volume" if "pool" in spec else "file"
    disk = _sub(devices, "disk", type=kind, device=device)
    _sub(disk, "driver", name="qemu", type=spec.get("format", "raw" if cdrom else "qcow2"))
    if kind == "volume":
        _sub(disk, "source", pool=spec["pool"], volume=spec["volume"])
    elif spec.get("path"):
        _sub(disk, "source", file=spec["path"])
    _sub(disk, "target", dev=target, bus=bus)
    if cdrom or spec.get("readonly"):
        _sub(disk, "readonly")


def _nic_el(devices: ET.Element, spec: str | Mapping[str, Any], dom: str, index: int) -> None:
    """``spec``: a libvirt network name, or a dict with ``network`` or ``bridge``,
    optional ``mac`` and ``model`` (default virtio)."""
    if isinstance(spec, str):
        spec = {"network": spec}
    if "bridge" in spec:
        nic = _sub(devices, "interface", type="bridge")
        src = {"bridge": spec["bridge"]}
    else:
        nic = _sub(devices, "interface", type="network")
        src = {"network": spec["network"]}
    _sub(nic, "mac", address=spec.get("mac") or stable_mac(dom, str(index)))
    _sub(nic, "source", **src)
    _sub(nic, "model", type=spec.get("model", "virtio"))


def _graphics_el(devices: ET.Element, spec: str | Mapping[str, Any]) -> None:
    """``spec``: 'vnc' | 'spice' or a dict with type, port (-1 = autoport), listen."""
    if isinstance(spec, str):
        spec = {"type": spec}
    port = int(spec.get("port", -1))
    g = _sub(
        devices,
        "graphics",
        type=spec["type"],
        port=port,
        autoport="yes" if port == -1 else "no",
        listen=spec.get("listen", "127.0.0.1"),
    )
    _sub(g, "listen", type="address", address=spec.get("listen", "127.0.0.1"))


def snapshot_xml(
    name: str,
    *,
    parent: str | None = None,
    description: str | None = None,
    state: str = "shutoff",
    creation_time: int = 1_700_000_000,
    current: bool = False,
) -> ET.Element:
    """One ``<domainsnapshot>`` as the test driver redefines it (creationTime and state
    are mandatory for a redefined snapshot; ``current`` becomes ``<active>1</active>``)."""
    snap = ET.Element("domainsnapshot")
    _sub(snap, "name", name)
    if description is not None:
        _sub(snap, "description", description)
    _sub(snap, "state", state)
    _sub(snap, "creationTime", creation_time)
    if parent is not None:
        _sub(_sub(snap, "parent"), "name", parent)
    _sub(snap, "active", 1 if current else 0)
    return snap


def domain_xml(
    name: str,
    state: str = "running",
    vcpus: int = 1,
    memory_mib: int = 512,
    disks: Iterable[str | Mapping[str, Any]] = (),
    nics: Iterable[str | Mapping[str, Any]] = (),
    snapshots: Iterable[Mapping[str, Any] | ET.Element] = (),
    uuid: str | None = None,
    graphics: str | Mapping[str, Any] | None = None,
    managed_save: bool = False,
    *,
    transient: bool = False,
    description: str | None = None,
    title: str | None = None,
    current_memory_mib: int | None = None,
    serial: bool = True,
    domain_type: str = "test",
) -> str:
    """A ``<domain>`` for the test driver.

    state: a key of RUNSTATES ('running', 'paused', 'shutoff', 'crashed', …).
    disks: paths or dicts (see ``_disk_el``); nics: network names or dicts (``_nic_el``).
    snapshots: dicts of ``snapshot_xml`` keyword arguments (plus 'name') or Elements;
    list parents before children. ``managed_save`` requires state 'shutoff' (driver rule).
    """
    if state not in RUNSTATES:
        raise ValueError(f"unknown state {state!r}; one of {sorted(RUNSTATES)}")
    dom = ET.Element("domain", type=domain_type)
    _sub(dom, "name", name)
    _sub(dom, "uuid", uuid or stable_uuid("domain", name))
    if title is not None:
        _sub(dom, "title", title)
    if description is not None:
        _sub(dom, "description", description)
    _sub(dom, "memory", memory_mib * 1024, unit="KiB")
    _sub(dom, "currentMemory", (current_memory_mib or memory_mib) * 1024, unit="KiB")
    _sub(dom, "vcpu", vcpus, placement="static")
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="i686")
    _sub(os_el, "boot", dev="hd")
    devices = _sub(dom, "devices")
    for i, d in enumerate(disks):
        _disk_el(devices, d, i)
    for i, n in enumerate(nics):
        _nic_el(devices, n, name, i)
    if serial:
        _sub(_sub(devices, "serial", type="pty"), "target", port=0)
        _sub(_sub(devices, "console", type="pty"), "target", type="serial", port=0)
    if graphics is not None:
        _graphics_el(devices, graphics)
    # Snapshots carry a copy of the domain definition: without one libvirt logs
    # "parsing older snapshot that lacks domain" to stderr on every open.
    snap_domain = ET.fromstring(_to_str(dom))
    _sub(dom, _t("runstate"), RUNSTATES[state])
    if transient:
        _sub(dom, _t("transient"))
    if managed_save:
        _sub(dom, _t("hasmanagedsave"))
    for s in snapshots:
        # The driver parses the <test:domainsnapshot> element itself as the snapshot
        # root, so the <domainsnapshot> children are moved into it.
        snap = s if isinstance(s, ET.Element) else snapshot_xml(**s)
        wrapper = _sub(dom, _t("domainsnapshot"))
        wrapper.extend(list(snap))
        if wrapper.find("domain") is None:
            wrapper.append(ET.fromstring(_to_str(snap_domain)))
    return _to_str(dom)


# --------------------------------------------------------------------------- networks


def network_xml(
    name: str,
    mode: str | None = "nat",
    *,
    bridge: str | None = None,
    ip: str | None = None,
    prefix: int = 24,
    dhcp: tuple[str, str] | None = None,
    hosts: Iterable[Mapping[str, str]] = (),
    uuid: str | None = None,
) -> str:
    """A libvirt ``<network>``.

    mode: 'nat' | 'route' | 'open' | None (isolated) | 'bridge' (forward onto an existing
    host bridge given by ``bridge``, no IP). For the other modes ``bridge`` is the
    virbrN name libvirt would create. dhcp: (start, end); hosts: static DHCP entries
    ({'mac', 'name', 'ip'}) — the test driver keeps them in the XML but reports no leases.
    """
    net = ET.Element("network")
    _sub(net, "name", name)
    _sub(net, "uuid", uuid or stable_uuid("network", name))
    if mode == "bridge":
        _sub(net, "forward", mode="bridge")
        _sub(net, "bridge", name=bridge or "br0")
        return _to_str(net)
    if mode is not None:
        _sub(net, "forward", mode=mode)
    _sub(net, "bridge", name=bridge or f"virbr-{stable_uuid(name)[:6]}", stp="on", delay=0)
    if ip:
        ip_el = _sub(net, "ip", address=ip, prefix=prefix)
        if dhcp or hosts:
            dh = _sub(ip_el, "dhcp")
            if dhcp:
                _sub(dh, "range", start=dhcp[0], end=dhcp[1])
            for h in hosts:
                _sub(dh, "host", mac=h["mac"], name=h.get("name"), ip=h["ip"])
    return _to_str(net)


# --------------------------------------------------------------------------- storage


def volume_xml(
    name: str,
    capacity: int = GIB,
    allocation: int | None = None,
    fmt: str = "qcow2",
    *,
    path: str | None = None,
) -> str:
    """A ``<volume>``; capacity/allocation in bytes (allocation defaults to capacity/4)."""
    vol = ET.Element("volume", type="file")
    _sub(vol, "name", name)
    _sub(vol, "capacity", capacity, unit="bytes")
    _sub(vol, "allocation", capacity // 4 if allocation is None else allocation, unit="bytes")
    target = _sub(vol, "target")
    if path is not None:
        _sub(target, "path", path)
    _sub(target, "format", type=fmt)
    return _to_str(vol)


def pool_xml(
    name: str,
    path: str,
    volumes: Iterable[XmlLike | Mapping[str, Any]] = (),
    *,
    capacity: int = 500 * GIB,
    pool_type: str = "dir",
    uuid: str | None = None,
) -> str:
    """A storage ``<pool>`` with its ``<volume>``s nested (the test driver's node-file form).

    volumes: ``volume_xml`` strings/Elements or dicts of its keyword arguments.
    The driver sums volume allocations into the pool allocation; capacity is fixed by the
    driver's defaults (see demo-host.xml's header), whatever is written here.
    """
    pool = ET.Element("pool", type=pool_type)
    _sub(pool, "name", name)
    _sub(pool, "uuid", uuid or stable_uuid("pool", name))
    _sub(pool, "capacity", capacity, unit="bytes")
    _sub(pool, "allocation", 0, unit="bytes")
    _sub(pool, "available", capacity, unit="bytes")
    _sub(_sub(pool, "target"), "path", path)
    for v in volumes:
        if isinstance(v, Mapping):
            v = volume_xml(**v)
        pool.append(_to_el(v))
    return _to_str(pool)


def host_interface_xml(name: str, *, kind: str = "ethernet", mac: str | None = None,
                       ip: str | None = None, prefix: int = 24,
                       bridge_ports: Iterable[str] = ()) -> str:
    """A host ``<interface>`` (netcf-style): 'ethernet' or 'bridge' with ports."""
    iface = ET.Element("interface", type=kind, name=name)
    _sub(iface, "start", mode="onboot")
    if kind == "ethernet":
        _sub(iface, "mac", address=mac or stable_mac("iface", name))
    if ip:
        proto = _sub(iface, "protocol", family="ipv4")
        _sub(proto, "ip", address=ip, prefix=prefix)
    if kind == "bridge":
        br = _sub(iface, "bridge", stp="off")
        for port in bridge_ports:
            p = _sub(br, "interface", type="ethernet", name=port)
            _sub(p, "mac", address=stable_mac("iface", port))
    return _to_str(iface)


# --------------------------------------------------------------------------- host


def build_host_xml(
    domains: Iterable[XmlLike] = (),
    networks: Iterable[XmlLike] = (),
    pools: Iterable[XmlLike] = (),
    interfaces: Iterable[XmlLike] = (),
    *,
    cpus: tuple[int, int, int, int] = (1, 1, 8, 2),
    mhz: int = 2400,
    cpu_model: str = "x86_64",
    memory_mib: int = 64 * 1024,
    comment: str | None = None,
) -> str:
    """A whole test-driver ``<node>``: cpus = (numa nodes, sockets, cores, threads)."""
    node = ET.Element("node")
    if comment:
        node.append(ET.Comment(comment))
    cpu = _sub(node, "cpu")
    for tag, val in zip(("nodes", "sockets", "cores", "threads"), cpus):
        _sub(cpu, tag, val)
    _sub(cpu, "active", cpus[0] * cpus[1] * cpus[2] * cpus[3])
    _sub(cpu, "mhz", mhz)
    _sub(cpu, "model", cpu_model)
    _sub(node, "memory", memory_mib * 1024)
    for group in (domains, networks, interfaces, pools):
        for item in group:
            node.append(_to_el(item))
    ET.indent(node)
    return "<?xml version='1.0' encoding='utf-8'?>\n" + _to_str(node) + "\n"


def test_uri(tmp_path: Path, xml: str, name: str = "host.xml") -> str:
    """Write ``xml`` under ``tmp_path`` and return its ``test:///abs/path`` URI."""
    path = Path(tmp_path).resolve() / name
    path.write_text(xml, encoding="utf-8")
    return "test://" + str(path)


# Not a test, although its name starts with test_ (pytest would collect it when imported).
test_uri.__test__ = False  # type: ignore[attr-defined]
