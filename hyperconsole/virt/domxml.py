"""Domain XML as a declarative model: parse into `DomainDetails`, build new domains, edit sizes.

Everything is ElementTree: names, descriptions and paths are set as element text or attribute
values and escaped by the serializer, never concatenated into XML. Builders emit elements in a
fixed order, so the same spec always gives the same bytes (checked against golden files in
tests/unit/virt/golden/).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from hyperconsole.errors import ValidationError
from hyperconsole.virt.models import DiskInfo, DomainDetails, GraphicsInfo, NicInfo, SnapshotInfo

# Keep well-known prefixes when an edited XML is written back (ElementTree would say ns0:).
for _prefix, _uri in (
    ("qemu", "http://libvirt.org/schemas/domain/qemu/1.0"),
    ("test", "http://libvirt.org/schemas/domain/test/1.0"),
    ("libosinfo", "http://libosinfo.org/xmlns/libvirt/domain/1.0"),
):
    ET.register_namespace(_prefix, _uri)

KIB_PER_MIB = 1024
FIRMWARES = ("bios", "uefi")
NETWORK_KINDS = ("network", "bridge")
GRAPHICS_KINDS = ("vnc", "spice", "none")


# --------------------------------------------------------------------------- parsing


def _parse(xml: str) -> ET.Element:
    try:
        return ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ValidationError(f"domain XML does not parse: {exc}") from exc


def _text(el: ET.Element | None, default: str = "") -> str:
    return (el.text or "").strip() if el is not None and el.text is not None else default


def firmware_of(root: ET.Element) -> str:
    """'uefi' for <os firmware='efi'>, a pflash/OVMF <loader> or an <nvram>; otherwise 'bios'."""
    os_el = root.find("os")
    if os_el is None:
        return "bios"
    if os_el.get("firmware") == "efi":
        return "uefi"
    loader = os_el.find("loader")
    if loader is not None:
        path = _text(loader).lower()
        if loader.get("type") == "pflash" or any(k in path for k in ("ovmf", "edk2", "efi", "aavmf")):
            return "uefi"
    if os_el.find("nvram") is not None:
        return "uefi"
    return "bios"


def _disk(el: ET.Element) -> DiskInfo:
    kind = el.get("type", "file")
    src = el.find("source")
    pool = volume = source = ""
    if src is not None:
        if kind == "volume":
            pool, volume = src.get("pool", ""), src.get("volume", "")
            source = f"{pool}/{volume}" if pool or volume else ""
        elif kind == "network":
            name = src.get("name", "")
            proto = src.get("protocol", "")
            source = f"{proto}:{name}" if proto else name
        else:
            source = src.get("file") or src.get("dev") or src.get("dir") or ""
    driver = el.find("driver")
    target = el.find("target")
    return DiskInfo(
        target=target.get("dev", "") if target is not None else "",
        device=el.get("device", "disk"),
        bus=target.get("bus", "") if target is not None else "",
        source=source,
        format=driver.get("type", "") if driver is not None else "",
        pool=pool,
        volume=volume,
        readonly=el.find("readonly") is not None,
    )


def _nic(el: ET.Element) -> NicInfo:
    kind = el.get("type", "")
    src = el.find("source")
    source = ""
    if src is not None:
        source = (src.get("network") or src.get("bridge") or src.get("dev")
                  or src.get("path") or src.get("address") or "")
    mac = el.find("mac")
    model = el.find("model")
    target = el.find("target")
    addresses = tuple(ip.get("address", "") for ip in el.findall("ip") if ip.get("address"))
    return NicInfo(
        mac=mac.get("address", "") if mac is not None else "",
        kind=kind,
        source=source,
        model=model.get("type", "") if model is not None else "",
        target=target.get("dev", "") if target is not None else "",
        addresses=addresses,
    )


def _graphics(el: ET.Element) -> GraphicsInfo:
    port_text = el.get("port") or el.get("tlsPort") or ""
    try:
        port: int | None = int(port_text)
    except ValueError:
        port = None
    if port is not None and port <= 0:
        port = None  # -1 means "assigned at start"
    listen = el.get("listen", "")
    if not listen:
        for lst in el.findall("listen"):
            if lst.get("address"):
                listen = lst.get("address", "")
                break
            if lst.get("socket"):
                listen = lst.get("socket", "")
                break
    return GraphicsInfo(kind=el.get("type", ""), port=port, listen=listen,
                        autoport=el.get("autoport") == "yes")


def parse_domain_xml(xml: str, snapshots: tuple[SnapshotInfo, ...] = ()) -> DomainDetails:
    """Domain XML (live or inactive) → `DomainDetails`. Raises ValidationError if it does not parse."""
    root = _parse(xml)
    devices = root.find("devices")
    if devices is None:
        devices = ET.Element("devices")
    os_el = root.find("os")
    os_type = _text(os_el.find("type")) if os_el is not None else ""
    return DomainDetails(
        uuid=_text(root.find("uuid")),
        name=_text(root.find("name")),
        description=(root.findtext("description") or ""),
        os_type=os_type,
        firmware=firmware_of(root),
        disks=tuple(_disk(d) for d in devices.findall("disk")),
        nics=tuple(_nic(n) for n in devices.findall("interface")),
        graphics=tuple(_graphics(g) for g in devices.findall("graphics")),
        snapshots=snapshots,
        has_nvram=os_el is not None and (os_el.find("nvram") is not None or os_el.get("firmware") == "efi"),
    )


# --------------------------------------------------------------------------- building


@dataclass(frozen=True)
class VolumeRef:
    """A storage volume by pool and volume name (what `<disk type='volume'>` points at)."""

    pool: str
    volume: str

    def __str__(self) -> str:
        return f"{self.pool}/{self.volume}"


@dataclass(frozen=True)
class NewDomainSpec:
    """What the create-VM form collects; `build_domain_xml` turns it into domain XML.

    disk: the system disk volume. With `new_disk_gib` set it is created (qcow2) by
    `ops.create_domain`; otherwise it must already exist. `disk_format` is the driver type.
    iso: optional boot ISO volume, attached read-only as a SATA cdrom and booted first.
    network_kind 'network' (libvirt network name) or 'bridge' (host bridge name); network None = no NIC.
    domain_type '' means "kvm" for the builder; ops.create_domain resolves it from capabilities.
    """

    name: str
    vcpus: int = 1
    memory_mib: int = 1024
    disk: VolumeRef | None = None
    new_disk_gib: int | None = None
    disk_format: str = "qcow2"
    iso: VolumeRef | None = None
    network: str | None = "default"
    network_kind: str = "network"
    firmware: str = "bios"
    description: str = ""
    domain_type: str = ""
    arch: str = "x86_64"
    graphics: str = "vnc"
    mac: str = ""


def _sub(parent: ET.Element, tag: str, text: str | int | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = str(text)
    return el


def build_domain_xml(spec: NewDomainSpec) -> str:
    """Deterministic domain XML for a new VM (fixed element order, ElementTree escaping)."""
    dtype = spec.domain_type or "kvm"
    hw = dtype in ("kvm", "qemu")
    dom = ET.Element("domain", {"type": dtype})
    _sub(dom, "name", spec.name)
    if spec.description:
        _sub(dom, "description", spec.description)
    _sub(dom, "memory", spec.memory_mib * KIB_PER_MIB, unit="KiB")
    _sub(dom, "currentMemory", spec.memory_mib * KIB_PER_MIB, unit="KiB")
    _sub(dom, "vcpu", spec.vcpus, placement="static")
    os_el = _sub(dom, "os", **({"firmware": "efi"} if spec.firmware == "uefi" else {}))
    _sub(os_el, "type", "hvm", arch=spec.arch)
    if spec.iso is not None:
        _sub(os_el, "boot", dev="cdrom")
    _sub(os_el, "boot", dev="hd")
    if hw:
        features = _sub(dom, "features")
        _sub(features, "acpi")
        _sub(features, "apic")
    if dtype == "kvm":
        _sub(dom, "cpu", mode="host-passthrough")
    _sub(dom, "clock", offset="utc")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")
    devices = _sub(dom, "devices")
    if spec.disk is not None:
        disk = _sub(devices, "disk", type="volume", device="disk")
        _sub(disk, "driver", name="qemu", type=spec.disk_format or "qcow2")
        _sub(disk, "source", pool=spec.disk.pool, volume=spec.disk.volume)
        _sub(disk, "target", dev="vda", bus="virtio")
    if spec.iso is not None:
        cd = _sub(devices, "disk", type="volume", device="cdrom")
        _sub(cd, "driver", name="qemu", type="raw")
        _sub(cd, "source", pool=spec.iso.pool, volume=spec.iso.volume)
        _sub(cd, "target", dev="sda", bus="sata")
        _sub(cd, "readonly")
    if spec.network:
        kind = spec.network_kind
        nic = _sub(devices, "interface", type=kind)
        if spec.mac:
            _sub(nic, "mac", address=spec.mac)
        _sub(nic, "source", **{kind: spec.network})
        _sub(nic, "model", type="virtio")
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    if hw:
        channel = _sub(devices, "channel", type="unix")
        _sub(channel, "target", type="virtio", name="org.qemu.guest_agent.0")
    if spec.graphics in ("vnc", "spice"):
        g = _sub(devices, "graphics", type=spec.graphics, port="-1", autoport="yes", listen="127.0.0.1")
        _sub(g, "listen", type="address", address="127.0.0.1")
    if hw:
        _sub(devices, "memballoon", model="virtio")
        rng = _sub(devices, "rng", model="virtio")
        _sub(rng, "backend", "/dev/urandom", model="random")
    return to_string(dom)


def to_string(root: ET.Element) -> str:
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def snapshot_xml(name: str, description: str = "") -> str:
    snap = ET.Element("domainsnapshot")
    _sub(snap, "name", name)
    if description:
        _sub(snap, "description", description)
    return to_string(snap)


def volume_xml(name: str, capacity_bytes: int, fmt: str = "qcow2") -> str:
    vol = ET.Element("volume")
    _sub(vol, "name", name)
    _sub(vol, "capacity", capacity_bytes, unit="bytes")
    target = _sub(vol, "target")
    _sub(target, "format", type=fmt)
    return to_string(vol)


# --------------------------------------------------------------------------- editing


@dataclass(frozen=True)
class VcpuLimits:
    current: int
    maximum: int


def vcpu_limits(xml: str) -> VcpuLimits:
    """Current and maximum vCPUs from `<vcpu current='N'>MAX</vcpu>`."""
    el = _parse(xml).find("vcpu")
    if el is None:
        return VcpuLimits(1, 1)
    maximum = int(_text(el) or 1)
    return VcpuLimits(int(el.get("current", maximum)), maximum)


def set_vcpus(xml: str, vcpus: int) -> tuple[str, bool]:
    """Set the vCPU count in an (inactive) domain XML.

    Returns (new XML, maximum_raised). Within the maximum only `current` changes (hot-pluggable
    later); above it the maximum is raised, which only a redefine + boot can apply. A CPU
    topology whose product no longer matches becomes sockets=N, cores=1, threads=1.
    """
    root = _parse(xml)
    el = root.find("vcpu")
    if el is None:
        el = ET.Element("vcpu", {"placement": "static"})
        el.text = "1"
        anchor = root.find("currentMemory")
        if anchor is None:
            anchor = root.find("memory")
        index = list(root).index(anchor) + 1 if anchor is not None else len(root)
        root.insert(index, el)
    maximum = int(_text(el) or 1)
    raised = vcpus > maximum
    if raised:
        if root.find("vcpus") is not None:
            raise ValidationError("this VM has per-vCPU settings (<vcpus>); raise its maximum with virsh")
        if root.find("cpu/numa") is not None:
            raise ValidationError("this VM has a NUMA layout; raise its vCPU maximum with virsh")
        el.text = str(vcpus)
        el.attrib.pop("current", None)
        topo = root.find("cpu/topology")
        if topo is not None:
            product = 1
            for key in ("sockets", "dies", "clusters", "cores", "threads"):
                product *= int(topo.get(key, "1"))
            if product != vcpus:
                for key in ("dies", "clusters"):
                    if key in topo.attrib:
                        topo.set(key, "1")
                topo.set("sockets", str(vcpus))
                topo.set("cores", "1")
                topo.set("threads", "1")
    elif vcpus == maximum:
        el.attrib.pop("current", None)
    else:
        el.set("current", str(vcpus))
    return to_string(root), raised


def set_memory(xml: str, memory_mib: int) -> str:
    """Set `<memory>` and `<currentMemory>` (KiB) in an (inactive) domain XML."""
    root = _parse(xml)
    kib = str(memory_mib * KIB_PER_MIB)
    mem = root.find("memory")
    if mem is None:
        mem = ET.Element("memory")
        root.insert(2, mem)
    mem.text = kib
    mem.set("unit", "KiB")
    cur = root.find("currentMemory")
    if cur is None:
        cur = ET.Element("currentMemory")
        root.insert(list(root).index(mem) + 1, cur)
    cur.text = kib
    cur.set("unit", "KiB")
    return to_string(root)


def memory_mib_of(xml: str) -> int:
    """`<memory>` in MiB, whatever unit it is written in."""
    mem = _parse(xml).find("memory")
    if mem is None:
        return 0
    units = {"b": 1, "bytes": 1, "k": 1024, "kib": 1024, "kb": 1000, "m": 1024**2, "mib": 1024**2,
             "mb": 1000**2, "g": 1024**3, "gib": 1024**3, "gb": 1000**3, "t": 1024**4, "tib": 1024**4}
    factor = units.get(mem.get("unit", "KiB").lower(), 1024)
    return int(_text(mem) or 0) * factor // (1024 * 1024)
