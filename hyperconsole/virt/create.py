"""Create a VM: the request (`NewDomainSpec`), its deterministic domain XML, validation against
the host, and defining it (with a new disk volume, optionally started).

Contract: see calls.py.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace

import libvirt

from hyperconsole import names
from hyperconsole.errors import ValidationError
from hyperconsole.virt import inventory, xmlmodel
from hyperconsole.virt.calls import Target, calling, find, split
from hyperconsole.virt.domains import DiskInfo, GraphicsInfo, NicInfo, check_description, name_free
from hyperconsole.virt.networks import check_host_bridge
from hyperconsole.virt.pools import active_pool
from hyperconsole.virt.resources import KIB_PER_MIB, check_sizes, host_limits
from hyperconsole.virt.volumes import build_volume_xml, delete_quietly, existing
from hyperconsole.virt.xmlmodel import xml

log = logging.getLogger(__name__)

MIN_DISK_GIB = 1
MAX_DISK_GIB = 64 * 1024  # 64 TiB: beyond this a typo is likelier than a real disk
FIRMWARES = ("bios", "uefi")
NETWORK_KINDS = ("network", "bridge")
GRAPHICS_KINDS = ("vnc", "spice", "none")


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
    `create_domain`; otherwise it must already exist. `disk_format` is the driver type.
    iso: optional boot ISO volume, attached read-only as a SATA cdrom and booted first.
    network_kind 'network' (libvirt network name) or 'bridge' (host bridge name); network None = no NIC.
    domain_type '' means "kvm" for the builder; create_domain resolves it from capabilities.
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


@dataclass(frozen=True)
class _DomainXml:
    """The single-valued part of a new domain's XML, in libvirt's element order; disks, NICs and
    displays are written into <devices> by their own models."""

    type: str = xml("./@type")
    name: str = xml("./name")
    description: str = xml("./description")
    memory: int = xml("./memory", 0)
    memory_unit: str = xml("./memory/@unit")
    current_memory: int = xml("./currentMemory", 0)
    current_memory_unit: str = xml("./currentMemory/@unit")
    vcpus: int = xml("./vcpu", 0)
    vcpu_placement: str = xml("./vcpu/@placement")
    firmware: str = xml("./os/@firmware")
    os_type: str = xml("./os/type")
    arch: str = xml("./os/type/@arch")
    acpi: bool = xml("./features/acpi", False, flag=True)
    apic: bool = xml("./features/apic", False, flag=True)
    cpu_mode: str = xml("./cpu/@mode")
    clock_offset: str = xml("./clock/@offset")
    on_poweroff: str = xml("./on_poweroff")
    on_reboot: str = xml("./on_reboot")
    on_crash: str = xml("./on_crash")


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def build_domain_xml(spec: NewDomainSpec) -> str:
    """Deterministic domain XML for a new VM (fixed element order, ElementTree escaping)."""
    dtype = spec.domain_type or "kvm"
    hw = dtype in ("kvm", "qemu")
    kib = spec.memory_mib * KIB_PER_MIB
    dom = xmlmodel.write(_DomainXml(
        dtype, spec.name, spec.description, kib, "KiB", kib, "KiB", spec.vcpus, "static",
        "efi" if spec.firmware == "uefi" else "", "hvm", spec.arch, acpi=hw, apic=hw,
        cpu_mode="host-passthrough" if dtype == "kvm" else "", clock_offset="utc",
        on_poweroff="destroy", on_reboot="restart", on_crash="destroy"), ET.Element("domain"))
    os_el = dom.find("os")
    assert os_el is not None
    for dev in (("cdrom",) if spec.iso is not None else ()) + ("hd",):
        _sub(os_el, "boot", dev=dev)
    devices = _sub(dom, "devices")
    if spec.disk is not None:
        xmlmodel.write(DiskInfo(kind="volume", device="disk", driver="qemu", format=spec.disk_format or "qcow2",
                                pool=spec.disk.pool, volume=spec.disk.volume, target="vda", bus="virtio"),
                       ET.SubElement(devices, "disk"))
    if spec.iso is not None:
        xmlmodel.write(DiskInfo(kind="volume", device="cdrom", driver="qemu", format="raw", pool=spec.iso.pool,
                                volume=spec.iso.volume, target="sda", bus="sata", readonly=True),
                       ET.SubElement(devices, "disk"))
    if spec.network:
        nic = NicInfo(kind=spec.network_kind, mac=spec.mac, model="virtio",
                      **{spec.network_kind: spec.network})
        xmlmodel.write(nic, ET.SubElement(devices, "interface"))
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    if hw:
        channel = _sub(devices, "channel", type="unix")
        _sub(channel, "target", type="virtio", name="org.qemu.guest_agent.0")
    if spec.graphics in ("vnc", "spice"):
        g = xmlmodel.write(GraphicsInfo(spec.graphics, -1, True, "127.0.0.1"), ET.SubElement(devices, "graphics"))
        _sub(g, "listen", type="address", address="127.0.0.1")
    if hw:
        _sub(devices, "memballoon", model="virtio")
        rng = _sub(devices, "rng", model="virtio")
        _sub(rng, "backend", "/dev/urandom", model="random")
    return xmlmodel.to_string(dom)


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
    with calling(manager, "read capabilities"):
        caps = xmlmodel.parse(conn.getCapabilities(), "capabilities")
    types = [d.get("type", "") for d in caps.findall("guest/arch/domain")]
    for preferred in ("kvm", "qemu", "test"):
        if preferred in types:
            return preferred
    if types:
        return types[0]
    raise ValidationError("this host offers no virtual machine type")


def validate_spec(target: Target, spec: NewDomainSpec) -> NewDomainSpec:
    """Check a create request against the host; return it completed (domain type, disk volume
    name, disk format). Reads only. Raises ValidationError, VirtError."""
    names.vm_name(spec.name)
    check_sizes(spec.vcpus, spec.memory_mib)
    if spec.firmware not in FIRMWARES:
        raise ValidationError(f"firmware must be bios or uefi, not {spec.firmware!r}")
    if spec.graphics not in GRAPHICS_KINDS:
        raise ValidationError(f"graphics must be one of {', '.join(GRAPHICS_KINDS)}")
    if spec.network is not None and spec.network_kind not in NETWORK_KINDS:
        raise ValidationError(f"network kind must be network or bridge, not {spec.network_kind!r}")
    check_description(spec.description)
    if spec.new_disk_gib is not None:
        if spec.disk is None or not spec.disk.pool:
            raise ValidationError("a new disk needs a storage pool")
        if not isinstance(spec.new_disk_gib, int) or not MIN_DISK_GIB <= spec.new_disk_gib <= MAX_DISK_GIB:
            raise ValidationError(f"disk size must be {MIN_DISK_GIB}..{MAX_DISK_GIB} GiB, not {spec.new_disk_gib!r}")
        if spec.disk.volume:
            names.volume_name(spec.disk.volume)
    if spec.network_kind == "bridge" and spec.network is not None:
        names.interface_name(spec.network, "bridge name")

    conn, manager = split(target)
    dtype = spec.domain_type or _pick_domain_type(conn, manager)
    max_vcpus, host_mib = host_limits(conn, manager, dtype)
    check_sizes(spec.vcpus, spec.memory_mib, max_vcpus, host_mib)
    name_free(conn, manager, spec.name)
    spec = replace(spec, domain_type=dtype)

    if spec.disk is not None:
        if spec.new_disk_gib is not None:
            pool = active_pool(conn, manager, spec.disk.pool, "disk")
            vol_name = spec.disk.volume or f"{spec.name}.qcow2"
            with calling(manager, f"list volumes of {spec.disk.pool}"):
                taken = vol_name in pool.listVolumes()
            if taken:
                raise ValidationError(f"pool {spec.disk.pool!r} already has a volume {vol_name!r}",
                                      hint="pick another name or attach the existing volume")
            spec = replace(spec, disk=VolumeRef(spec.disk.pool, vol_name), disk_format="qcow2")
        else:
            _pool, _vol, info = existing(conn, manager, spec.disk.pool, spec.disk.volume, "disk")
            usage = inventory.usage(target)
            if usage.users_of(info):
                raise ValidationError(f"volume {spec.disk} is already a disk of another VM")
            usage.refuse_unknown(f"volume {spec.disk}")
            spec = replace(spec, disk_format=info.format or "raw")
    if spec.iso is not None:
        existing(conn, manager, spec.iso.pool, spec.iso.volume, "boot ISO")
    if spec.network is not None:
        if spec.network_kind == "network":
            if find(manager, f"look up network {spec.network}", lambda: conn.networkLookupByName(spec.network),
                    libvirt.VIR_ERR_NO_NETWORK) is None:
                raise ValidationError(f"no libvirt network named {spec.network!r}")
        else:
            check_host_bridge(conn, manager, spec.network)
    return spec


def create_domain(target: Target, spec: NewDomainSpec, start_now: bool = False) -> CreateResult:
    """Validate, create the new qcow2 disk (if asked), define the VM, optionally start it.
    If defining fails the new volume is deleted again: no half-created VM. A failed start leaves
    the defined VM and is reported in the raised VirtError. Raises ValidationError, VirtError."""
    spec = validate_spec(target, spec)
    conn, manager = split(target)
    xml = build_domain_xml(spec)
    new_vol = None
    created = ""
    try:
        if spec.new_disk_gib is not None and spec.disk is not None:
            pool = active_pool(conn, manager, spec.disk.pool, "disk")
            with calling(manager, f"create disk {spec.disk}"):
                new_vol = pool.createXML(build_volume_xml(spec.disk.volume, spec.new_disk_gib * 1024**3, "qcow2"), 0)
            created = str(spec.disk)
        with calling(manager, f"define {spec.name}"):
            dom = conn.defineXML(xml)
            uuid = dom.UUIDString()
    except BaseException:
        if new_vol is not None:
            problems = delete_quietly([new_vol])
            if problems:
                log.error("could not remove new volume after failed create: %s", problems[0])
        raise
    started = False
    if start_now:
        with calling(manager, f"created {spec.name} but could not start it"):
            dom.create()
        started = True
    return CreateResult(uuid, spec.name, created, started, xml)
